"""What the jobs tab shows: one table row per job and the selected job's header and log."""
from __future__ import annotations

import json
import threading
import time

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..errors import RunError
from ..estimate import NAMES, measured_seconds
from ..jobs import Job
from ..runs import Run, read_summary, run_path, runs_newest_first

JOB_COLUMNS = ("id", "state", "kind", "title", "started", "duration", "progress", "run")
OUTSIDE_RUN_COLUMNS = ("run", "task", "status", "created", "last step", "stage times")


def duration_text(seconds: float | None) -> str:
    """``1h 02m``, ``3m 07s`` or ``12s``; empty for a job that never started."""
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _clock(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) if stamp else ""


def progress_text(job: Job) -> str:
    """Stage and step count, e.g. ``generate 40/520``."""
    if not job.stage:
        return ""
    return f"{job.stage} {job.done}/{job.total}" if job.total else job.stage


def job_rows(jobs: list[Job]) -> list[list[str]]:
    """Rows in ``JOB_COLUMNS`` order, in the order given (the job manager lists newest first)."""
    return [[j.id, j.state, j.kind, j.title, _clock(j.started or j.created), duration_text(j.seconds),
             progress_text(j), j.run or ""] for j in jobs]


def _last_event(run: Run) -> str:
    """The last step a run's log recorded (its last line only: a log grows to megabytes)."""
    try:
        with run.log_path.open("rb") as handle:
            handle.seek(max(0, run.log_path.stat().st_size - 262_144))  # a generate_batch line holds its samples
            lines = handle.read().decode("utf-8", errors="replace").splitlines()
        return str(json.loads(lines[-1]).get("event", "")) if lines else ""
    except (OSError, ValueError, AttributeError):  # no log yet, or a line cut mid-write
        return ""


_outside_rows: dict[tuple[str, str], tuple[tuple, list[str]]] = {}
"""(workspace, run) -> (the stamp of the files a row is read from, the row): the Jobs tab polls every two seconds
and a finished run's files never change, so a row is read again only when one of them did."""
_outside_lock = threading.Lock()


def _files_stamp(run: Run) -> tuple:
    """Size and modification time of each file an outside-run row is read from (absent files included)."""
    stamp = []
    for path in (run.config_path, run.summary_path, run.eval_summary_path, run.log_path):
        try:
            stat = path.stat()
            stamp.append((stat.st_size, stat.st_mtime_ns))
        except OSError:
            stamp.append(None)
    return tuple(stamp)


def _outside_row(name: str, run: Run, summary: dict, created: float) -> list[str]:
    try:
        measured = measured_seconds(run)
    except (OSError, ValueError):  # an evaluation file cut short: the row still shows, without stage times
        measured = {}
    stages = " · ".join(f"{NAMES.get(stage, stage)} {duration_text(s)}" for stage, s in measured.items())
    return [name, str(summary.get("task") or ""), str(summary.get("status") or "not started"), _clock(created),
            _last_event(run), stages]


def outside_run_rows(workspace, job_runs: set[str]) -> list[list[str]]:
    """Rows in ``OUTSIDE_RUN_COLUMNS`` order for the workspace's runs that no studio job made (the command line's),
    newest first: what each is, its status and the seconds each stage took, read from its summary and log."""
    from .demo import DEMO_RUN

    rows, listed = [], set()
    for name in runs_newest_first(workspace):
        if name in job_runs or name == DEMO_RUN:
            continue
        run = Run(run_path(workspace, name))
        stamp = _files_stamp(run)
        if stamp[0] is None:  # no config: deleted while listing
            continue
        key = (str(workspace), name)
        listed.add(key)
        with _outside_lock:
            cached = _outside_rows.get(key)
        if cached is None or cached[0] != stamp:
            created = stamp[0][1] / 1e9  # the config's mtime: when the run was made
            cached = (stamp, _outside_row(name, run, read_summary(workspace, name), created))
            with _outside_lock:
                _outside_rows[key] = cached
        rows.append(list(cached[1]))
    with _outside_lock:  # forget deleted runs, so a long-lived studio does not keep their rows
        for key in [k for k in _outside_rows if k[0] == str(workspace) and k not in listed]:
            del _outside_rows[key]
    return rows


