"""How much of the SST-2 test split the student's vocabulary covers, built with and without the test texts.

Usage: python -m bench.vocab_coverage [--seeds 13 21 42 87 100]

Per seed (the k-shot split decides train and dev), the word pieces of the 872 test sentences under three
vocabularies: the product's (train, dev and unlabeled texts, a missing piece read as its nearest kept one), the same
with missing pieces as [UNK], and the one built with the test texts too (the product until the step-3 levers round).
Store texts are left out: they differ per run and only add pieces. Writes `bench/results/vocab_coverage.{md,json}`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from retrikt.student.model import UNK, Vocab, _minilm_tensors, base_tokenizer, task_texts
from retrikt.tasks import load_builtin

from bench.report import write_report

ROOT = Path(__file__).resolve().parent


def coverage(seed: int, tokenizer, words) -> dict:
    task = load_builtin("SST-2", seed=seed)
    test = [task.serialize(e.fields) for e in task.test]
    rows = tokenizer(test, add_special_tokens=False).input_ids
    pieces = sum(len(row) for row in rows)
    without = Vocab.build(tokenizer, task_texts(task))
    with_test = Vocab.build(tokenizer, task_texts(task) + test)
    nearest = without.with_nearest(words).lookup(len(tokenizer))
    kept = set(without.base_ids)
    missing = [[i not in kept for i in row] for row in rows]
    return {"seed": seed, "test_sentences": len(test), "test_pieces": pieces,
            "vocab_without_test": len(without), "vocab_with_test": len(with_test),
            "pieces_missing": sum(map(sum, missing)), "sentences_with_a_missing_piece": sum(map(any, missing)),
            "missing_read_as_unk_with_nearest": sum(int(nearest[i]) == UNK for row in rows for i in row
                                                    if i not in kept)}


def render(data: dict) -> str:
    lines = ["# The student's vocabulary on the SST-2 test split", "",
             "Word pieces of the 872 test sentences (packaged MiniLM tokenizer) against the vocabulary built from "
             "train, dev and unlabeled texts (store texts left out: they only add pieces). *Missing*: a test piece "
             "the vocabulary lacks; the product reads it as its nearest kept piece, which is never [UNK] for a word "
             "piece.", "",
             "| seed | vocabulary without test | with test | test pieces missing | sentences with a missing piece | "
             "missing pieces still [UNK] with nearest |", "|---|---|---|---|---|---|"]
    for r in data["runs"]:
        lines.append(f"| {r['seed']} | {r['vocab_without_test']} | {r['vocab_with_test']} | "
                     f"{r['pieces_missing']} of {r['test_pieces']} ({r['pieces_missing'] / r['test_pieces']:.1%}) | "
                     f"{r['sentences_with_a_missing_piece']} of {r['test_sentences']} "
                     f"({r['sentences_with_a_missing_piece'] / r['test_sentences']:.1%}) | "
                     f"{r['missing_read_as_unk_with_nearest']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[13, 21, 42, 87, 100])
    args = parser.parse_args(argv)
    tokenizer, words = base_tokenizer(), _minilm_tensors()["embeddings.word_embeddings.weight"]
    data = {"runs": [coverage(seed, tokenizer, words) for seed in args.seeds]}
    write_report(ROOT / "results", "vocab_coverage", data, render(data), __file__)
    print(render(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
