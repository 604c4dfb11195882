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
    ({"ppo": {"kl_target": 0.0}}, "out of range"),
    ({"ppo": {"updates": 2.5}}, "must be int"),
    ({"seed": "abc"}, "must be int"),
    ({"student": {"k": None}}, r"^`student.k` must be int, got null$"),
    ({"student": {"k": "8"}}, r"^`student.k` must be int, got '8'$"),
    ({"ppo": {"resume": None}}, "`ppo.resume` must be bool, got null"),
    ({"teacher": {"model": None}}, "`teacher.model` must be str, got null"),
    ({"prompt_tuning": {"steps": 0}}, r"`prompt_tuning.steps` = 0 is out of range \[1, 100000\] \(or null"),
    ({"prompt_tuning": {"steps": "4"}}, "`prompt_tuning.steps` must be int or null"),
    ({"ppo": {"entropy_coef": 0.05}}, r"^`ppo.entropy_coef` was removed from the config: .*bench/ppo.py"),
    ({"student": {"beta_rule": "dev"}}, "`student.beta_rule` was removed"),
    ({"seed": True}, "must be int"),
    ({"prompt_tuning": {"init_from_text": "yes"}}, "must be bool"),
    ({"teacher": 3}, "must be a mapping"),
])
def test_bad_config_is_refused_with_the_field_name(data, message):
    with pytest.raises(ConfigError, match=message) as refused:
        from_dict(data)
    assert "\n" not in str(refused.value)


def test_null_is_the_tasks_default_where_a_field_takes_it():
    config = from_dict({"prompt_tuning": {"steps": None}, "generation": {"samples_per_label": 30}})
    assert config.prompt_tuning.steps is None and config.generation.samples_per_label == 30
    assert RunConfig().scorer.demo_candidates is None and RunConfig().ppo.max_new_tokens is None
    assert override(config, {"generation.samples_per_label": None}).generation.samples_per_label is None


def test_set_and_yaml_refuse_removed_and_unknown_keys_in_one_line(tmp_path, capsys):
    from retrikt.cli.main import main

    for item, message in (("student.k=null", "`student.k` must be int, got null"),
                          ("ppo.validity_gate=true", "`ppo.validity_gate` was removed"),
                          ("student.nope=1", "unknown field `student.nope`")):
        assert main(["generate", "--workspace", str(tmp_path), "--set", item]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {message}") and err.count("\n") == 1 and "Traceback" not in err
    path = tmp_path / "mine.yaml"
    path.write_text("student:\n  k: 8\n  teacher_beats_student: false\n", encoding="utf-8")
    assert main(["config", "--config", str(path)]) == 2
    assert capsys.readouterr().err.startswith("error: `student.teacher_beats_student` was removed")


def test_a_saved_run_with_removed_keys_still_loads(tmp_path, caplog):
    """A run saved before settings were removed and 0 stopped meaning "the task's default" (the shape of the demo
    run shipped until 2026-12-07) still opens, and so does its student."""
    import json
    import logging
    import shutil

    import yaml

    from retrikt.runs import open_run
    from retrikt.student.model import Student

    legacy = tmp_path / "runs" / "demo-SST-2"
    shutil.copytree(Path(__file__).resolve().parents[1] / "assets" / "demo-run", legacy)
    config = yaml.safe_load((legacy / "config.yaml").read_text(encoding="utf-8"))
    config["ppo"]["entropy_coef"], config["student"]["beta_rule"] = 0.0, "teacher"
    config["scorer"]["demo_candidates"], config["generation"]["samples_per_label"] = 0, 0
    (legacy / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    meta = json.loads((legacy / "student" / "student.json").read_text(encoding="utf-8"))
    meta["config"]["beta_rule"] = "teacher"
    (legacy / "student" / "student.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(ConfigError, match="` = 0 is out of range"):  # as a user's own YAML: refused
        load_yaml(legacy / "config.yaml")
    with caplog.at_level(logging.INFO, logger="retrikt.config"):
        saved = load_yaml(legacy / "config.yaml", saved_run=True)
    assert "`ppo.entropy_coef` = 0.0 dropped" in caplog.text and "`student.beta_rule` = 'teacher' dropped" in caplog.text
    assert saved.scorer.demo_candidates is None and saved.generation.samples_per_label is None  # were 0
    assert saved.student == RunConfig().student and saved.ppo == RunConfig().ppo
    assert open_run(tmp_path, "demo-SST-2").config.task == "SST-2"
    assert Student.load(legacy / "student").config == RunConfig().student  # its student.json held a removed key


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

    from retrikt.config import field_type

    def walk(obj, prefix=""):
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                yield from walk(value, prefix + f.name + ".")
            elif field_type(prefix + f.name)[0] in (int, float):
                limits = f.metadata.get("range")
                # a field that takes None ("the task's default") is checked at its range's low end
                yield prefix + f.name, (limits or (value,))[0] if value is None else value, limits

    numeric = list(walk(RunConfig()))
    assert len(numeric) > 40
    for key, value, limits in numeric:
        assert limits is not None, f"{key} has no range"
        assert limits[0] <= value <= limits[1], key


@pytest.mark.parametrize("key,bad", [("scorer.answer_score", "max"), ("student.init", "bert"),
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
