"""Where should the student's word knowledge come from? Trains the same student several ways on finished step-1
runs and reports test accuracy without and with retrieval (the step-3 issue's lever 4: a student made of the teacher).

Usage: python -m bench.student_init RUN [RUN ...] [--workspace DIR] [--variants ...]
       python -m bench.student_init --render   # rewrite the md from student_init.json, training nothing

Variants: random init; token/position embeddings projected from MiniLM (PCA); token embeddings projected from the
teacher's own input embeddings (PCA; `init_from_teacher`), positions left random (the teacher has no position
table); MiniLM PCA plus MiniLM sentence-embedding distillation on the unlabeled pool (the product default). Retrieval
here is exact cosine over the student keys in memory with the configured k, temperature and beta (the same formula as
the Chroma path), so only the initialisation differs. Writes `bench/results/student_init.{md,json}`, one row per
(run, variant), merged with the rows already there.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402
import torch  # noqa: E402

from retrikt.context import run_store  # noqa: E402
from retrikt.runs import open_run  # noqa: E402
from retrikt.student.model import PAD, _pca, base_tokenizer, build_student, task_texts  # noqa: E402
from retrikt.student.retrieval import mix  # noqa: E402
from retrikt.student.train import finetune, pretrain, pretraining_corpus, select_items  # noqa: E402
from retrikt.tasks import load_builtin  # noqa: E402

from bench.report import write_report  # noqa: E402
from bench.stats import mean_std  # noqa: E402

ROOT = Path(__file__).resolve().parent

# name -> (StudentConfig.init, pretrain epochs (None = the config's), embeddings from the teacher)
VARIANTS = {"random": ("random", 0, False), "MiniLM embeddings (PCA)": ("minilm", 0, False),
            "teacher embeddings (PCA)": ("random", 0, True),
            "MiniLM embeddings + sentence distillation": ("minilm", None, False)}


def teacher_rows(vocab_ids: list[int], student_tokenizer, teacher_tokenizer, teacher_embeddings: torch.Tensor):
    """One teacher-space row per student word piece: the mean of the teacher's input embeddings of the piece's text
    as the teacher tokenizes it (a word-initial piece with its leading space, a '##' piece without); a special or a
    piece the teacher cannot tokenize gets the mean of all the teacher's rows."""
    fallback = teacher_embeddings.mean(0)
    rows = []
    for piece in student_tokenizer.convert_ids_to_tokens(vocab_ids):
        if piece.startswith("[") and piece.endswith("]"):
            rows.append(fallback)
            continue
        text = piece[2:] if piece.startswith("##") else " " + piece
        ids = teacher_tokenizer.encode(text, add_special_tokens=False)
        rows.append(teacher_embeddings[ids].mean(0) if ids else fallback)
    return torch.stack(rows)


def init_from_teacher(encoder, vocab, teacher_tokenizer, teacher_embeddings: torch.Tensor) -> torch.Tensor:
    """Token embeddings = PCA projections, to the student's width, of `teacher_rows` over the student's vocabulary
    (Model2Vec-style); returns those teacher rows. Positions keep their random initialisation."""
    rows = teacher_rows(vocab.base_ids, base_tokenizer(), teacher_tokenizer, teacher_embeddings.float())
    with torch.no_grad():
        encoder.tokens.weight.copy_(_pca(rows, encoder.tokens.embedding_dim))
        encoder.tokens.weight[PAD].zero_()
    return rows


def accuracy(student, items, texts, gold, cfg) -> tuple[float, float]:
    rows = np.flatnonzero(items.indexed)
    _, bank = student.encode([items.texts[i] for i in rows])
    probs, keys = student.encode(texts)
    sims = keys @ bank.T
    top = np.argsort(-sims, 1)[:, : cfg.k]
    mixed = mix(probs, items.soft[rows][top], np.take_along_axis(sims, top, 1), cfg.beta, cfg.temperature,
                items.weight[rows][top])
    return float((probs.argmax(-1) == gold).mean()), float((mixed.argmax(-1) == gold).mean())


