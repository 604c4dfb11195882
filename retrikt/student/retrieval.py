"""ReAugKD-style retrieval: student keys in Chroma, neighbour soft-label mixing, and the retrieval training losses.

At inference the student encodes a query into class probabilities and a key; the key's k nearest store entries
(by cosine in the student's key space, served by a Chroma collection that holds the student keys of the store
entries) vote with their teacher soft labels, weighted by softmax(similarity / tau); the prediction is
(1 - beta) * student + beta * vote.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

from ..errors import StudentError
from ..store.backend import WRITE_LOCK, get_client, guard, hnsw_configuration, hnsw_settings, use_ef_search
from ..store.knowledge_store import READ_PAGE, read_pages

KEY_SUFFIX = "-student-keys"


# ---- the mixing formula ------------------------------------------------------------------------------------------
def neighbour_weights(sims: np.ndarray, tau: float, entry_weights: np.ndarray | None = None) -> np.ndarray:
    """softmax(sim / tau) over each row's neighbours; `entry_weights` (> 0) multiply before normalising."""
    logits = np.asarray(sims, dtype=np.float64) / tau
    if entry_weights is not None:
        logits = logits + np.log(np.clip(entry_weights, 1e-12, None))
    logits -= logits.max(-1, keepdims=True)
    w = np.exp(logits)
    return w / w.sum(-1, keepdims=True)


def mix(student_probs: np.ndarray, neighbour_soft: np.ndarray, sims: np.ndarray, beta: float, tau: float,
        entry_weights: np.ndarray | None = None) -> np.ndarray:
    """(1 - beta) * student_probs + beta * sum_j softmax(sims / tau)_j * neighbour_soft_j.

    Shapes: student_probs (n, C), neighbour_soft (n, k, C), sims (n, k). Rows without neighbours (k = 0) keep the
    student's probabilities.
    """
    student_probs = np.asarray(student_probs, dtype=np.float64)
    if neighbour_soft.shape[1] == 0:
        return student_probs
    vote = (neighbour_weights(sims, tau, entry_weights)[..., None] * neighbour_soft).sum(1)
    return (1.0 - beta) * student_probs + beta * vote


# ---- the Chroma index of student keys ----------------------------------------------------------------------------
@dataclass
class Neighbours:
    """Top-k store entries per query: ids, cosine similarities, and their soft labels and weights."""

    ids: list[list[str]]
    sims: np.ndarray
    soft: np.ndarray
    weights: np.ndarray
    seconds: float = 0.0


class KeyTable(Mapping):
    """id -> (soft label, weight, label) of a key collection, read from Chroma on demand.

    Opening a 100k-entry index by reading every record's metadata took 5 s; the ids alone take a tenth of that, and a
    query only needs the rows of the entries it returns.
    """

    def __init__(self, collection, ids: list[str]):
        self.collection, self._ids, self._known = collection, list(ids), set(ids)
        self._rows: dict[str, tuple[np.ndarray, float, str]] = {}
        self._lock = threading.Lock()

    def __contains__(self, entry_id) -> bool:
        return entry_id in self._known

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self):
        return iter(self._ids)

    def __getitem__(self, entry_id: str) -> tuple[np.ndarray, float, str]:
        if entry_id not in self._known:
            raise KeyError(entry_id)
        if entry_id not in self._rows:
            self.fetch([entry_id])
        return self._rows[entry_id]

    def items(self):
        self.fetch(self._ids)
        return ((i, self._rows[i]) for i in self._ids)

    def values(self):
        return (row for _, row in self.items())

    def fetch(self, ids) -> None:
        """Read the rows of `ids` not read yet, in as few Chroma calls as the id limit allows."""
        missing = list(dict.fromkeys(i for i in ids if i in self._known and i not in self._rows))
        for start in range(0, len(missing), READ_PAGE):
            got = self.collection.get(ids=missing[start : start + READ_PAGE], include=["metadatas"])
            rows = {i: (np.asarray(json.loads(m["soft_labels_json"])), float(m["weight"]), m["label"])
                    for i, m in zip(got["ids"], got["metadatas"])}
            with self._lock:
                self._rows.update(rows)


