"""The beta guard on finished runs: does the teacher beat the student alone on the dev split, and what would
retrieval have done on test without the guard?

Usage: python -m bench.beta_guard --runs WORKSPACE:RUN [WORKSPACE:RUN ...] [--out bench/results]
       python -m bench.beta_guard --render   # rewrite the md's table from beta_guard.json, running nothing

For every run whose students are trained (nothing is retrained): the teacher's and the student-alone's answers on
the dev split (the teacher's step-1 scorer, restored from the run), the counts each gets right, the discordant pairs
and a one-sided sign test of "the student is better"; then, on the test split, the student alone and student +
retrieval at the beta the `teacher` rule picks before any guard (the largest beta of best agreement with the
teacher on its held-out inputs, as recorded in the run) and at the run's own beta. Writes `beta_guard.json` and
`beta_guard.md`.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from retrikt.context import run_store
from retrikt.runs import open_run
from retrikt.student.evaluate import test_subset
from retrikt.student.retrieval import predict
from retrikt.student.stage import binomial_tail, load_students, most_agreeing_beta
from retrikt.tasks import task_of_run
from retrikt.teacher.load import load_teacher
from retrikt.teacher.scorer import run_scorer

from bench.accuracy import EVAL_LIMIT  # the same test subsets, so test numbers match its table
from bench.report import replace_table, write_json

ROOT = Path(__file__).resolve().parent


def one_run(workspace: str, name: str, teachers: dict) -> dict:
    run = open_run(workspace, name)
    task, block = task_of_run(run), run.summary()["student"]
    store = run_store(run, task)
    student, _, index, beta = load_students(run, store)
    key = (run.config.teacher.model, run.config.teacher.gguf_file)
    if key not in teachers:
        teachers[key] = load_teacher(run.config.teacher, cache_dir=Path(workspace) / "cache")
    cfg = run.config.student
    gold = np.array([task.label_index(e.label) for e in task.dev])
    teacher_dev = run_scorer(run, task, teachers[key]).probs([e.fields for e in task.dev]).argmax(-1)
    alone_dev = student.encode([task.serialize(e.fields) for e in task.dev])[0].argmax(-1)
    t_right, s_right = teacher_dev == gold, alone_dev == gold
    t_only, s_only = int((t_right & ~s_right).sum()), int((s_right & ~t_right).sum())
    agreement = block.get("beta_teacher_agreement") or {}
    unguarded = most_agreeing_beta(agreement) if agreement else None  # the rule's beta before any guard
    examples = test_subset(task, EVAL_LIMIT.get(task.name))
    texts = [task.serialize(e.fields) for e in examples]
    test_gold = np.array([task.label_index(e.label) for e in examples])
    pred = predict(student, index, texts, cfg.k, cfg.temperature, 1.0)  # mixed at beta 1 = the vote alone
    test = {}
    for label, b in (("student alone", 0.0), ("rule beta, no guard", unguarded), ("run's beta", beta)):
        if b is None:
            continue
        mixed = (1 - b) * pred.student + b * pred.mixed
        test[label] = {"beta": b, "accuracy": round(float((mixed.argmax(-1) == test_gold).mean()), 4)}
    eval_path = run.eval_summary_path
    teacher_test = (json.loads(eval_path.read_text())["systems"].get("teacher", {}).get("accuracy")
                    if eval_path.is_file() else None)
    return {"run": name, "task": task.name, "seed": run.config.seed, "dev_examples": len(gold),
            "teacher_right": int(t_right.sum()), "student_right": int(s_right.sum()),
            "teacher_only": t_only, "student_only": s_only,
            # one-sided sign test on the discordant pairs: how likely a student no better than the teacher wins
            # at least this many of them
            "p_student_better": round(binomial_tail(s_only, t_only + s_only, 0.5), 4) if t_only + s_only else 1.0,
            "trusted": (block.get("teacher_trust") or {}).get("trusted", True),
            "teacher_test": teacher_test, "test": test}


def write(rows: list[dict], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "beta_guard.json", {"runs": rows}, __file__, newline=False)
    lines = ["", "Dev split: right answers of the teacher (the run's step-1 scorer) and of the student alone, the pairs "
             "only one of them gets right, and the one-sided sign-test p of \"the student is better\". Test: "
             "accuracy (%) of the student alone, of student + retrieval at the beta the `teacher` rule picks before "
             "any guard, and at the run's own beta (after the guard). Nothing is retrained.", "",
             "| task | seed | dev n | teacher right | student right | teacher only | student only | p (student better) "
             "| trusted | teacher test | student alone | rule beta, no guard | run's beta |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        tests = [f"{100 * r['test'][key]['accuracy']:.1f} (β {r['test'][key]['beta']})" if key in r["test"] else "–"
                 for key in ("student alone", "rule beta, no guard", "run's beta")]
        teacher = "" if r["teacher_test"] is None else f"{100 * r['teacher_test']:.1f}"
        lines.append(f"| {r['task']} | {r['seed']} | {r['dev_examples']} | {r['teacher_right']} | "
                     f"{r['student_right']} | {r['teacher_only']} | {r['student_only']} | {r['p_student_better']} | "
                     f"{r['trusted']} | {teacher} | " + " | ".join(tests) + " |")
    replace_table(out / "beta_guard.md", "\n".join(lines), __file__, "# The beta guard on finished runs\n\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", metavar="WORKSPACE:RUN")
    parser.add_argument("--out", default=str(ROOT / "results"))
    parser.add_argument("--render", action="store_true", help="rewrite the md's table from beta_guard.json in --out")
    args = parser.parse_args()
    if args.render:
        write(json.loads((Path(args.out) / "beta_guard.json").read_text(encoding="utf-8"))["runs"], Path(args.out))
        return 0
    if not args.runs:
        parser.error("--runs is required (unless --render)")
    torch.set_num_threads(1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    teachers, rows = {}, []
    for item in args.runs:
        workspace, name = item.rsplit(":", 1)
        started = time.perf_counter()
        rows.append(one_run(workspace, name, teachers))
        print(f"{name}: {json.dumps(rows[-1])} ({time.perf_counter() - started:.0f}s)", flush=True)
    write(rows, Path(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
