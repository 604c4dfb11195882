"""Time, before and during: a config's estimated wall time per step (Setup), and a running job's time left (every
tab that follows a job). Both come from `retrikt.estimate`, i.e. from runs finished on this machine."""
from __future__ import annotations

import threading
import time
from pathlib import Path

from ..estimate import NAMES, Estimate, estimate, time_left
from ..jobs import Job, job_threads
from ..runs import RunError, open_run
from .jobs_view import duration_text
from .measured import quick_run_minutes


def estimate_text(config, task, workspace: str | Path, eval_limit: int | None = None, threads: int | None = None) -> str:
    """Markdown: each step's estimated wall time for `config` as a studio job, and the total."""
    found = estimate(config, task, workspace, threads or job_threads(), eval_limit)
    return describe(found)


def describe(found: Estimate) -> str:
    parts = [f"{NAMES[stage]} {duration_text(s) if s is not None else '?'}" for stage, s in found.seconds.items()]
    runs = sorted({name for names in found.based_on.values() for name in names})
    if not runs:
        minutes = quick_run_minutes()
        took = f", which took {minutes} where it was measured," if minutes else ""
        left_out = ""
        if found.other_threads:
            names = sorted(found.other_threads)
            listed = ", ".join(f"{n} ({found.other_threads[n]} threads)" for n in names[:3])
            listed += "…" if len(names) > 3 else ""
            left_out = (f" The runs that finished here ran on another number of torch threads, so their times do "
                        f"not carry over to a studio job and were left out: {listed}.")
        return ("**Estimated time:** no run has finished on this machine yet with as many threads as a studio job, "
                "so there is nothing to estimate from (the quick classroom run in the Classroom tab"
                f"{took} teaches the estimate).{left_out}")
    total = found.total
    head = f"**Estimated time on this machine: {duration_text(total)}**" if total is not None else \
        "**Estimated time on this machine** (steps marked ? have not been measured here yet)"
    return (f"{head} — " + " · ".join(parts)
            + f". From {len(runs)} finished run{'s' if len(runs) != 1 else ''} here ({', '.join(runs[:3])}"
            + ("…" if len(runs) > 3 else "") + ").")


_estimates: dict[str, Estimate | None] = {}
_lock = threading.Lock()


def job_eta(workspace: str | Path, job: Job | None, eval_limit: int | None = None) -> float | None:
    """Seconds until a running job ends (None: not running, or a stage of it was never measured here)."""
    if job is None or job.state != "running" or not job.run:
        return None
    with _lock:
        if job.id not in _estimates:
            try:
                run = open_run(workspace, job.run)
                from ..tasks import task_of_run

                _estimates[job.id] = estimate(run.config, task_of_run(run), workspace, job_threads(), eval_limit)
            except (RunError, OSError, ValueError):
                return None  # the run folder is not written yet: ask again on the next poll
            except Exception:  # noqa: BLE001 - an estimate must never break a status line
                _estimates[job.id] = None
        found = _estimates[job.id]
    if found is None:
        return None
    return time_left(job.kind, [tuple(s) for s in job.stages], job.done, job.total, time.time(), found.seconds)
