"""Run folders: the one place that knows their layout. Nothing else joins a path inside a run.

`<workspace>/runs/<name>/`: config.yaml, log.jsonl, summary.json, adapter/ (step 1's soft prompt), store/ (the
Chroma knowledge store), ppo/ (step 2's checkpoint and prompt), student/ and student_kd/ (step 3), eval/ (the
evaluation's summary and per-example records), task/ (a saved task's own copy). The shipped demo asset
(`assets/demo-run/`) uses the same names. store-edits.jsonl is the history of hand edits to the store. A hosted
visitor's edited copy of a store lives in `<workspace>/visitors/<visitor>/<run>/store/`, with that visitor's edit
history next to it; a hosted studio reads a run's store from a file copy, `<workspace>/serving/<run>/<stamp>/store/`.
"""
from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import RunConfig, load_yaml, save_yaml
from .errors import RunError

STUDENT_WEIGHTS = "model.pt"
"""The trained student's weights inside `student/` and `student_kd/`."""

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,119}$")



def check_name(name: str) -> str:
    """Run names become folder and collection names: letters, digits, `._-`, no path parts."""
    if not _SAFE_NAME.match(name or "") or ".." in name:
        raise RunError(f"run name {name!r} must be 1-120 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


@dataclass
class Run:
    """A run folder. `config` is None for a folder read for its layout only (the demo asset, a listing)."""

    path: Path
    config: RunConfig | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def log_path(self) -> Path:
        return self.path / "log.jsonl"

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    @property
    def adapter_dir(self) -> Path:
        return self.path / "adapter"

    @property
    def store_dir(self) -> Path:
        return self.path / "store"

    @property
    def ppo_dir(self) -> Path:
        return self.path / "ppo"

    @property
    def ppo_config_path(self) -> Path:
        """The config PPO ran with (it may override the run's own `ppo` section)."""
        return self.ppo_dir / "config.yaml"

    @property
    def ppo_adapter_dir(self) -> Path:
        """Step 2's tuned soft prompt, in PEFT's prompt-tuning format."""
        return self.ppo_dir / "adapter"

    @property
    def student_dir(self) -> Path:
        return self.path / "student"

    @property
    def kd_student_dir(self) -> Path:
        return self.path / "student_kd"

    @property
    def gold_student_dir(self) -> Path:
        """The "student, gold only" baseline: the same pretrained student trained on the labelled examples alone."""
        return self.path / "student_gold"

    @property
    def eval_dir(self) -> Path:
        return self.path / "eval"

    @property
    def eval_summary_path(self) -> Path:
        return self.eval_dir / "summary.json"

    @property
    def eval_records_path(self) -> Path:
        return self.eval_dir / "records.jsonl"

    @property
    def unindexed_ids_path(self) -> Path:
        """The store entries the trained key index left out (filtered at training time): an entry outside the index
        is retrievable only when it is not listed here (added later) or a person has curated it."""
        return self.student_dir / "unindexed-ids.json"

    @property
    def store_edits_path(self) -> Path:
        """The history of hand edits to the run's own store (who, when, before, after)."""
        return self.path / "store-edits.jsonl"

    @property
    def student_weights(self) -> Path:
        return self.student_dir / STUDENT_WEIGHTS

    @property
    def is_evaluated(self) -> bool:
        return self.eval_summary_path.is_file() and self.eval_records_path.is_file()

    @property
    def task_dir(self) -> Path:
        """A saved (uploaded or hub) task's own copy; built-in tasks have none."""
        return self.path / "task"

    def log(self, event: str, **data: Any) -> None:
        record = {"time": time.time(), "event": event, **data}
        with _log_lock, self.log_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def read_log(self) -> list[dict]:
        path = self.log_path
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def summary(self) -> dict:
        return json.loads(self.summary_path.read_text(encoding="utf-8")) if self.summary_path.is_file() else {}

    def update_summary(self, **data: Any) -> dict:
        """Merge into summary.json, written atomically so a crash never leaves half a file."""
        summary = self.summary()
        summary.update(data)
        tmp = self.summary_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(summary, indent=2), encoding="utf-8")
        tmp.replace(self.summary_path)
        return summary


_log_lock = threading.Lock()


def runs_root(workspace: str | Path) -> Path:
    return Path(workspace) / "runs"


def run_path(workspace: str | Path, name: str) -> Path:
    """The folder of run `name` (checked: no path parts) in `workspace`; it need not exist."""
    return runs_root(workspace) / check_name(name)


def read_summary(workspace: str | Path, name: str) -> dict:
    """A run's summary.json without opening the run ({} when it is missing or unreadable)."""
    try:
        return json.loads(Run(run_path(workspace, name)).summary_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


VISITORS_DIR = "visitors"


def visitor_store_dir(workspace: str | Path, visitor: str, run_name: str) -> Path:
    """Where a hosted visitor's own copy of run `run_name`'s store lives."""
    return Path(workspace) / VISITORS_DIR / visitor / check_name(run_name) / "store"


def visitor_edits_path(workspace: str | Path, visitor: str, run_name: str) -> Path:
    """The history of a hosted visitor's edits to their copy of run `run_name`'s store."""
    return visitor_store_dir(workspace, visitor, run_name).parent / "store-edits.jsonl"


SERVING_DIR = "serving"


def serving_store_dir(workspace: str | Path, run_name: str, stamp: str) -> Path:
    """Where a hosted studio reads run `run_name`'s store from: a file copy of the store as it was at `stamp` (Chroma
    can write to a store it only reads, and a shared run must stay byte-identical)."""
    return Path(workspace) / SERVING_DIR / check_name(run_name) / stamp / "store"


def check_new_run(config: RunConfig) -> str:
    """The name a new run of ``config`` gets (set on the config); RunError when it is bad or taken."""
    name = check_name(config.run_name or f"{config.task}-{time.strftime('%Y%m%d-%H%M%S')}")
    path = run_path(config.workspace, name)
    if path.exists() and any(path.iterdir()):
        raise RunError(f"run {name} already exists; pick another run name or continue it with --from {name}")
    config.run_name = name
    return name


def create_run(config: RunConfig) -> Run:
    name = check_new_run(config)
    path = run_path(config.workspace, name)
    path.mkdir(parents=True, exist_ok=True)
    config.run_name = name
    save_yaml(config, Run(path).config_path)
    return Run(path, config)


def open_run(workspace: str | Path, name_or_path: str) -> Run:
    """Open an existing run by name (under the workspace) or by its folder path."""
    candidate = Path(name_or_path)
    path = candidate if Run(candidate).config_path.is_file() else run_path(workspace, name_or_path)
    if not Run(path).config_path.is_file():
        raise RunError(f"no run {name_or_path!r} in {runs_root(workspace)}")
    return Run(path, load_yaml(Run(path).config_path, saved_run=True))


def list_runs(workspace: str | Path) -> list[str]:
    root = runs_root(workspace)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if Run(p).config_path.is_file())


def runs_newest_first(workspace: str | Path) -> list[str]:
    """Run names of the workspace, most recently created first."""
    root = runs_root(workspace)

    def created(name: str) -> float:
        try:
            return Run(root / name).config_path.stat().st_mtime
        except OSError:  # deleted while listing: it sorts last and the next refresh drops it
            return 0.0

    return sorted(list_runs(workspace), key=created, reverse=True)
