"""What the jobs tab shows: one table row per job and the selected job's header and log."""
from __future__ import annotations

import time

from .jobs import Job

JOB_COLUMNS = ("id", "state", "kind", "title", "started", "duration", "progress", "run")


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


def job_header(job: Job | None, queue_position: int | None = None) -> str:
    """Markdown summary of one job (state, timing, run folder, error)."""
    if job is None:
        return "No jobs yet: start one in the Generate tab."
    text = f"**{job.title}** (`{job.id}`) — **{job.state}**"
    if queue_position:
        text += f", position {queue_position} in the queue"
    if job.stage:
        text += f" · stage `{progress_text(job)}`"
    if job.seconds is not None:
        text += f" · {duration_text(job.seconds)}"
    if job.run:
        text += f"\n\nRun folder: `runs/{job.run}`"
    if job.error:
        text += f"\n\n**Error:** {job.error}"
    return text


def job_log(job: Job | None) -> str:
    """The job's log lines, oldest first (the job manager keeps the last few hundred)."""
    return "\n".join(job.log) if job else ""


def job_status(job: Job | None, position: int | None) -> str:
    """Markdown status line of the job a tab follows: state, stage, progress, time, ETA, error, run folder."""
    if job is None:
        return "No job yet."
    if job.state == "queued":
        return f"**{job.title}** — queued (position {position})"
    pct = f"{100 * job.done / job.total:.0f}%" if job.total else ""
    eta = ""
    if job.state == "running" and job.stage in ("generate", "unlabeled") and job.done and job.total and job.seconds:
        eta = f", {job.stage} ETA ~{job.seconds / job.done * (job.total - job.done):.0f}s (rough)"
    text = f"**{job.title}** — {job.state}, stage `{job.stage or '-'}` {job.done}/{job.total} {pct}{eta}"
    if job.seconds is not None:
        text += f" · {job.seconds:.0f}s"
    if job.error:
        text += f"\n\n**Error:** {job.error}"
    if job.state == "done" and job.run:
        text += f"\n\nRun folder: `runs/{job.run}`"
    return text
