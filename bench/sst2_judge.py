"""An independent judge of SST-2 samples: TF-IDF word 1-2 grams + logistic regression on the full SST-2 train set.

It shares nothing with the PPO reward (the teacher scorer) and sees 67,349 labelled phrases instead of 16 shots,
so "the judge agrees with the intended label" measures label quality without rewarding what PPO optimised.
Its own accuracy on the SST-2 test split (872 sentences) is reported next to every number it produces.

Usage: python bench/sst2_judge.py [--cache DIR]   (fits or loads the judge and prints its test accuracy)
"""
from __future__ import annotations

import argparse
import csv
import json
import pickle
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
TRAIN = ROOT / "data" / "SST-2-full" / "train.tsv"
TEST = ROOT.parent / "retrikt" / "data" / "SST-2" / "test.jsonl"
LABELS = ["negative", "positive"]
# The GLUE texts are lower-cased and split ("it 's"); generated samples are cased and joined ("It's"). One
# tokenizer for both (words and single punctuation marks, lower-cased) makes the two look alike to the judge.
_TOKEN = re.compile(r"\w+|[^\w\s]")


def _normalize(text: str) -> str:
    return " ".join(_TOKEN.findall(text.lower()))


def read_train() -> tuple[list[str], np.ndarray]:
    texts, labels = [], []
    with TRAIN.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)
        for sentence, label in reader:
            texts.append(sentence.strip())
            labels.append(int(label))
    return texts, np.array(labels)


def read_test() -> tuple[list[str], np.ndarray]:
    rows = [json.loads(line) for line in TEST.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r["fields"]["sentence"] for r in rows], np.array([LABELS.index(r["label"]) for r in rows])


class Judge:
    """p(positive | text) from a TF-IDF (1-2 gram) logistic regression; `accuracy` is its SST-2 test accuracy."""

    def __init__(self, vectorizer, model, accuracy: float, fit_seconds: float):
        self.vectorizer, self.model = vectorizer, model
        self.accuracy, self.fit_seconds = accuracy, fit_seconds

    @classmethod
    def fit(cls) -> "Judge":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        started = time.perf_counter()
        texts, labels = read_train()
        # design choice: word 1-2 grams, sublinear tf, C=4: a standard strong bag-of-ngrams SST-2 baseline.
        vectorizer = TfidfVectorizer(lowercase=False, token_pattern=r"\S+", ngram_range=(1, 2), min_df=2,
                                     sublinear_tf=True)
        model = LogisticRegression(C=4.0, max_iter=2000)
        model.fit(vectorizer.fit_transform([_normalize(t) for t in texts]), labels)
        test_texts, test_labels = read_test()
        accuracy = float((model.predict(vectorizer.transform([_normalize(t) for t in test_texts])) == test_labels).mean())
        return cls(vectorizer, model, accuracy, time.perf_counter() - started)

    def probs(self, texts: list[str]) -> np.ndarray:
        """(n, 2) probabilities over LABELS."""
        if not texts:
            return np.zeros((0, 2))
        return self.model.predict_proba(self.vectorizer.transform([_normalize(t) for t in texts]))

    def agreement(self, texts: list[str], intended: list[str]) -> float | None:
        """Share of texts the judge labels as intended."""
        if not texts:
            return None
        predicted = self.probs(texts).argmax(1)
        return float(np.mean([LABELS[p] == label for p, label in zip(predicted, intended)]))


def load_judge(cache: Path | None = None) -> Judge:
    """The judge, fitted once and pickled in `cache` (keyed by the train file's size)."""
    path = None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        path = cache / f"sst2-judge-{TRAIN.stat().st_size}.pkl"
        if path.is_file():
            with path.open("rb") as f:
                return Judge(**pickle.load(f))
    judge = Judge.fit()
    if path is not None:
        with path.open("wb") as f:
            pickle.dump(vars(judge), f)  # plain sklearn objects: loadable whichever module defined Judge
    return judge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default="workspace/cache")
    args = parser.parse_args()
    judge = load_judge(Path(args.cache))
    print(f"SST-2 judge: test accuracy {judge.accuracy:.4f} (872 sentences), fitted in {judge.fit_seconds:.0f} s")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT.parent))
    main()
