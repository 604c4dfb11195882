"""Reward terms for step 2 (PPO on the soft prompt): small callables over one batch of samples of one label.

Each term maps a `Samples` batch to one number per sample; `CompositeReward` weights them (weights from
`PPOConfig`) and keeps every term, so each is logged separately per update and stored with the entries.
The paper does not publish its exact reward, so every term below is a design choice. The KL term (distance
to the frozen step-1 prompt) is not here: it is a per-token penalty that the PPO loop adds to the rewards.
"""
from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import ConfigError
from ..generate.metrics import tokenize

STEP1_SOURCE = "generated:step1"
"""Store source of the step-1 samples (what the minimum-length gate derives its threshold from)."""


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


def _parsed_probs(scorer, samples: Samples) -> tuple[np.ndarray, np.ndarray]:
    """(rows of the parsed samples, the scorer's calibrated probabilities for them)."""
    rows = np.flatnonzero(samples.parsed)
    if not len(rows):
        return rows, np.zeros((0, 0))
    return rows, np.asarray(scorer.probs([samples.fields[i] for i in rows]), dtype=float)


class _LabelTerm:
    """A label term: the step-1 scorer's calibrated probabilities of the parsed samples, turned into one reward per
    sample by `from_probs`; 0 if unparsed."""

    def __init__(self, scorer, labels: list[str] | tuple[str, ...]):
        self.scorer, self.labels = scorer, list(labels)

    def from_probs(self, probs: np.ndarray, intended: int) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, samples: Samples) -> np.ndarray:
        out = np.zeros(len(samples))
        rows, probs = _parsed_probs(self.scorer, samples)
        if len(rows):
            out[rows] = self.from_probs(probs, self.labels.index(samples.label))
        return out


class LabelConsistency(_LabelTerm):
    """r = p_teacher(intended label | sample), the calibrated probability from the step-1 scorer; 0 if unparsed."""

    # design choice: the probability rather than 0/1 agreement, so a sample moving towards its label pays off
    # before the teacher's argmax flips.

    name = "label_consistency"

    def from_probs(self, probs: np.ndarray, intended: int) -> np.ndarray:
        return probs[:, intended]


class LabelMargin(_LabelTerm):
    """r = p(intended | sample) - max_{l != intended} p(l | sample), from the step-1 scorer's calibrated
    probabilities; in [-1, 1], 0 if unparsed.

    Unlike the plain probability, a sample the teacher reads as another label costs more than writing nothing,
    and only a margin over the runner-up label pays (for two labels it is 2 p - 1).
    """

    name = "label_margin"

    def from_probs(self, probs: np.ndarray, intended: int) -> np.ndarray:
        others = np.delete(probs, intended, axis=1)
        return probs[:, intended] - (others.max(1) if others.shape[1] else 0.0)


class NgramNovelty:
    """k_i = |G_i \\ (B_label U G_others)|: the number of sample i's distinct word n-grams found neither in the
    running buffer B of the label's recently accepted samples nor in the other parsed samples of its batch.
    With `cap` 0, r_i = k_i / |G_i| (the novel share); with `cap` C > 0, r_i = min(k_i, C) / C (a count that
    saturates at C). 0 if unparsed or too short to have an n-gram. The batch's parsed samples then join the
    buffer (oldest leave once it holds `window` samples).

    It rewards exactly what Self-BLEU and distinct-n punish (shared wording across samples), which embedding
    novelty misses: two samples can be far apart in embedding space and still share a template. The share
    pays a two-word sample ('so bad') in full, so with a label term that favours short phrases PPO drifts to
    them; the capped count pays a sample only as far as it brings new wording, up to C n-grams.
    """

    # design choice: bigrams (what distinct-2 counts) and a window of 64 samples per label, about a third of a
    # default run's rollouts, so a phrase becomes free again once PPO has moved away from it.

    name = "ngram_novelty"

    def __init__(self, n: int = 2, window: int = 64, cap: int = 0):
        self.n, self.window, self.cap = int(n), int(window), int(cap)
        self.buffers: dict[str, deque] = {}
        self.counts: dict[str, Counter] = {}

    def _grams(self, text: str) -> set:
        tokens = tokenize(text)
        return {tuple(tokens[i : i + self.n]) for i in range(len(tokens) - self.n + 1)}

    def __call__(self, samples: Samples) -> np.ndarray:
        out = np.zeros(len(samples))
        rows = np.flatnonzero(samples.parsed)
        # The serialized text carries the field headers ("Review: "), which every sample shares: use the values.
        grams = [self._grams(" ".join(samples.fields[i].values())) for i in rows]
        in_batch = Counter(g for gs in grams for g in gs)
        buffer = self.counts.setdefault(samples.label, Counter())
        for row, gs in zip(rows, grams):
            if gs:
                novel = sum(1 for g in gs if in_batch[g] == 1 and g not in buffer)
                out[row] = min(novel, self.cap) / self.cap if self.cap else novel / len(gs)
        queue = self.buffers.setdefault(samples.label, deque())
        for gs in grams:
            queue.append(gs)
            buffer.update(gs)
            if len(queue) > self.window:
                for g in queue.popleft():
                    buffer[g] -= 1
                    if buffer[g] <= 0:
                        del buffer[g]
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


