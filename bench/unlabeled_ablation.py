"""How much do teacher soft labels on real unlabeled inputs lift the student? Student alone, plain KD and student +
retrieval for N teacher-labelled SST-2 train inputs added to a step-1 run's store.

Usage: python bench/unlabeled_ablation.py --seeds 13 21 --ns 0 500 2000 5000 [--pool sentences|all]
       [--teacher-keys-ns 2000] [--workspace DIR] [--tag NAME] [--set epochs=4 ...]

Per seed: the step-1 run `bench-SST-2-s<seed>` (from `bench/step1_runs.py`) gives the store and the restored
few-shot scorer; the first max(N) inputs of a fixed shuffle (seed 0) of `unlabeled-sentences.jsonl` (`--pool sentences`:
whole sentences only; never a train, dev or test input) are scored once with the batched scorer (probabilities and
the answer-position hidden state, cached in the workspace). One student is built and MiniLM-pretrained per seed
(vocabulary from the task's texts plus all max(N) inputs, so every N has the same architecture), then for each N
both students are fine-tuned from that same starting point on the store items + the first N scored inputs
(soft label = calibrated teacher probabilities, label = their argmax, indexed for retrieval), exactly as
`student_stage.label_unlabeled` would add them. Beta is chosen on dev by `choose_beta` with the teacher-trust
check, neighbours are exact cosine top-k over the index keys.

`--teacher-keys-ns N ...` (ReAugKD-style, at those N): index keys are the teacher's answer-position hidden states (PCA to key_dim,
fitted on the indexed inputs), and the student's key head is trained to predict them (cosine regression plus
the in-batch relational loss towards the teacher-key similarities); the query key is still the student's.

Writes `bench/results/unlabeled_ablation[-TAG].{md,json}`.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from retrikt.config import StudentConfig  # noqa: E402
from retrikt.student.retrieval import bank_neighbours, mix, mixed_log_probs, relational_loss  # noqa: E402
from retrikt.runs import open_run  # noqa: E402
from retrikt.teacher.scorer import run_scorer  # noqa: E402
from retrikt.student.model import build_student, task_texts  # noqa: E402
from retrikt.context import run_store, run_teacher  # noqa: E402
from retrikt.student.stage import BETA_GRID, choose_beta, teacher_inputs, teacher_trust  # noqa: E402
from retrikt.student.train import (Items, _epoch_order, clone, finetune, minilm_targets, pretrain,  # noqa: E402
                                   pretraining_corpus, select_items)
from retrikt.tasks import task_of_run  # noqa: E402


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def scored_pool(run, task, teacher, pool, n: int, cache: Path) -> dict:
    """Teacher probabilities + answer-position hidden states of pool[:n] (cached on disk)."""
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as data:
            if int(data["n"]) >= n:
                return {k: data[k] for k in data.files}
    scorer = run_scorer(run, task, teacher)
    started = time.perf_counter()
    probs, hidden = scorer.features(pool[:n])
    out = {"n": np.array(n), "probs": probs.astype(np.float32), "hidden": hidden,
           "seconds": np.array(time.perf_counter() - started)}
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **out)
    return out


def item_hidden(run, task, teacher, items: Items, cache: Path) -> np.ndarray:
    """The teacher's answer-position hidden states of the store items (for teacher keys; cached on disk)."""
    if cache.is_file():
        return np.load(cache)
    fields = [{task.text_fields[0]: t.split(": ", 1)[1]} for t in items.texts]
    _, hidden = run_scorer(run, task, teacher).features(fields)
    np.save(cache, hidden)
    return hidden


def with_unlabeled(base: Items, texts: list[str], probs: np.ndarray, emb: np.ndarray) -> Items:
    n = len(texts)
    return Items(base.ids + [f"unlabeled:{i}" for i in range(n)], base.texts + list(texts), base.gold + [None] * n,
                 np.concatenate([base.soft, probs.astype(np.float64)]) if n else base.soft,
                 np.concatenate([base.weight, np.ones(n)]) if n else base.weight,
                 np.concatenate([base.indexed, np.ones(n, dtype=bool)]) if n else base.indexed,
                 np.concatenate([base.embeddings, emb]).astype(np.float32) if n else base.embeddings,
                 dict(base.report, unlabeled=n))


