"""Space (hosted) mode logic: settings from the environment, what a visitor's config may hold, job fairness,
per-visitor store copies. The served app in hosted mode is tested in test_space_app.py."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from retrikt.config import ConfigError, RunConfig, override
from retrikt.errors import Cancelled
from retrikt.jobs import JobManager, JobRefused
from retrikt.space import DEFAULT_ALLOWED_TEACHERS, SpaceSettings, check_visitor_config, parse_auth, visitor_id
from retrikt.studio import store_view
from retrikt.studio.store_view import (Filters, open_run_store, open_visitor_store, select, serve_from_copies,
                                         visitor_store_dir)

from test_store_view import seed_run


@pytest.mark.parametrize("env,enabled", [
    ({}, False), ({"RETRIKT_SPACE": "1"}, True), ({"RETRIKT_SPACE": "true"}, True), ({"SPACE_ID": "me/studio"}, True),
    ({"SPACE_ID": "me/studio", "RETRIKT_SPACE": "0"}, False), ({"RETRIKT_SPACE": "no"}, False),
])
def test_space_mode_is_on_by_env_or_on_a_space(env, enabled):
    assert SpaceSettings.from_env(env).enabled is enabled


def test_settings_from_env():
    settings = SpaceSettings.from_env({"RETRIKT_SPACE": "1", "RETRIKT_MAX_UPLOAD_MB": "2.5",
                                       "RETRIKT_MAX_UPLOAD_ROWS": "100", "RETRIKT_MAX_QUEUED": "5",
                                       "RETRIKT_ALLOWED_TEACHERS": "packaged:smollm2, org/model ",
                                       "RETRIKT_AUTH": "ann:secret,bob:pa:ss", "RETRIKT_WORKSPACE": "ws"})
    assert (settings.max_upload_bytes, settings.max_upload_rows, settings.max_queued_jobs) == (2_500_000, 100, 5)
    assert settings.allowed_teachers == ("packaged:smollm2", "org/model") and settings.workspace == "ws"
    assert settings.auth == (("ann", "secret"), ("bob", "pa:ss")) and settings.max_upload_text == "2500kb"
    assert SpaceSettings.from_env({"RETRIKT_SPACE": "1"}).allowed_teachers == DEFAULT_ALLOWED_TEACHERS


@pytest.mark.parametrize("text", ["ann", "ann:", ":pw", "ann:pw,bob"])
def test_bad_auth_is_a_config_error(text):
    with pytest.raises(ConfigError, match="RETRIKT_AUTH"):
        parse_auth(text)


SPACE = SpaceSettings(enabled=True)


@pytest.mark.parametrize("dotted,message", [
    ({"teacher.model": "/models/secret"}, "only these teachers"),
    ({"teacher.model": "../../etc"}, "only these teachers"),
    ({"teacher.model": "some/other-model"}, "only these teachers"),
    ({"teacher.model": "HuggingFaceTB/SmolLM2-135M-Instruct", "teacher.gguf_file": "x.gguf"}, "only these teachers"),
    ({"store.url": "http://169.254.169.254:80"}, "store.url"),
    ({"store.embedder": "/root/models/enc"}, "store.embedder"),
    ({"student.encoder": "/srv/encoder"}, "student.encoder"),
])
def test_visitor_config_refuses_paths_servers_and_other_models(dotted, message):
    with pytest.raises(ConfigError, match=message):
        check_visitor_config(override(RunConfig(), dotted), SPACE, "ws")


def test_visitor_config_takes_the_servers_workspace():
    config = override(RunConfig(), {"workspace": "/etc", "teacher.model": "HuggingFaceTB/SmolLM2-135M-Instruct"})
    assert check_visitor_config(config, SPACE, "server-ws").workspace == "server-ws"
    local = override(RunConfig(), {"workspace": "/somewhere", "teacher.model": "/models/mine"})
    assert check_visitor_config(local, SpaceSettings(), "server-ws").workspace == "/somewhere"  # local: untouched


@pytest.mark.parametrize("browser,session,expected", [
    ("v-0123456789ab", "abc", "v-0123456789ab"), (None, "abcdef12", "s-abcdef12"), ("../../x", "abcdef12", "s-abcdef12"),
    ("v-1/2", None, "anonymous"), (None, None, "anonymous"),
])
def test_visitor_ids_are_folder_safe(browser, session, expected):
    assert visitor_id(browser, session) == expected


def _blocking_job(release: threading.Event):
    def fn(progress, should_stop, job):
        while not release.is_set():
            if should_stop():
                raise Cancelled("stopped")
            time.sleep(0.02)
        return None
    return fn


def _wait_for(manager, job_id, states, timeout=10.0):
    deadline = time.time() + timeout
    while manager.get(job_id).state not in states:
        assert time.time() < deadline, manager.get(job_id)
        time.sleep(0.02)


def test_queue_is_bounded_and_shared_fairly(tmp_path):
    manager = JobManager(tmp_path, max_queued=1, per_owner=1, owners_only=True)
    release = threading.Event()
    try:
        running = manager.submit("generate", "a", _blocking_job(release), owner="ann")
        _wait_for(manager, running.id, ("running",))
        with pytest.raises(JobRefused, match="already have 1 job"):
            manager.submit("generate", "a2", _blocking_job(release), owner="ann")
        waiting = manager.submit("generate", "b", _blocking_job(release), owner="bob")
        assert manager.queue_position(waiting.id) == 1
        with pytest.raises(JobRefused, match="queue is full"):
            manager.submit("generate", "c", _blocking_job(release), owner="cat")
        with pytest.raises(JobRefused, match="Only the visitor who started"):
            manager.cancel(running.id, owner="bob")
        assert manager.get(running.id).state == "running"
        assert manager.cancel(running.id, owner="ann")
        _wait_for(manager, running.id, ("cancelled",))
        # Ann's slot is free again; the queue moved on to Bob's job.
        _wait_for(manager, waiting.id, ("running",))
        again = manager.submit("generate", "a3", _blocking_job(release), owner="ann")
        assert manager.queue_position(again.id) == 1
    finally:
        release.set()


def test_local_manager_has_no_limits(tmp_path):
    manager = JobManager(tmp_path)
    release = threading.Event()
    try:
        jobs = [manager.submit("generate", str(n), _blocking_job(release)) for n in range(6)]
        assert manager.cancel(jobs[0].id, owner="anyone")
    finally:
        release.set()


def test_visitor_edits_go_to_their_own_copy(tmp_path):
    shared = seed_run(tmp_path, "demo")
    before = {e.id: (e.label, e.curated) for e in shared.list()}
    reader = open_visitor_store(tmp_path, "demo", "v-ann000", write=False)
    assert not reader.copy and not visitor_store_dir(tmp_path, "v-ann000", "demo").exists()
    ann = open_visitor_store(tmp_path, "demo", "v-ann000", write=True)
    assert ann.copy and ann.store.count() == shared.count()
    ann.store.update_label("g2", "positive")
    ann.store.delete(["p1"])
    # Ann sees her edits from now on, reads included; the shared store and another visitor do not.
    again = open_visitor_store(tmp_path, "demo", "v-ann000")
    assert again.copy and again.store.get(["g2"])[0].label == "positive" and again.store.count() == 7
    assert {e.id: (e.label, e.curated) for e in shared.list()} == before
    bob = open_visitor_store(tmp_path, "demo", "v-bob000")
    assert not bob.copy and len(select(bob.store, Filters())) == 8
    assert open_visitor_store(tmp_path, "demo", None).store.count() == 8  # local user: the run's own store


def _hashes(folder: Path) -> dict[str, str]:
    import hashlib

    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_visitors_never_open_the_shared_store_folder(tmp_path):
    owner = seed_run(tmp_path, "demo")
    folder = tmp_path / "runs" / "demo" / "store"
    before = _hashes(folder)
    reader = open_visitor_store(tmp_path, "demo", "v-ann000")
    assert reader.store.location != str(folder.resolve()) and reader.store.count() == 8
    ann = open_visitor_store(tmp_path, "demo", "v-ann000", write=True)
    ann.store.update_label("g2", "positive")
    ann.store.delete(["p1"])
    bob = open_visitor_store(tmp_path, "demo", "v-bob000")
    assert bob.store.count() == 8
    # File copies share the shared store's collection ids: each is still its own index (a deletion in Ann's copy
    # leaves p1 the nearest neighbour of its own text in Bob's, and Ann's vector search no longer finds it).
    assert bob.store.search_text(owner.get(["p1"])[0].text, k=1)[0][0].id == "p1"
    assert "p1" not in [entry.id for entry, _ in ann.store.search_text(owner.get(["p1"])[0].text, k=8)]
    assert _hashes(folder) == before
    # The owner's edit is a new state of the folder: the next reader gets a new copy, with the edit.
    owner.update_label("g2", "positive")
    bob = open_visitor_store(tmp_path, "demo", "v-bob000")
    assert bob.store.location != reader.store.location and bob.store.get(["g2"])[0].label == "positive"


def test_a_hosted_studio_reads_copies_and_the_store_being_written_in_place(tmp_path, monkeypatch):
    seed_run(tmp_path, "demo")
    own = str((tmp_path / "runs" / "demo" / "store").resolve())
    assert open_run_store(tmp_path, "demo").store.location == own  # one's own machine: the run's folder
    serve_from_copies(tmp_path)
    assert open_run_store(tmp_path, "demo").store.location != own
    # A store written during the copy: the copy is dropped and the reader reads the run's own folder.
    stamps = iter(["written", "during the copy"])
    monkeypatch.setattr(store_view, "_files_stamp", lambda folder: next(stamps))
    assert open_run_store(tmp_path, "demo").store.location == own
    assert not (tmp_path / "serving" / "demo" / "written").exists()


@pytest.mark.parametrize("stale_after,old_copy_kept", [(600.0, True), (0.0, False)])
def test_a_new_serving_copy_drops_the_runs_stale_ones(tmp_path, monkeypatch, stale_after, old_copy_kept):
    owner = seed_run(tmp_path, "demo")
    serve_from_copies(tmp_path)
    monkeypatch.setattr(store_view, "STALE_COPY_SECONDS", stale_after)
    first = Path(open_run_store(tmp_path, "demo").store.location)
    owner.update_label("g2", "positive")
    second = Path(open_run_store(tmp_path, "demo").store.location)
    assert second != first and second.is_dir()
    assert first.parent.exists() == old_copy_kept


def test_readme_front_matter_is_a_gradio_space_card():
    import yaml
    from pathlib import Path

    import gradio

    root = Path(__file__).resolve().parents[1]
    text = (root / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    card = yaml.safe_load(text.split("---\n")[1])
    assert card["sdk"] == "gradio" and card["sdk_version"] == gradio.__version__
    assert (root / card["app_file"]).is_file() and len(card["short_description"]) <= 60
    pins = (root / "requirements.txt").read_text(encoding="utf-8")
    assert f"gradio=={gradio.__version__}" in pins