def sample_words(fields: dict[str, str]) -> int:
    """Word tokens over a sample's field values (headers excluded), as the generation metrics count length."""
    return len(tokenize(" ".join(fields.values())))


class MinLength:
    """r = 1 if the sample parses and has at least `min_words` words (`sample_words`), else 0.

    Used as a gate: a sample shorter than the threshold earns 0 whatever its label margin or novelty.
    `from_reference` sets the threshold to the `quantile` of a reference set's word counts (the step-1 samples),
    so it follows the task and the step-1 prompt instead of a fixed number of words.
    """

    name = "min_length"

    def __init__(self, min_words: float):
        self.min_words = float(min_words)

    @classmethod
    def from_reference(cls, fields_list: list[dict[str, str]], quantile: float) -> "MinLength":
        if not fields_list:
            raise ConfigError("a minimum-length gate needs step-1 samples to derive its threshold from; the store "
                              "holds none (run `generate` first, or set `ppo.min_words_quantile` to 0)")
        return cls(float(np.quantile([sample_words(f) for f in fields_list], quantile)))

    def __call__(self, samples: Samples) -> np.ndarray:
        return np.array([f is not None and sample_words(f) >= self.min_words for f in samples.fields], dtype=float)


class CompositeReward:
    """total = sum_k w_k * r_k over the terms with a non-zero weight; every computed term is kept for logging.

    With a `gate`: total = gate(sample) * sum_k w_k * r_k, so a sample that fails the gate (gate 0) earns
    exactly 0 whatever the other terms say, and passing it earns nothing by itself. `gate` may be a dict of
    named gates: a sample must pass all of them; "gate" logs passing all of them and, when there are several,
    each one's pass is logged under its own name too.
    """

    def __init__(self, terms: dict[str, tuple[float, Callable[[Samples], np.ndarray]]],
                 gate: Callable[[Samples], np.ndarray] | dict[str, Callable[[Samples], np.ndarray]] | None = None):
        self.terms = {name: (float(w), fn) for name, (w, fn) in terms.items() if w != 0}
        self.gates = gate if isinstance(gate, dict) else ({} if gate is None else {"gate": gate})
        if not self.terms:
            raise ConfigError("every reward weight is 0: give at least one term a weight")

    @classmethod
    def from_config(cls, config, task, scorer, embedder, store=None) -> "CompositeReward":
        """The task terms with `config.weight_*` (a PPOConfig); diversity also looks at `store` if given.

        `config.label_reward` picks the label term (probability or margin); `config.validity_gate` turns validity
        from an added term into a gate; `config.min_words_quantile` adds the minimum-length gate, its threshold taken
        from the store's step-1 samples; `config.novelty_count_cap` switches novelty from a share to a capped count."""
        diversity = Diversity.from_store(embedder, store, task.labels) if store is not None else Diversity(embedder)
        label_term = (LabelMargin if config.label_reward == "margin" else LabelConsistency)(scorer, task.labels)
        novelty = NgramNovelty(window=config.novelty_window, cap=config.novelty_count_cap)
        terms = {
            label_term.name: (config.weight_label, label_term),
            Diversity.name: (config.weight_diversity, diversity),
            NgramNovelty.name: (config.weight_novelty, novelty),
        }
        gates = {}
        if config.validity_gate:
            gates[Validity.name] = Validity(task)
        else:
            terms[Validity.name] = (config.weight_validity, Validity(task))
        if config.min_words_quantile > 0:
            step1 = store.list(source=STEP1_SOURCE) if store is not None else []
            gates[MinLength.name] = MinLength.from_reference([e.fields for e in step1], config.min_words_quantile)
        return cls(terms, gate=gates or None)

    def __call__(self, samples: Samples) -> RewardBreakdown:
        total = np.zeros(len(samples))
        terms = {}
        for name, (weight, fn) in self.terms.items():
            values = np.asarray(fn(samples), dtype=float)
            if values.shape != (len(samples),):
                raise ValueError(f"reward term {name} returned shape {values.shape} for {len(samples)} samples")
            terms[name] = values
            total += weight * values
        if self.gates:
            passed = np.ones(len(samples), dtype=bool)
            for name, gate in self.gates.items():
                ok = np.asarray(gate(samples), dtype=float) > 0
                if len(self.gates) > 1:
                    terms[name] = ok.astype(float)
                passed &= ok
            terms["gate"] = passed.astype(float)
            total = np.where(passed, total, 0.0)
        return RewardBreakdown(total, terms)
