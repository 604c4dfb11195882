from types import SimpleNamespace

import numpy as np
import pytest

from bench.ppo_levers import LEVERS, LabelMargin, MinLength, NgramNovelty, make_reward
from retrikt.config import PPOConfig
from retrikt.errors import ConfigError
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


def _lever_reward(task, scorer, embedder, store=None, *, weight_label=1.0, weight_diversity=0.0, weight_validity=0.5,
                  **levers):
    """The reward bench/ppo.py builds for a setting with these PPOConfig weights and bench/ppo_levers.py levers."""
    config = PPOConfig(weight_label=weight_label, weight_diversity=weight_diversity, weight_validity=weight_validity)
    return make_reward({**LEVERS, **levers})(config, task, scorer, embedder, store)


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


@pytest.mark.parametrize("label,probs,expected", [
    ("positive", [0.1, 0.9], 0.8),
    ("positive", [0.7, 0.3], -0.4),   # read as the other label: worse than an unparsed sample
    ("negative", [0.5, 0.5], 0.0),
    ("negative", [1.0, 0.0], 1.0),
])
def test_label_margin_two_labels(sst2, label, probs, expected):
    term = LabelMargin(FakeScorer({"s": probs}), sst2.labels)
    assert term(_samples(label, ["s", None])).tolist() == pytest.approx([expected, 0.0])


@pytest.mark.parametrize("probs,expected", [
    ([0.6, 0.3, 0.1], 0.3),   # margin over the runner-up, not over the sum of the others
    ([0.2, 0.5, 0.3], -0.3),
    ([0.34, 0.33, 0.33], 0.01),
])
def test_label_margin_three_labels(probs, expected):
    term = LabelMargin(FakeScorer({"s": probs}), ["a", "b", "c"])
    assert term(_samples("a", ["s"])).tolist() == pytest.approx([expected])


@pytest.mark.parametrize("batches,window,expected", [
    # Alone and new: every bigram novel.
    ([["a b c"]], 64, [[1.0]]),
    # Shared within the batch: "a b" is in both, so each keeps 1 of its 2 bigrams.
    ([["a b c", "a b d"]], 64, [[0.5, 0.5]]),
    # Unparsed and one-word samples get 0 and add nothing.
    ([[None, "word"]], 64, [[0.0, 0.0]]),
    # The buffer remembers the previous batch of the same label...
    ([["a b c"], ["a b c", "x y"]], 64, [[1.0], [0.0, 1.0]]),
    # ...only `window` samples back: "a b c" left the buffer when "x y" and "p q" came in.
    ([["a b c"], ["x y"], ["p q"], ["a b c"]], 2, [[1.0], [1.0], [1.0], [1.0]]),
    ([["a b c"], ["x y"], ["a b c"]], 2, [[1.0], [1.0], [0.0]]),
    # Repeating a bigram inside one sample is not novelty twice: "a b a b" has 2 distinct bigrams (ab, ba).
    ([["a b a b", "b a"]], 64, [[0.5, 0.0]]),
])
def test_ngram_novelty_against_batch_and_running_buffer(batches, window, expected):
    term = NgramNovelty(n=2, window=window)
    for batch, want in zip(batches, expected):
        assert term(_samples("positive", batch)).tolist() == pytest.approx(want)


def test_ngram_novelty_buffers_are_per_label():
    term = NgramNovelty()
    term(_samples("positive", ["a b c"]))
    assert term(_samples("negative", ["a b c"])).tolist() == [1.0]
    assert term(_samples("positive", ["a b c"])).tolist() == [0.0]


@pytest.mark.parametrize("gate,label_reward,expected_total,expected_terms", [
    # Added validity term, probability label term: unparsed samples still lose only the validity bonus.
    (False, "probability", [0.8 + 0.5, 0.4 + 0.5, 0.0], {"label_consistency", "validity"}),
    # Gate + margin: the unparsed sample earns exactly 0, the one read as the other label is negative.
    (True, "margin", [0.6, -0.2, 0.0], {"label_margin", "gate"}),
])
def test_composite_gate_and_margin(sst2, gate, label_reward, expected_total, expected_terms):
    scorer = FakeScorer({"x": [0.2, 0.8], "y": [0.6, 0.4]})
    embedder = FakeEmbedder({"Review: x": [1, 0], "Review: y": [0, 1]})
    reward = _lever_reward(sst2, scorer, embedder, validity_gate=gate, label_reward=label_reward)
    out = reward(_samples("positive", ["x", "y", None]))
    assert set(out.terms) == expected_terms
    assert out.total.tolist() == pytest.approx(expected_total)


