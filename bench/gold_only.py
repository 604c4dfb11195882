"""Collect the "student, gold only" row next to the other systems from evaluated runs.

Usage: python -m bench.gold_only WORKSPACE RUN [RUN ...] [--note TEXT]

Each RUN must have been trained and evaluated with the gold-only baseline (`student --from RUN`). Writes
bench/results/gold_only.{json,md}: per run and mean ± std, test accuracy of every system, and what the teacher adds
(student + retrieval minus gold only).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from retrikt.runs import open_run

from bench.accuracy import fmt

ROOT = Path(__file__).resolve().parent

SYSTEMS = ("teacher", "student", "plain_kd", "student_retrieval", "student_gold")
NAMES = {"teacher": "teacher", "student": "student alone", "plain_kd": "plain KD",
         "student_retrieval": "student + retrieval", "student_gold": "student, gold only"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workspace")
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    rows = []
    for name in args.runs:
        run = open_run(args.workspace, name)
        systems = json.loads(run.eval_summary_path.read_text(encoding="utf-8"))["systems"]
        block = run.summary()["student"]
        rows.append({"run": name, "seed": run.config.seed, "beta": block["beta"], "gold_only": block.get("gold_only"),
                     "student_seconds": block["seconds"],
                     **{s: round(100 * systems[s]["accuracy"], 2) for s in SYSTEMS if s in systems}})
    for row in rows:
        row["teacher_adds"] = round(row["student_retrieval"] - row["student_gold"], 2)

    def stat(key):
        return fmt([r[key] for r in rows], scale=1.0)

    out = ROOT / "results"
    (out / "gold_only.json").write_text(json.dumps({"note": args.note, "runs": rows}, indent=2) + "\n",
                                        encoding="utf-8")
    head = ["seed", *[NAMES[s] for s in SYSTEMS], "teacher adds (S+R − gold only)", "beta"]
    lines = ["# The \"student, gold only\" baseline: what the teacher adds", "", args.note, "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += [f"| {r['seed']} | " + " | ".join(f"{r[s]:.1f}" for s in SYSTEMS) + f" | {r['teacher_adds']:+.1f} | "
              f"{r['beta']} |" for r in rows]
    lines.append(f"| mean ± std (n = {len(rows)}) | " + " | ".join(stat(s) for s in SYSTEMS)
                 + f" | {stat('teacher_adds')} | |")
    (out / "gold_only.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
