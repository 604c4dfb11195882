"""The classroom view tells the three-step story with the selected run's own numbers (the shipped demo run)."""
from __future__ import annotations

import json

import pytest

from retrikt.runs import RunError, open_run
from retrikt.studio.classroom import cards_html, classroom, classroom_figure, example_html, steps_html
from retrikt.studio.demo import DEMO_ASSET, DEMO_RUN, install_demo


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    folder = tmp_path_factory.mktemp("classroom")
    install_demo(folder, DEMO_ASSET)
    return folder


@pytest.mark.slow
def test_the_cards_are_the_runs_numbers(workspace):
    view = classroom(workspace, DEMO_RUN)
    summary = json.loads(open_run(workspace, DEMO_RUN).eval_summary_path.read_text())
    systems = summary["systems"]
    values = {card.caption: card.value for card in view.cards}
    assert values["the student's size, of the teacher's"] == \
        f"{100 * summary['student_params'] / summary['teacher_params']:.1f}%"
    assert values["of the teacher's accuracy kept"] == \
        f"{100 * systems['student_retrieval']['accuracy'] / systems['teacher']['accuracy']:.0f}%"
    assert values["from retrieval"] == \
        f"{100 * (systems['student_retrieval']['accuracy'] - systems['student']['accuracy']):+.1f} points"
    speed = next(card for card in view.cards if card.caption.startswith("throughput"))
    assert speed.caption == "throughput, measured where the demo was made"  # the shipped demo: not this machine
    assert speed.value == f"{systems['student_retrieval']['examples_per_s'] / systems['teacher']['examples_per_s']:.0f}× faster"
    one = systems["teacher"]["latency_ms"] / systems["student_retrieval"]["latency_ms"]
    assert f"one input at a time" in speed.detail and f"{one:.0f}× faster" in speed.detail
    assert view.counts["retrieval fixed it"] > 0 and view.counts["retrieval broke it"] > 0
    fixed = view.examples["retrieval fixed it"]
    assert fixed["student_retrieval"]["pred"] == fixed["gold"] != fixed["student"]["pred"]
    broke = view.examples["retrieval broke it"]
    assert broke["student"]["pred"] == broke["gold"] != broke["student_retrieval"]["pred"]
    stored = json.loads(open_run(workspace, DEMO_RUN).summary_path.read_text())["generate"]["stored"]
    assert f"{stored} went into the store" in view.steps[0][1]
    items = json.loads(open_run(workspace, DEMO_RUN).summary_path.read_text())["student"]["items"]
    left_out = items["store_entries"] - items["indexed"]
    assert left_out > 0 and f"The other {left_out} are never retrieved: the teacher's label disagreed" in view.steps[2][1]
    ppo_stored = json.loads(open_run(workspace, DEMO_RUN).summary_path.read_text())["ppo"]["stored"]
    assert f"wrote {ppo_stored} more samples" in view.steps[1][1]


def test_the_html_escapes_texts_and_the_view_has_one_figure(workspace):
    view = classroom(workspace, DEMO_RUN)
    page = cards_html(view) + steps_html(view)
    assert page.count("rk-card'") == len(view.cards) and page.count("rk-step'") == 3 and "<table" not in page
    record = {"text": "<b>loud</b>" * 40, "gold": "positive", "student": {"pred": "negative"},
              "student_retrieval": {"pred": "positive"}}
    shown = example_html(record, "retrieval fixed it")
    assert "<b>loud</b>" not in shown and "&lt;b&gt;" in shown and "…" in shown
    figure = classroom_figure(workspace, DEMO_RUN)
    assert [bar for bar in figure.data[0].y] == ["teacher", "gold labels only", "student alone", "plain KD",
                                                 "student + retrieval"]  # gold only: what the teacher adds
    gold = json.loads(open_run(workspace, DEMO_RUN).eval_summary_path.read_text())["systems"]["student_gold"]
    assert figure.data[0].x[1] == pytest.approx(100 * gold["accuracy"])


def test_only_evaluated_runs(workspace):
    with pytest.raises(RunError, match="There is no run"):
        classroom(workspace, "nope")


def test_a_teacher_below_the_majority_class_is_said_first(workspace):
    from retrikt.studio.classroom import Card, Classroom

    summary = {"systems": {"teacher": {"accuracy": 0.26}, "majority": {"accuracy": 0.27}}}
    from retrikt.studio.compare import weak_teacher_warning

    view = Classroom("SST-5", [Card("121%", "of the teacher's accuracy kept")], [], warning=weak_teacher_warning(summary))
    page = cards_html(view)
    assert page.index("does not beat the majority class") < page.index("121%") and "**" not in page
    assert classroom(workspace, DEMO_RUN).warning == ""  # the demo's teacher (80%) is well above its 51% majority


@pytest.mark.parametrize("items, said", [
    ({"store_entries": 1079, "indexed": 783, "filter": "agree"}, "The other 296 are never retrieved: the teacher's"),
    ({"store_entries": 10, "indexed": 9, "filter": "weight"}, "The other one is never retrieved: it carries no teacher"),
    ({"store_entries": 10, "indexed": 10, "filter": "agree"}, None),
    ({"store_entries": None, "indexed": 3}, None),
])
def test_the_entries_left_out_of_the_index_are_explained_by_the_runs_own_filter(items, said):
    from retrikt.studio.classroom import _left_out

    text = _left_out(items)
    assert (said in text) if said else text == ""
