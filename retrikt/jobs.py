"""Background jobs: one heavy job at a time in a worker thread, a FIFO queue, cooperative cancel, persisted state.

The UI never blocks on a job: it submits, then polls `JobManager.snapshot()`. State is written to
`<workspace>/jobs.json` (atomically, throttled) so a page reload or a server restart shows the same jobs; a job
that was running or queued when the process died is marked `interrupted` on the next start.
"""
from __future__ import annotations

import json
import os
import queue
import threading
import time
import traceback
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from .errors import Cancelled, JobRefused, RetriktError

STATES = ("queued", "running", "done", "failed", "cancelled", "interrupted")



@dataclass
class Job:
    id: str
    kind: str
    title: str
    state: str = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    stage: str = ""
    done: int = 0
    total: int = 0
    message: str = ""
    run: str | None = None
    error: str | None = None
    log: list[str] = field(default_factory=list)
    points: list[dict] = field(default_factory=list)
    """Curve points (stage, step, loss or reward terms) for live plots."""
    samples: list[dict] = field(default_factory=list)
    """The latest generated samples (label, text, parsed) for the live view."""
    owner: str | None = None
    """Visitor who submitted the job (hosted mode); None = the single local user."""
    stages: list = field(default_factory=list)
    """(stage, start time) of each stage entered so far, in order (a stage can come back: PPO generates again after
    step 1); time estimates read the current stage's pace from it."""

    @property
    def seconds(self) -> float | None:
        if self.started is None:
            return None
        return (self.finished or time.time()) - self.started


JobFn = Callable[[Callable, Callable[[], bool], Job], str | None]
"""fn(progress, should_stop, job) -> run name; progress(stage, done, total, info)."""

_MAX_LOG, _MAX_SAMPLES = 400, 24


def update_point(stage: str, step: int, stats: dict) -> dict:
    """A PPO update as one curve point: its reward terms spread out, then its flat numbers (the live job's curves
    and a finished run's record, read back from its log, draw the same points)."""
    terms = stats.get("reward_terms")
    return {"stage": stage, "step": step, **(terms if isinstance(terms, dict) else {}),
            **{k: v for k, v in stats.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}}


