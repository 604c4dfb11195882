"""A finished run's record (retrikt/studio/run_history.py): its curves read back from log.jsonl in the same point
format a live job plots, its stored samples by source, and empty parts (never an exception) for what is missing."""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from retrikt.config import RunConfig, save_yaml
from retrikt.jobs import JobManager
from retrikt.ppo.trainer import UpdateStats
from retrikt.runs import Run, read_summary
from retrikt.studio.demo import DEMO_RUN, install_demo
from retrikt.studio.jobs_view import ppo_figure, tuning_loss_figure
from retrikt.studio.run_history import (
    PPO_SOURCE, STEP1_SOURCE, RunRecord, ppo_points, ppo_record, ppo_status, read_run_log, tuning_points, tuning_record,
    tuning_status,
)
from retrikt.studio.store_view import open_run_store

ABANDONED_TUNE_STEPS, PPO_CHECKPOINT, ABANDONED_UPDATES = 3, 3, 5
"""The log's first, cancelled attempts: tuning up to step 3; PPO up to update 5 with its checkpoint at update 3."""


def tuning_losses(summary: dict, steps: int) -> list[float]:
    """`steps` losses falling from the summary's first to its last tuning loss."""
    first, last = summary["tune"]["loss_first"], summary["tune"]["loss_last"]
    return [first + (last - first) * i / (steps - 1) for i in range(steps)]


def update_stats(update: int) -> UpdateStats:
    """The stats a PPO update reports, with numbers that differ per update (so a mixed-up order shows)."""
    stats = {f.name: 0.0 for f in fields(UpdateStats)}
    stats.update(update=update, key="negative" if update % 2 else "positive", reward=1.0 + update / 100,
                 reward_terms={"label_consistency": 0.5 + update / 100, "diversity": 0.3, "validity": 1.0},
                 kl=update / 10, clip_fraction=update / 200)
    return UpdateStats(**stats)


def write_recorded_log(run: Run, progress=None) -> tuple[int, int]:
    """Give a run the log step 1 and PPO write (through `Run.log`, with the records their stages write), including
    a cancelled attempt of each and a last line a crash cut short; the final attempts also go to `progress` the
    way the stages report them to a job. Returns (tuning steps, PPO updates) of the final attempts."""
    summary = run.summary()
    steps, updates = 2 * ABANDONED_TUNE_STEPS + 1, summary["ppo"]["updates"]
    report = progress or (lambda *args: None)
    for step, loss in enumerate(tuning_losses(summary, ABANDONED_TUNE_STEPS), start=1):
        run.log("tune_step", step=step, loss=loss + 1.0)
    run.log("cancelled", message="prompt tuning cancelled")
    for step, loss in enumerate(tuning_losses(summary, steps), start=1):
        run.log("tune_step", step=step, loss=loss)
        report("tune", step, steps, {"loss": loss})
    run.log("generate_batch", done=2, total=2, samples=[{"label": "negative", "text": "dull", "parsed": True}])
    run.log("done")
    for update in range(1, ABANDONED_UPDATES + 1):
        run.log("ppo_update", **{**update_stats(update).as_dict(), "reward": -1.0})
    run.log("cancelled", message="PPO cancelled")
    run.log("ppo_resumed", updates_done=PPO_CHECKPOINT)
    for update in range(PPO_CHECKPOINT + 1, updates + 1):
        run.log("ppo_update", **update_stats(update).as_dict())
    for update in range(1, updates + 1):
        report("ppo", update, updates, {"stats": update_stats(update).as_dict()})
    with run.log_path.open("a", encoding="utf-8") as handle:
        handle.write('{"time": 1, "event": "ppo_upd')
    return steps, updates


