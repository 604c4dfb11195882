"""Accuracy benchmark: the whole pipeline (step 1 + student + evaluation) per task and seed on the embedded teacher.

Usage: python -m bench.accuracy [--tasks SST-2 CB ...] [--seeds 13 21 ...] [--workspace DIR] [--hours H]
       python -m bench.accuracy --render   # rewrite accuracy.md from accuracy.json, running nothing

Step-1 runs are named `bench-<task>-s<seed>` and reused when a finished one exists, and so are finished
evaluations (unless `--retrain`), so an interrupted benchmark resumes. Writes `bench/results/accuracy.md` and
`accuracy.json` with mean +- std per system and task, speed, and every run's numbers. Order: SST-2 for two seeds,
one seed of every other task, then the remaining seeds; `--hours` stops starting new runs after that long (the
report lists what did not run). `--previous bench/results/accuracy.json` keeps an earlier report's runs (e.g. another
machine's) for every (task, seed) not run now.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch

from retrikt.config import RunConfig, override
from retrikt.student.evaluate import SYSTEMS
from retrikt.runs import Run, open_run, read_summary, run_path
from retrikt.student.stage import run_student
from retrikt.teacher.load import load_teacher

from bench.report import write_json, write_md
from bench.stats import mean_std

ROOT = Path(__file__).resolve().parent

TASKS = ("SST-2", "CB", "RTE", "COPA", "BoolQ", "WiC", "MRPC")
SEEDS = (13, 21, 42, 87, 100)
# design choice: moderate generation sizes so every task fits on a CPU; pair tasks write long samples.
SAMPLES_PER_LABEL = {"SST-2": 260, "CB": 40, "RTE": 60, "COPA": 60, "BoolQ": 40, "WiC": 60, "MRPC": 60}
# BoolQ's 3270 long test passages would take the teacher hours per seed on one thread; a fixed subset is scored.
EVAL_LIMIT = {"BoolQ": 300}
EXTRA_METRIC = {"CB": "macro_f1", "MRPC": "f1"}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def step1(workspace: Path, task: str, seed: int, progress) -> str:
    """A finished step-1 run for (task, seed): reused when present, else generated."""
    from retrikt.generate.stage import run_generate

    name = f"bench-{task}-s{seed}"
    folder = run_path(workspace, name)
    if read_summary(workspace, name).get("status") == "done":
        log(f"{name}: reusing step-1 run")
        return name
    shutil.rmtree(folder, ignore_errors=True)  # an unfinished bench run cannot be resumed mid-stage
    config = override(RunConfig(), {"task": task, "seed": seed, "workspace": str(workspace), "run_name": name,
                                     "generation.samples_per_label": SAMPLES_PER_LABEL[task],
                                     "generation.seed": seed})
    started = time.perf_counter()
    run_generate(config, progress)
    log(f"{name}: step 1 done in {time.perf_counter() - started:.0f}s")
    return name


def one_job(workspace: Path, task: str, seed: int, overrides: dict, teacher, retrain: bool) -> dict:
    """Step 1 (reused when finished) + student + evaluation; a finished evaluation is reused unless `retrain`."""
    name = step1(workspace, task, seed, quiet_progress)
    if Run(run_path(workspace, name)).eval_summary_path.is_file() and not retrain:
        log(f"{name}: reusing its evaluation")
    else:
        config = override(RunConfig(), {"task": task, "seed": seed, "workspace": str(workspace),
                                        **{k if k.startswith("student.") else f"student.{k}": v
                                           for k, v in overrides.items()}})
        started = time.perf_counter()
        run_student(config, name, quiet_progress, eval_limit=EVAL_LIMIT.get(task), teacher=teacher)
        log(f"{name}: student + evaluation in {time.perf_counter() - started:.0f}s")
    summary = json.loads(Run(run_path(workspace, name)).eval_summary_path.read_text())
    run_summary = open_run(workspace, name).summary()
    summary["store"] = run_summary.get("generate", {}).get("stored")
    summary["parse_rate"] = run_summary.get("generate", {}).get("parse_rate")
    summary["max_new_tokens"] = run_summary.get("generate", {}).get("max_new_tokens")
    summary["student_block"] = {k: run_summary.get("student", {}).get(k) for k in ("beta_dev_accuracy", "items")}
    return summary


def job_order(tasks: list[str], seeds: list[int]) -> list[tuple[str, int]]:
    """SST-2 (the goal task) for two seeds first, then one seed of every other task, then the remaining seeds;
    a time budget that runs out still leaves a table covering every task."""
    first, rest = [t for t in tasks if t == "SST-2"], [t for t in tasks if t != "SST-2"]
    jobs = [(t, s) for t in first for s in seeds[:2]] + [(t, seeds[0]) for t in rest]
    jobs += [(t, s) for t in first for s in seeds[2:]] + [(t, s) for s in seeds[1:] for t in rest]
    return jobs


def quiet_progress(stage, done, total, info):
    if done == total or stage in ("student", "plain-kd") and done % 5 == 0:
        extra = info.get("message", "")
        print(f"    {stage:<9} {done}/{total} {extra[:100]}", flush=True)


def aggregate(results: dict[str, list[dict]]) -> dict:
    table = {}
    for task, runs in results.items():
        row = {"seeds": [r["seed"] for r in runs]}
        for system in SYSTEMS:
            accs = [r["systems"][system]["accuracy"] for r in runs if system in r["systems"]]
            row[system] = {"accuracy": accs}
            metric = EXTRA_METRIC.get(task)
            if metric:
                row[system][metric] = [r["systems"][system][metric] for r in runs if system in r["systems"]]
        for key in ("examples_per_s", "latency_ms"):
            for system in ("teacher", "student", "student_retrieval"):
                row.setdefault("speed", {}).setdefault(system, {})[key] = [
                    r["systems"][system][key] for r in runs if system in r["systems"]]
        row["retrieval_overhead"] = [r["systems"]["student_retrieval"]["retrieval_overhead"] for r in runs]
        row["beta"] = [r["systems"]["student_retrieval"]["beta"] for r in runs]
        row["compression_ratio"] = [r["student_params"] / r["teacher_params"] for r in runs]
        row["parse_rate"] = [r["parse_rate"] for r in runs if r.get("parse_rate") is not None]
        row["test_examples"] = runs[0]["test_examples"]
        row["test_total"] = runs[0]["test_total"]
        table[task] = row
    return table


def setfit_runs(path: Path = ROOT / "results" / "setfit.json") -> dict[tuple[str, int], dict]:
    """(task, seed) -> that SetFit run (`bench/setfit_baseline.py`), to set beside the pipeline's runs."""
    if not path.is_file():
        return {}
    return {(r["task"], r["seed"]): r for r in json.loads(path.read_text())["runs"]}


