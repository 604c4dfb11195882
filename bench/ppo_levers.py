"""The PPO levers that lost in bench/ppo.py (bench/results/ppo.md), kept here so its settings still reproduce.

The product reward is label probability + embedding diversity + validity, with GAE advantages and a KL penalty
summed over tokens (retrikt/ppo). Each lever below was tried against it on SST-2 seeds and none bought a steadier
gain; `VARIANTS` in bench/ppo.py names them next to the product's own PPOConfig fields, and `split` tells the
two apart:

- `label_reward: margin`: the label term is p(intended) minus the best other label's p (`LabelMargin`);
- `weight_novelty` (+ `novelty_window`, `novelty_count_cap`): a bigram novelty term (`NgramNovelty`);
- `validity_gate`: validity gates the reward instead of adding to it; `min_words_quantile`: a minimum-length gate
  at that quantile of the step-1 samples' word counts (`MinLength`); gates are applied by `GatedReward`;
- `advantage: group`: GRPO/RLOO-style group-relative advantages, no value head; `entropy_coef`: an entropy bonus;
  `kl_length_neutral`: each sample's KL penalty scaled to the batch's mean length (all in `LeverTrainer`);
- `weight_student_gap`: pay what a quick student trained on the step-1 store does not yet know (`StudentGap`);
- `weight_key_novelty`: the teacher's confidence times distance to the store in that student's retrieval key
  space (`KeyNovelty`). Both train one `quick_student` before PPO.
"""
from __future__ import annotations

from collections import Counter, deque
from typing import Callable

import numpy as np
import torch

from retrikt.errors import ConfigError
from retrikt.generate.metrics import tokenize
from retrikt.ppo.core import PolicyLoss, token_entropy, token_rewards
from retrikt.ppo.rewards import (
    STEP1_SOURCE, CompositeReward, Diversity, LabelConsistency, RewardBreakdown, Samples, Validity, parsed_probs,
)
from retrikt.ppo.trainer import PPOTrainer

LEVERS = {"label_reward": "probability", "weight_novelty": 0.0, "novelty_window": 64, "novelty_count_cap": 0,
          "validity_gate": False, "min_words_quantile": 0.0, "advantage": "gae", "entropy_coef": 0.0,
          "kl_length_neutral": False, "weight_student_gap": 0.0, "weight_key_novelty": 0.0}
"""Each lever and its off value (the product's behaviour)."""


def split(overrides: dict) -> tuple[dict, dict]:
    """(levers with every unset one at its off value, the rest: PPOConfig fields) of a VARIANTS entry."""
    levers = {**LEVERS, **{k: v for k, v in overrides.items() if k in LEVERS}}
    if levers["label_reward"] not in ("probability", "margin") or levers["advantage"] not in ("gae", "group"):
        raise ConfigError(f"unknown lever value in {overrides}")
    return levers, {k: v for k, v in overrides.items() if k not in LEVERS}


# ---- reward -----------------------------------------------------------------------------------------------------
class LabelMargin(LabelConsistency):
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


def quick_student(task, store, teacher_params: int, seed: int):
    """The student PPO aims at: the default tiny student (MiniLM-initialised embeddings, no sentence-distillation
    pretraining) fine-tuned with the retrieval losses on the step-1 store, so its class probabilities say what it
    knows and its keys are a retrieval key space. About half a minute on one CPU thread."""
    from dataclasses import replace

    from retrikt.config import StudentConfig
    from retrikt.student.model import build_student, task_texts
    from retrikt.student.train import finetune, select_items

    # design choice: no pretraining (the default run's two minutes of it) so the reward's student costs seconds.
    cfg = replace(StudentConfig(), pretrain_epochs=0)
    items = select_items(store, task, cfg)
    student = build_student(cfg, list(task.labels), task_texts(task, items.texts), teacher_params, seed=seed)
    finetune(student, items, cfg, seed, retrieval=True)
    return student, items


class StudentJudged:
    """A reward term judged by the teacher's calibrated probabilities and the quick student's probabilities and keys
    on a batch's parsed samples; 0 if unparsed. Subclasses give `judge`."""

    def __init__(self, scorer, student, labels):
        self.scorer, self.student, self.labels = scorer, student, list(labels)

    def judge(self, teacher: np.ndarray, student: np.ndarray, keys: np.ndarray, intended: int) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, samples: Samples) -> np.ndarray:
        out = np.zeros(len(samples))
        rows, teacher = parsed_probs(self.scorer, samples)
        if len(rows):
            student, keys = self.student.encode([samples.texts[i] for i in rows])
            out[rows] = self.judge(teacher, student, keys, self.labels.index(samples.label))
        return out


