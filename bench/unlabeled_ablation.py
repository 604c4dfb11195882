"""How much do teacher soft labels on real unlabeled inputs lift the student? Student alone, plain KD and student +
retrieval for N teacher-labelled SST-2 train inputs added to a step-1 run's store.

Usage: python -m bench.unlabeled_ablation --seeds 13 21 --ns 0 500 2000 5000 [--pool sentences]
       [--teacher-keys-ns 2000] [--key-weight 4 --key-weight-ns 500] [--heldout 256]
       [--previous OTHER.json ...] [--workspace DIR] [--out DIR] [--tag NAME] [--set epochs=4 ...]
       python -m bench.unlabeled_ablation --render [--tag NAME]   # rewrite the md from the json, running nothing

Per seed: the step-1 run `bench-SST-2-s<seed>` (from `bench/step1_runs.py`) gives the store and the restored
few-shot scorer; the first max(N) inputs of a fixed shuffle (seed 0) of `unlabeled-sentences.jsonl` (`--pool sentences`:
whole sentences only; never a train, dev or test input) are scored once with the batched scorer (probabilities and
the answer-position hidden state, cached in the workspace and extended when more are needed). One student is built and MiniLM-pretrained per seed
(vocabulary from the task's texts plus all max(N) inputs, so every N has the same architecture), then for each N
both students are fine-tuned from that same starting point on the store items + the first N scored inputs
(soft label = calibrated teacher probabilities, label = their argmax, indexed for retrieval), exactly as
`student_stage.label_unlabeled` would add them. Beta is chosen on dev by `choose_beta` with the teacher-trust
check, neighbours are exact cosine top-k over the index keys.

`--teacher-keys-ns N ...` (ReAugKD-style, at those N): index keys are the teacher's answer-position hidden states (PCA to key_dim,
fitted on the indexed inputs), and the student's key head is trained to predict them (cosine regression plus
the in-batch relational loss towards the teacher-key similarities); the query key is still the student's.
`--key-weight-ns N ...` adds the same row with the cosine key loss multiplied by `--key-weight`.

Two beta rules per row: the shipped dev rule, and the beta whose prediction agrees most with the teacher's argmax on
`--heldout` further pool inputs (scored after the first max(N), so never trained on or indexed), since 32 dev
examples move in steps of 3 points. Per seed, a "gold only" student (CE on the labelled train examples alone, from
the same pretrained start) says what the teacher's labels and the store add at all.

`--previous` merges the runs of earlier reports (e.g. one invocation per seed, or per seed and N with the same
`--pool-n`); `--seeds` with no value only rewrites the report from them.

Writes `bench/results/unlabeled_ablation[-TAG].{md,json}`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from retrikt.config import StudentConfig  # noqa: E402
from retrikt.student.retrieval import bank_neighbours, mix, mixed_log_probs, relational_loss  # noqa: E402
from retrikt.runs import open_run  # noqa: E402
from retrikt.teacher.scorer import run_scorer  # noqa: E402
from retrikt.student.model import build_student  # noqa: E402
from retrikt.context import run_store, run_teacher  # noqa: E402
from retrikt.student.stage import BETA_GRID, TRUST_ALPHA, choose_beta, teacher_inputs, teacher_trust  # noqa: E402
from retrikt.student.train import (RELATIONAL_TEMPERATURE, Items, _epoch_order, clone, finetune,  # noqa: E402
                                   minilm_targets, pretrain, pretraining_corpus, select_items)
from retrikt.tasks import task_of_run  # noqa: E402

from bench.report import write_json, write_md  # noqa: E402
from bench.stats import mean_std  # noqa: E402

ROOT = Path(__file__).resolve().parent


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def scored_pool(run, task, teacher, pool, n: int, cache: Path) -> dict:
    """Teacher probabilities + answer-position hidden states of pool[:n], cached on disk and extended in place:
    a cache of fewer rows is topped up with the missing ones only (the seed's 2000 rows took ~5 min)."""
    have = None
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as data:
            have = {k: data[k] for k in data.files}
        if int(have["n"]) >= n:
            return have
    start = int(have["n"]) if have is not None else 0
    scorer = run_scorer(run, task, teacher)
    started = time.perf_counter()
    probs, hidden = scorer.features(pool[start:n])
    seconds = time.perf_counter() - started
    # (rows, seconds) of each scoring call, so the per-input rate of every chunk stays visible
    chunks = (have["chunks"].tolist() if have is not None and "chunks" in have
              else [[start, float(have["seconds"])]] if have is not None else [])
    chunks.append([n - start, seconds])
    out = {"n": np.array(n), "probs": probs.astype(np.float32), "hidden": hidden,
           "seconds": np.array(seconds + (float(have["seconds"]) if have is not None else 0.0)),
           "chunks": np.array(chunks, dtype=np.float64)}
    if have is not None:
        out["probs"] = np.concatenate([have["probs"][:start], out["probs"]])
        out["hidden"] = np.concatenate([have["hidden"][:start], hidden])
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache.with_suffix(".tmp.npz"), **out)
    cache.with_suffix(".tmp.npz").replace(cache)
    return out


