"""Over-generate and select (retrikt/generate/selection.py, `generation.oversample`)."""
from __future__ import annotations

import numpy as np
import pytest

from retrikt.generate.selection import DEDUP_COSINE, farthest_points, select_rows
from retrikt.generate.stage import select_entries
from retrikt.store.knowledge_store import Entry


def _unit(rows):
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.mark.parametrize("vectors,n,expected", [
    ([[1, 0], [0.99, 0.1], [0, 1], [-1, 0]], 2, [0, 3]),  # the opposite point comes before the orthogonal one
    ([[1, 0], [0.99, 0.1], [0, 1], [-1, 0]], 3, [0, 3, 2]),
    ([[1, 0], [0, 1]], 5, [0, 1]),  # never more rows than there are
    ([], 3, []),
])
def test_farthest_points_start_at_row_0_and_take_the_least_covered_next(vectors, n, expected):
    vectors = _unit(vectors) if vectors else np.zeros((0, 2), dtype=np.float32)
    assert farthest_points(vectors, n) == expected


@pytest.mark.parametrize("confidence,agrees,vectors,n,expected", [
    # Agreeing rows only, most confident first; row 1 is a near copy of row 0 and goes.
    ([0.9, 0.8, 0.7, 0.6], [1, 1, 1, 0], [[1, 0], [1, 0.01], [0, 1], [-1, 0]], 2, [0, 2]),
    # Too few agree: the most confident of the rest (the dropped near copy included) fill up.
    ([0.9, 0.8, 0.7, 0.6], [1, 1, 0, 0], [[1, 0], [1, 0.01], [0, 1], [-1, 0]], 3, [0, 1, 2]),
    # Farthest-point among the agreeing: from the most confident, the opposite row before the orthogonal one.
    ([0.5, 0.9, 0.8, 0.7], [1, 1, 1, 1], [[0, 1], [1, 0], [0.7, 0.7], [-1, 0]], 2, [1, 3]),
])
def test_select_rows_keeps_agreeing_distinct_spread_out_rows(confidence, agrees, vectors, n, expected):
    assert select_rows(np.array(confidence), np.array(agrees, dtype=bool), _unit(vectors), n) == expected


def test_the_near_duplicate_threshold_is_a_cosine():
    a, b = _unit([[1, 0], [np.cos(np.arccos(DEDUP_COSINE) * 1.01), np.sin(np.arccos(DEDUP_COSINE) * 1.01)]])
    assert float(a @ b) < DEDUP_COSINE  # just under the threshold: both stay
    assert select_rows(np.array([0.9, 0.8]), np.array([True, True]), np.stack([a, b]), 2) == [0, 1]


class _Embedder:
    def __init__(self, table):
        self.table = table

    def encode(self, texts):
        return np.array([self.table[t] for t in texts], dtype=np.float32)


def test_select_entries_keeps_each_labels_share_with_its_store_keys():
    def entry(text, label, p_label):
        other = "negative" if label == "positive" else "positive"
        soft = {label: p_label, other: 1 - p_label}
        return Entry(fields={"sentence": text}, label=label, source="generated:step1", soft_labels=soft,
                     teacher_label=max(soft, key=soft.get), agreement=p_label > 0.5, text=text)

    entries = [entry("great", "positive", 0.9), entry("great!", "positive", 0.8), entry("fine", "positive", 0.4),
               entry("warm", "positive", 0.7), entry("bad", "negative", 0.9), entry("dull", "negative", 0.6)]
    table = {"great": [1, 0], "great!": [1, 0.01], "fine": [0, 1], "warm": [-1, 0.2], "bad": [0, -1],
             "dull": [0.5, -1]}
    kept, vectors, report = select_entries(entries, _Embedder(table), ["negative", "positive"], 2)
    assert [e.text for e in kept] == ["bad", "great", "warm"]
    assert report["written_per_label"] == {"negative": 2, "positive": 4}
    assert report["kept_per_label"] == {"negative": 1, "positive": 2} and report["teacher_agreement_kept"] == 1.0
    assert np.allclose(vectors, [table[e.text] for e in kept])  # the store keeps the embedder's own vectors
