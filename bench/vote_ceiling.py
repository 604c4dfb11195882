"""How far can the neighbours' vote go with N teacher-labelled real inputs in the store, if the query key were
perfect? k-NN vote (beta = 1) over the store items + the first N scored unlabeled inputs of
`bench/unlabeled_ablation.py`, with query and entry keys from the teacher's own answer-position hidden state
(576-d, and PCA to 64-d as the student's key head would predict it) or from MiniLM sentence embeddings. Neither
query key is allowed at inference (both need a model far above the student's budget): these are ceilings.

Usage: python -m bench.vote_ceiling --seeds 13 21 --ns 0 500 2000
       python -m bench.vote_ceiling --render   # rewrite the md from the JSON, running nothing

Also scores the test split with the batched scorer, so the teacher's test accuracy is checked against the
accuracy benchmark's. Needs the caches the ablation wrote (`--teacher-keys-ns`). Writes
`bench/results/vote_ceiling.{md,json}`.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.unlabeled_ablation import pca_keys  # noqa: E402

from retrikt.config import StudentConfig  # noqa: E402
from retrikt.store.embed import default_embedder  # noqa: E402
from retrikt.student.retrieval import mix  # noqa: E402
from retrikt.runs import open_run  # noqa: E402
from retrikt.teacher.scorer import run_scorer  # noqa: E402
from retrikt.context import run_store, run_teacher  # noqa: E402
from retrikt.student.stage import teacher_inputs  # noqa: E402
from retrikt.student.train import minilm_targets, select_items  # noqa: E402
from retrikt.tasks import task_of_run  # noqa: E402

from bench.report import write_json, write_md  # noqa: E402

ROOT = Path(__file__).resolve().parent

GRID = [(8, 0.05), (32, 0.05), (32, 1.0)]


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-12)).astype(np.float32)


def vote(queries, keys, soft, k, tau):
    sims = queries @ keys.T
    top = np.argsort(-sims, axis=1)[:, :k]
    near = np.take_along_axis(sims, top, axis=1)
    return mix(np.zeros((len(queries), soft.shape[1])), soft[top], near, 1.0, tau)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[13, 21])
    parser.add_argument("--ns", type=int, nargs="+", default=[0, 500, 2000])
    parser.add_argument("--workspace", default=str(ROOT.parent / "workspace"))
    parser.add_argument("--out", default=str(ROOT / "results"))
    parser.add_argument("--render", action="store_true", help="rewrite the md from the JSON in --out, running nothing")
    args = parser.parse_args(argv)
    if args.render:
        write(rows_of(json.loads((Path(args.out) / "vote_ceiling.json").read_text(encoding="utf-8"))), Path(args.out))
        return 0
    torch.set_num_threads(1)
    ws = Path(args.workspace)
    cfg = StudentConfig()
    report, teacher = [], None
    for seed in args.seeds:
        run = open_run(ws, f"bench-SST-2-s{seed}")
        task = task_of_run(run)
        store = run_store(run, task)
        teacher = teacher or run_teacher(run)
        labels = list(task.labels)
        base = select_items(store, task, cfg)
        rows = np.flatnonzero(base.indexed)
        scored = dict(np.load(ws / "ablation" / f"scores-s{seed}-sentences.npz"))
        item_hidden = np.load(ws / "ablation" / f"items-s{seed}.npy")
        pool = teacher_inputs(task)
        n_max = max(args.ns)
        texts = [task.serialize(f) for f in pool[:n_max]]
        scorer = run_scorer(run, task, teacher)
        started = time.perf_counter()
        test_probs, test_hidden = scorer.features([e.fields for e in task.test])
        seconds = time.perf_counter() - started
        gold = np.array([labels.index(e.label) for e in task.test])
        teacher_acc = float((test_probs.argmax(1) == gold).mean())
        test_mini = unit(default_embedder().encode([task.serialize(e.fields) for e in task.test]))
        pool_mini = unit(minilm_targets(texts, ws / "cache")) if texts else np.zeros((0, 384), np.float32)
        for n in args.ns:
            soft = np.concatenate([base.soft[rows], scored["probs"][:n]])
            hidden = np.concatenate([item_hidden[rows], scored["hidden"][:n]])
            mini = np.concatenate([unit(base.embeddings[rows]), pool_mini[:n]])
            both = np.concatenate([hidden, test_hidden])
            pca = pca_keys(both, np.arange(len(hidden)), cfg.key_dim)
            spaces = {"teacher hidden (576-d)": (unit(hidden), unit(test_hidden)),
                      "teacher hidden, PCA 64-d": (pca[: len(hidden)], pca[len(hidden):]),
                      "MiniLM": (mini, test_mini)}
            for space, (keys, queries) in spaces.items():
                accs = {f"k={k} tau={tau}": float((vote(queries, keys, soft, k, tau).argmax(1) == gold).mean())
                        for k, tau in GRID}
                report.append({"seed": seed, "n": n, "space": space, "entries": len(keys), **accs,
                               "teacher_test_accuracy": teacher_acc, "teacher_test_seconds": round(seconds, 1)})
                print(json.dumps(report[-1]), flush=True)
    write(report, Path(args.out))
    print(render(report))
    return 0


def rows_of(data: dict | list) -> list[dict]:
    """The rows of a vote_ceiling.json (the first reports were a bare list of rows)."""
    return data if isinstance(data, list) else data["rows"]


def write(report: list[dict], out: Path) -> None:
    write_json(out / "vote_ceiling.json", {"rows": report}, __file__, newline=False)
    write_md(out / "vote_ceiling.md", render(report), __file__)


def render(report: list[dict]) -> str:
    lines = ["# Vote ceiling: k-NN over teacher-labelled store + N real inputs with query keys the student may not use",
             "", "Test accuracy (%) of the vote alone (beta = 1), 872 test sentences.",
             "", "| seed | N | key space | entries | " + " | ".join(f"k={k}, tau={t}" for k, t in GRID) + " | teacher |",
             "|---|---|---|---|" + "---|" * len(GRID) + "---|"]
    for r in report:
        lines.append(f"| {r['seed']} | {r['n']} | {r['space']} | {r['entries']} | "
                     + " | ".join(f"{100 * r[f'k={k} tau={t}']:.1f}" for k, t in GRID)
                     + f" | {100 * r['teacher_test_accuracy']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
