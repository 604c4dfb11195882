"""HNSW settings (StoreConfig.hnsw_*) reach the Chroma collections of a store and its key index, embedded and on a
server; stores made before them (HNSW space in collection metadata) still open."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from retrikt.config import ConfigError, RunConfig, StoreConfig, from_dict, load_yaml, save_yaml
from retrikt.store.backend import get_client
from retrikt.store.embed import default_embedder
from retrikt.store.knowledge_store import Entry, KnowledgeStore, StoreError
from retrikt.student.retrieval import KEY_SUFFIX, KeyIndex
from test_store import chroma_server, location  # noqa: F401  (fixtures: a real server, and both back-ends)

LABELS = ["negative", "positive"]
SETTINGS = {"max_neighbors": 24, "ef_construction": 120, "ef_search": 70}


def _entries(n: int) -> list[Entry]:
    return [Entry(fields={"sentence": f"review {i}"}, label=LABELS[i % 2], source="train", text=f"Review: review {i}",
                  soft_labels={"negative": 0.3 + 0.4 * (i % 2 == 0), "positive": 0.7 - 0.4 * (i % 2 == 0)},
                  id=f"e{i}") for i in range(n)]


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def _hnsw(where: dict, name: str) -> dict:
    """The HNSW configuration Chroma holds for a collection, read through a fresh lookup."""
    return get_client(where.get("path"), where.get("url")).get_collection(name).configuration["hnsw"]


def _fill(store: KnowledgeStore, n: int = 12, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = store.add(_entries(n), _unit(rng.standard_normal((n, store.dim))))
    return ids, _unit(rng.standard_normal((n, 8)))


def test_hnsw_settings_reach_the_store_and_key_index_collections(location):
    name = f"SST-2__hnsw-{time.time_ns()}"
    store = KnowledgeStore(**location, collection=name, task_labels=LABELS, hnsw=SETTINGS)
    ids, keys = _fill(store)
    soft = np.array([[0.3, 0.7]] * len(ids))
    index = KeyIndex.build(store, ids, keys, soft, LABELS, ["positive"] * len(ids), np.ones(len(ids)))
    for collection in (name, name + KEY_SUFFIX):
        got = _hnsw(location, collection)
        assert got["space"] == "cosine"
        assert {k: got[k] for k in SETTINGS} == SETTINGS
    # cosine, not L2: a key finds itself at similarity 1
    found = index.query(keys[:3], 2)
    assert [row[0] for row in found.ids] == ids[:3]
    assert np.allclose(found.sims[:, 0], 1.0, atol=1e-4)

    # Reopening with another ef_search changes it in place; the build-time settings stay.
    wider = {**SETTINGS, "ef_search": 40, "max_neighbors": 8}
    again = KnowledgeStore(**location, collection=name, create=False, hnsw=wider)
    KeyIndex.open(again)
    for collection in (name, name + KEY_SUFFIX):
        got = _hnsw(location, collection)
        assert (got["ef_search"], got["max_neighbors"], got["ef_construction"]) == (40, 24, 120)
    assert again.query(np.asarray(store.lookup([ids[0]], vectors=True)[ids[0]][1])[None], 1)[0][0][0].id == ids[0]


def test_a_store_made_with_hnsw_metadata_still_opens(location):
    """Stores written before the HNSW settings keep "hnsw:space" in collection metadata (as the shipped demo and
    users' runs do): they open, search by cosine, and take ef_search."""
    name = f"SST-2__legacy-{time.time_ns()}"
    embedder = default_embedder()
    client = get_client(location.get("path"), location.get("url"))
    client.create_collection(name, embedding_function=None, metadata={
        "embedder": embedder.name, "dim": embedder.dim, "labels": json.dumps(LABELS), "created": time.time(),
        "hnsw:space": "cosine"})
    client.create_collection(name + KEY_SUFFIX, embedding_function=None,
                             metadata={"hnsw:space": "cosine", "labels": json.dumps(LABELS), "dim": 8})
    store = KnowledgeStore(**location, collection=name, create=False, hnsw={**SETTINGS, "ef_search": 50})
    ids, keys = _fill(store, seed=1)
    client.get_collection(name + KEY_SUFFIX).add(
        ids=ids, embeddings=keys, metadatas=[{"soft_labels_json": "[0.3, 0.7]", "weight": 1.0, "label": "positive"}] * len(ids))
    index = KeyIndex.open(store)
    assert _hnsw(location, name)["ef_search"] == 50 and _hnsw(location, name + KEY_SUFFIX)["ef_search"] == 50
    assert _hnsw(location, name)["space"] == "cosine" and _hnsw(location, name)["max_neighbors"] == 16
    found = index.query(keys[:2], 1)
    assert [row[0] for row in found.ids] == ids[:2] and np.allclose(found.sims[:, 0], 1.0, atol=1e-4)
    # The create=True path (what a run uses) opens it too, keeping its metadata.
    reopened = KnowledgeStore(**location, collection=name, task_labels=LABELS)
    assert reopened.count() == len(ids) and reopened.labels == LABELS


def test_hnsw_fields_round_trip_through_yaml_and_are_checked(tmp_path):
    config = from_dict({"store": {"hnsw_max_neighbors": 32, "hnsw_ef_construction": 200, "hnsw_ef_search": 64}})
    save_yaml(config, tmp_path / "c.yaml")
    loaded = load_yaml(tmp_path / "c.yaml")
    assert loaded == config
    assert loaded.store.hnsw() == {"max_neighbors": 32, "ef_construction": 200, "ef_search": 64}
    assert RunConfig().store.hnsw() == StoreConfig().hnsw()
    with pytest.raises(ConfigError, match="store.hnsw_ef_search"):
        from_dict({"store": {"hnsw_ef_search": 0}})
    with pytest.raises(ConfigError, match="store.hnsw_max_neighbors"):
        from_dict({"store": {"hnsw_max_neighbors": 1.5}})


def test_bad_hnsw_settings_are_refused(tmp_path):
    with pytest.raises(StoreError, match="Unknown HNSW"):
        KnowledgeStore(path=tmp_path / "s", collection="SST-2__bad", hnsw={"M": 16})
    with pytest.raises(StoreError, match="positive whole numbers"):
        KnowledgeStore(path=tmp_path / "s", collection="SST-2__bad", hnsw={"ef_search": 0})


@pytest.mark.slow
def test_a_key_index_larger_than_sqlites_variable_cap_reopens(tmp_path):
    """KeyIndex.open reads the soft labels page by page: one get() of 40k records fails in Chroma's SQLite."""
    n = 40_000
    store = KnowledgeStore(path=tmp_path / "store", collection="SST-2__big", task_labels=LABELS,
                           hnsw={"max_neighbors": 4, "ef_construction": 8, "ef_search": 8})
    keys = _unit(np.random.default_rng(2).standard_normal((n, 4)))
    ids = [f"e{i}" for i in range(n)]
    soft = np.tile([[0.25, 0.75]], (n, 1))
    KeyIndex.build(store, ids, keys, soft, LABELS, ["positive"] * n, np.ones(n))
    index = KeyIndex.open(KnowledgeStore(path=tmp_path / "store", collection="SST-2__big", create=False))
    assert len(index) == n and index.table["e39999"][2] == "positive"
    assert np.allclose(index.table["e123"][0], [0.25, 0.75])


class _LockedCollection:
    """A collection whose sqlite file is locked for the first `locked` calls of `modify`."""

    def __init__(self, locked: int, message: str = "Database error: (code: 5) database is locked"):
        self.configuration = {"hnsw": {"ef_search": 100}}
        self.locked, self.message, self.calls = locked, message, 0

    def modify(self, configuration):
        import chromadb.errors

        self.calls += 1
        if self.calls <= self.locked:
            raise chromadb.errors.InternalError(self.message)
        self.configuration = configuration


@pytest.mark.parametrize("locked,raises", [(0, False), (2, False), (5, False), (6, True)])
def test_setting_ef_search_waits_out_a_briefly_locked_store(monkeypatch, locked, raises):
    import chromadb.errors

    from retrikt.store import backend

    monkeypatch.setattr(backend, "LOCKED_WAIT_SECONDS", 0.0)
    col = _LockedCollection(locked)
    if raises:
        with pytest.raises(chromadb.errors.InternalError, match="database is locked"):
            backend.use_ef_search(col, {"ef_search": 50})
    else:
        backend.use_ef_search(col, {"ef_search": 50})
        assert col.configuration["hnsw"]["ef_search"] == 50 and col.calls == locked + 1


def test_another_store_error_is_not_retried():
    import chromadb.errors

    from retrikt.store import backend

    col = _LockedCollection(1, "Database error: no such table")
    with pytest.raises(chromadb.errors.InternalError, match="no such table"):
        backend.use_ef_search(col, {"ef_search": 50})
    assert col.calls == 1
