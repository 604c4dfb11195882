"""Does initialising the student from the packaged MiniLM help? Trains the same student three ways on a finished
step-1 run and reports test accuracy without and with retrieval.

Usage: python -m bench.student_init RUN [--workspace DIR]
       python -m bench.student_init --render   # rewrite the md from student_init.json, training nothing

Variants: random init; token/position embeddings projected from MiniLM (PCA); that plus MiniLM sentence-embedding
distillation on the unlabeled pool (the default). Retrieval here is exact cosine over the student keys in memory with
the configured k, temperature and beta (the same formula as the Chroma path), so only the initialisation differs.
Writes `bench/results/student_init.{md,json}`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from retrikt.student.retrieval import mix
from retrikt.runs import open_run
from retrikt.student.model import build_student, task_texts
from retrikt.context import run_store
from retrikt.student.train import finetune, pretrain, pretraining_corpus, select_items
from retrikt.tasks import load_builtin

from bench.report import write_report

ROOT = Path(__file__).resolve().parent

VARIANTS = (("random", "random", 0), ("MiniLM embeddings (PCA)", "minilm", 0),
            ("MiniLM embeddings + sentence distillation", "minilm", None))


def accuracy(student, items, texts, gold, cfg) -> tuple[float, float]:
    rows = np.flatnonzero(items.indexed)
    _, bank = student.encode([items.texts[i] for i in rows])
    probs, keys = student.encode(texts)
    sims = keys @ bank.T
    top = np.argsort(-sims, 1)[:, : cfg.k]
    mixed = mix(probs, items.soft[rows][top], np.take_along_axis(sims, top, 1), cfg.beta, cfg.temperature,
                items.weight[rows][top])
    return float((probs.argmax(-1) == gold).mean()), float((mixed.argmax(-1) == gold).mean())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?")
    parser.add_argument("--workspace", default="workspace")
    parser.add_argument("--render", action="store_true", help="rewrite the md from student_init.json, training nothing")
    args = parser.parse_args(argv)
    out = ROOT / "results"
    if args.render:
        write(json.loads((out / "student_init.json").read_text(encoding="utf-8")), out)
        return 0
    if not args.run:
        parser.error("RUN is required (unless --render)")
    torch.set_num_threads(1)
    run = open_run(args.workspace, args.run)
    task = load_builtin(run.config.task, seed=run.config.seed)
    store = run_store(run, task)
    base = run.config.student
    items = select_items(store, task, base)
    texts = [task.serialize(e.fields) for e in task.test]
    gold = np.array([task.label_index(e.label) for e in task.test])
    report = {"task": task.name, "run": run.name, "seed": run.config.seed, "items": len(items.ids), "beta": base.beta,
              "k": base.k, "variants": []}
    for name, init, epochs in VARIANTS:
        cfg = dataclasses.replace(base, init=init, pretrain_epochs=base.pretrain_epochs if epochs is None else epochs)
        started = time.perf_counter()
        student = build_student(cfg, list(task.labels), task_texts(task, items.texts), int(run.summary()["teacher_params"]),
                                seed=run.config.seed)
        if init == "minilm" and cfg.pretrain_epochs:
            corpus, targets = pretraining_corpus(task, items, store.embedder.name, cfg, run.config.seed,
                                                 Path(args.workspace) / "cache")
            pretrain(student, corpus, targets, cfg, run.config.seed)
        finetune(student, items, cfg, run.config.seed, retrieval=True)
        alone, mixed = accuracy(student, items, texts, gold, cfg)
        report["variants"].append({"initialisation": name, "student": alone, "student_retrieval": mixed,
                                   "seconds": round(time.perf_counter() - started, 1)})
        print(report["variants"][-1], flush=True)
        write(report, out)
    return 0


def write(report: dict, out: Path) -> None:
    write_report(out, "student_init", report, render(report), __file__)


def render(report: dict) -> str:
    lines = [f"# Student initialisation ({report['task']}, run {report['run']}, seed {report['seed']})", "",
             f"Test accuracy (%), {report['items']} training items, beta {report['beta']} fixed, k {report['k']}.", "",
             "| initialisation | student | student + retrieval | seconds |", "|---|---|---|---|"]
    lines += [f"| {v['initialisation']} | {100 * v['student']:.1f} | {100 * v['student_retrieval']:.1f} | "
              f"{v['seconds']:.0f} |" for v in report["variants"]]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
