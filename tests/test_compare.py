"""The Compare tab's logic and the shipped demo run (installed into a workspace, then read like any run)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from retrikt.studio.compare import (
    LiveStudent, eval_summary, evaluated_runs, example_choices, find_record, headline, outcome,
    outcome_counts, records, systems_table, view_record, weak_teacher_warning,
)
from retrikt.studio.demo import DEMO_ASSET, DEMO_RUN, install_demo
from retrikt.runs import RunError
from retrikt.runs import runs_newest_first
from test_store_view import seed_run


def _record(gold, alone, mixed):
    probs = {"negative": 0.5, "positive": 0.5}
    return {"uid": f"{gold}-{alone}-{mixed}", "text": "Review: x", "gold": gold,
            "student": {"pred": alone, "probs": probs}, "student_retrieval": {"pred": mixed, "probs": probs},
            "neighbours": []}


@pytest.mark.parametrize("gold,alone,mixed,expected", [
    ("positive", "negative", "positive", "retrieval fixed it"),
    ("positive", "positive", "negative", "retrieval broke it"),
    ("positive", "negative", "negative", "both wrong"),
    ("negative", "negative", "negative", "both right"),
])
def test_outcome_of_a_record(gold, alone, mixed, expected):
    assert outcome(_record(gold, alone, mixed)) == expected


def test_choices_follow_the_outcome_filter():
    recs = [_record("positive", "negative", "positive"), _record("positive", "positive", "negative"),
            _record("negative", "negative", "negative")]
    assert [uid for _, uid in example_choices(recs, "retrieval fixed it")] == ["positive-negative-positive"]
    assert len(example_choices(recs)) == 3 and example_choices(recs, "both wrong") == []
    assert outcome_counts(recs) == {"all": 3, "retrieval fixed it": 1, "retrieval broke it": 1, "both wrong": 0,
                                    "both right": 1}
    with pytest.raises(RunError, match="unknown filter"):
        example_choices(recs, "sometimes")
    with pytest.raises(RunError, match="not in this run"):
        find_record(recs, "nope")


@pytest.fixture(scope="module")
def demo_workspace(tmp_path_factory):
    workspace = tmp_path_factory.mktemp("demo")
    seed_run(workspace, "mine")  # a run of the user's own, not evaluated
    assert install_demo(workspace) == workspace / "runs" / DEMO_RUN
    return workspace


@pytest.mark.slow
def test_demo_installs_once_and_lists_after_the_users_runs(demo_workspace):
    marker = demo_workspace / "runs" / DEMO_RUN / "summary.json"
    before = marker.stat().st_mtime_ns
    install_demo(demo_workspace)
    assert marker.stat().st_mtime_ns == before  # already installed: nothing rewritten
    assert runs_newest_first(demo_workspace) == ["mine", DEMO_RUN]
    assert evaluated_runs(demo_workspace) == [DEMO_RUN]  # "mine" has no evaluation
    config = (demo_workspace / "runs" / DEMO_RUN / "config.yaml").read_text(encoding="utf-8")
    assert f"workspace: {demo_workspace}" in config
    assert (demo_workspace / "runs" / DEMO_RUN / "adapter" / "adapter_model.safetensors").is_file()  # PPO can start


def test_demo_summary_table_and_headline(demo_workspace):
    summary = eval_summary(demo_workspace, DEMO_RUN)
    headers, rows = systems_table(summary)
    assert [r[0] for r in rows] == ["majority class", "teacher (few-shot, calibrated)", "student alone",
                                    "student + retrieval", "plain KD (no retrieval)", "student, gold only (no teacher)"]
    student_row = rows[2]
    assert float(student_row[headers.index("size vs teacher")].rstrip("%")) <= 1.0
    assert float(student_row[headers.index("speed-up vs teacher")].rstrip("x")) > 50
    assert "% of the teacher's" in headline(summary) and summary["task"] == "SST-2"
    recs = records(demo_workspace, DEMO_RUN)
    assert len(recs) == summary["test_examples"] == 872
    accuracy = np.mean([r["student_retrieval"]["pred"] == r["gold"] for r in recs])
    assert accuracy == pytest.approx(summary["systems"]["student_retrieval"]["accuracy"], abs=1e-3)
    view = view_record(recs[0])
    assert len(view.neighbours) == summary["systems"]["student_retrieval"]["k"] and view.gold in view.verdict


def test_live_student_reproduces_the_recorded_predictions(demo_workspace):
    live = LiveStudent(demo_workspace, DEMO_RUN)
    recs = records(demo_workspace, DEMO_RUN)
    cfg = live.run.config.student
    sample = [recs[i] for i in range(0, len(recs), 97)]
    by_uid = {e.uid: e.fields for e in live.task.test}
    items = [by_uid[r["uid"]] for r in sample]
    alone, mixed = live.trained.predict(items, retrieval=False), live.trained.predict(items)
    for row, record in enumerate(sample):
        labels = list(record["student"]["probs"])
        assert live.trained.serialize(items[row]) == record["text"]
        np.testing.assert_allclose([alone.probs[row][l] for l in labels],
                                   [record["student"]["probs"][l] for l in labels], atol=2e-4)
        np.testing.assert_allclose([mixed.probs[row][l] for l in labels],
                                   [record["student_retrieval"]["probs"][l] for l in labels], atol=2e-4)
        assert mixed.labels[row] == record["student_retrieval"]["pred"]
        assert [n["id"] for n in mixed.neighbours[row]] == [n["id"] for n in record["neighbours"]]
        assert alone.neighbours[row] == []
    view = live.view(["a gorgeous , witty , seductive movie ."])
    assert view.gold is None and len(view.neighbours) == cfg.k and abs(sum(view.mixed.values()) - 1) < 1e-6
    with pytest.raises(RunError, match="Type the sentence"):
        live.view(["   ", ""])


@pytest.mark.parametrize("name", [None, "", "../runs", "/etc", "mine", "absent"])
def test_unevaluated_or_foreign_runs_are_refused(demo_workspace, name):
    with pytest.raises(RunError):
        eval_summary(demo_workspace, name)


@pytest.mark.slow
def test_a_half_installed_demo_is_rebuilt(tmp_path):
    asset = tmp_path / "asset"
    shutil.copytree(DEMO_ASSET, asset)
    broken = tmp_path / "ws" / "runs" / DEMO_RUN
    broken.mkdir(parents=True)
    (broken / "config.yaml").write_text("task: SST-2\n", encoding="utf-8")  # the server died mid-install
    install_demo(tmp_path / "ws", asset)
    summary = json.loads((broken / "summary.json").read_text(encoding="utf-8"))
    assert summary["student"]["items"]["indexed"] == len((asset / "keys.jsonl").read_text().splitlines())
    assert evaluated_runs(tmp_path / "ws") == [DEMO_RUN]
    assert install_demo(tmp_path / "nothing", tmp_path / "no-asset") is None


@pytest.mark.parametrize("typed,found", [("sst2-dev-12", "sst2-dev-12"), ("12", "sst2-dev-12"),
                                         (" 7 ", "sst2-dev-7"), ("sst2-dev-7 · gold positive · text", "sst2-dev-7"),
                                         ("1", None), ("99", None), ("", None)])
def test_an_example_is_found_by_its_id_or_the_ids_last_part(typed, found):
    recs = [{"uid": uid} for uid in ("sst2-dev-7", "sst2-dev-12", "sst2-dev-1", "mnli-dev-1")]
    if found is None:
        with pytest.raises(RunError, match="not in this run's evaluation"):
            find_record(recs, typed)
    else:
        assert find_record(recs, typed)["uid"] == found


@pytest.mark.slow
def test_a_packed_demo_carries_its_runs_log_to_the_installed_run(tmp_path):
    from retrikt.runs import open_run
    from retrikt.studio.demo import pack_demo

    install_demo(tmp_path / "source", DEMO_ASSET)
    open_run(tmp_path / "source", DEMO_RUN).log("ppo_update", update=1, reward=0.5)
    packed = pack_demo(open_run(tmp_path / "source", DEMO_RUN), tmp_path / "asset")
    assert packed["keys"] == len((DEMO_ASSET / "keys.jsonl").read_text().splitlines())
    install_demo(tmp_path / "ws", tmp_path / "asset")
    installed = (tmp_path / "ws" / "runs" / DEMO_RUN / "log.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(installed[-1])["event"] == "ppo_update"
    for name in ("config.yaml", "adapter/adapter_config.json"):  # no machine path in the asset
        assert str(tmp_path) not in (tmp_path / "asset" / name).read_text(encoding="utf-8"), name


@pytest.mark.parametrize("teacher,majority,warned", [(0.80, 0.51, False), (0.50, 0.50, True), (0.30, 0.50, True),
                                                     (None, 0.50, False)])
def test_a_teacher_at_or_below_the_majority_class_is_called_out(teacher, majority, warned):
    systems = {"majority": {"accuracy": majority}, "student": {"accuracy": 0.6}, "student_retrieval": {"accuracy": 0.6}}
    if teacher is not None:
        systems["teacher"] = {"accuracy": teacher}
    summary = {"task": "CB", "test_examples": 56, "systems": systems}
    warning = weak_teacher_warning(summary)
    assert bool(warning) is warned
    assert (warning in headline(summary)) if warned else "majority class here" not in headline(summary)
    if warned:
        assert f"{100 * teacher:.1f}% vs {100 * majority:.1f}%" in warning


@pytest.mark.parametrize("mixed,gold,said", [(0.72, 0.61, "+11.0 points"), (0.60, 0.64, "-4.0 points"),
                                             (0.70, None, None)])
def test_what_the_teacher_adds_is_measured_against_the_gold_only_student(mixed, gold, said):
    from retrikt.studio.compare import teacher_contribution

    systems = {"majority": {"accuracy": 0.5}, "student": {"accuracy": 0.6}, "student_retrieval": {"accuracy": mixed}}
    if gold is not None:
        systems["student_gold"] = {"accuracy": gold, "examples_per_s": 900.0}
    summary = {"task": "SST-2", "test_examples": 872, "systems": systems}
    sentence = teacher_contribution(summary)
    assert (said in sentence and sentence in headline(summary)) if said else sentence == ""
    names = [row[0] for row in systems_table(summary)[1]]
    assert ("student, gold only (no teacher)" in names) is (gold is not None)


@pytest.mark.parametrize("block_beta,said", [
    (0.0, "Beta 0.0: retrieval off: on the 96 dev examples the teacher is no better than the student alone (40 right"),
    (0.5, None),  # the run was retrained since this evaluation: its block no longer explains the shown beta
])
def test_the_headline_says_why_beta_is_what_it_is(block_beta, said):
    systems = {"student": {"accuracy": 0.56}, "student_retrieval": {"accuracy": 0.56, "beta": 0.0, "k": 8}}
    summary = {"task": "TREC", "test_examples": 499, "systems": systems}
    block = {"beta": block_beta, "beta_heldout": 256, "beta_teacher_agreement": {"0.0": 0.8},
             "teacher_trust": {"trusted": True}, "teacher_vs_student": {"dev_examples": 96, "teacher_right": 40,
                                                                         "student_right": 47, "teacher_wins": False}}
    sentence = headline(summary, block)
    assert (said in sentence) if said else "Beta 0.0:" not in sentence
