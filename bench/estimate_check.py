"""How close the studio's time estimate comes to the real wall time: estimate a run from the runs already finished in
the workspace, then run it (as a studio job would: the job's torch threads) and compare, step by step.

Usage: python -m bench.estimate_check --task SST-2 [--preset quick] [--set KEY=VALUE ...] [--workspace DIR]
       [--previous bench/results/estimate.json]
       python -m bench.estimate_check --render   # rewrite the md's table from estimate.json, running nothing

The estimate is what Setup shows (`retrikt.estimate`): unit costs measured by the workspace's finished runs on the
same number of threads, times this config's work. Writes `bench/results/estimate.{md,json}` (appending to
`--previous`).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from retrikt.config import PRESETS, RunConfig, apply_preset, override, parse_sets
from retrikt.estimate import estimate, measured_seconds, unit_costs
from retrikt.jobs import job_threads
from retrikt.runs import open_run
from retrikt.tasks import resolve_task
from retrikt.workflow import run_all

from bench.report import replace_table, write_json

ROOT = Path(__file__).resolve().parent


def replay(args) -> int:
    """Recompute each recorded row's estimate with today's estimator from the runs it had then (`based_on`)."""
    data = json.loads(Path(args.replay).read_text(encoding="utf-8"))
    threads = job_threads()
    for row in data["runs"]:
        config = open_run(args.workspace, row["run"]).config
        task = resolve_task(config.task, config.seed, args.workspace)
        limit = PRESETS[row["preset"]].eval_limit if row.get("preset") else None
        found = estimate(config, task, args.workspace, threads, limit, only=row["based_on"])
        row["estimate"], row["estimate_total"] = found.seconds, found.total
    write(data["runs"], Path(args.out))
    return 0


def write(rows: list[dict], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "estimate.json", {"runs": rows}, __file__, newline=False)
    lines = ["Each row: the estimate Setup would show before the run (from the runs already finished in the workspace, "
             "same torch threads as a studio job), then the run's measured time. Error = estimate / actual − 1.", "",
             "| task | settings | estimated from | estimate min | actual min (whole run) | error | per stage: estimate / actual s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        stages = ", ".join(f"{k} {r['estimate'].get(k) or 0:.0f}/{v:.0f}" for k, v in r["actual"].items())
        total = r["estimate_total"]
        error = f"{100 * (total / r['wall_seconds'] - 1):+.0f}%" if total else "–"
        lines.append(f"| {r['task']} s{r['seed']} | {r['preset'] or 'default'} {' '.join(r['set'])} | "
                     f"{', '.join(r['based_on']) or 'nothing'} | {total / 60 if total else 0:.1f} | "
                     f"{r['wall_seconds'] / 60:.1f} | {error} | {stages} |")
    replace_table(out / "estimate.md", "\n".join(lines), __file__, "# Time estimate vs actual wall time\n\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="SST-2")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--preset", choices=sorted(PRESETS))
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--workspace", default=str(ROOT.parent / "workspace"))
    parser.add_argument("--out", default=str(ROOT / "results"))
    parser.add_argument("--previous")
    parser.add_argument("--replay", help="an estimate.json: recompute its estimates with this estimator, run nothing")
    parser.add_argument("--render", action="store_true",
                        help="rewrite the md's table from estimate.json in --out, recomputing nothing")
    args = parser.parse_args()
    if args.render:
        write(json.loads((Path(args.out) / "estimate.json").read_text(encoding="utf-8"))["runs"], Path(args.out))
        return 0
    if args.replay:
        return replay(args)
    threads = job_threads()
    torch.set_num_threads(threads)
    config = apply_preset(RunConfig(workspace=args.workspace), args.preset)
    config = override(config, {**parse_sets(args.set), "task": args.task, "seed": args.seed,
                               "run_name": f"estimate-{args.task}-s{args.seed}-{int(time.time())}"})
    task = resolve_task(config.task, config.seed, args.workspace)
    limit = PRESETS[args.preset].eval_limit if args.preset else None
    found = estimate(config, task, args.workspace, threads, limit)
    started = time.perf_counter()
    run = run_all(config, eval_limit=limit)
    wall = time.perf_counter() - started
    actual = measured_seconds(open_run(args.workspace, run.name))
    row = {"run": run.name, "task": args.task, "seed": args.seed, "preset": args.preset, "set": args.set, "threads": threads,
           "estimate": found.seconds, "based_on": sorted({n for names in found.based_on.values() for n in names}),
           "actual": actual, "wall_seconds": round(wall, 1), "estimate_total": found.total,
           "unit_costs": unit_costs(open_run(args.workspace, run.name))}
    rows = json.loads(Path(args.previous).read_text())["runs"] if args.previous else []
    rows.append(row)
    write(rows, Path(args.out))
    print(json.dumps(row, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
