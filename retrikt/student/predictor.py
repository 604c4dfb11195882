"""A trained step-3 student as a classifier you can call: its own prediction, or mixed with the teacher's soft labels
of the store entries it retrieves. No teacher is loaded."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from ..errors import StudentError
from .model import Student
from .live import live_index
from .retrieval import KeyIndex, predict


@dataclass
class Predictions:
    """One row per input: the predicted label, every label's probability, and the neighbours that voted."""

    labels: list[str]
    probs: list[dict[str, float]]
    neighbours: list[list[dict]] = field(default_factory=list)
    """Per input, the retrieved entries: id, text, label, source, teacher_soft_labels, similarity (empty without
    retrieval)."""


class TrainedStudent:
    """A run's student, key index and beta. `predict(texts, retrieval=False)` is the student alone."""

    def __init__(self, task, student: Student, index, beta: float, k: int, temperature: float,
                 entries: Callable[[list[str]], list] = lambda ids: []):
        """`index`: a KeyIndex or MemoryIndex (None: no retrieval); `entries(ids)`: the store entries of those ids,
        for showing the neighbours."""
        self.task, self.student, self.index, self.entries = task, student, index, entries
        self.beta, self.k, self.temperature = beta, k, temperature
        self.run = None
        """The run it was trained in (None for a loaded bundle)."""

    @classmethod
    def from_run(cls, run, store=None) -> "TrainedStudent":
        """Load the student that `student --from RUN` trained (StudentError when there is none); `store`: the run's
        store opened elsewhere (a hosted studio's serving copy), else the run's own."""
        from ..context import run_store
        from ..tasks import task_of_run

        block = run.summary().get("student") or {}
        if not block or not run.student_weights.is_file():
            raise StudentError(f"run {run.name} has no trained student: run `student --from {run.name}` first")
        task = task_of_run(run)
        store = store if store is not None else run_store(run, task)
        student = Student.load(run.student_dir)
        index = None
        if block.get("items", {}).get("indexed"):
            # Retrieval reads the store as it is now: hand edits made since training count at once.
            index = live_index(run, store, student, KeyIndex.open(store))
        cfg = run.config.student
        trained = cls(task, student, index, float(block.get("beta", 0.0)), cfg.k, cfg.temperature, _entries_of(store))
        trained.run = run
        return trained

    def on_store(self, store, history_path) -> "TrainedStudent":
        """The same student retrieving through another copy of its run's store (a hosted visitor's own copy, with
        that visitor's edit history); the trained key index is shared."""
        index = None
        if self.index is not None:
            base = getattr(self.index, "base", self.index)
            index = live_index(self.run, store, self.student, base, history_path)
        other = TrainedStudent(self.task, self.student, index, self.beta, self.k, self.temperature,
                               _entries_of(store))
        other.run = self.run
        return other

    def serialize(self, item: str | Mapping[str, str]) -> str:
        """An input as the student reads it: a string for a one-field task, else a mapping of the task's fields."""
        fields = self.task.text_fields
        if isinstance(item, str):
            if len(fields) != 1:
                raise StudentError(f"{self.task.name} inputs have the fields {', '.join(fields)}: pass a dict")
            return self.task.serialize({fields[0]: item})
        missing = [f for f in fields if not str(item.get(f, "")).strip()]
        if missing:
            raise StudentError(f"{self.task.name} inputs need the field(s) {', '.join(missing)}")
        return self.task.serialize({f: str(item[f]) for f in fields})

    def predict(self, items: list[str | Mapping[str, str]], retrieval: bool = True) -> Predictions:
        alone, mixed = self.predict_both(items, retrieval)
        return mixed if retrieval else alone

    def predict_both(self, items: list[str | Mapping[str, str]],
                     retrieval: bool = True) -> tuple[Predictions, Predictions]:
        """(student alone, student + retrieval) from one pass: the student encodes each input once."""
        return self.predict_texts([self.serialize(item) for item in items], retrieval)

    def predict_texts(self, texts: list[str], retrieval: bool = True) -> tuple[Predictions, Predictions]:
        """`predict_both` for inputs already in the task's serialized form (as the store and the records hold them)."""
        beta = self.beta if retrieval else 0.0
        pred = predict(self.student, self.index if retrieval else None, texts, self.k, self.temperature, beta)
        neighbours = [self._neighbours(ids, pred.neighbours.sims[row]) for row, ids in enumerate(pred.neighbours.ids)]
        return self._predictions(pred.student, [[] for _ in texts]), self._predictions(pred.mixed, neighbours)

    def _predictions(self, probs: np.ndarray, neighbours: list[list[dict]]) -> Predictions:
        labels = list(self.task.labels)
        return Predictions([labels[int(i)] for i in np.asarray(probs).argmax(-1)],
                           [{l: float(p) for l, p in zip(labels, row)} for row in probs], neighbours)

    def _neighbours(self, ids: list[str], sims: np.ndarray) -> list[dict]:
        entries = {e.id: e for e in self.entries(ids)} if ids else {}
        rows = []
        for rank, entry_id in enumerate(ids):
            entry = entries.get(entry_id)
            rows.append({"id": entry_id, "text": entry.text if entry else "(deleted from the store)",
                         "label": entry.label if entry else "", "source": entry.source if entry else "",
                         "teacher_soft_labels": entry.soft_labels if entry else {}, "similarity": float(sims[rank])})
        return rows


def _entries_of(store) -> Callable[[list[str]], list]:
    # Tolerant of ids deleted meanwhile: a neighbour list must not fail on them.
    return lambda ids: [entry for entry, _ in store.lookup(ids).values()]


def load_student(run, workspace: str = "workspace") -> TrainedStudent:
    """The trained student of `run`: a `Run`, or a run's name (in `workspace`) or folder."""
    from ..runs import Run, open_run

    return TrainedStudent.from_run(run if isinstance(run, Run) else open_run(workspace, str(run)))
