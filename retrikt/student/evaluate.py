"""Evaluation on the test split: majority class, teacher, student, student + retrieval and plain KD, side by side.

Writes `<run>/eval/summary.json` (metrics, throughput and latency per system) and `<run>/eval/records.jsonl` (one
line per test example: gold, every system's prediction and probabilities, the retrieved neighbours).
"""
from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path

import numpy as np

from .retrieval import predict
from ..teacher.scorer import TeacherScorer, run_scorer

SYSTEMS = ("majority", "teacher", "student", "student_retrieval", "plain_kd", "student_gold")
LATENCY_SAMPLE = 16
"""Examples timed one at a time (batch size 1) for the per-example latency."""


def metrics(gold: np.ndarray, pred: np.ndarray, labels: list[str], task_name: str) -> dict:
    """Accuracy and macro-F1 always; F1 of the positive class (`equivalent`) for MRPC."""
    from sklearn.metrics import f1_score

    out = {"accuracy": float((gold == pred).mean()) if len(gold) else 0.0}
    # a class never predicted nor present scores 0, so the mean runs over every label of the task
    f1s = ([float(f) for f in f1_score(gold, pred, labels=list(range(len(labels))), average=None, zero_division=0)]
           if len(gold) else [0.0] * len(labels))
    out["macro_f1"] = float(np.mean(f1s))
    if task_name == "MRPC":
        out["f1"] = f1s[labels.index("equivalent")]
    return {k: round(v, 4) for k, v in out.items()}


def test_subset(task, limit: int | None) -> list:
    """The test split, or a fixed random subset of `limit` examples (same for every seed and system)."""
    if not limit or len(task.test) <= limit:
        return list(task.test)
    keep = set(random.Random(0).sample(range(len(task.test)), limit))
    return [e for i, e in enumerate(task.test) if i in keep]


def _timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def _speed(n: int, seconds: float, latency: float | None) -> dict:
    return {"seconds": round(seconds, 4), "examples_per_s": round(n / seconds, 2) if seconds > 0 else None,
            "latency_ms": None if latency is None else round(1000 * latency, 3)}


def _latency(fn, items) -> float:
    """Mean seconds per example, one example per call."""
    start = time.perf_counter()
    for item in items:
        fn([item])
    return (time.perf_counter() - start) / max(1, len(items))


