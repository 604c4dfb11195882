"""Every number the studio's text quotes from a benchmark is read from bench/results/ at the time the page is built:
the checks below take each number out of the text and find it in the results file, so a number typed by hand (or
left behind when the bench is rerun) fails them."""
from __future__ import annotations

import json
import re

import pytest

from retrikt.estimate import Estimate
from retrikt.studio import measured
from retrikt.studio.measured import RESULTS

NUMBER = re.compile(r"\d+(?:\.\d+)?")


def _results(name):
    return json.loads((RESULTS / name).read_text(encoding="utf-8"))


def _quick_run_numbers() -> set[str]:
    """Each number the quick run's results justify, written as the studio writes it."""
    data = _results("quick_run.json")
    runs = [r for r in data["runs"] if r.get("full_test")]
    numbers = {f"{r['seconds'] / 60:.1f}" for r in runs}
    numbers |= {f"{100 * r['full_test']['student_retrieval']:.1f}" for r in runs}
    numbers |= {str(r["seed"]) for r in runs} | {str(r["stored"]) for r in runs}
    numbers |= {str(r.get("beta")) for r in runs} | {str(len(runs)), str(sum(bool(r.get("beta")) for r in runs))}
    for task in {r["task"] for r in runs}:
        numbers |= set(NUMBER.findall(task))  # a task's own name may hold digits (SST-2)
        numbers.add(str(_results("generation.json").get(task, {}).get("summary", {}).get("generate", {}).get("stored")))
    if isinstance(data.get("cpus"), int):
        numbers.add(str(data["cpus"]))
    return numbers


def _quoted(text: str) -> list[str]:
    # "step 1" and "step 2" name the pipeline's steps, not a measurement
    return NUMBER.findall(re.sub(r"\bstep \d\b", "", text))


def test_the_classroom_quick_run_text_quotes_only_the_bench_numbers():
    from pages.classroom import quick_run_text

    text = quick_run_text()
    allowed = _quick_run_numbers()
    assert _quoted(text) and set(_quoted(text)) <= allowed, (set(_quoted(text)) - allowed, text)
    runs = _results("quick_run.json")["runs"]
    assert all(f"{100 * r['full_test']['student_retrieval']:.1f}%" in text for r in runs)
    minutes = sorted(r["seconds"] / 60 for r in runs)
    assert f"{minutes[0]:.1f}–{minutes[-1]:.1f} minutes" in text
    on = sum(bool(r.get("beta")) for r in runs)  # whether the run will end with retrieval on is said before it starts
    assert ("on at the end of every measured run" in text) == (on == len(runs))
    assert on == len(runs) or f"on at the end of {on} of the {len(runs)} measured runs" in text


def test_with_no_run_to_estimate_from_setup_quotes_the_quick_runs_measured_minutes():
    from retrikt.studio.timing import describe

    text = describe(Estimate({"load": None}))
    assert "nothing to estimate from" in text
    assert _quoted(text) and set(_quoted(text)) <= _quick_run_numbers(), text


def test_the_student_init_choice_quotes_the_bench_table():
    import json
    import statistics

    from pages.student import INITS

    data = json.loads((RESULTS / "student_init.json").read_text(encoding="utf-8"))
    runs: dict = {}
    for row in data.get("rows", {}).values():
        runs.setdefault((row["task"], row["seed"]), {})[row["initialisation"]] = row
    pairs = [(r["MiniLM embeddings + sentence distillation"], r["random"]) for r in runs.values()
             if "random" in r and "MiniLM embeddings + sentence distillation" in r]
    if not pairs:  # the file's first version: one run
        old = {v["initialisation"]: v for v in data["variants"]}
        pairs = [(old["MiniLM embeddings + sentence distillation"], old["random"])]
    points = 100 * statistics.mean(m["student_retrieval"] - r["student_retrieval"] for m, r in pairs)
    ratio = statistics.mean(m["seconds"] / r["seconds"] for m, r in pairs)
    label = dict((value, label) for label, value in INITS)["minilm"]
    assert f"{points:+.1f} points" in label and f"{ratio:.1f}x the training time" in label and "SST-2" in label


@pytest.mark.parametrize("reader", [measured.quick_run_cost, measured.quick_run_minutes, measured.student_init,
                                    measured.ppo_gain])
def test_without_the_results_files_the_studio_quotes_nothing(tmp_path, monkeypatch, reader):
    monkeypatch.setattr(measured, "RESULTS", tmp_path)
    assert reader() is None