class StudentGap(StudentJudged):
    """r = p_T(y | x) * (1 - p_S(y | x)), y the intended label: the teacher's calibrated probability (the step-1
    scorer) times the quick student's error on the sample; in [0, 1], 0 if unparsed.

    It pays a sample the teacher reads surely as its label and the student does not yet get: knowledge the student
    lacks (S3's synthesis steered by the small model's errors). The teacher factor is the validity gate: garbage,
    which the student also gets "wrong", pays nothing when the teacher does not read it as the intended label.
    """

    name = "student_gap"

    def from_probs(self, teacher: np.ndarray, student: np.ndarray, intended: int) -> np.ndarray:
        return teacher[:, intended] * (1.0 - student[:, intended])

    def judge(self, teacher, student, keys, intended):
        return self.from_probs(teacher, student, intended)


class KeyNovelty(StudentJudged):
    """r = p_T(y | x) * F(d(x)), with d(x) = 1 - max(max_{s in store} cos(k_x, k_s), max_{j != x} cos(k_x, k_j)) the
    distance, in the quick student's retrieval key space, to the nearest store entry (any label) or other parsed
    sample of the batch, and F(d) the share of store entries whose own nearest store neighbour is closer than d.
    In [0, 1]; 0 if unparsed, 0 for a copy of an entry.

    New knowledge is what the student would not already retrieve: distance in its own key space, not in MiniLM's.
    F makes it scale-free: the trained keys sit close together (a raw 1 - cos averaged 0.01 on the first SST-2 run,
    too small to steer PPO), so a sample pays by how far out it lies compared with the store's own spacing. Quality
    times novelty (DARLING: a product beats a sum), so a far-off sample the teacher does not read as the intended
    label pays nothing.
    """

    name = "key_novelty"

    def __init__(self, scorer, student, labels, store_keys: np.ndarray):
        super().__init__(scorer, student, labels)
        self.store_keys = unit(np.asarray(store_keys, dtype=np.float32))
        within = self.store_keys @ self.store_keys.T
        np.fill_diagonal(within, -np.inf)
        self.spacing = np.sort(1.0 - within.max(1)) if len(self.store_keys) > 1 else np.zeros(0)

    def distance(self, keys: np.ndarray) -> np.ndarray:
        keys = unit(np.asarray(keys, dtype=np.float32))
        nearest = (keys @ self.store_keys.T).max(1) if len(self.store_keys) else np.full(len(keys), -1.0)
        if len(keys) > 1:
            within = keys @ keys.T
            np.fill_diagonal(within, -np.inf)
            nearest = np.maximum(nearest, within.max(1))
        return np.clip(1.0 - nearest, 0.0, 2.0)

    def novelty(self, keys: np.ndarray) -> np.ndarray:
        if not len(self.spacing):
            return np.zeros(len(keys))
        return np.searchsorted(self.spacing, self.distance(keys), side="left") / len(self.spacing)

    def judge(self, teacher, student, keys, intended):
        return teacher[:, intended] * self.novelty(keys)


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-12)


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
                              "holds none (run `generate` first, or drop the `min_words_quantile` lever)")
        return cls(float(np.quantile([sample_words(f) for f in fields_list], quantile)))

    def __call__(self, samples: Samples) -> np.ndarray:
        return np.array([f is not None and sample_words(f) >= self.min_words for f in samples.fields], dtype=float)


class GatedReward(CompositeReward):
    """total = gate(sample) * sum_k w_k * r_k: a sample that fails a gate earns exactly 0 whatever the other terms
    say, and passing earns nothing by itself. A sample must pass all `gates`; "gate" logs passing all of them and,
    when there are several, each one's pass is logged under its own name too."""

    def __init__(self, terms: dict[str, tuple[float, Callable[[Samples], np.ndarray]]],
                 gates: dict[str, Callable[[Samples], np.ndarray]]):
        super().__init__(terms)
        self.gates = gates

    def __call__(self, samples: Samples) -> RewardBreakdown:
        out = super().__call__(samples)
        terms = out.terms
        passed = np.ones(len(samples), dtype=bool)
        for name, gate in self.gates.items():
            ok = np.asarray(gate(samples), dtype=float) > 0
            if len(self.gates) > 1:
                terms[name] = ok.astype(float)
            passed &= ok
        terms["gate"] = passed.astype(float)
        return RewardBreakdown(np.where(passed, out.total, 0.0), terms)