@dataclass
class KeyIndex:
    """Student keys of the store entries in their own Chroma collection (next to the store's collection).

    The soft labels, labels and entry weights are Chroma metadata too, so the index is self-contained; an opened
    index reads its ids, then each entry's row the first time a query returns it (see `KeyTable`).
    """

    collection: object
    labels: list[str]
    table: Mapping[str, tuple[np.ndarray, float, str]] = field(default_factory=dict)
    where: str = ""
    """The store's folder or server URL, named in the error when the server is lost."""

    def _guard(self):
        return guard(self.where, self.collection.name)

    @staticmethod
    def _client(store):
        location = store.location
        return get_client(None, location) if location.startswith(("http://", "https://")) else get_client(location, None)

    @classmethod
    def build(cls, store, ids: list[str], keys: np.ndarray, soft: np.ndarray, labels: list[str],
              entry_labels: list[str], weights: np.ndarray) -> "KeyIndex":
        """(Re)create the key collection of `store` with one record per entry id, with the store's HNSW settings."""
        client = cls._client(store)
        name = store.name + KEY_SUFFIX
        meta = {"labels": json.dumps(list(labels)), "dim": int(keys.shape[1])}
        hnsw = hnsw_settings(getattr(store, "hnsw", None))
        with WRITE_LOCK:
            if name in {c.name for c in client.list_collections()}:
                client.delete_collection(name)
            col = client.create_collection(name, metadata=meta, configuration=hnsw_configuration(hnsw),
                                           embedding_function=None)
            step = max(1, int(client.get_max_batch_size()))
            metadatas = [{"soft_labels_json": json.dumps([float(x) for x in s]), "weight": float(w), "label": l}
                         for s, w, l in zip(soft, weights, entry_labels)]
            for start in range(0, len(ids), step):
                part = slice(start, start + step)
                col.add(ids=list(ids[part]), embeddings=np.asarray(keys[part], dtype=np.float32),
                        metadatas=metadatas[part])
        index = cls(col, list(labels), where=store.location)
        index.table = {i: (np.asarray(s, dtype=np.float64), float(w), l)
                       for i, s, w, l in zip(ids, soft, weights, entry_labels)}
        return index

    @classmethod
    def open(cls, store) -> "KeyIndex":
        """Reopen the key collection built for `store` (after training, e.g. in another process), searching with
        the store's ef_search."""
        from chromadb.errors import NotFoundError

        try:
            with guard(store.location):
                col = cls._client(store).get_collection(store.name + KEY_SUFFIX, embedding_function=None)
        except NotFoundError:
            raise StudentError(f"no student keys for store {store.name!r}: train the student first") from None
        with WRITE_LOCK, guard(store.location):
            use_ef_search(col, hnsw_settings(getattr(store, "hnsw", None)))
        index = cls(col, json.loads(col.metadata["labels"]), where=store.location)
        with index._guard():
            index.table = KeyTable(col, read_pages(col, [])["ids"])
        return index

    def __len__(self) -> int:
        return len(self.table)

    def keys_of(self, ids: list[str]) -> np.ndarray:
        """The stored student keys of `ids`, in that order."""
        found: dict[str, np.ndarray] = {}
        with self._guard():
            for start in range(0, len(ids), READ_PAGE):  # Chroma caps the ids of one call
                got = self.collection.get(ids=list(ids[start : start + READ_PAGE]), include=["embeddings"])
                found.update(zip(got["ids"], np.asarray(got["embeddings"], dtype=np.float32)))
        return np.stack([found[i] for i in ids]) if ids else np.zeros((0, 0), dtype=np.float32)

    def query(self, keys: np.ndarray, k: int, exclude_ids: list[set[str]] | None = None) -> Neighbours:
        """The k nearest entries for each key; `exclude_ids[i]` are never returned for query i (its own id)."""
        start = time.perf_counter()
        extra = max((len(x) for x in exclude_ids), default=0) if exclude_ids else 0
        n = min(len(self.table), k + extra)
        with self._guard():
            res = self.collection.query(query_embeddings=np.asarray(keys, dtype=np.float32), n_results=n,
                                        include=["distances"])
            if isinstance(self.table, KeyTable):
                self.table.fetch([i for hit_ids in res["ids"] for i in hit_ids])
        ids, sims = [], np.zeros((len(keys), k))
        soft = np.zeros((len(keys), k, len(self.labels)))
        weights = np.ones((len(keys), k))
        for row, (hit_ids, dists) in enumerate(zip(res["ids"], res["distances"])):
            skip = exclude_ids[row] if exclude_ids else ()
            kept = [(i, d) for i, d in zip(hit_ids, dists) if i not in skip][:k]
            ids.append([i for i, _ in kept])
            for col, (i, d) in enumerate(kept):
                sims[row, col] = 1.0 - d
                soft[row, col], weights[row, col], _ = self.table[i]
            # Fewer hits than k (tiny store): padded slots get weight 0 so they never vote.
            weights[row, len(kept):] = 0.0
        return Neighbours(ids, sims, soft, weights, time.perf_counter() - start)


@dataclass
class MemoryIndex:
    """The same student keys, soft labels and weights as a KeyIndex, searched exactly in memory (no Chroma): what an
    exported bundle retrieves from."""

    ids: list[str]
    keys: np.ndarray
    labels: list[str]
    table: dict[str, tuple[np.ndarray, float, str]] = field(default_factory=dict)

    def __post_init__(self):
        keys = np.asarray(self.keys, dtype=np.float32)
        self._unit = keys / np.maximum(np.linalg.norm(keys, axis=1, keepdims=True), 1e-12)

    def __len__(self) -> int:
        return len(self.ids)

    def keys_of(self, ids: list[str]) -> np.ndarray:
        position = {i: n for n, i in enumerate(self.ids)}
        return np.asarray(self.keys, dtype=np.float32)[[position[i] for i in ids]]

    def query(self, keys: np.ndarray, k: int, exclude_ids: list[set[str]] | None = None) -> Neighbours:
        """The k entries of highest cosine similarity per key (as `KeyIndex.query`, but exact)."""
        start = time.perf_counter()
        queries = np.asarray(keys, dtype=np.float32)
        queries = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
        all_sims = queries @ self._unit.T
        ids, sims = [], np.zeros((len(queries), k))
        soft = np.zeros((len(queries), k, len(self.labels)))
        weights = np.zeros((len(queries), k))
        for row in range(len(queries)):
            skip = exclude_ids[row] if exclude_ids else ()
            order = [j for j in np.argsort(-all_sims[row], kind="stable") if self.ids[j] not in skip][:k]
            ids.append([self.ids[j] for j in order])
            for col, j in enumerate(order):
                sims[row, col] = all_sims[row, j]
                soft[row, col], weights[row, col], _ = self.table[self.ids[j]]
        return Neighbours(ids, sims, soft, weights, time.perf_counter() - start)


