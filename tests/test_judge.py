"""The independent SST-2 judge of generated samples: a real classifier of the full SST-2 train set."""
import pickle

import pytest

from retrikt.generate import judge as judge_module
from retrikt.generate.judge import SentimentJudge, judges_task, load_judge
from retrikt.tasks import load_builtin
from retrikt.tasks import load_custom


@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    return load_judge(tmp_path_factory.mktemp("judge-cache"))


def test_the_judge_is_a_real_sst2_classifier(judge):
    assert judge.accuracy > 0.78  # measured 0.818 on the 872 test sentences
    texts = ["A wonderful, moving and heartfelt film.", "A dull, tedious and lifeless mess."]
    assert judge.agreement(texts, ["positive", "negative"]) == 1.0
    assert judge.agreement(texts, ["negative", "positive"]) == 0.0
    assert judge.agreement([], []) is None
    assert judge.probs(texts).shape == (2, 2)


def test_the_judge_is_fitted_once_then_read_from_its_cache(judge, tmp_path, monkeypatch):
    fits = []

    def counted_fit():
        fits.append(1)
        return judge

    monkeypatch.setattr(SentimentJudge, "fit", classmethod(lambda cls: counted_fit()))
    monkeypatch.setattr(judge_module, "_loaded", {})
    first = load_judge(tmp_path)
    assert len(fits) == 1 and list(tmp_path.glob("sst2-judge-*.pkl"))
    monkeypatch.setattr(judge_module, "_loaded", {})
    again = load_judge(tmp_path)  # a new process: read from the pickle, not fitted
    assert len(fits) == 1 and again is not first and again.accuracy == judge.accuracy
    texts = ["an utterly charming delight", "a total waste of time"]
    assert (again.probs(texts) == judge.probs(texts)).all()

    cached = next(tmp_path.glob("sst2-judge-*.pkl"))
    cached.write_bytes(b"not a pickle")
    monkeypatch.setattr(judge_module, "_loaded", {})
    assert load_judge(tmp_path) is judge and len(fits) == 2  # unreadable cache: refitted, and rewritten
    assert set(pickle.loads(cached.read_bytes())) == {"vectorizer", "model", "accuracy", "fit_seconds"}


def test_only_the_builtin_sst2_is_judged(tmp_path):
    assert judges_task(load_builtin("SST-2"))
    assert not judges_task(load_builtin("CB"))
    rows = "text,label\n" + "".join(f"review {i} is {'good' if i % 2 else 'bad'},"
                                    f"{'positive' if i % 2 else 'negative'}\n" for i in range(80))
    path = tmp_path / "reviews.csv"
    path.write_text(rows)
    assert not judges_task(load_custom(path, ["text"], "label", name="reviews"))
