"""The README's generated parts, from bench/results/: nothing in the README is a number typed by hand.

    python -m bench.readme           # rewrite the blocks between the README's markers
    python -m bench.readme --check   # exit 1 when the README differs from what the results say (a test runs this)
    python -m bench.readme --screenshots DIR  # also copy the browser tests' screenshots the README shows

A block sits between `<!-- generated: NAME -->` and `<!-- end: NAME -->`; NAME picks its renderer below.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESULTS = ROOT / "bench" / "results"
IMAGES = ROOT / "docs" / "images"
SCREENSHOTS = ("classroom", "compare", "compare-fix-neighbour", "knowledge-store-demo")

SYSTEMS = (("teacher", "teacher (few-shot)"), ("student_retrieval", "student + retrieval"),
           ("plain_kd", "plain KD"), ("student", "student alone"), ("student_gold", "student, gold only"),
           ("majority", "majority class"))


def _cell(values: list[float], scale: float = 100.0) -> str:
    values = [scale * v for v in values]
    if len(values) == 1:
        return f"{values[0]:.1f} (n = 1)"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def results_table() -> str:
    """Every task of bench/results/accuracy.json: each system's test accuracy over its seeds, and the student's
    size as a share of the teacher's."""
    table = json.loads((RESULTS / "accuracy.json").read_text(encoding="utf-8"))["table"]
    seeds = sorted({len(row["seeds"]) for row in table.values()})
    head = ["task", *[name for _, name in SYSTEMS], "student size"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for task, row in table.items():
        cells = [_cell(row[key]["accuracy"]) if key in row else "" for key, _ in SYSTEMS]
        size = f"{100 * statistics.mean(row['compression_ratio']):.2f}%"
        lines.append("| " + " | ".join([task, *cells, size]) + " |")
    n = "/".join(str(s) for s in seeds)
    return "\n".join([
        f"Test accuracy (%), mean ± std over {n} seeds of few-shot splits (32 labelled examples), with the packaged "
        "SmolLM2-135M teacher, step 1 without PPO (`bench/results/accuracy.md`, written by `python -m "
        "bench.accuracy`).", "", *lines])


def sst2_sentence() -> str:
    """SST-2's headline in one sentence: the share of the teacher's accuracy kept, what retrieval adds, and speed."""
    row = json.loads((RESULTS / "accuracy.json").read_text(encoding="utf-8"))["table"]["SST-2"]
    mean = {key: 100 * statistics.mean(row[key]["accuracy"]) for key, _ in SYSTEMS}
    speed = row["speed"]
    ratio = (statistics.mean(speed["student_retrieval"]["examples_per_s"])
             / statistics.mean(speed["teacher"]["examples_per_s"]))
    latency = statistics.mean(speed["teacher"]["latency_ms"]) / statistics.mean(
        speed["student_retrieval"]["latency_ms"])
    return (f"On SST-2 the student, {100 * statistics.mean(row['compression_ratio']):.2f}% of the teacher's size, keeps "
            f"{100 * mean['student_retrieval'] / mean['teacher']:.0f}% of its accuracy with retrieval "
            f"({mean['student_retrieval'] - mean['plain_kd']:+.1f} points over plain KD, "
            f"{mean['student_retrieval'] - mean['student_gold']:+.1f} over the same student trained on the labelled "
            f"examples alone) and answers {ratio:.0f}× more inputs per second ({latency:.0f}× faster for one input) on "
            f"one CPU thread. {_other_tasks()}")


def _other_tasks() -> str:
    table = json.loads((RESULTS / "accuracy.json").read_text(encoding="utf-8"))["table"]
    others = {task: row for task, row in table.items() if task != "SST-2"}
    betas = [b for row in others.values() for b in row["beta"]]
    below = [task for task, row in others.items()
             if statistics.mean(row["teacher"]["accuracy"]) <= statistics.mean(row["majority"]["accuracy"])]
    share = f"all {len(others)}" if len(below) == len(others) else f"{len(below)} of the {len(others)}"
    return (f"On {share} other tasks the embedded teacher is at or below the majority class; "
            f"the checks keep retrieval off in {sum(b == 0 for b in betas)} of their {len(betas)} runs, where student + "
            "retrieval is the student alone.")


RENDERERS = {"results": results_table, "sst2": sst2_sentence}
BLOCK = re.compile(r"(<!-- generated: (\w+) -->\n)(.*?)(<!-- end: \2 -->)", re.S)


def render(text: str) -> str:
    """`text` with every generated block rewritten from the results."""
    def block(match: re.Match) -> str:
        return f"{match[1]}{RENDERERS[match[2]]()}\n{match[4]}"
    return BLOCK.sub(block, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the README is not what the results say")
    parser.add_argument("--screenshots", type=Path, help="a folder of the browser tests' screenshots to copy")
    args = parser.parse_args(argv)
    text = README.read_text(encoding="utf-8")
    wanted = render(text)
    if args.check:
        if wanted != text:
            print("README.md is out of date with bench/results: run python -m bench.readme", file=sys.stderr)
            return 1
        return 0
    README.write_text(wanted, encoding="utf-8")
    if args.screenshots:
        IMAGES.mkdir(parents=True, exist_ok=True)
        for name in SCREENSHOTS:
            shutil.copyfile(args.screenshots / f"{name}.png", IMAGES / f"{name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
