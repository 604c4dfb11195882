"""Build `retrikt/data/SST-2/unlabeled-sentences.jsonl` from GLUE SST-2 `train.tsv`: every whole train sentence
that is not a test input or a k-shot train/dev input of any seed (deduplicated), in file order.

Usage: python -m bench.prepare_unlabeled_sentences SOURCE_DIR   (SOURCE_DIR/SST-2/train.tsv)

GLUE SST-2 train holds every phrase of the treebank's parse trees, so most rows are fragments. A row is kept when it
is a tree root: no other row contains it as a whole-token span (the test split holds whole sentences only). The
teacher labels inputs from this pool for the student (`student.teacher_unlabeled`).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from bench.prepare_data import SEEDS, glue_records, kshot, read_glue, write_jsonl

ROOT = Path(__file__).resolve().parent


def key(r: dict) -> str:
    return r["fields"]["sentence"]


def roots(texts: list[str]) -> set[str]:
    """Texts that are no whole-token span of another text."""
    present = set(texts)
    contained: set[str] = set()
    for text in present:
        tokens = text.split()
        n = len(tokens)
        for i in range(n):
            for j in range(i + 1, n + 1):
                if j - i == n:
                    continue
                span = " ".join(tokens[i:j])
                if span in present:
                    contained.add(span)
    return present - contained


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT.parent / "retrikt" / "data")
    args = parser.parse_args()
    train_all = glue_records("SST-2", "train", read_glue(args.source / "SST-2" / "train.tsv"))
    test = glue_records("SST-2", "dev", read_glue(args.source / "SST-2" / "dev.tsv"))
    excluded = {key(r) for r in test}
    for seed in SEEDS:
        train, dev = kshot(train_all, seed)
        excluded.update(key(r) for r in train + dev)
    whole = roots([key(r) for r in train_all])
    pool, seen = [], set(excluded)
    for r in train_all:
        if key(r) not in seen:
            seen.add(key(r))
            if key(r) in whole:
                pool.append({"uid": r["uid"], "fields": r["fields"], "label": None})
    write_jsonl(args.out / "SST-2" / "unlabeled-sentences.jsonl", pool)
    print(f"{len(pool)} whole sentences")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
