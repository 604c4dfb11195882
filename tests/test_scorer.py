from types import SimpleNamespace

import numpy as np
import pytest
import torch

from retrikt.config import ScorerConfig
from retrikt.teacher.scorer import TeacherScorer, default_demo_candidates, demos_per_label


def _full_probs(teacher, scorer, fields):
    """Reference: the same token ids in one forward pass without any cache reuse."""
    ids = teacher.encode(scorer._prefix_text) + teacher.encode(scorer.task.classification_prompt(fields))
    with torch.no_grad():
        logits = teacher.model(torch.tensor([ids])).logits[0, -1, scorer.verbalizer_ids]
    return logits.softmax(-1).numpy()


def test_prefix_cache_batches_equal_uncached_passes(tiny_teacher, sst2):
    scorer = TeacherScorer(tiny_teacher, sst2, ScorerConfig(batch_size=4))
    scorer._set_prefix(sst2.train[:4])
    queries = [e.fields for e in sst2.test[:6]]  # different lengths: right padding inside a batch
    batched = scorer.raw_probs(queries)
    for fields, row in zip(queries, batched):
        assert np.allclose(row, _full_probs(tiny_teacher, scorer, fields), atol=1e-5)
    assert np.allclose(batched.sum(-1), 1.0, atol=1e-5)


def test_fit_picks_best_candidate_and_calibrates(tiny_teacher, sst2):
    scorer = TeacherScorer(tiny_teacher, sst2, ScorerConfig(demo_candidates=3, calibration_inputs=16))
    report = scorer.fit()
    finalists = [a for a, rows in zip(report.candidate_accuracies, report.candidate_rows)
                 if rows == max(report.candidate_rows)]
    assert report.demo_accuracy == max(finalists)
    assert len(report.demo_uids) == 4 and {u for u in report.demo_uids} <= {e.uid for e in sst2.train}
    pool = scorer.calibration_pool()
    assert len(pool) == 16
    raw = scorer.raw_probs(pool)
    assert np.allclose(scorer.prior, raw.mean(0), atol=1e-6)
    calibrated = scorer.probs(pool)
    # After dividing out the prior the calibration pool's mean is pulled to (roughly) uniform.
    assert abs(calibrated.mean(0)[0] - 0.5) < abs(raw.mean(0)[0] - 0.5) + 1e-9


@pytest.mark.parametrize("raw,prior,expected", [
    ([0.8, 0.2], [0.8, 0.2], [0.5, 0.5]),
    ([0.6, 0.4], [0.5, 0.5], [0.6, 0.4]),
    ([0.5, 0.3, 0.2], [0.5, 0.25, 0.25], [1 / 3, 1.2 / 3, 0.8 / 3]),
])
def test_calibration_formula(tiny_teacher, sst2, raw, prior, expected, monkeypatch):
    scorer = TeacherScorer(tiny_teacher, sst2)
    scorer.prior = np.array(prior)
    monkeypatch.setattr(scorer, "raw_probs", lambda fields, should_stop=None: np.array([raw]))
    assert np.allclose(scorer.probs([{}])[0], expected)


def test_use_demos_restores_the_same_scores(tiny_teacher, sst2):
    first = TeacherScorer(tiny_teacher, sst2, ScorerConfig(demo_candidates=2, calibration_inputs=8))
    first.fit()
    second = TeacherScorer(tiny_teacher, sst2)
    second.use_demos(first.report.demo_uids, first.report.label_prior)
    queries = [e.fields for e in sst2.test[:3]]
    assert np.allclose(first.probs(queries), second.probs(queries), atol=1e-6)


def test_length_sorted_batches_match_one_at_a_time(tiny_teacher, sst2):
    queries = [e.fields for e in sst2.test[:10]]
    batched = TeacherScorer(tiny_teacher, sst2, ScorerConfig(batch_size=4))
    single = TeacherScorer(tiny_teacher, sst2, ScorerConfig(batch_size=1))
    demos = [e.uid for e in sst2.train[:2]]
    batched.use_demos(demos, [0.5, 0.5])
    single.use_demos(demos, [0.5, 0.5])
    probs, hidden = batched.features(queries)
    assert np.allclose(batched.raw_probs(queries), single.raw_probs(queries), atol=1e-5)
    assert np.allclose(probs, single.probs(queries), atol=1e-5)
    assert hidden is None or hidden.shape == (len(queries), tiny_teacher.hidden_size)