def test_the_bench_reward_with_every_lever_off_is_the_product_reward(sst2):
    scorer = FakeScorer({"x": [0.2, 0.8], "y": [0.6, 0.4]})
    embedder = FakeEmbedder({"Review: x": [1, 0], "Review: y": [0, 1]})
    config = PPOConfig()
    product = CompositeReward.from_config(config, sst2, scorer, embedder)(_samples("positive", ["x", "y", None]))
    bench = make_reward(LEVERS)(config, sst2, scorer, embedder)(_samples("positive", ["x", "y", None]))
    assert list(bench.terms) == list(product.terms) and bench.total.tolist() == product.total.tolist()


def test_composite_gate_zeroes_train_copies_even_with_novelty(sst2):
    copy = sst2.train[0].fields["sentence"]
    scorer = FakeScorer({copy: [0.0, 1.0], "fresh words here": [0.0, 1.0]})
    reward = _lever_reward(sst2, scorer, FakeEmbedder({}), weight_novelty=1.0, validity_gate=True,
                           label_reward="margin")
    samples = Samples("positive", [{"sentence": copy}, {"sentence": "fresh words here"}],
                      [sst2.serialize({"sentence": copy}), "Review: fresh words here"])
    out = reward(samples)
    assert out.terms["gate"].tolist() == [0.0, 1.0]
    assert out.total[0] == 0.0 and out.total[1] == pytest.approx(2.0)


@pytest.mark.parametrize("batches,cap,expected", [
    # A two-word sample is fully novel as a share but brings one new bigram: 1/4 of a cap of 4.
    ([["so bad"]], 4, [[0.25]]),
    ([["a b c"]], 4, [[0.5]]),
    # The count saturates: 5 novel bigrams with a cap of 3 earn the same as 3.
    ([["a b c d e f", "p q r s"]], 3, [[1.0, 1.0]]),
    # Bigrams shared within the batch do not count: "a b" leaves 1 novel bigram each.
    ([["a b c", "a b d"]], 2, [[0.5, 0.5]]),
    # The running buffer still applies: "a b", "b c" were seen, only "c e" is new.
    ([["a b c d"], ["a b c e"]], 3, [[1.0], [1 / 3]]),
    # Repeating a bigram inside a sample counts it once: "a b a b" has 2 distinct bigrams.
    ([["a b a b a b"]], 4, [[0.5]]),
    # Unparsed and one-word samples still earn 0.
    ([[None, "word"]], 2, [[0.0, 0.0]]),
])
def test_ngram_novelty_count_saturates_at_the_cap(batches, cap, expected):
    term = NgramNovelty(n=2, window=64, cap=cap)
    for batch, want in zip(batches, expected):
        assert term(_samples("positive", batch)).tolist() == pytest.approx(want)


def test_ngram_novelty_count_pays_length_that_the_share_does_not():
    batch = ["so bad", "the plot drags and the jokes never land"]
    assert NgramNovelty()(_samples("negative", batch)).tolist() == [1.0, 1.0]
    short, long = NgramNovelty(cap=6)(_samples("negative", batch)).tolist()
    assert short == pytest.approx(1 / 6) and long == 1.0


@pytest.mark.parametrize("reference,quantile,threshold", [
    (["a b", "a b c d", "one two three four five six seven eight nine", "x " * 14], 0.25, 3.5),
    (["a b", "a b c d", "one two three four five six seven eight nine", "x " * 14], 0.5, 6.5),
    (["a b", "a b c d", "one two three four five six seven eight nine", "x " * 14], 1.0, 14.0),
    # Punctuation tokens count as words, as in the generation metrics' length.
    (["so bad !", "meh ."], 0.5, 2.5),
])
def test_min_length_threshold_is_a_quantile_of_the_reference(reference, quantile, threshold):
    gate = MinLength.from_reference([{"sentence": r} for r in reference], quantile)
    assert gate.min_words == pytest.approx(threshold)


@pytest.mark.parametrize("min_words,sentences,expected", [
    (4, ["so bad", "a b c d", "a b c d e", None], [0.0, 1.0, 1.0, 0.0]),
    (3.5, ["a b c", "a b c d"], [0.0, 1.0]),
    (3, ["so bad !", "so bad"], [1.0, 0.0]),
    (0, ["x", None], [1.0, 0.0]),   # a threshold of 0 still fails unparsed samples
])
def test_min_length_gate(min_words, sentences, expected):
    assert MinLength(min_words)(_samples("positive", sentences)).tolist() == expected


