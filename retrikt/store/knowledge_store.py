"""The knowledge store: teacher-labelled samples in a Chroma collection.

Every sample (an :class:`Entry`) is one Chroma record: the document is the
serialized text that was embedded, the metadata holds flat scalars to filter on
plus JSON strings for the nested parts (Chroma metadata only takes scalars).
Vectors are always computed here and passed in, so Chroma never runs its own
embedding function (which would try to download a model).
"""
from __future__ import annotations

import contextlib
import json
import time
import uuid
from pathlib import Path
from typing import Iterable

import numpy as np
from chromadb.errors import NotFoundError

from .embed import Embedder, default_embedder
from .backend import (
    WRITE_LOCK, chroma_where, check_collection_name, collection_name, get_client, guard, hnsw_configuration,
    hnsw_settings, list_collections, use_ef_search, writes, writing,
)
from .entries import (
    SOURCES,
    Entry,
    StoreError,
    check_entry,
    complete,
    from_record,
    line_vectors,
    read_jsonl,
    to_json,
    to_metadata,
    write_jsonl,
)

__all__ = ["SOURCES", "Entry", "StoreError", "KnowledgeStore", "collection_name", "list_collections"]


def _as_list(ids: str | Iterable[str]) -> list[str]:
    return [ids] if isinstance(ids, str) else list(ids)


READ_PAGE = 5000
"""Rows per Chroma read: one read of a whole large collection overflows SQLite's limit on query variables (a
100k-entry store failed with "too many SQL variables"), so whole-store reads go page by page."""

_RUST_REGEX_META = set("\\.+*?()|[]{}^$#&-~")


def text_filter(text: str | None, ignore_case: bool = False) -> dict | None:
    """A Chroma ``where_document`` for "the text contains ``text``" (None: no filter)."""
    if not text:
        return None
    if not ignore_case:
        return {"$contains": text}
    # Chroma matches $regex with Rust's regex engine: escape its meta characters, nothing else.
    literal = "".join("\\" + c if c in _RUST_REGEX_META else c for c in text)
    return {"$regex": "(?i)" + literal}


def _filters(label, source, agreement, curated, min_reward, text_contains, ignore_case) -> dict | None:
    """Chroma's ``where`` and ``where_document`` for `KnowledgeStore.list`/`ids` filters; None when nothing can
    match ("one of nothing": Chroma rejects an empty $in)."""
    if any(isinstance(v, (list, tuple, set)) and not v for v in (label, source)):
        return None
    return {"where": chroma_where(label=label, source=source, agreement=agreement, curated=curated,
                                  reward_total=min_reward),
            "where_document": text_filter(text_contains, ignore_case)}


def read_pages(collection, include: list[str], limit: int | None = None, start: int = 0, **filters) -> dict[str, list]:
    """``collection.get(include=..., **filters)`` read in pages of READ_PAGE rows from row ``start``, at most
    ``limit`` rows.

    A write between two pages may shift later rows by a page boundary; whole-store reads happen for views and
    exports, which are redone on the next change anyway.
    """
    if not include and limit is None and not start:
        # Ids alone take no per-row variables, and paging would make Chroma re-run the filter for every page.
        return {"ids": list(collection.get(include=[], **filters)["ids"])}
    out: dict[str, list] = {"ids": [], **{part: [] for part in include}}
    offset = 0
    while limit is None or offset < limit:
        size = READ_PAGE if limit is None else min(READ_PAGE, limit - offset)
        got = collection.get(include=include, limit=size, offset=start + offset, **filters)
        out["ids"] += got["ids"]
        for part in include:
            values = got.get(part)
            out[part] += list(values) if values is not None else []
        if len(got["ids"]) < size:
            break
        offset += size
    return out


