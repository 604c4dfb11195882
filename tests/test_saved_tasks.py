"""Saved tasks: an upload or a hub dataset saved as a named task, found by every stage, copied into its runs."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from retrikt.tasks import (
    TaskDataError, check_task_name, copy_into_run, list_saved, load_builtin, load_custom, load_saved, resolve_task,
    same_task, save_task, tasks_root,
)

REPO = Path(__file__).resolve().parents[1]
ADJECTIVES = {"good": ["wonderful", "moving", "funny", "sharp", "warm"],
              "bad": ["dull", "clumsy", "tedious", "flat", "shrill"]}


def review_rows(n_per_label: int = 50) -> list[dict]:
    return [{"review": f"a {words[i % 5]} film, take {i}", "stars": label}
            for i in range(n_per_label) for label, words in ADJECTIVES.items()]


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def upload(tmp_path) -> Path:
    return write_csv(tmp_path / "reviews.csv", review_rows())


def as_data(task) -> dict:
    return {"name": task.name, "fields": task.text_fields, "labels": task.labels, "verbalizers": task.verbalizers,
            "headers": task.field_names, "description": task.description, "query": task.query,
            "choices": task.field_choices, "unlabeled": task.unlabeled,
            **{s: [(e.uid, e.fields, e.label) for e in getattr(task, s)] for s in ("train", "dev", "test")}}


def test_save_and_load_round_trip(tmp_path, upload):
    task = load_custom(upload, ["review"], "stars", name="my-reviews")
    folder = save_task(task, tmp_path, origin={"kind": "upload", "file": "reviews.csv"})
    assert folder == tasks_root(tmp_path) / "my-reviews" and list_saved(tmp_path) == ["my-reviews"]
    assert as_data(load_saved(folder)) == as_data(task)
    # A built-in task's definition (COPA has a closed field) survives too, under another name.
    copa = load_builtin("COPA")
    copa.name = "copa-copy"
    assert as_data(load_saved(save_task(copa, tmp_path))) == as_data(copa)


def test_save_refuses_an_existing_name_and_replaces_on_request(tmp_path, upload):
    task = load_custom(upload, ["review"], "stars", name="reviews")
    save_task(task, tmp_path)
    with pytest.raises(TaskDataError, match="exists already"):
        save_task(task, tmp_path)
    task.description = "changed"
    save_task(task, tmp_path, replace=True)
    assert load_saved(tasks_root(tmp_path) / "reviews").description == "changed"
    assert [p.name for p in tasks_root(tmp_path).iterdir()] == ["reviews"]  # no temp folder left


@pytest.mark.parametrize("name", ["../up", "/abs/path", "a/b", "ab", "x" * 65, "two words", "..hidden", "SST-2",
                                  "sst2", "rte", ""])
def test_bad_task_names(name):
    with pytest.raises(TaskDataError):
        check_task_name(name)


@pytest.mark.parametrize("name", ["abc", "my-reviews", "news_v2.1", "A" * 64])
def test_good_task_names(name):
    assert check_task_name(name) == name


@pytest.mark.parametrize("damage,message", [
    (lambda f: (f / "task.json").write_text('{"name": "reviews", "labels"', encoding="utf-8"), "corrupt"),
    (lambda f: (f / "train.jsonl").unlink(), "incomplete"),
    (lambda f: (f / "test.jsonl").write_text('{"uid": "x"}\n', encoding="utf-8"), "corrupt"),
    (lambda f: (f / "dev.jsonl").write_bytes(b"\xff\xfe\x00bad"), "corrupt"),
])
def test_damaged_saved_task_is_a_clear_error(tmp_path, upload, damage, message):
    folder = save_task(load_custom(upload, ["review"], "stars", name="reviews"), tmp_path)
    damage(folder)
    with pytest.raises(TaskDataError, match=message):
        load_saved(folder)


def test_resolve_prefers_the_runs_copy_then_builtin_then_saved(tmp_path, upload):
    assert resolve_task("sst2", 21, tmp_path).train == load_builtin("SST-2", seed=21).train
    with pytest.raises(TaskDataError, match="no uploaded or hub tasks are saved yet"):
        resolve_task("reviews", 13, tmp_path)
    save_task(load_custom(upload, ["review"], "stars", name="reviews"), tmp_path)
    assert resolve_task("reviews", 13, tmp_path).labels == ("bad", "good")
    with pytest.raises(TaskDataError, match="or a saved task: reviews"):
        resolve_task("../reviews", 13, tmp_path)
    task_dir = tmp_path / "runs" / "r1" / "task"
    task_dir.parent.mkdir(parents=True)
    assert copy_into_run("reviews", tmp_path, task_dir) and not copy_into_run("CB", tmp_path, task_dir)
    shutil.rmtree(tasks_root(tmp_path) / "reviews")
    assert resolve_task("reviews", 13, tmp_path, task_dir).labels == ("bad", "good")


def _inputs(examples) -> set:
    return {tuple(sorted(e.fields.items())) for e in examples}


@pytest.mark.parametrize("test_file", [False, True])
def test_another_seed_redraws_the_k_shot_split_and_keeps_the_test_split(tmp_path, test_file):
    rows = review_rows(60)
    kwargs = {"test_source": write_csv(tmp_path / "test.csv", review_rows(80)[-40:])} if test_file else {}
    imported = load_custom(write_csv(tmp_path / "r.csv", rows), ["review"], "stars", name="reviews", k=4, seed=13,
                           **kwargs)
    save_task(imported, tmp_path)
    same = resolve_task("reviews", 13, tmp_path)
    assert as_data(same) == as_data(imported)  # the import's own seed: the split as imported
    other, again = resolve_task("reviews", 21, tmp_path), resolve_task("reviews", 21, tmp_path)
    assert as_data(other) == as_data(again) and other.seed == 21  # deterministic per seed
    assert [(e.uid, e.label) for e in other.test] == [(e.uid, e.label) for e in imported.test]
    assert _inputs(other.train) != _inputs(imported.train)
    for split in (other.train, other.dev):
        assert sorted(e.label for e in split) == ["bad"] * 4 + ["good"] * 4
    unlabeled = {tuple(sorted(f.items())) for f in other.unlabeled}
    parts = [_inputs(other.train), _inputs(other.dev), _inputs(other.test), unlabeled]
    assert sum(map(len, parts)) == len(set().union(*parts))  # no input in two splits
    assert len(other.unlabeled) == len(imported.unlabeled)
    # every labelled row of the import is in exactly one of train, dev and the pool, whatever the seed
    assert _inputs(other.train + other.dev + other.pool) == _inputs(imported.train + imported.dev + imported.pool)


def test_a_run_copies_the_split_of_its_seed(tmp_path, upload):
    save_task(load_custom(upload, ["review"], "stars", name="reviews", k=4, seed=13), tmp_path)
    copied = {}
    for seed in (13, 21):
        task_dir = tmp_path / "runs" / f"s{seed}" / "task"
        assert copy_into_run("reviews", tmp_path, task_dir, seed)
        assert not (task_dir / "pool.jsonl").stat().st_size  # a run's copy is never re-drawn
        copied[seed] = resolve_task("reviews", 99, tmp_path, task_dir)  # the run's own copy, whatever is asked
        assert as_data(copied[seed]) == as_data(resolve_task("reviews", seed, tmp_path))
    assert _inputs(copied[13].train) != _inputs(copied[21].train)


def test_a_task_saved_without_a_pool_keeps_its_split_for_every_seed(tmp_path, upload):
    folder = save_task(load_custom(upload, ["review"], "stars", name="reviews", k=4, seed=13), tmp_path)
    (folder / "pool.jsonl").unlink()  # as saved before pools were kept
    assert as_data(resolve_task("reviews", 21, tmp_path)) == as_data(resolve_task("reviews", 13, tmp_path))


@pytest.mark.parametrize("a,b,same", [("SST-2", "sst2", True), ("CB", "RTE", False), ("reviews", "reviews", True),
                                      ("reviews", "Reviews", False), ("reviews", "SST-2", False)])
def test_same_task(a, b, same):
    assert same_task(a, b) is same


def _cli(args, **kw):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "retrikt", *args], capture_output=True, text=True, timeout=900,
                          cwd=REPO, env=env, **kw)


def test_cli_import_errors_are_one_clear_line(tmp_path, upload):
    proc = _cli(["task", "import", str(upload), "--name", "reviews", "--text", "nope", "--label", "stars",
                 "--workspace", str(tmp_path)])
    assert proc.returncode == 2 and "nope" in proc.stderr and "Traceback" not in proc.stderr
    assert list_saved(tmp_path) == []
    proc = _cli(["task", "import", str(upload), "--name", "../x", "--text", "review", "--label", "stars",
                 "--workspace", str(tmp_path)])
    assert proc.returncode == 2 and "task name" in proc.stderr and not (tmp_path / "x").exists()


@pytest.mark.slow
def test_uploaded_task_runs_step_1_and_its_run_keeps_the_task(workspace, teacher, tmp_path, upload):
    """The whole path a user takes: import a file as a task, run step 1 on it by name, browse its store."""
    name = f"reviews-{uuid.uuid4().hex[:6]}"
    proc = _cli(["task", "import", str(upload), "--name", name, "--text", "review", "--label", "stars",
                 "--workspace", workspace])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 labels" in proc.stdout and "train 32" in proc.stdout
    assert json.loads(_cli(["task", "list", "--workspace", workspace]).stdout)["saved"].count(name) == 1
    run_name = f"run-{name}"
    proc = _cli(["generate", "--task", name, "--workspace", workspace, "--run-name", run_name,
                 "--set", "prompt_tuning.steps=2", "--set", "prompt_tuning.batch_size=2",
                 "--set", "generation.samples_per_label=4", "--set", "generation.batch_size=4",
                 "--set", "generation.max_new_tokens=24",
                 "--set", "scorer.demo_candidates=1", "--set", "scorer.calibration_inputs=8"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    from retrikt.runs import open_run
    from retrikt.studio.store_view import open_run_store

    run = open_run(workspace, run_name)
    assert run.summary()["status"] == "done" and (run.path / "task" / "task.json").is_file()
    # The run stays readable after its saved task is deleted: it holds its own copy.
    shutil.rmtree(tasks_root(workspace) / name)
    opened = open_run_store(workspace, run_name)
    assert opened.task.name == name and opened.task.labels == ("bad", "good")
    assert opened.store.count({"source": "train"}) == 32
    assert {e.label for e in opened.store.list(source="train")} == {"bad", "good"}


def test_cli_hub_task_from_a_local_dataset_folder(tmp_path):
    code = f"""
