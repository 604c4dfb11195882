"""Training the student: MiniLM distillation (optional), then CE + KD + relational + retrieval losses.

Training items are the store entries that pass the weak-teacher filter plus the gold train split. The retrieval
student and the plain-KD baseline share one pretrained starting point, so the only difference between them is
the retrieval training and the retrieval at inference.
"""
from __future__ import annotations

import copy
import hashlib
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..config import StudentConfig
from ..errors import check_stop
from .retrieval import bank_neighbours, mixed_log_probs, relational_loss, teacher_similarity
from .model import Student

_MINILM = "all-MiniLM-L6-v2"

RELATIONAL_TEMPERATURE = 0.1
"""Softmax temperature of both in-batch similarity distributions of the relational loss."""


@dataclass
class Items:
    """What the student learns from, row-aligned: one row per store entry kept or train example."""

    ids: list[str]
    texts: list[str]
    gold: list[int | None]
    """Gold label index (train split) or None (generated)."""
    soft: np.ndarray
    """Teacher soft labels; a gold one-hot where the filter rejected the teacher on a gold example."""
    weight: np.ndarray
    """KD weight / retrieval vote weight of each row (the `weight` filter), else 1."""
    indexed: np.ndarray
    """Rows that go into the retrieval index (entries the filter kept)."""
    embeddings: np.ndarray
    """Store (sentence-embedder) vectors: half of the teacher-space similarity of the relational loss."""
    report: dict = field(default_factory=dict)


def select_items(store, task, cfg: StudentConfig) -> Items:
    """Store entries filtered/weighted by `cfg.store_filter` + the train split (gold).

    design choice (weak teachers): `agree` drops generated entries whose teacher label differs from the label they
    were generated for; gold examples the teacher gets wrong stay for CE with a one-hot target but are not
    retrieved. `weight` keeps everything, weighted by the teacher's probability of the intended label.
    """
    labels = list(task.labels)
    entries = store.list()
    ids, vectors = store.all_embeddings()
    vector_of = dict(zip(ids, vectors))
    rows = {"ids": [], "texts": [], "gold": [], "soft": [], "weight": [], "indexed": [], "emb": []}
    dropped = 0
    train_texts = {task.serialize(e.fields) for e in task.train}
    seen_train = set()
    for e in entries:
        if e.soft_labels is None:
            dropped += 1
            continue
        soft = np.array([e.soft_labels.get(l, 0.0) for l in labels], dtype=np.float64)
        soft = soft / soft.sum()
        is_gold = e.source == "train" and e.text in train_texts
        agree = labels[int(soft.argmax())] == e.label
        weight, keep = 1.0, True
        if cfg.store_filter == "agree":
            keep = agree
        elif cfg.store_filter == "weight":
            weight = float(soft[labels.index(e.label)])
        if not keep and not is_gold:
            dropped += 1
            continue
        if is_gold:
            seen_train.add(e.text)
            if not keep:
                soft = np.eye(len(labels))[labels.index(e.label)]
        rows["ids"].append(e.id), rows["texts"].append(e.text), rows["soft"].append(soft)
        rows["gold"].append(labels.index(e.label) if is_gold else None)
        rows["weight"].append(weight), rows["indexed"].append(keep), rows["emb"].append(vector_of[e.id])
    missing = [ex for ex in task.train if task.serialize(ex.fields) not in seen_train]
    if missing:  # a store built without the train split: the gold examples are still learned from
        texts = [task.serialize(ex.fields) for ex in missing]
        embs = store.embedder.encode(texts)
        for ex, text, emb in zip(missing, texts, embs):
            rows["ids"].append(f"train:{ex.uid}"), rows["texts"].append(text), rows["emb"].append(emb)
            rows["gold"].append(labels.index(ex.label)), rows["soft"].append(np.eye(len(labels))[labels.index(ex.label)])
            rows["weight"].append(1.0), rows["indexed"].append(False)
    indexed = np.array(rows["indexed"], dtype=bool)
    report = {"store_entries": len(entries), "dropped_by_filter": dropped, "indexed": int(indexed.sum()),
              "gold_examples": sum(g is not None for g in rows["gold"]), "filter": cfg.store_filter}
    if not indexed.any():
        report["warning"] = "no store entry passed the filter: retrieval is off (beta = 0)"
    return Items(rows["ids"], rows["texts"], rows["gold"], np.array(rows["soft"]), np.array(rows["weight"]),
                 indexed, np.asarray(rows["emb"], dtype=np.float32), report)