class KnowledgeStore:
    """Teacher-labelled samples of one task run, kept in one Chroma collection.

    Local stores (``path``) share one Chroma client per folder per process; server
    stores (``url``) talk to a Chroma server over HTTP. All writes in the process go
    through one lock, so threads may share or open stores freely.
    """

    def __init__(
        self,
        *,
        path: str | Path | None = None,
        url: str | None = None,
        collection: str,
        embedder: Embedder | None = None,
        task_labels: list[str] | None = None,
        create: bool = True,
        hnsw: dict[str, int] | None = None,
    ):
        """Open (or with ``create`` make) ``collection`` in the folder ``path`` or on the server ``url``.

        ``hnsw`` holds HNSW settings under Chroma's names (``max_neighbors``, ``ef_construction``, ``ef_search``;
        None: the StoreConfig defaults); a new collection gets them all, an existing one only ``ef_search`` (used
        from Chroma's next load of the index). The student-key index built for this store uses them too.

        Raises StoreError if the collection was built with another embedder, with
        other task labels, or (``create=False``) does not exist.
        """
        check_collection_name(collection)
        self.hnsw = hnsw_settings(hnsw)
        self.name = collection
        self.location = str(Path(path).expanduser().resolve()) if path is not None else str(url)
        self._client = get_client(path, url)
        self.embedder = embedder or default_embedder()
        self.dim = self.embedder.dim
        with self._guard():
            if create:
                metadata = {
                    "embedder": self.embedder.name,
                    "dim": self.dim,
                    "labels": json.dumps(list(task_labels or [])),
                    "created": time.time(),
                }
                with WRITE_LOCK:
                    # An existing collection keeps its configuration (Chroma ignores it here), so stores made
                    # with "hnsw:space" metadata open as before.
                    col = self._client.get_or_create_collection(
                        collection, metadata=metadata, configuration=hnsw_configuration(self.hnsw),
                        embedding_function=None,
                    )
                    use_ef_search(col, self.hnsw)
            else:
                try:
                    col = self._client.get_collection(collection, embedding_function=None)
                except NotFoundError:
                    names = sorted(c.name for c in self._client.list_collections())
                    raise StoreError(
                        f"No collection {collection!r} in {self.location} (there are: {names or 'none'}): "
                        "generate samples for this run first, or pick an existing collection."
                    ) from None
                with WRITE_LOCK:
                    use_ef_search(col, self.hnsw)
            self._batch = max(1, int(self._client.get_max_batch_size()))
        meta = col.metadata or {}
        if meta.get("embedder") != self.embedder.name or meta.get("dim") != self.dim:
            raise StoreError(
                f"Collection {collection!r} was built with embedder {meta.get('embedder')!r} "
                f"({meta.get('dim')} dims) but was opened with {self.embedder.name!r} ({self.dim} dims): "
                "open it with the same embedder, or use a new collection."
            )
        stored = json.loads(meta["labels"]) if meta.get("labels") else None
        if task_labels and stored and list(task_labels) != stored:
            raise StoreError(
                f"Collection {collection!r} holds labels {stored}, not {list(task_labels)}: "
                "use a new collection for a task with other labels."
            )
        # Collection metadata is not patched later: Chroma's modify() replaces all of it
        # and refuses to restate hnsw:space, so labels given only now live in memory.
        self.labels: list[str] | None = list(task_labels or stored or []) or None
        self.created = float(meta.get("created", 0.0))
        self._collection = col

    def __repr__(self) -> str:
        return f"KnowledgeStore({self.name!r} at {self.location!r}, embedder={self.embedder.name!r})"

    # ------------------------------------------------------------ internals

    @property
    def _col(self):
        if self._collection is None:
            raise StoreError(f"Collection {self.name!r} was dropped: open a new KnowledgeStore to recreate it.")
        return self._collection

    def _guard(self):
        return guard(self.location, self.name)

    def _writing(self):
        return writing(self.location, self.name)

    @property
    def version(self) -> tuple[int, int]:
        """(entries, writes made by this process): changes whenever this process writes or the count changes."""
        return self.count(), writes(self.location, self.name)

    def _vectors(self, embeddings, n: int) -> np.ndarray:
        vectors = np.asarray(embeddings, dtype=np.float32)
        if vectors.ndim == 1:
            vectors = vectors.reshape(1, -1)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim or (n >= 0 and vectors.shape[0] != n):
            want = f"({n}, {self.dim})" if n >= 0 else f"(n, {self.dim})"
            raise StoreError(f"Embeddings have shape {vectors.shape}, expected {want} for embedder {self.embedder.name!r}.")
        if not np.isfinite(vectors).all():
            raise StoreError("Embeddings contain NaN or infinite values: re-embed the texts.")
        return vectors

    def _existing(self, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(ids), self._batch):
            found.update(self._col.get(ids=ids[start : start + self._batch], include=[])["ids"])
        return found

    def _require(self, ids: list[str]) -> None:
        missing = [i for i in ids if i not in self._existing(ids)]
        if missing:
            raise StoreError(f"No entries with ids {missing[:5]} in {self.name!r}: they may have been deleted; refresh the list.")

    # ------------------------------------------------------------ writes

    def add(self, entries: list[Entry], embeddings: np.ndarray | None = None) -> list[str]:
        """Store ``entries`` (embedding ``entry.text`` unless ``embeddings`` is given); returns their ids.

        Missing ids are assigned (uuid4 hex) and set on the entries; teacher_label
        and agreement are derived from soft_labels when absent. All or nothing.
        """
        entries = list(entries)
        if not entries:
            return []
        for i, entry in enumerate(entries):
            problem = check_entry(entry, self.labels)
            if problem:
                raise StoreError(f"Entry {i} cannot be stored: {problem}.")
        ids = [entry.id or uuid.uuid4().hex for entry in entries]
        if len(set(ids)) != len(ids):
            raise StoreError("The same id appears twice in one add(): give each entry its own id or leave it unset.")
        if embeddings is None:
            vectors = self.embedder.encode([entry.text for entry in entries])
        else:
            vectors = self._vectors(embeddings, len(entries))
        records = [complete(entry) for entry in entries]
        metadatas = [to_metadata(record) for record in records]
        documents = [record.text for record in records]
        with self._writing():
            # Chroma silently keeps the old record when an id is added twice, so check first.
            taken = self._existing(ids)
            if taken:
                raise StoreError(
                    f"{len(taken)} id(s) are already in {self.name!r} (e.g. {sorted(taken)[0]!r}): "
                    "leave id unset for new entries, or delete the old ones first."
                )
            written: list[str] = []
            try:
                for start in range(0, len(ids), self._batch):
                    part = slice(start, start + self._batch)
                    self._col.add(ids=ids[part], embeddings=vectors[part], documents=documents[part], metadatas=metadatas[part])
                    written.extend(ids[part])
            except BaseException:
                # Batches beyond Chroma's limit are separate writes; undo the ones that landed.
                with contextlib.suppress(Exception):
                    if written:
                        self._col.delete(ids=written)
                raise
        for entry, id_ in zip(entries, ids):
            entry.id = id_
        return ids

    def update_label(self, id: str, label: str, expected: str | None = None) -> Entry:
        """Relabel one entry and recompute its agreement with the teacher; returns the updated entry.

        With ``expected`` (the label the caller last saw) a label changed meanwhile by someone else is a
        StoreError instead of being overwritten."""
        with self._writing():
            entry = self.get([id])[0]
            if expected is not None and entry.label != expected:
                raise StoreError(f"Entry {id} was changed by someone else since you opened it (its label is now "
                                 f"{entry.label!r}): reopen it and decide again.")
            allowed = self.labels or sorted(entry.soft_labels or {})
            if not isinstance(label, str) or not label or (allowed and label not in allowed):
                raise StoreError(f"Unknown label {label!r}: choose one of {allowed}.")
            entry.label = label
            entry = complete(entry)
            patch: dict = {"label": label}
            if entry.agreement is not None:
                patch["agreement"] = entry.agreement
            self._col.update(ids=[id], metadatas=[patch])  # update() merges into the stored metadata
        return entry

    def set_curated(self, ids: str | Iterable[str], curated: bool = True) -> int:
        """Mark entries as curated (or not); returns how many were changed."""
        ids = _as_list(ids)
        if not ids:
            return 0
        with self._writing():
            # Chroma ignores updates of unknown ids without a word; tell the user instead.
            self._require(ids)
            for start in range(0, len(ids), self._batch):
                part = ids[start : start + self._batch]
                self._col.update(ids=part, metadatas=[{"curated": bool(curated)}] * len(part))
        return len(ids)

    def delete(self, ids: str | Iterable[str]) -> int:
        """Delete entries; returns how many existed. Unknown ids are ignored."""
        ids = _as_list(ids)
        if not ids:
            return 0
        with self._writing():
            present = sorted(self._existing(ids))
            for start in range(0, len(present), self._batch):
                self._col.delete(ids=present[start : start + self._batch])
        return len(present)

    def delete_where_teacher_disagrees(self) -> int:
        """Delete every entry whose teacher label differs from its intended label; returns the count."""
        with self._writing():
            ids = self._col.get(where={"agreement": False}, include=[])["ids"]
            for start in range(0, len(ids), self._batch):
                self._col.delete(ids=ids[start : start + self._batch])
        return len(ids)

    def drop(self) -> None:
        """Delete the whole collection; this store object is unusable afterwards."""
        with self._writing():
            self._client.delete_collection(self.name)
            self._collection = None

    # ------------------------------------------------------------ reads

    def count(self, where: dict | None = None) -> int:
        """Number of entries, optionally only those matching a Chroma ``where`` filter."""
        with self._guard():
            if where is None:
                return self._col.count()
            return len(read_pages(self._col, [], where=where)["ids"])

    def get(self, ids: str | Iterable[str]) -> list[Entry]:
        """Entries by id, in the order asked; StoreError if any is missing."""
        ids = _as_list(ids)
        if not ids:
            return []
        found = {i: entry for i, (entry, _) in self.lookup(ids).items()}
        missing = [i for i in ids if i not in found]
        if missing:
            raise StoreError(f"No entries with ids {missing[:5]} in {self.name!r}: they may have been deleted; refresh the list.")
        return [found[i] for i in ids]

    def lookup(self, ids: str | Iterable[str], vectors: bool = False) -> dict[str, tuple[Entry, np.ndarray | None]]:
        """The entries of those ids that exist (missing ids are simply absent), with their vectors when asked."""
        ids = _as_list(ids)
        include = ["documents", "metadatas"] + (["embeddings"] if vectors else [])
        found: dict[str, tuple[Entry, np.ndarray | None]] = {}
        with self._guard():
            for start in range(0, len(ids), self._batch):
                res = self._col.get(ids=ids[start : start + self._batch], include=include)
                embs = res.get("embeddings") if vectors else None
                for n, (i, d, m) in enumerate(zip(res["ids"], res["documents"], res["metadatas"])):
                    found[i] = (from_record(i, d, m), None if embs is None else np.asarray(embs[n], dtype=np.float32))
        return found

    def vectors(self, ids: str | Iterable[str]) -> dict[str, np.ndarray]:
        """The stored vectors of those ids that exist (without reading their entries)."""
        ids = _as_list(ids)
        found: dict[str, np.ndarray] = {}
        with self._guard():
            for start in range(0, len(ids), self._batch):
                res = self._col.get(ids=ids[start : start + self._batch], include=["embeddings"])
                found.update(zip(res["ids"], np.asarray(res["embeddings"], dtype=np.float32).reshape(-1, self.dim)))
        return found

    def list(
        self,
        *,
        label: str | list[str] | None = None,
        source: str | list[str] | None = None,
        agreement: bool | None = None,
        curated: bool | None = None,
        min_reward: float | None = None,
        text_contains: str | None = None,
        ignore_case: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Entry]:
        """Entries in insertion order, filtered; None means "any". ``text_contains`` is case-sensitive unless
        ``ignore_case``."""
        filters = _filters(label, source, agreement, curated, min_reward, text_contains, ignore_case)
        if filters is None:
            return []
        with self._guard():
            if limit is not None and int(limit) <= READ_PAGE:
                res = self._col.get(include=["documents", "metadatas"], limit=int(limit), offset=int(offset),
                                    **filters)
            else:
                res = read_pages(self._col, ["documents", "metadatas"], limit=limit, start=int(offset), **filters)
        return [from_record(i, d, m) for i, d, m in zip(res["ids"], res["documents"], res["metadatas"])]

    def ids(
        self,
        *,
        label: str | list[str] | None = None,
        source: str | list[str] | None = None,
        agreement: bool | None = None,
        curated: bool | None = None,
        min_reward: float | None = None,
        text_contains: str | None = None,
        ignore_case: bool = False,
    ) -> list[str]:
        """The ids `list` would return with the same filters, in insertion order, without reading the entries."""
        filters = _filters(label, source, agreement, curated, min_reward, text_contains, ignore_case)
        if filters is None:
            return []
        with self._guard():
            return read_pages(self._col, [], **filters)["ids"]

    def all_embeddings(self) -> tuple[list[str], np.ndarray]:
        """All ids and their vectors, shape (n, dim), float32."""
        with self._guard():
            res = read_pages(self._col, ["embeddings"])
        if not res["ids"]:
            return [], np.zeros((0, self.dim), dtype=np.float32)
        return list(res["ids"]), np.asarray(res["embeddings"], dtype=np.float32).reshape(len(res["ids"]), self.dim)

    def query(
        self,
        embeddings: np.ndarray,
        k: int,
        where: dict | None = None,
        exclude_ids: list[str] | None = None,
    ) -> list[list[tuple[Entry, float]]]:
        """The ``k`` nearest entries for each query vector as (entry, cosine similarity), best first."""
        vectors = self._vectors(embeddings, -1)
        if not isinstance(k, int) or k < 1:
            raise StoreError(f"k must be a positive whole number, got {k!r}.")
        exclude = set(exclude_ids or ())
        with self._guard():
            total = self._col.count()
            if total == 0:
                raise StoreError(f"The knowledge store {self.name!r} is empty: generate or import samples first.")
            # Chroma ignores where-filters on ids, so excluded ids are over-fetched and dropped here.
            res = self._col.query(
                query_embeddings=vectors,
                n_results=min(total, k + len(exclude)),
                where=where,
                include=["documents", "metadatas", "distances"],
            )
        results = []
        for ids, docs, metas, dists in zip(res["ids"], res["documents"], res["metadatas"], res["distances"]):
            hits = [
                (from_record(i, d, m), 1.0 - float(dist))
                for i, d, m, dist in zip(ids, docs, metas, dists)
                if i not in exclude
            ]
            results.append(hits[:k])
        return results

    def search_text(self, text: str, k: int = 10) -> list[tuple[Entry, float]]:
        """Entries semantically closest to ``text`` (embedded with the store's embedder)."""
        if not isinstance(text, str) or not text.strip():
            raise StoreError("Type some text to search for.")
        return self.query(self.embedder.encode([text]), k)[0]

    # ------------------------------------------------------------ files

    def export_jsonl(self, path: str | Path, include_embeddings: bool = True) -> int:
        """Write every entry (and its vector) as one JSON line; returns the number written."""
        include = ["documents", "metadatas"] + (["embeddings"] if include_embeddings else [])
        with self._guard():
            res = read_pages(self._col, include)
        vectors = res.get("embeddings") if include_embeddings else None
        lines = [
            to_json(from_record(i, d, m), None if vectors is None else vectors[n], self.embedder.name)
            for n, (i, d, m) in enumerate(zip(res["ids"], res["documents"], res["metadatas"]))
        ]
        return write_jsonl(path, lines)

    def import_jsonl(self, path: str | Path) -> int:
        """Add the entries of an exported file; all lines are validated before anything is written.

        Stored vectors are reused when they came from this store's embedder; other
        lines are re-embedded. Returns the number of entries added.
        """
        return len(self.import_entries(path))

    def import_entries(self, path: str | Path) -> list[str]:
        """`import_jsonl`, returning the ids of the added entries."""
        lines = read_jsonl(path, self.labels, self.embedder.name, self.dim)
        if not lines:
            return []
        ids = [line.entry.id for line in lines if line.entry.id]
        with self._guard():
            taken = self._existing(ids)
        if taken:
            first = next(line for line in lines if line.entry.id in taken)
            raise StoreError(
                f"{Path(path).name} line {first.lineno}: id {first.entry.id!r} is already in {self.name!r}; "
                "import into a new collection or delete those entries first. Nothing was imported."
            )
        return self.add([line.entry for line in lines], line_vectors(lines, self.dim, self.embedder.encode))
