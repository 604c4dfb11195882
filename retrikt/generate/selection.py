"""Over-generate and select: keep, per label, the samples the teacher reads as their label, spread out in the
store's key space.

With `generation.oversample` k > 1, step 1 writes k times the samples it keeps; of each label's stored samples, a
k-th stays in the store (`bench/results/select_samples.md` compares it with a random k-th and with PPO at the same
store size).
"""
from __future__ import annotations

import numpy as np

DEDUP_COSINE = 0.95  # design choice: store keys (MiniLM) of two wordings of one short review sit above ~0.9


def farthest_points(vectors: np.ndarray, n: int) -> list[int]:
    """Greedy farthest-point order over unit row vectors, from row 0: each next row is the one whose highest
    cosine to the rows already chosen is lowest. Returns min(n, rows) row indices."""
    if not len(vectors) or n <= 0:
        return []
    chosen = [0]
    nearest = vectors @ vectors[0]
    nearest[0] = np.inf
    while len(chosen) < min(n, len(vectors)):
        row = int(np.argmin(nearest))
        chosen.append(row)
        nearest = np.maximum(nearest, vectors @ vectors[row])
        nearest[chosen] = np.inf
    return chosen


def select_rows(confidence: np.ndarray, agrees: np.ndarray, vectors: np.ndarray, n: int) -> list[int]:
    """n rows of one label's samples: those the teacher labels as intended (`agrees`), most confident first, minus
    near duplicates of a kept one (cosine >= DEDUP_COSINE), thinned by farthest-point selection from the most
    confident; when fewer than n pass, the most confident of the rest fill up.

    `confidence`: the teacher's probability of the intended label per row; `vectors`: unit store keys."""
    order = [int(i) for i in np.argsort(-np.asarray(confidence), kind="stable")]
    kept: list[int] = []
    for i in order:
        if agrees[i] and (not kept or float((vectors[kept] @ vectors[i]).max()) < DEDUP_COSINE):
            kept.append(i)
    if len(kept) > n:
        kept = [kept[r] for r in farthest_points(vectors[kept], n)]
    taken = set(kept)
    return kept + [i for i in order if i not in taken][: n - len(kept)]
