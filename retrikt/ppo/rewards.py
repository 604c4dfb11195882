"""Reward terms for step 2 (PPO on the soft prompt): small callables over one batch of samples of one label.

Each term maps a `Samples` batch to one number per sample; `CompositeReward` weights them (weights from
`PPOConfig`) and keeps every term, so each is logged separately per update and stored with the entries.
The paper does not publish its exact reward, so every term below is a design choice. The KL term (distance
to the frozen step-1 prompt) is not here: it is a per-token penalty that the PPO loop adds to the rewards.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import ConfigError

STEP1_SOURCE = "generated:step1"
"""Store source of the step-1 samples."""


@dataclass
class Samples:
    """One batch of generated samples, all written for `label`."""

    label: str
    fields: list[dict[str, str] | None]
    """Parsed fields per sample; None when the text did not parse or was cut by the token budget."""
    texts: list[str]
    """`task.serialize(fields)` per parsed sample (what the store embeds), "" for unparsed ones."""

    @classmethod
    def parse(cls, task, label: str, continuations: list[str], stopped: list[bool]) -> "Samples":
        """Parse raw continuations of `task.generation_prompt(label)`; truncated ones count as unparsed."""
        fields = [task.parse_generation(text) if done else None for text, done in zip(continuations, stopped)]
        texts = [task.serialize(f) if f is not None else "" for f in fields]
        return cls(label, fields, texts)

    @property
    def parsed(self) -> np.ndarray:
        return np.array([f is not None for f in self.fields], dtype=bool)

    def __len__(self) -> int:
        return len(self.fields)


@dataclass
class RewardBreakdown:
    """Weighted total per sample and the unweighted terms it was made of."""

    total: np.ndarray
    terms: dict[str, np.ndarray] = field(default_factory=dict)

    def means(self) -> dict[str, float]:
        return {name: float(values.mean()) if len(values) else 0.0 for name, values in self.terms.items()}

    def per_sample(self, index: int) -> dict[str, float]:
        """{term: value, ..., "total": value} of one sample (the shape `Entry.rewards` stores)."""
        out = {name: float(values[index]) for name, values in self.terms.items()}
        out["total"] = float(self.total[index])
        return out


def parsed_probs(scorer, samples: Samples) -> tuple[np.ndarray, np.ndarray]:
    """(rows of the parsed samples, the scorer's calibrated probabilities for them)."""
    rows = np.flatnonzero(samples.parsed)
    if not len(rows):
        return rows, np.zeros((0, 0))
    return rows, np.asarray(scorer.probs([samples.fields[i] for i in rows]), dtype=float)


class LabelConsistency:
    """r = p_teacher(intended label | sample), the calibrated probability from the step-1 scorer; 0 if unparsed.

    `from_probs` turns the parsed samples' probabilities into their rewards (a variant label term replaces it)."""

    # design choice: the probability rather than 0/1 agreement, so a sample moving towards its label pays off
    # before the teacher's argmax flips.

    name = "label_consistency"

    def __init__(self, scorer, labels: list[str] | tuple[str, ...]):
        self.scorer, self.labels = scorer, list(labels)

    def from_probs(self, probs: np.ndarray, intended: int) -> np.ndarray:
        return probs[:, intended]

    def __call__(self, samples: Samples) -> np.ndarray:
        out = np.zeros(len(samples))
        rows, probs = parsed_probs(self.scorer, samples)
        if len(rows):
            out[rows] = self.from_probs(probs, self.labels.index(samples.label))
        return out


class Diversity:
    """r = clip(1 - max(max_{j != i} cos(e_i, e_j), max_{s in store[label]} cos(e_i, e_s)), 0, 1); 0 if unparsed.

    e are unit sentence embeddings of the serialized sample; j runs over the other *parsed* samples of the
    batch, s over the store's entries of the same label (train examples and earlier generations).
    """

    # design choice: nearest-neighbour novelty rather than Self-BLEU: it is per sample, cheap, and counts
    # paraphrases as repeats; Self-BLEU stays an evaluation metric.

    name = "diversity"

    def __init__(self, embedder, reference: dict[str, np.ndarray] | None = None):
        self.embedder = embedder
        self.reference = reference or {}

    @classmethod
    def from_store(cls, embedder, store, labels) -> "Diversity":
        """Reference vectors per label = the store's current entries (their stored embeddings)."""
        ids, vectors = store.all_embeddings()
        row = {id_: n for n, id_ in enumerate(ids)}
        reference = {}
        for label in labels:
            rows = [row[e.id] for e in store.list(label=label) if e.id in row]
            reference[label] = vectors[rows]
        return cls(embedder, reference)

    def __call__(self, samples: Samples) -> np.ndarray:
        out = np.zeros(len(samples))
        rows = np.flatnonzero(samples.parsed)
        if not len(rows):
            return out
        vectors = np.asarray(self.embedder.encode([samples.texts[i] for i in rows]), dtype=np.float32)
        nearest = np.full(len(rows), -1.0)
        if len(rows) > 1:
            within = vectors @ vectors.T
            np.fill_diagonal(within, -np.inf)
            nearest = np.maximum(nearest, within.max(1))
        reference = self.reference.get(samples.label)
        if reference is not None and len(reference):
            nearest = np.maximum(nearest, (vectors @ np.asarray(reference, dtype=np.float32).T).max(1))
        out[rows] = np.clip(1.0 - nearest, 0.0, 1.0)
        return out


class Validity:
    """r = 1 if the sample parses into the task's fields and is not a copy of a train example, else -penalty.

    Copies are matched on the serialized text, case-insensitively (as the step-1 store filter does).
    """

    # design choice: penalty 0 by default, so validity is a bonus for usable samples; a positive penalty makes
    # train copies (which the teacher scores highly) a net loss.

    name = "validity"

    def __init__(self, task, penalty: float = 0.0):
        self.penalty = float(penalty)
        self.train_keys = {task.serialize(e.fields).lower() for e in task.train}

    def __call__(self, samples: Samples) -> np.ndarray:
        valid = [f is not None and text.lower() not in self.train_keys
                 for f, text in zip(samples.fields, samples.texts)]
        return np.where(np.array(valid, dtype=bool), 1.0, -self.penalty)


class CompositeReward:
    """total = sum_k w_k * r_k over the terms with a non-zero weight; every computed term is kept for logging."""

    def __init__(self, terms: dict[str, tuple[float, Callable[[Samples], np.ndarray]]]):
        self.terms = {name: (float(w), fn) for name, (w, fn) in terms.items() if w != 0}
        if not self.terms:
            raise ConfigError("every reward weight is 0: give at least one term a weight")

    @classmethod
    def from_config(cls, config, task, scorer, embedder, store=None) -> "CompositeReward":
        """The task terms with `config.weight_*` (a PPOConfig); diversity also looks at `store` if given."""
        diversity = Diversity.from_store(embedder, store, task.labels) if store is not None else Diversity(embedder)
        return cls({
            LabelConsistency.name: (config.weight_label, LabelConsistency(scorer, task.labels)),
            Diversity.name: (config.weight_diversity, diversity),
            Validity.name: (config.weight_validity, Validity(task)),
        })

    def __call__(self, samples: Samples) -> RewardBreakdown:
        total = np.zeros(len(samples))
        terms = {}
        for name, (weight, fn) in self.terms.items():
            values = np.asarray(fn(samples), dtype=float)
            if values.shape != (len(samples),):
                raise ValueError(f"reward term {name} returned shape {values.shape} for {len(samples)} samples")
            terms[name] = values
            total += weight * values
        return RewardBreakdown(total, terms)
