"""The quick classroom preset (`run --preset quick`): wall time of all three steps and what it costs in accuracy.

Usage: python -m bench.quick_run --seeds 13 [--task SST-2] [--workspace DIR] [--previous bench/results/quick_run.json]
       python -m bench.quick_run --render   # rewrite the md from the json, running nothing

Each seed runs the whole pipeline in a fresh run folder, in this process, with the preset's settings and evaluation
subset; the per-stage times come from the run's summary. The accuracy of the default settings for the same seeds is
read from `bench/results/accuracy.json` (the accuracy benchmark, whole test split), so the table says what the
preset costs. Writes `bench/results/quick_run.{md,json}`.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from retrikt.config import PRESETS, RunConfig, apply_preset, override
from retrikt.jobs import job_threads
from retrikt.workflow import run_all

from bench.report import write_report
from bench.stats import mean_std

ROOT = Path(__file__).resolve().parent

SYSTEMS = ("teacher", "student", "plain_kd", "student_retrieval")


def default_accuracy(task: str, seed: int) -> dict | None:
    path = ROOT / "results" / "accuracy.json"
    if not path.is_file():
        return None
    for row in json.loads(path.read_text(encoding="utf-8")).get("runs", {}).get(task, []):
        if row.get("seed") == seed:
            return {name: s["accuracy"] for name, s in row["systems"].items() if "accuracy" in s}
    return None


def one(task: str, seed: int, workspace: Path) -> dict:
    preset = PRESETS["quick"]
    config = apply_preset(override(RunConfig(workspace=str(workspace)), {
        "task": task, "seed": seed, "run_name": f"quick-{task}-s{seed}-{int(time.time())}"}), "quick")
    started = time.perf_counter()
    run = run_all(config, eval_limit=preset.eval_limit)
    seconds = time.perf_counter() - started
    summary = run.summary()
    systems = json.loads(run.eval_summary_path.read_text(encoding="utf-8"))["systems"]
    # The preset scores 100 test examples (the teacher is slow); the students are fast enough for the whole split,
    # which is what the default run's numbers are on.
    from retrikt.student.predictor import TrainedStudent

    trained = TrainedStudent.from_run(run)
    test = trained.task.test
    alone, mixed = trained.predict_both([e.fields for e in test])
    full = {"student": sum(p == e.label for p, e in zip(alone.labels, test)) / len(test),
            "student_retrieval": sum(p == e.label for p, e in zip(mixed.labels, test)) / len(test)}
    return {"task": task, "seed": seed, "seconds": round(seconds, 1), "threads": torch.get_num_threads(),
            "stages": {"load": summary.get("load_seconds"), "score": (summary.get("score") or {}).get("seconds"),
                       "tune": (summary.get("tune") or {}).get("seconds"),
                       "generate": (summary.get("generate") or {}).get("generate_seconds"),
                       "ppo": (summary.get("ppo") or {}).get("ppo_seconds"),
                       "student": (summary.get("student") or {}).get("seconds")},
            "stored": (summary.get("generate") or {}).get("stored"), "ppo_stored": (summary.get("ppo") or {}).get("stored"),
            "eval_examples": preset.eval_limit,
            "accuracy": {name: systems[name]["accuracy"] for name in SYSTEMS if name in systems},
            "full_test": {k: round(v, 4) for k, v in full.items()},
            "beta": systems.get("student_retrieval", {}).get("beta")}


def write(data: dict, out: Path) -> None:
    write_report(out, "quick_run", data, render(data), __file__, newline=False)


def render(data: dict) -> str:
    rows = data["runs"]
    # Reports from before the settings were kept in the JSON were written with the preset as it is now.
    settings = data.get("settings", PRESETS["quick"].overrides)
    eval_limit = data.get("eval_limit", PRESETS["quick"].eval_limit)
    lines = ["# Quick classroom run (`run --preset quick`)", "",
             f"Settings: {json.dumps(settings)}; evaluation on the first {eval_limit} "
             "test examples. Default-settings accuracy (whole test split, same seed) from `accuracy.json`.", "",
             "| task | seed | threads | wall min | stages s (load / score / tune / generate / PPO / student) | stored (step 1 + PPO) "
             "| teacher | student | plain KD | student + retrieval (beta) | whole test split: student / + retrieval "
             "| default run, whole test split: student / + retrieval |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        a, d = r["accuracy"], default_accuracy(r["task"], r["seed"]) or {}
        stages = " / ".join("–" if v is None else f"{v:.0f}" for v in r["stages"].values())
        dflt = d.get("student_retrieval")
        lines.append(f"| {r['task']} | {r['seed']} | {r.get('threads', '')} | {r['seconds'] / 60:.1f} | {stages} | {r['stored']} + "
                     f"{r['ppo_stored'] or 0} | " + " | ".join(f"{100 * a[s]:.1f}" if s in a else "–" for s in SYSTEMS[:3])
                     + f" | {100 * a.get('student_retrieval', 0):.1f} ({r['beta']}) | "
                     + (f"{100 * r['full_test']['student']:.1f} / {100 * r['full_test']['student_retrieval']:.1f}"
                        if r.get("full_test") else "–") + " | "
                     + (f"{100 * d['student']:.1f} / {100 * dflt:.1f}" if isinstance(dflt, (int, float)) else "–")
                     + " |")
    lines += ["", f"Mean wall time: {mean_std([r['seconds'] / 60 for r in rows])} min over {len(rows)} run(s)."]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[13])
    parser.add_argument("--task", default="SST-2")
    parser.add_argument("--workspace", default=str(ROOT.parent / "workspace"))
    parser.add_argument("--out", default=str(ROOT / "results"))
    parser.add_argument("--previous", help="earlier quick_run.json whose runs are kept")
    parser.add_argument("--threads", type=int, default=job_threads(),
                        help="torch threads (default: what the studio gives its jobs, as the Classroom tab runs it)")
    parser.add_argument("--render", action="store_true",
                        help="run nothing: rewrite quick_run.md from quick_run.json in --out")
    args = parser.parse_args()
    if args.render:
        write(json.loads((Path(args.out) / "quick_run.json").read_text(encoding="utf-8")), Path(args.out))
        return 0
    torch.set_num_threads(args.threads)
    rows = json.loads(Path(args.previous).read_text())["runs"] if args.previous else []
    for seed in args.seeds:
        rows.append(one(args.task, seed, Path(args.workspace)))
        write({"machine": platform.machine(), "cpus": os.cpu_count(), "settings": PRESETS["quick"].overrides,
               "eval_limit": PRESETS["quick"].eval_limit, "runs": rows}, Path(args.out))
        print(json.dumps(rows[-1]), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
