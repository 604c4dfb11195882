"""Grow the demo run's knowledge store to a given size, for the studio's latency at scale.

Usage: python -m bench.big_store WORKSPACE --entries 100000 [--seed 13]

The demo run is installed in WORKSPACE (a fresh folder), then `--entries` more entries are added to its store and
to its trained key index, as if the student had been trained on a store that large:
- texts: whole SST-2 train sentences (`retrikt/data/SST-2/train-full.tsv`, the longest rows first so they are
  sentences, not parse-tree fragments; repeated with a copy marker past its 67,349 rows), labelled with their
  gold label, source `unlabeled` (teacher-labelled real inputs, what an analyst brings);
- soft labels: the gold label's probability is drawn from the demo store's own teacher confidences;
- store vectors and student keys: those of a random demo entry of the same label plus Gaussian noise, renormalised,
  so they sit in the demo's real clusters. They are not the embeddings of the new texts: this measures latency,
  not retrieval quality (a semantic search over the grown store finds the right neighbourhood, not the right text).
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

from retrikt.context import run_store
from retrikt.runs import open_run
from retrikt.store.knowledge_store import Entry
from retrikt.student.retrieval import KeyIndex
from retrikt.studio.demo import DEMO_RUN, install_demo
from retrikt.tasks import task_of_run

ROOT = Path(__file__).resolve().parent

SST2_FULL = ROOT.parent / "retrikt" / "data" / "SST-2" / "train-full.tsv"
LABELS = {"0": "negative", "1": "positive"}


def sst2_sentences() -> list[tuple[str, str]]:
    with SST2_FULL.open(encoding="utf-8", newline="") as handle:
        rows = [(r["sentence"].strip(), r["label"]) for r in csv.DictReader(handle, delimiter="\t",
                                                                          quoting=csv.QUOTE_NONE)]
    rows = [r for r in rows if r[0]]
    return sorted(rows, key=lambda r: -len(r[0]))


def noisy(rows: np.ndarray, rng: np.random.Generator, scale: float) -> np.ndarray:
    out = rows + rng.normal(0.0, scale, rows.shape) / np.sqrt(rows.shape[1])
    return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def grow(workspace: str | Path, entries: int, seed: int = 13, noise: float = 0.35, batch: int = 5000) -> dict:
    """Install the demo in `workspace` and add `entries` entries to its store and key index; returns timings."""
    rng = np.random.default_rng(seed)
    install_demo(workspace)
    run = open_run(workspace, DEMO_RUN)
    task = task_of_run(run)
    store = run_store(run, task)
    index = KeyIndex.open(store)
    ids, vectors = store.all_embeddings()
    indexed = [n for n, i in enumerate(ids) if i in index.table]  # the entries the student's index holds
    ids, vectors = [ids[n] for n in indexed], vectors[indexed]
    demo = {e.id: e for e in store.get(ids)}
    keys = index.keys_of(ids)
    by_label = {label: [n for n, i in enumerate(ids) if demo[i].label == label] for label in task.labels}
    confidences = np.array([max(e.soft_labels.values()) for e in demo.values() if e.soft_labels])
    sentences = sst2_sentences()
    started = time.perf_counter()
    added_ids, added_keys, added_soft, added_labels = [], [], [], []
    for start in range(0, entries, batch):
        n = min(batch, entries - start)
        new = []
        for j in range(start, start + n):
            text, gold = sentences[j % len(sentences)]
            if j >= len(sentences):
                text = f"{text} (copy {j // len(sentences)})"
            label = LABELS[gold]
            other = [x for x in task.labels if x != label][0]
            p = float(rng.choice(confidences))
            new.append(Entry(fields={"sentence": text}, label=label, source="unlabeled",
                             soft_labels={label: p, other: 1.0 - p}, id=f"big{j:07d}", text=text))
        base = np.array([rng.choice(by_label[e.label]) for e in new])
        store.add(new, noisy(vectors[base], rng, noise))
        added_ids += [e.id for e in new]
        added_keys.append(noisy(keys[base], rng, noise))
        added_soft += [[e.soft_labels[label] for label in task.labels] for e in new]
        added_labels += [e.label for e in new]
        print(f"added {start + n:,} / {entries:,} ({time.perf_counter() - started:.0f} s)", flush=True)
    add_seconds = time.perf_counter() - started
    all_ids = list(index.table) + added_ids
    all_keys = np.concatenate([index.keys_of(list(index.table)), *added_keys])
    soft = np.concatenate([np.stack([index.table[i][0] for i in index.table]), np.array(added_soft)])
    labels = [index.table[i][2] for i in index.table] + added_labels
    weights = np.concatenate([[index.table[i][1] for i in index.table], np.ones(len(added_ids))])
    started = time.perf_counter()
    KeyIndex.build(store, all_ids, all_keys, soft, list(task.labels), labels, weights)
    build_seconds = time.perf_counter() - started
    # The index was "trained" on every entry: none was filtered out.
    run.unindexed_ids_path.write_text("[]\n", encoding="utf-8")
    return {"entries": store.count(), "add_seconds": round(add_seconds, 1),
            "key_index_seconds": round(build_seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workspace")
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    print(json.dumps(grow(args.workspace, args.entries, args.seed)))


if __name__ == "__main__":
    main()