def item_hidden(run, task, teacher, items: Items, cache: Path) -> tuple[np.ndarray, float | None]:
    """The teacher's answer-position hidden states of the store items (for teacher keys; cached on disk) and the
    seconds they took (None when the cache predates the timing)."""
    timing = cache.with_suffix(".seconds.json")
    if cache.is_file():
        seconds = json.loads(timing.read_text())["seconds"] if timing.is_file() else None
        return np.load(cache), seconds
    fields = [{task.text_fields[0]: t.split(": ", 1)[1]} for t in items.texts]
    started = time.perf_counter()
    _, hidden = run_scorer(run, task, teacher).features(fields)
    seconds = time.perf_counter() - started
    np.save(cache, hidden)
    timing.write_text(json.dumps({"seconds": seconds, "rows": len(fields)}))
    return hidden, seconds


def gold_only(base: Items, n_labels: int) -> Items:
    """The labelled train rows of `base` with one-hot gold targets: no generated rows, no teacher label, no index."""
    rows = [i for i, g in enumerate(base.gold) if g is not None]
    return Items([base.ids[i] for i in rows], [base.texts[i] for i in rows], [base.gold[i] for i in rows],
                 np.eye(n_labels)[[base.gold[i] for i in rows]], np.ones(len(rows)), np.zeros(len(rows), dtype=bool),
                 base.embeddings[rows], {"gold_examples": len(rows)})


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


INFONCE_TEMPERATURE = 0.05
LISTWISE_NEIGHBOURS = 32


def infonce_loss(query: torch.Tensor, teacher_keys: torch.Tensor, tau: float = INFONCE_TEMPERATURE) -> torch.Tensor:
    """In-batch InfoNCE: -mean_i log softmax_j(q_i . t_j / tau)[i]. Each student query must pick its own input's
    teacher key out of the batch's, so it is pulled toward that key and pushed from the others."""
    logits = query @ teacher_keys.T / tau
    return F.cross_entropy(logits, torch.arange(len(query)))


def listwise_loss(query: torch.Tensor, teacher_keys: torch.Tensor, bank: torch.Tensor,
                  k: int = LISTWISE_NEIGHBOURS, tau: float = INFONCE_TEMPERATURE) -> torch.Tensor:
    """ReAugKD's relational loss against the store: over the k bank entries nearest the input's teacher key,
    KL(softmax(t . b / tau) || softmax(q . b / tau)), so the student ranks the input's store neighbours as the
    teacher does."""
    k = min(k, bank.shape[0])
    teacher_sims = teacher_keys @ bank.T
    top = teacher_sims.topk(k, dim=-1).indices
    target = (teacher_sims.gather(1, top) / tau).softmax(-1)
    student = ((query @ bank.T).gather(1, top) / tau).log_softmax(-1)
    return F.kl_div(student, target, reduction="batchmean")


