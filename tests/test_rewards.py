import numpy as np
import pytest

from retrikt.config import PPOConfig
from retrikt.ppo.rewards import CompositeReward, Diversity, LabelConsistency, Samples, Validity


class FakeScorer:
    """Calibrated probabilities looked up by the sample's first field value."""

    def __init__(self, table):
        self.table, self.calls = table, []

    def probs(self, fields_list):
        self.calls.append([f["sentence"] for f in fields_list])
        return np.array([self.table[f["sentence"]] for f in fields_list])


class FakeEmbedder:
    def __init__(self, vectors):
        self.vectors = vectors

    def encode(self, texts):
        rows = np.array([self.vectors[t] for t in texts], dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _samples(label, sentences):
    fields = [None if s is None else {"sentence": s} for s in sentences]
    texts = ["" if s is None else f"Review: {s}" for s in sentences]
    return Samples(label, fields, texts)


def test_label_consistency_is_the_intended_label_probability(sst2):
    scorer = FakeScorer({"good": [0.1, 0.9], "bad": [0.7, 0.3]})
    term = LabelConsistency(scorer, sst2.labels)
    out = term(_samples("positive", ["good", None, "bad"]))
    assert out.tolist() == pytest.approx([0.9, 0.0, 0.3])
    assert scorer.calls == [["good", "bad"]]  # unparsed samples never reach the teacher
    assert term(_samples("negative", ["good"])).tolist() == pytest.approx([0.1])
    assert term(_samples("negative", [None, None])).tolist() == [0.0, 0.0]


def test_diversity_is_one_minus_nearest_cosine_in_batch_and_store():
    embedder = FakeEmbedder({"Review: a": [1, 0], "Review: a2": [2, 0], "Review: c": [0, 1]})
    samples = _samples("positive", ["a", "a2", "c", None])
    # a and a2 point the same way (cos 1), c is orthogonal to both.
    assert Diversity(embedder)(samples).tolist() == pytest.approx([0.0, 0.0, 1.0, 0.0])
    # Store entries of the same label count too; other labels' entries do not.
    reference = {"positive": np.array([[0.6, 0.8]]), "negative": np.array([[0.0, 1.0]])}
    assert Diversity(embedder, reference)(samples).tolist() == pytest.approx([0.0, 0.0, 0.2, 0.0])
    # One parsed sample, nothing to compare with: maximal novelty; anti-parallel store entries clip at 1.
    alone = _samples("negative", ["a"])
    assert Diversity(embedder)(alone).tolist() == [1.0]
    assert Diversity(embedder, {"negative": np.array([[-1.0, 0.0]])})(alone).tolist() == [1.0]


def test_validity_rejects_unparsed_and_train_copies(sst2):
    copy = sst2.train[0].fields["sentence"]
    samples = Samples("positive", [{"sentence": copy.upper()}, {"sentence": "a brand new review"}, None],
                      [sst2.serialize({"sentence": copy.upper()}), "Review: a brand new review", ""])
    assert Validity(sst2)(samples).tolist() == [0.0, 1.0, 0.0]
    assert Validity(sst2, penalty=1.0)(samples).tolist() == [-1.0, 1.0, -1.0]


def test_samples_parse_drops_truncated_generations(sst2):
    samples = Samples.parse(sst2, "positive", [" fine film", " cut off mid", "\n\n"], [True, False, True])
    assert samples.fields == [{"sentence": "fine film"}, None, None]
    assert samples.texts == ["Review: fine film", "", ""]


def test_composite_weights_terms_and_keeps_each(sst2):
    scorer = FakeScorer({"x": [0.2, 0.8], "y": [0.6, 0.4]})
    embedder = FakeEmbedder({"Review: x": [1, 0], "Review: y": [0, 1]})
    config = PPOConfig(weight_label=1.0, weight_diversity=0.5, weight_validity=0.0)
    reward = CompositeReward.from_config(config, sst2, scorer, embedder)
    out = reward(_samples("positive", ["x", "y", None]))
    assert set(out.terms) == {"label_consistency", "diversity"}  # zero weight: not computed, not logged
    assert out.terms["label_consistency"].tolist() == pytest.approx([0.8, 0.4, 0.0])
    assert out.terms["diversity"].tolist() == pytest.approx([1.0, 1.0, 0.0])
    assert out.total.tolist() == pytest.approx([1.3, 0.9, 0.0])
    assert out.per_sample(0) == pytest.approx({"label_consistency": 0.8, "diversity": 1.0, "total": 1.3})
    assert out.means()["label_consistency"] == pytest.approx(0.4)
    with pytest.raises(ValueError, match="every reward weight is 0"):
        CompositeReward.from_config(PPOConfig(weight_label=0, weight_diversity=0, weight_validity=0),
                                    sst2, scorer, embedder)
