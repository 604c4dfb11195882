"""Time estimates come from runs finished on this machine: an estimate for a finished run's own config gives back
its measured stage times, other configs scale by their work, and a running job's time left follows its own pace."""
from __future__ import annotations

import json

import pytest

from retrikt.config import RunConfig, override, save_yaml
from retrikt.estimate import LATENCY_SAMPLE, estimate, time_left, work
from retrikt.jobs import Job
from retrikt.runs import Run, run_path
from retrikt.studio.jobs_view import job_header, job_status
from retrikt.studio.timing import describe
from retrikt.tasks import load_builtin

MEASURED = {"load": 5.0, "score": 40.0, "tune": 300.0, "generate": 250.0 + 50.0, "ppo_train": 120.0, "student": 200.0,
            "teacher_eval": 100.0}


def finished_run(workspace, name: str, config: RunConfig, threads: int = 1, store_entries: int = 1152) -> Run:
    run = Run(run_path(workspace, name))
    run.path.mkdir(parents=True)
    config = override(config, {"workspace": str(workspace), "run_name": name})
    save_yaml(config, run.config_path)
    run.summary_path.write_text(json.dumps({
        "status": "done", "torch_threads": threads, "load_seconds": MEASURED["load"],
        "score": {"seconds": MEASURED["score"]}, "tune": {"seconds": MEASURED["tune"]},
        "generate": {"generate_seconds": 250.0, "label_and_store_seconds": 50.0},
        "ppo": {"ppo_seconds": MEASURED["ppo_train"]},
        "student": {"seconds": MEASURED["student"], "items": {"store_entries": store_entries}}}))
    run.eval_dir.mkdir()
    run.eval_summary_path.write_text(json.dumps({"test_examples": 872, "systems": {
        "teacher": {"seconds": MEASURED["teacher_eval"]}}}))
    return run


@pytest.fixture
def sst2():
    return load_builtin("SST-2", seed=13)


def test_a_finished_runs_own_config_gets_its_measured_times_back(tmp_path, sst2):
    config = override(RunConfig(task="SST-2"), {"ppo.enabled": True})  # the run did step 2
    samples = work(config, sst2).samples
    finished_run(tmp_path, "measured", config, store_entries=2 * samples + len(sst2.train))
    found = estimate(config, sst2, tmp_path, threads=1).seconds
    for stage in ("load", "score", "tune", "generate", "student"):
        assert found[stage] == pytest.approx(MEASURED[stage]), stage
    assert found["eval"] == pytest.approx(MEASURED["teacher_eval"] * (872 + LATENCY_SAMPLE) / 872)
    # PPO: its training as measured, then as many samples as step 1 at step 1's generation rate
    assert found["ppo"] == pytest.approx(MEASURED["ppo_train"])
    assert found["ppo-generate"] == pytest.approx(MEASURED["generate"])
    assert "unlabeled" not in found
    # The default config skips step 2: no PPO stage, and a store without PPO's samples for the student.
    default = estimate(RunConfig(task="SST-2"), sst2, tmp_path, threads=1).seconds
    assert "ppo" not in default and "ppo-generate" not in default
    assert default["student"] < found["student"]


def test_other_settings_scale_by_their_work_and_the_median_of_runs_is_used(tmp_path, sst2):
    base = RunConfig(task="SST-2")
    finished_run(tmp_path, "a", base)
    finished_run(tmp_path, "b", override(base, {"prompt_tuning.steps": 80}))  # the same 300 s for twice the steps
    finished_run(tmp_path, "c", base)
    doubled = override(base, {"generation.samples_per_label": 2 * work(base, sst2).samples // 2,
                              "prompt_tuning.steps": 20, "ppo.updates": 0})
    found = estimate(doubled, sst2, tmp_path, threads=1).seconds
    assert found["generate"] == pytest.approx(2 * MEASURED["generate"])
    assert found["tune"] == pytest.approx(MEASURED["tune"] / 2)  # median of 300/40, 300/80, 300/40 s per step
    assert "ppo" not in found and "ppo-generate" not in found


def test_no_estimate_without_a_run_measured_here_on_as_many_threads(tmp_path, sst2):
    config = RunConfig(task="SST-2")
    assert "nothing to estimate from" in describe(estimate(config, sst2, tmp_path, threads=1))
    finished_run(tmp_path, "demo-SST-2", config)  # the shipped demo was timed on another machine
    finished_run(tmp_path, "cli", config, threads=2)
    found = estimate(config, sst2, tmp_path, threads=1)
    assert set(found.seconds.values()) == {None} and found.total is None
    said = describe(found)  # the run that did finish here is named, with why it was left out
    assert "nothing to estimate from" in said and "left out: cli (2 threads)" in said and "demo" not in said
    found = estimate(config, sst2, tmp_path, threads=2)
    assert found.total is not None and found.based_on["tune"] == ["cli"]
    assert describe(found).startswith("**Estimated time on this machine:")


