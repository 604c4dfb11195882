"""Generating labelled samples with the (soft-prompted) teacher, batched per label, cancellable between batches."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..config import GenerationConfig
from ..teacher.sampling import prompt_embeddings, sample
from ..teacher.load import Teacher


@dataclass
class GeneratedSample:
    label: str
    raw: str
    """The continuation exactly as decoded."""
    fields: dict[str, str] | None
    """Parsed fields, or None when the text did not parse or was cut by the token budget (counted, dropped)."""
    tokens: int
    truncated: bool = False


@dataclass
class GenerationResult:
    samples: list[GeneratedSample] = field(default_factory=list)
    seconds: float = 0.0
    tokens: int = 0
    cancelled: bool = False
    max_new_tokens: int = 0
    """The token budget each sample had."""

    @property
    def parsed(self) -> list[GeneratedSample]:
        return [s for s in self.samples if s.fields is not None]

    @property
    def parse_rate(self) -> float:
        return len(self.parsed) / len(self.samples) if self.samples else 0.0

    @property
    def samples_per_second(self) -> float:
        return len(self.samples) / self.seconds if self.seconds else 0.0


def default_samples_per_label(task) -> int:
    # design choice: enough for >= 500 (single text) / >= 200 (pairs) parsed samples within ~10 CPU minutes
    return 280 if len(task.text_fields) == 1 else 118


def default_tuning_steps(task) -> int:
    # design choice: 16 steps for pairs (a step on RTE took ~12 s vs ~4 s on SST-2 on 2 CPU cores)
    return 40 if len(task.text_fields) == 1 else 16


def default_tuning_batch(task) -> int:
    # design choice: 4 for pairs, so their 16 steps fit in ~100 s on 2 CPU cores (8 took ~12 s a step on RTE and
    # its loss did not move in 16 steps either way)
    return 8 if len(task.text_fields) == 1 else 4


def sample_token_lengths(task, tokenizer) -> list[int]:
    """Tokens each train example takes when the teacher writes it as a sample (the text after the generation prompt,
    through the line end at which sampling stops)."""
    lengths = []
    for example in task.train:
        body = task.generation_demo(example.fields, example.label)[len(task.generation_prompt(example.label)):]
        lengths.append(len(tokenizer(body + "\n", add_special_tokens=False)["input_ids"]))
    return lengths


def default_max_new_tokens(task, tokenizer, config: GenerationConfig) -> int:
    """The token budget of a sample when `max_new_tokens` is None: `budget_percentile` of the train examples' lengths
    plus `budget_margin`, at most `budget_max` (and at least 16)."""
    lengths = sample_token_lengths(task, tokenizer)
    if not lengths:
        return config.budget_max
    derived = math.ceil(float(np.percentile(lengths, config.budget_percentile))) + config.budget_margin
    return int(min(config.budget_max, max(16, derived)))


def generate_samples(
    teacher: Teacher,
    task,
    soft_prompt: torch.Tensor | None,
    config: GenerationConfig,
    *,
    labels: list[str] | None = None,
    progress: Callable[[int, int, list[GeneratedSample]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> GenerationResult:
    """Sample `samples_per_label` continuations of `task.generation_prompt(label)` for each label.

    `progress(done, total, new_samples)` is called after every batch; `should_stop()` is checked between batches
    and at every token, so a cancel is prompt, loses at most the batch in flight and never keeps half a batch.
    """
    labels = list(labels or task.labels)
    per_label = config.samples_per_label or default_samples_per_label(task)
    max_new = config.max_new_tokens or default_max_new_tokens(task, teacher.tokenizer, config)
    total = per_label * len(labels)
    generator = torch.Generator(device=teacher.device).manual_seed(config.seed)
    result = GenerationResult(max_new_tokens=max_new)
    start = time.perf_counter()
    done = 0
    # Only a multi-field template has headers to write; forcing a one-field task would only mask its eos and make
    # every sample run to the token budget (SST-2's parse rate fell from 96% to 36% that way).
    forcing = config.force_headers and len(task.text_fields) > 1
    for label in labels:
        prompt_ids = teacher.encode(task.generation_prompt(label))
        remaining = per_label
        while remaining > 0:
            if should_stop is not None and should_stop():
                result.cancelled = True
                break
            size = min(config.batch_size, remaining)
            embeds = prompt_embeddings(teacher.model, soft_prompt, prompt_ids, size)
            batch = sample(
                teacher.model,
                teacher.tokenizer,
                embeds,
                max_new_tokens=max_new,
                temperature=config.temperature,
                top_p=config.top_p,
                generator=generator,
                stop_when=task.generation_complete,
                next_header=task.next_generation_header if forcing else None,
                should_stop=should_stop,
            )
            if should_stop is not None and should_stop():  # a batch cut short is dropped whole, never half-kept
                result.cancelled = True
                break
            new = [
                GeneratedSample(label, text, task.parse_generation(text) if stopped else None, int(n), not stopped)
                for text, n, stopped in zip(batch.texts, batch.mask.sum(1).tolist(), batch.stopped.tolist())
            ]
            result.samples += new
            result.tokens += sum(s.tokens for s in new)
            remaining -= size
            done += size
            if progress is not None:
                progress(done, total, new)
        if result.cancelled:
            break
    result.seconds = time.perf_counter() - start
    return result
