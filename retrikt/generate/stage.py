"""Headless pipeline stages shared by the CLI and the UI: load -> tune -> score -> generate -> store."""
from __future__ import annotations

import time
from pathlib import Path

import torch

from ..config import RunConfig
from ..context import Context, Progress, load_context, noop_progress, open_store, teacher_entries
from ..errors import Cancelled
from ..runs import Run
from ..teacher.interrupt import interruptible
from ..teacher.scorer import TeacherScorer
from .generation import GeneratedSample, generate_samples
from .metrics import duplicate_rate, length_and_distinct, self_bleu, value_texts
from .prompt_tuning import save_adapter, tune_soft_prompt

def stage_tune(ctx: Context, progress: Progress = noop_progress, should_stop=None) -> dict:
    from .generation import default_tuning_steps

    cfg = ctx.run.config.prompt_tuning
    steps = cfg.steps or default_tuning_steps(ctx.task)
    timer = time.perf_counter()

    def on_step(step, loss):
        ctx.run.log("tune_step", step=step, loss=loss)
        progress("tune", step, steps, {"loss": loss})

    peft_model, soft_prompt, report = tune_soft_prompt(
        ctx.teacher, ctx.task, cfg, seed=ctx.run.config.seed, on_step=on_step, should_stop=should_stop
    )
    if report.cancelled:
        raise Cancelled("prompt tuning cancelled")
    save_adapter(peft_model, ctx.run.adapter_dir)
    ctx.soft_prompt = soft_prompt
    return {"seconds": round(time.perf_counter() - timer, 2), "trainable_params": report.trainable_params,
            "loss_first": report.losses[0] if report.losses else None,
            "loss_last": report.losses[-1] if report.losses else None}


def stage_score(ctx: Context, progress: Progress = noop_progress, should_stop=None) -> dict:
    timer = time.perf_counter()
    scorer = TeacherScorer(ctx.teacher, ctx.task, ctx.run.config.scorer, seed=ctx.run.config.seed,
                           cache_dir=Path(ctx.run.config.workspace) / "cache")
    report = scorer.fit(progress=lambda d, t: progress("score", d, t, {"message": "choosing demonstrations"}),
                        should_stop=should_stop)
    ctx.scorer = scorer
    return {"seconds": round(time.perf_counter() - timer, 2), "demo_uids": report.demo_uids,
            "demo_accuracy": report.demo_accuracy, "candidate_accuracies": report.candidate_accuracies,
            "candidate_rows": report.candidate_rows,
            "query": report.query, "candidate_queries": report.candidate_queries, "label_prior": report.label_prior}


def stage_check(ctx: Context, should_stop=None) -> dict:
    """The teacher check (generate/check.py) with the scorer `stage_score` fitted."""
    from ..context import run_embedder
    from .check import check_teacher

    return check_teacher(ctx.task, ctx.scorer, run_embedder(ctx.run.config), should_stop).to_dict()


def novel_samples(task, samples: list[GeneratedSample]) -> tuple[list[GeneratedSample], int, int]:
    """Parsed samples minus copies of train examples and repeats (case-insensitive); returns (kept, copies, repeats)."""
    train_keys = {task.serialize(e.fields).lower() for e in task.train}
    seen, kept, copies, repeats = set(), [], 0, 0
    for sample in samples:
        key = task.serialize(sample.fields).lower()
        if key in train_keys:
            copies += 1
        elif key in seen:
            repeats += 1
        else:
            seen.add(key)
            kept.append(sample)
    return kept, copies, repeats