def test_min_length_refuses_an_empty_reference():
    with pytest.raises(ConfigError, match="needs step-1 samples"):
        MinLength.from_reference([], 0.25)


class FakeStore:
    """Entries by label and source, no vectors (the diversity term gets an empty reference)."""

    def __init__(self, entries):
        self.entries = [SimpleNamespace(id=str(i), fields={"sentence": s}, label=label, source=source)
                        for i, (label, source, s) in enumerate(entries)]

    def list(self, label=None, source=None):
        return [e for e in self.entries if label in (None, e.label) and source in (None, e.source)]

    def all_embeddings(self):
        return [], np.zeros((0, 2), dtype=np.float32)


@pytest.mark.parametrize("validity_gate,expected_terms", [
    (True, {"label_margin", "validity", "min_length", "gate"}),
    # Validity as an added term: the length gate alone, logged as "gate".
    (False, {"label_margin", "validity", "gate"}),
])
def test_composite_min_length_gate_from_the_stores_step1_samples(sst2, validity_gate, expected_terms):
    # Step-1 samples of 2, 4, 6 and 8 words; train examples are long and must not move the threshold.
    store = FakeStore([("positive", "generated:step1", "w " * n) for n in (2, 4, 6, 8)]
                      + [("positive", "train", "w " * 40)] * 8)
    scorer = FakeScorer({"great": [0.0, 1.0], "a good film with a warm heart": [0.2, 0.8]})
    reward = _lever_reward(sst2, scorer, FakeEmbedder({}), store, validity_gate=validity_gate, label_reward="margin",
                           min_words_quantile=0.5)
    assert reward.gates["min_length"].min_words == pytest.approx(5.0)
    out = reward(_samples("positive", ["great", "a good film with a warm heart", None]))
    assert set(out.terms) == expected_terms
    # The one-word sample has the larger margin and still earns 0.
    bonus = 0.0 if validity_gate else 0.5
    assert out.total.tolist() == pytest.approx([0.0, 0.6 + bonus, 0.0])
    assert out.terms["gate"].tolist() == [0.0, 1.0, 0.0]


def test_composite_min_length_needs_a_store_with_step1_samples(sst2):
    levers = {"validity_gate": True, "label_reward": "margin", "min_words_quantile": 0.25}
    scorer = FakeScorer({})
    with pytest.raises(ConfigError, match="needs step-1 samples"):
        _lever_reward(sst2, scorer, FakeEmbedder({}), **levers)
    with pytest.raises(ConfigError, match="needs step-1 samples"):
        _lever_reward(sst2, scorer, FakeEmbedder({}), FakeStore([("positive", "train", "x y")]), **levers)


def test_composite_count_novelty_from_config(sst2):
    scorer = FakeScorer({"so bad": [1.0, 0.0], "the plot drags and the jokes never land": [1.0, 0.0]})
    reward = _lever_reward(sst2, scorer, FakeEmbedder({}), weight_novelty=0.5, validity_gate=True,
                           label_reward="margin", novelty_count_cap=6)
    out = reward(_samples("negative", ["so bad", "the plot drags and the jokes never land"]))
    assert out.terms["ngram_novelty"].tolist() == pytest.approx([1 / 6, 1.0])
    assert out.total.tolist() == pytest.approx([1 + 0.5 / 6, 1.5])


class FakeStudent:
    """Class probabilities and retrieval keys looked up by the serialized text."""

    def __init__(self, probs, keys=None):
        self.table, self.keys = probs, keys or {}

    def encode(self, texts):
        return (np.array([self.table.get(t, [0.5, 0.5]) for t in texts], dtype=np.float32),
                np.array([self.keys.get(t, [1.0, 0.0]) for t in texts], dtype=np.float32))


# (teacher p(intended), student p(intended)) -> p_T * (1 - p_S)
@pytest.mark.parametrize("teacher,student,expected", [
    (0.95, 0.10, 0.855),  # the teacher is sure, the student gets it wrong: what the student lacks
    (0.95, 0.90, 0.095),  # both know it: little to learn
    (0.20, 0.10, 0.18),  # the student is wrong, but so is the sample (garbage for this label)
    (0.20, 0.90, 0.02),
])
def test_student_gap_is_teacher_confidence_times_student_error(teacher, student, expected):
    from bench.ppo_levers import StudentGap

    gap = StudentGap(None, None, ["negative", "positive"])
    value = gap.from_probs(np.array([[1 - teacher, teacher]]), np.array([[1 - student, student]]), 1)
    assert value.tolist() == pytest.approx([expected])


