"""Step 1's token budget comes from the task's own train examples, not from a constant per task shape."""
from __future__ import annotations

import math

import numpy as np
import pytest

from retrikt.config import GenerationConfig
from retrikt.generate.generation import default_max_new_tokens, sample_token_lengths
from retrikt.tasks import load_builtin


class WordTokenizer:
    """One token per whitespace-separated word (enough to check the arithmetic)."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": list(range(len(text.split())))}


def test_lengths_are_what_the_teacher_writes_after_the_prompt():
    task = load_builtin("SST-2", seed=13)
    lengths = sample_token_lengths(task, WordTokenizer())
    # the sample is the sentence itself: the prompt's "Review:" header is not counted
    assert lengths == [len(e.fields["sentence"].split()) for e in task.train]


@pytest.mark.parametrize("percentile,margin,ceiling", [(95.0, 16, 256), (50.0, 0, 256), (100.0, 8, 2048), (95.0, 16, 20)])
def test_budget_is_percentile_plus_margin_within_bounds(percentile, margin, ceiling):
    task = load_builtin("RTE")
    config = GenerationConfig(budget_percentile=percentile, budget_margin=margin, budget_max=ceiling)
    lengths = sample_token_lengths(task, WordTokenizer())
    expected = min(ceiling, max(16, math.ceil(float(np.percentile(lengths, percentile))) + margin))
    assert default_max_new_tokens(task, WordTokenizer(), config) == expected


def test_long_texts_get_a_longer_budget_than_short_ones(teacher):
    config = GenerationConfig()
    short = default_max_new_tokens(load_builtin("SST-2", seed=13), teacher.tokenizer, config)
    long = default_max_new_tokens(load_builtin("BoolQ"), teacher.tokenizer, config)
    # measured with the packaged teacher's tokenizer: SST-2's 95th percentile is 30 tokens, BoolQ passages 298
    assert 40 <= short <= 56
    assert long == config.budget_max > short
