"""The PPO loop over a soft prompt: rollouts, recomputed log-probs, GAE, clipped updates, checkpoints, resume.

Only the soft prompt and a small value head are trained; the teacher is frozen. One update:
1. sample `rollout_batch_size` continuations of one prompt (prompts take turns) from the current soft prompt;
2. score them with the reward function (one number per sample, plus named terms for logging);
3. recompute, without grad, the per-token log-probs and values under the current prompt and the log-probs under
   the frozen reference (step-1) prompt, by one forward over [soft prompt; prompt tokens; sampled tokens];
4. per-token rewards = -beta * (logp - logp_ref) + the score at the last token; GAE; whitened advantages;
5. `epochs` passes of minibatches: the same forward with grad, clipped surrogate + clipped value loss, step;
6. update the KL coefficient from the observed KL.
Rollouts sample at `temperature` with no top-p, and log-probs use the same tempered softmax, so the data are
on-policy for the policy whose ratios are clipped. Steps 4 and 5 are methods (`_token_rewards`, `_advantages`,
`_loss`) so that a variant can replace one: bench/ppo_levers.py's ablations do.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..config import PPOConfig
from ..errors import RunError
from .core import (
    PolicyLoss,
    ValueHead,
    clipped_policy_loss,
    clipped_value_loss,
    compute_gae,
    make_kl_controller,
    masked_whiten,
    token_entropy,
    token_rewards,
)
from .rewards import RewardBreakdown
from ..teacher.sampling import SampledBatch, prompt_embeddings, sample

CHECKPOINT_FILE = "checkpoint.pt"

# PPO's usual knobs, fixed: none was a setting a user of the studio needed.
VALUE_LEARNING_RATE = 0.01  # design choice: high, the value head starts at 0 and runs are short
VALUE_CLIP_RANGE = 0.2
"""Clip of the value update around the rollout's values."""
GAMMA = 1.0  # design choice: no discount, the reward is a judgement of the whole sample
LAM = 0.95
"""GAE lambda."""
MAX_GRAD_NORM = 1.0
"""Gradient norm clip (soft prompt and value head clipped separately)."""

RewardFn = Callable[[str, SampledBatch], RewardBreakdown]
"""reward_fn(prompt key, sampled batch) -> one score per row (plus named terms)."""


@dataclass
class PromptSpec:
    """A prompt the policy writes continuations of: `key` is passed to the reward function (the label)."""

    key: str
    ids: list[int]


@dataclass
class UpdateStats:
    """What one PPO update did; passed to the per-update callback and kept in the checkpoint."""

    update: int
    """1-based index of this update."""
    key: str
    reward: float
    """Mean score of the rollout batch (weighted reward terms, before the KL penalty)."""
    reward_terms: dict[str, float]
    kl: float
    """Mean over samples of sum over tokens of (logp - logp_ref), in nats."""
    kl_coef: float
    """KL coefficient used in this update (the controller updates it afterwards)."""
    policy_loss: float
    value_loss: float
    clip_fraction: float
    value_clip_fraction: float
    approx_kl: float
    """Mean over minibatches of 0.5 * (log ratio)^2 to the rollout policy."""
    entropy: float
    """Mean per-token entropy of the rollout policy, in nats."""
    grad_norm: float
    """Mean soft-prompt gradient norm before clipping."""
    tokens: float
    """Mean sampled tokens per sample."""
    stopped: float
    """Share of samples that ended at a stop token/text rather than the budget."""
    rollout_seconds: float
    seconds: float
    samples_per_second: float

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class PPOReport:
    history: list[UpdateStats] = field(default_factory=list)
    """Stats of every update so far, including those done before a resume."""
    cancelled: bool = False
    resumed_from: int = 0
    """Updates already done when this call started (0 for a fresh start)."""
    seconds: float = 0.0


