"""What the knowledge-store tab shows: a run's store opened read-safely, filtered table rows, entry details,
hand-written entries and a 2-D embedding map. Plain Python (no UI library), so it is testable on its own.
"""
from __future__ import annotations

import functools
import html
import json
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from ..context import run_store
from ..runs import (Run, list_runs, open_run, runs_newest_first,  # noqa: F401 - the store tab lists runs through this view
                    serving_store_dir, visitor_edits_path, visitor_store_dir)
from ..store.history import StoreEditor, summary as state_summary
from ..store.knowledge_store import Entry, KnowledgeStore, StoreError, collection_name, list_collections
from ..tasks import MAX_INPUT_CHARS, Task, TaskDataError, is_builtin, load_builtin, normalize_text, task_of_run

ANY = "any"
AGREEMENT_CHOICES = (ANY, "agrees", "disagrees", "not scored")
TABLE_COLUMNS = ("id", "label", "source", "teacher label", "agreement", "teacher confidence", "reward total",
                 "curated", "text")
SIMILARITY_COLUMN = "similarity"
MAX_ROWS = 200
"""Rows sent to the table at most; a browser table of thousands of rows is slow and nobody reads it."""

_SYMBOLS = {"train": "circle", "generated:step1": "diamond", "generated:ppo": "square", "manual": "star"}
_PALETTE = ("#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692", "#b6e880", "#ff97ff",
            "#fecb52")


@dataclass
class RunStore:
    """A run with its task and its opened knowledge store."""

    run: Run
    task: Task
    store: KnowledgeStore
    copy: bool = False
    """True when ``store`` is a visitor's own copy of the run's store (hosted mode)."""
    history_path: Path | None = None
    """The edit history of ``store``: the run's own, or the visitor's next to their copy."""
    copy_seconds: float = 0.0
    """Seconds this opening spent making the visitor's copy (0 when it was there already)."""

    def __post_init__(self):
        if self.history_path is None:
            self.history_path = self.run.store_edits_path

    def editor(self, who: str) -> StoreEditor:
        """Edits to this store, recorded in its history in the name of `who`."""
        return StoreEditor(self.store, self.history_path, who)


@functools.lru_cache(maxsize=16)
def _builtin_task(name: str, seed: int) -> Task:
    return load_builtin(name, seed=seed)


def _task(run: Run) -> Task:
    # Built-in tasks are cached (a page action must not re-read the packaged splits); a run's own task copy is small.
    if is_builtin(run.config.task) and not run.task_dir.is_dir():
        return _builtin_task(run.config.task, run.config.seed)
    return task_of_run(run)


_HOSTED: set[str] = set()


def serve_from_copies(workspace: str | Path) -> None:
    """Make this process a hosted studio for `workspace`: from now on its run stores are read from file copies
    (`open_run_store`), so that no visitor's visit can change a byte of a shared run."""
    _HOSTED.add(str(Path(workspace).resolve()))


def _hosted(workspace: str | Path) -> bool:
    return str(Path(workspace).resolve()) in _HOSTED


def open_run_store(workspace: str | Path, run_name: str | None, read_copy: bool | None = None) -> RunStore:
    """Open the store of an existing run without ever creating one (StoreError when there is none).

    `read_copy` (None: whether the workspace is hosted, see `serve_from_copies`) opens a file copy of the store
    instead of the run's own folder: for reading only, as edits to it would be lost."""
    if not run_name:
        raise StoreError("Pick a run first (no runs yet? run step 1 in the Generate tab).")
    # Only names listed in the workspace: a free-form path would reach folders outside it.
    if run_name not in list_runs(workspace):
        raise StoreError(f"There is no run {run_name!r} in this workspace (any more): refresh the run list.")
    run = open_run(workspace, run_name)
    try:
        task = _task(run)
    except TaskDataError as exc:
        raise StoreError(f"Run {run_name} uses task {run.config.task!r}, which cannot be loaded: {exc}") from exc
    url = run.config.store.url
    if not url and not run.store_dir.is_dir():
        raise StoreError(f"Run {run_name} has no knowledge store (its store folder is missing): run step 1 for it.")
    read_copy = _hosted(workspace) if read_copy is None else read_copy
    folder = serving_copy(workspace, run) if read_copy and not url else None
    name = collection_name(task.name, run.name)
    if name not in list_collections(path=None if url else (folder or run.store_dir), url=url):
        raise StoreError(f"Run {run_name} has no knowledge store yet: run step 1 for it, or import a JSONL file "
                         "into a run that has one.")
    return RunStore(run, task, run_store(run, task, folder))


