"""Faults: cancel at every step-1 stage, kill -9 during generation and during student training, two clients
curating one store at once. After each, stores are readable and consistent and a new job runs."""
from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from retrikt.config import RunConfig, override
from retrikt.errors import Cancelled
from retrikt.context import Context, open_store
from retrikt.generate.stage import run_generate
from retrikt.runs import open_run
from retrikt.tasks import load_builtin

from test_app_pages import FILTERS
from test_store_view import finished_summary, seed_run

QUICK = {"prompt_tuning.steps": 2, "prompt_tuning.batch_size": 2, "generation.samples_per_label": 8,
         "generation.batch_size": 4, "generation.max_new_tokens": 24, "scorer.demo_candidates": 1,
         "scorer.calibration_inputs": 8}


def _store_of(workspace, name):
    run = open_run(workspace, name)
    return run, open_store(Context(run, load_builtin(run.config.task, seed=run.config.seed), None))


# Cancel during scoring lands before the train split is stored, or (one demo candidate: no check left in the
# search) at the next stage's first check, after it: either way whole.
@pytest.mark.slow
@pytest.mark.parametrize("stage,stored", [("score", (0, 32)), ("tune", (32,)), ("generate", (32,))])
def test_cancel_at_each_stage_leaves_a_consistent_store(workspace, teacher, stage, stored):
    name = f"cancel-{stage}-{uuid.uuid4().hex[:6]}"
    config = override(RunConfig(workspace=workspace, run_name=name), QUICK)
    seen = []

    def progress(s, done, total, info):
        seen.append(s)

    with pytest.raises(Cancelled):
        run_generate(config, progress, should_stop=lambda: stage in seen)
    run, store = _store_of(workspace, name)
    assert run.summary()["status"] == "cancelled"
    # Nothing half-written: only whole batches (the train split is one add), each entry complete.
    assert store.count() in stored
    assert all(e.soft_labels and e.agreement is not None for e in store.list())
    assert store.count({"source": "generated:step1"}) == 0


def _client(url):
    # httpx's 5 s default fails a request the first time a busy 2-core host answers late; these tests are about
    # what survives a kill, not latency (the load and browser tests measure that).
    return Client(url, verbose=False, httpx_kwargs={"timeout": 60})


def _poll(client, api, wanted, timeout=300, *args):
    deadline = time.time() + timeout
    while True:
        result = client.predict(*args, api_name=api)
        status = result[0] if isinstance(result, (list, tuple)) else result
        if wanted(status):
            return status
        assert time.time() < deadline and "— failed" not in status, status
        time.sleep(0.5)