def live_job_points(workspace: Path, run: Run) -> list[dict]:
    """The points a live job collects from the same progress reports (the studio's job manager makes them)."""
    replayed = Run(workspace / "replayed")
    replayed.path.mkdir()
    replayed.summary_path.write_text(run.summary_path.read_text(encoding="utf-8"), encoding="utf-8")

    def replay(progress, should_stop, job):
        write_recorded_log(replayed, progress)

    jobs = JobManager(workspace / "live-jobs")
    finished = jobs.wait_ended(jobs.submit("replay", "replay the stages' reports", replay).id, 120)
    assert finished is not None and finished.state == "done", finished and finished.error
    return finished.points


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """The shipped demo run (step 1 and PPO) with the log its stages would have written: (workspace, steps,
    updates, the points a live job made of the same reports)."""
    workspace = tmp_path_factory.mktemp("history")
    install_demo(workspace)
    run = Run(workspace / "runs" / DEMO_RUN)
    steps, updates = write_recorded_log(run)
    return workspace, steps, updates, live_job_points(workspace, run)


def test_the_demo_runs_recorded_curves_are_its_final_attempts(recorded):
    workspace, steps, updates, _ = recorded
    summary = read_summary(workspace, DEMO_RUN)
    tuning, ppo = tuning_record(workspace, DEMO_RUN), ppo_record(workspace, DEMO_RUN)
    assert [p["step"] for p in tuning.points] == list(range(1, steps + 1))
    assert tuning.points[0]["loss"] == summary["tune"]["loss_first"]
    assert tuning.points[-1]["loss"] == pytest.approx(summary["tune"]["loss_last"])
    assert len(ppo.points) == summary["ppo"]["updates"] == updates
    assert [p["step"] for p in ppo.points] == list(range(1, updates + 1))
    # The cancelled attempt's updates up to its checkpoint stay; after it, the resumed attempt's replace them.
    assert ppo.points[PPO_CHECKPOINT - 1]["reward"] == -1.0 and ppo.points[PPO_CHECKPOINT]["reward"] > 0


def test_recorded_points_have_the_live_jobs_format(recorded):
    workspace, _, updates, live = recorded
    tuning, ppo = tuning_record(workspace, DEMO_RUN), ppo_record(workspace, DEMO_RUN)
    assert tuning.points == [p for p in live if p["stage"] == "tune"]
    live_ppo = [p for p in live if p["stage"] == "ppo"]
    assert ppo.points[PPO_CHECKPOINT:] == live_ppo[PPO_CHECKPOINT:]
    assert {"reward", "label_consistency", "kl", "clip_fraction"} <= set(ppo.points[-1])


@pytest.mark.parametrize("read, source", [(tuning_record, STEP1_SOURCE), (ppo_record, PPO_SOURCE)])
def test_samples_come_from_the_stages_own_source(recorded, read, source):
    workspace = recorded[0]
    opened = open_run_store(workspace, DEMO_RUN)
    texts = {entry.label: set() for entry in opened.store.list(source=source)}
    for entry in opened.store.list(source=source):
        texts[entry.label].add(entry.text)
    rows = read(workspace, DEMO_RUN).samples
    assert rows and all(text in texts[label] and parsed == "yes" for label, parsed, text in rows)
    assert {label for label, _, _ in rows} == set(opened.task.labels)


def test_status_lines_count_what_the_record_holds(recorded):
    workspace, steps, updates, _ = recorded
    tuning, ppo = tuning_record(workspace, DEMO_RUN), ppo_record(workspace, DEMO_RUN)
    assert tuning_status(tuning).startswith(f"**Step 1 on {DEMO_RUN}** — recorded: {steps} tuning steps; "
                                            f"{len(tuning.samples)} stored samples")
    summary = read_summary(workspace, DEMO_RUN)
    assert ppo_status(ppo, summary).startswith(
        f"**PPO on {DEMO_RUN}** — recorded: {updates} updates; {len(ppo.samples)} stored PPO samples")
    # As the demo run is shipped: without its log, the summary still tells that PPO ran and how long.
    assert ppo_status(RunRecord(DEMO_RUN, samples=ppo.samples), summary).startswith(
        f"**PPO on {DEMO_RUN}** — recorded: its log holds no per-update curves (its summary counts {updates} updates)")


