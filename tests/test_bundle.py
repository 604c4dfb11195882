"""An exported student bundle predicts in a fresh process with no teacher, workspace or studio, scores the run's own
test accuracy, and refuses a missing or changed file."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from retrikt.errors import StudentError
from retrikt.runs import open_run
from retrikt.student.bundle import MANIFEST, export_bundle, load_bundle, push_bundle
from retrikt.studio.demo import DEMO_ASSET, DEMO_RUN, install_demo

pytestmark = pytest.mark.slow  # `make test-fast` skips it: each test here costs seconds of real model work

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    workspace = tmp_path_factory.mktemp("bundle-ws")
    install_demo(workspace, DEMO_ASSET)
    out = tmp_path_factory.mktemp("bundle") / "sst2-student"
    report = export_bundle(open_run(workspace, DEMO_RUN), out)
    return out, report, open_run(workspace, DEMO_RUN)


def test_export_writes_the_documented_files_and_a_zip(bundle):
    out, report, _ = bundle
    manifest = json.loads((out / MANIFEST).read_text())
    for name in ("student/model.pt", "student/student.json", "index.jsonl", "store.jsonl", "task/task.json",
                 "metrics.json", "README.md"):
        assert name in manifest["files"], name
    assert any(name.startswith("student/tokenizer/") for name in manifest["files"])
    assert report["entries"] > 100 and Path(report["zip"]).is_file()
    with zipfile.ZipFile(report["zip"]) as archive:
        assert MANIFEST in archive.namelist()
    card = (out / "README.md").read_text()
    assert "SST-2" in card and "student_retrieval" in card and "% of the teacher's" in card


def test_the_installed_library_reproduces_the_runs_accuracy_from_outside_the_repo(bundle, tmp_path):
    """The bundle's promise to a user of the installed package: no checkout on the path, no teacher, no workspace."""
    out, _, run = bundle
    assert ROOT not in tmp_path.resolve().parents
    code = f"""
import importlib.metadata, json, os, sys
import retrikt
student = retrikt.load_bundle({str(out)!r})
test = student.task.test
found = student.predict([e.fields for e in test], retrieval=True)
alone = student.predict([e.fields for e in test], retrieval=False)
print(json.dumps({{"mixed": sum(p == e.label for p, e in zip(found.labels, test)) / len(test),
                  "alone": sum(p == e.label for p, e in zip(alone.labels, test)) / len(test),
                  "neighbours": len(found.neighbours[0]), "text": found.neighbours[0][0]["text"],
                  "version": importlib.metadata.version("retrikt"),
                  "path": [os.path.abspath(p or os.curdir) for p in sys.path]}}))
"""
    # The repo must be found as an installed distribution, so neither PYTHONPATH nor the cwd may name it.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_HUB_OFFLINE"] = "1"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    if "No module named 'retrikt'" in done.stderr:
        pytest.fail("retrikt is not installed in this environment: `make install` installs it (pip install -e .)")
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert str(ROOT) not in result["path"] and result["version"]
    systems = json.loads(run.eval_summary_path.read_text())["systems"]
    # the run's summary keeps 4 decimals: equal there means the same number of test examples right
    assert round(result["mixed"], 4) == systems["student_retrieval"]["accuracy"]
    assert round(result["alone"], 4) == systems["student"]["accuracy"]
    assert result["neighbours"] == systems["student_retrieval"]["k"] and result["text"]
    assert not (tmp_path / "workspace").exists()


@pytest.mark.parametrize("damage", ["delete", "tamper"])
def test_a_missing_or_changed_file_is_refused(bundle, tmp_path, damage):
    import shutil

    out, _, _ = bundle
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    target = copy / "index.jsonl"
    if damage == "delete":
        target.unlink()
    else:
        target.write_text(target.read_text().replace('"positive"', '"negative"', 1))
    with pytest.raises(StudentError, match="index.jsonl (is missing|was changed)"):
        load_bundle(copy)


def test_a_folder_that_is_no_bundle_is_refused(tmp_path):
    with pytest.raises(StudentError, match="not a student bundle"):
        load_bundle(tmp_path)


def test_push_needs_a_token_and_reports_the_hub_failure_in_one_line(bundle, monkeypatch):
    """Pushing is tested up to the network: without a token it refuses; with one, offline, the upload's failure
    becomes one StudentError line (the real upload needs the Hub, which these machines cannot reach)."""
    out, _, _ = bundle
    with pytest.raises(StudentError, match="needs a Hugging Face token"):
        push_bundle(out, "someone/retrikt-sst2", None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(StudentError, match="could not push to the Hub repo someone/retrikt-sst2"):
        push_bundle(out, "someone/retrikt-sst2", "hf_fake_token")


def test_export_command_writes_the_bundle(bundle, tmp_path):
    _, _, run = bundle
    from retrikt.cli.main import main

    assert main(["export", "--from", str(run.path), "--out", str(tmp_path / "b"), "--workspace",
                 str(run.path.parents[1])]) == 0
    assert (tmp_path / "b" / MANIFEST).is_file() and (tmp_path / "b.zip").is_file()
    assert main(["export", "--from", "no-such-run", "--out", str(tmp_path / "c"), "--workspace",
                 str(run.path.parents[1])]) == 2
