"""Knowledge store tests: a real Chroma (embedded and as a server) and the real packaged embedder."""
from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest

from retrikt.store.embed import Embedder, EmbedderError, default_embedder, packaged_model_dir
from retrikt.store.knowledge_store import Entry, KnowledgeStore, StoreError, collection_name, list_collections

LABELS = ["negative", "positive"]

CORPUS = [  # unrelated topics around one planted film review
    "The stock market fell sharply after the interest rate announcement.", "Mix the flour and cocoa, then add eggs.",
    "The football team won the championship in extra time.", "Heavy rain is expected over the weekend.",
    "The new phone has a bright screen and a long battery life.", "My cat sleeps on the sofa all afternoon.",
    "Quantum computers store information in qubits.",
]
PLANTED = "This film is a breathtaking masterpiece of cinema."
QUERY = "An absolutely stunning movie, a true cinematic masterpiece."


def entry(text: str, label: str = "positive", p_pos: float | None = 0.9, **kw) -> Entry:
    """An entry whose teacher probability of 'positive' is p_pos (None: not scored)."""
    soft = None if p_pos is None else {"negative": round(1 - p_pos, 6), "positive": p_pos}
    kw.setdefault("source", "generated:step1")
    return Entry(fields={"sentence": text}, label=label, soft_labels=soft, text=text, **kw)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return default_embedder()


@pytest.fixture(scope="session")
def other_embedder(tmp_path_factory) -> Embedder:
    """The same real model under another name: a folder of links to the packaged files."""
    folder = tmp_path_factory.mktemp("models") / "other-minilm"
    for src in packaged_model_dir().rglob("*"):
        if src.is_file():
            dest = folder / src.relative_to(packaged_model_dir())
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.symlink_to(src)
    return Embedder(str(folder))


def store_location(store: KnowledgeStore) -> dict:
    return {"url": store.location} if store.location.startswith("http") else {"path": store.location}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _chroma_cli() -> str:
    beside = Path(sys.executable).with_name("chroma")
    found = str(beside) if beside.exists() else shutil.which("chroma")
    if not found:
        pytest.fail("The 'chroma' command from the chromadb package is not installed.")
    return found


@contextlib.contextmanager
def run_chroma_server(root: Path, port: int | None = None):
    """Start ``chroma run`` on ``port`` (default: a free loopback port) with its data in ``root/data``, wait for its
    heartbeat, stop it on exit. Started again on the same root and port, it serves the same data at the same URL."""
    port = port or _free_port()
    log_path = root / "server.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [_chroma_cli(), "run", "--path", str(root / "data"), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"Chroma server exited early:\n{log_path.read_text()[-2000:]}")
                try:
                    if httpx.get(f"{url}/api/v2/heartbeat", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail("Chroma server gave no heartbeat within 60 s.")
                time.sleep(0.25)
            yield url, proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory):
    """A real Chroma server shared by the whole session."""
    with run_chroma_server(tmp_path_factory.mktemp("chroma-server")) as (url, _):
        yield url


@pytest.fixture(params=["embedded", pytest.param("server", marks=pytest.mark.server)])
def location(request, tmp_path) -> dict:
    """Where stores live: a local folder, or the session's server."""
    if request.param == "embedded":
        return {"path": tmp_path / "store"}
    return {"url": request.getfixturevalue("chroma_server")}


@pytest.fixture
def make_store(location, embedder):
    """Factory for stores with unique collection names (the server is shared by all tests)."""
    made: list[KnowledgeStore] = []

    def make(**kw) -> KnowledgeStore:
        name = collection_name("SST-2", f"t-{uuid.uuid4().hex[:10]}")
        store = KnowledgeStore(**location, **{"collection": name, "embedder": embedder, "task_labels": LABELS, **kw})
        made.append(store)
        return store

    yield make
    for store in made:
        with contextlib.suppress(StoreError):  # already dropped by the test
            store.drop()


# ---------------------------------------------------------------- core, on both backends


