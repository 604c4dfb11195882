"""How far can retrieval of teacher soft labels go? k-NN over a run's knowledge store in the packaged MiniLM's
sentence space (22M parameters, what the tiny student's encoder is distilled towards), on the test split.

Usage: python -m bench.retrieval_ceiling --workspace DIR --run NAME [--unlabeled N]
       python -m bench.retrieval_ceiling --render   # rewrite the md from the JSON, running nothing

The vote of the k nearest entries (softmax(cosine / tau) weights over their teacher soft labels) is the
retrieval-only prediction (beta = 1) with a far larger encoder than the student's, so it bounds what the
student's own keys can retrieve. `--unlabeled N` also scores N unlabeled in-domain inputs with the run's teacher
scorer (not written to the store) and reports them alone and together with the store. Writes
`bench/results/retrieval_ceiling.{md,json}`.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np

from retrikt.store.embed import default_embedder
from retrikt.runs import open_run
from retrikt.context import run_store, run_teacher
from retrikt.tasks import task_of_run

from bench.report import write_report

ROOT = Path(__file__).resolve().parent

GRID = [(8, 0.05), (8, 1.0), (32, 0.05), (32, 1.0)]


def knn_accuracy(queries: np.ndarray, keys: np.ndarray, soft: np.ndarray, gold: np.ndarray, k: int,
                 tau: float) -> float:
    sims = queries @ keys.T
    top = np.argsort(-sims, axis=1)[:, :k]
    near = np.take_along_axis(sims, top, axis=1)
    weights = np.exp((near - near.max(1, keepdims=True)) / tau)
    weights /= weights.sum(1, keepdims=True)
    return float(((weights[..., None] * soft[top]).sum(1).argmax(1) == gold).mean())


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True).clip(min=1e-12)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace")
    parser.add_argument("--run")
    parser.add_argument("--unlabeled", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "results"))
    parser.add_argument("--render", action="store_true", help="rewrite the md from the JSON in --out")
    args = parser.parse_args(argv)
    if args.render:
        write(json.loads((Path(args.out) / "retrieval_ceiling.json").read_text(encoding="utf-8")), Path(args.out))
        return 0
    if not (args.workspace and args.run):
        parser.error("--workspace and --run are required (unless --render)")
    run = open_run(args.workspace, args.run)
    task = task_of_run(run)
    store = run_store(run, task)
    labels = list(task.labels)
    embedder = default_embedder()
    entries = [e for e in store.list() if e.soft_labels]
    ids, vectors = store.all_embeddings()
    vector_of = dict(zip(ids, vectors))
    sets = {}
    soft = np.array([[e.soft_labels.get(l, 0.0) for l in labels] for e in entries])
    sets["store (all scored entries)"] = (unit(np.array([vector_of[e.id] for e in entries])), soft / soft.sum(1, keepdims=True))
    generated = [i for i, e in enumerate(entries) if e.source.startswith("generated")]
    if generated:
        sets["store, generated only"] = tuple(a[generated] for a in sets["store (all scored entries)"])
    seconds = None
    if args.unlabeled:
        from retrikt.teacher.scorer import run_scorer

        banned = {task.serialize(e.fields) for e in task.train + task.dev + task.test}
        pool = [f for f in task.unlabeled if task.serialize(f) not in banned]
        random.Random(0).shuffle(pool)
        pool = pool[: args.unlabeled]
        scorer = run_scorer(run, task, run_teacher(run, lambda *a: None))
        started = time.perf_counter()
        probs = scorer.probs(pool)
        seconds = time.perf_counter() - started
        keys = unit(embedder.encode([task.serialize(f) for f in pool]))
        sets[f"{len(pool)} teacher-labelled unlabeled inputs"] = (keys, probs)
        base_keys, base_soft = sets["store (all scored entries)"]
        sets["store + those inputs"] = (np.concatenate([base_keys, keys]), np.concatenate([base_soft, probs]))
    queries = unit(embedder.encode([task.serialize(e.fields) for e in task.test]))
    gold = np.array([labels.index(e.label) for e in task.test])
    results = {name: {"entries": len(keys), **{f"k={k} tau={tau}": knn_accuracy(queries, keys, soft_, gold, k, tau)
                                               for k, tau in GRID}}
               for name, (keys, soft_) in sets.items()}
    evaluation = run.eval_summary_path
    systems = json.loads(evaluation.read_text())["systems"] if evaluation.is_file() else {}
    report = {"run": args.run, "task": task.name, "test": len(gold), "knn": results,
              "teacher_seconds_per_input": seconds / args.unlabeled if seconds else None,
              "evaluated": {name: s.get("accuracy") for name, s in systems.items()}}
    write(report, Path(args.out))
    print(render(report))
    return 0


def write(report: dict, out: Path) -> None:
    write_report(out, "retrieval_ceiling", report, render(report), __file__, newline=False)


def render(report: dict) -> str:
    lines = [f"# Retrieval ceiling: MiniLM k-NN over teacher soft labels ({report['task']}, run {report['run']})", "",
             f"Test accuracy (%) of the retrieval-only vote on {report['test']} test examples.", "",
             "| entries searched | n | " + " | ".join(f"k={k}, tau={t}" for k, t in GRID) + " |",
             "|---|---|" + "---|" * len(GRID)]
    for name, row in report["knn"].items():
        lines.append(f"| {name} | {row['entries']} | "
                     + " | ".join(f"{100 * row[f'k={k} tau={t}']:.1f}" for k, t in GRID) + " |")
    if report["evaluated"]:
        lines += ["", "The same run's evaluation: " + ", ".join(
            f"{name} {100 * acc:.1f}" for name, acc in report["evaluated"].items() if acc is not None) + "."]
    if report["teacher_seconds_per_input"]:
        lines += ["", f"Teacher scoring of the unlabeled inputs: {report['teacher_seconds_per_input']:.3f} s per input."]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
