"""Every bad input a user can give the served studio: a clear message, no traceback, no change to runs or tasks.

Each case drives a real `python app.py` with gradio_client; the workspace's runs/ and tasks/ folders are
fingerprinted before and after every case.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from test_app_pages import BUILT_IN, FILTERS, _form
from test_store_view import seed_run

pytestmark = pytest.mark.server

DEMO = "demo-SST-2"


def fingerprint(workspace: Path) -> dict[str, str]:
    """Content hash of every file under runs/ and tasks/ (what a refused input must leave as it was)."""
    out = {}
    for folder in ("runs", "tasks"):
        root = workspace / folder
        for path in sorted(root.rglob("*")) if root.is_dir() else []:
            if path.is_file():
                out[str(path.relative_to(workspace))] = hashlib.sha1(path.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def served(tmp_path_factory, start_studio, workspace, teacher):
    root = tmp_path_factory.mktemp("bad-inputs")
    (root / "cache").symlink_to(Path(workspace) / "cache", target_is_directory=True)
    seed_run(root, "kept")
    empty = root / "runs" / "emptied"
    seed_run(root, "emptied", entries=[])
    (empty / "summary.json").write_text(json.dumps({"status": "done", "teacher_params": 134_515_008}))
    url, stop = start_studio(root)
    yield root, Client(url, verbose=False)
    stop()


def _entries(client, run: str) -> list:
    return client.predict(run, "", *FILTERS, api_name="/store_list")[1]["data"]


@pytest.fixture
def unchanged(served):
    root, client = served
    before, entries = fingerprint(root), _entries(client, "kept")
    yield
    after = fingerprint(root)
    # The store tab's Chroma files may be rewritten by reads (sqlite journal): compare everything else exactly,
    # and the store by its entries.
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k) and "/store/" not in k}
    assert not changed, changed
    assert _entries(client, "kept") == entries


def _table(tmp_path: Path, name: str, text: str | bytes) -> str:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return str(path)


def _rows(n_per_label: int = 40, labels=("pos", "neg")) -> str:
    return "".join(f"review {i} {label},{label}\n" for i in range(n_per_label) for label in labels)


UPLOADS = [
    # (case, file name, content, text column, label column, message)
    ("missing column", "a.csv", "review,label\n" + _rows(), "text", "label", "no column 'text'"),
    ("empty file", "empty.csv", "", "review", "label", "empty"),
    ("header only", "head.csv", "review,label\n", "review", "label", "no data rows"),
    ("wrong encoding", "latin.csv", ("review,label\n" + _rows()).replace("review 1 ", "caf\u00e9 1 ").encode("latin-1"),
     "review", "label", "UTF-8"),
    ("too many labels", "many.csv", "review,label\n" + _rows(3, [f"l{n}" for n in range(25)]), "review", "label",
     "labels"),
    ("a row without label", "nolabel.csv", "review,label\n" + _rows() + "orphan review,\n", "review", "label",
     "is empty"),
    ("100 kB single text", "long.csv", "review,label\n" + _rows() + "x" * 100_000 + ",pos\n", "review", "label",
     "over the 5,000 limit"),
    ("too few rows per label", "few.csv", "review,label\n" + _rows(5), "review", "label", "needs at least"),
]


@pytest.mark.parametrize("case,name,content,text_col,label_col,message", UPLOADS, ids=[u[0] for u in UPLOADS])
def test_bad_uploads(served, unchanged, tmp_path, case, name, content, text_col, label_col, message):
    _, client = served
    path = _table(tmp_path, name, content)
    with pytest.raises(AppError) as caught:
        client.predict(handle_file(path), text_col, "(none)", label_col, 13, None, 16, "", api_name="/setup_check_mapping")
    assert message in str(caught.value) and "Traceback" not in str(caught.value)
    with pytest.raises(AppError, match=message):
        client.predict(handle_file(path), text_col, "(none)", label_col, "t-bad", 13, None, 16, "",
                       api_name="/setup_save_upload_task")


@pytest.mark.parametrize("k,order,message", [
    (4, "pos, neutral", "not in the label order given: 'neg'"),
    (4, "pos, pos, neg", "the label order repeats a name"),
    (40, "", "needs at least 81"),  # 50 rows per label cannot give 40 train + 40 dev + 1 test
])
def test_a_bad_k_or_label_order_is_a_clear_message(served, tmp_path, k, order, message):
    _, client = served
    path = _table(tmp_path, "reviews.csv", "review,label\n" + _rows(50))
    with pytest.raises(AppError) as caught:
        client.predict(handle_file(path), "review", "(none)", "label", 13, None, k, order,
                       api_name="/setup_check_mapping")
    assert message in str(caught.value) and "Traceback" not in str(caught.value)


def test_extra_columns_are_fine(served, tmp_path):
    _, client = served
    body = "id,review,label,notes\n" + "".join(f"{n},{line},x\n" for n, line in enumerate(_rows().splitlines()))
    result = client.predict(handle_file(_table(tmp_path, "extra.csv", body)), "review", "(none)", "label", 13, None, 16, "",
                            api_name="/setup_check_mapping")
    assert "The mapping works: 2 labels" in result


def test_a_50_mb_upload_is_refused(served, unchanged, tmp_path):
    _, client = served
    path = tmp_path / "huge.csv"
    with path.open("w", encoding="utf-8") as handle:
        handle.write("review,label\n")
        line = "a long review " * 70 + ",pos\n"
        for _ in range(50_000_000 // len(line) + 1):
            handle.write(line)
    with pytest.raises(AppError, match="too large|limit"):
        client.predict(handle_file(str(path)), api_name="/setup_preview")


@pytest.mark.parametrize("yaml_text,message", [
    ("task: SST-2\nsurprise: 1\n", "unknown field"),
    ("task: SST-2\ngeneration:\n  temperature: 99\n", "out of range"),
    ("task: SST-2\nprompt_tuning:\n  steps: -3\n", "out of range"),
    ("task: SST-2\nseed: not-a-number\n", "seed"),
    ("- just\n- a list\n", "mapping"),
    ("task: [unclosed\n", "cannot read config"),
    ("task: ../../etc\n", "unknown task"),
    ("task: SST-2\nrun_name: ../../escape\n", "run name"),
])
def test_bad_config_yaml(served, unchanged, tmp_path, yaml_text, message):
    _, client = served
    path = _table(tmp_path, "bad.yaml", yaml_text)
    with pytest.raises(AppError, match=message):
        loaded = client.predict(handle_file(path), api_name="/setup_load")
        # A YAML that loads is checked when it is used: save it back through the form.
        client.predict("packaged", "", "", BUILT_IN, loaded[5]["value"], *loaded[6:24], api_name="/setup_save")


@pytest.mark.parametrize("api,args,message", [
    ("/store_list", ["../runs", "", *FILTERS], "no run"),
    ("/store_list", ["/etc", "", *FILTERS], "no run"),
    ("/store_export", ["../../"], "no run"),
    ("/compare_open_run", ["../runs", "all"], "no evaluated run|not been evaluated|no run"),
    ("/jobs_cancel", ["../../jobs"], "No job"),
    ("/student_results", ["../kept"], ""),
])
def test_path_traversal_in_names(served, unchanged, api, args, message):
    _, client = served
    if not message:  # a read-only view: it may answer with "no evaluation", but must not fail or leave the workspace
        client.predict(*args, api_name=api)
        return
    with pytest.raises(AppError, match=message):
        client.predict(*args, api_name=api)


def test_run_name_traversal_in_setup(served, unchanged):
    _, client = served
    form = _form(seed=13)
    form[1] = "../../outside"
    with pytest.raises(AppError, match="run name"):
        client.predict("packaged", "", "", BUILT_IN, "SST-2", *form, api_name="/setup_run")
    assert not (served[0].parent / "outside").exists()


def test_too_long_texts_by_hand_and_typed(served, unchanged):
    _, client = served
    long_text = "word " * 20_000
    with pytest.raises(AppError, match="over 5,000 characters"):
        client.predict("kept", long_text, "", "", "", "positive", *FILTERS, api_name="/store_add")
    with pytest.raises(AppError, match="under 5,000 characters"):
        client.predict(DEMO, long_text, "", api_name="/compare_predict")


def _job_status(client, timeout=240):
    deadline = time.time() + timeout
    while True:
        status = client.predict(api_name="/generate_poll")[0]
        if "— failed" in status or "— done" in status:
            return status
        assert time.time() < deadline, status
        time.sleep(1)


@pytest.mark.parametrize("kind", ["unknown hub id", "truncated gguf", "text named gguf"])
def test_bad_teachers_fail_their_job_with_a_clear_error(served, unchanged, tmp_path, kind):
    root, _ = served
    client = Client(served[1].src, verbose=False)  # a fresh session follows only its own job
    if kind == "unknown hub id":
        source, model, expected = "hub", "no-such-org/no-such-model-xyz", "cannot load model"
    elif kind == "truncated gguf":
        from retrikt.teacher.load import packaged_gguf

        bad = tmp_path / "cut.gguf"
        bad.write_bytes(packaged_gguf("smollm2").read_bytes()[:300_000])
        source, model, expected = "local", str(bad), "cannot read GGUF file"
    else:
        bad = tmp_path / "notes.gguf"
        bad.write_text("these are my notes, not a model\n" * 50, encoding="utf-8")
        source, model, expected = "local", str(bad), "is not a GGUF file"
    runs_before = sorted(p.name for p in (root / "runs").iterdir())
    form = _form(seed=13)
    form[1] = f"bad-teacher-{kind.replace(' ', '-')}"
    message = client.predict(source, model, "", BUILT_IN, "SST-2", *form, api_name="/setup_run")
    assert message.startswith("Started job")
    status = _job_status(client)
    assert "— failed" in status and expected in status and "Traceback" not in status
    assert sorted(p.name for p in (root / "runs").iterdir()) == runs_before  # no half-made run folder


def test_student_on_an_empty_store_is_a_clear_error(served, unchanged):
    _, client = served
    client = Client(client.src, verbose=False)
    client.predict("emptied", 2, 4, 0.5, False, "agree", "minilm", 0, api_name="/student_start")
    deadline = time.time() + 120
    while "— failed" not in (status := client.predict("emptied", api_name="/student_poll")):
        assert time.time() < deadline and "— done" not in status, status
        time.sleep(1)
    assert "knowledge store of run emptied is empty" in status and "Traceback" not in status


def test_a_store_deleted_while_the_app_runs(served, tmp_path):
    root, client = served
    seed_run(root, "doomed")
    assert client.predict("doomed", "", *FILTERS, api_name="/store_list")[0].startswith("8 of 8")
    shutil.rmtree(root / "runs" / "doomed" / "store")
    with pytest.raises(AppError, match="store folder is missing|no knowledge store"):
        client.predict("doomed", "", *FILTERS, api_name="/store_list")
    with pytest.raises(AppError, match="store folder is missing|no knowledge store"):
        client.predict("doomed", "g1", "positive", *FILTERS, api_name="/store_set_label")
    assert not (root / "runs" / "doomed" / "store").exists()  # a write does not recreate an empty store