_COPY_DONE = "copied.ok"
_copy_lock = threading.Lock()
STALE_COPY_SECONDS = 600.0  # design choice: a reader that was handed an older copy a moment ago may still be opening it


def _files_stamp(folder: Path) -> str:
    """A name for the state of a store folder: any write changes a file's size or mtime, so it changes the stamp."""
    import hashlib

    files = []
    for path in folder.rglob("*"):
        try:
            stat = path.stat()
        except FileNotFoundError:  # removed by a write under way: the next stamp differs anyway
            continue
        if path.is_file():
            files.append((str(path.relative_to(folder)), stat.st_size, stat.st_mtime_ns))
    return hashlib.sha1(json.dumps(sorted(files)).encode("utf-8")).hexdigest()[:16]


def _copy_files(source: Path, dest: Path, stamp: str | None = None) -> bool:
    """Copy a store folder's files, as they were at `stamp` (None: now); False (and nothing left at `dest`) when the
    store was written meanwhile."""
    stamp = stamp or _files_stamp(source)
    shutil.rmtree(dest, ignore_errors=True)  # a copy that died part-way has no done-mark: start again from nothing
    try:
        shutil.copytree(source, dest)
    except (OSError, shutil.Error):  # a file removed by a write under way
        pass
    else:
        if _files_stamp(source) == stamp:
            return True
    shutil.rmtree(dest, ignore_errors=True)
    return False


def serving_copy(workspace: str | Path, run: Run) -> Path | None:
    """A file copy of the run's store folder as it is now, made once per state of the folder; None while the
    store is being written: then read the run's own folder.

    Copying files, not entries, means Chroma never opens the shared folder: opening a store only to read it can
    still write to it (its sqlite file, an index it brings up to date)."""
    stamp = _files_stamp(run.store_dir)
    folder = serving_store_dir(workspace, run.name, stamp)
    done = folder.parent / _COPY_DONE
    with _copy_lock:
        if not done.is_file():
            if not _copy_files(run.store_dir, folder, stamp):
                shutil.rmtree(folder.parent, ignore_errors=True)
                return None
            done.write_text("ok\n", encoding="utf-8")
            _drop_stale_copies(folder.parent)
    return folder


def _drop_stale_copies(current: Path) -> None:
    """Remove the run's older serving copies, once `STALE_COPY_SECONDS` old: a hosted 1M-entry store would
    otherwise keep one copy of itself for every state it was ever served in."""
    now = time.time()
    for other in current.parent.iterdir():
        done = other / _COPY_DONE
        if other != current and other.is_dir() and (
                not done.is_file() or now - done.stat().st_mtime > STALE_COPY_SECONDS):
            shutil.rmtree(other, ignore_errors=True)


def open_visitor_store(workspace: str | Path, run_name: str | None, visitor: str | None,
                       write: bool = False) -> RunStore:
    """A run's store as one visitor sees it (hosted mode): their own copy once they have changed anything.

    Reads use a serving copy of the shared store (see `serving_copy`) until the visitor's first write, which copies
    the shared store's files into `<workspace>/visitors/<visitor>/<run>/store`: Chroma never opens the shared
    folder. `visitor=None` is the run's owner (or the local single user): the run's own store.
    """
    if visitor is None:
        return open_run_store(workspace, run_name, read_copy=False)
    rs = open_run_store(workspace, run_name, read_copy=True)
    folder = visitor_store_dir(workspace, visitor, rs.run.name)
    done = folder.parent / _COPY_DONE
    copy_seconds = 0.0
    if not done.is_file():
        if not write:
            return rs
        with _copy_lock:
            if not done.is_file():
                started = time.perf_counter()
                _copy_store(rs, folder)
                done.write_text("ok\n", encoding="utf-8")
                copy_seconds = time.perf_counter() - started
    store = KnowledgeStore(path=folder, collection=rs.store.name, embedder=rs.store.embedder,
                           task_labels=list(rs.task.labels))
    return RunStore(rs.run, rs.task, store, copy=True,
                    history_path=visitor_edits_path(workspace, visitor, rs.run.name), copy_seconds=copy_seconds)


