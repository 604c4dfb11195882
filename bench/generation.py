"""Step-1 benchmark: the full `generate` pipeline on a task, then batched vs one-at-a-time sampling in the same process.

    python -m bench.generation --task SST-2 [--task RTE] [--baseline-samples 16]
    python -m bench.generation --task SST-2 --workspace DIR --speed-only   # re-time sampling on a finished run
    python -m bench.generation --render   # rewrite generation.md from generation.json, running nothing

Writes bench/results/generation.json and generation.md (appending/replacing the task's row).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from retrikt.config import RunConfig, override
from retrikt.generate.generation import default_max_new_tokens
from retrikt.context import load_context, open_store
from retrikt.generate.prompt_tuning import load_soft_prompt
from retrikt.runs import open_run
from retrikt.teacher.sampling import prompt_embeddings, sample

from bench.report import entries, write_json, write_md

RESULTS = Path(__file__).resolve().parent / "results"


def sampling_speed(ctx, label: str, n: int, batch_size: int, max_new: int, seed: int) -> dict:
    """Time `n` samples of one label drawn `batch_size` at a time (1 = the one-at-a-time baseline)."""
    prompt_ids = ctx.teacher.encode(ctx.task.generation_prompt(label))
    generator = torch.Generator().manual_seed(seed)
    tokens = 0
    start = time.perf_counter()
    for offset in range(0, n, batch_size):
        size = min(batch_size, n - offset)
        embeds = prompt_embeddings(ctx.teacher.model, ctx.soft_prompt, prompt_ids, size)
        out = sample(ctx.teacher.model, ctx.teacher.tokenizer, embeds, max_new_tokens=max_new,
                     temperature=0.9, top_p=0.95, generator=generator)
        tokens += int(out.mask.sum())
    seconds = time.perf_counter() - start
    return {"batch_size": batch_size, "samples": n, "seconds": round(seconds, 2),
            "samples_per_second": round(n / seconds, 3), "tokens_per_second": round(tokens / seconds, 2)}


def measure_speed(workspace: str, run_name: str, baseline_samples: int) -> tuple[object, dict]:
    """Batched sampling (two full batches) vs one at a time (`baseline_samples`), same process, same soft prompt."""
    run = open_run(workspace, run_name)
    config = run.config
    ctx = load_context(config, run=run)
    ctx.soft_prompt = load_soft_prompt(run.adapter_dir)
    label = ctx.task.labels[0]
    max_new = config.generation.max_new_tokens or default_max_new_tokens(ctx.task, ctx.teacher.tokenizer,
                                                                         config.generation)
    batch = config.generation.batch_size
    batched = sampling_speed(ctx, label, 2 * batch, batch, max_new, 7)
    single = sampling_speed(ctx, label, baseline_samples, 1, max_new, 7)
    pipeline = run.summary()["generate"]["samples_per_second"]
    return ctx, {"batched": batched, "one_at_a_time": single,
                 "speedup": round(batched["samples_per_second"] / single["samples_per_second"], 2),
                 "pipeline_speedup": round(pipeline / single["samples_per_second"], 2)}


def bench_task(task: str, workspace: str, baseline_samples: int, overrides: dict) -> dict:
    config = override(RunConfig(), {"task": task, "workspace": workspace, "run_name": f"bench-{task}", **overrides})
    from retrikt.generate.stage import run_generate

    # Cached teacher scores from an earlier bench would make the score stage look free.
    shutil.rmtree(Path(workspace) / "cache" / "scores", ignore_errors=True)
    start = time.perf_counter()
    run = run_generate(config, lambda *a: None)
    wall = time.perf_counter() - start
    summary = run.summary()
    ctx, speed = measure_speed(workspace, run.name, baseline_samples)
    store = open_store(ctx)
    examples = {}
    for lab in ctx.task.labels:
        entries = store.list(label=lab, source="generated:step1", limit=3)
        examples[lab] = [{"text": e.text, "teacher": e.teacher_label,
                          "p_intended": round(e.soft_labels[lab], 3)} for e in entries]
    return {
        "task": task, "wall_seconds": round(wall, 1), "load_average_1m": os.getloadavg()[0],
        "summary": summary, **speed, "store_count": store.count(), "examples": examples,
    }


def markdown(results: dict) -> str:
    results = entries(results)
    lines = ["# Step 1: the `generate` pipeline, and batched vs one-at-a-time sampling", "",
             "| task | wall (s) | load (s) | score (s) | tune (s) | generate (s) | label+store (s) | generated | "
             "parse rate | stored | teacher agreement | Self-BLEU | dup rate | batched samples/s | 1-at-a-time "
             "samples/s | speed-up | pipeline samples/s (speed-up) |", "|" + "---|" * 17]
    for r in results.values():
        s, g = r["summary"], r["summary"]["generate"]
        lines.append(
            f"| {r['task']} | {r['wall_seconds']} | {s['load_seconds']} | {s['score']['seconds']} | "
            f"{s['tune']['seconds']} | {g['generate_seconds']} | {g['label_and_store_seconds']} | {g['generated']} | "
            f"{g['parse_rate']:.2%} | {g['stored']} | {g['teacher_agreement']:.2%} | {g['self_bleu']:.3f} | "
            f"{g['duplicate_rate']:.2%} | {r['batched']['samples_per_second']} | "
            f"{r['one_at_a_time']['samples_per_second']} | {r['speedup']}x | "
            f"{g['samples_per_second']} ({r.get('pipeline_speedup', '-')}x) |")
    lines.append("")
    for r in results.values():
        lines.append(f"### {r['task']}: sample generations (teacher label, teacher p(intended))")
        for label, rows in r["examples"].items():
            for row in rows:
                lines.append(f"- **{label}** ({row['teacher']}, {row['p_intended']}): {row['text']!r}")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", action="append", default=[])
    parser.add_argument("--baseline-samples", type=int, default=16)
    parser.add_argument("--workspace", default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--speed-only", action="store_true",
                        help="re-measure only the sampling speeds on the finished bench-TASK runs of --workspace")
    parser.add_argument("--render", action="store_true", help="rewrite generation.md from generation.json")
    args = parser.parse_args()
    if not (args.task or args.render):
        parser.error("--task is required (unless --render)")
    import yaml

    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    workspace = args.workspace or tempfile.mkdtemp(prefix="retrikt-bench-")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "generation.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    if args.render:
        write_json(path, results, __file__, newline=False)
        write_md(RESULTS / "generation.md", markdown(results), __file__)
    for task in args.task:
        if args.speed_only:
            results[task].update(measure_speed(workspace, f"bench-{task}", args.baseline_samples)[1],
                                 speed_load_average_1m=os.getloadavg()[0])
        else:
            results[task] = bench_task(task, workspace, args.baseline_samples, overrides)
        write_json(path, results, __file__, newline=False)
        write_md(RESULTS / "generation.md", markdown(results), __file__)
        print(markdown({task: results[task]}), flush=True)


if __name__ == "__main__":
    main()