def run_line(run: str, hosted: bool = False) -> str:
    """Where a job's run is: its folder for the local user; a hosted visitor has no disk to look in, so the name."""
    return f"\n\nRun: `{run}`" if hosted else f"\n\nRun folder: `runs/{run}`"


def job_header(job: Job | None, queue_position: int | None = None, hosted: bool = False,
               left: float | None = None) -> str:
    """Markdown summary of one job (state, timing, time left, run folder, error)."""
    if job is None:
        return "No jobs yet: start one in the Generate tab."
    text = f"**{job.title}** (`{job.id}`) — **{job.state}**"
    if queue_position:
        text += f", position {queue_position} in the queue"
    if job.stage:
        text += f" · stage `{progress_text(job)}`"
    if job.seconds is not None:
        text += f" · {duration_text(job.seconds)}"
    if left is not None and job.state == "running":
        text += f" · about {duration_text(left)} left"
    if job.run:
        text += run_line(job.run, hosted)
    if job.error:
        text += f"\n\n**Error:** {job.error}"
    return text


def job_log(job: Job | None) -> str:
    """The job's log lines, oldest first (the job manager keeps the last few hundred)."""
    return "\n".join(job.log) if job else ""


def job_status(job: Job | None, position: int | None, hosted: bool = False, left: float | None = None) -> str:
    """Markdown status line of the job a tab follows: state, stage, progress, time, time left, error, run folder.

    `left`: the whole job's estimated seconds left (see `studio.timing.job_eta`); without it, a running stage's own
    pace so far gives the time left in that stage."""
    if job is None:
        return "No job yet."
    if job.state == "queued":
        return f"**{job.title}** — queued (position {position})"
    pct = f"{100 * job.done / job.total:.0f}%" if job.total else ""
    eta = ""
    if job.state == "running":
        if left is not None:
            eta = f" · **about {duration_text(left)} left**"
        elif job.stages and job.done and job.total:
            stage_seconds = time.time() - job.stages[-1][1]
            eta = f" · this stage: about {duration_text(stage_seconds / job.done * (job.total - job.done))} left"
    text = f"**{job.title}** — {job.state}, stage `{job.stage or '-'}` {job.done}/{job.total} {pct}{eta}"
    if job.seconds is not None:
        text += f" · {job.seconds:.0f}s"
    if job.error:
        text += f"\n\n**Error:** {job.error}"
    if job.state == "done" and job.run:
        text += run_line(job.run, hosted)
    return text


def check_step1_run(run_name: str | None, step1_runs: list[str], may_change: bool, what: str) -> str:
    """The run a PPO or student job (`what`) may start on: its step 1 is done and, in a hosted studio, the asker's
    own step-1 job made it (`may_change`); else a RunError saying what to do."""
    if not run_name or run_name not in step1_runs:
        raise RunError("Pick a run whose step 1 is done (refresh the list after a Generate job finished).")
    if not may_change:
        raise RunError(f"In this hosted studio you can run {what} only on runs your own step-1 jobs made "
                       f"({run_name} is shared and read-only): start step 1 in the Generate tab first.")
    return run_name


LIVE_STATES = ("queued", "running")


def job_is_live(job: Job | None) -> bool:
    """Whether a tab follows `job`'s progress (else it may show a finished run's record instead)."""
    return job is not None and job.state in LIVE_STATES


def finished_marker(job: Job | None) -> str | None:
    """Changes exactly when a followed job finishes successfully (a tab then reloads its results); else None."""
    return f"{job.id}:done" if job is not None and job.state == "done" else None


