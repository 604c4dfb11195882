"""Where knowledge stores live: Chroma collection names and the process-wide clients."""
from __future__ import annotations

import contextlib
import hashlib
import re
import threading
import time
import unicodedata
from pathlib import Path
from urllib.parse import urlsplit

import chromadb
import chromadb.errors
import httpx
from chromadb.config import Settings
from chromadb.errors import NotFoundError

from .entries import StoreError

# ---------------------------------------------------------------- names

_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{1,510})[A-Za-z0-9]$")
_IPV4_RE = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")


def check_collection_name(name: str) -> None:
    # Mirrors Chroma's own rule so the user gets our message, not a validation dump.
    if not isinstance(name, str) or not _NAME_RE.match(name) or ".." in name or _IPV4_RE.match(name):
        raise StoreError(
            f"Invalid collection name {name!r}: use 3-512 characters from [a-zA-Z0-9._-], "
            "starting and ending with a letter or digit (collection_name(task, run) builds one)."
        )


def _clean_part(part: str, what: str) -> str:
    if not isinstance(part, str) or not part.strip():
        raise StoreError(f"The {what} name is empty: give a non-empty {what} name.")
    if "/" in part or "\\" in part or ".." in part or "\x00" in part:
        raise StoreError(f"The {what} name {part!r} looks like a path: use a plain name without '/', '\\' or '..'.")
    ascii_part = unicodedata.normalize("NFKD", part).encode("ascii", "ignore").decode("ascii")
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", ascii_part)
    cleaned = re.sub(r"\.{2,}", ".", cleaned).strip("._-")
    if cleaned != part:
        # Lossy cleaning could map two different names onto one collection; a hash of
        # the original keeps them apart while staying deterministic.
        digest = hashlib.blake2s(part.encode("utf-8"), digest_size=4).hexdigest()
        cleaned = f"{cleaned}-{digest}" if cleaned else f"x{digest}"
    return cleaned


def collection_name(task: str, run: str) -> str:
    """Chroma collection name for a (task, run) pair; deterministic and always valid.

    Characters Chroma refuses are replaced (with a short hash of the original
    appended so distinct names stay distinct); names that look like paths are
    rejected with StoreError.
    """
    name = f"{_clean_part(task, 'task')}__{_clean_part(run, 'run')}"
    if len(name) > 512:
        digest = hashlib.blake2s(name.encode("utf-8"), digest_size=8).hexdigest()
        name = name[: 512 - 17].rstrip("._-") + "-" + digest
    check_collection_name(name)
    return name


# ---------------------------------------------------------------- clients

# Chroma wants one client per persistent directory per process (several clients on
# one path see stale data or clobber each other), so every store shares these.
_CLIENTS: dict[str, object] = {}
_CLIENTS_LOCK = threading.Lock()
# Writes are serialised process-wide: the UI runs jobs in threads, and add() checks
# for existing ids before writing, which must not interleave with another writer.
WRITE_LOCK = threading.Lock()
_SETTINGS = dict(anonymized_telemetry=False)