def setfit_cell(task: str, seeds: list[int], setfit: dict) -> str:
    """SetFit accuracy over the same seeds as the pipeline's row, with the seeds it lacks named."""
    accs = [setfit[(task, s)]["accuracy"] / 100 for s in seeds if (task, s) in setfit]
    if not accs:
        return "not run"
    missing = [str(s) for s in seeds if (task, s) not in setfit]
    return mean_std(accs, 100) + (f" on seeds {','.join(s for s in map(str, seeds) if s not in missing)}"
                                  if missing else "")


def teacher_adds(task_runs: list[dict]) -> list[float]:
    """Per run: student + retrieval minus the gold-only student (what the teacher's samples, labels and store add)."""
    return [r["systems"]["student_retrieval"]["accuracy"] - r["systems"]["student_gold"]["accuracy"]
            for r in task_runs if "student_gold" in r["systems"]]


def write_report(table: dict, runs: dict, out: Path, notes: list[str]) -> None:
    names = {"majority": "majority", "teacher": "teacher (few-shot)", "student": "student",
             "student_retrieval": "student + retrieval", "plain_kd": "plain KD", "student_gold": "student, gold only"}
    setfit = setfit_runs()
    lines = ["# Accuracy benchmark (embedded teacher SmolLM2-135M, CPU)", "",
             "Mean ± std over seeds of test accuracy (%), with the number of seeds n. SetFit: "
             "`python -m bench.setfit_baseline` (`setfit.md`), 22.7M parameters, on the same 32 labelled examples and seeds. "
             "Teacher adds: student + retrieval minus the student trained on the gold labels alone, per seed.", ""]
    lines += ["| task | seeds | test n | " + " | ".join(names[s] for s in SYSTEMS) + " | SetFit | teacher adds | "
              "beta (per seed) | student size | step-1 parse rate |",
              "|---|---|---|" + "---|" * len(SYSTEMS) + "---|---|---|---|---|"]
    for task, row in table.items():
        cells = [mean_std(row[s]["accuracy"], 100) for s in SYSTEMS]
        lines.append(f"| {task} | {','.join(map(str, row['seeds']))} | {row['test_examples']}/{row['test_total']} | "
                     + " | ".join(cells) + f" | {setfit_cell(task, row['seeds'], setfit)} | "
                     f"{mean_std(teacher_adds(runs.get(task, [])), 100)} | {','.join(str(b) for b in row['beta'])} | "
                     f"{statistics.mean(row['compression_ratio']):.2%} | {mean_std(row.get('parse_rate', []), 100)} |")
    extra = [(t, r) for t, r in table.items() if t in EXTRA_METRIC]
    if extra:
        lines += ["", "Secondary metric (%): " + ", ".join(f"{t} {EXTRA_METRIC[t]}" for t, _ in extra), "",
                  "| task | " + " | ".join(names[s] for s in SYSTEMS) + " |", "|---|" + "---|" * len(SYSTEMS)]
        for task, row in extra:
            lines.append(f"| {task} | " + " | ".join(mean_std(row[s][EXTRA_METRIC[task]], 100) for s in SYSTEMS) + " |")
    lines += ["", "## Speed (test split, batch 64 for students / 16 for the teacher, 1 CPU thread)", "",
              "| task | teacher ex/s | student ex/s | student + retrieval ex/s | speed-up vs teacher | "
              "retrieval overhead | latency ms (teacher / student + retrieval, batch 1) |", "|---|---|---|---|---|---|---|"]
    for task, row in table.items():
        sp = row["speed"]
        t, s, r = (statistics.mean(sp[x]["examples_per_s"]) if sp[x]["examples_per_s"] else float("nan")
                   for x in ("teacher", "student", "student_retrieval"))
        lt, lr = (statistics.mean(sp[x]["latency_ms"]) if sp[x]["latency_ms"] else float("nan")
                  for x in ("teacher", "student_retrieval"))
        lines.append(f"| {task} | {t:.1f} | {s:.0f} | {r:.0f} | {r / t:.0f}x | "
                     f"{statistics.mean(row['retrieval_overhead']):.1%} | {lt:.0f} / {lr:.1f} |")
    lines += goal_lines(table) + imported_lines() + teacher_scorer_lines()
    lines += ["", "## Runs", ""]
    for task, items in runs.items():
        for r in items:
            accs = ", ".join(f"{s} {r['systems'][s]['accuracy']:.3f}" for s in SYSTEMS if s in r["systems"])
            lines.append(f"- {task} seed {r['seed']}: {accs}; beta {r['systems']['student_retrieval']['beta']}; "
                         f"store {r.get('store', '?')}")
    lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    write_md(out, "\n".join(lines), __file__)


