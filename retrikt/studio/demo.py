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

from ..config import load_yaml, save_yaml
from ..runs import Run, RunError, run_path

DEMO_ASSET = Path(__file__).resolve().parents[2] / "assets" / "demo-run"
DEMO_RUN = "demo-SST-2"
_DONE_MARK = "demo-installed"
_STORE_FILE, _KEYS_FILE = "store.jsonl", "keys.jsonl"
"""The asset's store entries (vectors are recomputed on install) and the student's retrieval keys."""


def pack_demo(run: Run, dest: Path) -> dict:
    """Write the demo asset of `run` (which must have a trained student and an eval) into `dest`."""
    from ..context import run_store
    from ..student.retrieval import KeyIndex
    from ..tasks import task_of_run

    summary = run.summary()
    if not summary.get("student") or not run.eval_summary_path.is_file():
        raise RunError(f"run {run.name} has no trained and evaluated student to pack")
    if dest.exists():
        shutil.rmtree(dest)
    asset = Run(dest)  # the asset is laid out as a run folder, plus the store and keys as JSONL
    asset.eval_dir.mkdir(parents=True)
    config = run.config
    config.workspace, config.run_name = "", DEMO_RUN  # no machine paths in the asset
    save_yaml(config, asset.config_path)
    asset.summary_path.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    shutil.copy2(run.eval_summary_path, asset.eval_summary_path)
    shutil.copy2(run.eval_records_path, asset.eval_records_path)
    if run.log_path.is_file():  # the Generate and PPO tabs draw a finished run's curves from its log
        shutil.copy2(run.log_path, asset.log_path)
    shutil.copytree(run.student_dir, asset.student_dir)
    if run.gold_student_dir.is_dir():  # the "student, gold only" baseline of the Compare table
        shutil.copytree(run.gold_student_dir, asset.gold_student_dir)
    # 37 KB: lets PPO (step 2) start from the demo run
    shutil.copytree(run.adapter_dir, asset.adapter_dir, ignore=shutil.ignore_patterns("README.md"))
    adapter_config = asset.adapter_dir / "adapter_config.json"
    if adapter_config.is_file():  # PEFT records the teacher's local folder here; the asset names the model instead
        fields = json.loads(adapter_config.read_text(encoding="utf-8"))
        fields["base_model_name_or_path"] = config.teacher.model
        adapter_config.write_text(json.dumps(fields, indent=2), encoding="utf-8")
    task = task_of_run(run)
    if run.task_dir.is_dir():  # a run of an uploaded task: the demo carries the task
        shutil.copytree(run.task_dir, asset.task_dir)
    store = run_store(run, task)
    entries = store.export_jsonl(dest / _STORE_FILE, include_embeddings=False)
    index = KeyIndex.open(store)
    got = index.collection.get(include=["embeddings"])
    with (dest / _KEYS_FILE).open("w", encoding="utf-8") as handle:
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
    from ..context import run_store
    from ..student.retrieval import KeyIndex
    from ..tasks import task_of_run

    packed = Run(asset)
    if not packed.config_path.is_file():
        return None
    path = run_path(workspace, DEMO_RUN)
    if (path / _DONE_MARK).is_file():
        return path
    if path.exists():
        shutil.rmtree(path)
    started = time.perf_counter()
    path.mkdir(parents=True)
    config = load_yaml(packed.config_path, saved_run=True)
    config.workspace, config.run_name = str(workspace), DEMO_RUN
    run = Run(path, config)
    save_yaml(config, run.config_path)
    # Run lists sort by this file's age: the demo is listed after every run of the user's own.
    os.utime(run.config_path, (0, 0))
    shutil.copytree(packed.eval_dir, run.eval_dir)
    if packed.log_path.is_file():
        shutil.copy2(packed.log_path, run.log_path)
    shutil.copytree(packed.student_dir, run.student_dir)
    if packed.gold_student_dir.is_dir():
        shutil.copytree(packed.gold_student_dir, run.gold_student_dir)
    if packed.adapter_dir.is_dir():
        shutil.copytree(packed.adapter_dir, run.adapter_dir)
    summary = packed.summary()
    if packed.task_dir.is_dir():
        shutil.copytree(packed.task_dir, run.task_dir)
    task = task_of_run(run)
    store = run_store(run, task)
    store.import_jsonl(asset / _STORE_FILE)
    rows = [json.loads(line) for line in (asset / _KEYS_FILE).read_text(encoding="utf-8").splitlines() if line]
    KeyIndex.build(store, [r["id"] for r in rows], np.array([r["key"] for r in rows], dtype=np.float32),
                   np.array([r["soft"] for r in rows]), list(task.labels), [r["label"] for r in rows],
                   np.array([r["weight"] for r in rows]))
    summary["demo"] = {"installed_seconds": round(time.perf_counter() - started, 2)}
    run.update_summary(**summary)
    (path / _DONE_MARK).write_text("ok\n", encoding="utf-8")
    return path
