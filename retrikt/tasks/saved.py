"""Saved tasks: a task built from an upload or a hub dataset, written once as a folder so runs can use it by name.

Layout of `<workspace>/tasks/<name>/`: `task.json` (the template: fields, labels, verbalizers, headers, query,
where the data came from) and one JSONL file per split. A run of a saved task copies the folder into
`<run>/task/`, so the run stays readable (compare, student, store) even when the saved task is deleted or replaced.
`resolve_task` is the one lookup every stage uses: the run's own copy, else a built-in task, else a saved task.
"""
from __future__ import annotations

import dataclasses
import json
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from .base import Example, Task, TaskDataError
from .builtin import BUILTIN_TASKS, _key, canonical_name, load_builtin
from .loaders import redraw

TASK_FILE = "task.json"
POOL_FILE = "pool.jsonl"  # labelled rows in no split: other seeds draw their k-shot splits from them
_SPLITS = ("train", "dev", "test")
_SAFE_TASK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{2,63}$")


def tasks_root(workspace: str | Path) -> Path:
    return Path(workspace) / "tasks"


def check_task_name(name: str) -> str:
    """Saved task names become folder and collection names: 3-64 of `[A-Za-z0-9._-]`, not a built-in name."""
    name = (name or "").strip()
    if not _SAFE_TASK_NAME.match(name) or ".." in name:
        raise TaskDataError(
            f"task name {name!r} must be 3-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    if _key(name) in {_key(n) for n in BUILTIN_TASKS}:
        raise TaskDataError(f"{name!r} is the name of a built-in task; give the uploaded task another name")
    return name


def is_builtin(name: str) -> bool:
    try:
        canonical_name(name)
    except TaskDataError:
        return False
    return True


def same_task(a: str, b: str) -> bool:
    """Whether two task names mean the same task (built-in names in any spelling; saved names exactly)."""
    if is_builtin(a) and is_builtin(b):
        return canonical_name(a) == canonical_name(b)
    return a == b


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def _read_jsonl(path: Path) -> list[dict]:
    with path.open("r", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def save_task(task: Task, workspace: str | Path, origin: dict[str, Any] | None = None,
              replace: bool = False) -> Path:
    """Write ``task`` as `<workspace>/tasks/<task.name>/`; whole or not at all (built in a temp folder, renamed)."""
    name = check_task_name(task.name)
    target = tasks_root(workspace) / name
    if target.exists() and not replace:
        raise TaskDataError(f"a saved task named {name!r} exists already; pick another name or replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()
    try:
        write_task_folder(task, tmp, origin)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def write_task_folder(task: Task, folder: str | Path, origin: dict[str, Any] | None = None) -> None:
    """Write ``task`` (definition and splits) into an existing ``folder`` in the format `load_saved` reads."""
    folder = Path(folder)
    definition = {
        "name": task.name, "text_fields": list(task.text_fields), "labels": list(task.labels),
        "verbalizers": task.verbalizers, "field_names": task.field_names, "description": task.description,
        "query": task.query, "query_candidates": list(task.query_candidates), "seed": task.seed,
        "field_choices": {k: list(v) for k, v in task.field_choices.items()}, "origin": origin or {},
    }
    for split in _SPLITS:
        _write_jsonl(folder / f"{split}.jsonl",
                     [{"uid": e.uid, "fields": e.fields, "label": e.label} for e in getattr(task, split)])
    _write_jsonl(folder / "unlabeled.jsonl", [{"fields": f} for f in task.unlabeled])
    _write_jsonl(folder / POOL_FILE, [{"uid": e.uid, "fields": e.fields, "label": e.label} for e in task.pool])
    # task.json last: a folder without it is an unfinished save and is never listed.
    (folder / TASK_FILE).write_text(json.dumps(definition, indent=2, ensure_ascii=False), encoding="utf-8")


def load_saved(folder: str | Path) -> Task:
    """The task saved in ``folder``; TaskDataError when the folder is missing, incomplete or corrupt."""
    folder = Path(folder)
    try:
        definition = json.loads((folder / TASK_FILE).read_text(encoding="utf-8"))
        splits = {s: [Example(fields=r["fields"], label=r["label"], uid=r["uid"])
                      for r in _read_jsonl(folder / f"{s}.jsonl")] for s in _SPLITS}
        unlabeled = [r["fields"] for r in _read_jsonl(folder / "unlabeled.jsonl")]
        pool = ([Example(fields=r["fields"], label=r["label"], uid=r["uid"]) for r in _read_jsonl(folder / POOL_FILE)]
                if (folder / POOL_FILE).is_file() else [])  # a task saved before pools were kept keeps its split
        return Task(
            name=definition["name"], text_fields=definition["text_fields"], labels=definition["labels"],
            verbalizers=definition["verbalizers"], field_names=definition["field_names"],
            description=definition["description"], query=definition["query"], seed=definition.get("seed"),
            query_candidates=definition.get("query_candidates") or (),
            field_choices=definition.get("field_choices") or {}, unlabeled=unlabeled, pool=pool, **splits,
        )
    except FileNotFoundError as exc:
        raise TaskDataError(f"saved task {folder.name!r} is incomplete ({Path(exc.filename).name} is missing); "
                            "import it again") from None
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise TaskDataError(f"saved task {folder.name!r} is corrupt ({type(exc).__name__}: {exc}); "
                            "import it again") from None


def list_saved(workspace: str | Path) -> list[str]:
    root = tasks_root(workspace)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / TASK_FILE).is_file() and not p.name.startswith("."))


def task_origin(workspace: str | Path, name: str) -> dict:
    """Where a saved task's data came from (file name or hub id, mapping), for display."""
    try:
        return json.loads((tasks_root(workspace) / name / TASK_FILE).read_text(encoding="utf-8")).get("origin", {})
    except (OSError, json.JSONDecodeError):
        return {}


def resolve_task(name: str, seed: int | None, workspace: str | Path, run_task_dir: str | Path | None = None) -> Task:
    """The task a config names: the run's own copy when it has one, else built-in, else saved in the workspace
    (with the k-shot split of `seed`, see `redraw`)."""
    if run_task_dir is not None and (Path(run_task_dir) / TASK_FILE).is_file():
        return load_saved(Path(run_task_dir))
    if is_builtin(name):
        return load_builtin(name, seed=seed if seed is not None else 13)
    if _SAFE_TASK_NAME.match(name or "") and ".." not in name:
        folder = tasks_root(workspace) / name
        if (folder / TASK_FILE).is_file():
            return redraw(load_saved(folder), seed)
    saved = list_saved(workspace)
    extra = f", or a saved task: {', '.join(saved)}" if saved else " (no uploaded or hub tasks are saved yet)"
    raise TaskDataError(f"unknown task {name!r}; choose a built-in task ({', '.join(BUILTIN_TASKS)}){extra}")


def load_task(name: str, seed: int = 13, workspace: str | Path = "workspace") -> Task:
    """A built-in task (its k-shot split `seed`) or a task saved in `workspace`, by name."""
    return resolve_task(name, seed, workspace)


def copy_into_run(name: str, workspace: str | Path, run_task_dir: str | Path, seed: int | None = None) -> bool:
    """Give a run of a saved task its own copy of the task, with the k-shot split of `seed` (True), or do nothing
    for a built-in task (False)."""
    if is_builtin(name):
        return False
    source = tasks_root(workspace) / check_task_name(name)
    target = Path(run_task_dir)
    if not target.exists():
        target.mkdir(parents=True)
        # A run's copy is never re-drawn, so it does without the labelled pool.
        write_task_folder(dataclasses.replace(redraw(load_saved(source), seed), pool=[]), target,
                          task_origin(workspace, name))
    return True


def task_of_run(run) -> Task:
    """The task of an existing run (its own copy for saved tasks, the packaged splits for built-in ones)."""
    config = run.config
    return resolve_task(config.task, config.seed, config.workspace, run.task_dir)