def _normalise_url(url: str) -> tuple[str, str, int, bool]:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise StoreError(f"Invalid server URL {url!r}: use the form http://host:port.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 8000)
    except ValueError as exc:
        raise StoreError(f"Invalid port in server URL {url!r}: use the form http://host:port.") from exc
    key = f"{parts.scheme}://{parts.hostname}:{port}"
    return key, parts.hostname, port, parts.scheme == "https"


def get_client(path: str | Path | None, url: str | None, *, create_dir: bool = True):
    """The shared client for a store folder or server URL (None: folder absent and not ``create_dir``)."""
    if (path is None) == (url is None):
        raise StoreError("Give exactly one of path= (a local store folder) or url= (a Chroma server).")
    if path is not None:
        folder = Path(path).expanduser().resolve()
        key = f"path:{folder}"
    else:
        key, host, port, ssl = _normalise_url(url)
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is not None:
            return client
        if path is not None:
            if folder.exists() and not folder.is_dir():
                raise StoreError(f"Store path {folder} is a file: give a folder for the knowledge store.")
            if not create_dir and not folder.exists():
                return None
            try:
                folder.mkdir(parents=True, exist_ok=True)
                client = chromadb.PersistentClient(path=str(folder), settings=Settings(**_SETTINGS))
            except Exception as exc:
                raise StoreError(
                    f"Cannot open the store folder {folder} ({exc}): check that it is writable "
                    "and not used by another program."
                ) from exc
        else:
            try:
                client = chromadb.HttpClient(host=host, port=port, ssl=ssl, settings=Settings(**_SETTINGS))
            except Exception as exc:
                raise StoreError(
                    f"Cannot reach the Chroma server at {key} ({exc}): start the server or fix the URL."
                ) from exc
        _CLIENTS[key] = client
        return client


def list_collections(path: str | Path | None = None, url: str | None = None) -> list[str]:
    """Names of the collections in a local store folder or on a Chroma server, sorted."""
    client = get_client(path, url, create_dir=False)
    if client is None:  # a folder that does not exist yet holds no collections
        return []
    with guard(url or str(path)):
        return sorted(c.name for c in client.list_collections())


_WRITES: dict[tuple[str, str], int] = {}


def writes(where: str, collection: str) -> int:
    """How many write operations this process has made on a collection (a cheap "has it changed" check)."""
    return _WRITES.get((where, collection), 0)


@contextlib.contextmanager
def writing(where: str, collection: str):
    """The process-wide write lock plus `guard`; counts the write even when it fails part-way."""
    with WRITE_LOCK:
        try:
            with guard(where, collection):
                yield
        finally:
            _WRITES[(where, collection)] = _WRITES.get((where, collection), 0) + 1


@contextlib.contextmanager
def guard(where: str, collection: str | None = None):
    """Turn lost connections and vanished collections into StoreError."""
    try:
        yield
    except httpx.TransportError as exc:
        raise StoreError(f"Lost the connection to the Chroma server at {where} ({exc}): is it still running?") from exc
    except NotFoundError as exc:
        raise StoreError(
            f"Collection {collection or '?'} no longer exists in {where}: it was dropped; reopen or recreate it."
        ) from exc


# ---------------------------------------------------------------- HNSW settings

HNSW_KEYS = ("max_neighbors", "ef_construction", "ef_search")


def hnsw_settings(hnsw: dict | None) -> dict[str, int]:
    """``hnsw`` checked (Chroma's names, positive whole numbers); None: the StoreConfig defaults."""
    if hnsw is None:
        from ..config import StoreConfig

        return StoreConfig().hnsw()
    unknown = sorted(set(hnsw) - set(HNSW_KEYS))
    if unknown:
        raise StoreError(f"Unknown HNSW setting(s) {unknown}: use {', '.join(HNSW_KEYS)}.")
    bad = {k: v for k, v in hnsw.items() if isinstance(v, bool) or not isinstance(v, int) or v < 1}
    if bad:
        raise StoreError(f"HNSW settings must be positive whole numbers, got {bad}.")
    return dict(hnsw)


def hnsw_configuration(hnsw: dict[str, int]) -> dict:
    """The ``configuration`` of a new cosine collection with these HNSW settings."""
    # Settings go in the configuration, not the legacy "hnsw:*" metadata keys, which Chroma keeps only for old
    # collections; metadata then holds only our own keys.
    return {"hnsw": {"space": "cosine", **hnsw}}


def use_ef_search(col, hnsw: dict[str, int]) -> None:
    """Give an existing collection this ef_search (the one HNSW setting Chroma lets change; collections made with
    "hnsw:*" metadata take it too). Chroma searches with it from its next load of the index: at once in a process
    that has not searched the collection yet, after a restart in a server that has. Call under WRITE_LOCK."""
    wanted = hnsw.get("ef_search")
    current = ((col.configuration or {}).get("hnsw") or {}).get("ef_search")
    if wanted is None or current is None or current == wanted:
        return
    for attempt in range(LOCKED_RETRIES + 1):
        try:
            col.modify(configuration={"hnsw": {"ef_search": int(wanted)}})
            return
        except chromadb.errors.InternalError as exc:
            # The embedded store's sqlite file can still be locked by a write of a moment ago (seen on a loaded
            # 2-core machine right after adding to the key collection): wait a little, then try again.
            if "database is locked" not in str(exc) or attempt == LOCKED_RETRIES:
                raise
            time.sleep(LOCKED_WAIT_SECONDS * (attempt + 1))


LOCKED_RETRIES = 5
LOCKED_WAIT_SECONDS = 0.2


def chroma_where(**conditions) -> dict | None:
    """A Chroma ``where`` from keyword filters; None values mean "no filter"."""
    clauses = []
    for key, value in conditions.items():
        if value is None:
            continue
        if key == "reward_total":
            clauses.append({key: {"$gte": float(value)}})
        elif isinstance(value, (list, tuple, set)):
            clauses.append({key: {"$in": list(value)}})
        else:
            clauses.append({key: value})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}
