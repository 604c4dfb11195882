"""Hand edits to a knowledge store, with their history and undo.

Every edit made through `StoreEditor` writes the store and then appends one JSON line to a history file: who, when,
what, and the state of each touched entry before and after (`None` = the entry did not exist). Undo puts the `before`
state back, but only while the entries are still as that edit left them; otherwise a later edit touched them and must
be undone first. An undo is an edit too, so it shows in the history and can itself be undone.

States are the entries' JSON form; an entry an edit removed keeps its store vector in `before`, so undoing a delete
puts back exactly the record that was there (same id, same vector). The history file is per store: a run's own, or a
hosted visitor's own next to their copy of the store.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import StoreError
from .entries import Entry, to_json
from .knowledge_store import KnowledgeStore

ACTIONS = ("label", "curated", "delete", "add", "import", "delete-disagreeing", "undo")
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock(path: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(str(path.resolve()), threading.Lock())


@dataclass
class Edit:
    """One line of the history."""

    seq: int
    who: str
    when: float
    action: str
    ids: list[str]
    before: list[dict | None]
    after: list[dict | None]
    undoes: int | None = None
    undone_by: int | None = field(default=None, compare=False)
    """Filled in when the history is read: the undo that reverted this edit, if any."""

    def to_line(self) -> dict:
        return {"seq": self.seq, "who": self.who, "when": self.when, "action": self.action, "ids": self.ids,
                "before": self.before, "after": self.after, "undoes": self.undoes}


def _same(state: dict | None, entry: Entry | None) -> bool:
    """Does the store's entry still look as `state` recorded it (existence, label, curated)?"""
    if state is None or entry is None:
        return state is None and entry is None
    return state["label"] == entry.label and bool(state["curated"]) == bool(entry.curated)


def summary(state: dict | None) -> str:
    """A state in a few words for the history table."""
    if state is None:
        return "(absent)"
    return state["label"] + (" · curated" if state.get("curated") else "")


