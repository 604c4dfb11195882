"""The precomputed demo run shipped in `assets/demo-run/`, so a fresh studio never opens on an empty screen.

`pack_demo` turns a finished run (step 1 + student + eval) into a small, path-free folder: config, summary, eval
records, the trained student, the store as JSONL (vectors are recomputed on install) and the student's retrieval
keys. `install_demo` rebuilds it as an ordinary run in a workspace (store and key index included), once.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from .config import load_yaml, save_yaml
from .runs import Run, RunError, runs_root

DEMO_ASSET = Path(__file__).resolve().parents[1] / "assets" / "demo-run"
DEMO_RUN = "demo-SST-2"
_DONE_MARK = "demo-installed"


def pack_demo(run: Run, dest: Path) -> dict:
    """Write the demo asset of `run` (which must have a trained student and an eval) into `dest`."""
    from .retrieval import KeyIndex
    from .student_stage import run_store, student_dir
    from .tasks import task_of_run
    from .tasks.saved import RUN_TASK_DIR

    summary = run.summary()
    if not summary.get("student") or not (run.path / "eval" / "summary.json").is_file():
        raise RunError(f"run {run.name} has no trained and evaluated student to pack")
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "eval").mkdir(parents=True)
    config = run.config
    config.workspace, config.run_name = "", DEMO_RUN  # no machine paths in the asset
    save_yaml(config, dest / "config.yaml")
    (dest / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    for name in ("summary.json", "records.jsonl"):
        shutil.copy2(run.path / "eval" / name, dest / "eval" / name)
    shutil.copytree(student_dir(run), dest / "student")
    # 37 KB: lets PPO (step 2) start from the demo run
    shutil.copytree(run.adapter_dir, dest / "adapter", ignore=shutil.ignore_patterns("README.md"))
    task = task_of_run(run)
    if (run.path / RUN_TASK_DIR).is_dir():  # a run of an uploaded task: the demo carries the task
        shutil.copytree(run.path / RUN_TASK_DIR, dest / RUN_TASK_DIR)
    store = run_store(run, task)
    entries = store.export_jsonl(dest / "store.jsonl", include_embeddings=False)
    index = KeyIndex.open(store)
    got = index.collection.get(include=["embeddings"])
    with (dest / "keys.jsonl").open("w", encoding="utf-8") as handle:
        for entry_id, key in zip(got["ids"], got["embeddings"]):
            soft, weight, label = index.table[entry_id]
            handle.write(json.dumps({"id": entry_id, "key": [round(float(x), 6) for x in key],
                                     "soft": [float(x) for x in soft], "weight": weight, "label": label}) + "\n")
    return {"entries": entries, "keys": len(got["ids"]),
            "bytes": sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())}


def install_demo(workspace: str | Path, asset: Path = DEMO_ASSET) -> Path | None:
    """Rebuild the demo run in `workspace` unless it is already there; returns its folder (None: no asset).

    A half-finished install (the server died during it) has no done-mark and is rebuilt from scratch.
    """
    from .pipeline import Context, open_store
    from .retrieval import KeyIndex
    from .tasks import task_of_run
    from .tasks.saved import RUN_TASK_DIR

    if not (asset / "config.yaml").is_file():
        return None
    path = runs_root(workspace) / DEMO_RUN
    if (path / _DONE_MARK).is_file():
        return path
    if path.exists():
        shutil.rmtree(path)
    started = time.perf_counter()
    path.mkdir(parents=True)
    config = load_yaml(asset / "config.yaml")
    config.workspace, config.run_name = str(workspace), DEMO_RUN
    save_yaml(config, path / "config.yaml")
    # Run lists sort by this file's age: the demo is listed after every run of the user's own.
    os.utime(path / "config.yaml", (0, 0))
    shutil.copytree(asset / "eval", path / "eval")
    shutil.copytree(asset / "student", path / "student")
    if (asset / "adapter").is_dir():
        shutil.copytree(asset / "adapter", path / "adapter")
    summary = json.loads((asset / "summary.json").read_text(encoding="utf-8"))
    run = Run(path, config)
    if (asset / RUN_TASK_DIR).is_dir():
        shutil.copytree(asset / RUN_TASK_DIR, path / RUN_TASK_DIR)
    task = task_of_run(run)
    store = open_store(Context(run, task, None))
    store.import_jsonl(asset / "store.jsonl")
    rows = [json.loads(line) for line in (asset / "keys.jsonl").read_text(encoding="utf-8").splitlines() if line]
    KeyIndex.build(store, [r["id"] for r in rows], np.array([r["key"] for r in rows], dtype=np.float32),
                   np.array([r["soft"] for r in rows]), list(task.labels), [r["label"] for r in rows],
                   np.array([r["weight"] for r in rows]))
    summary["demo"] = {"installed_seconds": round(time.perf_counter() - started, 2)}
    run.update_summary(**summary)
    (path / _DONE_MARK).write_text("ok\n", encoding="utf-8")
    return path
