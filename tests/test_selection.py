"""Over-generate and select (bench/select_samples.py: the baseline step 2 had to beat; it lost, so it is not a
product setting)."""
from __future__ import annotations

import numpy as np
import pytest

from bench.select_samples import DEDUP_COSINE, farthest_points, select_rows


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