def _copy_store(shared: RunStore, folder: Path) -> None:
    """A visitor's own copy: the shared folder's files; entries by export and import when the store is on a server
    or is being written."""
    import tempfile

    if not shared.run.config.store.url and _copy_files(shared.run.store_dir, folder):
        return
    shutil.rmtree(folder, ignore_errors=True)  # a copy that died part-way has no done-mark: start again from nothing
    folder.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        exported = Path(tmp) / "store.jsonl"
        shared.store.export_jsonl(exported, include_embeddings=True)
        KnowledgeStore(path=folder, collection=shared.store.name, embedder=shared.store.embedder,
                       task_labels=list(shared.task.labels)).import_jsonl(exported)


def run_overview(rs: RunStore) -> str:
    """One Markdown paragraph about the run: task, labels, teacher, status and store size."""
    summary = rs.run.summary()
    teacher = summary.get("teacher") or rs.run.config.teacher.model
    status = summary.get("status", "unknown")
    return (f"**{rs.run.name}** · task {rs.task.name} (labels {', '.join(rs.task.labels)}) · teacher {teacher} · "
            f"status {status} · **{rs.store.count()}** entries in the store"
            + (" · *your own copy (the shared store is unchanged)*" if rs.copy else ""))


# ---------------------------------------------------------------- filters and rows

@dataclass
class Filters:
    """What the table shows; ``ANY`` (or None / empty) means no filter on that column."""

    label: str | None = ANY
    source: str | None = ANY
    agreement: str | None = ANY
    min_reward: float | None = None
    contains: str = ""

    def __post_init__(self):
        self.agreement = self.agreement or ANY
        if self.agreement not in AGREEMENT_CHOICES:
            raise StoreError(f"Agreement filter {self.agreement!r} is not one of {list(AGREEMENT_CHOICES)}.")
        if self.min_reward is not None and not np.isfinite(float(self.min_reward)):
            raise StoreError("The minimum reward must be a finite number (or empty for no minimum).")

    def matches(self, entry: Entry) -> bool:
        """True when ``entry`` passes every filter (the same test `select` applies)."""
        if self.label not in (None, ANY) and entry.label != self.label:
            return False
        if self.source not in (None, ANY) and entry.source != self.source:
            return False
        wanted = {"agrees": True, "disagrees": False, "not scored": None}
        if self.agreement != ANY and entry.agreement is not wanted[self.agreement]:
            return False
        if self.min_reward is not None:
            total = _reward_total(entry)
            if total is None or total < float(self.min_reward):
                return False
        return not self.contains or self.contains.lower() in entry.text.lower()


_CACHE_LIMIT = 32
_MATCHES: OrderedDict[tuple, list[str]] = OrderedDict()
_MAPS: OrderedDict[tuple, "EmbeddingMap"] = OrderedDict()
_SEARCHES: OrderedDict[tuple, list] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def _cached(cache: OrderedDict, key: tuple, compute):
    with _CACHE_LOCK:
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
    value = compute()
    with _CACHE_LOCK:
        cache[key] = value
        while len(cache) > _CACHE_LIMIT:
            cache.popitem(last=False)
    return value


def _store_key(store: KnowledgeStore) -> tuple:
    # (entries, writes made by this process): every write through this process changes it, and another process's
    # write is seen as soon as it changes the count.
    return (store.location, store.name, *store.version)


