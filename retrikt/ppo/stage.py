"""Pipeline stage for step 2: PPO on a run's step-1 soft prompt, then generate with the tuned prompt into the store.

Files in the run folder: `ppo/checkpoint.pt` (resumable state), `ppo/adapter/` (the tuned prompt in PEFT's
prompt-tuning format, readable with `load_soft_prompt`), `ppo/config.yaml` (the config PPO ran with); the log gets
one `ppo_update` event per update and the summary a `ppo` section.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import torch

from ..config import override, save_yaml
from ..context import Context, Progress, load_context, noop_progress, open_store
from ..errors import Cancelled, RunError
from ..generate.generation import GeneratedSample, default_max_new_tokens, generate_samples
from ..generate.judge import judges_task, load_judge
from ..generate.metrics import duplicate_rate, length_and_distinct, self_bleu, value_texts
from ..generate.prompt_tuning import ADAPTER_WEIGHTS, load_soft_prompt
from ..generate.stage import novel_samples, stage_score
from ..runs import Run, open_run
from ..teacher.scorer import TeacherScorer, restored_scorer
from .rewards import STEP1_SOURCE, CompositeReward, Samples
from .trainer import PPOTrainer, PromptSpec, UpdateStats

SOURCE = "generated:ppo"


def task_reward_fn(task, reward: CompositeReward):
    """Adapt a CompositeReward over parsed samples to the PPO loop's (label, sampled batch) signature."""

    def reward_fn(label, batch):
        return reward(Samples.parse(task, label, batch.texts, batch.stopped.tolist()))

    return reward_fn


def restore_scorer(ctx: Context, progress: Progress = noop_progress) -> TeacherScorer:
    """The step-1 scorer: the context's, else rebuilt from the run summary's demos and prior, else fitted anew."""
    if ctx.scorer is not None:
        return ctx.scorer
    config = ctx.run.config
    ctx.scorer = restored_scorer(ctx.teacher, ctx.task, config.scorer, config.seed, ctx.run.summary().get("score"))
    if ctx.scorer is None:
        ctx.run.update_summary(score=stage_score(ctx, progress))
    return ctx.scorer


def save_ppo_adapter(soft_prompt: torch.Tensor, step1_adapter: Path, target: Path) -> Path:
    """Write the tuned prompt as a PEFT prompt-tuning adapter (step 1's adapter_config.json, new weights)."""
    from safetensors.torch import save_file

    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    config = Path(step1_adapter) / "adapter_config.json"
    if config.is_file():
        shutil.copy(config, tmp / "adapter_config.json")
    save_file({"prompt_embeddings": soft_prompt.detach().cpu().contiguous()}, str(tmp / ADAPTER_WEIGHTS))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def _update_message(stats: UpdateStats) -> str:
    terms = " ".join(f"{k[:5]} {v:.3f}" for k, v in stats.reward_terms.items())
    return (f"[{stats.key}] reward {stats.reward:.3f} ({terms}) kl {stats.kl:.2f} coef {stats.kl_coef:.3f} "
            f"clip {stats.clip_fraction:.2f} {stats.seconds:.1f}s")


def check_ready(ctx: Context) -> torch.Tensor:
    """The run's step-1 soft prompt; RunError when it has none or already holds PPO samples."""
    try:
        step1 = load_soft_prompt(ctx.run.adapter_dir)
    except FileNotFoundError as exc:
        raise RunError(f"run {ctx.run.name} has no step-1 soft prompt: run `generate` first ({exc})") from None
    existing = open_store(ctx).count(where={"source": SOURCE})
    if existing:
        raise RunError(f"run {ctx.run.name} already holds {existing} {SOURCE} entries; delete them or use another run")
    return step1