import datasets
label = datasets.ClassLabel(names=["neg", "pos"])
features = datasets.Features({{"sentence": datasets.Value("string"), "label": label}})
def part(n, offset):
    return datasets.Dataset.from_dict({{"sentence": [f"text {{i}}" for i in range(offset, offset + n)],
                                       "label": [i % 2 for i in range(n)]}}, features=features)
part(100, 0).to_parquet({str(tmp_path / "ds" / "train.parquet")!r})
part(40, 1000).to_parquet({str(tmp_path / "ds" / "validation.parquet")!r})
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    made = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    assert made.returncode == 0, made.stderr[-2000:]
    proc = subprocess.run([sys.executable, "-m", "retrikt", "task", "hub", str(tmp_path / "ds"), "--name", "hub-sent",
                           "--text", "sentence", "--label", "label", "--workspace", str(tmp_path / "ws")],
                          capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    task = load_saved(tasks_root(tmp_path / "ws") / "hub-sent")
    assert task.labels == ("neg", "pos") and len(task.train) == 32 and len(task.test) == 40
    origin = json.loads((tasks_root(tmp_path / "ws") / "hub-sent" / "task.json").read_text())["origin"]
    assert origin["kind"] == "hub" and origin["label_column"] == "label"


def test_a_second_file_is_the_test_split_and_the_first_file_keeps_the_rest(tmp_path, upload):
    held_out = write_csv(tmp_path / "test.csv", [{"review": f"a held-out {w} film", "stars": label}
                                                 for label, words in ADJECTIVES.items() for w in words])
    task = load_custom(upload, ["review"], "stars", name="with-test", test_source=held_out)
    assert sorted(e.fields["review"] for e in task.test) == sorted(f"a held-out {w} film" for ws in ADJECTIVES.values()
                                                                   for w in ws)
    # 100 rows: 32 train + 32 dev, the other 36 are all unlabeled (none is cut off for test)
    assert (len(task.train), len(task.dev), len(task.unlabeled)) == (32, 32, 36)
    assert not {e.fields["review"] for e in task.train + task.dev} & {u["review"] for u in task.unlabeled}
    # A test row repeating a k-shot input is dropped, not evaluated on.
    repeat = write_csv(tmp_path / "repeat.csv", [{"review": task.train[0].fields["review"], "stars": "good"},
                                                 {"review": "a new film", "stars": "bad"}])
    again = load_custom(upload, ["review"], "stars", name="with-test", test_source=repeat)
    assert [e.fields["review"] for e in again.test] == ["a new film"]


@pytest.mark.parametrize("rows,message", [
    ([{"text": "a film", "stars": "good"}], "test.csv: no column 'review'"),
    ([{"review": "a film", "stars": "meh"}], "label 'meh' has 0 rows"),  # a label the train file never has
])
def test_a_bad_test_file_is_a_clear_message(tmp_path, upload, rows, message):
    with pytest.raises(TaskDataError, match=message):
        load_custom(upload, ["review"], "stars", name="bad-test", test_source=write_csv(tmp_path / "test.csv", rows))


def test_cli_import_takes_a_test_file(tmp_path, upload):
    held_out = write_csv(tmp_path / "test.csv", [{"review": "a held-out film", "stars": "good"},
                                                 {"review": "another held-out film", "stars": "bad"}])
    proc = _cli(["task", "import", str(upload), "--test", str(held_out), "--name", "reviews", "--text", "review",
                 "--label", "stars", "--workspace", str(tmp_path)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "test 2," in proc.stdout and f"run --task reviews --workspace {tmp_path}" in proc.stdout
    assert "at most 1,000 of its rows" in proc.stdout
    saved = load_saved(tasks_root(tmp_path) / "reviews")
    assert sorted(e.fields["review"] for e in saved.test) == ["a held-out film", "another held-out film"]


def test_cli_import_takes_k_and_the_label_order(tmp_path, upload):
    proc = _cli(["task", "import", str(upload), "--name", "reviews", "--text", "review", "--label", "stars",
                 "--k", "4", "--labels", "good", "bad", "--workspace", str(tmp_path)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "train 8, dev 8" in proc.stdout and "draws seed N's 4 train and 4 dev examples per label" in proc.stdout
    saved = load_saved(tasks_root(tmp_path) / "reviews")
    assert saved.seed == 13 and saved.labels == ("good", "bad")  # the order given, not sorted
