"""Run folders: `<workspace>/runs/<name>/` with config.yaml, log.jsonl, adapter/, store/ and summary.json."""
from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import RunConfig, load_yaml, save_yaml

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,119}$")


class RunError(ValueError):
    """Bad run name or a run folder that is missing what a stage needs."""


def check_name(name: str) -> str:
    """Run names become folder and collection names: letters, digits, `._-`, no path parts."""
    if not _SAFE_NAME.match(name or "") or ".." in name:
        raise RunError(f"run name {name!r} must be 1-120 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


@dataclass
class Run:
    path: Path
    config: RunConfig

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def adapter_dir(self) -> Path:
        return self.path / "adapter"

    @property
    def store_dir(self) -> Path:
        return self.path / "store"

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    def log(self, event: str, **data: Any) -> None:
        record = {"time": time.time(), "event": event, **data}
        with _log_lock, (self.path / "log.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def read_log(self) -> list[dict]:
        path = self.path / "log.jsonl"
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


def check_new_run(config: RunConfig) -> str:
    """The name a new run of ``config`` gets (set on the config); RunError when it is bad or taken."""
    name = check_name(config.run_name or f"{config.task}-{time.strftime('%Y%m%d-%H%M%S')}")
    path = runs_root(config.workspace) / name
    if path.exists() and any(path.iterdir()):
        raise RunError(f"run {name} already exists; pick another run name or continue it with --from {name}")
    config.run_name = name
    return name


def create_run(config: RunConfig) -> Run:
    name = check_new_run(config)
    path = runs_root(config.workspace) / name
    path.mkdir(parents=True, exist_ok=True)
    config.run_name = name
    save_yaml(config, path / "config.yaml")
    return Run(path, config)


def open_run(workspace: str | Path, name_or_path: str) -> Run:
    """Open an existing run by name (under the workspace) or by its folder path."""
    candidate = Path(name_or_path)
    path = candidate if (candidate / "config.yaml").is_file() else runs_root(workspace) / check_name(name_or_path)
    if not (path / "config.yaml").is_file():
        raise RunError(f"no run {name_or_path!r} in {runs_root(workspace)}")
    return Run(path, load_yaml(path / "config.yaml"))


def list_runs(workspace: str | Path) -> list[str]:
    root = runs_root(workspace)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "config.yaml").is_file())