def make_reward(levers: dict, seed: int = 0):
    """A `make_reward` for `stage_ppo`: the product's terms with `levers` applied (the old `from_config`); `seed`
    is the quick student's, for the student-aware levers."""

    def build(config, task, scorer, embedder, store=None) -> CompositeReward:
        diversity = Diversity.from_store(embedder, store, task.labels) if store is not None else Diversity(embedder)
        label_term = (LabelMargin if levers["label_reward"] == "margin" else LabelConsistency)(scorer, task.labels)
        novelty = NgramNovelty(window=levers["novelty_window"], cap=levers["novelty_count_cap"])
        terms = {
            label_term.name: (config.weight_label, label_term),
            Diversity.name: (config.weight_diversity, diversity),
            NgramNovelty.name: (levers["weight_novelty"], novelty),
        }
        if levers["weight_student_gap"] or levers["weight_key_novelty"]:
            if store is None:
                raise ConfigError("the student-aware levers need the step-1 store to train their student on")
            student, items = quick_student(task, store, scorer.teacher.n_params, seed)
            terms[StudentGap.name] = (levers["weight_student_gap"], StudentGap(scorer, student, task.labels))
            _, keys = student.encode(items.texts)
            terms[KeyNovelty.name] = (levers["weight_key_novelty"], KeyNovelty(scorer, student, task.labels, keys))
        gates = {}
        if levers["validity_gate"]:
            gates[Validity.name] = Validity(task)
        else:
            terms[Validity.name] = (config.weight_validity, Validity(task))
        if levers["min_words_quantile"] > 0:
            step1 = store.list(source=STEP1_SOURCE) if store is not None else []
            gates[MinLength.name] = MinLength.from_reference([e.fields for e in step1], levers["min_words_quantile"])
        return GatedReward(terms, gates) if gates else CompositeReward(terms)

    return build


def min_words(reward) -> float | None:
    """The minimum-length gate's threshold in `reward`, if it has one."""
    gate = getattr(reward, "gates", {}).get(MinLength.name)
    return gate.min_words if gate is not None else None


# ---- trainer ----------------------------------------------------------------------------------------------------
def length_neutral_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor,
                           kl_coef: float) -> torch.Tensor:
    """`token_rewards` with row i's KL penalties scaled by mean(L) / L_i (L = sampled tokens per row): a sample pays
    kl_coef * mean(L) * (its mean per-token KL), so the penalty no longer grows with its own length, while the
    batch's penalties keep the scale of the summed KL."""
    lengths = mask.to(kl.dtype).sum(1)
    sampled = lengths > 0
    if sampled.any():
        kl = kl * (lengths[sampled].mean() / lengths.clamp(min=1)).unsqueeze(1)
    return token_rewards(scores, kl, mask, kl_coef)


def group_advantages(rewards: torch.Tensor, mask: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Group-relative advantages (GRPO, Shao et al. 2024; RLOO, Ahmadian et al. 2024), no value function.

    `rewards` are per-token rewards as `token_rewards` builds them, so row i's return R_i = the sum over its tokens
    (its score minus its KL penalty); every token of row i gets A_i = (R_i - mean_j R_j) / (std_j R_j + eps) over the
    rows of the batch, which all share one prompt.
    Rows without sampled tokens are left out of the mean and std; masked entries are 0.
    """
    mask = mask.to(rewards.dtype)
    returns = (rewards * mask).sum(1)
    sampled = mask.sum(1) > 0
    if sampled.sum() < 2:
        return torch.zeros_like(rewards)
    group = returns[sampled]
    normalised = (returns - group.mean()) / (group.std(unbiased=False) + eps)
    return normalised.unsqueeze(1) * mask * sampled.unsqueeze(1).to(mask.dtype)


class LeverTrainer(PPOTrainer):
    """`PPOTrainer` with the trainer levers of `levers` (`advantage`, `entropy_coef`, `kl_length_neutral`)."""

    levers: dict = LEVERS

    @classmethod
    def with_levers(cls, levers: dict) -> type["LeverTrainer"]:
        """A `trainer_class` for `stage_ppo`."""
        return type(cls.__name__, (cls,), {"levers": dict(levers)})

    def _token_rewards(self, scores, kl, mask, kl_coef):
        if self.levers["kl_length_neutral"]:
            return length_neutral_rewards(scores, kl, mask, kl_coef)
        return super()._token_rewards(scores, kl, mask, kl_coef)

    def _advantages(self, rewards, values, mask):
        if self.levers["advantage"] == "group":
            # Already standardised per batch; whitening over tokens again would weight rows by their length. The
            # returns are unused: there is no value loss.
            return group_advantages(rewards, mask), torch.zeros_like(rewards)
        return super()._advantages(rewards, values, mask)

    def _loss(self, policy: PolicyLoss, hidden, logits, old_values, returns, mask):
        if self.levers["advantage"] == "group":
            loss, value_loss, value_clip = policy.loss, torch.zeros(()), 0.0
        else:
            loss, value_loss, value_clip = super()._loss(policy, hidden, logits, old_values, returns, mask)
        if self.levers["entropy_coef"]:
            loss = loss - self.levers["entropy_coef"] * token_entropy(logits, mask)
        return loss, value_loss, value_clip