def finetune_teacher_keys(student, items: Items, tkeys: np.ndarray, cfg: StudentConfig, seed: int,
                          key_weight: float = 1.0, query_loss: str = "cosine") -> float:
    """`finetune(retrieval=True)` with the teacher's keys: the bank is the (fixed) teacher keys of the indexed
    items, the key head learns the teacher key of its own input (`query_loss`: `cosine` regression plus the
    in-batch relational loss, `infonce`, or `listwise` over its store neighbours), and the retrieval loss is taken
    through its own key against the teacher bank."""
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
                loss = loss + F.cross_entropy(logits, g, ignore_index=-100)
            log_p = logits.log_softmax(-1)
            kl = (soft[chunk] * (soft[chunk].clamp(min=1e-8).log() - log_p)).sum(-1)
            loss = loss + (weight[chunk] * kl).sum() / weight[chunk].sum().clamp(min=1e-8)
            tk = target_keys[chunk]
            if query_loss == "infonce":
                loss = loss + key_weight * infonce_loss(keys, tk)
            elif query_loss == "listwise":
                loss = loss + key_weight * listwise_loss(keys, tk, bank)
            else:
                loss = loss + key_weight * (1 - (keys * tk).sum(-1)).mean()
                loss = loss + relational_loss(keys, tk @ tk.T, RELATIONAL_TEMPERATURE)
            idx, sims = bank_neighbours(keys, [items.ids[i] for i in chunk], bank, bank_ids, cfg.k)
            rows = torch.tensor(bank_rows)[idx]
            mixed = mixed_log_probs(logits, soft[rows], sims, weight[rows], cfg.beta, cfg.temperature)
            target = torch.where((g >= 0).unsqueeze(-1), F.one_hot(g.clamp(min=0), soft.shape[1]).float(), soft[chunk])
            loss = loss - (target * mixed).sum(-1).mean()
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
    model.eval()
    return time.perf_counter() - started