def _filter_key(filters: Filters) -> tuple:
    return (filters.label, filters.source, filters.agreement, filters.min_reward, filters.contains)


def matching_ids(store: KnowledgeStore, filters: Filters) -> list[str]:
    """Ids of the entries passing ``filters``, in insertion order, filtered by Chroma without reading an entry.

    Kept per store version, so paging, opening an entry or redrawing the map under the same filters reads nothing
    again; the text filter is a case-insensitive substring, as `Filters.matches`.
    """
    def compute() -> list[str]:
        wanted = {"agrees": True, "disagrees": False}
        conditions = dict(label=None if filters.label in (None, ANY) else filters.label,
                          source=None if filters.source in (None, ANY) else filters.source,
                          min_reward=filters.min_reward, text_contains=filters.contains or None, ignore_case=True)
        if filters.agreement in wanted:
            return store.ids(agreement=wanted[filters.agreement], **conditions)
        found = store.ids(**conditions)
        if filters.agreement == "not scored":  # Chroma cannot filter on a missing key: drop the scored ones
            scored = set(store.ids(agreement=True, **conditions)) | set(store.ids(agreement=False, **conditions))
            found = [i for i in found if i not in scored]
        return found

    return _cached(_MATCHES, (*_store_key(store), _filter_key(filters)), compute)


@dataclass
class Selection:
    """One page of the entries that pass the filters."""

    matched: int
    page: int
    """1-based, within 1..pages."""
    pages: int
    entries: list[Entry]
    first_row: int
    """1-based row number of ``entries[0]`` among the matches."""


