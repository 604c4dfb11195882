"""Step-2 benchmark: step-1 samples vs after-PPO samples, per reward setting, over seeds (SST-2; CB as control).

Usage: python -m bench.ppo --step1-runs DIR [--task SST-2] [--seeds 13 21] [--variants default gate_margin ...]
                           [--eval-per-label 64] [--workspace DIR] [--out ppo]
       python -m bench.ppo --render [--out ppo]   # rewrite the md from the json, running nothing

Each (seed, variant) copies the step-1 run `bench-<task>-s<seed>` from `--step1-runs` (its adapter, scorer and
store are reused, so step 1 is not re-tuned), runs PPO with the variant's PPOConfig overrides, and generates
`--eval-per-label` samples per label with the tuned prompt. The step-1 arm is the same number of samples from the
step-1 prompt with the same generation config and seed (generated once per seed and cached). Both arms are
measured alike: parse rate, the step-1 scorer's agreement with the intended label, an independent judge's agreement
(SST-2 only: `sst2_judge.py`, trained on the full SST-2 train set), Self-BLEU, distinct-2, mean length, and the
PPO cost (s/update, rollout samples/s, minutes). A task without step-1 runs (the CB control) gets one made here
with small settings. Results are merged into `bench/results/<out>.json` (keyed by task, variant, seed, so runs
can be added later) and the Markdown table is rebuilt from all of them, mean +- std over the seeds run.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402
import torch  # noqa: E402

from retrikt.config import override  # noqa: E402
from retrikt.context import load_context  # noqa: E402
from retrikt.generate.generation import generate_samples  # noqa: E402
from retrikt.generate.metrics import distinct_n, duplicate_rate, self_bleu, tokenize  # noqa: E402
from retrikt.generate.prompt_tuning import load_soft_prompt  # noqa: E402
from retrikt.ppo.stage import restore_scorer, stage_ppo  # noqa: E402
from retrikt.runs import open_run  # noqa: E402
from retrikt.student.stage import BETA_GRID  # noqa: E402

from bench.report import entries, write_json, write_md  # noqa: E402
from bench.stats import mean_std  # noqa: E402

ROOT = Path(__file__).resolve().parent

# name -> (what it changes, PPOConfig fields and ppo_levers.py levers it sets). Every lever tried stays here and in
# the results, kept or not.
VARIANTS = {
    "default": ("the PPOConfig defaults", {}),
    "gate_margin": ("validity as a gate, label term = calibrated margin",
                    {"validity_gate": True, "label_reward": "margin"}),
    "gate_margin_novelty": ("gate + margin + bigram novelty vs a running buffer (weight 0.5)",
                            {"validity_gate": True, "label_reward": "margin", "weight_novelty": 0.5}),
    "gate_margin_novelty_wide": ("gate + margin + novelty, 16 rollouts x 1 epoch x 12 updates",
                                 {"validity_gate": True, "label_reward": "margin", "weight_novelty": 0.5,
                                  "rollout_batch_size": 16, "minibatch_size": 8, "epochs": 1, "updates": 12}),
    "gate_margin_ngram": ("gate + margin, bigram novelty (weight 0.25) replaces embedding novelty",
                          {"validity_gate": True, "label_reward": "margin", "weight_novelty": 0.25,
                           "weight_diversity": 0.0}),
    "default_partial": ("the defaults, PPO stopped early (machine overloaded); samples from its last checkpoint", {}),
    "gate_margin_ngram_partial": ("gate_margin_ngram, PPO stopped early; samples from its last checkpoint",
                                  {"validity_gate": True, "label_reward": "margin", "weight_novelty": 0.25,
                                   "weight_diversity": 0.0}),
    "default_batchref": ("the defaults, but the diversity term saw an empty store (a renamed run copy), so it "
                         "compared each sample with its rollout batch only", {}),
    "gate_margin_novelty_batchref": ("gate_margin_novelty with the same empty-store diversity reference",
                                     {"validity_gate": True, "label_reward": "margin", "weight_novelty": 0.5}),
    # The two levers against the length collapse of gate_margin_ngram (2.8 words): novelty as a count of new
    # bigrams, and a gate on length. design choice: cap 12 bigrams, below the stored step-1 samples' 75th percentile
    # of length (15 words on seed 13), so lengthening pays up to about there; weight 0.5 since the count is small
    # for short samples. Minimum length at the step-1 median (9 words on seed 13): their 25th percentile (5 words)
    # is no longer than what the collapsed runs still produced (5.4-6.0 words), so it would not bind.
    "gate_margin_ngramcount": ("gate + margin, bigram novelty as a count capped at 12 (weight 0.5), no embedding "
                               "novelty", {"validity_gate": True, "label_reward": "margin", "weight_novelty": 0.5,
                                           "novelty_count_cap": 12, "weight_diversity": 0.0}),
    "gate_margin_ngram_minlen": ("gate_margin_ngram + a minimum-length gate at the step-1 samples' median words",
                                 {"validity_gate": True, "label_reward": "margin", "weight_novelty": 0.25,
                                  "weight_diversity": 0.0, "min_words_quantile": 0.5}),
    "gate_margin_ngramcount_minlen": ("gate_margin_ngramcount + a minimum-length gate at the step-1 samples' "
                                      "median words", {"validity_gate": True, "label_reward": "margin",
                                                       "weight_novelty": 0.5, "novelty_count_cap": 12,
                                                       "weight_diversity": 0.0, "min_words_quantile": 0.5}),
    # The summed KL grew with length (last-quarter KL 4.4-8.4 nats against a task reward of 0.20-0.24), so it paid
    # the policy to write short; a length-neutral penalty charges each sample its mean per-token KL at the batch's
    # mean length instead.
    "klneutral": ("the defaults with a length-neutral KL penalty", {"kl_length_neutral": True}),
    "gate_margin_ngramcount_klneutral": ("gate_margin_ngramcount with a length-neutral KL penalty",
                                         {"validity_gate": True, "label_reward": "margin", "weight_novelty": 0.5,
                                          "novelty_count_cap": 12, "weight_diversity": 0.0,
                                          "kl_length_neutral": True}),
    # TRL's GRPO beat our PPO on label quality on two seeds (trl_grpo.md) but with TRL's own loop; this is its
    # group-relative advantage inside ours (shared-prefix forwards, adaptive KL to the step-1 prompt, same reward).
    "group": ("the defaults with group-relative advantages (return standardised over the rollout batch, no value "
              "head)", {"advantage": "group"}),
    # Self-BLEU rose under every setting while the rollouts' per-token entropy fell (seed 13: 5.1 -> 3.3 nats).
    # design choice: 0.05; with whitened advantages of about unit scale per token, 0.01 would be a ~1% nudge.
    "entropy": ("the defaults with an entropy bonus of 0.05 in the policy loss", {"entropy_coef": 0.05}),
    # The same 192 rollouts as the defaults (24 x 8), in half as many updates of twice the batch, one pass each:
    # less reuse of each batch (less over-fitting to one batch's few samples), a less noisy whitening.
    "wide": ("the defaults with 16 rollouts per update, 1 epoch, 12 updates",
             {"rollout_batch_size": 16, "minibatch_size": 8, "epochs": 1, "updates": 12}),
    # Every setting above rewards what the teacher finds easy; these two reward what the student lacks. A quick
    # student (no pretraining) trained on the step-1 store judges each sample; the label term's weight goes to
    # the new term, whose teacher factor keeps it (p_T(y) of the intended label is in both).
    "student_gap": ("label term replaced by p_T(y) x (1 - p_S(y)) of a quick student on the step-1 store",
                    {"weight_label": 0.0, "weight_student_gap": 1.0}),
    "key_novelty": ("label and diversity terms replaced by p_T(y) x distance to the store in that student's key "
                    "space", {"weight_label": 0.0, "weight_diversity": 0.0, "weight_key_novelty": 1.0}),
}

METRICS = [
    ("parse_rate", "parse rate", 100, 1),
    ("teacher_agreement", "teacher agrees with intended label (%)", 100, 1),
    ("judge_agreement", "independent judge agrees (%)", 100, 1),
    ("self_bleu", "Self-BLEU (lower = more diverse)", 1, 3),
    ("distinct_2", "distinct-2 (higher = more diverse)", 1, 3),
    ("mean_words", "mean words per sample", 1, 1),
    ("duplicate_rate", "duplicate rate", 100, 1),
]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def quiet(stage, done, total, info):
    pass


def sample_metrics(task, samples, scorer, judge) -> dict:
    """The same measurements for any list of GeneratedSample (parsed ones are judged)."""
    parsed = [s for s in samples if s.fields is not None]
    texts = [" ".join(s.fields[f] for f in task.text_fields) for s in parsed]
    out = {"generated": len(samples), "parsed": len(parsed),
           "parse_rate": len(parsed) / len(samples) if samples else None,
           "self_bleu": self_bleu(texts), "distinct_2": distinct_n(texts, 2), "duplicate_rate": duplicate_rate(texts),
           "mean_words": float(np.mean([len(tokenize(t)) for t in texts])) if texts else None,
           "mean_tokens": float(np.mean([s.tokens for s in samples])) if samples else None,
           "teacher_agreement": None, "judge_agreement": None}
    if parsed:
        probs = np.asarray(scorer.probs([s.fields for s in parsed]))
        intended = np.array([task.labels.index(s.label) for s in parsed])
        out["teacher_agreement"] = float((probs.argmax(1) == intended).mean())
        if judge is not None:
            out["judge_agreement"] = judge.agreement(texts, [s.label for s in parsed])
    return out


def _sample_dicts(samples) -> list[dict]:
    return [{"label": s.label, "raw": s.raw, "fields": s.fields, "tokens": s.tokens} for s in samples]


def _samples_from(dicts):
    from retrikt.generate.generation import GeneratedSample
    return [GeneratedSample(label=d["label"], raw=d["raw"], fields=d["fields"], tokens=d["tokens"]) for d in dicts]


def make_step1_run(task: str, seed: int, source: Path, args) -> None:
    """A small step-1 run for a task without one (the weak-teacher control)."""
    from retrikt.config import GenerationConfig, PromptTuningConfig, RunConfig, ScorerConfig
    from retrikt.generate.stage import run_generate

    config = RunConfig(task=task, seed=seed, workspace=str(args.workspace / "step1-made"),
                       run_name=f"bench-{task}-s{seed}",
                       # design choice: small step-1 settings (one demo set, few tuning steps) for the control task.
                       scorer=ScorerConfig(demo_candidates=1, calibration_inputs=32),
                       prompt_tuning=PromptTuningConfig(steps=8, batch_size=4),
                       generation=GenerationConfig(samples_per_label=16, batch_size=16, seed=seed))
    (args.workspace / "step1-made").mkdir(parents=True, exist_ok=True)
    cache = args.workspace / "step1-made" / "cache"
    if not cache.exists():
        cache.symlink_to((args.workspace / "cache").resolve(), target_is_directory=True)
    run = run_generate(config, quiet)
    shutil.copytree(run.path, source)


def copy_step1_run(source: Path, workspace: Path, cache: Path):
    """A fresh copy of the step-1 run `source` in `workspace` (sharing the teacher cache `cache`), opened.

    The copy keeps the run's name, in a workspace of its own per setting: the store's collection is named after
    the run, so a renamed copy would open an empty store (no store reference for the diversity term)."""
    target = workspace / "runs" / source.name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    if not (workspace / "cache").exists():
        (workspace / "cache").symlink_to(cache.resolve(), target_is_directory=True)
    return open_run(workspace, source.name)


def bench_one(task: str, seed: int, variant: str, args, judge) -> dict:
    source = args.step1_runs / f"bench-{task}-s{seed}"
    if not source.is_dir():
        log(f"{task} s{seed}: no step-1 run, making a small one")
        make_step1_run(task, seed, source, args)
    name = source.name
    workspace = args.workspace / variant
    run = copy_step1_run(source, workspace, args.cache)
    from bench.ppo_levers import LeverTrainer, make_reward, min_words, split

    levers, settings = split(VARIANTS[variant][1])
    overrides = {"workspace": str(workspace), "run_name": name,
                 "generation.samples_per_label": args.eval_per_label,
                 **{f"ppo.{k}": v for k, v in settings.items()}}
    if args.updates is not None:
        overrides["ppo.updates"] = args.updates
    run.config = override(run.config, overrides)
    ctx = load_context(run.config, quiet, run=run)
    scorer = restore_scorer(ctx)

    cache = args.workspace / f"step1-samples-{task}-s{seed}-n{args.eval_per_label}.json"
    if cache.is_file():
        step1 = _samples_from(json.loads(cache.read_text()))
        step1_seconds = None
    else:
        started = time.perf_counter()
        result = generate_samples(ctx.teacher, ctx.task, load_soft_prompt(run.adapter_dir), run.config.generation)
        step1_seconds = time.perf_counter() - started
        step1 = result.samples
        cache.write_text(json.dumps(_sample_dicts(step1)))

    captured = []

    def progress(stage, done, total, info):
        if stage == "generate" and info.get("samples"):
            captured.extend(info["samples"])
        if stage == "ppo":
            log(f"{name} {variant} ppo {done}/{total} {info.get('message', '')}")

    started = time.perf_counter()
    built = []

    def reward_with_levers(*parts):
        built.append(make_reward(levers, seed)(*parts))
        return built[-1]

    summary = stage_ppo(ctx, progress, make_reward=reward_with_levers,
                        trainer_class=LeverTrainer.with_levers(levers))
    stage_seconds = time.perf_counter() - started
    history = [e for e in run.read_log() if e["event"] == "ppo_update"]
    rollouts = sum(run.config.ppo.rollout_batch_size for _ in history)
    ppo_seconds = sum(e["seconds"] for e in history)
    return {
        "task": task, "seed": seed, "variant": variant, "overrides": VARIANTS[variant][1],
        "step1": sample_metrics(ctx.task, step1, scorer, judge),
        "ppo": sample_metrics(ctx.task, captured, scorer, judge),
        "updates": len(history), "seconds_per_update": ppo_seconds / len(history) if history else None,
        "rollout_samples_per_second": rollouts / ppo_seconds if ppo_seconds else None,
        "ppo_minutes": ppo_seconds / 60, "stage_minutes": stage_seconds / 60,
        "generate_samples_per_second": (len(captured) / summary["generate_seconds"]
                                        if summary.get("generate_seconds") else None),
        "step1_generate_seconds": step1_seconds, "prompt_shift": summary.get("prompt_shift"),
        "min_words": min_words(built[0]),
        "reward_first_quarter": summary.get("reward_first_quarter"),
        "reward_last_quarter": summary.get("reward_last_quarter"),
        "kl_last_quarter": summary.get("kl_last_quarter"),
        "history": [{k: e.get(k) for k in ("update", "key", "reward", "reward_terms", "kl", "kl_coef", "entropy",
                                           "tokens", "stopped", "seconds")} for e in history],
    }


def measure_checkpoint(task: str, seed: int, variant: str, args, judge) -> dict:
    """A row from a PPO run stopped early: samples from its last checkpoint's prompt, measured like `bench_one`."""
    name = f"bench-{task}-s{seed}"
    workspace = args.workspace / variant
    run = open_run(workspace, name)
    state = torch.load(run.ppo_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    run.config = override(run.config, {"workspace": str(workspace), "run_name": name,
                                       "generation.samples_per_label": args.eval_per_label})
    ctx = load_context(run.config, quiet, run=run)
    scorer = restore_scorer(ctx)
    step1 = _samples_from(json.loads(
        (args.workspace / f"step1-samples-{task}-s{seed}-n{args.eval_per_label}.json").read_text()))
    samples = generate_samples(ctx.teacher, ctx.task, state["prompt"], run.config.generation).samples
    history = state["history"]
    ppo_seconds = sum(e["seconds"] for e in history)
    rollouts = run.config.ppo.rollout_batch_size * len(history)
    return {
        "task": task, "seed": seed, "variant": f"{variant}_partial", "overrides": VARIANTS[variant][1],
        "step1": sample_metrics(ctx.task, step1, scorer, judge), "ppo": sample_metrics(ctx.task, samples, scorer, judge),
        "updates": len(history), "seconds_per_update": ppo_seconds / len(history),
        "rollout_samples_per_second": rollouts / ppo_seconds, "ppo_minutes": ppo_seconds / 60,
        "prompt_shift": float((state["prompt"] - state["ref_prompt"]).norm() / state["ref_prompt"].norm()),
        "history": [{k: e.get(k) for k in ("update", "key", "reward", "reward_terms", "kl", "kl_coef", "entropy",
                                           "tokens", "stopped", "seconds")} for e in history],
    }


# ---- report ----------------------------------------------------------------------------------------------------
def _key(r: dict) -> str:
    return f"{r['task']}|{r['variant']}|{r['seed']}"


def write_report(results: dict, eval_per_label: int, judge_accuracy: float | None, out_name: str = "ppo") -> None:
    """Write `<out_name>.json` and rebuild `<out_name>.md` from it (and `ppo_downstream.json` when present)."""
    out = ROOT / "results"
    path = out / f"{out_name}.json"
    data = {"eval_per_label": eval_per_label, "judge_test_accuracy": judge_accuracy,
            "torch_threads": torch.get_num_threads(), "variants": {k: v[1] for k, v in VARIANTS.items()},
            "results": results}
    if previous_notes := (json.loads(path.read_text()).get("notes") if path.is_file() else None):
        data["notes"] = previous_notes  # the findings written after reading the rows
    write_json(path, data, __file__, indent=1, newline=False)
    write_md(out / f"{out_name}.md", render(data), __file__)


def rebuild_report(out_name: str = "ppo") -> None:
    """Rewrite `<out_name>.md` (and the JSON, unchanged but for its "written_by") from `<out_name>.json`."""
    path = ROOT / "results" / f"{out_name}.json"
    data = json.loads(path.read_text())
    write_json(path, data, __file__, indent=1, newline=False)
    write_md(ROOT / "results" / f"{out_name}.md", render(data), __file__)


def render(data: dict) -> str:
    rows = list(data["results"].values())
    judge_accuracy, eval_per_label = data.get("judge_test_accuracy"), data["eval_per_label"]
    lines = ["# Step 2 (PPO on the soft prompt): step-1 vs after-PPO samples", "",
             "Packaged SmolLM2-135M-Instruct (Q4 GGUF) teacher on CPU, 1 torch thread. Each step-1 run is reused "
             "as is (its soft prompt, scorer and store); on SST-2 these are the step-1 runs of the SST-2 ablation "
             "bench (default step-1 settings, 260 samples per label in the store). For every (seed, setting) PPO "
             f"starts from that step-1 prompt; then {eval_per_label} samples per label are generated with the "
             "PPO prompt and compared with the same number from the step-1 prompt, same generation config and "
             "seed. Label quality is measured on parsed samples by the step-1 scorer (the teacher: the reward's "
             "own judge) and by an independent judge, a TF-IDF word 1-2 gram logistic regression trained on the "
             f"full SST-2 train set (67,349 phrases; its own SST-2 test accuracy "
             f"{'–' if judge_accuracy is None else f'{100 * judge_accuracy:.1f}%'}). Cells are mean ± std over the "
             "seeds run (n). Time is PPO training only (rollouts + updates), not the generation afterwards.", ""]
    if data.get("notes"):
        lines += ["## Findings", ""] + [f"- {note}" for note in data["notes"]] + [""]
    for task in sorted({r["task"] for r in rows}, key=lambda t: (t != "SST-2", t)):
        lines += [f"## {task}", "", "| setting | n | " + " | ".join(
            f"{name} step 1 | PPO" for _, name, _, _ in METRICS) + " | s/update | rollout samples/s | PPO min |",
            "|---|---|" + "---|---|" * len(METRICS) + "---|---|---|"]
        for variant in VARIANTS:
            group = sorted((r for r in rows if r["task"] == task and r["variant"] == variant), key=lambda r: r["seed"])
            if not group:
                continue
            cells = []
            for key, _, scale, digits in METRICS:
                cells += [mean_std([r["step1"][key] for r in group], scale, digits),
                          mean_std([r["ppo"][key] for r in group], scale, digits)]
            cells += [mean_std([r["seconds_per_update"] for r in group]),
                      mean_std([r["rollout_samples_per_second"] for r in group], digits=2),
                      mean_std([r["ppo_minutes"] for r in group])]
            seeds = ", ".join(str(r["seed"]) for r in group)
            lines.append(f"| {variant} | {len(group)} ({seeds}) | " + " | ".join(cells) + " |")
        lines += ["", "Change PPO − step 1 per seed (points for agreements), mean ± std:", "",
                  "| setting | n | teacher agreement | judge agreement | Self-BLEU | distinct-2 | mean words |",
                  "|---|---|---|---|---|---|---|"]
        for variant in VARIANTS:
            group = [r for r in rows if r["task"] == task and r["variant"] == variant]
            if not group:
                continue

            def delta(key, scale, digits, group=group):
                pairs = [(r["ppo"][key], r["step1"][key]) for r in group]
                return mean_std([a - b for a, b in pairs if a is not None and b is not None], scale, digits, signed=True)

            lines.append(f"| {variant} | {len(group)} | {delta('teacher_agreement', 100, 1)} | "
                         f"{delta('judge_agreement', 100, 1)} | {delta('self_bleu', 1, 3)} | "
                         f"{delta('distinct_2', 1, 3)} | {delta('mean_words', 1, 1)} |")
        lines.append("")
    downstream = ROOT / "results" / "ppo_downstream.json"
    lines += render_downstream(json.loads(downstream.read_text()) if downstream.is_file() else {})
    lines += ["Settings:", ""] + [f"- `{k}`: {v[0]} {json.dumps(v[1]) if v[1] else ''}" for k, v in VARIANTS.items()]
    return "\n".join(lines) + "\n"


def render_downstream(downstream: dict) -> list[str]:
    downstream = entries(downstream)
    if not any(r.get("variant") for r in downstream.values()):
        return []
    lines = ["## Downstream: student + retrieval at an equal store size (SST-2 test, 872 sentences)", "",
             "Step-1 arm: the step-1 store as is. With-PPO arm: the same store plus the PPO samples kept by the "
             "PPO run, minus as many randomly chosen step-1 generated entries per label, so both hold the same "
             "number of entries per label. Same default student config and seed; accuracy in %.", "",
             "| setting | n | entries (each arm) | PPO entries | student + retrieval step 1 | with PPO | change | "
             "student step 1 | with PPO | indexed after filter step 1 | with PPO |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    bullets = []
    for variant in VARIANTS:
        group = sorted((r for r in downstream.values() if r.get("variant") == variant), key=lambda r: r["seed"])
        if not group:
            continue
        seeds = ", ".join(str(r["seed"]) for r in group)

        def col(arm, key, group=group):
            return [r[arm][key] for r in group]

        def indexed(arm, group=group):
            return [(r[arm].get("items") or {}).get("indexed") for r in group]

        ppo_entries = [sum(v["ppo"] for k, v in r["stores"]["with_ppo"].items() if k != "total") for r in group]
        lines.append(
            f"| {variant} | {len(group)} ({seeds}) | "
            f"{mean_std([r['stores']['with_ppo']['total'] for r in group], digits=0)} | "
            f"{mean_std(ppo_entries, digits=0)} | "
            f"{mean_std(col('step1', 'student_retrieval'), 100)} | {mean_std(col('with_ppo', 'student_retrieval'), 100)} | "
            f"{mean_std([a - b for a, b in zip(col('with_ppo', 'student_retrieval'), col('step1', 'student_retrieval'))], 100, signed=True)} | "
            f"{mean_std(col('step1', 'student'), 100)} | {mean_std(col('with_ppo', 'student'), 100)} | "
            f"{mean_std(indexed('step1'), digits=0)} | {mean_std(indexed('with_ppo'), digits=0)} |")
        bullets += [f"- {variant} seed {r['seed']}: student + retrieval {100 * r['step1']['student_retrieval']:.1f} -> "
                  f"{100 * r['with_ppo']['student_retrieval']:.1f} (beta {r['step1']['beta']} / {r['with_ppo']['beta']}), "
                  f"student {100 * r['step1']['student']:.1f} -> {100 * r['with_ppo']['student']:.1f}; "
                  f"{r['step1']['seconds']:.0f} s / {r['with_ppo']['seconds']:.0f} s" for r in group]
    lines += [""] + _render_by_beta(downstream)
    return lines + [""] + bullets + [""]


def _render_by_beta(downstream: dict) -> list[str]:
    """The two arms' trained students at the same fixed beta: the change that the store alone makes."""
    betas = tuple(str(b) for b in BETA_GRID)
    lines = ["Same beta on both arms (each arm's trained retrieval student scored at every fixed beta; beta 0 is the "
             "student alone, beta 1 the neighbours' vote alone): student + retrieval with PPO − step 1, points, "
             "mean ± std over seeds; the rule's beta can differ between the arms, these cannot.", "",
             "| setting | n | " + " | ".join(f"β {b}" for b in betas) + " | seeds with a gain at β 1 |",
             "|---|---|" + "---|" * len(betas) + "---|"]
    any_row = False
    for variant in VARIANTS:
        group = sorted((r for r in downstream.values() if r.get("variant") == variant
                        and "by_beta" in r["step1"] and "by_beta" in r["with_ppo"]), key=lambda r: r["seed"])
        if not group:
            continue
        any_row = True
        cells = [mean_std([r["with_ppo"]["by_beta"][b] - r["step1"]["by_beta"][b] for r in group], 100, signed=True)
                 for b in betas]
        gains = sum(r["with_ppo"]["by_beta"]["1.0"] > r["step1"]["by_beta"]["1.0"] for r in group)
        seeds = ", ".join(str(r["seed"]) for r in group)
        lines.append(f"| {variant} | {len(group)} ({seeds}) | " + " | ".join(cells) + f" | {gains} of {len(group)} |")
    return lines + [""] if any_row else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step1-runs", dest="step1_runs", type=Path)
    parser.add_argument("--task", default="SST-2")
    parser.add_argument("--seeds", type=int, nargs="+", default=[13, 21, 42, 87, 100])
    parser.add_argument("--variants", nargs="+", default=["default"], choices=list(VARIANTS))
    parser.add_argument("--eval-per-label", dest="eval_per_label", type=int, default=64)
    parser.add_argument("--updates", type=int, default=None, help="override every variant's update count")
    parser.add_argument("--workspace", type=Path, default=ROOT.parent / "workspace" / "ppo-bench")
    parser.add_argument("--cache", type=Path, default=ROOT.parent / "workspace" / "cache")
    parser.add_argument("--out", default="ppo")
    parser.add_argument("--from-checkpoint", dest="from_checkpoint", action="store_true",
                        help="measure a stopped run from its last checkpoint (a `<variant>_partial` row)")
    parser.add_argument("--render", action="store_true",
                        help="run nothing: rewrite <out>.md from <out>.json (and ppo_downstream.json)")
    args = parser.parse_args()
    if args.render:
        rebuild_report(args.out)
        return
    if not args.step1_runs:
        parser.error("--step1-runs is required (unless --render)")
    torch.set_num_threads(1)
    args.workspace = args.workspace.resolve()
    args.workspace.mkdir(parents=True, exist_ok=True)
    if not (args.workspace / "cache").exists():
        (args.workspace / "cache").symlink_to(args.cache.resolve(), target_is_directory=True)
    judge = None
    if args.task == "SST-2":
        from bench.sst2_judge import load_judge
        judge = load_judge(args.cache)
        log(f"judge test accuracy {judge.accuracy:.4f}")
    path = ROOT / "results" / f"{args.out}.json"
    previous = json.loads(path.read_text()) if path.is_file() else {}
    results = previous.get("results", {})
    if not isinstance(results, dict):  # the format before seeds and variants: superseded
        results = {}
    judge_accuracy = judge.accuracy if judge is not None else previous.get("judge_test_accuracy")
    for variant in args.variants:
        for seed in args.seeds:
            log(f"{args.task} s{seed} {variant}: start")
            if args.from_checkpoint:
                result = measure_checkpoint(args.task, seed, variant, args, judge)
            else:
                result = bench_one(args.task, seed, variant, args, judge)
            # Another bench process may have added rows meanwhile: merge into the file's current state.
            current = json.loads(path.read_text()).get("results", {}) if path.is_file() else {}
            current = current if isinstance(current, dict) else {}
            results = {**current, _key(result): result}
            write_report(results, args.eval_per_label, judge_accuracy, args.out)
            log(f"{args.task} s{seed} {variant}: done ({result['ppo_minutes']:.1f} PPO min); "
                f"teacher {result['step1']['teacher_agreement']} -> {result['ppo']['teacher_agreement']}, judge "
                f"{result['step1']['judge_agreement']} -> {result['ppo']['judge_agreement']}, self-bleu "
                f"{result['step1']['self_bleu']:.3f} -> {result['ppo']['self_bleu']:.3f}")
    print((ROOT / "results" / f"{args.out}.md").read_text())


if __name__ == "__main__":
    main()