def stage_generate(ctx: Context, progress: Progress = noop_progress, should_stop=None, source: str = "generated:step1") -> dict:
    """Generate, parse, drop duplicates and copies of train examples, score with the teacher, write the store."""
    config = ctx.run.config
    gen_cfg = config.generation
    timer = time.perf_counter()

    def on_batch(done, total, new: list[GeneratedSample]):
        ctx.run.log("generate_batch", done=done, total=total,
                    samples=[{"label": s.label, "text": s.raw, "parsed": s.fields is not None} for s in new])
        progress("generate", done, total, {"samples": new})

    result = generate_samples(ctx.teacher, ctx.task, ctx.soft_prompt, gen_cfg, progress=on_batch, should_stop=should_stop)
    if result.cancelled:
        raise Cancelled("generation cancelled")
    generate_seconds = time.perf_counter() - timer

    kept, copies, dupes = novel_samples(ctx.task, result.parsed)

    timer = time.perf_counter()
    progress("store", 0, len(kept), {"message": "teacher soft labels"})
    labels = ctx.task.labels
    settings = {"temperature": gen_cfg.temperature, "top_p": gen_cfg.top_p, "seed": gen_cfg.seed,
                "max_new_tokens": result.max_new_tokens, "run": ctx.run.name}
    entries = teacher_entries(ctx.task, ctx.scorer, [(s.fields, s.label) for s in kept], source,
                              gen_settings=settings)
    store = open_store(ctx)
    store.add(entries)
    score_seconds = time.perf_counter() - timer
    progress("store", len(kept), len(kept), {"message": f"{len(kept)} entries stored"})

    texts = [ctx.task.serialize(s.fields) for s in result.parsed]
    per_label = {l: sum(1 for e in entries if e.label == l) for l in labels}
    return {
        "generated": len(result.samples), "parsed": len(result.parsed), "parse_rate": round(result.parse_rate, 4),
        "truncated_dropped": sum(s.truncated for s in result.samples), "max_new_tokens": result.max_new_tokens,
        "duplicates_dropped": dupes, "train_copies_dropped": copies, "stored": len(entries),
        "stored_per_label": per_label,
        "teacher_agreement": round(sum(e.agreement for e in entries) / len(entries), 4) if entries else None,
        "self_bleu": round(self_bleu(texts), 4), "duplicate_rate": round(duplicate_rate(texts), 4),
        **length_and_distinct(value_texts(ctx.task, [s.fields for s in result.parsed])),
        "tokens": result.tokens, "generate_seconds": round(generate_seconds, 2),
        "samples_per_second": round(result.samples_per_second, 3),
        "tokens_per_second": round(result.tokens / generate_seconds, 2) if generate_seconds else None,
        "label_and_store_seconds": round(score_seconds, 2),
    }


def stage_store_train(ctx: Context) -> int:
    """The labelled train split goes into the store too (source `train`), with the teacher's soft labels."""
    entries = teacher_entries(ctx.task, ctx.scorer, [(e.fields, e.label) for e in ctx.task.train], "train")
    open_store(ctx).add(entries)
    return len(entries)


def run_generate(config: RunConfig, progress: Progress = noop_progress, should_stop=None) -> Run:
    """Step 1 end to end; writes summary.json with counts, timings and text-quality metrics per stage."""
    started = time.perf_counter()
    ctx = load_context(config, progress)
    run = ctx.run
    run.update_summary(task=ctx.task.name, teacher=ctx.teacher.name, teacher_params=ctx.teacher.n_params,
                       device=str(ctx.teacher.device), load_seconds=round(ctx.teacher.load_seconds, 2), status="running",
                       torch_threads=torch.get_num_threads())  # time estimates compare runs on as many threads
    try:
        with interruptible(ctx.teacher.model, should_stop):
            run.update_summary(score=stage_score(ctx, progress, should_stop))
            check = stage_check(ctx, should_stop)
            run.update_summary(check=check)
            # The verdict as the score stage's last word, at the step count it ended on (progress never goes back).
            scored = max(1, sum(ctx.scorer.report.candidate_rows))
            progress("score", scored, scored, {"message": check["verdict"]})
            run.update_summary(train_entries=stage_store_train(ctx))
            run.update_summary(tune=stage_tune(ctx, progress, should_stop))
            run.update_summary(generate=stage_generate(ctx, progress, should_stop))
    except Cancelled as exc:
        run.log("cancelled", message=str(exc))
        run.update_summary(status="cancelled", total_seconds=round(time.perf_counter() - started, 2))
        raise
    except Exception as exc:
        run.log("failed", message=f"{type(exc).__name__}: {exc}")
        run.update_summary(status="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    run.update_summary(status="done", total_seconds=round(time.perf_counter() - started, 2))
    run.log("done")
    return run


def generate_job(config: RunConfig):
    """A job function (for `JobManager.submit`) running step 1 with `config` (its run name must be set)."""
    def fn(progress, should_stop, job):
        job.run = config.run_name
        return run_generate(config, progress, should_stop).name

    return fn