@pytest.mark.slow
def test_packaged_teacher_beats_chance_on_sst2(teacher, sst2):
    scorer = TeacherScorer(teacher, sst2, ScorerConfig(demo_candidates=2, calibration_inputs=32))
    scorer.fit()
    test = sst2.test[:48]
    gold = np.array([sst2.label_index(e.label) for e in test])
    accuracy = (scorer.probs([e.fields for e in test]).argmax(-1) == gold).mean()
    assert accuracy > 0.6, accuracy


def test_demo_search_stops_within_one_batch(tiny_teacher, sst2):
    from retrikt.errors import Cancelled

    scorer = TeacherScorer(tiny_teacher, sst2, ScorerConfig(demo_candidates=8, batch_size=4))
    batches = []
    original = scorer._score_ids
    scorer._score_ids = lambda queries: batches.append(len(queries)) or original(queries)
    with pytest.raises(Cancelled):
        scorer.fit(should_stop=lambda: len(batches) >= 2)
    assert len(batches) == 2


def test_scores_on_disk_are_reused_only_by_the_same_teacher_and_prefix(tiny_teacher, sst2, tmp_path, monkeypatch):
    from dataclasses import replace

    queries = [e.fields for e in sst2.test[:6]]
    first = TeacherScorer(tiny_teacher, sst2, ScorerConfig(batch_size=4), cache_dir=tmp_path)
    first._set_prefix(sst2.train[:4])
    scored = first.raw_probs(queries)
    assert len(list((tmp_path / "scores").glob("*.npz"))) == 1

    again = TeacherScorer(tiny_teacher, sst2, ScorerConfig(batch_size=4), cache_dir=tmp_path)
    again._set_prefix(sst2.train[:4])
    monkeypatch.setattr(again, "_score_ids", lambda queries: pytest.fail("a cached score was recomputed"))
    assert np.array_equal(again.raw_probs(queries), scored)

    other_demos = TeacherScorer(tiny_teacher, sst2, ScorerConfig(batch_size=4), cache_dir=tmp_path)
    other_demos._set_prefix(sst2.train[4:8])
    assert not other_demos._raw_cache  # another prefix: nothing to reuse
    other_query = TeacherScorer(tiny_teacher, sst2, ScorerConfig(batch_size=4), cache_dir=tmp_path)
    other_query._set_prefix(sst2.train[:4], "Label:")
    assert not other_query._raw_cache  # the same demonstrations asked another question: nothing to reuse

    model = type(tiny_teacher.model)(tiny_teacher.model.config).eval()  # same shape and name, other weights
    other_teacher = replace(tiny_teacher, model=model)
    assert other_teacher.fingerprint != tiny_teacher.fingerprint
    stranger = TeacherScorer(other_teacher, sst2, ScorerConfig(batch_size=4), cache_dir=tmp_path)
    stranger._set_prefix(sst2.train[:4])
    assert not stranger._raw_cache


def test_a_damaged_score_file_is_scored_again(tiny_teacher, sst2, tmp_path):
    queries = [e.fields for e in sst2.test[:3]]
    scorer = TeacherScorer(tiny_teacher, sst2, ScorerConfig(batch_size=4), cache_dir=tmp_path)
    scorer._set_prefix(sst2.train[:4])
    expected = scorer.raw_probs(queries)
    (path,) = (tmp_path / "scores").glob("*.npz")
    path.write_bytes(b"not a numpy file")
    fresh = TeacherScorer(tiny_teacher, sst2, ScorerConfig(batch_size=4), cache_dir=tmp_path)
    fresh._set_prefix(sst2.train[:4])
    assert np.allclose(fresh.raw_probs(queries), expected, atol=1e-6)
    with np.load(path) as data:  # and the file is whole again
        assert len(data["keys"]) == 3


