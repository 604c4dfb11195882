"""Step-2 benchmark: step-1 samples vs after-PPO samples on CB and RTE with the packaged teacher.

Usage: python bench/ppo.py [--tasks CB RTE] [--updates 3] [--samples-per-label 8] [--cache DIR]

For each task one step-1 run is made in a temporary workspace (small settings, so the whole bench fits in
about 20 CPU minutes), then PPO tunes its soft prompt and the same number of samples is generated with the same
generation config and seed. Both sample sets are measured the same way: parse rate, label consistency (the
step-1 scorer's probability of the intended label, and its agreement rate), Self-BLEU, mean pairwise cosine of
sentence embeddings (all pairs and within a label), duplicate rate, and the PPO wall time per update.
Writes `bench/results/ppo.json` and `bench/results/ppo.md`.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from retrikt.config import GenerationConfig, PPOConfig, PromptTuningConfig, RunConfig, ScorerConfig  # noqa: E402
from retrikt.store.embed import default_embedder  # noqa: E402
from retrikt.generate.metrics import duplicate_rate, self_bleu  # noqa: E402
from retrikt.context import load_context  # noqa: E402
from retrikt.generate.stage import run_generate  # noqa: E402
from retrikt.ppo.stage import stage_ppo  # noqa: E402

METRICS = [
    ("generated", "samples generated", "{:d}"),
    ("parse_rate", "parse rate", "{:.3f}"),
    ("label_consistency", "label consistency (mean p(intended))", "{:.3f}"),
    ("teacher_agreement", "teacher agrees with intended label", "{:.3f}"),
    ("self_bleu", "Self-BLEU (lower = more diverse)", "{:.3f}"),
    ("mean_pairwise_cosine", "mean pairwise cosine, all pairs", "{:.3f}"),
    ("within_label_cosine", "mean pairwise cosine, within label", "{:.3f}"),
    ("duplicate_rate", "duplicate rate", "{:.3f}"),
    ("mean_tokens", "mean tokens per sample", "{:.1f}"),
]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def mean_pairwise(vectors: np.ndarray) -> float | None:
    if len(vectors) < 2:
        return None
    sims = vectors @ vectors.T
    upper = np.triu_indices(len(vectors), k=1)
    return float(sims[upper].mean())


def sample_metrics(task, samples, scorer, embedder) -> dict:
    """The same measurements for any list of GeneratedSample."""
    parsed = [s for s in samples if s.fields is not None]
    texts = [task.serialize(s.fields) for s in parsed]
    out = {"generated": len(samples), "parsed": len(parsed),
           "parse_rate": len(parsed) / len(samples) if samples else 0.0,
           "self_bleu": self_bleu(texts), "duplicate_rate": duplicate_rate(texts),
           "mean_tokens": float(np.mean([s.tokens for s in samples])) if samples else 0.0}
    if not parsed:
        return {**out, "label_consistency": None, "teacher_agreement": None, "mean_pairwise_cosine": None,
                "within_label_cosine": None}
    probs = scorer.probs([s.fields for s in parsed])
    intended = np.array([task.labels.index(s.label) for s in parsed])
    vectors = np.asarray(embedder.encode(texts))
    within = [mean_pairwise(vectors[intended == i]) for i in range(len(task.labels))]
    within = [w for w in within if w is not None]
    return {**out, "label_consistency": float(probs[np.arange(len(parsed)), intended].mean()),
            "teacher_agreement": float((probs.argmax(1) == intended).mean()),
            "mean_pairwise_cosine": mean_pairwise(vectors),
            "within_label_cosine": float(np.mean(within)) if within else None}


def bench_task(task: str, args, workspace: Path) -> dict:
    config = RunConfig(
        task=task, seed=13, workspace=str(workspace), run_name=f"bench-ppo-{task}",
        # design choice: small step-1 settings (one demo set, few tuning steps) so PPO gets most of the time.
        scorer=ScorerConfig(demo_candidates=1, calibration_inputs=32),
        prompt_tuning=PromptTuningConfig(steps=args.tune_steps, batch_size=4),
        generation=GenerationConfig(samples_per_label=args.samples_per_label, batch_size=args.samples_per_label,
                                    max_new_tokens=args.max_new_tokens, seed=13),
        ppo=PPOConfig(updates=args.updates, rollout_batch_size=args.rollout_batch_size,
                      minibatch_size=max(1, args.rollout_batch_size // 2), epochs=args.epochs,
                      max_new_tokens=args.max_new_tokens, learning_rate=args.learning_rate,
                      checkpoint_every=max(1, args.updates)),
    )
    captured: dict[str, list] = {"step1": [], "ppo": []}
    phase = ["step1"]
    last = [0.0]

    def progress(stage, done, total, info):
        if stage == "generate" and info.get("samples"):
            captured[phase[0]].extend(info["samples"])
        if stage == "ppo" or time.perf_counter() - last[0] > 30 or done == total:
            last[0] = time.perf_counter()
            log(f"{task} {phase[0]} {stage} {done}/{total} {info.get('message', '')}")

    started = time.perf_counter()
    run = run_generate(config, progress)
    step1_seconds = time.perf_counter() - started
    phase[0] = "ppo"
    started = time.perf_counter()
    ctx = load_context(config, run=run)
    ppo = stage_ppo(ctx, progress)
    ppo_seconds = time.perf_counter() - started
    embedder = default_embedder()
    history = [e for e in run.read_log() if e["event"] == "ppo_update"]
    return {
        "task": task,
        "step1": sample_metrics(ctx.task, captured["step1"], ctx.scorer, embedder),
        "ppo": sample_metrics(ctx.task, captured["ppo"], ctx.scorer, embedder),
        "seconds_per_update": ppo.get("seconds_per_update"),
        "step1_seconds": round(step1_seconds, 1), "ppo_stage_seconds": round(ppo_seconds, 1),
        "prompt_shift": ppo.get("prompt_shift"), "stored_ppo_entries": ppo.get("stored"),
        "step1_summary": {k: run.summary().get(k) for k in ("score", "tune", "generate")},
        "updates": [{k: e[k] for k in ("update", "key", "reward", "reward_terms", "kl", "kl_coef", "policy_loss",
                                       "value_loss", "clip_fraction", "entropy", "tokens", "stopped", "seconds")}
                    for e in history],
    }


def _fmt(value, pattern) -> str:
    if value is None:
        return "–"
    return pattern.format(int(value) if pattern == "{:d}" else value)


def write_results(results: list[dict], args, total_seconds: float) -> None:
    out = ROOT / "results"
    out.mkdir(exist_ok=True)
    settings = {k: getattr(args, k) for k in ("updates", "rollout_batch_size", "epochs", "learning_rate",
                                              "samples_per_label", "max_new_tokens", "tune_steps")}
    (out / "ppo.json").write_text(json.dumps({"settings": settings, "total_seconds": round(total_seconds, 1),
                                              "torch_threads": torch.get_num_threads(), "results": results},
                                             indent=2), encoding="utf-8")
    header = "| metric | " + " | ".join(f"{r['task']} step 1 | {r['task']} after PPO" for r in results) + " |"
    lines = [
        "# Step 2 (PPO on the soft prompt): step-1 vs after-PPO samples",
        "",
        f"Packaged SmolLM2-135M teacher on CPU, 1 thread, seed 13, one run per task; "
        f"total {total_seconds / 60:.1f} min.",
        f"Settings: {json.dumps(settings)}. Both sample sets use the same generation config and seed; label "
        "consistency is measured with the run's step-1 scorer on parsed samples.",
        "",
        header,
        "|" + "---|" * (1 + 2 * len(results)),
    ]
    for key, name, pattern in METRICS:
        cells = []
        for r in results:
            cells += [_fmt(r["step1"].get(key), pattern), _fmt(r["ppo"].get(key), pattern)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    cells = []
    for r in results:
        cells += ["", _fmt(r["seconds_per_update"], "{:.1f}")]
    lines.append("| PPO wall time per update (s) | " + " | ".join(cells) + " |")
    lines += ["", "PPO updates (label, mean reward before KL, KL to the step-1 prompt in nats, seconds):", ""]
    for r in results:
        steps = ", ".join(f"{u['key']} {u['reward']:.3f} / {u['kl']:.2f} / {u['seconds']:.0f}s" for u in r["updates"])
        lines.append(f"- {r['task']}: {steps}; relative prompt shift {r['prompt_shift']}")
    (out / "ppo.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["CB", "RTE"])
    parser.add_argument("--updates", type=int, default=3)
    parser.add_argument("--rollout-batch-size", dest="rollout_batch_size", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--learning-rate", dest="learning_rate", type=float, default=0.01)
    parser.add_argument("--samples-per-label", dest="samples_per_label", type=int, default=8)
    parser.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, default=96)
    parser.add_argument("--tune-steps", dest="tune_steps", type=int, default=8)
    parser.add_argument("--cache", default="workspace/cache", help="teacher conversion cache to reuse")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="retrikt-ppo-bench-") as tmp:
        workspace = Path(tmp)
        cache = Path(args.cache).resolve()
        cache.mkdir(parents=True, exist_ok=True)
        (workspace / "cache").symlink_to(cache, target_is_directory=True)
        for task in args.tasks:
            log(f"{task}: start")
            results.append(bench_task(task, args, workspace))
            write_results(results, args, time.perf_counter() - started)
            log(f"{task}: done")
    write_results(results, args, time.perf_counter() - started)
    print((ROOT / "results" / "ppo.md").read_text())


if __name__ == "__main__":
    main()
