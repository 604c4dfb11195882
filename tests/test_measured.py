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
    from pages.student import INITS

    rows = {}
    for line in (RESULTS / "student_init.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) == 4 and NUMBER.fullmatch(cells[3]):
            rows[cells[0]] = float(cells[2]), float(cells[3])
    minilm, random = rows["MiniLM embeddings + sentence distillation"], rows["random"]
    label = dict((value, label) for label, value in INITS)["minilm"]
    assert f"{minilm[0] - random[0]:+.1f} points" in label and f"{minilm[1] - random[1]:.0f} s more" in label
    assert "SST-2" in (RESULTS / "student_init.md").read_text(encoding="utf-8").splitlines()[0] and "SST-2" in label


@pytest.mark.parametrize("reader", [measured.quick_run_cost, measured.quick_run_minutes, measured.student_init,
                                    measured.ppo_gain])
def test_without_the_results_files_the_studio_quotes_nothing(tmp_path, monkeypatch, reader):
    monkeypatch.setattr(measured, "RESULTS", tmp_path)
    assert reader() is None