class JobManager:
    def __init__(self, workspace: str | Path, max_queued: int | None = None, per_owner: int | None = None,
                 owners_only: bool = False):
        """`max_queued`: jobs that may wait behind the running one; `per_owner`: jobs one owner may have waiting
        or running; `owners_only`: only a job's owner may cancel it. None / False = no limit (local use)."""
        self.max_queued, self.per_owner, self.owners_only = max_queued, per_owner, owners_only
        self.path = Path(workspace) / "jobs.json"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._jobs: dict[str, Job] = {}
        self._cancel: dict[str, threading.Event] = {}
        self._queue: queue.Queue = queue.Queue()
        self._last_save = 0.0
        self._load()
        self._worker = threading.Thread(target=self._work, name="retrikt-jobs", daemon=True)
        self._worker.start()

    # ---- persistence ---------------------------------------------------------------------------------------
    def _load(self) -> None:
        if not self.path.is_file():
            return
        try:
            records = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            records = []
        for record in records:
            job = Job(**{k: v for k, v in record.items() if k in Job.__dataclass_fields__})
            if job.state in ("queued", "running"):
                job.state = "interrupted"
                job.finished = job.finished or time.time()
                job.log.append("interrupted: the server stopped while this job was " + record["state"])
            self._jobs[job.id] = job
        self._save(force=True)

    def _save(self, force: bool = False) -> None:
        now = time.time()
        if not force and now - self._last_save < 1.0:
            return
        # One writer at a time: two threads sharing the temp file would replace each other's file away.
        with self._lock:
            data = json.dumps([asdict(j) for j in self._jobs.values()])
            self._last_save = now
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(data, encoding="utf-8")
            tmp.replace(self.path)

    # ---- API -----------------------------------------------------------------------------------------------
    def submit(self, kind: str, title: str, fn: JobFn, owner: str | None = None, run: str | None = None) -> Job:
        """Queue a job (JobRefused when the queue or the owner's share is full); `run` names the run it writes."""
        job = Job(id=uuid.uuid4().hex[:10], kind=kind, title=title, owner=owner, run=run)
        with self._lock:
            active = [j for j in self._jobs.values() if j.state in ("queued", "running")]
            if self.per_owner is not None and sum(j.owner == owner for j in active) >= self.per_owner:
                raise JobRefused(f"You already have {self.per_owner} job(s) waiting or running: wait for it to "
                                 "finish (see the Jobs tab) or cancel it first.")
            waiting = sum(j.state == "queued" for j in active)
            if self.max_queued is not None and waiting >= self.max_queued:
                raise JobRefused(f"The job queue is full ({waiting} waiting behind the running job): "
                                 "try again in a few minutes.")
            self._jobs[job.id] = job
            self._cancel[job.id] = threading.Event()
        self._save(force=True)
        self._queue.put((job.id, fn))
        return job

    def runs_of(self, owner: str | None) -> set[str]:
        """Runs written by the owner's jobs (hosted mode: what a visitor may change)."""
        with self._lock:
            return {j.run for j in self._jobs.values() if j.owner == owner and j.run}

    def cancel(self, job_id: str, owner: str | None = None) -> bool:
        """Ask a job to stop; a queued job is cancelled at once, a running one at its next step boundary."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.state not in ("queued", "running"):
                return False
            if self.owners_only and job.owner != owner:
                raise JobRefused("Only the visitor who started this job can cancel it.")
            self._cancel[job_id].set()
            if job.state == "queued":
                job.state, job.finished = "cancelled", time.time()
            job.log.append("cancel requested")
        self._save(force=True)
        return True

    def wait_ended(self, job_id: str, timeout: float) -> Job | None:
        """A copy of the job once it is no longer queued or running, or None after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while (job := self.get(job_id)) is not None and job.state in ("queued", "running"):
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return Job(**asdict(job)) if job else None

    def snapshot(self) -> list[Job]:
        """Copies of all jobs, newest first (safe to read while the worker updates them)."""
        with self._lock:
            return [Job(**asdict(j)) for j in sorted(self._jobs.values(), key=lambda j: -j.created)]

    def queue_position(self, job_id: str) -> int | None:
        with self._lock:
            queued = sorted((j for j in self._jobs.values() if j.state == "queued"), key=lambda j: j.created)
            ids = [j.id for j in queued]
        return ids.index(job_id) + 1 if job_id in ids else None

    # ---- worker --------------------------------------------------------------------------------------------
    def _work(self) -> None:
        lower_thread_priority(JOB_NICENESS)
        while True:
            job_id, fn = self._queue.get()
            with self._lock:
                job = self._jobs[job_id]
                if job.state != "queued":
                    continue
                job.state, job.started = "running", time.time()
            self._save(force=True)
            stop = self._cancel[job_id]
            try:
                job.run = fn(self._progress(job), stop.is_set, job) or job.run
                final, note = "done", "done"
            except Cancelled as exc:
                final, note = "cancelled", f"cancelled: {exc}"
            except Exception as exc:  # noqa: BLE001 - a failed job must never take the worker down
                final, note = "failed", f"{type(exc).__name__}: {exc}"
                job.error = note
                if not isinstance(exc, RetriktError):
                    job.log.append(traceback.format_exc(limit=6))
            with self._lock:
                job.state, job.finished, job.message = final, time.time(), note
                job.log.append(note)
            self._save(force=True)

    def _progress(self, job: Job):
        def progress(stage: str, done: int, total: int, info: dict) -> None:
            with self._lock:
                if stage != job.stage:
                    job.stages.append((stage, time.time()))
                job.stage, job.done, job.total = stage, done, total
                if info.get("message"):
                    job.message = info["message"]
                    job.log.append(f"[{stage}] {info['message']}")
                if "loss" in info:
                    job.points.append({"stage": stage, "step": done, "loss": info["loss"]})
                if "terms" in info:
                    job.points.append({"stage": stage, "step": done, **info["terms"]})
                if "stats" in info:
                    job.points.append(update_point(stage, done, info["stats"]))
                for s in info.get("samples", []):
                    job.samples.append({"label": s.label, "text": s.raw.strip(), "parsed": s.fields is not None})
                del job.samples[:-_MAX_SAMPLES]
                del job.log[:-_MAX_LOG]
            self._save()

        return progress


JOB_NICENESS = 10
"""How much lower than page actions the job thread runs (Linux niceness; torch threads it starts inherit it)."""
# design choice: a job yields the CPU to page actions; it loses little, since pages are short bursts.


def lower_thread_priority(niceness: int) -> bool:
    """Raise the calling thread's niceness (Linux: per thread); False where the OS does not allow it."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
        return True
    except (AttributeError, OSError):
        return False


def preload_ml_stack() -> float:
    """Import transformers (the classes we use), peft and sentence-transformers; returns the seconds it took.

    Call it once, in the main thread, before any job thread starts: transformers resolves
    `from transformers import AutoModelForCausalLM` through a lazy module whose first attribute lookup is not
    thread-safe, and a job thread importing it while another thread was half-way through the same import has
    failed with "cannot import name 'AutoModelForCausalLM'"."""
    started = time.perf_counter()
    import peft  # noqa: F401
    import sentence_transformers  # noqa: F401
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer  # noqa: F401

    return time.perf_counter() - started


def job_threads(environ=None) -> int:
    """Torch threads for the studio's background jobs: every core but one, so page actions keep a core.

    design choice: on 2 cores a job with 2 torch threads pushed store-tab actions past 1 s; `RETRIKT_JOB_THREADS`
    overrides it (the CLI is not affected and uses every core)."""
    env = os.environ if environ is None else environ
    if env.get("RETRIKT_JOB_THREADS", "").strip():
        return max(1, int(env["RETRIKT_JOB_THREADS"]))
    return max(1, (os.cpu_count() or 1) - 1)