def evaluate(run, task, store, teacher, student, kd_student, index, beta: float, limit: int | None = None,
             progress=None, gold_student=None) -> dict:
    """Evaluate every system on the test split (or `limit` of it) and write the eval folder of `run`."""
    cfg = run.config.student
    progress = progress or (lambda *a: None)
    examples = test_subset(task, limit)
    labels = list(task.labels)
    texts = [task.serialize(e.fields) for e in examples]
    gold = np.array([labels.index(e.label) for e in examples])
    results, probs = {}, {}
    n = len(examples)

    majority = Counter(gold.tolist()).most_common(1)[0][0]
    # design choice: majority = the most frequent test label (the usual reference floor, as in LM-BFF tables).
    probs["majority"] = np.eye(len(labels))[np.full(n, majority)]
    results["majority"] = {**metrics(gold, probs["majority"].argmax(-1), labels, task.name), "label": labels[majority]}

    progress("eval", 0, 4, {"message": "student and student + retrieval"})
    pred = predict(student, index, texts, cfg.k, cfg.temperature, beta)
    probs["student"], probs["student_retrieval"] = pred.student, pred.mixed
    sample = texts[:LATENCY_SAMPLE]
    lat_s = _latency(lambda t: predict(student, None, t, cfg.k, cfg.temperature, 0.0), sample)
    lat_r = _latency(lambda t: predict(student, index, t, cfg.k, cfg.temperature, beta), sample)
    results["student"] = {**metrics(gold, pred.student.argmax(-1), labels, task.name),
                          **_speed(n, pred.student_seconds, lat_s)}
    total = pred.student_seconds + pred.retrieval_seconds
    results["student_retrieval"] = {**metrics(gold, pred.mixed.argmax(-1), labels, task.name), **_speed(n, total, lat_r),
                                    "retrieval_seconds": round(pred.retrieval_seconds, 4),
                                    "retrieval_overhead": round(pred.retrieval_seconds / pred.student_seconds, 4),
                                    "beta": beta, "k": cfg.k, "temperature": cfg.temperature}

    progress("eval", 1, 4, {"message": "plain KD"})
    (probs["plain_kd"], _), seconds = _timed(lambda: kd_student.encode(texts))
    lat_kd = _latency(lambda t: kd_student.encode(t), sample)
    results["plain_kd"] = {**metrics(gold, probs["plain_kd"].argmax(-1), labels, task.name),
                           **_speed(n, seconds, lat_kd)}

    if gold_student is not None:  # what the student gets from its pretraining and the gold examples alone
        (probs["student_gold"], _), seconds = _timed(lambda: gold_student.encode(texts))
        results["student_gold"] = {**metrics(gold, probs["student_gold"].argmax(-1), labels, task.name),
                                   **_speed(n, seconds, None)}

    if teacher is not None:
        progress("eval", 2, 4, {"message": f"teacher on {n} test examples"})
        scorer = run_scorer(run, task, teacher)
        fields = [e.fields for e in examples]
        probs["teacher"], seconds = _timed(lambda: scorer.probs(fields))
        fresh = TeacherScorer(teacher, task, run.config.scorer, seed=run.config.seed)
        fresh.use_demos(scorer.report.demo_uids, list(map(float, scorer.prior)))
        lat_t = _latency(fresh.probs, fields[:LATENCY_SAMPLE])
        results["teacher"] = {**metrics(gold, probs["teacher"].argmax(-1), labels, task.name),
                              **_speed(n, seconds, lat_t), "params": teacher.n_params}
        for name in ("student", "student_retrieval"):
            if results[name]["examples_per_s"] and results["teacher"]["examples_per_s"]:
                results[name]["speedup_vs_teacher"] = round(
                    results[name]["examples_per_s"] / results["teacher"]["examples_per_s"], 1)

    progress("eval", 3, 4, {"message": "writing records"})
    run.eval_dir.mkdir(parents=True, exist_ok=True)
    _write_records(run.eval_records_path, examples, texts, gold, labels, probs, pred.neighbours, store)
    summary = {"task": task.name, "seed": run.config.seed, "test_examples": n, "test_total": len(task.test),
               "student_params": student.n_params, "teacher_params": teacher.n_params if teacher else None,
               "systems": results}
    run.eval_summary_path.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    run.update_summary(eval={name: {k: v for k, v in r.items() if k in ("accuracy", "macro_f1", "f1", "examples_per_s")}
                             for name, r in results.items()})
    progress("eval", 4, 4, {"message": "done"})
    return summary


def _write_records(path: Path, examples, texts, gold, labels, probs, neighbours, store) -> None:
    wanted = sorted({i for row in neighbours.ids for i in row})
    entries = {e.id: e for e in store.get(wanted)} if wanted else {}

    def system(name, row):
        p = probs[name][row]
        return {"pred": labels[int(np.argmax(p))], "probs": {l: round(float(x), 5) for l, x in zip(labels, p)}}

    with path.open("w", encoding="utf-8") as handle:
        for row, example in enumerate(examples):
            record = {"uid": example.uid, "text": texts[row], "gold": labels[gold[row]]}
            record.update({name: system(name, row) for name in SYSTEMS if name in probs and name != "majority"})
            record["neighbours"] = [
                {"id": i, "text": entries[i].text, "label": entries[i].label, "source": entries[i].source,
                 "teacher_soft_labels": entries[i].soft_labels, "similarity": round(float(neighbours.sims[row, j]), 5)}
                for j, i in enumerate(neighbours.ids[row])
            ]
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