def knn(query: np.ndarray, keys: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    sims = query @ keys.T
    top = np.argsort(-sims, axis=1)[:, :k]
    return top, np.take_along_axis(sims, top, axis=1)


def finetune_teacher_keys(student, items: Items, tkeys: np.ndarray, cfg: StudentConfig, seed: int) -> float:
    """`finetune(retrieval=True)` with the teacher's keys: the bank is the (fixed) teacher keys of the indexed
    items, the key head learns to predict the teacher key of its own input (cosine) and the teacher-key
    neighbourhoods (relational), and the retrieval loss is taken through its own key against the teacher bank."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = student.model
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=0.01)
    per_epoch = math.ceil(len(_epoch_order(items, random.Random(0))) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.learning_rate, total_steps=cfg.epochs * per_epoch,
                                                pct_start=0.1)
    soft = torch.tensor(items.soft, dtype=torch.float32)
    weight = torch.tensor(items.weight, dtype=torch.float32)
    target_keys = torch.tensor(tkeys, dtype=torch.float32)
    gold = torch.tensor([-100 if g is None else g for g in items.gold])
    bank_rows = np.flatnonzero(items.indexed)
    bank_ids = [items.ids[i] for i in bank_rows]
    bank = target_keys[bank_rows]
    started = time.perf_counter()
    for _ in range(cfg.epochs):
        model.train()
        for start in range(0, len(order := _epoch_order(items, rng)), cfg.batch_size):
            chunk = order[start : start + cfg.batch_size]
            logits, keys, _ = student.forward_texts([items.texts[i] for i in chunk])
            g = gold[chunk]
            loss = 0.0
            if (g >= 0).any():
                loss = loss + cfg.ce_weight * F.cross_entropy(logits, g, ignore_index=-100)
            log_p = logits.log_softmax(-1)
            kl = (soft[chunk] * (soft[chunk].clamp(min=1e-8).log() - log_p)).sum(-1)
            loss = loss + cfg.kd_weight * (weight[chunk] * kl).sum() / weight[chunk].sum().clamp(min=1e-8)
            tk = target_keys[chunk]
            loss = loss + (1 - (keys * tk).sum(-1)).mean()
            loss = loss + cfg.relational_weight * relational_loss(keys, tk @ tk.T, cfg.relational_temperature)
            idx, sims = bank_neighbours(keys, [items.ids[i] for i in chunk], bank, bank_ids, cfg.k)
            rows = torch.tensor(bank_rows)[idx]
            mixed = mixed_log_probs(logits, soft[rows], sims, weight[rows], cfg.beta, cfg.temperature)
            target = torch.where((g >= 0).unsqueeze(-1), F.one_hot(g.clamp(min=0), soft.shape[1]).float(), soft[chunk])
            loss = loss + cfg.retrieval_weight * -(target * mixed).sum(-1).mean()
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
    model.eval()
    return time.perf_counter() - started


def pca_keys(hidden: np.ndarray, fit_rows: np.ndarray, dim: int) -> np.ndarray:
    x = hidden.astype(np.float64)
    mean = x[fit_rows].mean(0)
    _, _, vt = np.linalg.svd(x[fit_rows] - mean, full_matrices=False)
    z = (x - mean) @ vt[:dim].T
    return (z / np.linalg.norm(z, axis=1, keepdims=True).clip(min=1e-12)).astype(np.float32)


def evaluate(student, kd_student, items: Items, task, cfg: StudentConfig, trust: dict,
             index_keys: np.ndarray | None = None) -> dict:
    labels = list(task.labels)
    rows = np.flatnonzero(items.indexed)
    if index_keys is None:
        _, index_keys = student.encode([items.texts[i] for i in rows])
    soft, weights = items.soft[rows], items.weight[rows]

    def predict(texts):
        probs, keys = student.encode(texts)
        top, sims = knn(keys, index_keys, cfg.k)
        return probs, soft[top], sims, weights[top]

    dev_gold = np.array([labels.index(e.label) for e in task.dev])
    probs, nsoft, sims, w = predict([task.serialize(e.fields) for e in task.dev])
    dev_scores = {b: float((mix(probs, nsoft, sims, b, cfg.temperature, w).argmax(-1) == dev_gold).mean())
                  for b in BETA_GRID}
    majority = float(np.bincount(dev_gold).max() / len(dev_gold))
    beta = choose_beta(dev_scores, len(dev_gold), cfg.beta, cfg.beta_min_gain, majority)
    if not trust.get("trusted", True):
        beta = 0.0
    gold = np.array([labels.index(e.label) for e in task.test])
    texts = [task.serialize(e.fields) for e in task.test]
    probs, nsoft, sims, w = predict(texts)
    test_by_beta = {b: float((mix(probs, nsoft, sims, b, cfg.temperature, w).argmax(-1) == gold).mean())
                    for b in BETA_GRID}
    kd_probs, _ = kd_student.encode(texts)
    return {"student": test_by_beta[0.0], "student_retrieval": test_by_beta[beta],
            "plain_kd": float((kd_probs.argmax(-1) == gold).mean()), "beta": beta,
            "vote_alone": test_by_beta[1.0], "test_by_beta": {str(b): round(v, 4) for b, v in test_by_beta.items()},
            "dev_by_beta": {str(b): round(v, 4) for b, v in dev_scores.items()}, "indexed": int(len(rows))}


def run_seed(args, seed: int, cfg: StudentConfig, teacher) -> list[dict]:
    workspace = Path(args.workspace)
    run = open_run(workspace, f"bench-SST-2-s{seed}")
    task = task_of_run(run)
    store = run_store(run, task)
    teacher_params = int(run.summary()["teacher_params"])
    base = select_items(store, task, cfg)
    pool = teacher_inputs(task)  # what label_unlabeled draws from, in its order
    n_max = max(args.ns)
    cache = workspace / "ablation" / f"scores-s{seed}-{args.pool}.npz"
    scored = scored_pool(run, task, teacher, pool, n_max, cache)
    if args.teacher_keys_ns:
        scored["item_hidden"] = item_hidden(run, task, teacher, base, workspace / "ablation" / f"items-s{seed}.npy")
    texts = [task.serialize(f) for f in pool[:n_max]]
    started = time.perf_counter()
    emb = minilm_targets(texts, workspace / "cache") if texts else np.zeros((0, 384), np.float32)
    embed_seconds = time.perf_counter() - started
    log(f"seed {seed}: {len(base.texts)} store/train items, scored {n_max} unlabeled in {float(scored['seconds']):.0f}s "
        f"({n_max / max(float(scored['seconds']), 1e-9):.2f}/s), MiniLM {embed_seconds:.0f}s")
    trust = teacher_trust(store, task, run.summary().get("score", {}).get("demo_uids"), cfg.teacher_trust_alpha)
    started = time.perf_counter()
    student0 = build_student(cfg, list(task.labels), task_texts(task, base.texts + texts), teacher_params, seed=seed)
    corpus, targets = pretraining_corpus(task, base, store.embedder.name, cfg, seed, workspace / "cache")
    pretrain(student0, corpus, targets, cfg, seed)
    pretrain_seconds = time.perf_counter() - started
    log(f"seed {seed}: student {student0.n_params} params ({student0.n_params / teacher_params:.3%}), "
        f"pretrained in {pretrain_seconds:.0f}s")
    results = []
    for n in args.ns:
        items = with_unlabeled(base, texts[:n], scored["probs"][:n], emb[:n])
        kd_student = clone(student0)
        seconds_kd = finetune(kd_student, items, cfg, seed, retrieval=False).seconds
        for keys in ["student"] + (["teacher"] if n in args.teacher_keys_ns else []):
            student, index_keys = clone(student0), None
            if keys == "teacher":
                hidden = np.concatenate([scored["item_hidden"], scored["hidden"][:n]])
                tkeys = pca_keys(hidden, np.flatnonzero(items.indexed), cfg.key_dim)
                seconds_r = finetune_teacher_keys(student, items, tkeys, cfg, seed)
                index_keys = tkeys[np.flatnonzero(items.indexed)]
            else:
                seconds_r = finetune(student, items, cfg, seed, retrieval=True).seconds
            result = evaluate(student, kd_student, items, task, cfg, trust, index_keys)
            result.update({"seed": seed, "n": n, "pool": args.pool, "keys": keys,
                           "finetune_seconds_retrieval": round(seconds_r, 1), "finetune_seconds_kd": round(seconds_kd, 1),
                           "pretrain_seconds": round(pretrain_seconds, 1),
                           "teacher_seconds_per_input": float(scored["seconds"]) / n_max if n_max else None,
                           "minilm_seconds_per_input": embed_seconds / n_max if n_max else None,
                           "student_params": student0.n_params, "compression": student0.n_params / teacher_params,
                           "teacher_trusted": trust.get("trusted")})
            log(f"seed {seed} N={n} keys={keys}: student {result['student']:.3f} retrieval "
                f"{result['student_retrieval']:.3f} (beta {result['beta']}, vote {result['vote_alone']:.3f}) "
                f"KD {result['plain_kd']:.3f} [{seconds_r:.0f}s + {seconds_kd:.0f}s]")
            results.append(result)
            write_report(args, results_so_far=args._all + results)
    return results


def write_report(args, results_so_far: list[dict]) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "unlabeled_ablation" + (f"-{args.tag}" if args.tag else "")
    (out / f"{stem}.json").write_text(json.dumps({"args": {k: v for k, v in vars(args).items()
                                                            if k not in ("_all", "workspace", "out")},
                                                   "runs": results_so_far}, indent=2), encoding="utf-8")

    def ms(values):
        values = [100 * v for v in values]
        return f"{statistics.mean(values):.1f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.1f}"

    lines = [f"# Student with N teacher-labelled real SST-2 inputs (pool: {args.pool})", "",
             "Test accuracy (%) on the 872 GLUE dev sentences, mean ± std over seeds. Produced by "
             "`bench/unlabeled_ablation.py`.", "",
             "| N | retrieval keys | seeds | student | plain KD | student + retrieval | retrieval − KD | vote alone | beta | fine-tune s (retr. + KD) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for n, keys in sorted({(r["n"], r["keys"]) for r in results_so_far}, key=lambda x: (x[0], x[1] != "student")):
        rows = [r for r in results_so_far if r["n"] == n and r["keys"] == keys]
        gain = [r["student_retrieval"] - r["plain_kd"] for r in rows]
        lines.append(f"| {n} | {keys} | {','.join(str(r['seed']) for r in rows)} | {ms([r['student'] for r in rows])} | "
                     f"{ms([r['plain_kd'] for r in rows])} | {ms([r['student_retrieval'] for r in rows])} | "
                     f"{ms(gain)} | {ms([r['vote_alone'] for r in rows])} | "
                     f"{','.join(str(r['beta']) for r in rows)} | "
                     f"{statistics.mean(r['finetune_seconds_retrieval'] + r['finetune_seconds_kd'] for r in rows):.0f} |")
    lines += ["", "Per run:", ""]
    for r in results_so_far:
        lines.append(f"- seed {r['seed']} N={r['n']} keys {r['keys']}: student {100 * r['student']:.1f}, plain KD {100 * r['plain_kd']:.1f}, "
                     f"student + retrieval {100 * r['student_retrieval']:.1f} (beta {r['beta']}), test by beta "
                     f"{r['test_by_beta']}, dev by beta {r['dev_by_beta']}; teacher {r['teacher_seconds_per_input'] or 0:.3f} "
                     f"s/input, pretrain {r['pretrain_seconds']}s, student {100 * r['compression']:.2f}% of the teacher")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[13, 21])
    parser.add_argument("--ns", type=int, nargs="+", default=[0, 500, 2000, 5000])
    parser.add_argument("--pool", choices=("sentences",), default="sentences",
                        help="the packaged pool holds whole sentences only (the phrase rows were not kept)")
    parser.add_argument("--teacher-keys-ns", type=int, nargs="*", default=[],
                        help="also train a teacher-key (ReAugKD-style) retrieval student at these N")
    parser.add_argument("--workspace", default=str(ROOT.parent / "workspace"))
    parser.add_argument("--out", default=str(ROOT / "results"))
    parser.add_argument("--tag", default="")
    parser.add_argument("--set", nargs="*", default=[], help="student config overrides, e.g. epochs=4")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    overrides = {}
    for item in args.set:
        key, value = item.split("=", 1)
        overrides[key] = type(getattr(StudentConfig(), key))(value)
    cfg = StudentConfig(**overrides)
    args._all = []
    teacher = None
    for seed in args.seeds:
        if teacher is None:
            teacher = run_teacher(open_run(args.workspace, f"bench-SST-2-s{seed}"))
        args._all += run_seed(args, seed, cfg, teacher)
    write_report(args, args._all)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
