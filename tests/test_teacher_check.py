"""The teacher check's logic: its interval, its verdict and its baseline, without a teacher."""
from __future__ import annotations

import numpy as np
import pytest

from retrikt.generate.check import accuracy_interval, check_teacher
from retrikt.tasks import load_builtin


@pytest.mark.parametrize("correct,rows", [(0, 10), (10, 10), (16, 32), (27, 32), (5, 200)])
def test_the_interval_holds_the_accuracy_and_narrows_with_rows(correct, rows):
    low, high = accuracy_interval(correct, rows)
    assert 0 <= low <= correct / rows <= high <= 1
    wider_low, wider_high = accuracy_interval(correct // 2, rows // 2) if rows >= 4 else (0, 1)
    assert high - low <= wider_high - wider_low + 1e-9


class _Scorer:
    """Answers the dev rows right `right` times in every `of`, by the gold label."""

    def __init__(self, task, right: int, of: int):
        self.task, self.right, self.of, self.query = task, right, of, task.query

    def probs(self, fields_list, should_stop=None):
        gold = {self.task.serialize(e.fields): self.task.labels.index(e.label) for e in self.task.dev}
        out = np.zeros((len(fields_list), len(self.task.labels)))
        for n, fields in enumerate(fields_list):
            label = gold[self.task.serialize(fields)]
            out[n, label if n % self.of < self.right else 1 - label] = 1.0
        return out


class _Embedder:
    """Vectors that carry each text's label, so the baseline's logistic regression can learn it."""

    def __init__(self, task):
        self.label = {task.serialize(e.fields): task.labels.index(e.label) for e in [*task.train, *task.dev]}

    def encode(self, texts):
        rng = np.random.default_rng(0)
        return np.array([[self.label[t], 1 - self.label[t]] for t in texts]) + 0.1 * rng.normal(size=(len(texts), 2))


@pytest.mark.parametrize("right,of,verdict", [
    (1, 1, "The teacher knows this task"),
    (4, 5, "The teacher knows this task"),
    (3, 5, "The teacher is not clearly above chance here"),  # 62.5% of 32 rows: the interval reaches 50%
    (1, 2, "The teacher is at chance here"),
    (0, 1, "The teacher is at chance here"),
])
def test_the_verdict_says_knows_only_when_the_interval_clears_chance(right, of, verdict):
    task = load_builtin("SST-2", seed=13)
    check = check_teacher(task, _Scorer(task, right, of), _Embedder(task))
    assert check.rows == 32 and check.chance == 0.5 and check.knows is verdict.endswith("knows this task")
    assert check.accuracy == pytest.approx(sum(n % of < right for n in range(32)) / 32, abs=1e-4)
    assert check.verdict.startswith(verdict)
    assert f"{check.accuracy:.0%} on 32 dev rows" in check.verdict
    assert check.baseline_accuracy == 1.0 and "logistic regression on the same rows" in check.verdict
    assert "100%" in check.verdict
    assert check.majority_label in task.labels and 0.5 <= check.majority_share < 1


@pytest.mark.parametrize("chance,share,bar", [(0.5, 0.51, 0.51), (0.2, 0.27, 0.27), (1 / 6, 0.1, 1 / 6)])
def test_the_bar_is_the_stronger_of_chance_and_the_commonest_label(chance, share, bar):
    from retrikt.generate.check import knowledge_bar

    assert knowledge_bar(chance, share) == pytest.approx(bar)


def test_a_teacher_above_chance_that_does_not_beat_the_commonest_label_is_told_so():
    from retrikt.generate.check import verdict_line

    # SST-5-like, seed 21: 34% on 80 balanced dev rows clears 20% chance, not the 27% of always answering 'positive'
    line = verdict_line(0.34, 0.25, 0.43, 80, 0.2, False, 0.30, "positive", 0.27)
    assert line.startswith("The teacher does not clearly beat always answering its commonest label here (34% on 80 "
                           "dev rows, 90% CI 25%–43%, vs 20% chance, 27% always answering 'positive')")


def test_a_teacher_above_chance_but_below_the_quick_baseline_is_told_so():
    from retrikt.generate.check import verdict_line

    weak = verdict_line(0.52, 0.43, 0.61, 96, 1 / 6, True, 0.76)  # TREC-like: above chance, far below the baseline
    assert weak.startswith("The teacher knows this task (52% on 96 dev rows")
    assert "but less than MiniLM + logistic regression on the same rows (76%)" in weak
    strong = verdict_line(0.84, 0.70, 0.94, 32, 0.5, True, 0.59)
    assert strong.endswith("retrieval can add its knowledge. MiniLM + logistic regression on the same rows: 59%.")