@pytest.mark.server
def test_kill_during_generation_then_during_student_training(workspace, teacher, start_studio, tmp_path):
    """kill -9 twice on one workspace (three starts, not four: each start costs ~10 s of imports)."""
    served = tmp_path / "ws"
    served.mkdir()
    (served / "cache").symlink_to(Path(workspace) / "cache", target_is_directory=True)
    seed_run(served, "trained")
    (served / "runs" / "trained" / "summary.json").write_text(json.dumps(finished_summary(teacher.n_params)),
                                                             encoding="utf-8")
    before = (served / "runs" / "trained" / "config.yaml").read_text(encoding="utf-8")
    config = tmp_path / "slow-generation.yaml"
    # Quick stages before generation, then a long generation to be killed in.
    config.write_text("task: SST-2\nrun_name: killed-gen\nscorer:\n  demo_candidates: 1\n  calibration_inputs: 8\n"
                      "prompt_tuning:\n  steps: 2\n  batch_size: 2\ngeneration:\n  samples_per_label: 200\n"
                      "  batch_size: 4\n  max_new_tokens: 48\n", encoding="utf-8")
    url, stop = start_studio(served)
    client = _client(url)
    loaded = client.predict(handle_file(str(config)), api_name="/setup_load")
    client.predict(*loaded[:3], loaded[4], loaded[5]["value"], *loaded[6:24], api_name="/setup_run")
    _poll(client, "/generate_poll", lambda s: "`generate`" in s and "running" in s)
    time.sleep(2)  # a batch or two in
    stop(kill=True)

    url, stop = start_studio(served)
    client = _client(url)
    assert "— interrupted" in client.predict(api_name="/generate_poll")[0]
    # The store holds what was committed before the kill (the train split) and reads fine.
    status, table = client.predict("killed-gen", "", *FILTERS, api_name="/store_list")
    assert status.startswith("32 of 32") and len(table["data"]) == 32
    assert open_run(served, "killed-gen").summary()["status"] == "running"  # what the dead job last wrote
    # The restarted studio runs new jobs: a student training, killed in turn.
    client.predict("trained", 400, 4, 0.5, False, "none", "random", 16, api_name="/student_start")
    _poll(client, "/student_poll", lambda s: "running" in s and "`student`" in s, 300, "trained")
    stop(kill=True)

    url, stop = start_studio(served)
    try:
        client = _client(url)
        assert "— interrupted" in client.predict("trained", api_name="/student_poll")
        status, _ = client.predict("trained", "", *FILTERS, api_name="/store_list")
        assert status.startswith("8 of 8")  # the store the student read is whole
        assert not (served / "runs" / "trained" / "student" / "model.pt").exists()  # no half-saved student
        assert "student:" in before and (served / "runs" / "trained" / "config.yaml").is_file()
        client.predict("trained", 1, 4, 0.5, False, "none", "random", 16, api_name="/student_start")
        _poll(client, "/student_poll", lambda s: "— done" in s, 300, "trained")
    finally:
        stop()


@pytest.mark.server
def test_two_clients_curating_one_store_lose_no_edit(workspace, workspace_studio):
    shared = f"shared-{uuid.uuid4().hex[:6]}"  # the session workspace may be reused across sessions
    seed_run(workspace, shared)
    try:
        ann, bob = _client(workspace_studio), _client(workspace_studio)
        errors = []

        def curate(client, prefix, relabel):
            try:
                for n in range(6):
                    client.predict(shared, f"{prefix} note {n}", "", "", "", "positive", *FILTERS,
                                   api_name="/store_add")
                for entry_id, label in relabel:
                    client.predict(shared, entry_id, label, *FILTERS, api_name="/store_set_label")
            except Exception as exc:  # noqa: BLE001 - reported below with the client's name
                errors.append((prefix, exc))

        threads = [threading.Thread(target=curate, args=(ann, "ann", [("g1", "negative"), ("g2", "positive")])),
                   threading.Thread(target=curate, args=(bob, "bob", [("p1", "negative"), ("t1", "negative")]))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert not errors, errors
        _, store = _store_of(workspace, shared)
        texts = [e.text for e in store.list(source="manual") if " note " in e.text]
        assert sorted(t.split(": ", 1)[-1] for t in texts) == sorted(f"{w} note {n}" for w in ("ann", "bob")
                                                                      for n in range(6))
        labels = {e.id: e.label for e in store.get(["g1", "g2", "p1", "t1"])}
        assert labels == {"g1": "negative", "g2": "positive", "p1": "negative", "t1": "negative"}
        assert store.count() == 8 + 12

        # The same entry, opened by both: the second to save is told, and nothing is overwritten silently.
        ann.predict(shared, "g3", *FILTERS, api_name="/store_open")
        bob.predict(shared, "g3", *FILTERS, api_name="/store_open")
        ann.predict(shared, "g3", "positive", *FILTERS, api_name="/store_set_label")
        with pytest.raises(AppError, match="changed by someone else"):
            bob.predict(shared, "g3", "negative", *FILTERS, api_name="/store_set_label")
        assert store.get(["g3"])[0].label == "positive"
    finally:
        shutil.rmtree(Path(workspace) / "runs" / shared, ignore_errors=True)
