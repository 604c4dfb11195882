import math

import numpy as np
import pytest
import torch

from retrikt.config import PPOConfig
from bench.ppo_levers import LEVERS, LeverTrainer, group_advantages, length_neutral_rewards
from retrikt.ppo.core import (
    AdaptiveKLController,
    clipped_policy_loss,
    clipped_value_loss,
    compute_gae,
    masked_whiten,
    token_rewards,
)
from retrikt.ppo.trainer import PPOTrainer, PromptSpec
from retrikt.ppo.rewards import RewardBreakdown
from retrikt.teacher.sampling import prompt_embeddings

T = torch.tensor


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # The loop's small matmuls gain nothing from a second thread, and the machine is shared.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---- pure functions against hand-computed values ----------------------------------------------------------------

@pytest.mark.parametrize("rewards,values,mask,gamma,lam,advantages", [
    # gamma = lam = 1: every advantage is the final reward minus the value at that step (V_{t+1} telescopes).
    ([[0, 0, 1]], [[0.5, 0.5, 0.5]], [[1, 1, 1]], 1.0, 1.0, [[0.5, 0.5, 0.5]]),
    # lam = 0.5: deltas (0, 0, 0.5) -> A2 = 0.5, A1 = 0.25, A0 = 0.125.
    ([[0, 0, 1]], [[0.5, 0.5, 0.5]], [[1, 1, 1]], 1.0, 0.5, [[0.125, 0.25, 0.5]]),
    # gamma = 0.9, lam = 1, V = 0: A_t = 0.9^(2-t) * 1.
    ([[0, 0, 1]], [[0, 0, 0]], [[1, 1, 1]], 0.9, 1.0, [[0.81, 0.9, 1.0]]),
    # Padding after the last token: its value (9) is never bootstrapped from and its advantage is 0.
    # delta1 = 1 - 0.5 = 0.5, delta0 = 0 + 0.5 - 0.5 = 0 -> A0 = 0.95 * 0.5.
    ([[0, 1, 0]], [[0.5, 0.5, 9.0]], [[1, 1, 0]], 1.0, 0.95, [[0.475, 0.5, 0.0]]),
    # Two rows of different lengths with per-token rewards: row 2, gamma 1, lam 1 -> A_t = sum r_{>=t} - V_t.
    ([[1, 0, 0], [0.5, -0.2, 2.0]], [[0.2, 0, 0], [1.0, 0.5, 0.0]], [[1, 0, 0], [1, 1, 1]], 1.0, 1.0,
     [[0.8, 0, 0], [1.3, 1.3, 2.0]]),
])
def test_compute_gae(rewards, values, mask, gamma, lam, advantages):
    adv, returns = compute_gae(T(rewards, dtype=torch.float32), T(values, dtype=torch.float32),
                               T(mask, dtype=torch.float32), gamma, lam)
    assert torch.allclose(adv, T(advantages, dtype=torch.float32), atol=1e-6)
    expected_returns = (T(advantages) + T(values)) * T(mask)
    assert torch.allclose(returns, expected_returns.float(), atol=1e-6)