def shown_page(matched: int, page, per_page: int = MAX_ROWS) -> tuple[int, int]:
    """(the page shown for a requested ``page``, the number of pages) of ``matched`` rows: a page past the end shows
    the last one."""
    pages = max(1, -(-matched // per_page))
    return min(max(1, int(page or 1)), pages), pages


def select_page(store: KnowledgeStore, filters: Filters, page: int = 1, per_page: int = MAX_ROWS) -> Selection:
    """Page ``page`` of the entries passing ``filters`` (a page past the end shows the last one)."""
    found = matching_ids(store, filters)
    page, pages = shown_page(len(found), page, per_page)
    start = (page - 1) * per_page
    wanted = found[start : start + per_page]
    got = store.lookup(wanted)  # an entry deleted since the ids were read is simply absent
    return Selection(len(found), page, pages, [got[i][0] for i in wanted if i in got], start + 1)


def select(store: KnowledgeStore, filters: Filters) -> list[Entry]:
    """Every entry passing ``filters`` in insertion order (reads them all: the tab shows pages, see `select_page`)."""
    found = matching_ids(store, filters)
    got = store.lookup(found)
    return [got[i][0] for i in found if i in got]


def search(store: KnowledgeStore, query: str, k: int, filters: Filters) -> list[tuple[Entry, float]]:
    """The ``k`` entries semantically closest to ``query``, then narrowed by ``filters``, best first."""
    if not isinstance(k, int) or k < 1:
        raise StoreError(f"The number of search results must be a positive whole number, got {k!r}.")
    # Apply shows the table, then the map, as two events with the same query: the second must not embed and
    # query again (under 20 visitors it doubled the slowest page action).
    key = (*_store_key(store), query, k)
    hits = _cached(_SEARCHES, key, lambda: store.search_text(query, k))
    return [(e, sim) for e, sim in hits if filters.matches(e)]


def form_filters(label: str | None, source: str | None, agreement: str | None, min_reward, contains: str | None
                 ) -> Filters:
    """The filters as the tab's boxes give them: empty means any; the minimum reward is typed text."""
    text = "" if min_reward is None else str(min_reward).strip()
    try:
        reward = float(text) if text else None
    except ValueError:
        raise StoreError(f"The minimum reward must be a number (or empty for no minimum), not {text!r}.") from None
    return Filters(label or ANY, source or ANY, agreement or ANY, reward, (contains or "").strip())


def _search_hits(store: KnowledgeStore, query: str, k, filters: Filters) -> list[tuple[Entry, float]]:
    return search(store, query.strip(), int(k or 0), filters)


@dataclass
class Listing:
    """One page of the table: what it says above the rows, the rows, and the page they are."""

    status: str
    headers: list[str]
    rows: list[list]
    page: int


def list_entries(store: KnowledgeStore, filters: Filters, query: str | None, k, page=1) -> Listing:
    """Page ``page`` of the entries passing ``filters``, or, for a semantic ``query``, its ``k`` nearest that pass
    them (one page)."""
    total = store.count()
    if query and query.strip():
        hits = _search_hits(store, query, k, filters)
        headers, rows = table([e for e, _ in hits], [s for _, s in hits])
        status = (f"{len(hits)} entries closest in meaning to “{query.strip()}” (the {int(k or 0)} nearest, then "
                  "filtered).")
        page = 1
    else:
        shown = select_page(store, filters, int(page or 1))
        headers, rows = table(shown.entries)
        status = f"{shown.matched:,} of {total:,} entries match the filters."
        if shown.pages > 1:
            last = shown.first_row + len(shown.entries) - 1
            status += (f" Page {shown.page:,} of {shown.pages:,} (rows {shown.first_row:,}–{last:,}): change the "
                       "page to see the others.")
        page = shown.page
    if total == 0:
        status = "The store is empty: add entries by hand, import a JSONL file, or run step 1."
    return Listing(status, headers, rows, page)


def _reward_total(entry: Entry) -> float | None:
    if not entry.rewards:
        return None
    return float(entry.rewards["total"]) if "total" in entry.rewards else float(sum(entry.rewards.values()))


def entry_row(entry: Entry) -> list:
    """One table row in ``TABLE_COLUMNS`` order (blank cells for what the entry does not have)."""
    confidence = max(entry.soft_labels.values()) if entry.soft_labels else None
    reward = _reward_total(entry)
    agreement = "" if entry.agreement is None else ("yes" if entry.agreement else "no")
    return [entry.id, entry.label, entry.source, entry.teacher_label or "", agreement,
            "" if confidence is None else round(confidence, 3), "" if reward is None else round(reward, 3),
            "yes" if entry.curated else "", entry.text]


def table(entries: list[Entry], similarities: list[float] | None = None) -> tuple[list[str], list[list]]:
    """Headers and rows (at most ``MAX_ROWS``); search results get a similarity column at the end."""
    rows = [entry_row(e) for e in entries[:MAX_ROWS]]
    if similarities is None:
        return list(TABLE_COLUMNS), rows
    return [*TABLE_COLUMNS, SIMILARITY_COLUMN], [r + [round(s, 3)] for r, s in zip(rows, similarities)]


def describe(entry: Entry, task: Task | None = None) -> str:
    """Markdown detail of one entry: its fields, labels, the teacher's soft labels and how it was made."""
    names = task.field_names if task else {}
    lines = [f"**Entry `{entry.id}`** · source `{entry.source}` · label **{entry.label}**"
             + (" · curated" if entry.curated else "")]
    lines += [f"- *{names.get(k, k)}*: {html.escape(v)}" for k, v in entry.fields.items()]
    if entry.soft_labels:
        probs = ", ".join(f"{k} {v:.3f}" for k, v in sorted(entry.soft_labels.items(), key=lambda kv: -kv[1]))
        verdict = "agrees" if entry.agreement else "disagrees"
        lines.append(f"- teacher: **{entry.teacher_label}** ({verdict}); soft labels {probs}")
    else:
        lines.append("- teacher: not scored (no soft labels)")
    if entry.rewards:
        lines.append("- rewards: " + ", ".join(f"{k} {v:.3f}" for k, v in entry.rewards.items()))
    if entry.gen_settings:
        lines.append(f"- generated with: `{json.dumps(entry.gen_settings, sort_keys=True)}`")
    return "\n".join(lines)


def manual_entry(task: Task, values: dict[str, str], label: str) -> Entry:
    """An entry written by hand: the task's text fields and a label; no teacher soft labels."""
    fields = {f: normalize_text(values.get(f) or "") for f in task.text_fields}
    empty = [task.field_names[f] for f, v in fields.items() if not v]
    if empty:
        raise StoreError(f"Fill in {', '.join(empty)}: every field of {task.name} needs text.")
    long = [task.field_names[f] for f, v in fields.items() if len(v) > MAX_INPUT_CHARS]
    if long:
        raise StoreError(f"{', '.join(long)} is over {MAX_INPUT_CHARS:,} characters: keep an entry to one example.")
    for f, choices in task.field_choices.items():
        if fields[f] not in choices:
            raise StoreError(f"{task.field_names[f]} must be one of {', '.join(choices)}, not {fields[f]!r}.")
    if label not in task.labels:
        raise StoreError(f"Unknown label {label!r}: choose one of {list(task.labels)}.")
    # A person wrote it and its label: curated, so it votes with that label (see student/live.py).
    return Entry(fields=fields, label=label, source="manual", text=task.serialize(fields), curated=True)


# ---------------------------------------------------------------- 2-D map

MAP_POINTS = 1000
"""Points drawn on the map at most: a browser redraws tens of thousands of markers slowly and nobody reads them,
and each point is read from the store (0.35 ms a point at 100k entries on 2 busy cores); a larger selection is
drawn as an even sample (the selected entry always kept) and the map says so."""
BASIS_REFIT = 0.1
"""The map's axes are refitted once the store's size has moved this far (as a fraction) from when they were fitted:
small edits must not move every point."""


@dataclass
class EmbeddingMap:
    """2-D PCA coordinates of store entries with what the plot colours and labels them by."""

    entries: list[Entry]
    xy: np.ndarray  # (n, 2)
    explained: tuple[float, float]  # share of the variance each axis carries
    matched: int | None = None
    """Entries the filters kept, when more than were drawn (None: all are drawn)."""


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """Project rows onto their first two principal components; (coords (n, 2), explained variance ratios).

    Signs are fixed (largest loading positive) so the map does not mirror itself between refreshes.
    """
    basis = MapBasis.fit(vectors)
    return basis.project(vectors), basis.explained


@dataclass
class MapBasis:
    """The map's two axes: the first principal components of (an even sample of) the store's vectors."""

    mean: np.ndarray
    axes: np.ndarray  # (2, dim); a zero row when there is no second component
    explained: tuple[float, float]
    size: int = 0
    """Entries in the store when fitted."""

    @classmethod
    def fit(cls, vectors: np.ndarray, size: int = 0) -> "MapBasis":
        vectors = np.asarray(vectors, dtype=np.float64)
        dim = vectors.shape[1] if vectors.ndim == 2 else 0
        axes = np.zeros((2, dim))
        if vectors.shape[0] < 2:
            return cls(vectors.mean(axis=0) if len(vectors) else np.zeros(dim), axes, (0.0, 0.0), size)
        from sklearn.decomposition import PCA

        m = min(2, *vectors.shape)
        # exact SVD: the default solver turns randomized on large inputs, and the axes must not wobble between fits
        with np.errstate(invalid="ignore", divide="ignore"):  # identical vectors: no variance, ratios 0 below
            pca = PCA(n_components=m, svd_solver="full").fit(vectors)
        components = pca.components_
        flip = np.sign(components[np.arange(m), np.abs(components).argmax(axis=1)])
        axes[:m] = components * flip[:, None]
        ratios = [float(r) for r in np.nan_to_num(pca.explained_variance_ratio_)] + [0.0] * (2 - m)
        return cls(pca.mean_, axes, (ratios[0], ratios[1]), size)

    def project(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float64)
        if not len(vectors):
            return np.zeros((0, 2))
        return (vectors - self.mean) @ self.axes.T


_BASES: dict[tuple[str, str], MapBasis] = {}


def warm_map_code() -> None:
    """Run once what a first map runs (scikit-learn's PCA, plotly's figure checks) on three made-up points: their
    imports and first calls took ~0.3 s of a visitor's first store view, measured in bench/results/ui_latency.md."""
    points = np.eye(3)
    map_figure(EmbeddingMap([Entry(fields={"text": str(n)}, label="a", source="manual", text=str(n)) for n in range(3)],
                            pca_2d(points)[0], (0.5, 0.5))).to_plotly_json()


def _even_sample(ids: list[str], limit: int, keep: str | None = None) -> list[str]:
    if len(ids) <= limit:
        return list(ids)
    picked = set(np.linspace(0, len(ids) - 1, limit).round().astype(int).tolist())
    return [i for n, i in enumerate(ids) if n in picked or i == keep]


def map_basis(store: KnowledgeStore) -> MapBasis:
    """The store's map axes, fitted on an even sample of at most MAP_POINTS entries and kept until the store's size
    has moved by BASIS_REFIT, so filters and small edits never move the points."""
    key, size = (store.location, store.name), store.count()
    basis = _BASES.get(key)
    if basis is None or abs(size - basis.size) > BASIS_REFIT * max(basis.size, 1) or (basis.size < 2 <= size):
        sample = _even_sample(store.ids(), MAP_POINTS)
        found = store.vectors(sample)
        vectors = [found[i] for i in sample if i in found]
        basis = MapBasis.fit(np.stack(vectors) if vectors else np.zeros((0, store.dim)), size)
        _BASES[key] = basis
    return basis


def embedding_map(store: KnowledgeStore, keep_ids: list[str] | set[str] | None = None, selected: str | None = None,
                  limit: int = MAP_POINTS) -> EmbeddingMap:
    """The entries ``keep_ids`` (default: all) on the store's map; at most ``limit`` points, an evenly spaced sample
    in insertion order that always holds ``selected``. Only the drawn points are read from the store."""
    if keep_ids is None:
        order = store.ids()
    elif isinstance(keep_ids, (set, frozenset)):
        order = [i for i in store.ids() if i in keep_ids]
    else:
        order = list(keep_ids)
    sample = _even_sample(order, limit, selected)
    if selected and selected not in sample and selected in set(order):
        sample.append(selected)
    basis = map_basis(store)
    found = store.lookup(sample, vectors=True)
    drawn = [i for i in sample if i in found]
    vectors = np.stack([found[i][1] for i in drawn]) if drawn else np.zeros((0, store.dim))
    return EmbeddingMap([found[i][0] for i in drawn], basis.project(vectors).reshape(-1, 2), basis.explained,
                        len(order) if len(order) > limit else None)


def cached_map(store: KnowledgeStore, filters: Filters, keep_ids: list[str]) -> EmbeddingMap:
    """`embedding_map` of a filtered selection, kept per store version and filters (opening an entry redraws the
    map with a ring around it: that must not read the points again)."""
    key = (*_store_key(store), _filter_key(filters), len(keep_ids), tuple(keep_ids[:50]))
    return _cached(_MAPS, key, lambda: embedding_map(store, keep_ids))


def with_selected(store: KnowledgeStore, emap: EmbeddingMap, selected: str | None) -> EmbeddingMap:
    """``emap`` plus the entry ``selected`` when it is not drawn yet (projected on the same axes)."""
    if not selected or any(e.id == selected for e in emap.entries):
        return emap
    found = store.lookup([selected], vectors=True)
    if selected not in found:
        return emap
    entry, vector = found[selected]
    xy = np.concatenate([emap.xy, map_basis(store).project(vector[None, :])])
    return EmbeddingMap([*emap.entries, entry], xy, emap.explained, emap.matched)


def map_figure(emap: EmbeddingMap, labels: list[str] | tuple[str, ...] = (), selected: str | None = None,
               height: int = 460) -> go.Figure:
    """Plotly scatter: colour = label, marker symbol = source; hovering a point shows its id and text."""
    fig = go.Figure()
    order = list(labels) + sorted({e.label for e in emap.entries} - set(labels))
    colours = {label: _PALETTE[n % len(_PALETTE)] for n, label in enumerate(order)}
    groups: dict[tuple[str, str], list[int]] = {}
    for n, e in enumerate(emap.entries):
        groups.setdefault((e.label, e.source), []).append(n)
    for (label, source), rows in sorted(groups.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][1])):
        picked = [emap.entries[n] for n in rows]
        fig.add_trace(go.Scatter(
            x=emap.xy[rows, 0], y=emap.xy[rows, 1], mode="markers", name=f"{label} · {source}",
            marker=dict(color=colours[label], symbol=_SYMBOLS.get(source, "circle-open"), size=8, opacity=0.8,
                        line=dict(width=0.5, color="#333")),
            customdata=[e.id for e in picked],
            hovertext=[_hover(e) for e in picked], hoverinfo="text"))
    if selected:
        at = [n for n, e in enumerate(emap.entries) if e.id == selected]
        if at:
            fig.add_trace(go.Scatter(x=emap.xy[at, 0], y=emap.xy[at, 1], mode="markers", name="selected",
                                     marker=dict(size=18, symbol="circle-open", color="black", line=dict(width=2)),
                                     hoverinfo="skip"))
    ex, ey = emap.explained
    title = f"{len(emap.entries)} entries, PCA of the store embeddings" if emap.entries else "No entries to map"
    if emap.matched:
        title = f"{len(emap.entries):,} of {emap.matched:,} entries (an even sample), PCA of the store embeddings"
    fig.update_layout(title=title, height=height, margin=dict(l=40, r=10, t=40, b=40),
                      legend_title_text="label · source",
                      xaxis_title=f"PC1 ({100 * ex:.0f}% of variance)", yaxis_title=f"PC2 ({100 * ey:.0f}%)")
    return fig