class StoreEditor:
    """Edits one store and records them in its history file (`path`), in the name of `who`."""

    def __init__(self, store: KnowledgeStore, path: str | Path, who: str):
        self.store, self.path, self.who = store, Path(path), who or "someone"

    # ---- reading the history ------------------------------------------------------------------------------------
    def history(self) -> list[Edit]:
        """All edits, oldest first, with `undone_by` filled in."""
        if not self.path.is_file():
            return []
        edits = []
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                edits.append(Edit(**json.loads(line)))
            except (ValueError, TypeError) as exc:
                raise StoreError(f"The edit history {self.path.name} is damaged at line {number} ({exc}): move the "
                                 "file away to start a new history (the store itself is unaffected).") from None
        by_seq = {e.seq: e for e in edits}
        for e in edits:
            if e.undoes in by_seq:
                by_seq[e.undoes].undone_by = e.seq
        return edits

    # ---- edits --------------------------------------------------------------------------------------------------
    def set_label(self, entry_id: str, label: str, expected: str | None = None) -> Entry:
        """A person's label: the entry is marked curated, so it votes with its label alone (see LiveIndex)."""
        before = self._states([entry_id], vectors=False)
        if before[0] is None:
            raise StoreError(f"No entry {entry_id!r} in this store: it may have been deleted; refresh the list.")
        self.store.update_label(entry_id, label, expected=expected)
        self.store.set_curated([entry_id], True)
        return self._record("label", [entry_id], before)[0]

    def set_curated(self, entry_id: str, curated: bool) -> Entry:
        before = self._states([entry_id], vectors=False)
        if before[0] is None:
            raise StoreError(f"No entry {entry_id!r} in this store: it may have been deleted; refresh the list.")
        self.store.set_curated([entry_id], bool(curated))
        return self._record("curated", [entry_id], before)[0]

    def delete(self, ids: str | Iterable[str]) -> int:
        ids = [ids] if isinstance(ids, str) else list(ids)
        before = self._states(ids, vectors=True)
        present = [i for i, s in zip(ids, before) if s is not None]
        if not present:
            return 0
        self.store.delete(present)
        self._record("delete", present, [s for s in before if s is not None])
        return len(present)

    def delete_where_teacher_disagrees(self) -> int:
        ids = [e.id for e in self.store.list(agreement=False)]
        if not ids:
            return 0
        before = self._states(ids, vectors=True)
        self.store.delete(ids)
        self._record("delete-disagreeing", ids, before)
        return len(ids)

    def add(self, entries: list[Entry], embeddings: np.ndarray | None = None) -> list[str]:
        ids = self.store.add(entries, embeddings)
        self._record("add", ids, [None] * len(ids))
        return ids

    def import_jsonl(self, path: str | Path) -> int:
        ids = self.store.import_entries(path)
        if ids:
            self._record("import", ids, [None] * len(ids))
        return len(ids)

    def undo(self, seq: int) -> Edit:
        """Revert edit `seq` (StoreError when it is unknown, already undone, or its entries changed since)."""
        edits = {e.seq: e for e in self.history()}
        edit = edits.get(int(seq))
        if edit is None:
            raise StoreError(f"There is no edit #{seq} in this store's history.")
        if edit.undone_by is not None:
            raise StoreError(f"Edit #{seq} was already undone by edit #{edit.undone_by}.")
        now = self.store.lookup(edit.ids)
        changed = [i for i, state in zip(edit.ids, edit.after) if not _same(state, now.get(i, (None,))[0])]
        if changed:
            later = [e.seq for e in edits.values() if e.seq > edit.seq and e.undone_by is None
                     and set(e.ids) & set(changed)]
            raise StoreError(f"Entry {changed[0]} changed after edit #{seq}"
                             + (f" (by edit #{later[-1]}): undo that one first." if later else ": undo is refused."))
        before_now = self._states(edit.ids, vectors=True)
        for entry_id, state in zip(edit.ids, edit.before):
            self._restore(entry_id, state, now.get(entry_id, (None,))[0])
        return self._edit("undo", edit.ids, before_now, undoes=edit.seq)

    # ---- internals ----------------------------------------------------------------------------------------------
    def _states(self, ids: list[str], vectors: bool) -> list[dict | None]:
        found = self.store.lookup(ids, vectors=vectors)
        return [None if i not in found else to_json(found[i][0], found[i][1], self.store.embedder.name)
                for i in ids]

    def _restore(self, entry_id: str, state: dict | None, current: Entry | None) -> None:
        if state is None:
            if current is not None:
                self.store.delete([entry_id])
            return
        if current is None:
            if "embedding" not in state:
                raise StoreError(f"Entry {entry_id} cannot be put back: its vector was not recorded.")
            vector = np.asarray([state["embedding"]], dtype=np.float32)
            entry = Entry(**{k: v for k, v in state.items() if k in Entry.__dataclass_fields__})
            self.store.add([entry], vector)
            return
        if current.label != state["label"]:
            self.store.update_label(entry_id, state["label"])
        if bool(current.curated) != bool(state["curated"]):
            self.store.set_curated([entry_id], bool(state["curated"]))

    def _record(self, action: str, ids: list[str], before: list[dict | None]) -> list[Entry | None]:
        edit = self._edit(action, ids, before)
        found = self.store.lookup(ids)
        return [found[i][0] if i in found else None for i in edit.ids]

    def _edit(self, action: str, ids: list[str], before: list[dict | None], undoes: int | None = None) -> Edit:
        after = self._states(ids, vectors=False)
        with _lock(self.path):
            last = self.history()
            edit = Edit(seq=(last[-1].seq + 1) if last else 1, who=self.who, when=time.time(), action=action,
                        ids=list(ids), before=before, after=after, undoes=undoes)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(edit.to_line(), ensure_ascii=False) + "\n")
        return edit