def goal_lines(table: dict) -> list[str]:
    """The step-3 issue's goals, checked against this table's means (a goal on a task not in the table is skipped)."""
    mean = lambda row, system: 100 * statistics.mean(row[system]["accuracy"])  # noqa: E731
    lines = ["", "## Goals", ""]
    if "SST-2" in table:
        row = table["SST-2"]
        mixed, kd = mean(row, "student_retrieval"), mean(row, "plain_kd")
        lines.append(f"- SST-2 student + retrieval ≥ 78.0: {mixed:.1f} ({'met' if mixed >= 78.0 else 'missed'})")
        lines.append(f"- SST-2 student + retrieval ≥ plain KD + 3: {mixed - kd:+.2f} "
                     f"({'met' if mixed - kd >= 3.0 else 'missed'})")
    worse = []
    for task, row in table.items():
        if task == "SST-2":
            continue
        per_seed = [100 * (m - s) for m, s in zip(row["student_retrieval"]["accuracy"], row["student"]["accuracy"])]
        lines.append(f"- {task}: student + retrieval − student alone {statistics.mean(per_seed):+.1f} "
                     f"(worst seed {min(per_seed):+.1f})")
        worse += [task] if statistics.mean(per_seed) < 0 else []
    if len(table) > 1:
        lines.append(f"- never worse than the student alone on the other tasks (mean over seeds): "
                     f"{'met' if not worse else 'missed on ' + ', '.join(worse)}")
    speedups = [statistics.mean(r["speed"]["student_retrieval"]["examples_per_s"])
                / statistics.mean(r["speed"]["teacher"]["examples_per_s"]) for r in table.values()
                if r["speed"]["teacher"]["examples_per_s"]]
    overheads = [statistics.mean(r["retrieval_overhead"]) for r in table.values()]
    if speedups:
        lines.append(f"- speed ≥ 50× the teacher's examples/s: lowest {min(speedups):.0f}× "
                     f"({'met' if min(speedups) >= 50 else 'missed'})")
    lines.append(f"- retrieval overhead ≤ 20% of student time: highest {max(overheads):.1%} "
                 f"({'met' if max(overheads) <= 0.2 else 'missed'})")
    return lines


