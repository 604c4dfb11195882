"""A store past one Chroma read: 35,000 entries, more than SQLite's 32,766 query variables, where reading the whole
store or the key index in one call failed ("too many SQL variables"). The store tab's filters, pages, map and entry
view, the key index and the live overlay must work on it without reading every entry per click."""
from __future__ import annotations

import time

import numpy as np
import pytest

from retrikt.store.knowledge_store import Entry, KnowledgeStore
from retrikt.student.live import LiveIndex
from retrikt.student.retrieval import KeyIndex, KeyTable
from retrikt.studio.store_view import (
    MAX_ROWS, Filters, cached_map, embedding_map, map_basis, matching_ids, select_page, with_selected,
)

pytestmark = pytest.mark.slow  # `make test-fast` skips it: each test here costs seconds of real model work

SIZE = 35_000
LABELS = ["negative", "positive"]


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """(store, key index) of SIZE entries in a few clusters; every 7th entry mentions "Boring", every 10th is
    unscored, labels alternate."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(8, 384))
    store = KnowledgeStore(path=tmp_path_factory.mktemp("big") / "store", collection="big__store",
                           task_labels=LABELS)
    ids = [f"e{n:05d}" for n in range(SIZE)]
    for start in range(0, SIZE, 5000):
        part = range(start, min(SIZE, start + 5000))
        entries = [Entry(fields={"sentence": f"review {n}" + (" Boring" if n % 7 == 0 else "")},
                         label=LABELS[n % 2], source="unlabeled", id=ids[n],
                         text=f"review {n}" + (" Boring" if n % 7 == 0 else ""),
                         soft_labels=None if n % 10 == 0 else {"negative": 0.3, "positive": 0.7}) for n in part]
        vectors = centres[[n % 8 for n in part]] + 0.3 * rng.normal(size=(len(part), 384))
        store.add(entries, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    keys = rng.normal(size=(SIZE, 16)).astype(np.float32)
    soft = np.tile([0.3, 0.7], (SIZE, 1))
    KeyIndex.build(store, ids, keys, soft, LABELS, [LABELS[n % 2] for n in range(SIZE)], np.ones(SIZE))
    return store, keys


def test_whole_store_reads_work_past_one_chroma_call(big):
    store, _ = big
    assert store.count() == SIZE
    assert len(store.ids()) == SIZE and len(store.list()) == SIZE
    ids, vectors = store.all_embeddings()
    assert len(ids) == SIZE and vectors.shape == (SIZE, 384)
    assert store.count({"label": "positive"}) == SIZE // 2


def test_key_index_opens_with_ids_only_and_reads_rows_on_demand(big):
    store, keys = big
    started = time.perf_counter()
    index = KeyIndex.open(store)
    opened = time.perf_counter() - started
    assert isinstance(index.table, KeyTable) and len(index) == SIZE and "e00042" in index.table
    found = index.query(keys[:3], k=4)
    assert [row[0] for row in found.ids] == ["e00000", "e00001", "e00002"]  # each key finds its own entry first
    assert found.soft.shape == (3, 4, 2) and np.allclose(found.soft[0, 0], [0.3, 0.7])
    assert len(index.table._rows) <= 12  # only the returned entries' rows were read
    print(f"key index of {SIZE:,} opened in {opened:.2f} s")


def test_store_tab_filters_pages_and_opens_without_a_full_read(big):
    store, _ = big
    map_basis(store)  # the map's axes are fitted once per store, when its tab first opens
    started = time.perf_counter()
    assert len(store.list()) == SIZE
    full_read = time.perf_counter() - started  # the baseline: what a click would cost if it read every entry
    started = time.perf_counter()
    boring = Filters(contains="boring")  # case-insensitive
    page = select_page(store, boring, page=2)
    emap = cached_map(store, boring, matching_ids(store, boring))
    filtered = time.perf_counter() - started
    assert page.matched == len(range(0, SIZE, 7)) and page.page == 2 and page.first_row == MAX_ROWS + 1
    assert all("Boring" in e.text for e in page.entries) and len(page.entries) == MAX_ROWS
    assert emap.matched == page.matched and len(emap.entries) <= 1000
    assert select_page(store, Filters(agreement="not scored")).matched == SIZE // 10
    assert select_page(store, Filters(label="negative", agreement="agrees")).matched == 0  # teacher says positive
    started = time.perf_counter()
    chosen = page.entries[5].id
    ringed = with_selected(store, cached_map(store, boring, matching_ids(store, boring)), chosen)
    opened = time.perf_counter() - started
    assert any(e.id == chosen for e in ringed.entries)
    assert len(embedding_map(store, limit=500).entries) <= 501
    print(f"filter + page + map {filtered:.2f} s, open {opened:.2f} s, a full read {full_read:.2f} s at {SIZE:,} "
          "entries")
    assert filtered < full_read / 2 and opened < full_read / 4


def test_live_overlay_sees_edits_without_reading_every_entry(big, monkeypatch):
    store, keys = big
    index = KeyIndex.open(store)
    live = LiveIndex(index, store, lambda texts: np.ones((len(texts), 16), np.float32), set())
    monkeypatch.setattr(store, "list", _counting(store.list, limit=10))
    assert len(live) == SIZE
    added = Entry(fields={"sentence": "a new one"}, label="negative", source="manual", text="a new one",
                  curated=True, id="added")
    store.add([added])
    store.update_label("e00003", "negative")
    store.set_curated(["e00003"])
    try:
        assert len(live) == SIZE + 1
        found = live.query(keys[3:4], k=2)
        assert found.ids[0][0] == "e00003" and np.allclose(found.soft[0, 0], [1.0, 0.0])  # curated: one-hot
    finally:
        store.delete(["added"])
        store.update_label("e00003", "positive")
        store.set_curated(["e00003"], False)


def _counting(list_entries, limit: int):
    """`KnowledgeStore.list` that fails when asked for more than `limit` entries (a full read)."""
    def wrapped(*args, **kwargs):
        got = list_entries(*args, **kwargs)
        assert len(got) <= limit, f"read {len(got)} entries"
        return got

    return wrapped