# ---- training losses (in torch) ----------------------------------------------------------------------------------
def relational_loss(student_keys: torch.Tensor, teacher_sim: torch.Tensor, tau: float) -> torch.Tensor:
    """KL(teacher-space neighbour distribution || student key-space one) over the other items of the batch.

    Each row is a softmax over the batch without the item itself (an item is never its own neighbour).
    """
    n = student_keys.shape[0]
    if n < 3:
        return student_keys.sum() * 0.0
    eye = torch.eye(n, dtype=torch.bool, device=student_keys.device)
    student_logits = (student_keys @ student_keys.T / tau).masked_fill(eye, -1e9)
    teacher_logits = (teacher_sim / tau).masked_fill(eye, -1e9)
    target = teacher_logits.softmax(-1)
    return F.kl_div(student_logits.log_softmax(-1), target, reduction="batchmean")


def teacher_similarity(soft: torch.Tensor, embeddings: torch.Tensor, label_weight: float = 0.5) -> torch.Tensor:
    """Similarity in the teacher's space: cosine of teacher soft labels blended with cosine of store embeddings.

    design choice: the teacher's hidden states are not kept in the store, so its space is its soft labels (what it
    knows about the task) plus the store's sentence embeddings (which inputs are alike), weighted half-half.
    """
    s = F.normalize(soft, dim=-1)
    e = F.normalize(embeddings, dim=-1)
    return label_weight * (s @ s.T) + (1.0 - label_weight) * (e @ e.T)


def bank_neighbours(query_keys: torch.Tensor, query_ids: list[str], bank_keys: torch.Tensor, bank_ids: list[str],
                    k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k bank rows per query by cosine, never the query's own id: (indices (n, k), similarities (n, k)).

    Similarities stay differentiable in `query_keys`; the bank is a detached snapshot of the store keys.
    """
    sims = query_keys @ bank_keys.T
    position = {i: j for j, i in enumerate(bank_ids)}
    own = [(row, position[i]) for row, i in enumerate(query_ids) if i in position]
    if own:
        rows, cols = zip(*own)
        sims = sims.index_put((torch.tensor(rows), torch.tensor(cols)), torch.tensor(-1e4))
    k = min(k, bank_keys.shape[0] - (1 if own else 0))
    top = sims.topk(k, dim=-1)
    return top.indices, top.values


def mixed_log_probs(student_logits: torch.Tensor, neighbour_soft: torch.Tensor, sims: torch.Tensor,
                    entry_weights: torch.Tensor, beta: float, tau: float) -> torch.Tensor:
    """log of the mixing formula in torch (gradients reach the head through the student term and the keys
    through the neighbour weights)."""
    weights = (sims / tau + entry_weights.clamp(min=1e-12).log()).softmax(-1)
    vote = (weights.unsqueeze(-1) * neighbour_soft).sum(1)
    return ((1.0 - beta) * student_logits.softmax(-1) + beta * vote).clamp(min=1e-8).log()


# ---- inference ---------------------------------------------------------------------------------------------------
@dataclass
class Prediction:
    """Student-alone and retrieval-mixed class probabilities for a list of inputs, with the neighbours used."""

    student: np.ndarray
    mixed: np.ndarray
    neighbours: Neighbours
    student_seconds: float
    retrieval_seconds: float


def predict(student, index: KeyIndex | None, texts: list[str], k: int, tau: float, beta: float,
            batch_size: int = 64) -> Prediction:
    """Encode `texts`, fetch k neighbours per key from the Chroma key index and mix (beta = 0 or no index:
    the mixed probabilities are the student's)."""
    start = time.perf_counter()
    probs, keys = student.encode(texts, batch_size=batch_size)
    student_seconds = time.perf_counter() - start
    if index is None or len(index) == 0 or len(texts) == 0:
        empty = Neighbours([[] for _ in texts], np.zeros((len(texts), 0)), np.zeros((len(texts), 0, probs.shape[1])),
                           np.zeros((len(texts), 0)))
        return Prediction(probs, probs.astype(np.float64), empty, student_seconds, 0.0)
    start = time.perf_counter()
    found = index.query(keys, k)
    mixed = mix(probs, found.soft, found.sims, beta, tau, found.weights)
    return Prediction(probs, mixed, found, student_seconds, time.perf_counter() - start)
