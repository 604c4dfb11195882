import json
import threading
import time

import pytest

from retrikt.jobs import JobManager
from retrikt.errors import Cancelled


def _wait(manager, job_id, states, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = manager.get(job_id)
        if job.state in states:
            return job
        time.sleep(0.02)
    raise AssertionError(f"job stayed {manager.get(job_id).state}")


def _looping_job(steps=1000, gate=None):
    def fn(progress, should_stop, job):
        if gate is not None:
            gate.wait(5)
        for step in range(steps):
            if should_stop():
                raise Cancelled("stopped by user")
            progress("tune", step + 1, steps, {"loss": 1.0 / (step + 1)})
            time.sleep(0.005)
        return "run-1"

    return fn


def test_runs_one_at_a_time_and_cancel_stops_within_a_step(tmp_path):
    manager = JobManager(tmp_path)
    first = manager.submit("generate", "first", _looping_job())
    second = manager.submit("generate", "second", _looping_job(steps=3))
    _wait(manager, first.id, {"running"})
    assert manager.get(second.id).state == "queued" and manager.queue_position(second.id) == 1
    assert manager.cancel(first.id)
    job = _wait(manager, first.id, {"cancelled"})
    assert job.done < 1000 and job.points and job.points[-1]["stage"] == "tune"
    done = _wait(manager, second.id, {"done"})
    assert done.run == "run-1" and done.done == 3


def test_cancel_a_queued_job_never_runs_it(tmp_path):
    manager = JobManager(tmp_path)
    gate = threading.Event()
    blocker = manager.submit("generate", "blocker", _looping_job(steps=2, gate=gate))
    queued = manager.submit("generate", "queued", _looping_job(steps=2))
    assert manager.cancel(queued.id)
    gate.set()
    _wait(manager, blocker.id, {"done"})
    time.sleep(0.1)
    assert manager.get(queued.id).state == "cancelled" and manager.get(queued.id).started is None


def test_failure_is_recorded_and_the_worker_survives(tmp_path):
    manager = JobManager(tmp_path)

    def boom(progress, should_stop, job):
        raise ValueError("bad thing")

    failed = manager.submit("generate", "boom", boom)
    assert "bad thing" in _wait(manager, failed.id, {"failed"}).error
    ok = manager.submit("generate", "ok", _looping_job(steps=2))
    _wait(manager, ok.id, {"done"})


def test_restart_marks_running_and_queued_jobs_interrupted(tmp_path):
    # What a killed server leaves behind: jobs.json with a running and a queued job.
    records = [
        {"id": "a1", "kind": "generate", "title": "was running", "state": "running", "created": 1.0, "started": 2.0},
        {"id": "b2", "kind": "generate", "title": "was queued", "state": "queued", "created": 3.0},
        {"id": "c3", "kind": "generate", "title": "finished", "state": "done", "created": 0.5, "run": "r"},
    ]
    (tmp_path / "jobs.json").write_text(json.dumps(records))
    manager = JobManager(tmp_path)
    states = {j.id: j.state for j in manager.snapshot()}
    assert states == {"a1": "interrupted", "b2": "interrupted", "c3": "done"}
    assert "interrupted" in manager.get("a1").log[-1]
    reloaded = json.loads((tmp_path / "jobs.json").read_text())
    assert {r["id"]: r["state"] for r in reloaded}["a1"] == "interrupted"


def test_ppo_update_stats_become_flat_curve_points(tmp_path):
    from retrikt.studio.jobs_view import ppo_figure

    stats = {"update": 1, "key": "positive", "reward": 0.6, "kl": 0.3, "clip_fraction": 0.1,
             "reward_terms": {"label_consistency": 0.7, "diversity": 0.4}}

    def fn(progress, should_stop, job):
        progress("ppo", 1, 2, {"message": "update 1", "stats": stats})
        progress("ppo", 2, 2, {"message": "update 2", "stats": {**stats, "update": 2, "reward": 0.8}})

    manager = JobManager(tmp_path)
    job = _wait(manager, manager.submit("ppo", "PPO", fn).id, {"done"})
    assert [p["reward"] for p in job.points] == [0.6, 0.8]
    assert job.points[0] == {"stage": "ppo", "step": 1, "label_consistency": 0.7, "diversity": 0.4, "update": 1,
                             "reward": 0.6, "kl": 0.3, "clip_fraction": 0.1}
    figure = ppo_figure(job.points)
    assert {t.name for t in figure.data} == {"reward (weighted, before KL)", "label consistency", "diversity",
                                             "KL (nats / sample)", "clip fraction"}
    assert list(figure.data[0].y) == [0.6, 0.8]


@pytest.mark.parametrize("summary,expected_rows", [
    ({"generate": {"teacher_agreement": 0.7}}, []),  # PPO not finished: no table
    ({"generate": {"teacher_agreement": 0.6766, "self_bleu": 0.2499, "distinct_2": 0.41, "mean_words": 14.2,
                   "parse_rate": 0.9692, "stored": 501},
      "ppo": {"teacher_agreement": 0.819, "self_bleu": 0.40, "stored": 480, "updates": 24,
              "seconds_per_update": 20.0, "ppo_seconds": 480.0}},
     ["| teacher agrees with the intended label | 67.7% | 81.9% |", "| Self-BLEU (lower = more diverse) | 0.250 | 0.400 |",
      "| distinct-2 (higher = more diverse) | 0.410 | – |", "| mean words per sample | 14.2 | – |",
      "| entries stored | 501 | 480 |", "PPO: 24 updates, 20.0 s per update, 8.0 min."]),
    # SST-2: the independent judge's row follows the teacher's (a task without a judge has no such row)
    ({"generate": {"teacher_agreement": 0.61},
      "ppo": {"teacher_agreement": 0.83, "judge_agreement": 0.7012, "step1_judge_agreement": 0.65,
              "judge_test_accuracy": 0.8177}},
     ["| teacher agrees with the intended label | 61.0% | 83.0% |",
      "| independent judge agrees with the intended label (a classifier of the full SST-2 train set, 81.8% on its "
      "test split) | 65.0% | 70.1% |"]),
])
def test_ppo_quality_table_compares_step1_and_ppo(summary, expected_rows):
    from retrikt.studio.jobs_view import ppo_quality

    table = ppo_quality(summary)
    if not expected_rows:
        assert table == ""
    lines = table.splitlines()
    for row in expected_rows:
        assert row in lines
    assert ("independent judge" in table) == ("judge_test_accuracy" in summary.get("ppo", {}))
    if "independent judge" in table:
        assert lines.index(expected_rows[1]) == lines.index(expected_rows[0]) + 1


@pytest.mark.parametrize("points", [[], [{"stage": "ppo", "step": 1, "kl": 0.2, "clip_fraction": 0.1}]])
def test_the_reward_subplot_keeps_its_axes_without_reward_curves(points):
    from retrikt.studio.jobs_view import ppo_figure

    figure = ppo_figure(points)
    assert any(t.xaxis == "x" for t in figure.data)  # a subplot without a trace is drawn with no axes at all
    assert figure.layout.xaxis.title.text == "PPO update"
    assert figure.layout.yaxis.title.text == "mean reward per sample"


def _cli_run(workspace, name, summary=None, log_events=()):
    from retrikt.config import RunConfig, save_yaml

    folder = workspace / "runs" / name
    folder.mkdir(parents=True)
    save_yaml(RunConfig(workspace=str(workspace), run_name=name), folder / "config.yaml")
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    with (folder / "log.jsonl").open("w", encoding="utf-8") as handle:
        for event in log_events:
            handle.write(json.dumps({"time": 0, "event": event}) + "\n")


def test_runs_made_outside_the_studio_are_listed_with_status_and_stage_times(tmp_path):
    from retrikt.studio.jobs_view import OUTSIDE_RUN_COLUMNS, outside_run_rows

    _cli_run(tmp_path, "from-cli", {"task": "SST-2", "status": "done", "load_seconds": 3.4,
                                    "tune": {"seconds": 140.2}, "student": {"seconds": 131.0}},
             ["load", "tune_step", "student_trained"])
    _cli_run(tmp_path, "started-here", {"task": "SST-2", "status": "running"}, ["load"])
    _cli_run(tmp_path, "bare")  # a folder with a config only: nothing ran yet
    rows = {row[0]: dict(zip(OUTSIDE_RUN_COLUMNS, row)) for row in outside_run_rows(tmp_path, {"started-here"})}
    assert set(rows) == {"from-cli", "bare"}  # a studio job's run is in the jobs table already
    cli = rows["from-cli"]
    assert (cli["task"], cli["status"], cli["last step"]) == ("SST-2", "done", "student_trained")
    assert cli["stage times"] == "load the teacher 3s · tune the soft prompt 2m 20s · train the students 2m 11s"
    assert rows["bare"]["status"] == "not started" and rows["bare"]["stage times"] == ""
    (tmp_path / "runs" / "from-cli" / "log.jsonl").write_text('{"event": "tune_step"}\n{"event": "gen', "utf-8")
    (tmp_path / "runs" / "bare" / "eval").mkdir()
    (tmp_path / "runs" / "bare" / "eval" / "summary.json").write_text("{", "utf-8")  # an evaluation cut short
    rows = {row[0]: dict(zip(OUTSIDE_RUN_COLUMNS, row)) for row in outside_run_rows(tmp_path, set())}
    assert rows["from-cli"]["last step"] == ""  # a line cut mid-write is read as no step, not a crash
    assert rows["bare"]["stage times"] == ""
    long_line = json.dumps({"time": 0, "event": "generate_batch", "samples": ["x" * 80] * 200})  # ~17 KB
    (tmp_path / "runs" / "from-cli" / "log.jsonl").write_text(long_line + "\n", "utf-8")
    assert {row[0]: row[4] for row in outside_run_rows(tmp_path, set())}["from-cli"] == "generate_batch"


def test_an_outside_runs_row_is_read_again_only_when_one_of_its_files_changed(tmp_path, monkeypatch):
    from retrikt.studio import jobs_view

    _cli_run(tmp_path, "from-cli", {"task": "SST-2", "status": "running"}, ["load"])
    reads = []
    measured = jobs_view.measured_seconds
    monkeypatch.setattr(jobs_view, "measured_seconds", lambda run: reads.append(run.path.name) or measured(run))
    first = jobs_view.outside_run_rows(tmp_path, set())
    assert jobs_view.outside_run_rows(tmp_path, set()) == first and reads == ["from-cli"]  # a poll tick reads nothing
    with (tmp_path / "runs" / "from-cli" / "log.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"time": 1, "event": "tune_step"}) + "\n")  # the run moved on
    assert jobs_view.outside_run_rows(tmp_path, set())[0][4] == "tune_step" and len(reads) == 2
