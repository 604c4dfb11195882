"""A finished run's record for the Generate and PPO tabs: its curves from its own log.jsonl, in the point format a
live job's curves use (`jobs.update_point`), and a few of the samples its store holds.

Reading a record never raises: a run without a log (the shipped demo run has none), a log cut off by a crash or a
store that is gone give empty parts, so a tab can always draw what there is.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RetriktError
from ..jobs import update_point
from ..runs import Run, run_path
from .store_view import open_run_store

log = logging.getLogger("retrikt.studio")

RECORD_SAMPLES = 24
"""Stored samples a tab shows for a run: as many as a live job keeps of its latest generations."""

STEP1_SOURCE, PPO_SOURCE = "generated:step1", "generated:ppo"
_NOT_CURVES = ("time", "event")
"""Numbers in a log record that are bookkeeping, not a quantity a live job plots."""


@dataclass
class RunRecord:
    """What a run's log and store hold for one stage: curve points and sample rows (label, parsed, text)."""

    run: str
    points: list[dict] = field(default_factory=list)
    samples: list[list[str]] = field(default_factory=list)


def read_run_log(workspace: str | Path, run_name: str | None) -> list[dict]:
    """The run's log records, oldest first; a line a crash cut short is skipped, a missing run or log gives []."""
    try:
        text = Run(run_path(workspace, run_name or "")).log_path.read_text(encoding="utf-8")
    except (RetriktError, OSError, UnicodeDecodeError):
        return []
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _record_point(points: list[dict], point: dict) -> None:
    """Append `point`; a step at or before the last one means the stage started again, and its new attempt
    replaces what the earlier one recorded from that step on."""
    points[:] = [p for p in points if p["step"] < point["step"]]
    points.append(point)


def tuning_points(records: list[dict]) -> list[dict]:
    """Step 1's tuning loss per step (`tune_step` records), as live job points of stage `tune`."""
    points: list[dict] = []
    for record in records:
        if record.get("event") == "tune_step" and _is_number(record.get("step")) and _is_number(record.get("loss")):
            _record_point(points, {"stage": "tune", "step": record["step"], "loss": record["loss"]})
    return points


def ppo_points(records: list[dict]) -> list[dict]:
    """One point per PPO update (`ppo_update` records): reward terms, reward, KL, clip fraction and the other
    numbers, spread flat as a live job's points are. A resume drops the updates its checkpoint did not keep."""
    points: list[dict] = []
    for record in records:
        if record.get("event") == "ppo_resumed" and _is_number(record.get("updates_done")):
            points[:] = [p for p in points if p["step"] <= record["updates_done"]]
        if record.get("event") != "ppo_update" or not _is_number(record.get("update")):
            continue
        stats = {k: v for k, v in record.items() if k not in _NOT_CURVES}
        _record_point(points, update_point("ppo", record["update"], stats))
    return points


def stored_sample_rows(workspace: str | Path, run_name: str | None, source: str,
                       limit: int = RECORD_SAMPLES) -> list[list[str]]:
    """Up to `limit` entries of `source` in the run's store, the first of each label, as (label, parsed, text)
    rows; [] without a store.

    Only parsed samples are ever stored, so every row says "yes"."""
    try:
        opened = open_run_store(workspace, run_name)
        # The store holds each label's samples in a block: a share per label shows them all, not only the first.
        share = max(1, limit // len(opened.task.labels))
        entries = [entry for label in opened.task.labels
                   for entry in opened.store.list(source=source, label=label, limit=share)]
    except RetriktError:
        return []
    except Exception:  # noqa: BLE001 - a broken store must leave the tab's curves drawn
        log.exception("could not read the samples of run %s", run_name)
        return []
    return [[entry.label, "yes", entry.text] for entry in entries]


def tuning_record(workspace: str | Path, run_name: str | None) -> RunRecord:
    """Step 1 of a run: its tuning loss curve and its stored step-1 samples."""
    return RunRecord(run_name or "", tuning_points(read_run_log(workspace, run_name)),
                     stored_sample_rows(workspace, run_name, STEP1_SOURCE))


def ppo_record(workspace: str | Path, run_name: str | None) -> RunRecord:
    """PPO on a run: its per-update curves and its stored PPO samples."""
    return RunRecord(run_name or "", ppo_points(read_run_log(workspace, run_name)),
                     stored_sample_rows(workspace, run_name, PPO_SOURCE))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def tuning_status(record: RunRecord) -> str:
    """Markdown status line for a run's step-1 record (starts like a job's status: "Step 1 on RUN — ")."""
    curve = (f"{_count(len(record.points), 'tuning step')}" if record.points
             else "its log holds no tuning steps")
    return (f"**Step 1 on {record.run}** — recorded: {curve}; "
            f"{_count(len(record.samples), 'stored sample')} shown below")


def ppo_status(record: RunRecord, summary: dict) -> str:
    """Markdown status line for a run's PPO record; `summary` (the run's summary.json) tells whether PPO ran."""
    if not record.points and not summary.get("ppo"):
        return f"**PPO on {record.run}** — no PPO recorded for this run yet: start it above."
    counted = (summary.get("ppo") or {}).get("updates")
    curve = (_count(len(record.points), "update") if record.points else "its log holds no per-update curves"
             + (f" (its summary counts {_count(counted, 'update')})" if counted else ""))
    return (f"**PPO on {record.run}** — recorded: {curve}; "
            f"{_count(len(record.samples), 'stored PPO sample')} shown below")
