"""PPO core as pure tensor functions: GAE, the clipped surrogate, the clipped value loss, KL controllers, value head.

Shapes are (batch, steps) over sampled tokens; `mask` is 1 where a token belongs to its sample (a right-padded
prefix of each row). The rollout/optimisation loop lives in `ppo_loop`.

The masked helpers are re-implemented here (a few lines) instead of imported from TRL: TRL keeps them in its
experimental PPO module, whose import takes seconds and warns about unstable APIs.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import PPOConfig


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean over the entries where `mask` is 1 (over `dim`, or over everything)."""
    mask = mask.to(values.dtype)
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp_min(1.0)
    return (values * mask).sum(dim) / mask.sum(dim).clamp_min(1.0)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(values - mean) / std over the masked entries (population variance); masked-out entries become 0."""
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    return (values - mean) * torch.rsqrt(var + eps) * mask.to(values.dtype)


def token_entropy(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the masked positions of the entropy of softmax(logits), in nats: logsumexp(l) - sum softmax(l) * l."""
    return masked_mean(torch.logsumexp(logits, -1) - (logits.softmax(-1) * logits).sum(-1), mask)


def token_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """Per-token rewards: -kl_coef * kl at every sampled token, plus the sample's score at its last token.

    This is the usual RLHF recipe (Ziegler et al. 2019, Stiennon et al. 2020): the KL to the reference policy is a
    per-token penalty inside the reward, so GAE spreads the score and the penalty over the sequence.
    """
    mask = mask.to(kl.dtype)
    rewards = -kl_coef * kl * mask
    lengths = mask.sum(1).long()
    rows = torch.nonzero(lengths > 0).flatten()
    rewards[rows, lengths[rows] - 1] += scores.to(rewards.dtype)[rows]
    return rewards


def compute_gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation; returns (advantages, returns = advantages + values), zero where masked.

    delta_t = r_t + gamma * V_{t+1} - V_t and A_t = delta_t + gamma * lam * A_{t+1}, where V and A past a row's
    last sampled token count as 0 (the episode ends there: values at padding are never bootstrapped from).
    """
    mask = mask.to(values.dtype)
    values = values * mask
    steps = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(steps)):
        next_value = values[:, t + 1] if t + 1 < steps else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * mask[:, t]
        advantages[:, t] = running
    return advantages, (advantages + values) * mask


@dataclass
class PolicyLoss:
    loss: torch.Tensor
    clip_fraction: float
    """Share of tokens where the clipped term was the binding (larger) one."""
    approx_kl: float
    """0.5 * mean((log ratio)^2): how far this step moved the policy from the rollout policy."""


def clipped_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float,
) -> PolicyLoss:
    """PPO's clipped surrogate (Schulman et al. 2017) as a loss to minimise, averaged over masked tokens:

    mean(max(-A * r, -A * clip(r, 1 - eps, 1 + eps))) with r = exp(logprobs - old_logprobs).
    """
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        clip_fraction = float(masked_mean((clipped > unclipped).to(logprobs.dtype), mask))
        approx_kl = float(masked_mean(0.5 * log_ratio**2, mask))
    return PolicyLoss(loss, clip_fraction, approx_kl)


def clipped_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float | None,
) -> tuple[torch.Tensor, float]:
    """0.5 * mean(max((V - R)^2, (V_clip - R)^2)) with V_clip = old + clip(V - old, -c, c); plain MSE when
    `clip_range` is 0 or None. Returns (loss, share of tokens where the clipped error was the larger one)."""
    error = (values - returns) ** 2
    if not clip_range:
        return 0.5 * masked_mean(error, mask), 0.0
    clipped_values = old_values + torch.clamp(values - old_values, -clip_range, clip_range)
    clipped_error = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(error, clipped_error), mask)
    with torch.no_grad():
        fraction = float(masked_mean((clipped_error > error).to(values.dtype), mask))
    return loss, fraction


KL_HORIZON = 400  # design choice: not the usual 10000, since a run here sees a few hundred samples, not millions
"""Samples over which the adaptive controller moves the coefficient by up to +-20%."""


class AdaptiveKLController:
    """Ziegler et al. (2019): steer the KL coefficient so the observed KL tracks a target.

    error = clip(current_kl / target - 1, -0.2, 0.2); value *= 1 + error * n_samples / horizon.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        self.value, self.target, self.horizon = float(init_kl_coef), float(target), int(horizon)

    def update(self, current_kl: float, n_samples: int) -> float:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_samples / self.horizon
        return self.value


def make_kl_controller(config: PPOConfig) -> AdaptiveKLController:
    return AdaptiveKLController(config.kl_coef, config.kl_target, KL_HORIZON)


class ValueHead(nn.Module):
    """V(state) from the frozen teacher's last hidden state (detached by the caller): norm -> 64 -> tanh -> 1.

    The hidden states are detached, so the value loss trains only this head and never pulls on the soft prompt.
    """

    # design choice: a LayerNorm first, since a teacher's last hidden states have large and uneven scales; the
    # zero-initialised output makes V start at 0, so the first advantages are the plain returns.
    def __init__(self, hidden_size: int, width: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(hidden_size), nn.Linear(hidden_size, width), nn.Tanh(),
                                 nn.Linear(width, 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.net(hidden.float()).squeeze(-1)
