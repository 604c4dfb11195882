"""Collect the "student, gold only" row next to the other systems from evaluated runs.

Usage: python -m bench.gold_only WORKSPACE RUN [RUN ...] [--note TEXT]
       python -m bench.gold_only --render   # rewrite the md from the json

Each RUN must have been trained and evaluated with the gold-only baseline (`student --from RUN`). Writes
bench/results/gold_only.{json,md}: per run and mean ± std, test accuracy of every system, and what the teacher adds
(student + retrieval minus gold only).
"""
from __future__ import annotations

import json

from retrikt.runs import open_run

from bench.report import runs_cli
from bench.stats import mean_std


SYSTEMS = ("teacher", "student", "plain_kd", "student_retrieval", "student_gold")
NAMES = {"teacher": "teacher", "student": "student alone", "plain_kd": "plain KD",
         "student_retrieval": "student + retrieval", "student_gold": "student, gold only"}


def collect(workspace: str, names: list[str]) -> list[dict]:
    rows = []
    for name in names:
        run = open_run(workspace, name)
        systems = json.loads(run.eval_summary_path.read_text(encoding="utf-8"))["systems"]
        block = run.summary()["student"]
        rows.append({"run": name, "seed": run.config.seed, "beta": block["beta"], "gold_only": block.get("gold_only"),
                     "student_seconds": block["seconds"],
                     **{s: round(100 * systems[s]["accuracy"], 2) for s in SYSTEMS if s in systems}})
    for row in rows:
        row["teacher_adds"] = round(row["student_retrieval"] - row["student_gold"], 2)
    return rows


def render(data: dict) -> str:
    rows = data["runs"]
    head = ["seed", *[NAMES[s] for s in SYSTEMS], "teacher adds (S+R − gold only)", "beta"]
    lines = ["# The \"student, gold only\" baseline: what the teacher adds", "", data["note"], "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += [f"| {r['seed']} | " + " | ".join(f"{r[s]:.1f}" for s in SYSTEMS) + f" | {r['teacher_adds']:+.1f} | "
              f"{r['beta']} |" for r in rows]
    lines.append("| mean ± std | " + " | ".join(mean_std([r[s] for r in rows]) for s in SYSTEMS)
                 + f" | {mean_std([r['teacher_adds'] for r in rows], signed=True)} | |")
    return "\n".join(lines)


def main() -> None:
    runs_cli(__doc__, "gold_only", __file__, collect, render)


if __name__ == "__main__":
    main()