class PPOTrainer:
    """PPO on a soft prompt prepended to a frozen causal LM."""

    def __init__(
        self,
        model,
        tokenizer,
        soft_prompt: torch.Tensor,
        prompts: list[PromptSpec],
        reward_fn: RewardFn,
        config: PPOConfig,
        *,
        max_new_tokens: int,
        seed: int = 13,
        ref_prompt: torch.Tensor | None = None,
        stop_ids: set[int] | None = None,
        stop_text: str | None = "\n\n",
    ):
        """`soft_prompt` (virtual tokens, hidden) is the starting point and, unless `ref_prompt` is given, also
        the frozen reference the KL penalty measures against."""
        if not prompts:
            raise ValueError("PPO needs at least one prompt")
        self.model, self.tokenizer, self.config = model, tokenizer, config
        # The teacher must stay frozen: grads would otherwise accumulate in it (it is never stepped either way).
        model.requires_grad_(False)
        model.eval()
        self.device = model.get_input_embeddings().weight.device
        self.prompts, self.reward_fn = list(prompts), reward_fn
        self.max_new_tokens, self.seed = max_new_tokens, seed
        self.stop_ids, self.stop_text = stop_ids, stop_text
        reference = soft_prompt if ref_prompt is None else ref_prompt
        self.ref_prompt = reference.detach().to(self.device, torch.float32).clone()
        self.prompt = nn.Parameter(soft_prompt.detach().to(self.device, torch.float32).clone())
        with torch.random.fork_rng(devices=[]):
            # Seeded init: two trainers with the same seed are identical, which resume relies on.
            torch.manual_seed(seed)
            self.value_head = ValueHead(self.prompt.shape[1]).to(self.device)
        self.optimizer = torch.optim.Adam([
            {"params": [self.prompt], "lr": config.learning_rate},
            {"params": list(self.value_head.parameters()), "lr": VALUE_LEARNING_RATE},
        ])
        self.kl_controller = make_kl_controller(config)
        self.updates_done = 0
        self.history: list[UpdateStats] = []

    @property
    def soft_prompt(self) -> torch.Tensor:
        """The current soft prompt (a detached copy)."""
        return self.prompt.detach().clone()

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [self.prompt, *self.value_head.parameters()]

    # ---- forward ---------------------------------------------------------------------------------------------
    def _forward(self, prompt: torch.Tensor, prompt_ids: list[int], tokens: torch.Tensor):
        """Tempered log-probs of `tokens` (batch, steps) after [prompt; prompt_ids], the last hidden state that
        predicted each token, and the logits (only the sampled steps are projected to the vocabulary).

        The prefix is the same for every row, so it is run once and its keys and values are repeated over the
        batch: the same numbers as one forward over [prefix; tokens] per row (causal attention: the prefix never
        sees the tokens), and the prompt's gradient is still the sum over rows. On SST-2 at the defaults (a
        39-token prefix) this made the rollout forward 1.28x and a minibatch's forward + backward 1.19x faster
        (`bench/shared_prefix.py`)."""
        batch, steps = tokens.shape
        prefix = prompt_embeddings(self.model, prompt, prompt_ids, 1)
        head = self.model(inputs_embeds=prefix, output_hidden_states=True, use_cache=True, logits_to_keep=1)
        cache = head.past_key_values
        cache.batch_repeat_interleave(batch)
        # The prefix's last position predicts the first token; tokens[:, :-1] predict the rest.
        logits = head.logits[:, -1:].expand(batch, -1, -1)
        hidden = head.hidden_states[-1][:, -1:].expand(batch, -1, -1)
        if steps > 1:
            body_embeds = self.model.get_input_embeddings()(tokens[:, :-1]).to(prefix.dtype)
            body = self.model(inputs_embeds=body_embeds, past_key_values=cache, output_hidden_states=True,
                              use_cache=True)
            logits = torch.cat([logits, body.logits], dim=1)
            hidden = torch.cat([hidden, body.hidden_states[-1]], dim=1)
        logits = logits.float() / self.config.temperature
        picked = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
        logprobs = picked - torch.logsumexp(logits, dim=-1)
        return logprobs, hidden, logits

    def _seed(self, update: int, stream: int) -> int:
        # Each update's randomness depends only on (seed, update), so a resumed run replays the same rollouts.
        return (self.seed * 1_000_003 + update) * 4 + stream

    # ---- the parts of an update a variant may replace ---------------------------------------------------------
    def _token_rewards(self, scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor,
                       kl_coef: float) -> torch.Tensor:
        """Per-token rewards of a rollout batch: its scores at the last tokens minus the KL penalty."""
        return token_rewards(scores, kl, mask, kl_coef)

    def _advantages(self, rewards: torch.Tensor, values: torch.Tensor,
                    mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(advantages, returns) of a rollout batch: GAE, the advantages whitened over the batch's tokens."""
        advantages, returns = compute_gae(rewards, values, mask, GAMMA, LAM)
        return masked_whiten(advantages, mask), returns

    def _loss(self, policy: PolicyLoss, hidden: torch.Tensor, logits: torch.Tensor, old_values: torch.Tensor,
              returns: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(loss to minimise, value loss, value clip fraction) of one minibatch."""
        values = self.value_head(hidden.detach())
        value_loss, value_clip = clipped_value_loss(values, old_values, returns, mask, VALUE_CLIP_RANGE)
        # No value coefficient: the value head shares no parameters with the prompt, so a coefficient would only
        # rescale its gradient, which Adam undoes.
        return policy.loss + value_loss, value_loss, value_clip

    # ---- one update ------------------------------------------------------------------------------------------
    def step(self) -> UpdateStats:
        """Run one PPO update (rollout + optimisation) and return its stats."""
        cfg = self.config
        started = time.perf_counter()
        spec = self.prompts[self.updates_done % len(self.prompts)]
        size = cfg.rollout_batch_size
        generator = torch.Generator(device=self.device).manual_seed(self._seed(self.updates_done, 0))
        with torch.no_grad():
            prefix = prompt_embeddings(self.model, self.prompt.detach(), spec.ids, size)
        batch = sample(self.model, self.tokenizer, prefix, max_new_tokens=self.max_new_tokens,
                       temperature=cfg.temperature, top_p=1.0, stop_ids=self.stop_ids, stop_text=self.stop_text,
                       generator=generator)
        reward = self.reward_fn(spec.key, batch)
        rollout_seconds = time.perf_counter() - started

        tokens, mask = batch.tokens, batch.mask.float()
        with torch.no_grad():
            old_logprobs, hidden, logits = self._forward(self.prompt, spec.ids, tokens)
            old_values = self.value_head(hidden)
            entropy = token_entropy(logits, mask)
            del logits
            if torch.equal(self.prompt.detach(), self.ref_prompt):
                ref_logprobs = old_logprobs
            else:
                ref_logprobs = self._forward(self.ref_prompt, spec.ids, tokens)[0]
            kl = (old_logprobs - ref_logprobs) * mask
            kl_coef = self.kl_controller.value
            scores = torch.as_tensor(reward.total, dtype=torch.float32, device=self.device)
            rewards = self._token_rewards(scores, kl, mask, kl_coef)
            advantages, returns = self._advantages(rewards, old_values, mask)

        shuffle = torch.Generator().manual_seed(self._seed(self.updates_done, 1))
        sums = {"policy_loss": 0.0, "value_loss": 0.0, "clip_fraction": 0.0, "value_clip_fraction": 0.0,
                "approx_kl": 0.0, "grad_norm": 0.0}
        steps = 0
        for _ in range(cfg.epochs):
            order = torch.randperm(size, generator=shuffle)
            for start in range(0, size, cfg.minibatch_size):
                rows = order[start : start + cfg.minibatch_size].to(self.device)
                logprobs, hidden, step_logits = self._forward(self.prompt, spec.ids, tokens[rows])
                policy = clipped_policy_loss(logprobs, old_logprobs[rows], advantages[rows], mask[rows],
                                             cfg.clip_range)
                loss, value_loss, value_clip = self._loss(policy, hidden, step_logits, old_values[rows],
                                                          returns[rows], mask[rows])
                del step_logits
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = nn.utils.clip_grad_norm_([self.prompt], MAX_GRAD_NORM)
                nn.utils.clip_grad_norm_(self.value_head.parameters(), MAX_GRAD_NORM)
                self.optimizer.step()
                for key, value in (("policy_loss", policy.loss.item()), ("value_loss", value_loss.item()),
                                   ("clip_fraction", policy.clip_fraction), ("value_clip_fraction", value_clip),
                                   ("approx_kl", policy.approx_kl), ("grad_norm", float(grad_norm))):
                    sums[key] += value
                steps += 1

        mean_kl = float(kl.sum(1).mean())
        self.kl_controller.update(mean_kl, size)
        self.updates_done += 1
        seconds = time.perf_counter() - started
        stats = UpdateStats(
            update=self.updates_done, key=spec.key, reward=float(scores.mean()), reward_terms=reward.means(),
            kl=mean_kl, kl_coef=kl_coef, **{k: v / steps for k, v in sums.items()}, entropy=float(entropy),
            tokens=float(mask.sum(1).mean()), stopped=float(batch.stopped.float().mean()),
            rollout_seconds=rollout_seconds, seconds=seconds, samples_per_second=size / seconds,
        )
        self.history.append(stats)
        return stats

    # ---- loop ------------------------------------------------------------------------------------------------
    def train(
        self,
        updates: int | None = None,
        on_update: Callable[[UpdateStats], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
    ) -> PPOReport:
        """Run updates until `updates` (default `config.updates`) are done in total, counting resumed ones.

        `should_stop()` is checked between updates; a cancel keeps every finished update. With a
        `checkpoint_dir`, a checkpoint is written every `checkpoint_every` updates and when the loop ends.
        """
        total = self.config.updates if updates is None else updates
        report = PPOReport(resumed_from=self.updates_done)
        started = time.perf_counter()
        saved_at = None
        while self.updates_done < total:
            if should_stop is not None and should_stop():
                report.cancelled = True
                break
            stats = self.step()
            if on_update is not None:
                on_update(stats)
            if checkpoint_dir and self.updates_done % self.config.checkpoint_every == 0:
                self.save_checkpoint(checkpoint_dir)
                saved_at = self.updates_done
        if checkpoint_dir and saved_at != self.updates_done:
            self.save_checkpoint(checkpoint_dir)
        report.history = list(self.history)
        report.seconds = time.perf_counter() - started
        return report

    # ---- checkpoints -----------------------------------------------------------------------------------------
    def save_checkpoint(self, directory: str | os.PathLike) -> Path:
        """Write prompt, reference, value head, optimizer, KL coefficient and history (atomically)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {
            "updates_done": self.updates_done,
            "prompt": self.prompt.detach().cpu(),
            "ref_prompt": self.ref_prompt.cpu(),
            "value_head": self.value_head.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "kl_coef": self.kl_controller.value,
            "history": [s.as_dict() for s in self.history],
        }
        path = directory / CHECKPOINT_FILE
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(path)
        return path

    def load_checkpoint(self, directory: str | os.PathLike) -> bool:
        """Resume from `directory` if it holds a checkpoint; False when there is none.

        Raises RunError when the checkpoint was trained from another reference prompt (a re-run step 1).
        """
        path = Path(directory) / CHECKPOINT_FILE
        if not path.is_file():
            return False
        state = torch.load(path, map_location=self.device, weights_only=True)
        if state["ref_prompt"].shape != self.ref_prompt.shape or not torch.equal(state["ref_prompt"], self.ref_prompt):
            raise RunError(
                f"the PPO checkpoint in {Path(directory).name} started from a different step-1 prompt; "
                "delete it or turn resume off to start over"
            )
        with torch.no_grad():
            self.prompt.copy_(state["prompt"])
        self.value_head.load_state_dict(state["value_head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.kl_controller.value = float(state["kl_coef"])
        self.updates_done = int(state["updates_done"])
        self.history = [UpdateStats(**s) for s in state["history"]]
        return True