# ---- stage A: distil MiniLM sentence embeddings into the student encoder -----------------------------------------
MINILM_CHUNK = 32
"""Texts MiniLM embeds between two looks at the stop flag (it embeds 64 at a time anyway); a cancel waits for
at most that many."""


def minilm_targets(texts: list[str], cache_dir: str | Path | None = None, should_stop=None) -> np.ndarray:
    """Packaged-MiniLM sentence embeddings of `texts`, cached on disk by content (the unlabeled pool repeats).

    The embedder is shared with page actions, so a cancel waits for the chunk in flight (no hooks in its model)."""
    from ..store.embed import default_embedder

    path = None
    if cache_dir is not None:
        digest = hashlib.sha1("\n\x00".join(texts).encode("utf-8")).hexdigest()[:16]
        path = Path(cache_dir) / "minilm" / f"{digest}.npy"
        if path.is_file():
            return np.load(path)
    embedder, parts = default_embedder(), []
    for start in range(0, len(texts), MINILM_CHUNK):
        check_stop(should_stop, "cancelled while embedding the pretraining texts")
        parts.append(embedder.encode(texts[start : start + MINILM_CHUNK]))
    vectors = np.concatenate(parts)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors)
    return vectors


def pretrain(student: Student, texts: list[str], targets: np.ndarray, cfg: StudentConfig, seed: int,
             on_epoch=None, should_stop=None) -> list[float]:
    """Cosine + in-batch relational distillation of sentence embeddings through a throw-away projection; raises
    Cancelled between batches once `should_stop()` is true."""
    torch.manual_seed(seed)
    model = student.model
    probe = nn.Linear(model.encoder.width, targets.shape[1])
    params = list(model.encoder.parameters()) + list(probe.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.01)
    target = torch.tensor(targets, dtype=torch.float32)
    order, losses = list(range(len(texts))), []
    rng = random.Random(seed)
    batch = 64  # design choice: larger batches than fine-tuning, the in-batch relational term needs them
    steps = cfg.pretrain_epochs * math.ceil(len(texts) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.learning_rate, total_steps=max(1, steps), pct_start=0.1)
    model.train()
    for epoch in range(cfg.pretrain_epochs):
        rng.shuffle(order)
        total = 0.0
        for start in range(0, len(order), batch):
            check_stop(should_stop, "student pretraining cancelled")
            chunk = order[start : start + batch]
            ids, mask = student.batch([texts[i] for i in chunk])
            out = F.normalize(probe(model.encoder(ids, mask)), dim=-1)
            tgt = target[chunk]
            loss = (1 - (out * tgt).sum(-1)).mean() + relational_loss(out, tgt @ tgt.T, 0.05)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            total += loss.item() * len(chunk)
        losses.append(total / len(order))
        if on_epoch:
            on_epoch(epoch + 1, cfg.pretrain_epochs, losses[-1])
    model.eval()
    return losses