def test_add_get_count(make_store):
    store = make_store()
    items = [
        entry("a warm and funny film", "positive", 0.9, gen_settings={"temperature": 0.7, "seed": 3}),
        entry("a dull, lifeless script", "positive", 0.2, rewards={"fluency": 0.5, "label": 0.25}),
        entry("gold sentence", "negative", None, source="train"),
    ]
    ids = store.add(items)
    assert len(set(ids)) == 3 and [e.id for e in items] == ids
    assert store.count() == 3 and store.count({"source": "train"}) == 1
    got = store.get(list(reversed(ids)))
    assert [g.id for g in got] == list(reversed(ids))
    first, second, gold = store.get(ids)
    assert first.fields == {"sentence": "a warm and funny film"} and first.text == "a warm and funny film"
    assert (first.teacher_label, first.agreement) == ("positive", True)
    assert first.gen_settings == {"temperature": 0.7, "seed": 3}
    assert (second.teacher_label, second.agreement) == ("negative", False)
    assert second.rewards == {"fluency": 0.5, "label": 0.25}
    assert (gold.soft_labels, gold.teacher_label, gold.agreement) == (None, None, None)
    assert first.created == pytest.approx(items[0].created)
    with pytest.raises(StoreError, match="already in"):
        store.add([entry("again", "positive", id=ids[0])])
    with pytest.raises(StoreError, match="not one of"):
        store.add([entry("bad source", source="scraped")])
    with pytest.raises(StoreError, match="task labels"):
        store.add([entry("bad label", "neutral")])
    with pytest.raises(StoreError, match="deleted"):
        store.get(["no-such-id"])
    assert store.count() == 3
    assert store.name in list_collections(**store_location(store))


def test_list_filters(make_store):
    store = make_store()
    store.add([
        entry("kind and gentle", "positive", 0.95, rewards={"total": 0.9}),
        entry("cruel and cold", "positive", 0.1, rewards={"total": 0.2}),
        entry("plain gold text", "negative", None, source="train"),
        entry("manual kind note", "negative", 0.3, source="manual", curated=True),
    ])
    texts = lambda entries: sorted(e.text for e in entries)  # noqa: E731
    assert len(store.list()) == 4
    assert texts(store.list(label="negative")) == ["manual kind note", "plain gold text"]
    assert texts(store.list(source=["train", "manual"])) == ["manual kind note", "plain gold text"]
    assert texts(store.list(agreement=False)) == ["cruel and cold"]
    assert texts(store.list(agreement=True)) == ["kind and gentle", "manual kind note"]
    assert texts(store.list(curated=True)) == ["manual kind note"]
    assert texts(store.list(min_reward=0.5)) == ["kind and gentle"]
    assert texts(store.list(text_contains="kind")) == ["kind and gentle", "manual kind note"]
    assert texts(store.list(text_contains="kind", label="positive")) == ["kind and gentle"]
    assert store.list(label=[]) == []
    page = store.list(limit=2, offset=1)
    assert [e.text for e in page] == [e.text for e in store.list()][1:3]


def test_query_finds_planted_neighbour(make_store, embedder):
    store = make_store()
    ids = store.add([entry(t, "positive", 0.6) for t in CORPUS] + [entry(PLANTED, "positive", 0.97)])
    planted = ids[-1]
    (hits,) = store.query(embedder.encode([QUERY]), k=3)
    assert hits[0][0].id == planted and hits[0][0].text == PLANTED
    sims = [s for _, s in hits]
    assert sims == sorted(sims, reverse=True) and 0.4 < sims[0] <= 1.0001
    (without,) = store.query(embedder.encode([QUERY]), k=3, exclude_ids=[planted])
    assert len(without) == 3 and planted not in {e.id for e, _ in without}
    assert store.search_text(QUERY, k=1)[0][0].id == planted
    batch = store.query(embedder.encode([QUERY, CORPUS[2]]), k=1, where={"source": "generated:step1"})
    assert [b[0][0].id for b in batch] == [planted, ids[2]]
    assert len(store.query(embedder.encode([QUERY]), k=50)[0]) == len(ids)


def test_query_empty_store_raises(make_store, embedder):
    with pytest.raises(StoreError, match="empty"):
        make_store().query(embedder.encode([QUERY]), k=1)


def test_update_label_recomputes_agreement(make_store):
    store = make_store()
    (id_,) = store.add([entry("a sour, bitter ending", "positive", 0.15)])
    assert store.get([id_])[0].agreement is False
    updated = store.update_label(id_, "negative")
    assert (updated.label, updated.agreement) == ("negative", True)
    assert store.get([id_])[0].agreement is True and store.list(agreement=False) == []
    with pytest.raises(StoreError, match="Unknown label"):
        store.update_label(id_, "neutral")
    assert store.get([id_])[0].label == "negative"


def test_curated_and_delete(make_store):
    store = make_store()
    ids = store.add([entry(f"sample number {i}", "positive", 0.8) for i in range(4)])
    assert store.set_curated(ids[:2]) == 2
    assert sorted(e.id for e in store.list(curated=True)) == sorted(ids[:2])
    store.set_curated(ids[0], curated=False)
    assert [e.id for e in store.list(curated=True)] == [ids[1]]
    with pytest.raises(StoreError):
        store.set_curated(["missing-id"])
    assert store.delete([ids[0], "missing-id"]) == 1
    assert store.count() == 3
    with pytest.raises(StoreError):
        store.get([ids[0]])


