"""The teacher on tasks a user brings: old answers and query line against the new ones, and the teacher check's
verdict against the teacher's accuracy on test.

    python -m bench.teacher_check [--test-items 300] [--seed 13] [--only NAME ...]
    python -m bench.teacher_check --render   # rewrite the md from the JSON, running nothing

Each task is imported from its CSV as `task import` would (SST-5 with the treebank's own label names, "very
negative" ... "very positive"; TREC; DBpedia-14, 14 classes written as phrases; SST-2 itself from its GLUE train
file). Settings per task:
- `old`: the import defaults before this change: a label is its own answer only when every label is one alphabetic
  word, else every label gets a letter A, B, C...; the query line is the generic question; the first token of each
  answer is scored (every old answer is one token here, so the scorer's one-token path is exactly the old scorer);
- `new`: the label names as answers, every token scored (`sum` of log-probabilities), the query line chosen among
  the label column's name, "Label:" and the question on held-out train rows;
- `new-mean`: the same with length-normalised scores (tasks with multi-token answers only);
- `new-1-demo`: one demonstration a label and 8 demo sets searched, the defaults before one-text tasks with 3 to 6
  labels got two a label and 4 sets;
- `new-8-candidates`: `new` with 8 demo sets searched instead of 4 (those tasks).
  Rows of TREC and SST-5 measured before these changes are stored under today's names (see the notes in the md);
- `new-kind-queries`: `new` with "Sentiment:" and "Topic:" as more query lines for the search to choose from.
For each: the teacher's accuracy on a seeded sample of `--test-items` test rows, the check (dev accuracy, 90%
interval, verdict) and the seconds of fitting + checking. The built-in SST-2 is the reference row of the SST-2 CSV.
Writes bench/results/teacher_check.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import time
from dataclasses import replace
from pathlib import Path

from bench.report import entries, write_json, write_md

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DATA = ROOT / "bench" / "data"
WORKSPACE = ROOT / "workspace"

KIND_QUERIES = ("Sentiment:", "Topic:")
SST5_NAMES = {"terrible": "very negative", "bad": "negative", "okay": "neutral", "good": "positive",
              "great": "very positive"}


def _csv_rows(path: Path, text: str, label: str, rename: dict | None = None, limit: int | None = None) -> bytes:
    """The file as a `text,label` CSV, labels renamed; at most `limit` rows, a seeded sample (an upload's limit)."""
    import csv
    import io

    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t" if path.suffix == ".tsv" else ","))
    if limit is not None and len(rows) > limit:
        rows = random.Random(0).sample(rows, limit)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([text, "label"])
    for row in rows:
        writer.writerow([row[text], (rename or {}).get(row[label], row[label])])
    return out.getvalue().encode("utf-8")


def imported(name: str, seed: int):
    """The task as `task import` builds it today (new defaults)."""
    from retrikt.tasks.loaders import load_custom

    if name == "SST-5":
        train = _csv_rows(DATA / "SST-5" / "train.csv", "sentence", "label", SST5_NAMES)
        test = _csv_rows(DATA / "SST-5" / "test.csv", "sentence", "label", SST5_NAMES)
        order = list(SST5_NAMES.values())
        return load_custom(train, ["sentence"], "label", name=name, filename="train.csv", test_source=test,
                           test_filename="test.csv", seed=seed, label_names=order)
    if name == "SST-2 (CSV)":
        import json as _json

        train = _csv_rows(ROOT / "retrikt" / "data" / "SST-2" / "train-full.tsv", "sentence", "label",
                          {"0": "negative", "1": "positive"}, limit=20_000)
        rows = [_json.loads(line) for line in (ROOT / "retrikt" / "data" / "SST-2" / "test.jsonl").open()]
        test = ("sentence,label\n" + "".join(f'"{r["fields"]["sentence"].replace(chr(34), chr(34) * 2)}",{r["label"]}\n'
                                             for r in rows)).encode("utf-8")
        return load_custom(train, ["sentence"], "label", name="SST-2-csv", filename="train.csv", test_source=test,
                           test_filename="test.csv", seed=seed)
    column = {"TREC": "question", "DBpedia-14": "text"}[name]
    return load_custom((DATA / name / "train.csv").read_bytes(), [column], "label", name=name,
                       filename="train.csv", test_source=(DATA / name / "test.csv").read_bytes(),
                       test_filename="test.csv", seed=seed)


def old_defaults(task):
    """The task with the import defaults before whole-answer scoring: words or letters, the generic question."""
    words = [label.lower() for label in task.labels]
    if all(re.fullmatch(r"[^\W\d_]+", w) for w in words) and len(set(words)) == len(words):
        answers = dict(zip(task.labels, words))
        query = f"Which label fits: {', '.join(words)}? Answer:"
    else:
        answers = dict(zip(task.labels, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
        options = ", ".join(f"{answers[label]} = {label}" for label in task.labels)
        query = f"Which label fits ({options})? Answer with the letter:"
    return replace(task, verbalizers=answers, query=query, query_candidates=())


def measure(task, teacher, config, seed: int, test_items: int) -> dict:
    import numpy as np

    from retrikt.context import run_embedder
    from retrikt.generate.check import check_teacher
    from retrikt.teacher.scorer import TeacherScorer

    started = time.perf_counter()
    scorer = TeacherScorer(teacher, task, config.scorer, seed=seed)  # no score cache: the seconds are real
    fit = scorer.fit()
    check = check_teacher(task, scorer, run_embedder(config)).to_dict()
    check_seconds = time.perf_counter() - started
    test = random.Random(seed).sample(task.test, min(test_items, len(task.test)))
    started = time.perf_counter()
    probs = scorer.probs([e.fields for e in test])
    per_input = (time.perf_counter() - started) / len(test)
    gold = np.array([task.labels.index(e.label) for e in test])
    accuracy = float((probs.argmax(-1) == gold).mean())
    counts = np.bincount(gold, minlength=len(task.labels))
    majority = float(counts.max() / counts.sum())
    return {"seed": seed, "answers": dict(task.verbalizers), "query": scorer.query,
            "candidate_queries": fit.candidate_queries,
            "candidate_accuracies": fit.candidate_accuracies, "answer_score": config.scorer.answer_score,
            "candidate_rows": fit.candidate_rows,
            "test_items": len(test), "test_accuracy": round(accuracy, 4), "test_majority": round(majority, 4),
            "check": check, "fit_and_check_seconds": round(check_seconds, 1),
            "seconds_per_test_input": round(per_input, 4),
            "ci_holds_test": check["ci_low"] <= accuracy <= check["ci_high"]}


def knows(check: dict, bar: str = "product") -> bool:
    """The check's verdict re-derived from its stored numbers: `product` = the studio's rule today (the interval's
    low end above the stronger of chance and the commonest label's share), `chance` = the rule before (chance)."""
    from retrikt.generate.check import knowledge_bar

    floor = check["chance"] if bar == "chance" else knowledge_bar(check["chance"], check["majority_share"])
    return check["ci_low"] > floor


def verdict_right(row: dict, bar: str = "product") -> bool:
    """The check said 'knows' exactly when the teacher beats the test sample's majority class by the same 90% rule
    (the low end of its test accuracy's interval above the majority share)."""
    from retrikt.generate.check import accuracy_interval

    low, _ = accuracy_interval(round(row["test_accuracy"] * row["test_items"]), row["test_items"])
    return knows(row["check"], bar) == (low > row["test_majority"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--test-items", type=int, default=300)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--only", nargs="+", help="these tasks (the others keep their rows in the results)")
    parser.add_argument("--settings", nargs="+", help="these settings of each task (the others keep their rows)")
    parser.add_argument("--json", help="write the rows to this JSON instead (a second run beside a running one)")
    parser.add_argument("--render", action="store_true",
                        help="rewrite the md from teacher_check.json (rows without a seed were run with --seed)")
    args = parser.parse_args()
    out_path = Path(args.json) if args.json else RESULTS / "teacher_check.json"
    if args.render:
        results = entries(json.loads(out_path.read_text(encoding="utf-8")))
        write_json(out_path, results, __file__)
        write_markdown(results, args.seed)
        return

    import torch

    from retrikt.config import RunConfig, override
    from retrikt.tasks import load_builtin
    from retrikt.teacher.load import load_teacher
    from retrikt.teacher.scorer import default_demos_total

    torch.set_num_threads(2)
    config = RunConfig(workspace=str(WORKSPACE), seed=args.seed)
    teacher = load_teacher(config.teacher, cache_dir=str(WORKSPACE / "cache"))
    results = entries(json.loads(out_path.read_text())) if out_path.exists() and (args.only or args.settings) else {}
    for name in args.only or ["SST-2 (CSV)", "SST-5", "TREC", "DBpedia-14"]:
        task = imported(name, args.seed)
        settings = {"old": (old_defaults(task), config), "new": (task, config)}
        if any(len(teacher.tokenizer.encode(" " + a, add_special_tokens=False)) > 1 for a in task.verbalizers.values()):
            settings["new-mean"] = (task, override(config, {"scorer.answer_score": "mean"}))
        if default_demos_total(task) > len(task.labels) > 2:
            # the former defaults: one demonstration a label and 8 demo sets, then two a label with 8 sets
            settings["new-1-demo"] = (task, override(config, {"scorer.demos_total": len(task.labels),
                                                              "scorer.demo_candidates": 8}))
            settings["new-8-candidates"] = (task, override(config, {"scorer.demo_candidates": 8}))
        # Query lines of the two commonest kinds of text classification, as more candidates for the search.
        settings["new-kind-queries"] = (replace(task, query_candidates=(*task.query_candidates, *KIND_QUERIES)), config)
        if name == "SST-2 (CSV)":
            settings["built-in SST-2"] = (load_builtin("SST-2", seed=args.seed), config)
        key = name if args.seed == 13 else f"{name} s{args.seed}"  # another seed's rows sit beside seed 13's
        results[key] = results.get(key, {}) if args.settings else {}
        for setting, (variant, cfg) in settings.items():
            if args.settings and setting not in args.settings:
                continue
            row = measure(variant, teacher, cfg, args.seed, args.test_items)
            results[key][setting] = row
            print(f"{name} {setting}: teacher {row['test_accuracy']:.1%} on {row['test_items']} test items "
                  f"(majority {row['test_majority']:.1%}); check {row['check']['accuracy']:.1%} "
                  f"[{row['check']['ci_low']:.0%}, {row['check']['ci_high']:.0%}] in {row['fit_and_check_seconds']} s; "
                  f"query {row['query']!r}", flush=True)
            write_json(out_path, results, __file__)
    if not args.json:  # rows written elsewhere are merged into teacher_check.json by hand, then --render
        write_markdown(results, args.seed)


def write_markdown(results: dict, seed: int) -> None:
    seeds = sorted({row.get("seed", seed) for settings in results.values() for row in settings.values()})
    lines = ["# The teacher on imported tasks: answers and query line, and the teacher check",
             "",
             f"Seed {', '.join(map(str, seeds))}, embedded SmolLM2-135M teacher, 2 threads. "
             "Teacher = accuracy on a seeded sample of the test split. Check = accuracy on the dev rows (k per "
             "label, never used to choose the demonstrations or the query line) with its 90% interval; the verdict "
             "says the teacher knows the task when the interval's low end is above the stronger of chance and the share "
             "of the task's commonest label (over all its labelled rows); it is right when the same 90% rule on the "
             "test sample says the teacher beats that sample's majority class. Both verdict columns are re-derived "
             "from each row's stored interval; `chance alone` is the rule before. `old` = letters for "
             "labels that are not one word, the generic question, first token; `new` = label names, every token "
             "(sum), query line chosen, today's number of demonstrations and demo sets (two a label and 4 sets for a "
             "one-text task with 3 to 6 labels, else 4 demonstrations and 8 sets); `new-mean` = length-normalised; "
             "`new-1-demo` = one demonstration a label and 8 demo sets, the defaults before; `new-8-candidates` = "
             "`new` with 8 demo sets searched, not 4; `new-kind-queries` = `new` with \"Sentiment:\" and \"Topic:\" "
             "among the query lines searched. The demo search of `old` rows scored every candidate on every held-out "
             "row; `new` rows measured after successive halving (bench/results/demo_search.md) record how many rows "
             "each candidate read.",
             "",
             "| task | setting | answers | query line chosen | teacher (test) | test majority | check (dev) | 90% CI | "
             "verdict | verdict right | right with chance alone | CI holds test | fit + check s | s / test input |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, settings in results.items():
        for setting, row in settings.items():
            check = row["check"]
            answers = ", ".join(row["answers"].values())
            lines.append(
                f"| {name} | {setting} | {answers[:60]}{'…' if len(answers) > 60 else ''} | `{row['query'][:50]}` | "
                f"{row['test_accuracy']:.1%} (n = {row['test_items']}) | {row['test_majority']:.1%} | "
                f"{check['accuracy']:.1%} (n = {check['rows']}) | {check['ci_low']:.0%}–{check['ci_high']:.0%} | "
                f"{'knows' if knows(check) else 'does not'} | {'yes' if verdict_right(row) else 'no'} | "
                f"{'yes' if verdict_right(row, 'chance') else 'no'} | "
                f"{'yes' if row['ci_holds_test'] else 'no'} | {row['fit_and_check_seconds']} | "
                f"{row['seconds_per_test_input']} |")
    rows = [row for settings in results.values() for row in settings.values()]
    default = [row for settings in results.values() for name, row in settings.items() if name == "new"]
    lines += ["", "Verdicts right: " + "; ".join(
        f"{what} {sum(verdict_right(r) for r in group)} of {len(group)} with today's bar, "
        f"{sum(verdict_right(r, 'chance') for r in group)} with chance alone"
        for what, group in (("all rows", rows), ("`new` (the default setting) rows", default))) + "."]
    lines += seed_summary(results)
    write_md(RESULTS / "teacher_check.md", "\n".join(lines), __file__)


def seed_summary(results: dict) -> list[str]:
    """Teacher accuracy on test, mean ± std over the seeds of each task, for the settings measured at every seed."""
    from bench.stats import mean_std

    by_task: dict[str, list[dict]] = {}
    for key, settings in results.items():
        by_task.setdefault(re.sub(r" s\d+$", "", key), []).append(settings)
    lines = []
    for task, runs in by_task.items():
        if len(runs) < 2:
            continue
        common = [s for s in runs[0] if all(s in run for run in runs)]
        if not lines:
            lines = ["", "## Over seeds", "", "| task | setting | seeds | teacher (test) | test majority |",
                     "|---|---|---|---|---|"]
        for setting in common:
            rows = [run[setting] for run in runs]
            lines.append(f"| {task} | {setting} | {', '.join(str(r.get('seed', '')) for r in rows)} | "
                         f"{mean_std([r['test_accuracy'] for r in rows], 100)} | "
                         f"{mean_std([r['test_majority'] for r in rows], 100)} |")
    return lines


if __name__ == "__main__":
    main()