def test_history_figures_draw_every_point_with_axis_titles(recorded):
    workspace, steps, updates, _ = recorded
    tuning = tuning_loss_figure(tuning_record(workspace, DEMO_RUN).points)
    assert len(tuning.data[0].x) == steps and tuning.layout.xaxis.title.text == "tuning step"
    assert tuning.layout.yaxis.title.text
    ppo = ppo_figure(ppo_record(workspace, DEMO_RUN).points)
    assert {trace.name for trace in ppo.data} >= {"reward (weighted, before KL)", "KL (nats / sample)"}
    assert all(len(trace.x) == updates for trace in ppo.data)
    assert ppo.layout.xaxis.title.text == ppo.layout.xaxis2.title.text == "PPO update"
    assert ppo.layout.yaxis.title.text and ppo.layout.yaxis2.title.text


def _run_without_log(workspace: Path) -> str:
    folder = workspace / "runs" / "no-log"
    folder.mkdir(parents=True)
    save_yaml(RunConfig(workspace=str(workspace), run_name="no-log", task="SST-2"), folder / "config.yaml")
    return "no-log"


def _run_with_a_broken_log(workspace: Path) -> str:
    name = _run_without_log(workspace)
    (workspace / "runs" / name / "log.jsonl").write_bytes(
        b'[1, 2]\n{"event": "tune_step", "step": "one", "loss": null}\n{"event": "ppo_update"}\n\xff\xfe\n{"ev')
    return name


@pytest.mark.parametrize("make_run", [_run_without_log, _run_with_a_broken_log, lambda ws: "never-made",
                                      lambda ws: "../outside", lambda ws: None])
@pytest.mark.parametrize("read", [tuning_record, ppo_record])
def test_a_run_without_a_readable_log_or_store_gives_an_empty_record(tmp_path, make_run, read):
    name = make_run(tmp_path)
    record = read(tmp_path, name)
    assert record.points == [] and record.samples == []
    assert ppo_status(record, {}).endswith("no PPO recorded for this run yet: start it above.")


def test_a_log_with_a_line_cut_short_keeps_the_lines_before(tmp_path):
    run = Run(tmp_path / "runs" / "cut")
    run.path.mkdir(parents=True)
    run.log("tune_step", step=1, loss=2.0)
    with run.log_path.open("a", encoding="utf-8") as handle:
        handle.write('{"time": 1, "event": "tune_st')
    assert [(r["event"], r["loss"]) for r in read_run_log(tmp_path, "cut")] == [("tune_step", 2.0)]


def _update(n: int, reward: float) -> dict:
    return {"event": "ppo_update", **update_stats(n).as_dict(), "reward": reward}


@pytest.mark.parametrize("records, expected", [
    # A resume from the update-3 checkpoint, cancelled again before its first update: the prompt is update 3's.
    ([*(_update(n, 0.0) for n in range(1, 6)), {"event": "ppo_resumed", "updates_done": 3}, {"event": "cancelled"}],
     [(1, 0.0), (2, 0.0), (3, 0.0)]),
    # Resumed from there and cancelled after update 4: the first attempt's update 5 is gone too.
    ([*(_update(n, 0.0) for n in range(1, 6)), {"event": "ppo_resumed", "updates_done": 3}, _update(4, 1.0)],
     [(1, 0.0), (2, 0.0), (3, 0.0), (4, 1.0)]),
    # PPO started afresh (no checkpoint kept): its update 1 replaces the whole earlier curve.
    ([*(_update(n, 0.0) for n in range(1, 4)), _update(1, 1.0)], [(1, 1.0)]),
])
def test_ppo_points_keep_only_what_the_final_attempt_stands_on(records, expected):
    assert [(p["step"], p["reward"]) for p in ppo_points(records)] == expected


def test_tuning_started_again_replaces_the_earlier_attempt():
    records = [{"event": "tune_step", "step": s, "loss": 9.0} for s in (1, 2, 3)]
    records += [{"event": "tune_step", "step": s, "loss": 5.0} for s in (1, 2)]
    assert [(p["step"], p["loss"]) for p in tuning_points(records)] == [(1, 5.0), (2, 5.0)]
