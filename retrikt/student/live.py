"""The trained key index seen through the knowledge store as it is now, so hand edits reach retrieval at once, with
no retraining.

The key index is a snapshot taken when the student was trained: each entry's student key, the soft label it votes
with, and its weight. The store can change afterwards (a person fixes a label, deletes an entry, adds one). Against
the store's current state, an entry votes like this:

- in the index, untouched: the trained snapshot (the teacher's soft label, its weight);
- **curated** (a person set or confirmed its label): a one-hot vector of that label, weight 1. A curated label is a
  person's verdict, so it replaces the teacher's belief in the vote; the teacher's soft labels stay in the store for
  reference;
- deleted from the store: never retrieved;
- in the store but not in the index: retrievable when it was added after training (its key is the student's key of
  its text, computed once), or when it was filtered out at training time and a person has curated it since. It
  votes with its teacher soft labels when it has them and is not curated, else one-hot of its label, weight 1.

The overlay is rebuilt when the store changes: its entry count or this process's writes, or the edit history file
(edits made by another process).
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .retrieval import Neighbours

EncodeKeys = Callable[[list[str]], np.ndarray]


def one_hot(label: str, labels: list[str]) -> np.ndarray:
    vector = np.zeros(len(labels))
    vector[labels.index(label)] = 1.0
    return vector


def entry_vote(entry, labels: list[str]) -> np.ndarray:
    """What an entry outside the trained snapshot votes with (see the module docstring)."""
    if not entry.curated and entry.soft_labels:
        soft = np.array([float(entry.soft_labels.get(l, 0.0)) for l in labels])
        if soft.sum() > 0:
            return soft / soft.sum()
    return one_hot(entry.label, labels)


@dataclass(frozen=True)
class Overlay:
    """What the store's current state changes in the trained index; replaced whole, so a query running while the
    store changes reads one consistent overlay."""

    deleted: frozenset = frozenset()
    override: dict = field(default_factory=dict)
    extra_ids: tuple = ()
    extra_keys: np.ndarray = field(default_factory=lambda: np.zeros((0, 1), dtype=np.float32))
    extra_table: dict = field(default_factory=dict)


class LiveIndex:
    """A KeyIndex or MemoryIndex (`base`) with the store's current edits laid over it; same `query` interface."""

    def __init__(self, base, store, encode_keys: EncodeKeys, unindexed: set[str] | Callable[[], set[str]],
                 history_path: str | Path | None = None):
        """`unindexed`: store ids the trained index left out on purpose (or a function giving them, read on the first
        refresh); `history_path`: the store's edit history, whose changes also trigger a refresh."""
        self.base, self.store, self.encode_keys = base, store, encode_keys
        self.labels = list(base.labels)
        self._unindexed = unindexed
        self.history_path = Path(history_path) if history_path else None
        self._lock = threading.Lock()
        self._version = None
        self._key_cache: dict[tuple[str, str], np.ndarray] = {}
        self.overlay = Overlay()
        self.refresh_seconds = 0.0

    @property
    def table(self) -> dict[str, tuple[np.ndarray, float, str]]:
        """Every retrievable entry's (soft label it votes with, weight, label)."""
        self._sync()
        o = self.overlay
        table = {i: row for i, row in self.base.table.items() if i not in o.deleted}
        table.update(o.override)
        table.update(o.extra_table)
        return table

    def __len__(self) -> int:
        self._sync()
        o = self.overlay
        return len(self.base.table) - len(o.deleted) + len(o.extra_ids)

    def _current_version(self):
        history = None
        if self.history_path is not None and self.history_path.is_file():
            stat = self.history_path.stat()
            history = (stat.st_size, stat.st_mtime_ns)
        return self.store.version, history

    def _sync(self) -> None:
        version = self._current_version()
        if version == self._version:
            return
        with self._lock:
            if version != self._version:
                self.refresh()
                self._version = version

    def refresh(self) -> None:
        """Rebuild the overlay from the store's current entries."""
        started = time.perf_counter()
        if callable(self._unindexed):
            self._unindexed = set(self._unindexed())
        # Read ids, the curated entries and the entries outside the index only: at 100k entries reading every
        # entry took seconds, and this runs after every edit.
        present = self.store.ids()
        base = self.base.table
        deleted = set(base).difference(present)
        curated = {e.id: e for e in self.store.list(curated=True)}
        override = {i: (one_hot(e.label, self.labels), 1.0, e.label) for i, e in curated.items()
                    if i in base and e.label in self.labels}
        outside = [i for i in present if i not in base and (i in curated or i not in self._unindexed)]
        found = self.store.lookup([i for i in outside if i not in curated])
        entries = {**{i: found[i][0] for i in found}, **curated}
        extra = [entries[i] for i in outside if i in entries and entries[i].label in self.labels]
        missing = [e for e in extra if (e.id, e.text) not in self._key_cache]
        if missing:
            keys = np.asarray(self.encode_keys([e.text for e in missing]), dtype=np.float32)
            for e, key in zip(missing, keys):
                self._key_cache[(e.id, e.text)] = key / max(float(np.linalg.norm(key)), 1e-12)
        self.overlay = Overlay(
            frozenset(deleted), override, tuple(e.id for e in extra),
            np.stack([self._key_cache[(e.id, e.text)] for e in extra]) if extra else np.zeros((0, 1), np.float32),
            {e.id: (entry_vote(e, self.labels), 1.0, e.label) for e in extra})
        self.refresh_seconds = time.perf_counter() - started

    def query(self, keys: np.ndarray, k: int, exclude_ids: list[set[str]] | None = None) -> Neighbours:
        """The k nearest retrievable entries per key, voting as the store says now."""
        self._sync()
        started = time.perf_counter()
        keys = np.asarray(keys, dtype=np.float32)
        n = len(keys)
        o = self.overlay
        skip = [set(o.deleted) | (exclude_ids[row] if exclude_ids else set()) for row in range(n)]
        base_k = min(k, max(0, len(self.base.table) - len(o.deleted)))
        found = self.base.query(keys, base_k, skip) if base_k else None
        candidates: list[list[tuple[float, str, np.ndarray, float]]] = [[] for _ in range(n)]
        if found is not None:
            for row in range(n):
                for col, entry_id in enumerate(found.ids[row]):
                    soft, weight, _ = o.override.get(entry_id, (found.soft[row, col], found.weights[row, col], ""))
                    candidates[row].append((float(found.sims[row, col]), entry_id, soft, float(weight)))
        if o.extra_ids:
            unit = keys / np.maximum(np.linalg.norm(keys, axis=1, keepdims=True), 1e-12)
            sims = unit @ o.extra_keys.T
            for row in range(n):
                for j in np.argsort(-sims[row], kind="stable")[: k + len(skip[row])]:
                    entry_id = o.extra_ids[j]
                    if entry_id not in skip[row]:
                        soft, weight, _ = o.extra_table[entry_id]
                        candidates[row].append((float(sims[row, j]), entry_id, soft, weight))
        out_sims, out_soft = np.zeros((n, k)), np.zeros((n, k, len(self.labels)))
        out_weights, out_ids = np.zeros((n, k)), []
        for row in range(n):
            best = sorted(candidates[row], key=lambda c: -c[0])[:k]
            out_ids.append([c[1] for c in best])
            for col, (sim, _, soft, weight) in enumerate(best):
                out_sims[row, col], out_soft[row, col], out_weights[row, col] = sim, soft, weight
        seconds = (found.seconds if found is not None else 0.0) + time.perf_counter() - started
        return Neighbours(out_ids, out_sims, out_soft, out_weights, seconds)

    def keys_of(self, ids: list[str]) -> np.ndarray:
        """The retrieval keys of retrievable entries (from the trained index, or computed for added ones)."""
        self._sync()
        o = self.overlay
        extra = dict(zip(o.extra_ids, o.extra_keys))
        base_ids = [i for i in ids if i not in extra]
        base_keys = dict(zip(base_ids, self.base.keys_of(base_ids))) if base_ids else {}
        return np.stack([extra[i] if i in extra else base_keys[i] for i in ids]) if ids else np.zeros((0, 0))


def unindexed_reader(run, store, base) -> Callable[[], set[str]]:
    """The ids the run's trained index left out: its `unindexed-ids.json`, or for a run trained before that file
    existed, the store entries outside the index created before the student was trained."""
    def read() -> set[str]:
        path = run.unindexed_ids_path
        if path.is_file():
            return set(json.loads(path.read_text(encoding="utf-8")))
        trained = run.student_weights.stat().st_mtime if run.student_weights.is_file() else float("inf")
        return {e.id for e in store.list() if e.id not in base.table and e.created <= trained}
    return read


def live_index(run, store, student, base, history_path: str | Path | None = None) -> LiveIndex:
    """`base` (the run's trained key index) seen through `store` (the run's, or a visitor's copy of it)."""
    return LiveIndex(base, store, lambda texts: student.encode(texts)[1], unindexed_reader(run, store, base),
                     history_path if history_path is not None else run.store_edits_path)
