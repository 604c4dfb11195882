"""Step 3 as a pipeline stage: train the retrieval student and the plain-KD baseline on a run's store, index the
student keys in Chroma, pick beta on the dev split, save everything in the run folder, then evaluate."""
from __future__ import annotations

import json
import random
import shutil
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..config import RunConfig
from ..context import noop_progress, run_store, run_teacher
from ..runs import read_summary, runs_newest_first
from ..teacher.interrupt import interruptible
from .live import live_index
from .retrieval import KeyIndex, predict
from .model import Student, StudentError, build_student, compression_ratio, task_texts
from .train import clone, finetune, gold_only, gold_only_epochs, pretrain, pretraining_corpus, select_items

BETA_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)

BETA_HELDOUT = 256
"""Teacher-labelled held-out inputs the beta rule scores against (fewer when the task's pool is small)."""
TRUST_ALPHA = 0.05
"""Retrieval is used only when the teacher beats the majority class on held-out gold at one-sided binomial p
below this (`teacher_trust`)."""


def tune_beta(student: Student, index: KeyIndex | None, task, k: int, tau: float,
              preferred: float, min_gain: int = 1) -> tuple[float, dict]:
    """Beta from the dev split (see `choose_beta`): retrieval is used only where the neighbours' vote alone beats the
    dev split's majority class and some beta beats the student alone, so a weak teacher's store is switched off."""
    if index is None or not len(index) or not task.dev:
        return 0.0, {}
    gold = np.array([task.label_index(e.label) for e in task.dev])
    pred = predict(student, index, [task.serialize(e.fields) for e in task.dev], k, tau, 1.0)
    vote = pred.mixed  # beta = 1: the neighbours' vote alone
    scores = {}
    for beta in BETA_GRID:
        scores[beta] = float((((1 - beta) * pred.student + beta * vote).argmax(-1) == gold).mean())
    majority = float(np.bincount(gold).max() / len(gold))
    beta = choose_beta(scores, len(gold), preferred, min_gain, majority)
    return beta, {str(b): round(s, 4) for b, s in scores.items()}