def test_token_rewards_put_score_on_last_token_and_kl_everywhere():
    kl = T([[0.1, 0.2, 0.3], [0.5, 0.0, 7.0]])
    mask = T([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    out = token_rewards(T([2.0, -1.0]), kl, mask, kl_coef=0.5)
    assert torch.allclose(out, T([[-0.05, -0.1, -0.15 + 2.0], [-0.25 - 1.0, 0.0, 0.0]]))


@pytest.mark.parametrize("kl,mask,expected_penalty", [
    # two samples with the same per-token KL 0.2: summed, the 4-token one pays 4x the 1-token one; length-neutral,
    # both pay mean(L) * 0.2 = 2.5 * 0.2 = 0.5 (times kl_coef 0.5)
    ([[0.2, 0.2, 0.2, 0.2], [0.2, 0.0, 0.0, 0.0]], [[1, 1, 1, 1], [1, 0, 0, 0]], [0.25, 0.25]),
    # equal lengths: nothing changes
    ([[0.1, 0.3], [0.5, 0.5]], [[1, 1], [1, 1]], [0.2, 0.5]),
    # an empty row (no sampled token) takes no penalty and does not count in the mean length
    ([[0.4, 0.4], [0.0, 0.0]], [[1, 1], [0, 0]], [0.4, 0.0]),
])
def test_length_neutral_kl_penalty_does_not_grow_with_length(kl, mask, expected_penalty):
    kl, mask = T(kl), T(mask)
    out = length_neutral_rewards(T([0.0, 0.0]), kl, mask, kl_coef=0.5)
    assert torch.allclose(-out.sum(1), T(expected_penalty))
    assert torch.equal(out[mask == 0], torch.zeros(int((mask == 0).sum())))
    summed = token_rewards(T([0.0, 0.0]), kl, mask, kl_coef=0.5)
    assert torch.allclose(summed, -0.5 * kl * mask)


# (advantage, ratio) -> loss, clip fraction, with eps = 0.2; loss = max(-A r, -A clip(r, 0.8, 1.2)).
@pytest.mark.parametrize("advantage,ratio,loss,clipped", [
    (1.0, 1.5, -1.2, 1.0),   # good action pushed too far up: clipped, no more gain
    (1.0, 0.5, -0.5, 0.0),   # good action made less likely: unclipped, the full penalty stays
    (-1.0, 1.5, 1.5, 0.0),   # bad action made more likely: unclipped
    (-1.0, 0.5, 0.8, 1.0),   # bad action pushed far down: clipped
    (2.0, 1.1, -2.2, 0.0),   # inside the trust region
])
def test_clipped_policy_loss(advantage, ratio, loss, clipped):
    logprobs = T([[math.log(ratio), 5.0]], requires_grad=True)
    out = clipped_policy_loss(logprobs, T([[0.0, 0.0]]), T([[advantage, 100.0]]), T([[1.0, 0.0]]), 0.2)
    assert out.loss.item() == pytest.approx(loss, abs=1e-6)
    assert out.clip_fraction == clipped
    assert out.approx_kl == pytest.approx(0.5 * math.log(ratio) ** 2, abs=1e-6)
    out.loss.backward()
    # Clipped tokens give no gradient; unclipped ones give -A * r; the masked token never does.
    assert logprobs.grad[0, 0].item() == pytest.approx(0.0 if clipped else -advantage * ratio, abs=1e-6)
    assert logprobs.grad[0, 1].item() == 0.0


@pytest.mark.parametrize("value,old,ret,clip,loss,fraction", [
    (1.0, 0.5, 0.0, 0.2, 0.5, 0.0),     # errors 1.0 (raw) vs 0.49 (clipped to 0.7): raw is larger
    (1.0, 0.5, 1.0, 0.2, 0.045, 1.0),   # raw error 0, clipped value 0.7 has error 0.09: clipped binds
    (1.0, 0.5, 1.0, 0.0, 0.0, 0.0),     # clipping off: plain 0.5 * MSE
    (0.6, 0.5, 1.0, 0.2, 0.08, 0.0),    # inside the clip range both agree: 0.5 * 0.16
])
def test_clipped_value_loss(value, old, ret, clip, loss, fraction):
    out, frac = clipped_value_loss(T([[value]]), T([[old]]), T([[ret]]), T([[1.0]]), clip)
    assert out.item() == pytest.approx(loss, abs=1e-6)
    assert frac == fraction


@pytest.mark.parametrize("kls,expected", [
    ([4.0], [0.102]),               # error clipped to +0.2: 0.1 * (1 + 0.2 * 10 / 100)
    ([1.0], [0.098]),               # error clipped to -0.2
    ([2.2], [0.101]),               # error 0.1
    ([2.0, 4.0], [0.1, 0.102]),     # on target: unchanged
    ([3.0, 0.0], [0.102, 0.102 * 0.98]),  # error 0.5 clipped to 0.2, then -1 clipped to -0.2
])
def test_adaptive_kl_controller(kls, expected):
    controller = AdaptiveKLController(0.1, target=2.0, horizon=100)
    values = [controller.update(kl, 10) for kl in kls]
    assert values == pytest.approx(expected, abs=1e-12)


def test_masked_whiten():
    values = T([[1.0, 2.0, 3.0], [4.0, 100.0, -50.0]])
    mask = T([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    out = masked_whiten(values, mask)
    kept = out[mask.bool()]
    assert kept.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert kept.pow(2).mean().item() == pytest.approx(1.0, abs=1e-5)
    assert out[1, 1:].tolist() == [0.0, 0.0]
    assert torch.allclose(kept, (T([1.0, 2.0, 3.0, 4.0]) - 2.5) / math.sqrt(1.25), atol=1e-5)


@pytest.mark.parametrize("rewards,mask,expected", [
    # Returns 1 and 3: mean 2, population std 1 -> -1 and +1 on every sampled token, 0 on padding.
    ([[0.0, 1.0], [1.0, 2.0]], [[0, 1], [1, 1]], [[0.0, -1.0], [1.0, 1.0]]),
    # The KL penalty is part of the return: -0.5 + 2 = 1.5 vs 0.5 -> +1 / -1, whatever the split over tokens.
    ([[-0.5, 2.0], [0.5, 0.0]], [[1, 1], [1, 0]], [[1.0, 1.0], [-1.0, 0.0]]),
    # A row with no sampled tokens stays out of the group and gets 0; the other two standardise among themselves.
    ([[9.0, 9.0], [0.0, 4.0], [2.0, 0.0]], [[0, 0], [1, 1], [1, 0]], [[0, 0], [1.0, 1.0], [-1.0, 0.0]]),
    # Equal returns carry no signal: every advantage is 0 (no division by a zero std).
    ([[1.0], [1.0], [1.0]], [[1], [1], [1]], [[0.0], [0.0], [0.0]]),
    # One sampled row alone has no group to compare with.
    ([[3.0], [5.0]], [[1], [0]], [[0.0], [0.0]]),
])
def test_group_advantages(rewards, mask, expected):
    out = group_advantages(T(rewards), T(mask, dtype=torch.float32))
    assert torch.allclose(out, T(expected), atol=1e-4)


# ---- the loop on a tiny random teacher with a toy reward ------------------------------------------------------

PROMPT = "Label: positive\nReview:"


def _toy(tiny_teacher, levers=None, **overrides):
    """Reward = share of sampled tokens in a fixed set: the 20% of the vocabulary whose embedding points most
    along a random direction (so a soft prompt that tilts the last hidden state that way can earn it). `levers`:
    bench/ppo_levers.py's trainer levers to train with."""
    embeddings = tiny_teacher.model.get_input_embeddings().weight.detach()
    direction = torch.randn(embeddings.shape[1], generator=torch.Generator().manual_seed(7))
    scores = embeddings @ direction
    token_set = torch.nonzero(scores > scores.quantile(0.8)).flatten()

    def reward_fn(key, batch):
        hit = torch.isin(batch.tokens, token_set) & batch.mask
        share = (hit.sum(1) / batch.mask.sum(1)).double().numpy()
        return RewardBreakdown(share, {"in_set": share})

    ids = tiny_teacher.encode(PROMPT)
    soft = embeddings[torch.tensor((ids * 2)[:4])].clone()
    # design of the toy: 2 new tokens keep the credit assignment short enough for a few dozen updates.
    config = PPOConfig(**{"updates": 30, "rollout_batch_size": 16, "minibatch_size": 8, "epochs": 2,
                          "learning_rate": 0.01, "kl_coef": 0.05, "kl_target": 1.0, "checkpoint_every": 2,
                          **overrides})
    trainer_class = LeverTrainer.with_levers({**LEVERS, **levers}) if levers else PPOTrainer
    trainer = trainer_class(tiny_teacher.model, tiny_teacher.tokenizer, soft, [PromptSpec("toy", ids)], reward_fn,
                            config, max_new_tokens=2, seed=1, stop_ids=set(), stop_text=None)
    trainer.kl_controller.horizon = 100  # a toy run sees a few hundred samples: let the coefficient move in them
    return trainer


def test_toy_reward_rises_only_prompt_and_value_head_move_kl_bounded(tiny_teacher):
    trainer = _toy(tiny_teacher)
    frozen = {name: p.detach().clone() for name, p in tiny_teacher.model.named_parameters()}
    start_prompt = trainer.soft_prompt
    start_head = [p.detach().clone() for p in trainer.value_head.parameters()]
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert optimised == {id(p) for p in trainer.trainable_parameters()}

    def check_frozen(stats):
        for name, param in tiny_teacher.model.named_parameters():
            assert torch.equal(param, frozen[name]), f"teacher weight {name} changed at update {stats.update}"
            assert param.grad is None and not param.requires_grad

    report = trainer.train(on_update=check_frozen)
    rewards = [s.reward for s in report.history]
    assert len(rewards) == 30
    first, last = np.mean(rewards[:5]), np.mean(rewards[-5:])
    assert last > first + 0.2, f"mean reward did not rise clearly: {first:.3f} -> {last:.3f}"
    assert not torch.equal(trainer.soft_prompt, start_prompt)
    assert any(not torch.equal(p, q) for p, q in zip(trainer.value_head.parameters(), start_head))
    kls = [s.kl for s in report.history]
    assert max(kls) < 12.0, f"KL to the reference ran away: {max(kls):.2f}"
    # The adaptive controller reacts: after an update above target the coefficient grows, below it shrinks.
    for before, after in zip(report.history, report.history[1:]):
        assert (after.kl_coef > before.kl_coef) == (before.kl > 1.0)
    assert all(0.0 <= s.clip_fraction <= 1.0 and s.samples_per_second > 0 for s in report.history)


def test_first_update_starts_on_policy(tiny_teacher):
    # The recomputed rollout log-probs equal the grad forward's at the first minibatch: ratio 1, no clipping,
    # and KL to the reference is exactly 0 before the prompt has moved.
    trainer = _toy(tiny_teacher, updates=1, epochs=1, minibatch_size=16)
    stats = trainer.step()
    assert stats.kl == 0.0 and stats.clip_fraction == 0.0 and stats.approx_kl == pytest.approx(0.0, abs=1e-10)


def test_checkpoint_resume_round_trip(tiny_teacher, tmp_path):
    settings = {"updates": 4, "rollout_batch_size": 4, "minibatch_size": 2}
    straight = _toy(tiny_teacher, **settings)
    straight.train()

    first = _toy(tiny_teacher, **settings)
    first.train(updates=2, checkpoint_dir=tmp_path)
    resumed = _toy(tiny_teacher, **settings)
    assert resumed.load_checkpoint(tmp_path) and resumed.updates_done == 2
    report = resumed.train(checkpoint_dir=tmp_path)
    assert report.resumed_from == 2 and [s.update for s in report.history] == [1, 2, 3, 4]
    assert torch.allclose(resumed.soft_prompt, straight.soft_prompt, atol=1e-6)
    for p, q in zip(resumed.value_head.parameters(), straight.value_head.parameters()):
        assert torch.allclose(p, q, atol=1e-6)
    assert resumed.kl_controller.value == pytest.approx(straight.kl_controller.value)
    assert [s.reward for s in report.history] == [s.reward for s in straight.history]

    # A checkpoint from another reference prompt is refused rather than silently mixed in.
    other = _toy(tiny_teacher, **settings)
    other.ref_prompt += 1.0
    with pytest.raises(ValueError, match="different step-1 prompt"):
        other.load_checkpoint(tmp_path)
    assert not _toy(tiny_teacher).load_checkpoint(tmp_path / "empty")


def test_cancel_stops_between_updates_and_keeps_a_checkpoint(tiny_teacher, tmp_path):
    trainer = _toy(tiny_teacher, updates=10, rollout_batch_size=4, minibatch_size=4, checkpoint_every=100)
    seen = []
    report = trainer.train(on_update=lambda s: seen.append(s.update), should_stop=lambda: len(seen) >= 2,
                           checkpoint_dir=tmp_path)
    assert report.cancelled and seen == [1, 2] and trainer.updates_done == 2
    again = _toy(tiny_teacher, updates=10, rollout_batch_size=4, minibatch_size=4)
    assert again.load_checkpoint(tmp_path) and again.updates_done == 2
    assert torch.equal(again.soft_prompt, trainer.soft_prompt)


def test_gated_margin_novelty_reward_trains_only_prompt_and_value_head(tiny_teacher):
    """The composite with validity as a gate, the margin label term and n-gram novelty drives real updates."""
    from bench.ppo_levers import GatedReward, LabelMargin, NgramNovelty
    from retrikt.ppo.rewards import Samples

    embeddings = tiny_teacher.model.get_input_embeddings().weight.detach()
    scores = embeddings @ torch.randn(embeddings.shape[1], generator=torch.Generator().manual_seed(7))
    liked = set(torch.nonzero(scores > scores.quantile(0.8)).flatten().tolist())
    tokenizer = tiny_teacher.tokenizer

    class TokenScorer:
        """p(positive) = share of the sample's tokens in the liked set."""

        def probs(self, fields_list):
            shares = [np.mean([t in liked for t in tokenizer.encode(f["sentence"], add_special_tokens=False)] or [0])
                      for f in fields_list]
            return np.array([[1 - s, s] for s in shares])

    class EveryOtherParses:
        # A stand-in gate that fails half the rows, so the gate's zeros are exercised inside the loop.
        def __call__(self, samples):
            return np.arange(len(samples)) % 2 == 0

    reward = GatedReward({LabelMargin.name: (1.0, LabelMargin(TokenScorer(), ["negative", "positive"])),
                          NgramNovelty.name: (0.5, NgramNovelty())}, {"gate": EveryOtherParses()})

    def reward_fn(key, batch):
        texts = [f"w{i} " + " ".join(map(str, row[m].tolist())) for i, (row, m) in
                 enumerate(zip(batch.tokens, batch.mask))]
        return reward(Samples(key, [{"sentence": tokenizer.decode(t)} if t else None for t in batch.tokens.tolist()],
                              texts))

    ids = tiny_teacher.encode(PROMPT)
    soft = embeddings[torch.tensor((ids * 2)[:4])].clone()
    config = PPOConfig(updates=3, rollout_batch_size=8, minibatch_size=4, epochs=1, checkpoint_every=10)
    trainer = PPOTrainer(tiny_teacher.model, tiny_teacher.tokenizer, soft, [PromptSpec("positive", ids)], reward_fn,
                         config, max_new_tokens=3, seed=2, stop_ids=set(), stop_text=None)
    frozen = {name: p.detach().clone() for name, p in tiny_teacher.model.named_parameters()}
    start_prompt, start_head = trainer.soft_prompt, [p.detach().clone() for p in trainer.value_head.parameters()]
    report = trainer.train()
    assert all(set(s.reward_terms) == {"label_margin", "ngram_novelty", "gate"} for s in report.history)
    assert all(s.reward_terms["gate"] == pytest.approx(0.5) for s in report.history)
    assert not torch.equal(trainer.soft_prompt, start_prompt)
    assert any(not torch.equal(p, q) for p, q in zip(trainer.value_head.parameters(), start_head))
    for name, param in tiny_teacher.model.named_parameters():
        assert torch.equal(param, frozen[name]) and param.grad is None, name


@pytest.mark.parametrize("entropy_coef", [0.0, 0.05])
def test_group_advantages_train_the_prompt_only_and_raise_the_reward(tiny_teacher, entropy_coef):
    # No value head with group advantages: it must stay exactly at its initialisation, the teacher frozen.
    trainer = _toy(tiny_teacher, levers={"advantage": "group", "entropy_coef": entropy_coef})
    frozen = {name: p.detach().clone() for name, p in tiny_teacher.model.named_parameters()}
    start_prompt = trainer.soft_prompt
    start_head = [p.detach().clone() for p in trainer.value_head.parameters()]
    report = trainer.train()
    rewards = [s.reward for s in report.history]
    first, last = np.mean(rewards[:5]), np.mean(rewards[-5:])
    assert last > first + 0.2, f"mean reward did not rise clearly: {first:.3f} -> {last:.3f}"
    assert not torch.equal(trainer.soft_prompt, start_prompt)
    assert all(torch.equal(p, q) for p, q in zip(trainer.value_head.parameters(), start_head))
    assert all(s.value_loss == 0.0 for s in report.history)
    for name, param in tiny_teacher.model.named_parameters():
        assert torch.equal(param, frozen[name]) and param.grad is None, name


def test_the_bench_trainer_with_every_lever_off_is_the_product_trainer(tiny_teacher):
    # bench/ppo.py runs every setting, the defaults too, through LeverTrainer: off, it must train exactly as PPO does
    product = _toy(tiny_teacher, updates=3, rollout_batch_size=4, minibatch_size=2).train().history
    bench = _toy(tiny_teacher, levers=dict(LEVERS), updates=3, rollout_batch_size=4, minibatch_size=2).train().history
    assert [s.as_dict() | {"seconds": 0, "rollout_seconds": 0, "samples_per_second": 0} for s in product] == \
        [s.as_dict() | {"seconds": 0, "rollout_seconds": 0, "samples_per_second": 0} for s in bench]


def test_entropy_bonus_keeps_the_policy_more_random(tiny_teacher):
    # Same seed, same rollouts at the first update: a strong bonus must end with higher rollout entropy.
    plain = _toy(tiny_teacher, levers={"advantage": "group"}, updates=12).train().history
    bonus = _toy(tiny_teacher, levers={"advantage": "group", "entropy_coef": 1.0}, updates=12).train().history
    assert plain[0].entropy == pytest.approx(bonus[0].entropy)
    assert np.mean([s.entropy for s in bonus[-4:]]) > np.mean([s.entropy for s in plain[-4:]])


@pytest.mark.parametrize("steps", [1, 2, 5])
def test_forward_with_the_prefix_run_once_equals_one_forward_per_row(tiny_teacher, steps):
    # Reference: [soft prompt; prompt tokens; sampled tokens] through the model in one pass per batch, as before
    # the prefix was shared. Log-probs, hidden states and the prompt's gradient must be the same numbers.
    trainer = _toy(tiny_teacher)
    ids = tiny_teacher.encode(PROMPT)
    tokens = torch.randint(0, 500, (3, steps), generator=torch.Generator().manual_seed(steps))
    prompt = trainer.prompt.detach().clone().requires_grad_(True)
    logprobs, hidden, _ = trainer._forward(prompt, ids, tokens)
    (logprobs.sum() + hidden.sum()).backward()
    shared_grad = prompt.grad.clone()

    prompt.grad = None
    model = tiny_teacher.model
    prefix = prompt_embeddings(model, prompt, ids, tokens.shape[0])
    embeds = torch.cat([prefix, model.get_input_embeddings()(tokens)], dim=1)
    out = model(inputs_embeds=embeds, output_hidden_states=True, use_cache=False)
    logits = out.logits[:, -steps - 1 : -1].float() / trainer.config.temperature
    ref_logprobs = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, -1)
    ref_hidden = out.hidden_states[-1][:, -steps - 1 : -1]
    (ref_logprobs.sum() + ref_hidden.sum()).backward()

    assert logprobs.shape == ref_logprobs.shape == (3, steps)
    assert torch.allclose(logprobs, ref_logprobs, atol=1e-5)
    assert torch.allclose(hidden, ref_hidden, atol=1e-5)
    assert prompt.grad.abs().sum() > 0
    assert torch.allclose(shared_grad, prompt.grad, atol=1e-4, rtol=1e-4)
