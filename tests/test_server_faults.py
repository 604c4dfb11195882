"""Faults on the Chroma server back-end: the server is killed (SIGKILL) during step 1's writes and during a student
evaluation. Each time the job fails with one line naming the server's URL, no write is half done, and after the
server restarts (same data, same URL) the same work completes."""
from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
import yaml

from retrikt.config import RunConfig, override
from retrikt.context import Context, open_store
from retrikt.generate.stage import generate_job
from retrikt.jobs import JobManager
from retrikt.runs import open_run
from retrikt.student.stage import evaluate_run
from retrikt.studio.demo import DEMO_ASSET, DEMO_RUN, install_demo
from retrikt.tasks import load_builtin, task_of_run

from test_faults import QUICK
from test_store import run_chroma_server

pytestmark = pytest.mark.server


def _killing(fn, server, when):
    """`fn` (a job function) whose progress reports kill the server (SIGKILL) the first time `when(stage, done)`."""
    def wrapped(progress, should_stop, job):
        def spy(stage, done, total, info):
            if server.poll() is None and when(stage, done):
                server.kill()
                server.wait()
            progress(stage, done, total, info)

        return fn(spy, should_stop, job)

    return wrapped


def _ended(jobs: JobManager, job_id: str):
    job = jobs.wait_ended(job_id, timeout=1800)
    assert job is not None, "the job did not end within 30 minutes"
    return job


def _store(workspace, name):
    run = open_run(workspace, name)
    return run, open_store(Context(run, load_builtin(run.config.task, seed=run.config.seed), None))


def test_server_killed_between_step1_writes(workspace, teacher, tmp_path):
    jobs = JobManager(tmp_path / "jobs")
    with run_chroma_server(tmp_path) as (url, server):
        port = int(url.rsplit(":", 1)[1])
        name = f"server-kill-{uuid.uuid4().hex[:6]}"
        config = override(RunConfig(workspace=workspace, run_name=name), {**QUICK, "store.url": url})
        # The train split is written after the teacher's scoring; the generated samples are written at "store".
        job = jobs.submit("generate", "step 1 on a server", _killing(generate_job(config), server,
                                                                    lambda stage, done: stage == "store"))
        job = _ended(jobs, job.id)
    assert job.state == "failed"
    assert url in job.error and "\n" not in job.error and "Lost the connection to the Chroma server" in job.error
    assert open_run(workspace, name).summary()["status"] == "failed"

    with run_chroma_server(tmp_path, port) as (again, _):
        assert again == url
        run, store = _store(workspace, name)
        # The train split's batch is whole, the generated batch is absent, and every stored entry is complete.
        assert store.count({"source": "train"}) == len(load_builtin("SST-2", seed=13).train)
        assert store.count({"source": "generated:step1"}) == 0
        assert all(e.soft_labels and e.agreement is not None for e in store.list())
        rerun = override(RunConfig(workspace=workspace, run_name=f"{name}-again"), {**QUICK, "store.url": url})
        job = _ended(jobs, jobs.submit("generate", "step 1 again", generate_job(rerun)).id)
        assert job.state == "done", job.error
        assert _store(workspace, rerun.run_name)[1].count({"source": "generated:step1"}) > 0


