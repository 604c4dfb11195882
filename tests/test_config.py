from pathlib import Path

import pytest

from retrikt.config import ConfigError, RunConfig, from_dict, load_yaml, override, save_yaml, to_dict


def test_yaml_round_trip(tmp_path):
    config = override(RunConfig(), {"task": "RTE", "generation.temperature": 0.7, "prompt_tuning.steps": 5})
    save_yaml(config, tmp_path / "c.yaml")
    assert load_yaml(tmp_path / "c.yaml") == config


@pytest.mark.parametrize("data,message", [
    ({"nope": 1}, "unknown field"),
    ({"generation": {"temprature": 0.5}}, "generation.temprature"),
    ({"generation": {"temperature": 9.0}}, "out of range"),
    ({"generation": {"top_p": 0}}, "out of range"),
    ({"ppo": {"min_words_quantile": 1.5}}, "out of range"),
    ({"ppo": {"novelty_count_cap": -1}}, "out of range"),
    ({"ppo": {"novelty_count_cap": 2.5}}, "must be int"),
    ({"seed": "abc"}, "must be int"),
    ({"seed": True}, "must be int"),
    ({"prompt_tuning": {"init_from_text": "yes"}}, "must be bool"),
    ({"teacher": 3}, "must be a mapping"),
])
def test_bad_config_is_refused_with_the_field_name(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(data)


def test_override_unknown_key():
    with pytest.raises(ConfigError, match="unknown field"):
        override(RunConfig(), {"generation.nope": 1})


def test_ints_are_accepted_for_floats():
    assert from_dict({"generation": {"temperature": 1}}).generation.temperature == 1.0


def test_unreadable_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("task: [unclosed")
    with pytest.raises(ConfigError, match="cannot read"):
        load_yaml(path)
    assert to_dict(RunConfig())["task"] == "SST-2"


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_shipped_example_configs_load_and_name_a_builtin_task(path):
    from retrikt.tasks import load_builtin

    config = load_yaml(path)
    assert load_builtin(config.task, seed=config.seed).train


def test_every_numeric_field_has_a_range_that_holds_its_default():
    """A numeric field without a range would take any value; a default outside its own range could never load."""
    import dataclasses

    def walk(obj, prefix=""):
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                yield from walk(value, prefix + f.name + ".")
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                yield prefix + f.name, value, f.metadata.get("range")

    numeric = list(walk(RunConfig()))
    assert len(numeric) > 50
    for key, value, limits in numeric:
        assert limits is not None, f"{key} has no range"
        assert limits[0] <= value <= limits[1], key


@pytest.mark.parametrize("key,bad", [("ppo.kl_controller", "linear"), ("student.init", "bert"),
                                     ("student.store_filter", "all")])
def test_a_value_outside_a_fields_choices_is_refused(key, bad):
    with pytest.raises(ConfigError, match="choose one of"):
        override(RunConfig(), {key: bad})


def test_presets_are_valid_overrides_and_unknown_ones_are_refused():
    from retrikt.config import PRESETS, RunConfig, apply_preset

    quick = apply_preset(RunConfig(task="RTE", seed=21), "quick")
    assert (quick.task, quick.seed) == ("RTE", 21)  # a preset sets only its own fields
    for key, value in PRESETS["quick"].overrides.items():
        section, field = key.split(".")
        assert getattr(getattr(quick, section), field) == value
    assert apply_preset(RunConfig(), None) == RunConfig()
    with pytest.raises(ConfigError, match="unknown preset 'fast'"):
        apply_preset(RunConfig(), "fast")
