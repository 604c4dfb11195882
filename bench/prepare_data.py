"""Rebuild the packaged task data (`retrikt/data/<TASK>/*.jsonl`) from the public source files.

Usage: python -m bench.prepare_data SOURCE_DIR [--out OUT_DIR]

SOURCE_DIR holds one folder per task: FewGLUE_32dev jsonl files (`train.jsonl`, `dev32.jsonl`, `val.jsonl`)
for CB, RTE, COPA, BoolQ, WiC and GLUE tsv files (`train.tsv`, `dev.tsv`) for MRPC and SST-2.

The GLUE k-shot splits follow LM-BFF's sampler exactly: for each seed, `numpy.random.seed(seed)`, shuffle
the train rows, group them by label in order of first appearance, take the first k of each label as train
and the next k as dev. With the same source file this picks the same rows as LM-BFF's published splits.
"""
from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path

import numpy as np

K = 16
SEEDS = (13, 21, 42, 87, 100)
UNLABELED_MAX = 5000
UNLABELED_SEED = 0

FEWGLUE = {
    # task: (fields, label mapping from the source value)
    "CB": (("premise", "hypothesis"), None),
    "RTE": (("premise", "hypothesis"), None),
    "COPA": (("premise", "question", "choice1", "choice2"), {0: "choice1", 1: "choice2"}),
    "BoolQ": (("question", "passage"), {False: "false", True: "true"}),
    "WiC": (("word", "sentence1", "sentence2"), {False: "false", True: "true"}),
}
FEWGLUE_FILES = {"train": "train.jsonl", "dev": "dev32.jsonl", "test": "val.jsonl"}


def norm(text: str) -> str:
    # Same normalisation as Task.serialize, so stored values round-trip through the templates unchanged.
    return " ".join(text.split())


def record(uid: str, fields: dict, label: str | None) -> dict:
    return {"uid": uid, "fields": {k: norm(v) for k, v in fields.items()}, "label": label}


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")


def prepare_fewglue(src: Path, out: Path, task: str) -> None:
    fields, mapping = FEWGLUE[task]
    splits = {}
    for split, filename in FEWGLUE_FILES.items():
        source_split = filename.split(".")[0]
        rows = [json.loads(line) for line in (src / task / filename).read_text("utf-8").splitlines() if line]
        splits[split] = [
            record(
                f"{task.lower()}-{source_split}-{r['idx']}",
                {f: r[f] for f in fields},
                mapping[r["label"]] if mapping else r["label"],
            )
            for r in rows
        ]
        write_jsonl(out / task / f"{split}.jsonl", splits[split])
    # FewGLUE has no unlabeled data beyond its 64 labelled training inputs, so this pool is small.
    unlabeled = [dict(r, label=None) for r in splits["train"] + splits["dev"]]
    write_jsonl(out / task / "unlabeled.jsonl", unlabeled)


def read_glue(path: Path) -> list[list[str]]:
    # QUOTE_NONE: MRPC sentences contain unbalanced '"'; utf-8-sig drops MRPC's byte-order mark.
    with path.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    return rows[1:]


def glue_records(task: str, split: str, rows: list[list[str]]) -> list[dict]:
    if task == "SST-2":
        return [
            record(f"sst2-{split}-{i}", {"sentence": r[0]}, ("negative", "positive")[int(r[1])])
            for i, r in enumerate(rows)
        ]
    return [
        record(
            f"mrpc-{split}-{i}",
            {"sentence1": r[3], "sentence2": r[4]},
            ("not_equivalent", "equivalent")[int(r[0])],
        )
        for i, r in enumerate(rows)
    ]


def kshot(records: list[dict], seed: int) -> tuple[list[dict], list[dict]]:
    np.random.seed(seed)
    shuffled = list(records)
    np.random.shuffle(shuffled)
    by_label: dict[str, list[dict]] = {}
    for r in shuffled:
        by_label.setdefault(r["label"], []).append(r)
    train = [r for group in by_label.values() for r in group[:K]]
    dev = [r for group in by_label.values() for r in group[K : 2 * K]]
    return train, dev


def key(r: dict) -> tuple:
    return tuple(sorted(r["fields"].items()))


def prepare_glue(src: Path, out: Path, task: str) -> None:
    train_all = glue_records(task, "train", read_glue(src / task / "train.tsv"))
    test = glue_records(task, "dev", read_glue(src / task / "dev.tsv"))
    write_jsonl(out / task / "test.jsonl", test)
    excluded = {key(r) for r in test}
    for seed in SEEDS:
        train, dev = kshot(train_all, seed)
        write_jsonl(out / task / f"train-{seed}.jsonl", train)
        write_jsonl(out / task / f"dev-{seed}.jsonl", dev)
        excluded.update(key(r) for r in train + dev)
    pool, seen = [], set(excluded)
    for r in train_all:
        if key(r) not in seen:
            seen.add(key(r))
            pool.append(r)
    picked = random.Random(UNLABELED_SEED).sample(range(len(pool)), min(UNLABELED_MAX, len(pool)))
    write_jsonl(out / task / "unlabeled.jsonl", [dict(pool[i], label=None) for i in sorted(picked)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="folder with one sub-folder per task")
    default_out = Path(__file__).resolve().parents[1] / "retrikt" / "data"
    parser.add_argument("--out", type=Path, default=default_out, help="output folder (default: %(default)s)")
    args = parser.parse_args()
    for task in FEWGLUE:
        prepare_fewglue(args.source, args.out, task)
    for task in ("SST-2", "MRPC"):
        prepare_glue(args.source, args.out, task)
    for path in sorted(args.out.glob("*/*.jsonl")):
        lines = sum(1 for _ in path.open(encoding="utf-8"))
        print(f"{path.relative_to(args.out)}: {lines} rows, {path.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