def _answer_loglik(teacher, scorer, fields, answer: str) -> float:
    """Reference: log p(" " + answer | demos, query) from one forward pass over the whole sequence, no cache."""
    context = teacher.encode(scorer._prefix_text) + teacher.encode(scorer._prompt(fields))
    answer_ids = teacher.tokenizer.encode(" " + answer, add_special_tokens=False)
    with torch.no_grad():
        logp = teacher.model(torch.tensor([context + answer_ids])).logits[0].float().log_softmax(-1)
    return sum(float(logp[len(context) - 1 + i, token]) for i, token in enumerate(answer_ids))


@pytest.mark.parametrize("answer_score", ["sum", "mean"])
@pytest.mark.parametrize("answers", [
    # Both answers start with " very" (the old first-token scorer refused them) and differ in length.
    {"negative": "very bad indeed", "positive": "very good"},
    {"negative": "bad", "positive": "very good"},  # a one-token answer beside a longer one
])
def test_multi_token_answers_score_their_whole_log_likelihood(tiny_teacher, sst2, answer_score, answers):
    from dataclasses import replace

    task = replace(sst2, verbalizers=answers)
    scorer = TeacherScorer(tiny_teacher, task, ScorerConfig(batch_size=4, answer_score=answer_score))
    assert not scorer.single_token
    scorer._set_prefix(task.train[:4])
    queries = [e.fields for e in task.test[:6]]  # different lengths: right padding inside a batch
    scored = scorer.raw_probs(queries)
    for fields, row in zip(queries, scored):
        by_hand = np.array([_answer_loglik(tiny_teacher, scorer, fields, task.verbalizers[label])
                            for label in task.labels])
        if answer_score == "mean":
            by_hand = by_hand / np.array([len(tokens) for tokens in scorer.answer_ids])
        expected = np.exp(by_hand - by_hand.max())
        assert np.allclose(row, expected / expected.sum(), atol=1e-4)


def test_one_token_answers_keep_the_first_token_scores(tiny_teacher, sst2):
    scorer = TeacherScorer(tiny_teacher, sst2, ScorerConfig(batch_size=4))
    assert scorer.single_token  # " negative" / " positive": one token each for this tokenizer
    scorer._set_prefix(sst2.train[:4])
    fields = sst2.test[0].fields
    logliks = np.array([_answer_loglik(tiny_teacher, scorer, fields, sst2.verbalizers[l]) for l in sst2.labels])
    expected = np.exp(logliks - logliks.max())
    assert np.allclose(scorer.raw_probs([fields])[0], expected / expected.sum(), atol=1e-5)


def test_fit_tries_every_query_line_and_a_restored_scorer_uses_the_winner(tiny_teacher, sst2):
    from dataclasses import replace

    task = replace(sst2, query_candidates=("Label:", "Which label fits: negative, positive? Answer:"))
    scorer = TeacherScorer(tiny_teacher, task, ScorerConfig(demo_candidates=4, calibration_inputs=8))
    report = scorer.fit()
    assert report.candidate_queries == ["Sentiment:", "Label:", "Which label fits: negative, positive? Answer:",
                                        "Sentiment:"]
    most = max(report.candidate_rows)
    best = max((c for c, rows in enumerate(report.candidate_rows) if rows == most),
               key=lambda c: (report.candidate_accuracies[c], -c))
    assert report.query == report.candidate_queries[best] == scorer.query
    assert scorer._prefix_text.count(f"\n{report.query} ") == 4  # every demonstration asks the winning line
    again = TeacherScorer(tiny_teacher, task)
    again.use_demos(report.demo_uids, report.label_prior, report.query)
    queries = [e.fields for e in task.test[:3]]
    assert np.allclose(scorer.probs(queries), again.probs(queries), atol=1e-6)


