"""An exported student: one folder (and a .zip of it) that predicts with no teacher, no workspace and no studio.

Layout (every file listed with its SHA-256 in `bundle.json`, so a missing or changed file is refused on load):
- `student/`: the student's weights (`model.pt`), config and vocabulary (`student.json`) and its tokenizer;
- `index.jsonl`: one line per retrievable entry: `id`, `key` (the student's retrieval key), `soft` (what it votes
  with, in `labels` order: the teacher's soft labels, or one-hot for a curated entry), `weight`, `label`; hand edits
  made to the store since training are included;
- `store.jsonl`: the knowledge store's entries (text, label, source, teacher soft labels, ...), without vectors;
- `task/`: the task's definition and splits (the format of a saved task);
- `metrics.json`: the run's evaluation; `README.md`: a model card with the run's numbers.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from ..errors import StudentError

BUNDLE_FORMAT = 1
MANIFEST = "bundle.json"
_STUDENT, _INDEX, _STORE, _TASK, _METRICS, _CARD = "student", "index.jsonl", "store.jsonl", "task", "metrics.json", "README.md"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_bundle(run, out: str | Path, make_zip: bool = True, store=None) -> dict:
    """Write run `run`'s trained student, key index, store entries, task and metrics into the folder `out` (replaced
    if it exists) and, with `make_zip`, `out.zip`; returns the manifest with the sizes. `store`: the run's store
    opened elsewhere (a hosted studio's serving copy), else the run's own."""
    from ..context import run_store
    from ..store.entries import to_json, write_jsonl
    from ..tasks import task_of_run
    from ..tasks.saved import write_task_folder
    from .model import Student
    from .live import live_index
    from .retrieval import KeyIndex

    block = run.summary().get("student") or {}
    if not block or not run.student_weights.is_file():
        raise StudentError(f"run {run.name} has no trained student to export: run `student --from {run.name}` first")
    if not run.is_evaluated:
        raise StudentError(f"run {run.name} has no evaluation to put in the model card: evaluate its student first")
    student = Student.load(run.student_dir)
    if student.vocab is None:
        raise StudentError("only the tiny student can be exported (an HF encoder student would need its base model)")
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    task = task_of_run(run)
    store = store if store is not None else run_store(run, task)
    student.save(out / _STUDENT, with_tokenizer=True)
    rows = []
    if block.get("items", {}).get("indexed"):
        # The store as it is now: hand edits made since training are part of what is shipped.
        index = live_index(run, store, student, KeyIndex.open(store))
        table = index.table
        ids = list(table)
        for entry_id, key in zip(ids, index.keys_of(ids)):
            soft, weight, label = table[entry_id]
            rows.append({"id": entry_id, "key": [float(x) for x in key], "soft": [float(x) for x in soft],
                         "weight": float(weight), "label": label})
    write_jsonl(out / _INDEX, rows)
    write_jsonl(out / _STORE, [to_json(e) for e in store.list()])
    (out / _TASK).mkdir()
    write_task_folder(task, out / _TASK)
    metrics = json.loads(run.eval_summary_path.read_text(encoding="utf-8"))
    (out / _METRICS).write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    cfg = run.config.student
    settings = {"labels": list(task.labels), "beta": float(block.get("beta", 0.0)), "k": cfg.k,
                "temperature": cfg.temperature}
    (out / _CARD).write_text(model_card(run, task, metrics, settings, len(rows)), encoding="utf-8")
    files = sorted(p for p in out.rglob("*") if p.is_file())
    manifest = {"format": BUNDLE_FORMAT, "run": run.name, "task": task.name, **settings,
                "files": {p.relative_to(out).as_posix(): _sha256(p) for p in files}}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    report = {"folder": str(out), "files": len(files) + 1,
              "bytes": sum(p.stat().st_size for p in out.rglob("*") if p.is_file()), "entries": len(rows)}
    if make_zip:
        archive = shutil.make_archive(str(out), "zip", root_dir=out)
        report.update(zip=archive, zip_bytes=Path(archive).stat().st_size)
    return report


def model_card(run, task, metrics: dict, settings: dict, entries: int) -> str:
    """The bundle's README: what the student is, what it was distilled from, and the run's measured numbers."""
    systems = metrics.get("systems", {})
    rows = "\n".join(f"| {name} | {100 * s['accuracy']:.1f} | {s.get('examples_per_s', '')} |"
                     for name, s in systems.items() if "accuracy" in s)
    teacher = run.config.teacher.model
    share = (f"{metrics['student_params']:,} parameters, {100 * metrics['student_params'] / metrics['teacher_params']:.2f}%"
             f" of the teacher's {metrics['teacher_params']:,}" if metrics.get("teacher_params") else "")
    return f"""# RetriKT student: {task.name}

A small student distilled from the teacher LLM `{teacher}` by retrieval-based knowledge transfer (RetriKT,
Findings of EMNLP 2023): it predicts a label itself and mixes in the teacher's soft labels of the {entries} store
entries nearest to the input in its own key space (beta {settings['beta']}, k {settings['k']}).

- Task: {task.name} ({', '.join(task.labels)}); run `{run.name}`, seed {run.config.seed}.
- Student: {share}.
- Test: {metrics.get('test_examples')} of {metrics.get('test_total')} test examples.

| system | test accuracy % | examples/s |
|---|---|---|
{rows}

Load it with `retrikt.load_bundle(FOLDER).predict(texts, retrieval=True)`; `retrieval=False` is the student alone.
Sources: the task's data as packaged by RetriKT studio (`task/` holds the splits used); the teacher's few-shot soft
labels of generated and real inputs (`store.jsonl`).
"""


def load_bundle(folder: str | Path):
    """A `TrainedStudent` from an exported bundle; StudentError when a file is missing or was changed."""
    from ..store.entries import Entry
    from ..tasks.saved import load_saved
    from .model import Student
    from .predictor import TrainedStudent
    from .retrieval import MemoryIndex

    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StudentError(f"{folder.name} is not a student bundle ({MANIFEST} is missing or unreadable: {exc})") from None
    if manifest.get("format") != BUNDLE_FORMAT:
        raise StudentError(f"bundle format {manifest.get('format')!r} is not supported (this version reads {BUNDLE_FORMAT})")
    for name, digest in manifest.get("files", {}).items():
        path = folder / name
        if not path.is_file():
            raise StudentError(f"bundle file {name} is missing: export the bundle again")
        if _sha256(path) != digest:
            raise StudentError(f"bundle file {name} was changed (its checksum does not match): export the bundle again")
    task = load_saved(folder / _TASK)
    student = Student.load(folder / _STUDENT)
    rows = [json.loads(line) for line in (folder / _INDEX).read_text(encoding="utf-8").splitlines() if line.strip()]
    index = None
    if rows:
        index = MemoryIndex([r["id"] for r in rows], np.array([r["key"] for r in rows], dtype=np.float32),
                            list(manifest["labels"]),
                            {r["id"]: (np.asarray(r["soft"], dtype=np.float64), float(r["weight"]), r["label"])
                             for r in rows})
    entries = {}
    for line in (folder / _STORE).read_text(encoding="utf-8").splitlines():
        if line.strip():
            data = json.loads(line)
            entries[data["id"]] = Entry(**{k: v for k, v in data.items() if k in Entry.__dataclass_fields__})
    return TrainedStudent(task, student, index, float(manifest["beta"]), int(manifest["k"]),
                          float(manifest["temperature"]), lambda ids: [entries[i] for i in ids if i in entries])


def push_bundle(folder: str | Path, repo_id: str, token: str | None) -> str:
    """Upload an exported bundle folder to the Hugging Face Hub model repo `repo_id`; returns its URL."""
    load_bundle(folder)  # never push a broken bundle
    if not token:
        raise StudentError("pushing needs a Hugging Face token: set HF_TOKEN (or pass --token)")
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="model", exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model")
    except Exception as exc:  # noqa: BLE001 - network, auth and offline errors all become one clear line
        raise StudentError(f"could not push to the Hub repo {repo_id}: {type(exc).__name__}: {exc}") from None
    return f"https://huggingface.co/{repo_id}"
