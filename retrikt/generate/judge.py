"""An independent judge of generated SST-2 samples: TF-IDF word 1-2 grams + logistic regression fitted on the full
SST-2 train set (67,349 labelled phrases, `data/SST-2/train-full.tsv`).

The PPO reward's label term is the teacher's own judgement, so a rise in teacher agreement alone does not show better
data. This judge shares nothing with the teacher and learns from 67,349 labels instead of a few shots; its accuracy
on the SST-2 test split travels with it, so each agreement it reports can be read against it. It exists for the
built-in SST-2 only: its labels and its domain.
"""
from __future__ import annotations

import csv
import json
import pickle
import re
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1] / "data" / "SST-2"
TRAIN = DATA / "train-full.tsv"
TEST = DATA / "test.jsonl"
LABELS = ("negative", "positive")
# The GLUE texts are lower-cased and split ("it 's"); generated samples are cased and joined ("It's"). One
# tokenizer for both (words and single punctuation marks, lower-cased) makes the two look alike to the judge.
_TOKEN = re.compile(r"\w+|[^\w\s]")
_loaded: dict[Path | None, "SentimentJudge"] = {}


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


class SentimentJudge:
    """p(label | text) over LABELS; `accuracy` is its accuracy on the SST-2 test split (872 sentences)."""

    def __init__(self, vectorizer, model, accuracy: float, fit_seconds: float):
        self.vectorizer, self.model = vectorizer, model
        self.accuracy, self.fit_seconds = accuracy, fit_seconds

    @classmethod
    def fit(cls) -> "SentimentJudge":
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
            return np.zeros((0, len(LABELS)))
        return self.model.predict_proba(self.vectorizer.transform([_normalize(t) for t in texts]))

    def agreement(self, texts: list[str], intended: list[str]) -> float | None:
        """Share of texts the judge labels as intended (None for no texts)."""
        if not texts:
            return None
        predicted = self.probs(texts).argmax(1)
        return float(np.mean([LABELS[p] == label for p, label in zip(predicted, intended)]))


def load_judge(cache: Path | None = None) -> SentimentJudge:
    """The judge, fitted once per process (~10 s) and kept as a pickle in `cache`, keyed by the train file's size;
    an unreadable cache file is fitted anew and overwritten."""
    cache = Path(cache) if cache is not None else None
    if cache in _loaded:
        return _loaded[cache]
    path = cache / f"sst2-judge-{TRAIN.stat().st_size}.pkl" if cache is not None else None
    judge = None
    if path is not None and path.is_file():
        try:
            with path.open("rb") as f:
                judge = SentimentJudge(**pickle.load(f))
        except Exception:  # noqa: BLE001 - a cache is disposable: any unreadable file is refitted
            judge = None
    if judge is None:
        judge = SentimentJudge.fit()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("wb") as f:
                pickle.dump(vars(judge), f)  # plain sklearn objects and floats
    _loaded[cache] = judge
    return judge


def judges_task(task) -> bool:
    """True for the built-in SST-2 (the judge's labels and domain); a saved task cannot take a built-in's name."""
    return task.name == "SST-2" and tuple(task.labels) == LABELS