def test_delete_where_teacher_disagrees(make_store):
    store = make_store()
    store.add([
        entry("agrees one", "positive", 0.9),
        entry("disagrees one", "positive", 0.1),
        entry("disagrees two", "negative", 0.8),
        entry("not scored", "negative", None, source="train"),
    ])
    assert store.delete_where_teacher_disagrees() == 2
    assert sorted(e.text for e in store.list()) == ["agrees one", "not scored"]
    assert store.delete_where_teacher_disagrees() == 0


def test_export_import_round_trip(make_store, tmp_path):
    source = make_store()
    source.add([
        entry("a lovely, tender story", "positive", 0.88, gen_settings={"top_p": 0.9}),
        entry("ünïcödé review: dreadful", "negative", 0.05, rewards={"r": 1.0}, curated=True),
        entry("gold", "negative", None, source="train"),
    ])
    path = tmp_path / "export" / "store.jsonl"
    assert source.export_jsonl(path) == 3
    target = make_store()
    assert target.import_jsonl(path) == 3
    ids, vectors = source.all_embeddings()
    assert target.get(ids) == source.get(ids)
    target_ids, target_vectors = target.all_embeddings()
    order = [target_ids.index(i) for i in ids]
    np.testing.assert_allclose(target_vectors[order], vectors, atol=1e-6)
    # Without stored vectors the importer re-embeds the text and lands on the same vectors.
    bare = tmp_path / "bare.jsonl"
    source.export_jsonl(bare, include_embeddings=False)
    assert "embedding" not in json.loads(bare.read_text().splitlines()[0])
    third = make_store()
    assert third.import_jsonl(bare) == 3
    third_ids, third_vectors = third.all_embeddings()
    np.testing.assert_allclose(third_vectors[[third_ids.index(i) for i in ids]], vectors, atol=1e-4)


@pytest.mark.parametrize(
    "bad_line, problem",
    [
        ("{not json", "not valid JSON"),
        ('{"fields": {"s": "x"}, "label": "positive", "source": "scraped", "text": "x"}', "source"),
        ('{"fields": {"s": "x"}, "label": "neutral", "source": "manual", "text": "x"}', "task labels"),
        ('{"fields": {"s": "x"}, "label": "positive", "source": "manual"}', "missing keys"),
        ('["a list"]', "JSON object"),
    ],
    ids=["broken-json", "bad-source", "bad-label", "no-text", "not-object"],
)
def test_import_bad_line_writes_nothing(make_store, tmp_path, bad_line, problem):
    source = make_store()
    source.add([entry("first good line", "positive", 0.9), entry("second good line", "negative", 0.2)])
    path = tmp_path / "in.jsonl"
    source.export_jsonl(path)
    good = path.read_text().splitlines()
    path.write_text("\n".join([good[0], bad_line, good[1]]) + "\n")
    target = make_store()
    with pytest.raises(StoreError, match=rf"line 2: .*{problem}"):
        target.import_jsonl(path)
    assert target.count() == 0


def test_reopen_sees_data(make_store, location, embedder):
    store = make_store()
    ids = store.add([entry("persisted sample", "positive", 0.7)])
    again = KnowledgeStore(**location, collection=store.name, embedder=embedder, create=False)
    assert again.count() == 1 and again.get(ids)[0].text == "persisted sample"
    assert again.labels == LABELS  # read back from the collection metadata
    with pytest.raises(StoreError, match="No collection"):
        KnowledgeStore(**location, collection="never-made-collection", embedder=embedder, create=False)


def test_embedder_mismatch_raises(make_store, location, other_embedder):
    store = make_store()
    assert other_embedder.name == "other-minilm"
    with pytest.raises(StoreError, match="other-minilm"):
        KnowledgeStore(**location, collection=store.name, embedder=other_embedder)
    with pytest.raises(StoreError, match="labels"):
        KnowledgeStore(**location, collection=store.name, embedder=store.embedder, task_labels=["a", "b", "c"])