def heldout_inputs(task, n: int) -> list[dict]:
    """The inputs the `teacher` beta rule scores: the last `n` of `teacher_inputs` (`label_unlabeled` takes from the
    front and never these), at most half of them."""
    pool = teacher_inputs(task)
    # design choice: a small pool keeps half for the student: the held-out set only picks a weight.
    n = min(n, len(pool) // 2)
    return pool[-n:] if n > 0 else []


def tune_beta_on_teacher(student: Student, index, task, k: int, tau: float, teacher_probs: np.ndarray,
                         texts: list[str]) -> tuple[float, dict]:
    """The beta whose argmax agrees most with the teacher's on held-out inputs (ties: the larger beta)."""
    target = np.asarray(teacher_probs).argmax(-1)
    pred = predict(student, index, texts, k, tau, 1.0)
    scores = {b: float((((1 - b) * pred.student + b * pred.mixed).argmax(-1) == target).mean()) for b in BETA_GRID}
    return most_agreeing_beta(scores), {str(b): round(v, 4) for b, v in scores.items()}


def most_agreeing_beta(agreement: dict) -> float:
    """The beta (key: a float or its string) with the best agreement with the teacher; ties: the larger beta."""
    # design choice: ties go to the larger beta: the store is how the teacher's knowledge reaches the student.
    return float(max(agreement, key=lambda b: (agreement[b], float(b))))


def choose_beta(scores: dict[float, float], n_dev: int, preferred: float, min_gain: int = 1,
                majority: float = 0.0) -> float:
    """0 unless the vote alone (beta = 1) beats `majority` (the dev accuracy of always answering the most frequent
    label) and some beta > 0 beats beta = 0, both by at least `min_gain` dev examples; then, among the betas that
    beat beta = 0, those within one example of the best are kept and the one closest to `preferred` wins (ties: the
    better dev accuracy, then the smaller beta)."""
    one_example, eps = 1.0 / n_dev, 1e-9
    # design choice: a store whose vote is no better than the majority class carries no label knowledge (CB: a
    # 25%-accurate teacher's store won one dev example by chance and cost two test examples).
    if scores.get(1.0, 0.0) < majority + min_gain * one_example - eps:
        return 0.0
    # design choice: retrieval must earn its weight on dev; a tie keeps the student alone (a tied store hurt BoolQ).
    earned = [b for b in scores if b > 0 and scores[b] >= scores.get(0.0, 0.0) + min_gain * one_example - eps]
    if not earned:
        return 0.0
    best = max(scores[b] for b in earned)
    # design choice: one dev example of slack among the earning betas; the dev split is tiny (16-32 examples).
    near_best = [b for b in earned if scores[b] >= best - one_example - eps]
    return min(near_best, key=lambda b: (abs(b - preferred), -scores[b], b))


def binomial_tail(successes: int, n: int, p: float) -> float:
    """P(X >= successes) for X ~ Binomial(n, p): how likely a guesser right with probability p does this well."""
    from scipy.stats import binomtest

    return float(binomtest(successes, n, p, alternative="greater").pvalue)


def teacher_trust(store, task, demo_uids, alpha: float) -> dict:
    """Is the teacher better than the majority class on gold labels it was not shown? Its soft labels on the store's
    train entries (the few-shot demonstrations left out) against the most frequent label's share, one-sided
    binomial test. With no such entries (an imported store) nothing can be checked and the store is trusted."""
    demos = {task.serialize(e.fields) for e in task.train if e.uid in set(demo_uids or ())}
    gold = [e for e in store.list() if e.source == "train" and e.soft_labels and e.label in e.soft_labels
            and task.serialize(e.fields) not in demos]
    if not gold:
        return {"held_out_gold": 0, "trusted": True}
    right = sum(max(e.soft_labels, key=e.soft_labels.get) == e.label for e in gold)
    majority = max(Counter(e.label for e in gold).values())
    p_value = binomial_tail(right, len(gold), majority / len(gold))
    return {"held_out_gold": len(gold), "teacher_right": right, "majority_right": majority,
            "p_value": round(p_value, 4), "trusted": alpha >= 1.0 or p_value < alpha}


def teacher_vs_student(teacher_probs: np.ndarray, student_probs: np.ndarray, gold: np.ndarray) -> dict:
    """Does the teacher answer more of these gold examples right than the student alone? A tie is not a win: the
    student alone is never made worse to follow a teacher that knows no more than it does."""
    gold = np.asarray(gold)
    teacher_right = int((np.asarray(teacher_probs).argmax(-1) == gold).sum())
    student_right = int((np.asarray(student_probs).argmax(-1) == gold).sum())
    return {"dev_examples": int(len(gold)), "teacher_right": teacher_right, "student_right": student_right,
            "teacher_wins": teacher_right > student_right}


def beta_reason(block: dict) -> str:
    """Why the student block's beta is what it is, in one line for the UI."""
    trust = block.get("teacher_trust") or {}
    if not trust.get("trusted", True):
        return (f"retrieval off: the teacher is no better than the majority class on {trust['held_out_gold']} gold "
                f"examples it was not shown ({trust['teacher_right']} right vs {trust['majority_right']}, "
                f"p = {trust['p_value']:.2f})")
    versus = block.get("teacher_vs_student") or {}
    if versus and not versus["teacher_wins"]:
        return (f"retrieval off: on the {versus['dev_examples']} dev examples the teacher is no better than the "
                f"student alone ({versus['teacher_right']} right vs {versus['student_right']})")
    if block.get("beta_teacher_agreement"):
        return (f"chosen by agreement with the teacher on {block.get('beta_heldout')} held-out inputs it labelled "
                f"({100 * block['beta_teacher_agreement'][str(block.get('beta', 0.0))]:.1f}% at this beta)")
    if block.get("beta", 0.0) == 0.0 and block.get("beta_dev_accuracy"):
        return "retrieval off: on the dev split it did not beat the student alone (or the majority class)"
    if block.get("beta_dev_accuracy"):
        return "chosen on the dev split"
    return "as configured"


def check_store_not_empty(run, store) -> None:
    if store.count() == 0:
        raise StudentError(f"the knowledge store of run {run.name} is empty: run step 1 for it, or import entries "
                           "in the Knowledge store tab, before training the student")


def train_students(run, task, store, teacher_params: int, progress=noop_progress, should_stop=None,
                   teacher=None) -> dict:
    """Train both students on `store`, build the key index, choose beta; returns the summary block. Raises
    Cancelled within a training batch of `should_stop()` turning true. The `teacher` beta rule scores held-out
    inputs with `teacher` (loaded when not given)."""
    config: RunConfig = run.config
    cfg, seed = config.student, config.seed
    started = time.perf_counter()
    check_store_not_empty(run, store)
    items = select_items(store, task, cfg)
    run.log("student_items", **items.report)
    student = build_student(cfg, list(task.labels), task_texts(task, items.texts), teacher_params, seed=seed)
    ratio = compression_ratio(student, teacher_params)
    if cfg.encoder == "tiny" and ratio > cfg.max_params_fraction + 1e-12:
        raise StudentError(f"student has {student.n_params:,} parameters, over the budget of the teacher's")
    progress("student", 0, 1, {"message": f"student {student.n_params/1e6:.3f}M params = {ratio:.3%} of the teacher"})
    pretrain_losses = []
    if cfg.encoder == "tiny" and cfg.init == "minilm" and cfg.pretrain_epochs:
        texts, targets = pretraining_corpus(task, items, store.embedder.name, cfg, seed,
                                            Path(config.workspace) / "cache", should_stop)
        pretrain_losses = pretrain(student, texts, targets, cfg, seed,
                                   on_epoch=lambda e, n, l: progress("pretrain", e, n, {"loss": l}),
                                   should_stop=should_stop)
    kd_student, gold_student = clone(student), clone(student)

    def epochs(stage):
        return lambda e, n, losses: progress(stage, e, n, {"loss": sum(losses.values()), "message": str(losses)})

    report = finetune(student, items, cfg, seed, retrieval=True, on_epoch=epochs("student"), should_stop=should_stop)
    kd_report = finetune(kd_student, items, cfg, seed, retrieval=False, on_epoch=epochs("plain-kd"),
                         should_stop=should_stop)
    gold_items = gold_only(items, len(task.labels))
    gold_report = None
    if gold_items.texts:
        gold_cfg = replace(cfg, epochs=gold_only_epochs(items, gold_items, cfg))
        # no KD: with one-hot targets it would only repeat CE
        gold_report = finetune(gold_student, gold_items, gold_cfg, seed, retrieval=False,
                               on_epoch=epochs("gold-only"), should_stop=should_stop, kd=False)
    student.save(run.student_dir)
    kd_student.save(run.kd_student_dir)
    shutil.rmtree(run.gold_student_dir, ignore_errors=True)  # a retrained run must not keep an old baseline
    if gold_report is not None:
        gold_student.save(run.gold_student_dir)
    index = None
    rows = np.flatnonzero(items.indexed)
    if len(rows):
        _, keys = student.encode([items.texts[i] for i in rows])
        index = KeyIndex.build(store, [items.ids[i] for i in rows], keys, items.soft[rows], list(task.labels),
                               [task.labels[int(items.soft[i].argmax())] for i in rows], items.weight[rows])
    indexed = {items.ids[i] for i in rows}
    # Entries filtered out now stay out of retrieval later unless a person curates them (see student/live.py).
    run.unindexed_ids_path.write_text(json.dumps(sorted(i for i in store.ids() if i not in indexed)),
                                      encoding="utf-8")
    trust, beta, dev_scores, agreement, versus = {}, (cfg.beta if index is not None else 0.0), {}, {}, {}
    held = heldout_inputs(task, BETA_HELDOUT) if cfg.tune_beta else []
    if cfg.tune_beta:
        trust = teacher_trust(store, task, run.summary().get("score", {}).get("demo_uids"), TRUST_ALPHA)
        if held and index is not None and len(index):
            from ..teacher.scorer import run_scorer

            progress("student", 0, 1, {"message": f"teacher labels for {len(held)} held-out inputs (beta)"})
            scorer = run_scorer(run, task, teacher or run_teacher(run, progress))
            probs = scorer.probs(held)
            beta, agreement = tune_beta_on_teacher(student, index, task, cfg.k, cfg.temperature, probs,
                                                   [task.serialize(f) for f in held])
            # design choice: follow the teacher only where it beats the student alone (bench/results/beta_guard.md)
            if beta > 0 and trust["trusted"] and task.dev:
                progress("student", 0, 1, {"message": f"teacher vs student alone on {len(task.dev)} dev examples"})
                alone = predict(student, None, [task.serialize(e.fields) for e in task.dev], cfg.k,
                                cfg.temperature, 0.0).student  # the student alone: no neighbours to fetch
                versus = teacher_vs_student(scorer.probs([e.fields for e in task.dev]), alone,
                                            [task.label_index(e.label) for e in task.dev])
                if not versus["teacher_wins"]:
                    beta = 0.0
        else:
            beta, dev_scores = tune_beta(student, index, task, cfg.k, cfg.temperature, cfg.beta)
        # design choice: significance, not a margin: 28 held-out gold examples are too few for a point estimate.
        if not trust["trusted"]:
            beta = 0.0  # the teacher is no better than the majority class on held-out gold: its votes cannot help
    block = {
        "params": student.n_params, "compression_ratio": round(ratio, 6), "encoder": cfg.encoder,
        "embed_dim": student.model.encoder.tokens.embedding_dim if student.vocab else None,
        "vocab": len(student.vocab) if student.vocab else None, "items": items.report,
        "pretrain_losses": [round(x, 4) for x in pretrain_losses], "losses_last": report.losses[-1],
        "kd_losses_last": kd_report.losses[-1],
        "gold_only": {"examples": len(gold_items.texts), "epochs": len(gold_report.losses),
                      "losses_last": gold_report.losses[-1]} if gold_report else None,
        "beta": beta, "beta_dev_accuracy": dev_scores,
        "beta_teacher_agreement": agreement, "beta_heldout": len(held) if agreement else 0, "teacher_trust": trust,
        "teacher_vs_student": versus, "k": cfg.k, "temperature": cfg.temperature,
        "seconds": round(time.perf_counter() - started, 2),
    }
    run.update_summary(student=block)
    run.log("student_trained", **{k: v for k, v in block.items() if k != "items"})
    return block


def load_students(run, store) -> tuple[Student, Student, KeyIndex | None, float]:
    """The trained students, key index and chosen beta of a run."""
    block = run.summary().get("student")
    if not block:
        raise StudentError(f"run {run.name} has no trained student: run `student --from {run.name}` first")
    student, kd_student = Student.load(run.student_dir), Student.load(run.kd_student_dir)
    index = live_index(run, store, student, KeyIndex.open(store)) if block["items"]["indexed"] else None
    return student, kd_student, index, float(block["beta"])


def run_student(config: RunConfig, from_run: str, progress=noop_progress, evaluate_after: bool = True,
                eval_limit: int | None = None, teacher=None, check_task: bool = True, should_stop=None):
    """Step 3 on an existing step-1 run: train, index, pick beta, then (by default) evaluate. The run's saved
    config keeps its own task and seed; only its `student` section is replaced by `config.student`.
    `should_stop()` true raises Cancelled within a batch (of training, or of the teacher's scoring)."""
    from ..config import save_yaml
    from ..runs import RunError, open_run
    from ..tasks import same_task, task_of_run

    run = open_run(config.workspace, from_run)
    if check_task and not same_task(config.task, run.config.task):
        raise RunError(f"run {run.name} is a {run.config.task} run, not {config.task}")
    summary = run.summary()
    if summary.get("status") != "done" or not summary.get("teacher_params"):
        raise RunError(f"run {run.name} has no finished knowledge store (status {summary.get('status')!r})")
    task = task_of_run(run)
    store = run_store(run, task)
    check_store_not_empty(run, store)  # before the run's config is touched: a refused run stays as it was
    run.config.student = config.student
    save_yaml(run.config, run.config_path)
    if config.student.tune_beta or evaluate_after:
        teacher = teacher or run_teacher(run, progress)  # loaded once for the beta rule and the evaluation
    if config.student.teacher_unlabeled:
        teacher = teacher or run_teacher(run, progress)
        with interruptible(teacher.model, should_stop):
            run.update_summary(unlabeled=label_unlabeled(run, task, store, teacher,
                                                         config.student.teacher_unlabeled, progress, should_stop))
    train_students(run, task, store, int(summary["teacher_params"]), progress, should_stop, teacher)
    if evaluate_after:
        evaluate_run(run, task, store, teacher, progress, eval_limit, should_stop)
    return run


def load_gold_student(run) -> Student | None:
    """The run's "student, gold only" baseline (None: trained before it existed, or no gold examples)."""
    return Student.load(run.gold_student_dir) if run.gold_student_dir.is_dir() else None


def evaluate_run(run, task, store, teacher=None, progress=noop_progress, limit: int | None = None,
                 should_stop=None) -> dict:
    """Evaluate a run whose students are trained (loads the teacher when not given)."""
    from .evaluate import evaluate

    student, kd_student, index, beta = load_students(run, store)
    teacher = teacher or run_teacher(run, progress)
    with interruptible(teacher.model, should_stop):
        return evaluate(run, task, store, teacher, student, kd_student, index, beta, limit=limit, progress=progress,
                        gold_student=load_gold_student(run))


def teacher_inputs(task, exclude: set[str] = frozenset()) -> list[dict]:
    """The inputs the teacher may label for the student, in a fixed order: `teacher_pool` (SST-2: whole GLUE train
    sentences; else the task's unlabeled inputs) without repeats, without any train, dev or test input (dev picks
    beta; test is the benchmark) and without the serialized texts in `exclude`."""
    from ..tasks.builtin import teacher_pool

    banned = {task.serialize(e.fields) for e in task.train + task.dev + task.test} | set(exclude)
    pool, seen = [], set()
    for fields in teacher_pool(task):
        text = task.serialize(fields)
        if text not in banned and text not in seen:
            seen.add(text)
            pool.append(fields)
    # design choice: a fixed shuffle (seed 0) so every seed's student sees the same unlabeled inputs
    random.Random(0).shuffle(pool)
    return pool


def label_unlabeled(run, task, store, teacher, n: int, progress=noop_progress, chunk: int = 512,
                    should_stop=None) -> dict:
    """Top the store up to `n` teacher-labelled unlabeled inputs (source `unlabeled`, label = the teacher's argmax).

    The inputs are `teacher_inputs`, in order. Already labelled inputs are kept, so a rerun only scores what is
    missing. The scorer sorts each chunk by length into
    batches, so a larger chunk pads less. A cancel (`should_stop()`) keeps the chunks already stored and drops the
    one in flight.
    """
    from ..store.knowledge_store import Entry
    from ..teacher.scorer import run_scorer

    have = {e.text for e in store.list(source="unlabeled")}
    held = {task.serialize(f) for f in heldout_inputs(task, BETA_HELDOUT)}
    todo = [f for f in teacher_inputs(task, exclude=have) if task.serialize(f) not in held][: max(0, n - len(have))]
    if not todo:
        return {"unlabeled_entries": len(have), "scored": 0}
    started = time.perf_counter()
    scorer = run_scorer(run, task, teacher)
    labels = list(task.labels)
    for start in range(0, len(todo), chunk):
        part = todo[start : start + chunk]
        entries = []
        for fields, p in zip(part, scorer.probs(part, should_stop)):
            label = labels[int(p.argmax())]
            entries.append(Entry(fields=fields, label=label, source="unlabeled", teacher_label=label, agreement=True,
                                 soft_labels={l: float(x) for l, x in zip(labels, p)}, text=task.serialize(fields)))
        store.add(entries)
        progress("unlabeled", start + len(part), len(todo), {"message": "teacher labels for unlabeled inputs"})
    return {"unlabeled_entries": len(have) + len(todo), "scored": len(todo),
            "seconds": round(time.perf_counter() - started, 2)}


def step1_runs(workspace) -> list[str]:
    """Runs whose knowledge store is finished (step 1 done), newest first: what a student can train on."""
    def finished(name: str) -> bool:
        summary = read_summary(workspace, name)
        return summary.get("status") == "done" and bool(summary.get("teacher_params"))

    return [name for name in runs_newest_first(workspace) if finished(name)]


def student_job(config: RunConfig, from_run: str, eval_limit: int | None):
    """A job function (for `JobManager.submit`) that trains and evaluates the student of `from_run`; a cancel
    request stops it at the next progress report (an epoch, or a stage of the evaluation)."""
    from ..errors import Cancelled

    def fn(progress, should_stop, job):
        job.run = from_run

        def guarded(stage, done, total, info):
            if should_stop():
                raise Cancelled(f"stopped during {stage}")
            progress(stage, done, total, info)

        return run_student(config, from_run, guarded, eval_limit=eval_limit, check_task=False,
                           should_stop=should_stop).name

    return fn
