"""The demo search: every candidate on every held-out row (the search before) against successive halving (now).

    python -m bench.demo_search [--seeds 13 21 42 87 100] [--tasks SST-2 SST-5 TREC] [--test-items 300]
    python -m bench.demo_search --render   # rewrite the md from the JSON, running nothing

The scorer chooses its demonstrations and query line among 8 candidates by accuracy on the held-out train rows. The
full search scores every candidate on every row; successive halving (`TeacherScorer.fit`, `search_schedule`) scores
all 8 on a first share of the rows, keeps the better half on twice as many, and compares the last two on every row.
Per task and seed, each search runs on a fresh scorer (no score cache), is timed (its calibration included, as in
step 1), and the prompt it chose is scored on a seeded sample of `--test-items` test rows. The built-in SST-2 at the
five seeds; SST-5 and TREC imported from their CSVs with their label names (bench/teacher_check.py), seed 13.
Writes bench/results/demo_search.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

from bench.report import entries, write_json, write_md

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
WORKSPACE = ROOT / "workspace"
SEARCHES = {"full": False, "halving": True}


def load_task(name: str, seed: int):
    from retrikt.tasks import load_builtin

    if name == "SST-2":
        return load_builtin("SST-2", seed=seed)
    from bench.teacher_check import imported

    return imported(name, seed)


def measure(task, teacher, config, seed: int, test_items: int) -> dict:
    import numpy as np

    from retrikt.teacher.scorer import TeacherScorer

    test = random.Random(seed).sample(task.test, min(test_items, len(task.test)))
    gold = np.array([task.labels.index(e.label) for e in test])
    row, tested = {}, {}
    for search, halving in SEARCHES.items():
        scorer = TeacherScorer(teacher, task, config.scorer, seed=seed)  # no score cache: the seconds are real
        started = time.perf_counter()
        report = scorer.fit(halving=halving)
        seconds = time.perf_counter() - started
        choice = (tuple(report.demo_uids), report.query)
        if choice not in tested:  # the same prompt scores the test rows the same way
            tested[choice] = float((scorer.probs([e.fields for e in test]).argmax(-1) == gold).mean())
        row[search] = {"seconds": round(seconds, 1), "searched_inputs": sum(report.candidate_rows),
                       "calibration_inputs": config.scorer.calibration_inputs, "query": report.query,
                       "demo_uids": report.demo_uids, "held_out_accuracy": round(report.demo_accuracy, 4),
                       "candidate_accuracies": [round(a, 4) for a in report.candidate_accuracies],
                       "candidate_rows": report.candidate_rows, "test_accuracy": round(tested[choice], 4)}
        print(f"{task.name} s{seed} {search}: {seconds:.1f} s, {sum(report.candidate_rows)} inputs searched, "
              f"test {tested[choice]:.1%}, query {report.query!r}", flush=True)
    row["same_choice"] = len(tested) == 1
    row["test_items"] = len(test)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[13, 21, 42, 87, 100])
    parser.add_argument("--tasks", nargs="+", default=["SST-2", "SST-5", "TREC"])
    parser.add_argument("--imported-seed", type=int, default=13, help="the one seed of the imported tasks")
    parser.add_argument("--test-items", type=int, default=300)
    parser.add_argument("--render", action="store_true", help="rewrite the md from demo_search.json")
    args = parser.parse_args()
    out_path = RESULTS / "demo_search.json"
    results = entries(json.loads(out_path.read_text(encoding="utf-8"))) if out_path.exists() else {}
    if not args.render:
        import torch

        from retrikt.config import RunConfig
        from retrikt.teacher.load import load_teacher

        torch.set_num_threads(2)
        config = RunConfig(workspace=str(WORKSPACE))
        teacher = load_teacher(config.teacher, cache_dir=str(WORKSPACE / "cache"))
        teacher.model(torch.tensor([teacher.encode("A warm-up pass, so the first timed search pays no start-up.")]))
        for name in args.tasks:
            for seed in args.seeds if name == "SST-2" else [args.imported_seed]:
                results.setdefault(name, {})[str(seed)] = measure(load_task(name, seed), teacher, config, seed,
                                                                  args.test_items)
                write_json(out_path, results, __file__)
    write_json(out_path, results, __file__)
    write_markdown(results)


def _mean_std(values: list[float], scale: float = 1.0) -> str:
    values = [v * scale for v in values]
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def write_markdown(results: dict) -> None:
    lines = ["# The demo search: every candidate on every row, or successive halving", "",
             "8 candidate prompts (demonstration set + query line), chosen by accuracy on the held-out train rows. "
             "`full` = every candidate on every held-out row (the search before); `halving` = all 8 on a first share "
             "of the rows, the better half on twice as many, the last two on every row (the default now). Seconds = "
             "the search and the calibration on 2 threads, a fresh scorer each (no score cache); teacher = the "
             "chosen prompt's accuracy on a seeded sample of the test split. Embedded SmolLM2-135M teacher.", "",
             "| task | seed | test n | full: s | full: inputs | full: teacher % | halving: s | halving: inputs | "
             "halving: teacher % | same prompt | time ratio |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    summary = []
    for task, seeds in results.items():
        for seed, row in seeds.items():
            full, halving = row["full"], row["halving"]
            lines.append(f"| {task} | {seed} | {row['test_items']} | {full['seconds']} | {full['searched_inputs']} | "
                         f"{100 * full['test_accuracy']:.1f} | {halving['seconds']} | {halving['searched_inputs']} | "
                         f"{100 * halving['test_accuracy']:.1f} | {'yes' if row['same_choice'] else 'no'} | "
                         f"{halving['seconds'] / full['seconds']:.2f} |")
        if len(seeds) > 1:
            rows = list(seeds.values())
            summary.append(f"| {task} | {len(rows)} seeds | "
                           f"{_mean_std([r['full']['test_accuracy'] for r in rows], 100)} | "
                           f"{_mean_std([r['halving']['test_accuracy'] for r in rows], 100)} | "
                           f"{_mean_std([r['full']['seconds'] for r in rows])} | "
                           f"{_mean_std([r['halving']['seconds'] for r in rows])} | "
                           f"{sum(r['same_choice'] for r in rows)} of {len(rows)} |")
    if summary:
        lines += ["", "Mean ± std over the seeds:", "",
                  "| task | seeds | full: teacher % | halving: teacher % | full: s | halving: s | same prompt |",
                  "|---|---|---|---|---|---|---|", *summary]
    write_md(RESULTS / "demo_search.md", "\n".join(lines), __file__)


if __name__ == "__main__":
    main()