def pca_keys(hidden: np.ndarray, fit_rows: np.ndarray, dim: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    x = hidden.astype(np.float64)
    z = PCA(n_components=dim, svd_solver="full").fit(x[fit_rows]).transform(x)
    return (z / np.linalg.norm(z, axis=1, keepdims=True).clip(min=1e-12)).astype(np.float32)


def heldout_beta(agreement: dict[float, float], trusted: bool) -> float:
    """The beta whose prediction agrees most often with the teacher's argmax on held-out pool inputs; ties go to
    the larger beta (the vote is the teacher's own labels, so a tie is no evidence against it)."""
    if not trusted:
        return 0.0
    return max(BETA_GRID, key=lambda b: (round(agreement[b], 9), b))


def evaluate(student, kd_student, items: Items, task, cfg: StudentConfig, trust: dict,
             index_keys: np.ndarray | None, heldout_texts: list[str], heldout_teacher: np.ndarray) -> dict:
    labels = list(task.labels)
    rows = np.flatnonzero(items.indexed)
    if index_keys is None:
        _, index_keys = student.encode([items.texts[i] for i in rows])
    soft, weights = items.soft[rows], items.weight[rows]

    def predict(texts):
        probs, keys = student.encode(texts)
        top, sims = knn(keys, index_keys, cfg.k)
        return probs, soft[top], sims, weights[top]

    def by_beta(texts, target):
        probs, nsoft, sims, w = predict(texts)
        return {b: float((mix(probs, nsoft, sims, b, cfg.temperature, w).argmax(-1) == target).mean())
                for b in BETA_GRID}

    dev_gold = np.array([labels.index(e.label) for e in task.dev])
    dev_scores = by_beta([task.serialize(e.fields) for e in task.dev], dev_gold)
    majority = float(np.bincount(dev_gold).max() / len(dev_gold))
    beta = choose_beta(dev_scores, len(dev_gold), cfg.beta, 1, majority)  # the dev rule's own minimum gain
    trusted = trust.get("trusted", True)
    if not trusted:
        beta = 0.0
    agreement = by_beta(heldout_texts, heldout_teacher) if len(heldout_texts) else {b: 0.0 for b in BETA_GRID}
    beta_h = heldout_beta(agreement, trusted) if len(heldout_texts) else 0.0
    gold = np.array([labels.index(e.label) for e in task.test])
    texts = [task.serialize(e.fields) for e in task.test]
    test_by_beta = by_beta(texts, gold)
    kd_probs, _ = kd_student.encode(texts)
    return {"student": test_by_beta[0.0], "student_retrieval": test_by_beta[beta],
            "student_retrieval_heldout": test_by_beta[beta_h],
            "plain_kd": float((kd_probs.argmax(-1) == gold).mean()), "beta": beta, "beta_heldout": beta_h,
            "vote_alone": test_by_beta[1.0], "test_by_beta": {str(b): round(v, 4) for b, v in test_by_beta.items()},
            "dev_by_beta": {str(b): round(v, 4) for b, v in dev_scores.items()},
            "heldout_agreement_by_beta": {str(b): round(v, 4) for b, v in agreement.items()},
            "heldout": len(heldout_texts), "indexed": int(len(rows))}


def test_accuracy(student, task) -> float:
    labels = list(task.labels)
    probs, _ = student.encode([task.serialize(e.fields) for e in task.test])
    return float((probs.argmax(-1) == np.array([labels.index(e.label) for e in task.test])).mean())


def run_seed(args, seed: int, cfg: StudentConfig, teacher) -> list[dict]:
    workspace = Path(args.workspace)
    run = open_run(workspace, f"bench-SST-2-s{seed}")
    task = task_of_run(run)
    store = run_store(run, task)
    teacher_params = int(run.summary()["teacher_params"])
    base = select_items(store, task, cfg)
    pool = teacher_inputs(task)  # what label_unlabeled draws from, in its order
    n_max = args.pool_n or max(args.ns)
    if n_max < max(args.ns):
        raise SystemExit(f"--pool-n {n_max} is below the largest N")
    cache = workspace / "ablation" / f"scores-s{seed}-{args.pool}.npz"
    # the held-out inputs come after every N's inputs: never trained on, never indexed
    scored = scored_pool(run, task, teacher, pool, n_max + args.heldout, cache)
    heldout_texts = [task.serialize(f) for f in pool[n_max : n_max + args.heldout]]
    heldout_teacher = scored["probs"][n_max : n_max + args.heldout].argmax(-1)
    item_hidden_seconds = None
    if args.teacher_keys_ns or args.key_weight_ns:
        scored["item_hidden"], item_hidden_seconds = item_hidden(run, task, teacher, base,
                                                                 workspace / "ablation" / f"items-s{seed}.npy")
    n_scored = int(scored["n"])
    texts = [task.serialize(f) for f in pool[:n_max]]
    started = time.perf_counter()
    emb = minilm_targets(texts, workspace / "cache") if texts else np.zeros((0, 384), np.float32)
    embed_seconds = time.perf_counter() - started
    teacher_rate = float(scored["seconds"]) / n_scored if n_scored else None
    log(f"seed {seed}: {len(base.texts)} store/train items, scored {n_scored} unlabeled in "
        f"{float(scored['seconds']):.0f}s ({teacher_rate or 0:.3f} s/input), MiniLM {embed_seconds:.0f}s")
    trust = teacher_trust(store, task, run.summary().get("score", {}).get("demo_uids"), TRUST_ALPHA)
    started = time.perf_counter()
    # vocabulary from pool[:n_max] only, as before the held-out split existed, so earlier rows reproduce
    # spelled out rather than `task_texts`, whose sources are what these rows compare
    vocab_texts = [task.serialize(f) for f in [e.fields for e in task.train + task.dev] + list(task.unlabeled)]
    vocab_texts += base.texts + texts
    if args.vocab == "with-test":  # the product's vocabulary before it left the test split out
        vocab_texts += [task.serialize(e.fields) for e in task.test]
    elif args.vocab in ("with-pool", "pool-nearest"):  # every unlabeled input the teacher may label, scored or not
        vocab_texts += [task.serialize(f) for f in pool]
    # `nearest`: the product's vocabulary, with a word piece it lacks read as its nearest kept one, not [UNK]
    student0 = build_student(cfg, list(task.labels), vocab_texts, teacher_params, seed=seed,
                             nearest_words=args.vocab in ("nearest", "pool-nearest"))
    corpus, targets = pretraining_corpus(task, base, store.embedder.name, cfg, seed, workspace / "cache")
    pretrain(student0, corpus, targets, cfg, seed)
    pretrain_seconds = time.perf_counter() - started
    log(f"seed {seed}: student {student0.n_params} params ({student0.n_params / teacher_params:.3%}), "
        f"pretrained in {pretrain_seconds:.0f}s")
    gold_items = gold_only(base, len(task.labels))
    # the shipped epoch count gives 32 gold rows a handful of steps; also run as many steps as the N = 0 fine-tune
    steps_n0 = cfg.epochs * math.ceil(len(_epoch_order(base, random.Random(0))) / cfg.batch_size)
    matched_epochs = max(cfg.epochs, steps_n0 // math.ceil(len(gold_items.texts) / cfg.batch_size))
    gold = {}
    for name, epochs in (("gold_only", cfg.epochs), ("gold_only_matched", matched_epochs)):
        gold_student = clone(student0)
        # no KD: with one-hot targets it would only repeat CE
        seconds = finetune(gold_student, gold_items, dataclasses.replace(cfg, epochs=epochs), seed,
                           retrieval=False, kd=False).seconds
        gold[name] = test_accuracy(gold_student, task)
        gold[f"{name}_epochs"] = epochs
        gold[f"finetune_seconds_{name}"] = round(seconds, 1)
    log(f"seed {seed}: gold only {gold['gold_only']:.3f} ({cfg.epochs} epochs), {gold['gold_only_matched']:.3f} "
        f"({matched_epochs} epochs)")
    results = []
    for n in args.ns:
        items = with_unlabeled(base, texts[:n], scored["probs"][:n], emb[:n])
        kd_student = clone(student0)
        seconds_kd = finetune(kd_student, items, cfg, seed, retrieval=False).seconds
        variants = [("student", None, None)]
        variants += [("teacher", 1.0, loss) for loss in args.query_losses] * (n in args.teacher_keys_ns)
        variants += [("teacher", args.key_weight, "cosine")] * (n in args.key_weight_ns)
        for keys, key_weight, query_loss in variants:
            student, index_keys = clone(student0), None
            if keys == "teacher":
                hidden = np.concatenate([scored["item_hidden"], scored["hidden"][:n]])
                tkeys = pca_keys(hidden, np.flatnonzero(items.indexed), cfg.key_dim)
                seconds_r = finetune_teacher_keys(student, items, tkeys, cfg, seed, key_weight, query_loss)
                index_keys = tkeys[np.flatnonzero(items.indexed)]
            else:
                seconds_r = finetune(student, items, cfg, seed, retrieval=True).seconds
            result = evaluate(student, kd_student, items, task, cfg, trust, index_keys, heldout_texts,
                              heldout_teacher)
            result.update(gold)
            result.update({"seed": seed, "n": n, "pool": args.pool, "pool_n": n_max, "keys": keys, "key_weight": key_weight,
                           "query_loss": query_loss, "vocab": args.vocab, "vocab_size": len(student0.vocab),
                           "finetune_seconds_retrieval": round(seconds_r, 1), "finetune_seconds_kd": round(seconds_kd, 1),
                           "pretrain_seconds": round(pretrain_seconds, 1),
                           "teacher_seconds_per_input": teacher_rate, "teacher_scored": n_scored,
                           "teacher_chunks": scored["chunks"].tolist() if "chunks" in scored else None,
                           "item_hidden_seconds": item_hidden_seconds,
                           "minilm_seconds_per_input": embed_seconds / n_max if n_max else None,
                           "student_params": student0.n_params, "compression": student0.n_params / teacher_params,
                           "teacher_trusted": trust.get("trusted")})
            log(f"seed {seed} N={n} keys={row_tag(result)}: student {result['student']:.3f} retrieval "
                f"{result['student_retrieval']:.3f} (dev beta {result['beta']}) / {result['student_retrieval_heldout']:.3f} "
                f"(held-out beta {result['beta_heldout']}), vote {result['vote_alone']:.3f}, "
                f"KD {result['plain_kd']:.3f} [{seconds_r:.0f}s + {seconds_kd:.0f}s]")
            results.append(result)
            write_report(args, results_so_far=args._all + results)
    return results


def row_tag(r: dict) -> str:
    vocab = f", vocabulary {r['vocab']}" if "vocab" in r else ""
    if r["keys"] != "teacher":
        return r["keys"] + vocab
    loss = r.get("query_loss") or "cosine"
    return f"teacher, {loss} query loss, weight {r.get('key_weight') or 1.0:g}{vocab}"


def write_report(args, results_so_far: list[dict]) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "unlabeled_ablation" + (f"-{args.tag}" if args.tag else "")
    recorded = {k: v for k, v in vars(args).items() if k not in ("_all", "_previous_args", "workspace", "out")}
    recorded["previous"] = [Path(f).name for f in args.previous]
    data = {"args": recorded, "previous_args": args._previous_args, "runs": results_so_far}
    write_json(out / f"{stem}.json", data, __file__, newline=False)
    write_md(out / f"{stem}.md", render(data), __file__)


def render(data: dict) -> str:
    results_so_far, pool, heldout = data["runs"], data["args"]["pool"], data["args"]["heldout"]

    def ms(values, scale=100.0, digits=1):
        return mean_std(values, scale, digits)

    def signed(values):
        return mean_std(values, 100, signed=True)

    def betas(rows, key):
        return ", ".join(f"{r[key]:g}" for r in rows if key in r)

    seeds = sorted({r["seed"] for r in results_so_far})
    lines = [f"# Student with N teacher-labelled real SST-2 inputs (pool: {pool})", "",
             f"Test accuracy (%) on the 872 GLUE dev sentences, mean ± std over seeds {', '.join(map(str, seeds))}. "
             "Beta rules: *dev* = the shipped `choose_beta` on the 32 dev "
             "examples; *held-out* = the beta whose prediction agrees most with the teacher's argmax on "
             f"{heldout} further pool inputs (never trained on or indexed; ties: the larger beta). Both are 0 when "
             "`teacher_trust` rejects the teacher. *Gold only*: the same pretrained student fine-tuned with CE on the "
             "labelled train examples alone (no generated rows, no teacher labels, no store), at the shipped epoch "
             "count and at as many steps as the N = 0 fine-tune. Betas are listed in seed order.", "",
             "| N | retrieval keys | seeds | student | plain KD | gold only | gold only (matched steps) | "
             "student + retrieval (dev beta) | student + retrieval (held-out beta) | vote alone (beta 1) | "
             "retrieval − KD (dev) | retrieval − KD (held-out) | beta dev | beta held-out | fine-tune s retr. | "
             "fine-tune s KD |",
             "|" + "---|" * 16]
    def order(tag):
        return 0 if tag.startswith("student") else 1

    tags = sorted({(r["n"], row_tag(r), r.get("key_weight") or 0.0) for r in results_so_far},
                  key=lambda x: (x[0], order(x[1]), x[2], x[1]))
    for n, tag, _ in tags:
        rows = sorted((r for r in results_so_far if r["n"] == n and row_tag(r) == tag), key=lambda r: r["seed"])
        lines.append(
            f"| {n} | {tag} | {','.join(str(r['seed']) for r in rows)} | {ms([r['student'] for r in rows])} | "
            f"{ms([r['plain_kd'] for r in rows])} | {ms([r.get('gold_only') for r in rows])} | "
            f"{ms([r.get('gold_only_matched') for r in rows])} | {ms([r['student_retrieval'] for r in rows])} | "
            f"{ms([r.get('student_retrieval_heldout') for r in rows])} | {ms([r['vote_alone'] for r in rows])} | "
            f"{signed([r['student_retrieval'] - r['plain_kd'] for r in rows])} | "
            f"{signed([r['student_retrieval_heldout'] - r['plain_kd'] for r in rows if 'student_retrieval_heldout' in r])} | "
            f"{betas(rows, 'beta')} | {betas(rows, 'beta_heldout')} | "
            f"{ms([r['finetune_seconds_retrieval'] for r in rows], 1.0, 0)} | "
            f"{ms([r['finetune_seconds_kd'] for r in rows], 1.0, 0)} |")
    lines += ["", "Time per seed (seconds, 1 torch thread; the machine was shared, so rates vary):", "",
              "| seed | teacher s/input (all scoring calls) | inputs scored | scoring calls (inputs, s) | "
              "teacher hidden states of the store items s | MiniLM s/input | pretrain s | gold-only fine-tune s "
              "(shipped / matched epochs) |", "|---|---|---|---|---|---|---|---|"]
    for seed in seeds:
        r = next(r for r in results_so_far if r["seed"] == seed)
        chunks = "; ".join(f"{int(c[0])}, {c[1]:.0f}" for c in (r.get("teacher_chunks") or []))
        hidden = r.get("item_hidden_seconds")
        lines.append(f"| {seed} | {r['teacher_seconds_per_input'] or 0:.3f} | {r.get('teacher_scored', '–')} | "
                     f"{chunks or '–'} | {'–' if hidden is None else f'{hidden:.0f}'} | "
                     f"{r['minilm_seconds_per_input'] or 0:.4f} | {r['pretrain_seconds']} | "
                     f"{r.get('finetune_seconds_gold_only', '–')} / {r.get('finetune_seconds_gold_only_matched', '–')} "
                     f"({r.get('gold_only_matched_epochs', '–')} epochs) |")
    lines += ["", "Per run:", ""]
    for r in sorted(results_so_far, key=lambda r: (r["seed"], r["n"], order(row_tag(r)), r.get("key_weight") or 0, row_tag(r))):
        lines.append(f"- seed {r['seed']} N={r['n']} keys {row_tag(r)}: student {100 * r['student']:.1f}, plain KD "
                     f"{100 * r['plain_kd']:.1f}, gold only {100 * r.get('gold_only', float('nan')):.1f} / "
                     f"{100 * r.get('gold_only_matched', float('nan')):.1f}, student + retrieval "
                     f"{100 * r['student_retrieval']:.1f} (dev beta {r['beta']}) / "
                     f"{100 * r.get('student_retrieval_heldout', float('nan')):.1f} (held-out beta "
                     f"{r.get('beta_heldout')}); test by beta {r['test_by_beta']}, dev by beta {r['dev_by_beta']}, "
                     f"held-out agreement by beta {r.get('heldout_agreement_by_beta')}; fine-tune "
                     f"{r['finetune_seconds_retrieval']} s + KD {r['finetune_seconds_kd']} s; "
                     f"student {100 * r['compression']:.2f}% of the teacher, teacher trusted: {r['teacher_trusted']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[13, 21])
    parser.add_argument("--ns", type=int, nargs="+", default=[0, 500, 2000, 5000])
    parser.add_argument("--pool", choices=("sentences",), default="sentences",
                        help="the packaged pool holds whole sentences only (the phrase rows were not kept)")
    parser.add_argument("--teacher-keys-ns", type=int, nargs="*", default=[],
                        help="also train a teacher-key (ReAugKD-style) retrieval student at these N")
    parser.add_argument("--key-weight", type=float, default=4.0,
                        help="multiplier on the cosine key loss of the extra teacher-key rows of --key-weight-ns")
    parser.add_argument("--key-weight-ns", type=int, nargs="*", default=[],
                        help="also train a teacher-key student with --key-weight at these N")
    parser.add_argument("--query-losses", nargs="+", default=["cosine"], choices=("cosine", "infonce", "listwise"),
                        help="how the teacher-key rows of --teacher-keys-ns learn the query: one row per loss")
    parser.add_argument("--vocab", choices=("no-test", "with-test", "with-pool", "nearest", "pool-nearest"),
                        default="no-test",
                        help="student vocabulary: no test texts, unknown pieces [UNK]; with the test texts (before); "
                             "with the whole teacher pool; no test texts, unknown pieces read as the nearest kept "
                             "one; or the teacher pool and the nearest kept piece")
    parser.add_argument("--pool-n", type=int, default=0,
                        help="pool inputs scored and put in the vocabulary (default: the largest N); invocations "
                             "with the same value build the same pretrained student and held-out split, so one "
                             "seed's N can be split over several invocations")
    parser.add_argument("--heldout", type=int, default=256,
                        help="teacher-labelled pool inputs after the first max(N), for the held-out beta rule")
    parser.add_argument("--previous", nargs="*", default=[],
                        help="JSON reports of earlier invocations whose runs are merged into this report")
    parser.add_argument("--workspace", default=str(ROOT.parent / "workspace"))
    parser.add_argument("--out", default=str(ROOT / "results"))
    parser.add_argument("--tag", default="")
    parser.add_argument("--set", nargs="*", default=[], help="student config overrides, e.g. epochs=4")
    parser.add_argument("--render", action="store_true",
                        help="run nothing: rewrite the md of --out/unlabeled_ablation[-TAG].json from that json")
    args = parser.parse_args(argv)
    if args.render:
        stem = Path(args.out) / ("unlabeled_ablation" + (f"-{args.tag}" if args.tag else ""))
        data = json.loads(stem.with_suffix(".json").read_text(encoding="utf-8"))
        write_json(stem.with_suffix(".json"), data, __file__, newline=False)
        write_md(stem.with_suffix(".md"), render(data), __file__)
        return 0
    torch.set_num_threads(1)
    overrides = {}
    for item in args.set:
        key, value = item.split("=", 1)
        overrides[key] = type(getattr(StudentConfig(), key))(value)
    cfg = StudentConfig(**overrides)
    args._all, args._previous_args = [], []
    for path in args.previous:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        args._all += data["runs"]
        args._previous_args.append(data["args"])
    teacher = None
    for seed in args.seeds:
        if teacher is None:
            teacher = run_teacher(open_run(args.workspace, f"bench-SST-2-s{seed}"))
        args._all += run_seed(args, seed, cfg, teacher)
    write_report(args, args._all)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
