import pytest

from retrikt.generate.metrics import distinct_n, duplicate_rate, self_bleu, tokenize


@pytest.mark.parametrize("texts,expected", [
    (["the cat sat on the mat", "the cat sat on the mat"], 1.0),
    (["a b c d", "e f g h"], (0.1 / 4 * 0.1 / 3 * 0.1 / 2 * 0.1 / 1) ** 0.25),  # no overlap: smoothed 0.1/count
    (["only one"], 0.0),
    ([], 0.0),
])
def test_self_bleu_table(texts, expected):
    assert self_bleu(texts) == pytest.approx(expected, abs=1e-9)


def test_self_bleu_orders_diversity():
    same = ["this movie is great fun"] * 3 + ["this movie is great fun indeed"]
    varied = ["this movie is great fun", "a dull and lifeless plot", "the actors shine", "I left early"]
    assert self_bleu(same) > 0.8 > self_bleu(varied)


def test_self_bleu_excludes_self_reference():
    # Each text is unique, so no hypothesis may count itself as a reference: 4-gram matches must be zero.
    texts = ["one two three four", "five six seven eight", "nine ten eleven twelve"]
    assert self_bleu(texts) < 0.11


@pytest.mark.parametrize("texts,rate", [
    ([], 0.0), (["a"], 0.0), (["A film .", "a  film ."], 0.5), (["x", "y", "x", "x"], 0.5),
])
def test_duplicate_rate(texts, rate):
    assert duplicate_rate(texts) == rate


def test_tokenize_splits_punctuation():
    assert tokenize("It's GREAT!") == ["it", "'", "s", "great", "!"]


@pytest.mark.parametrize("texts,n,expected", [
    (["a b c", "d e f"], 2, 1.0),            # 4 bigrams, all different
    (["a b c", "a b c"], 2, 0.5),            # 4 bigrams, 2 distinct
    (["a b a b"], 2, 2 / 3),                 # ab, ba, ab
    (["Great film!", "great film !"], 2, 0.5),  # case and punctuation spacing do not make a bigram new
    (["one", "two"], 2, 0.0),                # no bigram at all
    ([], 2, 0.0),
    (["a b c", "a d c"], 1, 4 / 6),
])
def test_distinct_n(texts, n, expected):
    assert distinct_n(texts, n) == pytest.approx(expected)