@pytest.mark.parametrize("candidates, held_out, schedule", [
    (8, 28, [(8, 8), (4, 16), (2, 28)]),  # SST-2: 120 inputs instead of 224
    (8, 92, [(8, 12), (4, 24), (2, 92)]),  # TREC, 16 rows a label
    (2, 28, [(2, 28)]),  # two candidates (pair tasks): both read every row, as before
    (3, 40, [(3, 14), (2, 40)]),
    (8, 5, [(8, 5)]),  # fewer rows than the first round wants: one full pass
    (1, 30, [(1, 30)]),
    (8, 0, [(8, 0)]),
])
def test_successive_halving_schedule(candidates, held_out, schedule):
    from retrikt.teacher.scorer import search_inputs, search_schedule

    assert search_schedule(candidates, held_out) == schedule
    assert search_inputs(candidates, held_out) <= search_inputs(candidates, held_out, halving=False)


def test_a_prefix_of_the_held_out_order_holds_every_label_about_equally(sst2):
    from dataclasses import replace

    from retrikt.teacher.scorer import _balanced_order

    by_label = sorted(sst2.train, key=lambda e: e.label)  # a train split sorted by label
    order = _balanced_order(by_label, sst2.labels, seed=13)
    assert sorted(e.uid for e in order) == sorted(e.uid for e in sst2.train)
    first = [e.label for e in order[:8]]
    assert first.count("negative") == first.count("positive") == 4
    assert [e.uid for e in order] == [e.uid for e in _balanced_order(by_label, sst2.labels, seed=13)]


def test_halving_scores_fewer_inputs_reports_each_candidates_rows_and_counts_progress(tiny_teacher, sst2):
    full = TeacherScorer(tiny_teacher, sst2, ScorerConfig(demo_candidates=8, calibration_inputs=4))
    full_report = full.fit(halving=False)
    held_out = len(sst2.train) - 4
    assert full_report.candidate_rows == [held_out] * 8
    assert full_report.demo_accuracy == max(full_report.candidate_accuracies)
    seen = []
    halved = TeacherScorer(tiny_teacher, sst2, ScorerConfig(demo_candidates=8, calibration_inputs=4))
    report = halved.fit(progress=lambda done, total: seen.append((done, total)))
    assert sorted(report.candidate_rows) == [8] * 4 + [16] * 2 + [held_out] * 2
    assert [done for done, _ in seen] == sorted(done for done, _ in seen) and seen[-1] == (120, 120)
    assert sum(report.candidate_rows) == 120  # the count step 1 reports the check's verdict at
    # The same demo sets in the same order: a finalist read every held-out row, so its accuracy is the full
    # search's, and the winner is the best finalist.
    assert report.candidate_queries == full_report.candidate_queries
    finalists = [c for c, rows in enumerate(report.candidate_rows) if rows == held_out]
    for c in finalists:
        assert report.candidate_accuracies[c] == full_report.candidate_accuracies[c]
    assert report.demo_accuracy == max(report.candidate_accuracies[c] for c in finalists)


@pytest.mark.parametrize("labels,fields,demos_total,per_label", [
    (2, 1, None, 2),  # SST-2: 4 demonstrations, two a label
    (3, 1, None, 2), (5, 1, None, 2), (6, 1, None, 2),  # one text, 3 to 6 labels: two a label
    (7, 1, None, 1), (14, 1, None, 1),  # many labels: at least one a label
    (3, 2, None, 1), (2, 2, None, 2),  # pairs keep 4 in all
    (6, 1, 6, 1), (2, 1, 8, 4), (5, 1, 1, 1),  # a set demos_total is spread evenly, at least one a label
])
def test_demonstrations_a_label(labels, fields, demos_total, per_label):
    assert demos_per_label(demos_total, _task(labels, fields)) == per_label


@pytest.mark.parametrize("labels,fields,candidates", [
    (2, 1, 8), (7, 1, 8), (14, 1, 8),  # four demonstrations: 8 demo sets
    (3, 1, 4), (6, 1, 4),  # two a label, longer prompts: 4
    (2, 2, 2), (3, 2, 2),  # pairs: 2
])
def test_demo_sets_searched(labels, fields, candidates):
    assert default_demo_candidates(_task(labels, fields)) == candidates


def _task(labels: int, fields: int) -> SimpleNamespace:
    return SimpleNamespace(labels=[f"l{n}" for n in range(labels)], text_fields=tuple(f"f{n}" for n in range(fields)))