@pytest.mark.parametrize("kind, stages, done, total, now, remaining, expected", [
    # step 1 generating: 100 s for 50 of 200 samples -> 300 s more, nothing after it in a generate job
    ("generate", [("load", 0), ("score", 10), ("tune", 20), ("generate", 100)], 50, 200, 200,
     {"load": 5, "score": 10, "tune": 80, "generate": 400}, 300),
    # the whole pipeline in step 1's tuning: its pace, then the estimates of every later stage
    ("run", [("load", 0), ("tune", 10)], 10, 40, 40, {"tune": 1, "generate": 300, "ppo": 200, "ppo-generate": 150,
                                                      "student": 100, "eval": 50}, 90 + 300 + 200 + 150 + 100 + 50),
    # PPO's own generation comes after its training; its pace, then step 3
    ("run", [("tune", 0), ("generate", 10), ("ppo", 50), ("generate", 80)], 10, 20, 100,
     {"generate": 40, "ppo": 60, "ppo-generate": 45, "student": 100, "eval": 50}, 20 + 100 + 50),
    # in PPO's training: its pace, then its samples and step 3
    ("ppo", [("load", 0), ("ppo", 10)], 6, 24, 40, {"load": 5, "ppo": 100, "ppo-generate": 45}, 90 + 45),
    # the student stage has sub-stages: its estimate less the time spent in it
    ("run", [("pretrain", 0), ("student", 30)], 1, 8, 50, {"student": 80, "eval": 20}, 30 + 20),
    # a later stage never measured here: no honest total
    ("run", [("tune", 0)], 5, 10, 10, {"tune": 20, "generate": None, "student": 5, "eval": 5}, None),
])
def test_time_left(kind, stages, done, total, now, remaining, expected):
    left = time_left(kind, stages, done, total, now, remaining)
    assert left == (pytest.approx(expected) if expected is not None else None)


def test_status_lines_show_the_time_left_of_a_running_job():
    job = Job(id="j1", kind="generate", title="Step 1 on SST-2", state="running", started=0.0, stage="generate",
              done=50, total=200, stages=[("generate", 1e18)])
    assert "**about 5m 00s left**" in job_status(job, None, left=300.0)
    assert "about 5m 00s left" in job_header(job, None, left=300.0)
    assert "this stage: about" in job_status(job, None)  # its own pace when nothing was measured here
    job.state = "done"
    assert "left" not in job_status(job, None, left=300.0)


def _bad_yaml(run):
    run.config_path.write_text("task: [SST-2\n", encoding="utf-8")


def _unknown_setting(run):
    run.config_path.write_text(run.config_path.read_text(encoding="utf-8") + "no_such_setting: 1\n", encoding="utf-8")


def _unknown_task(run):
    text = run.config_path.read_text(encoding="utf-8")
    run.config_path.write_text(text.replace("task: SST-2", "task: a-task-deleted-since", 1), encoding="utf-8")


@pytest.mark.parametrize("damage", [
    _bad_yaml,
    _unknown_setting,
    _unknown_task,
    lambda run: run.summary_path.write_text('{"status": "done", ', encoding="utf-8"),
    lambda run: run.summary_path.write_bytes(b'{"status": "\xff"}'),
    lambda run: run.eval_summary_path.write_text("not json", encoding="utf-8"),
], ids=["config not YAML", "unknown setting", "task gone", "summary cut short", "summary not UTF-8",
        "evaluation not JSON"])
def test_a_damaged_run_gives_no_measurement_and_the_others_still_count(tmp_path, sst2, damage):
    config = RunConfig(task="SST-2")
    finished_run(tmp_path, "good", config)
    bad = finished_run(tmp_path, "damaged", config)
    damage(bad)
    found = estimate(config, sst2, tmp_path, threads=1)
    assert found.total is not None and found.based_on["tune"] == ["good"]
    cached = json.loads((tmp_path / "cache" / "costs.json").read_text(encoding="utf-8"))
    assert cached["damaged"]["costs"] == {} and cached["good"]["costs"]


@pytest.mark.parametrize("bug", [TypeError, KeyError, AttributeError, ZeroDivisionError, ValueError])
def test_a_bug_in_the_cost_reckoning_raises_instead_of_leaving_no_measurement(tmp_path, sst2, monkeypatch, bug):
    import retrikt.estimate as estimate_module

    config = RunConfig(task="SST-2")
    finished_run(tmp_path, "good", config)

    def broken(run):
        raise bug("a bug")

    monkeypatch.setattr(estimate_module, "measured_seconds", broken)
    with pytest.raises(bug, match="a bug"):
        estimate(config, sst2, tmp_path, threads=1)
    assert not (tmp_path / "cache" / "costs.json").exists()  # nothing cached for a later call to trust