def one_run(workspace: str, name: str, variants: list[str], teacher, report: dict, out: Path) -> None:
    run = open_run(workspace, name)
    task = load_builtin(run.config.task, seed=run.config.seed)
    store = run_store(run, task)
    base = run.config.student
    items = select_items(store, task, base)
    texts = [task.serialize(e.fields) for e in task.test]
    gold = np.array([task.label_index(e.label) for e in task.test])
    for variant in variants:
        init, epochs, from_teacher = VARIANTS[variant]
        cfg = dataclasses.replace(base, init=init, pretrain_epochs=base.pretrain_epochs if epochs is None else epochs)
        started = time.perf_counter()
        student = build_student(cfg, list(task.labels), task_texts(task, items.texts),
                                int(run.summary()["teacher_params"]), seed=run.config.seed)
        if from_teacher:
            init_from_teacher(student.model.encoder, student.vocab, teacher.tokenizer,
                              teacher.model.get_input_embeddings().weight.detach())
        if init == "minilm" and cfg.pretrain_epochs:
            corpus, targets = pretraining_corpus(task, items, store.embedder.name, cfg, run.config.seed,
                                                 Path(workspace) / "cache")
            pretrain(student, corpus, targets, cfg, run.config.seed)
        finetune(student, items, cfg, run.config.seed, retrieval=True)
        alone, mixed = accuracy(student, items, texts, gold, cfg)
        path = out / "student_init.json"  # another bench process may have added rows meanwhile: merge
        if path.is_file():
            report["rows"] = {**json.loads(path.read_text(encoding="utf-8")).get("rows", {}), **report["rows"]}
        report["rows"][f"{name}|{variant}"] = {
            "run": name, "seed": run.config.seed, "task": task.name, "items": len(items.ids), "initialisation": variant,
            "student": alone, "student_retrieval": mixed, "seconds": round(time.perf_counter() - started, 1),
            "beta": base.beta, "k": base.k}
        print(report["rows"][f"{name}|{variant}"], flush=True)
        write(report, out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*")
    parser.add_argument("--workspace", default="workspace")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--cache", default=None, help="teacher cache (default: the workspace's)")
    parser.add_argument("--render", action="store_true", help="rewrite the md from student_init.json, training nothing")
    args = parser.parse_args(argv)
    out = ROOT / "results"
    path = out / "student_init.json"
    report = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    report.setdefault("rows", {})
    if args.render:
        write(report, out)
        return 0
    if not args.runs:
        parser.error("RUN is required (unless --render)")
    torch.set_num_threads(1)
    teacher = None
    if any(VARIANTS[v][2] for v in args.variants):
        from retrikt.config import RunConfig
        from retrikt.teacher.load import load_teacher

        teacher = load_teacher(RunConfig().teacher, cache_dir=args.cache or f"{args.workspace}/cache")
    for name in args.runs:
        one_run(args.workspace, name, args.variants, teacher, report, out)
    return 0


def write(report: dict, out: Path) -> None:
    write_report(out, "student_init", report, render(report), __file__)


def render(report: dict) -> str:
    rows = list(report.get("rows", {}).values())
    lines = ["# Student initialisation: where the student's word knowledge comes from", "",
             "Test accuracy (%) on the task's test split, mean ± std over the step-1 runs (seeds) trained, beta fixed "
             "at the config's, exact in-memory retrieval (k, temperature of the config); seconds = building, "
             "pretraining and fine-tuning one student on 1 torch thread.", "",
             "| task | initialisation | runs (seeds) | student | student + retrieval | seconds |", "|---|---|---|---|---|---|"]
    for task in sorted({r["task"] for r in rows}):
        for variant in VARIANTS:
            group = sorted((r for r in rows if r["task"] == task and r["initialisation"] == variant),
                           key=lambda r: r["seed"])
            if group:
                lines.append(f"| {task} | {variant} | {', '.join(str(r['seed']) for r in group)} | "
                             f"{mean_std([r['student'] for r in group], 100)} | "
                             f"{mean_std([r['student_retrieval'] for r in group], 100)} | "
                             f"{mean_std([r['seconds'] for r in group], digits=0)} |")
    old = report.get("variants")
    if old:  # the first version of this bench: one run, seed 13, its own store
        lines += ["", f"Earlier, one run ({report['run']}, seed {report['seed']}, {report['items']} items, beta "
                  f"{report['beta']}, older code):", "", "| initialisation | student | student + retrieval | seconds |",
                  "|---|---|---|---|"]
        lines += [f"| {v['initialisation']} | {100 * v['student']:.1f} | {100 * v['student_retrieval']:.1f} | "
                  f"{v['seconds']:.0f} |" for v in old]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