def test_concurrent_adds_lose_nothing(make_store, location, embedder):
    name = make_store().name
    errors: list[BaseException] = []
    added: list[str] = []

    def worker(n: int) -> None:
        try:
            store = KnowledgeStore(**location, collection=name, embedder=embedder, task_labels=LABELS)
            for batch in range(5):
                ids = store.add([entry(f"thread {n} batch {batch} item {i}", "positive", 0.6) for i in range(5)])
                added.extend(ids)
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    store = KnowledgeStore(**location, collection=name, embedder=embedder, create=False)
    assert store.count() == 100 and len(set(added)) == 100
    assert {e.id for e in store.list()} == set(added)


def test_drop(make_store, location, embedder):
    store = make_store()
    store.add([entry("short-lived", "positive", 0.9)])
    other = KnowledgeStore(**location, collection=store.name, embedder=embedder)
    store.drop()
    assert store.name not in list_collections(**store_location(store))
    with pytest.raises(StoreError, match="dropped"):
        store.count()
    with pytest.raises(StoreError, match="no longer exists"):
        other.list()


@pytest.mark.server
def test_server_going_away_raises_store_error(tmp_path, embedder):
    with run_chroma_server(tmp_path) as (url, proc):
        store = KnowledgeStore(url=url, collection="short-lived", embedder=embedder, task_labels=LABELS)
        store.add([entry("written before the outage", "positive", 0.9)])
        proc.terminate()
        proc.wait(timeout=15)
        with pytest.raises(StoreError, match="Lost the connection"):
            store.count()


# ---------------------------------------------------------------- names, errors, embedder

LONG = "t" * 600


@pytest.mark.parametrize(
    "task, run, expected",
    [
        ("SST-2", "run1", "SST-2__run1"),
        ("a", "b", "a__b"),
        ("rte", "v1.2", "rte__v1.2"),
        ("../x", "run", StoreError),
        ("/abs", "run", StoreError),
        ("task", "..", StoreError),
        ("task", "a\\b", StoreError),
        ("", "run", StoreError),
        ("情感", "run", r"x[0-9a-f]{8}__run"),
        ("café", "run", r"cafe-[0-9a-f]{8}__run"),
        ("my task", "run 1", r"my-task-[0-9a-f]{8}__run-1-[0-9a-f]{8}"),
        ("-dash-", "run", r"dash-[0-9a-f]{8}__run"),
        (LONG, "run", r"t+-[0-9a-f]{16}"),
    ],
)
def test_collection_name(task, run, expected):
    if expected is StoreError:
        with pytest.raises(StoreError):
            collection_name(task, run)
        return
    name = collection_name(task, run)
    assert re.fullmatch(expected, name), name
    assert name == collection_name(task, run)  # deterministic
    assert 3 <= len(name) <= 512 and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9]", name)


def test_collection_name_keeps_distinct_names_apart():
    assert collection_name("café", "r") != collection_name("cafe", "r")
    assert collection_name("a b", "r") != collection_name("a-b", "r")


def test_bad_store_arguments(tmp_path, embedder):
    with pytest.raises(StoreError, match="Invalid collection name"):
        KnowledgeStore(path=tmp_path, collection="ab", embedder=embedder)
    with pytest.raises(StoreError, match="exactly one"):
        KnowledgeStore(collection="abc", embedder=embedder)
    with pytest.raises(StoreError, match="http://host:port"):
        KnowledgeStore(url="localhost:8000", collection="abc", embedder=embedder)
    with pytest.raises(StoreError, match="Cannot reach"):
        KnowledgeStore(url=f"http://127.0.0.1:{_free_port()}", collection="abc", embedder=embedder)
    assert list_collections(path=tmp_path / "nothing-here") == []
    assert not (tmp_path / "nothing-here").exists()


def test_embedder_encodes_normalised_float32(embedder):
    assert embedder.name == "all-MiniLM-L6-v2" and embedder.dim == 384
    assert default_embedder() is embedder
    vectors = embedder.encode(["hello world", "a cat on a mat", "hello world"])
    assert vectors.dtype == np.float32 and vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[0], vectors[2], atol=1e-6)
    assert embedder.encode([]).shape == (0, 384)
    assert packaged_model_dir() is not None and (packaged_model_dir() / "modules.json").is_file()
    # The packaged folder given explicitly is the same model, so stores accept it under the same name.
    assert Embedder(str(packaged_model_dir())).name == embedder.name


def test_embedder_errors(tmp_path, monkeypatch):
    with pytest.raises(EmbedderError, match="No model directory"):
        Embedder(str(tmp_path / "missing-model"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EmbedderError, match="not in the local cache"):
        Embedder("no-such-org/no-such-model")
    empty = tmp_path / "empty-model"
    empty.mkdir()
    with pytest.raises(EmbedderError, match="Could not load"):
        Embedder(str(empty))