def test_student_gap_is_highest_for_a_sample_the_teacher_is_sure_of_and_the_student_gets_wrong():
    from bench.ppo_levers import StudentGap

    sentences = ["sure and missed", "sure and known", "unsure and missed", "unsure and known"]
    scorer = FakeScorer({"sure and missed": [0.05, 0.95], "sure and known": [0.05, 0.95],
                         "unsure and missed": [0.6, 0.4], "unsure and known": [0.6, 0.4]})
    student = FakeStudent({"Review: sure and missed": [0.9, 0.1], "Review: sure and known": [0.1, 0.9],
                           "Review: unsure and missed": [0.9, 0.1], "Review: unsure and known": [0.1, 0.9]})
    out = StudentGap(scorer, student, ["negative", "positive"])(_samples("positive", sentences + [None]))
    assert int(np.argmax(out)) == 0
    assert out[4] == 0.0  # unparsed


def test_key_novelty_is_zero_for_a_copy_of_a_store_entry_and_grows_with_distance():
    from bench.ppo_levers import KeyNovelty

    # Store keys at 0, 10, 20 and 90 degrees: nearest-neighbour distances 1 - cos(10 deg) (three times) and
    # 1 - cos(70 deg).
    angles = np.radians([0, 10, 20, 90])
    store_keys = np.stack([np.cos(angles), np.sin(angles)], 1)
    probe = {"copy": 20, "closer than any spacing": 92, "as far as most": 40, "farther than all": 180}
    scorer = FakeScorer({s: [0.0, 1.0] for s in probe})
    student = FakeStudent({}, {f"Review: {s}": [np.cos(np.radians(a)), np.sin(np.radians(a))]
                               for s, a in probe.items()})
    novelty = KeyNovelty(scorer, student, ["negative", "positive"], store_keys)
    alone = [novelty(_samples("positive", [s]))[0] for s in probe]
    # 40 degrees is 20 from its nearest entry: farther than the three 10-degree spacings, not the 70-degree one.
    assert alone == pytest.approx([0.0, 0.0, 0.75, 1.0])


def test_key_novelty_pays_only_what_the_teacher_reads_as_the_intended_label():
    from bench.ppo_levers import KeyNovelty

    scorer = FakeScorer({"far and right": [0.0, 1.0], "far and wrong": [1.0, 0.0]})
    student = FakeStudent({}, {"Review: far and right": [-1.0, 0.0], "Review: far and wrong": [0.0, -1.0]})
    novelty = KeyNovelty(scorer, student, ["negative", "positive"], np.array([[1.0, 0.0]]))
    # The two samples are orthogonal to each other and to the store's one entry (no spacing to compare with: 0);
    # with a second entry close to the first, both lie farther out than every spacing: novelty 1 each.
    assert novelty(_samples("positive", ["far and right", "far and wrong"])).tolist() == pytest.approx([0.0, 0.0])
    novelty = KeyNovelty(scorer, student, ["negative", "positive"], np.array([[1.0, 0.0], [0.99, 0.14]]))
    assert novelty(_samples("positive", ["far and right", "far and wrong"])).tolist() == pytest.approx([1.0, 0.0])


@pytest.mark.slow  # trains a real tiny student on the store
def test_the_student_aware_levers_train_their_student_on_the_store_and_score_in_range(sst2, tmp_path):
    from test_store_view import seed_run

    from bench.ppo_levers import KeyNovelty, StudentGap

    store = seed_run(tmp_path, "demo")
    texts = {e.fields["sentence"] for e in store.list()}
    scorer = FakeScorer({s: [0.1, 0.9] for s in texts | {"a warm and funny film"}})
    scorer.teacher = SimpleNamespace(n_params=134_515_008)
    reward = _lever_reward(sst2, scorer, FakeEmbedder({}), store, weight_label=0.0, weight_student_gap=1.0,
                           weight_key_novelty=1.0)
    assert {StudentGap.name, KeyNovelty.name} <= set(reward.terms)
    copy = sorted(texts)[0]
    out = reward(_samples("positive", [copy, "a warm and funny film", None]))
    for name in (StudentGap.name, KeyNovelty.name):
        assert ((out.terms[name] >= 0) & (out.terms[name] <= 1)).all() and out.terms[name][2] == 0
    assert out.terms[KeyNovelty.name][0] == pytest.approx(0.0, abs=1e-5)  # a copy of a store entry