def filtered_map(rs: RunStore, filters: Filters, query: str | None, k, selected: str | None = None) -> go.Figure:
    """The map of every entry passing ``filters`` (or of the search hits), ``selected`` ringed when it is one."""
    selected = (selected or "").strip() or None
    if query and query.strip():
        keep = [e.id for e, _ in _search_hits(rs.store, query, k, filters)]
        emap = embedding_map(rs.store, keep)
    else:
        keep = matching_ids(rs.store, filters)
        emap = cached_map(rs.store, filters, keep)
    if selected and selected in set(keep):
        emap = with_selected(rs.store, emap, selected)
    return map_figure(emap, rs.task.labels, selected)


def _hover(entry: Entry) -> str:
    text = entry.text if len(entry.text) <= 140 else entry.text[:137] + "..."
    teacher = f"<br>teacher: {entry.teacher_label}" if entry.teacher_label else ""
    return (f"id {entry.id}<br>{html.escape(entry.label)} · {entry.source}{teacher}<br>"
            f"{html.escape(text).replace(chr(10), '<br>')}")


def empty_map(message: str) -> go.Figure:
    """The map's place when there is nothing to draw, titled with why."""
    fig = go.Figure()
    fig.update_layout(title=message, height=460, xaxis_visible=False, yaxis_visible=False)
    return fig


# ---------------------------------------------------------------- edit history

HISTORY_COLUMNS = ("#", "when", "who", "action", "entries", "before → after", "undone by")
HISTORY_ROWS = 100
"""Newest edits shown at most (the history file keeps them all)."""


def history_rows(rs: RunStore) -> list[list]:
    """The store's edits, newest first, as table rows."""
    import time

    rows = []
    for edit in reversed(rs.editor("").history()[-HISTORY_ROWS:]):
        first = f"{edit.ids[0]}" + (f" (+{len(edit.ids) - 1} more)" if len(edit.ids) > 1 else "")
        change = f"{state_summary(edit.before[0])} → {state_summary(edit.after[0])}"
        action = f"undo of #{edit.undoes}" if edit.undoes is not None else edit.action
        rows.append([edit.seq, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(edit.when)), edit.who, action,
                     first, change, edit.undone_by or ""])
    return rows