def imported_lines(path: Path = ROOT / "results" / "user_tasks.json") -> list[str]:
    """Rows for the datasets imported as a user would (`bench/user_tasks.py`: the default `run`, with PPO)."""
    if not path.is_file():
        return []
    runs = json.loads(path.read_text())["runs"]
    lines = ["", "## Imported datasets (the default `run` on a `task import`ed dataset; `user_tasks.md`, sources in "
             "`bench/data/SOURCES.md`)", "",
             "| task | seed | test n | majority | teacher | student | plain KD | student + retrieval (beta) | "
             "student, gold only | S+R − KD | step-1 parse rate |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        acc = {k: 100 * v for k, v in r["accuracy"].items()}
        lines.append(f"| {r['task']} | {r['seed']} | {r['test_examples']} | {acc['majority']:.1f} | "
                     f"{acc['teacher']:.1f} | {acc['student']:.1f} | {acc['plain_kd']:.1f} | "
                     f"{acc['student_retrieval']:.1f} ({r['beta']}) | {acc.get('student_gold', float('nan')):.1f} | "
                     f"{r['sr_minus_kd_points']:+.1f} | {100 * (r['step1'].get('parse_rate') or 0):.1f}% |")
    return lines


def teacher_scorer_lines(path: Path = ROOT / "results" / "teacher_check.json") -> list[str]:
    """A row per imported dataset: the teacher with the old import defaults (letters, the generic question, first
    token) and with the new scorer (label names, every token, the query line chosen), from `bench.teacher_check`."""
    if not path.is_file():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    lines = ["", "## The teacher on imported datasets: old and new scorer (`teacher_check.md`)", "",
             "| task | seed | test n | test majority | teacher, old scorer | teacher, new scorer | query line chosen | "
             "teacher check (dev, 90% CI) | verdict |", "|---|---|---|---|---|---|---|---|---|"]
    for task, settings in data.items():
        if task == "written_by" or "new" not in settings:
            continue
        new, old = settings["new"], settings.get("old")
        check = new["check"]
        lines.append(f"| {task} | {new.get('seed', '')} | {new['test_items']} | {100 * new['test_majority']:.1f} | "
                     + (f"{100 * old['test_accuracy']:.1f}" if old else "") + f" | {100 * new['test_accuracy']:.1f} | "
                     f"`{new['query']}` | {100 * check['accuracy']:.1f} ({100 * check['ci_low']:.0f}–"
                     f"{100 * check['ci_high']:.0f}) | {'knows' if check['knows'] else 'at chance'} |")
    return lines


def with_previous(results: dict, previous: dict) -> tuple[dict, list[str]]:
    """This run's results plus an earlier report's runs for every (task, seed) not run now, ordered by seed."""
    merged, kept = {}, []
    for task in list(results) + [t for t in previous if t not in results]:
        runs = list(results.get(task, []))
        have = {r["seed"] for r in runs}
        for r in previous.get(task, []):
            if r["seed"] not in have:
                runs.append(r)
                kept.append(f"{task}/{r['seed']}")
        merged[task] = sorted(runs, key=lambda r: r["seed"])
    return merged, kept


def report(results: dict, overrides: dict, failed: list[str], skipped: list[str], out: Path, why_skipped: str,
           previous: dict | None = None, extra_notes: list[str] = ()) -> None:
    results, kept = with_previous(results, previous or {})
    if not results:
        return
    table = aggregate(results)
    notes = [f"step-1 samples per label: {', '.join(f'{t} {SAMPLES_PER_LABEL[t]}' for t in results)}",
             f"student overrides: {overrides or 'none (defaults)'}"]
    notes += [f"{t}: evaluated on a fixed random subset of {n} test examples" for t, n in EVAL_LIMIT.items()
              if t in results]
    notes += list(extra_notes) + [f"failed: {f}" for f in failed]
    if skipped:
        notes.append(f"not run ({why_skipped}): {', '.join(skipped)}")
    if kept:
        notes.append(f"taken from an earlier report (`--previous`), not re-run: {', '.join(kept)}")
    write_json(out / "accuracy.json", {"table": table, "runs": results, "notes": notes}, __file__)
    write_report(table, results, out / "accuracy.md", notes)


def render(out: Path) -> None:
    """Rewrite accuracy.md from accuracy.json (its table, runs and notes) without running anything."""
    data = json.loads((out / "accuracy.json").read_text(encoding="utf-8"))
    notes = data.get("notes")
    if notes is None:  # a report from before the notes were kept in the JSON: they are the md's last section
        md = (out / "accuracy.md").read_text(encoding="utf-8")
        notes = [line[2:] for line in md.split("\n## Notes\n", 1)[1].splitlines() if line.startswith("- ")]
    write_json(out / "accuracy.json", {"table": data["table"], "runs": data["runs"], "notes": notes}, __file__)
    write_report(data["table"], data["runs"], out / "accuracy.md", notes)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--workspace", default="workspace")
    parser.add_argument("--hours", type=float, default=None, help="stop starting new runs after this long")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="student config overrides")
    parser.add_argument("--out", default=str(ROOT / "results"))
    parser.add_argument("--retrain", action="store_true", help="retrain students even where an evaluation exists")
    parser.add_argument("--previous", default=None, metavar="JSON",
                        help="an earlier accuracy.json whose runs are kept for every (task, seed) not run now")
    parser.add_argument("--note", action="append", default=[], help="a line for the report's notes (e.g. the "
                                                                    "machine's load while it ran)")
    parser.add_argument("--report-only", action="store_true",
                        help="start nothing: report the finished evaluations (e.g. of benchmarks run in parallel)")
    parser.add_argument("--render", action="store_true",
                        help="start nothing: rewrite accuracy.md from accuracy.json in --out")
    args = parser.parse_args(argv)
    if args.render:
        render(Path(args.out))
        return 0
    torch.set_num_threads(1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import yaml

    workspace, out = Path(args.workspace), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + args.hours * 3600 if args.hours else None
    teacher = load_teacher(RunConfig().teacher, cache_dir=workspace / "cache")
    results: dict[str, list[dict]] = {}
    skipped, failed = [], []
    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    previous = json.loads(Path(args.previous).read_text())["runs"] if args.previous else {}
    for task, seed in job_order(args.tasks, args.seeds):
        finished = Run(run_path(workspace, f"bench-{task}-s{seed}")).eval_summary_path.is_file()
        if (deadline and time.time() > deadline) or (args.report_only and not finished):
            skipped.append(f"{task}/{seed}")
            continue
        log(f"== {task} seed {seed}")
        try:
            summary = one_job(workspace, task, seed, overrides, teacher, args.retrain)
        except Exception as exc:  # noqa: BLE001 - one broken task must not lose hours of finished runs
            log(f"{task} seed {seed} FAILED: {type(exc).__name__}: {exc}")
            failed.append(f"{task}/{seed}: {type(exc).__name__}: {exc}")
            continue
        results.setdefault(task, []).append(summary)
        log(f"{task} seed {seed}: " + ", ".join(f"{s} {summary['systems'][s]['accuracy']:.3f}" for s in SYSTEMS))
        report(results, overrides, failed, skipped, out, "no finished run" if args.report_only else "time budget",
               previous, args.note)
    report(results, overrides, failed, skipped, out, "no finished run" if args.report_only else "time budget",
           previous, args.note)
    log(f"wrote {out / 'accuracy.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