def tuning_loss_figure(points: list[dict]) -> go.Figure:
    """Step 1's soft-prompt tuning loss per step, from a job's points."""
    steps = [p["step"] for p in points if p.get("stage") == "tune"]
    losses = [p["loss"] for p in points if p.get("stage") == "tune"]
    fig = go.Figure(go.Scatter(x=steps, y=losses, mode="lines+markers", name="loss"))
    fig.update_layout(title="Soft prompt tuning loss", xaxis_title="tuning step", yaxis_title="LM loss",
                      height=300, margin=dict(l=40, r=10, t=40, b=40))
    return fig


PPO_CURVES = (("reward", "reward (weighted, before KL)"), ("label_consistency", "label consistency"),
              ("label_margin", "label margin"), ("diversity", "diversity"), ("ngram_novelty", "bigram novelty"),
              ("validity", "validity"), ("gate", "passed the validity gate"))


def ppo_figure(points: list[dict]) -> go.Figure:
    """Reward terms (left), KL and clip fraction (right) per update."""
    ppo = [p for p in points if p.get("stage") == "ppo"]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("reward terms", "KL to step 1 and clip fraction"))
    steps = [p["step"] for p in ppo]
    drawn = [(key, name) for key, name in PPO_CURVES if any(key in p for p in ppo)]
    for key, name in drawn:
        fig.add_trace(go.Scatter(x=steps, y=[p.get(key) for p in ppo], mode="lines+markers", name=name),
                      row=1, col=1)
    if not drawn:  # plotly hides the axes of a subplot without a trace, titles included
        fig.add_trace(go.Scatter(x=[], y=[], showlegend=False), row=1, col=1)
    for key, name in (("kl", "KL (nats / sample)"), ("clip_fraction", "clip fraction")):
        fig.add_trace(go.Scatter(x=steps, y=[p.get(key) for p in ppo], mode="lines+markers", name=name),
                      row=1, col=2)
    fig.update_xaxes(title_text="PPO update")
    fig.update_yaxes(title_text="mean reward per sample", row=1, col=1)
    fig.update_yaxes(title_text="KL (nats) · clip fraction", row=1, col=2)
    fig.update_layout(height=320, margin=dict(l=60, r=10, t=40, b=40))  # room for the y-axis titles
    return fig


PPO_QUALITY = (("parse_rate", "parse rate", "{:.1%}"), ("teacher_agreement", "teacher agrees with the intended label",
                                                         "{:.1%}"),
               ("self_bleu", "Self-BLEU (lower = more diverse)", "{:.3f}"),
               ("distinct_2", "distinct-2 (higher = more diverse)", "{:.3f}"),
               ("mean_words", "mean words per sample", "{:.1f}"), ("stored", "entries stored", "{:d}"))


def ppo_quality(summary: dict) -> str:
    """A Markdown table of the run's step-1 vs PPO samples (both from its summary), or "" before PPO finished.

    Step 1's generation and PPO's use the same generation config, count and seed, so the columns compare.
    """
    ppo, step1 = summary.get("ppo") or {}, summary.get("generate") or {}
    if not ppo:
        return ""

    def cell(section, key, pattern):
        value = section.get(key)
        return "–" if value is None else pattern.format(value)

    lines = ["| samples | step 1 | after PPO |", "|---|---|---|"]
    for key, name, p in PPO_QUALITY:
        lines.append(f"| {name} | {cell(step1, key, p)} | {cell(ppo, key, p)} |")
        if key == "teacher_agreement" and ppo.get("judge_test_accuracy") is not None:
            # The judge's row follows the teacher's: the teacher is the reward's own judge, this one is not.
            lines.append(f"| independent judge agrees with the intended label (a classifier of the full SST-2 "
                         f"train set, {ppo['judge_test_accuracy']:.1%} on its test split) | "
                         f"{cell(ppo, 'step1_judge_agreement', '{:.1%}')} | {cell(ppo, 'judge_agreement', '{:.1%}')} |")
    if ppo.get("seconds_per_update") is not None:
        lines.append(f"\nPPO: {ppo.get('updates')} updates, {ppo['seconds_per_update']:.1f} s per update, "
                     f"{ppo.get('ppo_seconds', 0) / 60:.1f} min.")
    return "\n".join(lines)
