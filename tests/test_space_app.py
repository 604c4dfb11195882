"""The studio served in hosted (Space) mode, driven by several gradio_client visitors at once."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from test_app_pages import BUILT_IN, FILTERS, _form

DEMO = "demo-SST-2"
SPACE_ENV = {"RETRIKT_SPACE": "1", "RETRIKT_MAX_QUEUED": "1", "RETRIKT_MAX_UPLOAD_MB": "1"}


@pytest.fixture(scope="module")
def space(tmp_path_factory, start_studio, workspace, teacher):
    # `teacher` converts the packaged GGUF once; the server reads the conversion from the shared cache.
    served = tmp_path_factory.mktemp("space")
    (served / "cache").symlink_to(Path(workspace) / "cache", target_is_directory=True)
    url, stop = start_studio(served, env=SPACE_ENV)
    yield served, url
    stop()


def _rows(client, run=DEMO, **filters):
    values = dict(zip(("label", "source", "agreement", "min_reward", "contains", "query", "k"), FILTERS))
    values.update(filters)
    _, table, _ = client.predict(run, "", *values.values(), api_name="/store_list")
    return {row[0]: row for row in table["data"]}


def test_no_free_text_paths_reach_the_server(space, tmp_path):
    _, url = space
    client = Client(url, verbose=False)
    with pytest.raises(AppError, match="not in the list of choices"):  # the local source is not offered
        client.predict("local", "/etc", "", BUILT_IN, "SST-2", *_form(seed=13), api_name="/setup_save")
    with pytest.raises(AppError, match="only these teachers"):
        client.predict("hub", "../../models/private", "", BUILT_IN, "SST-2", *_form(seed=13), api_name="/setup_save")
    with pytest.raises(AppError, match="upload only"):
        client.predict(str(tmp_path), "", "sentence", "", "label", "from-disk", 13, api_name="/setup_save_hub_task")
    bad = tmp_path / "escape.yaml"
    bad.write_text("task: SST-2\nteacher:\n  model: /srv/models/secret\n", encoding="utf-8")
    with pytest.raises(AppError, match="only these teachers"):
        client.predict(handle_file(str(bad)), api_name="/setup_load")
    server = tmp_path / "server.yaml"
    server.write_text("task: SST-2\nstore:\n  url: http://127.0.0.1:9\n", encoding="utf-8")
    with pytest.raises(AppError, match="store.url"):
        client.predict(handle_file(str(server)), api_name="/setup_load")
    path, shown = client.predict("packaged", "", "", BUILT_IN, "SST-2", *_form(seed=13), api_name="/setup_save")
    assert "workspace: " in shown and "/etc" not in shown


def test_uploads_over_the_limit_are_refused(space, tmp_path):
    _, url = space
    big = tmp_path / "big.csv"
    big.write_text("text,label\n" + "x" * 1_500_000 + ",a\n", encoding="utf-8")
    client = Client(url, verbose=False)
    with pytest.raises(Exception, match="(?i)too large|maximum|exceeds|413"):
        client.predict(handle_file(str(big)), api_name="/setup_preview")


def test_curation_edits_a_visitors_own_copy(space):
    served, url = space
    ann, bob = Client(url, verbose=False), Client(url, verbose=False)
    shared = _rows(bob)
    entry_id, row = next(iter(shared.items()))
    new_label = "positive" if row[1] == "negative" else "negative"
    status, _, _, _ = ann.predict(DEMO, entry_id, new_label, *FILTERS, api_name="/store_set_label")
    assert f"now has the curated label **{new_label}**" in status
    assert _rows(ann)[entry_id][1] == new_label  # Ann sees her edit ...
    assert _rows(bob)[entry_id][1] == row[1]  # ... Bob and the shared store do not
    ann.predict(DEMO, entry_id, *FILTERS, api_name="/store_delete")
    assert entry_id not in _rows(ann) and entry_id in _rows(bob)
    copies = list((served / "visitors").glob(f"*/{DEMO}/store"))
    assert len(copies) == 1
    # Each visitor has their own edit history, and retrieval in Compare goes through their own store.
    assert [row[3] for row in ann.predict(DEMO, api_name="/store_history")["data"]] == ["delete", "label"]
    assert bob.predict(DEMO, api_name="/store_history")["data"] == []
    assert "2 edit(s)" in ann.predict(DEMO, api_name="/compare_reevaluate")
    assert "0 edit(s)" in bob.predict(DEMO, api_name="/compare_reevaluate")


def test_jobs_are_shared_fairly_and_owned(space):
    _, url = space
    ann, bob, cat = (Client(url, verbose=False) for _ in range(3))
    with pytest.raises(AppError, match="only on runs your own step-1 jobs made"):
        ann.predict(DEMO, 2, 4, 1.0, 0.5, 0.5, 0.05, api_name="/ppo_start")
    ann.predict("SST-2", 4, 200, 0.9, 0.95, api_name="/generate_start")
    with pytest.raises(AppError, match="already have 1 job"):
        ann.predict("SST-2", 4, 200, 0.9, 0.95, api_name="/generate_start")
    bob.predict("SST-2", 4, 200, 0.9, 0.95, api_name="/generate_start")
    with pytest.raises(AppError, match="queue is full"):
        cat.predict("SST-2", 4, 200, 0.9, 0.95, api_name="/generate_start")
    status = bob.predict(api_name="/generate_poll")[0]
    assert "queued (position 1)" in status
    table = cat.predict("", api_name="/jobs_poll")[0]
    ann_job = next(row[0] for row in table["data"] if row[1] == "running")  # columns: id, state, ...
    with pytest.raises(AppError, match="Only the visitor who started"):
        cat.predict(ann_job, api_name="/jobs_cancel")
    bob.predict(api_name="/generate_cancel")  # a queued job is cancelled at once
    ann.predict(api_name="/generate_cancel")
    deadline = time.time() + 180
    while "cancelled" not in (status := ann.predict(api_name="/generate_poll")[0]):
        assert time.time() < deadline, status
        time.sleep(1)
    assert "cancelled" in bob.predict(api_name="/generate_poll")[0]


def test_optional_login(tmp_path, start_studio):
    url, stop = start_studio(tmp_path, env={"RETRIKT_SPACE": "1", "RETRIKT_AUTH": "ann:s3cret"})
    try:
        with pytest.raises(Exception, match="(?i)login|auth|401|credentials"):
            Client(url, verbose=False).predict("", api_name="/jobs_poll")
        with pytest.raises(Exception):
            Client(url, auth=("ann", "wrong"), verbose=False)
        client = Client(url, auth=("ann", "s3cret"), verbose=False)
        status, table, _ = client.predict(DEMO, "", *FILTERS, api_name="/store_list")
        assert "entries match the filters" in status and table["data"]
    finally:
        stop()