def stage_ppo(ctx: Context, progress: Progress = noop_progress, should_stop=None, *, make_reward=None,
              trainer_class: type[PPOTrainer] = PPOTrainer) -> dict:
    """PPO on the run's step-1 soft prompt, then as many samples as step 1 into the store as `generated:ppo`.

    Resumes from `ppo/checkpoint.pt` when `ppo.resume` is on. Raises Cancelled between updates or generation
    batches (the checkpoint stays valid), RunError when the run has no step-1 adapter or already has PPO entries.
    `make_reward(config.ppo, task, scorer, embedder, store)` and `trainer_class` replace the reward and the trainer
    (bench/ppo.py runs its ablations through them).
    """
    config = ctx.run.config
    cfg = config.ppo
    step1 = check_ready(ctx)
    store = open_store(ctx)
    scorer = restore_scorer(ctx, progress)
    reward = (make_reward or CompositeReward.from_config)(cfg, ctx.task, scorer, store.embedder, store)
    teacher, task = ctx.teacher, ctx.task
    prompts = [PromptSpec(label, teacher.encode(task.generation_prompt(label))) for label in task.labels]
    budget = cfg.max_new_tokens or default_max_new_tokens(task, teacher.tokenizer, config.generation)
    trainer = trainer_class(teacher.model, teacher.tokenizer, step1, prompts, task_reward_fn(task, reward), cfg,
                            max_new_tokens=budget, seed=config.seed)
    ppo_dir = ctx.run.ppo_dir
    ppo_dir.mkdir(exist_ok=True)
    save_yaml(config, ctx.run.ppo_config_path)
    if cfg.resume and trainer.load_checkpoint(ppo_dir):
        ctx.run.log("ppo_resumed", updates_done=trainer.updates_done)

    def on_update(stats: UpdateStats):
        ctx.run.log("ppo_update", **stats.as_dict())
        progress("ppo", stats.update, cfg.updates, {"message": _update_message(stats), "stats": stats.as_dict()})

    report = trainer.train(cfg.updates, on_update, should_stop, checkpoint_dir=ppo_dir)
    if report.cancelled:
        raise Cancelled(f"PPO cancelled after {trainer.updates_done} updates (checkpoint kept)")
    tuned = trainer.soft_prompt
    save_ppo_adapter(tuned, ctx.run.adapter_dir, ctx.run.ppo_adapter_dir)
    summary = {"updates": trainer.updates_done, "resumed_from": report.resumed_from,
               "ppo_seconds": round(report.seconds, 2), **_history_summary(trainer.history),
               "prompt_shift": round(float((tuned.float() - step1.float()).norm() / step1.float().norm()), 4)}
    summary.update(generate_and_store(ctx, tuned, reward, progress, should_stop))
    return summary


