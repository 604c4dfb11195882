"""Imported (user) tasks: collect finished `run`s of tasks brought in with `task import` into one table.

Usage: python -m bench.user_tasks --workspace DIR RUN [RUN ...] [--wall RUN=SECONDS ...]
       python -m bench.user_tasks --render   # rewrite the md's table from user_tasks.json, reading no run

Reads each run's `summary.json` and `eval/summary.json` (nothing is re-run) and writes
`bench/results/user_tasks.json` and the table part of `user_tasks.md` (between the markers below, so the prose
around it stays). `--wall` gives the measured wall time of the whole `run` command (the run folder records each
stage's seconds, not the process's).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from retrikt.estimate import measured_seconds
from retrikt.runs import open_run
from retrikt.studio.compare import weak_teacher_warning

from bench.report import replace_table, write_json

ROOT = Path(__file__).resolve().parent

SYSTEMS = ("majority", "teacher", "student", "plain_kd", "student_retrieval", "student_gold")
GOAL_POINTS = 3.0


def collect(workspace: str, name: str, wall: float | None) -> dict:
    run = open_run(workspace, name)
    summary = run.summary()
    ev = json.loads(run.eval_summary_path.read_text(encoding="utf-8"))
    systems = ev["systems"]
    acc = {key: systems[key]["accuracy"] for key in SYSTEMS if key in systems}
    teacher_wins = acc["teacher"] > acc["majority"]
    margin = 100 * (acc["student_retrieval"] - acc["plain_kd"])
    gen, ppo = summary.get("generate") or {}, summary.get("ppo") or {}
    return {
        "run": name, "task": ev["task"], "seed": ev["seed"], "status": summary.get("status"),
        "test_examples": ev["test_examples"], "labels": len((summary.get("score") or {}).get("label_prior") or []),
        "accuracy": acc, "macro_f1": {key: systems[key].get("macro_f1") for key in SYSTEMS if key in systems},
        "majority_label": systems["majority"].get("label"),
        "beta": systems["student_retrieval"].get("beta"), "k": systems["student_retrieval"].get("k"),
        "teacher_trust": (summary.get("student") or {}).get("teacher_trust"),
        "step1": {key: gen.get(key) for key in ("generated", "parsed", "parse_rate", "truncated_dropped", "stored",
                                                "teacher_agreement", "max_new_tokens")},
        "ppo": {key: ppo.get(key) for key in ("generated", "parsed", "parse_rate", "stored", "teacher_agreement")},
        "store_entries": ((summary.get("student") or {}).get("items") or {}).get("store_entries"),
        "indexed": ((summary.get("student") or {}).get("items") or {}).get("indexed"),
        "stage_seconds": {k: round(v, 1) for k, v in measured_seconds(run).items()},
        "wall_seconds": wall,
        "teacher_beats_majority": teacher_wins,
        "sr_minus_kd_points": round(margin, 1),
        "weak_teacher_message": weak_teacher_warning(ev),
    }


def goal_met(row: dict) -> bool | None:
    """The issue's goal where the teacher beats the majority class (None elsewhere): student + retrieval at least
    GOAL_POINTS over plain KD with retrieval on. At beta 0 "student + retrieval" is the retrieval-trained student's
    own head with the neighbours' vote switched off, so a margin there is not retrieval's doing."""
    if not row["teacher_beats_majority"]:
        return None
    return row["sr_minus_kd_points"] >= GOAL_POINTS and (row["beta"] or 0) > 0


def pct(x) -> str:
    return "" if x is None else f"{100 * x:.1f}"


def table(rows: list[dict]) -> str:
    lines = ["| task | seed | test n | majority | teacher | student | plain KD | student + retrieval (beta) | "
             "gold only | S+R − KD | teacher > majority? | goal | step-1 parse rate | wall min |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        a = r["accuracy"]
        met = goal_met(r)
        if met:
            goal = f"met (S+R − KD ≥ {GOAL_POINTS:g}, retrieval on)"
        elif met is False and r["sr_minus_kd_points"] >= GOAL_POINTS:
            goal = f"not met: retrieval off (β {r['beta']}), the margin is not retrieval's"
        elif met is False:
            goal = f"not met (S+R − KD < {GOAL_POINTS:g})"
        else:  # the other half of the goal: the studio must say the teacher is below the majority class
            goal = "met (says so)" if r["weak_teacher_message"] else "NOT met (no message)"
        wall = f"{r['wall_seconds'] / 60:.1f}" if r["wall_seconds"] else ""
        lines.append(f"| {r['task']} | {r['seed']} | {r['test_examples']} | {pct(a['majority'])} | "
                     f"{pct(a['teacher'])} | {pct(a['student'])} | {pct(a['plain_kd'])} | "
                     f"{pct(a['student_retrieval'])} ({r['beta']}) | {pct(a.get('student_gold'))} | "
                     f"{r['sr_minus_kd_points']:+.1f} | {'yes' if r['teacher_beats_majority'] else 'no'} | {goal} | "
                     f"{pct(r['step1']['parse_rate'])}% ({r['step1']['parsed']}/{r['step1']['generated']}) | "
                     f"{wall} |")
    lines += ["", "Per-stage seconds (from the run folder):", "",
              "| task | seed | " + " | ".join(STAGES) + " |", "|---|---|" + "---|" * len(STAGES)]
    for r in rows:
        lines.append(f"| {r['task']} | {r['seed']} | "
                     + " | ".join(str(r["stage_seconds"].get(s, "")) for s in STAGES) + " |")
    return "\n".join(lines)


STAGES = ("load", "score", "tune", "generate", "ppo", "ppo-generate", "student", "eval")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace")
    parser.add_argument("runs", nargs="*")
    parser.add_argument("--wall", nargs="*", default=[], metavar="RUN=SECONDS")
    parser.add_argument("--render", action="store_true", help="rewrite the md's table from user_tasks.json")
    args = parser.parse_args()
    out = ROOT / "results"
    if args.render:
        rows = json.loads((out / "user_tasks.json").read_text(encoding="utf-8"))["runs"]
    elif not (args.workspace and args.runs):
        parser.error("--workspace and at least one RUN, or --render")
    else:
        walls = {k: float(v) for k, v in (item.split("=", 1) for item in args.wall)}
        rows = [collect(args.workspace, name, walls.get(name)) for name in args.runs]
    for row in rows:
        row["goal_met"] = goal_met(row)
    write_json(out / "user_tasks.json", {"runs": rows}, __file__)
    replace_table(out / "user_tasks.md", table(rows), __file__, "# Imported tasks\n\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
