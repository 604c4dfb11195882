"""Teacher soft-label scoring throughput: the one-query-per-pass path and the earlier batched path (input order,
full-vocabulary head on every position) against length-sorted batches that apply the head to the answer position
only, all on the same inputs and demonstrations in one process.

Usage: python -m bench.teacher_throughput [--n 160] [--threads 1 2] [--workspace DIR]
       python -m bench.teacher_throughput --render   # rewrite the md from the JSON, timing nothing

Inputs: the first N whole SST-2 train sentences of `unlabeled-sentences.jsonl` (a fixed shuffle). Demonstrations: two
per label from the seed-13 train split. Checks that every path gives the same probabilities (max abs difference)
and writes `bench/results/teacher_throughput.{md,json}`.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import random
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402
import torch  # noqa: E402

from retrikt.config import ScorerConfig, TeacherConfig  # noqa: E402
from retrikt.teacher.scorer import TeacherScorer  # noqa: E402
from retrikt.tasks import load_builtin  # noqa: E402
from retrikt.tasks.builtin import teacher_pool  # noqa: E402
from retrikt.teacher.load import load_teacher  # noqa: E402

from bench.report import write_report  # noqa: E402

ROOT = Path(__file__).resolve().parent


def whole_sentences(task_name: str = "SST-2") -> list[dict]:
    return teacher_pool(load_builtin(task_name))


@torch.no_grad()
def legacy_batch(scorer: TeacherScorer, fields_list) -> np.ndarray:
    """The scorer's earlier forward pass: queries in the order given, logits over the whole vocabulary at every
    position, then the answer position's verbalizer columns."""
    teacher, task = scorer.teacher, scorer.task
    queries = [teacher.encode(task.classification_prompt(f)) for f in fields_list]
    ids, mask, cache = scorer._batch_inputs(queries)
    out = teacher.model(input_ids=ids, attention_mask=mask, past_key_values=cache, use_cache=True)
    last = torch.tensor([len(q) - 1 for q in queries])
    logits = out.logits[torch.arange(len(queries)), last][:, scorer.verbalizer_ids]
    return logits.float().softmax(-1).numpy()


@torch.no_grad()
def no_cache_single(scorer: TeacherScorer, fields) -> np.ndarray:
    """Whole prompt (demonstrations + query) in one pass, no prefix cache: the plain unbatched scorer."""
    teacher, task = scorer.teacher, scorer.task
    ids = teacher.encode(scorer._prefix_text) + teacher.encode(task.classification_prompt(fields))
    logits = teacher.model(torch.tensor([ids])).logits[0, -1, scorer.verbalizer_ids]
    return logits.float().softmax(-1).numpy()[None]