def _history_summary(history: list[UpdateStats]) -> dict:
    if not history:
        return {}
    recent = history[-max(1, len(history) // 4):]
    first = history[: max(1, len(history) // 4)]

    def mean(items, key):
        return round(sum(getattr(s, key) for s in items) / len(items), 4)

    return {"reward_first_quarter": mean(first, "reward"), "reward_last_quarter": mean(recent, "reward"),
            "kl_last_quarter": mean(recent, "kl"), "kl_coef_final": round(history[-1].kl_coef, 5),
            "seconds_per_update": mean(history, "seconds")}


def generate_and_store(ctx: Context, soft_prompt, reward: CompositeReward, progress: Progress = noop_progress,
                       should_stop=None) -> dict:
    """Generate with `soft_prompt` exactly as step 1 does (same config, count and seed), drop duplicates and
    train copies, label with the teacher, and store the entries with their reward terms."""
    from ..store.knowledge_store import Entry

    config, task = ctx.run.config, ctx.task
    timer = time.perf_counter()

    def on_batch(done, total, new: list[GeneratedSample]):
        ctx.run.log("ppo_generate_batch", done=done, total=total,
                    samples=[{"label": s.label, "text": s.raw, "parsed": s.fields is not None} for s in new])
        progress("generate", done, total, {"samples": new})

    result = generate_samples(ctx.teacher, task, soft_prompt, config.generation, progress=on_batch,
                              should_stop=should_stop)
    if result.cancelled:
        raise Cancelled("generation after PPO cancelled")
    kept, copies, dupes = novel_samples(task, result.parsed)

    progress("store", 0, len(kept), {"message": "rewards and teacher soft labels"})
    labels = task.labels
    settings = {"temperature": config.generation.temperature, "top_p": config.generation.top_p,
                "seed": config.generation.seed, "max_new_tokens": result.max_new_tokens,
                "run": ctx.run.name, "ppo_updates": config.ppo.updates}
    entries, term_sums = [], {}
    for label in labels:
        group = [s for s in kept if s.label == label]
        if not group:
            continue
        # design choice: a stored sample's diversity is measured against all kept samples of its label (the
        # "batch") and the store as it was before PPO, so the stored value matches what PPO optimised.
        breakdown = reward(Samples(label, [s.fields for s in group], [task.serialize(s.fields) for s in group]))
        probs = ctx.scorer.probs([s.fields for s in group])
        for i, (s, p) in enumerate(zip(group, probs)):
            rewards = breakdown.per_sample(i)
            for name, value in rewards.items():
                term_sums[name] = term_sums.get(name, 0.0) + value
            teacher_label = labels[int(p.argmax())]
            entries.append(Entry(fields=s.fields, label=s.label, source=SOURCE,
                                 soft_labels={l: float(x) for l, x in zip(labels, p)}, teacher_label=teacher_label,
                                 agreement=teacher_label == s.label, gen_settings=settings, rewards=rewards,
                                 text=task.serialize(s.fields)))
    store = open_store(ctx)
    store.add(entries)
    progress("store", len(entries), len(entries), {"message": f"{len(entries)} PPO entries stored"})
    texts = [task.serialize(s.fields) for s in result.parsed]
    judged = judge_stored(task, store, entries, Path(config.workspace) / "cache") if judges_task(task) else {}
    return {
        "generated": len(result.samples), "parsed": len(result.parsed), "parse_rate": round(result.parse_rate, 4),
        "duplicates_dropped": dupes, "train_copies_dropped": copies, "stored": len(entries),
        "teacher_agreement": round(sum(e.agreement for e in entries) / len(entries), 4) if entries else None,
        "stored_reward_means": {k: round(v / len(entries), 4) for k, v in term_sums.items()} if entries else {},
        "self_bleu": round(self_bleu(texts), 4), "duplicate_rate": round(duplicate_rate(texts), 4),
        **length_and_distinct(value_texts(task, [s.fields for s in result.parsed])),
        **judged, "generate_seconds": round(time.perf_counter() - timer, 2),
    }


def judge_stored(task, store, ppo_entries, cache: Path) -> dict:
    """The independent judge's agreement with the intended label on the stored PPO entries and on the stored
    step-1 generated entries, measured alike (the teacher's agreement is the reward's own judge)."""
    judge = load_judge(cache)
    step1 = store.list(source=STEP1_SOURCE)

    def agreement(entries):
        value = judge.agreement(value_texts(task, [e.fields for e in entries]), [e.label for e in entries])
        return None if value is None else round(value, 4)

    return {"judge_agreement": agreement(ppo_entries), "step1_judge_agreement": agreement(step1),
            "judge_test_accuracy": round(judge.accuracy, 4)}


def run_ppo(workspace: str, run_name: str, overrides: dict | None = None, progress: Progress = noop_progress,
            should_stop=None) -> Run:
    """Step 2 end to end on an existing step-1 run; `overrides` are dotted config keys (e.g. `ppo.updates`)."""
    run = open_run(workspace, run_name)
    if overrides:
        run.config = override(run.config, overrides)
    started = time.perf_counter()
    ctx = load_context(run.config, progress, run=run)
    check_ready(ctx)  # before the status changes: a refused run keeps its state
    run.update_summary(ppo_status="running")
    try:
        result = stage_ppo(ctx, progress, should_stop)
    except Cancelled as exc:
        run.log("cancelled", message=str(exc))
        run.update_summary(ppo_status="cancelled")
        raise
    except Exception as exc:
        run.log("failed", message=f"{type(exc).__name__}: {exc}")
        run.update_summary(ppo_status="failed", ppo_error=f"{type(exc).__name__}: {exc}")
        raise
    run.update_summary(ppo={**result, "total_seconds": round(time.perf_counter() - started, 2)}, ppo_status="done")
    run.log("ppo_done")
    return run


def ppo_job(workspace, run_name: str, overrides: dict):
    """A job function (for `JobManager.submit`) running step 2 on `run_name` with dotted config `overrides`."""
    def fn(progress, should_stop, job):
        job.run = run_name
        return run_ppo(str(workspace), run_name, overrides, progress, should_stop).name

    return fn