# ---- stage B: fine-tuning ----------------------------------------------------------------------------------------
@dataclass
class TrainReport:
    losses: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def _epoch_order(items: Items, rng: random.Random) -> list[int]:
    gold = [i for i, g in enumerate(items.gold) if g is not None]
    rest = [i for i, g in enumerate(items.gold) if g is None]
    # design choice: the 16-32 gold examples are repeated to ~1/4 of an epoch so CE is not drowned by KD rows.
    repeat = max(1, len(rest) // (3 * max(1, len(gold))))
    order = gold * repeat + rest
    rng.shuffle(order)
    return order


def gold_only(items: Items, n_labels: int) -> Items:
    """The train split's gold examples of `items` alone, with one-hot targets: no generated sample, no teacher
    label, nothing indexed."""
    rows = [i for i, g in enumerate(items.gold) if g is not None]
    targets = np.eye(n_labels)[[items.gold[i] for i in rows]] if rows else np.zeros((0, n_labels))
    return Items([items.ids[i] for i in rows], [items.texts[i] for i in rows], [items.gold[i] for i in rows],
                 targets, np.ones(len(rows)), np.zeros(len(rows), dtype=bool), items.embeddings[rows],
                 {"gold_examples": len(rows)})


def gold_only_epochs(items: Items, gold_items: Items, cfg: StudentConfig) -> int:
    """The epochs that give the gold-only baseline as many optimizer steps as `finetune` gives the student on
    `items`, so the baseline is not under-trained next to the student."""
    steps = cfg.epochs * math.ceil(len(_epoch_order(items, random.Random(0))) / cfg.batch_size)
    return max(cfg.epochs, math.ceil(steps / max(1, math.ceil(len(gold_items.texts) / cfg.batch_size))))


def finetune(student: Student, items: Items, cfg: StudentConfig, seed: int, retrieval: bool,
             on_epoch=None, should_stop=None, kd: bool = True) -> TrainReport:
    """Train head, encoder and key projection on the unweighted sum of the loss terms: CE on gold labels, KD on
    the teacher's soft labels (unless `kd` is off), and with `retrieval` the relational and retrieval losses;
    `retrieval=False` is plain KD. Raises Cancelled between batches once `should_stop()` is true."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = student.model
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=0.01)
    per_epoch = math.ceil(len(_epoch_order(items, random.Random(0))) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.learning_rate, total_steps=cfg.epochs * per_epoch,
                                                pct_start=0.1)
    soft = torch.tensor(items.soft, dtype=torch.float32)
    weight = torch.tensor(items.weight, dtype=torch.float32)
    emb = torch.tensor(items.embeddings, dtype=torch.float32)
    gold = torch.tensor([-100 if g is None else g for g in items.gold])
    bank_rows = np.flatnonzero(items.indexed)
    bank_ids = [items.ids[i] for i in bank_rows]
    use_bank = retrieval and len(bank_rows) > 1
    report, started = TrainReport(), time.perf_counter()
    for epoch in range(cfg.epochs):
        if use_bank:  # design choice: neighbours come from a key snapshot refreshed once per epoch
            _, keys = student.encode([items.texts[i] for i in bank_rows])
            bank = torch.tensor(keys)
        model.train()
        sums: dict[str, float] = {}
        order = _epoch_order(items, rng)
        for start in range(0, len(order), cfg.batch_size):
            check_stop(should_stop, "student training cancelled")
            chunk = order[start : start + cfg.batch_size]
            logits, keys, _ = student.forward_texts([items.texts[i] for i in chunk])
            terms = {}
            g = gold[chunk]
            if (g >= 0).any():
                terms["ce"] = F.cross_entropy(logits, g, ignore_index=-100)
            if kd:
                log_p = logits.log_softmax(-1)
                kl = (soft[chunk] * (soft[chunk].clamp(min=1e-8).log() - log_p)).sum(-1)
                terms["kd"] = (weight[chunk] * kl).sum() / weight[chunk].sum().clamp(min=1e-8)
            if retrieval:
                t_sim = teacher_similarity(soft[chunk], emb[chunk])
                terms["rel"] = relational_loss(keys, t_sim, RELATIONAL_TEMPERATURE)
            if use_bank:
                idx, sims = bank_neighbours(keys, [items.ids[i] for i in chunk], bank, bank_ids, cfg.k)
                rows = torch.tensor(bank_rows)[idx]
                mixed = mixed_log_probs(logits, soft[rows], sims, weight[rows], cfg.beta, cfg.temperature)
                target = torch.where((g >= 0).unsqueeze(-1), F.one_hot(g.clamp(min=0), soft.shape[1]).float(),
                                     soft[chunk])
                terms["ret"] = -(target * mixed).sum(-1).mean()
            loss = sum(terms.values())
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value.item() * len(chunk)
        report.losses.append({name: round(value / len(order), 4) for name, value in sums.items()})
        if on_epoch:
            on_epoch(epoch + 1, cfg.epochs, report.losses[-1])
    model.eval()
    report.seconds = time.perf_counter() - started
    return report


def pretraining_corpus(task, items: Items, store_embedder_name: str, cfg: StudentConfig, seed: int,
                       cache_dir=None, should_stop=None) -> tuple[list[str], np.ndarray]:
    """Unlabeled pool (capped) + store/train texts with their MiniLM sentence embeddings as targets."""
    pool = [task.serialize(f) for f in task.unlabeled]
    random.Random(seed).shuffle(pool)
    pool = sorted(set(pool[: cfg.pretrain_pool]) - set(items.texts))
    targets = minilm_targets(pool, cache_dir, should_stop) if pool else np.zeros((0, 384), dtype=np.float32)
    # Store vectors are MiniLM's already when the store uses the default embedder; otherwise embed again.
    item_targets = (items.embeddings if store_embedder_name == _MINILM
                    else minilm_targets(items.texts, cache_dir, should_stop))
    return pool + items.texts, np.concatenate([targets, item_targets]).astype(np.float32)


def clone(student: Student) -> Student:
    """An independent copy (the plain-KD baseline starts from the same pretrained weights)."""
    return Student(copy.deepcopy(student.model), student.tokenizer, student.labels, student.config, student.vocab)
