"""A number box whose None means "the task's default": the browser shows None as 0 and sends an emptied box as ""."""
import pytest

from pages.common import OptionalNumber


@pytest.mark.parametrize("sent, received", [(None, None), ("", None), (0, None), (0.0, None), (40, 40), (3.0, 3)])
def test_what_the_browser_sends_reaches_the_handler_as_none_or_a_whole_number(sent, received):
    value = OptionalNumber(precision=0).preprocess(sent)
    assert value == received and type(value) is type(received)


@pytest.mark.parametrize("value, shown", [(None, 0), (16, 16)])
def test_the_tasks_default_is_shown_as_zero(value, shown):
    assert OptionalNumber(precision=0).postprocess(value) == shown


def test_the_browser_draws_it_with_its_own_number_box():
    assert OptionalNumber().get_block_name() == "number"