def _demo_on_server(url: str, tmp_path: Path) -> Path:
    """The shipped demo run installed into a fresh workspace with its store and key index on the server at `url`."""
    asset = tmp_path / "asset"
    shutil.copytree(DEMO_ASSET, asset)
    config = yaml.safe_load((asset / "config.yaml").read_text(encoding="utf-8"))
    config["store"]["url"] = url
    (asset / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    run_dir = install_demo(tmp_path / "ws", asset)
    # The asset ships no plain-KD student; an evaluation needs one, and its accuracy is not what this test is about:
    # the run's own student stands in for it.
    run = open_run(tmp_path / "ws", DEMO_RUN)
    shutil.copytree(run.student_dir, run.kd_student_dir)
    return run_dir


def test_server_killed_during_a_student_evaluation(workspace, teacher, tmp_path):
    jobs = JobManager(tmp_path / "jobs")
    with run_chroma_server(tmp_path) as (url, server):
        port = int(url.rsplit(":", 1)[1])
        run_dir = _demo_on_server(url, tmp_path)
        run = open_run(run_dir.parent.parent, DEMO_RUN)
        task = task_of_run(run)
        store = open_store(Context(run, task, None))
        before = store.count()

        def evaluation(progress, should_stop, job):
            evaluate_run(run, task, store, teacher, progress, limit=40)
            return run.name

        # "eval" 0 is reported just before student + retrieval query the key index.
        job = jobs.submit("student", "evaluation on a server",
                          _killing(evaluation, server, lambda stage, done: stage == "eval"))
        job = _ended(jobs, job.id)
    assert job.state == "failed"
    assert url in job.error and "\n" not in job.error and "Lost the connection to the Chroma server" in job.error

    with run_chroma_server(tmp_path, port):
        assert store.count() == before  # an evaluation writes nothing to the store
        job = _ended(jobs, jobs.submit("student", "evaluation again", lambda p, s, j: evaluation(p, s, j)).id)
        assert job.state == "done", job.error
        summary = run.summary()["eval"]
        assert summary["student_retrieval"]["accuracy"] > 0.5


KILL_AT = (0.5, 0.25, 0.75, 0.1, 0.9, 0.05)
"""When the server is killed, as a fraction of the time an unkilled server took from receiving the whole batch to
answering; tried in turn until a kill lands between the two."""


def test_a_batch_killed_in_flight_is_stored_whole_or_not_at_all(tmp_path, monkeypatch):
    """The server is killed (SIGKILL) after it has received a 5,000-entry batch (one request) and before it answered:
    after a restart the batch is all there or absent, never in part. A kill that lands before the batch is sent in
    full or after the answer proves nothing, so the kill moment is moved until one lands in between, or the test
    fails."""
    import threading
    import time

    import httpx
    import numpy as np

    from retrikt.store.knowledge_store import Entry, KnowledgeStore, StoreError

    rng = np.random.default_rng(0)
    n = 5000
    vectors = rng.normal(size=(n, 384)).astype(np.float32)
    labels = ["negative", "positive"]
    uploaded, answered = threading.Event(), threading.Event()
    send = httpx.Client.send

    class Announcing(httpx.SyncByteStream):
        """The request body, which says when its last byte has been handed to the socket."""

        def __init__(self, inner):
            self.inner = inner

        def __iter__(self):
            yield from self.inner
            uploaded.set()

    def spying_send(self, request, *args, **kwargs):
        if request.method == "POST" and request.url.path.endswith("/add"):
            request.stream = Announcing(request.stream)
            response = send(self, request, *args, **kwargs)
            answered.set()
            return response
        return send(self, request, *args, **kwargs)

    def entries(tag):
        return [Entry(fields={"sentence": f"text {i}"}, label="positive", source="unlabeled", text=f"text {i}",
                      id=f"{tag}-{i}") for i in range(n)]

    monkeypatch.setattr(httpx.Client, "send", spying_send)
    port, landed, tried, previous = None, False, [], None
    for attempt, fraction in enumerate(KILL_AT):
        with run_chroma_server(tmp_path, port) as (url, server):
            port = int(url.rsplit(":", 1)[1])
            if previous:  # the batch of the attempt before, with the server up again
                stored = KnowledgeStore(url=url, collection=previous, task_labels=labels).count()
                assert stored in (0, n), f"{stored} of {n} entries of one batch were stored"
                if landed:
                    break
            if attempt == 0:
                # The baseline: how long this server takes, unkilled, from the whole batch to its answer.
                store = KnowledgeStore(url=url, collection="baseline", task_labels=labels)
                assert store._batch >= n  # one request
                uploaded.clear()
                answered.clear()
                writer = threading.Thread(target=store.add, args=(entries("baseline"), vectors))
                writer.start()
                assert uploaded.wait(timeout=120), "the add request was never sent in full"
                sent_at = time.monotonic()
                assert answered.wait(timeout=120), "the server never answered the add request"
                processing = time.monotonic() - sent_at
                writer.join(timeout=120)
                assert store.count() == n
            previous = f"in-flight-{attempt}"
            store = KnowledgeStore(url=url, collection=previous, task_labels=labels)
            uploaded.clear()
            answered.clear()
            failure: list[BaseException] = []

            def write():
                try:
                    store.add(entries(previous), vectors)
                except BaseException as exc:  # noqa: BLE001 - checked below, in the test's thread
                    failure.append(exc)

            writer = threading.Thread(target=write)
            writer.start()
            assert uploaded.wait(timeout=120), "the add request was never sent in full"
            time.sleep(fraction * processing)
            # Read before the kill: an answer that slips in after this read still leaves the writer successful, which
            # the check below also requires to be absent.
            before_answer = not answered.is_set()
            server.kill()
            server.wait()
            writer.join(timeout=120)
            assert not writer.is_alive(), "the writer still waits on a killed server"
            if failure:
                assert isinstance(failure[0], StoreError), repr(failure[0])
                assert url in str(failure[0]) and "\n" not in str(failure[0])
            landed = before_answer and bool(failure)
            tried.append(f"{fraction:.2f} x {processing:.3f} s: "
                         f"{'mid-write' if landed else 'after the answer' if not failure else 'answer lost'}")
    else:
        with run_chroma_server(tmp_path, port) as (url, _):
            stored = KnowledgeStore(url=url, collection=previous, task_labels=labels).count()
        assert stored in (0, n), f"{stored} of {n} entries of one batch were stored"
    assert landed, f"no kill landed between the whole batch and the server's answer ({'; '.join(tried)})"
