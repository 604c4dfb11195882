"""The store-scale bench's extra entries are the same vectors however a caller chunks them: the store is filled in
chunks of Chroma's max batch while the exact search reads all keys at once, and recall against exact search only
measures the index if both see the same keys."""
from __future__ import annotations


import numpy as np

from bench import store_scale


def _real(n: int = 5) -> dict:
    rng = np.random.default_rng(0)
    return {"texts": np.asarray([f"Review: review {i}" for i in range(n)]), "gold": np.arange(n) % 2,
            "keys": rng.standard_normal((n, 4)).astype(np.float32),
            "embeddings": store_scale._unit(rng.standard_normal((n, 6))), "soft": np.tile([[0.3, 0.7]], (n, 1))}


def _chunked(real: dict, size: int, chunk: int, what: str) -> np.ndarray:
    return np.concatenate([store_scale.rows(real, s, min(size, s + chunk))[what] for s in range(0, size, chunk)])


def test_extra_entries_do_not_depend_on_the_chunking(monkeypatch):
    # Small blocks so a few dozen entries cross several of them (raising=False: the bench before blocks had none).
    monkeypatch.setattr(store_scale, "BLOCK", 7, raising=False)
    clear = getattr(store_scale, "_block_noise", None)
    clear and clear.cache_clear()
    try:
        real, size = _real(), 40
        assert np.array_equal(_chunked(real, size, 6, "keys"), store_scale.all_keys(real, size))
        assert np.array_equal(_chunked(real, size, 6, "keys"), _chunked(real, size, 11, "keys"))
        assert np.array_equal(_chunked(real, size, 6, "embeddings"), _chunked(real, size, 11, "embeddings"))
        # Still noisy copies of their sources, not the sources themselves.
        keys = store_scale.all_keys(real, size)
        assert not np.allclose(keys[5], keys[10]) and float(keys[5] @ keys[10]) > 0.9
    finally:
        clear and clear.cache_clear()
