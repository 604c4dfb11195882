"""Collect the "student, gold only" row next to the other systems from evaluated runs.

Usage: python -m bench.gold_only WORKSPACE RUN [RUN ...] [--note TEXT]
       python -m bench.gold_only --render   # rewrite the md from the json

Each RUN must have been trained and evaluated with the gold-only baseline (`student --from RUN`). Writes
bench/results/gold_only.{json,md}: per run and mean ± std, test accuracy of every system, and what the teacher adds
(student + retrieval minus gold only).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from retrikt.runs import open_run

from bench.report import write_json, write_md
from bench.stats import mean_std

ROOT = Path(__file__).resolve().parent

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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workspace", nargs="?")
    parser.add_argument("runs", nargs="*")
    parser.add_argument("--note", default="")
    parser.add_argument("--render", action="store_true", help="rewrite gold_only.md from gold_only.json")
    args = parser.parse_args()
    out = ROOT / "results"
    if args.render:
        data = json.loads((out / "gold_only.json").read_text(encoding="utf-8"))
    elif not (args.workspace and args.runs):
        parser.error("WORKSPACE and at least one RUN, or --render")
    else:
        data = {"note": args.note, "runs": collect(args.workspace, args.runs)}
    write_json(out / "gold_only.json", data, __file__)
    write_md(out / "gold_only.md", render(data), __file__)
    print(render(data))


if __name__ == "__main__":
    main()
