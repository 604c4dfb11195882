"""What every stage works with: the run, its task, the loaded teacher and scorer, and the run's knowledge store."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .config import RunConfig
from .runs import Run, check_new_run, create_run
from .teacher.scorer import TeacherScorer

Progress = Callable[[str, int, int, dict], None]
"""progress(stage, done, total, info) — stages: load, tune, score, generate, store."""


@dataclass
class Context:
    """Loaded objects a UI keeps between stages (the teacher takes seconds to load)."""

    run: Run
    task: Any
    teacher: Any
    scorer: TeacherScorer | None = None
    soft_prompt: Any = None


def noop_progress(stage, done, total, info):
    return None


def load_context(config: RunConfig, progress: Progress = noop_progress, run: Run | None = None) -> Context:
    from .tasks import copy_into_run, resolve_task
    from .teacher.load import load_teacher

    progress("load", 0, 2, {"message": f"loading task {config.task}"})
    # Task and teacher before the run folder: a bad task or an unloadable teacher leaves nothing behind.
    task = resolve_task(config.task, config.seed, config.workspace, run.task_dir if run else None)
    if run is None:
        check_new_run(config)
    progress("load", 1, 2, {"message": f"loading teacher {config.teacher.model}"})
    teacher = load_teacher(config.teacher, cache_dir=f"{config.workspace}/cache")
    if run is None:
        run = create_run(config)
        copy_into_run(config.task, config.workspace, run.task_dir, config.seed)
    run.log("loaded", teacher=teacher.name, params=teacher.n_params, device=str(teacher.device),
            dtype=str(teacher.dtype), seconds=round(teacher.load_seconds, 2))
    progress("load", 2, 2, {"message": f"teacher {teacher.name}: {teacher.n_params/1e6:.1f}M params"})
    return Context(run, task, teacher)


def open_store(ctx: Context):
    return run_store(ctx.run, ctx.task)


def run_embedder(config: RunConfig):
    from .store.embed import Embedder, default_embedder

    return Embedder(config.store.embedder) if config.store.embedder else default_embedder()


def teacher_entries(task, scorer: TeacherScorer, items: list[tuple[dict, str]], source: str, **extra) -> list:
    """Store entries for (fields, intended label) pairs with the teacher's calibrated soft labels and agreement."""
    from .store.knowledge_store import Entry

    labels = task.labels
    probs = scorer.probs([fields for fields, _ in items])
    entries = []
    for (fields, label), p in zip(items, probs):
        teacher_label = labels[int(p.argmax())]
        entries.append(Entry(fields=fields, label=label, source=source,
                             soft_labels={l: float(x) for l, x in zip(labels, p)}, teacher_label=teacher_label,
                             agreement=teacher_label == label, text=task.serialize(fields), **extra))
    return entries




def run_store(run: Run, task, folder: Path | None = None):
    """The knowledge store of a run (its own collection, embedder and location); `folder`: a file copy of the run's
    store folder to open instead (a hosted studio reads shared runs from one)."""
    from .store.knowledge_store import KnowledgeStore, collection_name

    config = run.config
    return KnowledgeStore(
        path=None if config.store.url else (folder or run.store_dir),
        url=config.store.url,
        collection=collection_name(task.name, run.name),
        embedder=run_embedder(config),
        task_labels=list(task.labels),
        hnsw=config.store.hnsw(),
    )


def run_teacher(run: Run, progress: Progress = noop_progress):
    """The teacher a run was made with, loaded from the run's workspace cache."""
    from .teacher.load import load_teacher

    progress("load", 0, 1, {"message": f"loading teacher {run.config.teacher.model}"})
    return load_teacher(run.config.teacher, cache_dir=Path(run.config.workspace) / "cache")