def run_path(name: str, fn, inputs, batch: int) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    rows = [fn(inputs[i : i + batch]) for i in range(0, len(inputs), batch)]
    return np.concatenate(rows), time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=160)
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--workspace", default=str(ROOT.parent / "workspace"))
    parser.add_argument("--out", default=str(ROOT / "results"))
    parser.add_argument("--int8", action="store_true", help="also int8 dynamic quantization of the decoder's "
                        "linear layers (not exact: reported with its difference and argmax agreement)")
    parser.add_argument("--render", action="store_true", help="rewrite the md from the JSON in --out, timing nothing")
    args = parser.parse_args(argv)
    if args.render:
        write(json.loads((Path(args.out) / "teacher_throughput.json").read_text(encoding="utf-8")), Path(args.out))
        return 0
    torch.set_num_threads(1)
    task = load_builtin("SST-2", seed=13)
    teacher = load_teacher(TeacherConfig(), cache_dir=Path(args.workspace) / "cache")
    pool = whole_sentences()
    random.Random(0).shuffle(pool)
    inputs = pool[: args.n]
    by_label = {label: [e.uid for e in task.train if e.label == label][:2] for label in task.labels}
    demos = [by_label["negative"][0], by_label["positive"][0], by_label["negative"][1], by_label["positive"][1]]
    prior = [0.5, 0.5]
    tokens = [len(teacher.encode(task.classification_prompt(f))) for f in inputs]
    results = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        paths = {}

        def new_path(batch):
            scorer = TeacherScorer(teacher, task, ScorerConfig(batch_size=batch), seed=13)
            scorer.use_demos(demos, prior)
            return scorer

        base = new_path(16)
        # warm-up (allocator, kernels)
        legacy_batch(base, inputs[:4])
        new_path(16).raw_probs(inputs[:4])  # a fresh scorer per path: nothing is read from a score cache
        few = inputs[:32]
        probs, seconds = run_path("nc", lambda b: no_cache_single(base, b[0]), few, 1)
        paths["unbatched, whole prompt (no prefix cache; first 32 inputs)"] = ((probs, seconds * len(inputs) / len(few)), 1)
        paths["unbatched (prefix cache, batch 1)"] = (run_path("b1", lambda b: legacy_batch(base, b), inputs, 1), 1)
        paths["earlier batched path (batch 16, input order, full head)"] = (
            run_path("b16", lambda b: legacy_batch(base, b), inputs, 16), 16)
        for batch in (16, 32, 64):
            scorer = new_path(batch)
            started = time.perf_counter()
            probs = scorer.raw_probs(inputs)
            paths[f"length-sorted, answer-position head (batch {batch})"] = ((probs, time.perf_counter() - started), batch)
        if args.int8:
            from torch.ao.quantization import quantize_dynamic

            from retrikt.teacher.load import Teacher

            model = copy.deepcopy(teacher.model)
            model.model = quantize_dynamic(model.model, {torch.nn.Linear}, dtype=torch.qint8)
            small = Teacher(model, teacher.tokenizer, teacher.name, teacher.device, teacher.dtype, 0.0)
            scorer = TeacherScorer(small, task, ScorerConfig(batch_size=16), seed=13)
            scorer.use_demos(demos, prior)
            scorer.raw_probs(inputs[:4])
            scorer._raw_cache.clear()
            started = time.perf_counter()
            probs = scorer.raw_probs(inputs)
            paths["int8 dynamic decoder, length-sorted (batch 16; not exact)"] = ((probs, time.perf_counter() - started), 16)
        reference = paths["unbatched (prefix cache, batch 1)"][0][0]
        for name, ((probs, seconds), batch) in paths.items():
            if "first 32" in name:
                ref = reference[: len(probs)]
            else:
                ref = reference
            results.append({"threads": threads, "path": name, "batch": batch, "inputs": len(inputs),
                            "seconds": round(seconds, 2), "inputs_per_s": round(len(inputs) / seconds, 2),
                            "max_abs_diff_vs_unbatched": float(np.abs(probs - ref).max()),
                            "argmax_agreement": float((probs.argmax(1) == ref.argmax(1)).mean())})
            print(json.dumps(results[-1]), flush=True)
    unbatched = {r["threads"]: r["inputs_per_s"] for r in results if r["path"].startswith("unbatched (prefix")}
    for r in results:
        r["speedup_vs_unbatched"] = round(r["inputs_per_s"] / unbatched[r["threads"]], 2)
    report = {"inputs": len(inputs), "mean_query_tokens": float(np.mean(tokens)), "prefix_tokens": base._prefix_len,
              "teacher": teacher.name, "teacher_params": teacher.n_params, "results": results}
    write(report, Path(args.out))
    print(render(report))
    return 0


def write(report: dict, out: Path) -> None:
    write_report(out, "teacher_throughput", report, render(report), __file__, newline=False)


def render(report: dict) -> str:
    lines = ["# Teacher scoring throughput (SST-2 soft labels, CPU)", "",
             f"{report['inputs']} whole SST-2 train sentences ({report['mean_query_tokens']:.1f} query tokens on "
             f"average after a {report['prefix_tokens']}-token 4-shot prefix), {report['teacher']}, fp32.",
             "", "| torch threads | path | batch | inputs/s | speed-up vs unbatched | max abs diff of probabilities | argmax agreement |",
             "|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        lines.append(f"| {r['threads']} | {r['path']} | {r['batch']} | {r['inputs_per_s']:.2f} | "
                     f"{r['speedup_vs_unbatched']:.2f}x | {r['max_abs_diff_vs_unbatched']:.1e} | "
                     f"{100 * r['argmax_agreement']:.1f}% |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
