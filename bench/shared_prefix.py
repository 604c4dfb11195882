"""Shared-prefix speed-up of step 1 sampling and of the PPO forward/backward, against the per-row baseline in the
same process, on the packaged teacher.

    python -m bench.shared_prefix [--repeats 5] [--threads 2] [--workspace DIR]
    python -m bench.shared_prefix --render   # rewrite the md from the JSON, timing nothing

Every row of a generation batch and of a PPO minibatch starts with the same [soft prompt; label prompt]. The
baseline runs that prefix once per row (what the code did before); the shared path runs it once and repeats its
keys and values over the rows. Both are timed in turn (A B A B ...) on the SST-2 "positive" prompt with a soft
prompt initialised from the task description, at the default sizes (generation batch 64 at the derived budget,
PPO rollout 8 / minibatch 4). Checks that both give the same tokens (sampling) and the same log-probs and prompt
gradient (PPO), and writes `bench/results/shared_prefix.{md,json}`.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from retrikt.config import GenerationConfig, PPOConfig, PromptTuningConfig, TeacherConfig
from retrikt.generate.generation import default_max_new_tokens
from retrikt.generate.prompt_tuning import init_embeddings
from retrikt.ppo.trainer import PPOTrainer, PromptSpec
from retrikt.ppo.rewards import RewardBreakdown
from retrikt.tasks import load_builtin
from retrikt.teacher.load import load_teacher
from retrikt.teacher.sampling import prompt_embeddings, sample

from bench.report import write_json, write_md

ROOT = Path(__file__).resolve().parent


def per_row_forward(trainer: PPOTrainer, prompt: torch.Tensor, prompt_ids: list[int], tokens: torch.Tensor):
    """The PPO forward before the prefix was shared: [prefix; tokens] for every row in one batched pass."""
    steps = tokens.shape[1]
    model = trainer.model
    prefix = prompt_embeddings(model, prompt, prompt_ids, tokens.shape[0])
    embeds = torch.cat([prefix, model.get_input_embeddings()(tokens).to(prefix.dtype)], dim=1)
    out = model(inputs_embeds=embeds, output_hidden_states=True, use_cache=False, logits_to_keep=steps + 1)
    logits = out.logits[:, :-1].float() / trainer.config.temperature
    logprobs = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    return logprobs, out.hidden_states[-1][:, -steps - 1 : -1], logits


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def alternate(a, b, repeats: int) -> tuple[list[float], list[float]]:
    """Time a and b in turn, `repeats` pairs after one warm-up pair."""
    a(), b()
    times_a, times_b = [], []
    for _ in range(repeats):
        times_a.append(timed(a))
        times_b.append(timed(b))
    return times_a, times_b


def summary(shared: list[float], baseline: list[float], unit_count: int, unit: str) -> dict:
    ratios = [b / s for s, b in zip(shared, baseline)]
    return {"shared_s": round(statistics.median(shared), 4), "baseline_s": round(statistics.median(baseline), 4),
            "speedup_median": round(statistics.median(ratios), 2), "speedup_min": round(min(ratios), 2),
            "speedup_max": round(max(ratios), 2), f"{unit}_per_s_shared": round(unit_count / statistics.median(shared), 2),
            f"{unit}_per_s_baseline": round(unit_count / statistics.median(baseline), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workspace", default=None, help="cache dir for the converted teacher (default: a temp dir)")
    parser.add_argument("--render", action="store_true", help="rewrite the md from shared_prefix.json, timing nothing")
    args = parser.parse_args()
    if args.render:
        write(json.loads((ROOT / "results" / "shared_prefix.json").read_text(encoding="utf-8")))
        return
    torch.set_num_threads(args.threads)
    cache = Path(args.workspace or tempfile.mkdtemp(prefix="shared-prefix-")) / "cache"
    teacher = load_teacher(TeacherConfig(), cache_dir=cache)
    task = load_builtin("SST-2")
    soft = init_embeddings(teacher, task.description, PromptTuningConfig().num_virtual_tokens, torch.Generator())
    prompt_ids = teacher.encode(task.generation_prompt("positive"))
    gen = GenerationConfig()
    budget = default_max_new_tokens(task, teacher.tokenizer, gen)
    batch = gen.batch_size

    def draw(share: bool):
        embeds = prompt_embeddings(teacher.model, soft, prompt_ids, batch)
        return sample(teacher.model, teacher.tokenizer, embeds, max_new_tokens=budget, temperature=gen.temperature,
                      top_p=gen.top_p, share_prefix=share, generator=torch.Generator().manual_seed(5))

    same_tokens = torch.equal(draw(True).tokens, draw(False).tokens)
    shared_gen, baseline_gen = alternate(lambda: draw(True), lambda: draw(False), args.repeats)

    ppo = PPOConfig()
    trainer = PPOTrainer(teacher.model, teacher.tokenizer, soft, [PromptSpec("positive", prompt_ids)],
                         lambda key, b: RewardBreakdown(total=[0.0] * len(b.texts), terms={}), ppo,
                         max_new_tokens=budget)
    embeds = prompt_embeddings(teacher.model, soft, prompt_ids, ppo.rollout_batch_size)
    rollout = sample(teacher.model, teacher.tokenizer, embeds, max_new_tokens=budget, temperature=ppo.temperature,
                     generator=torch.Generator().manual_seed(3))
    steps = int(rollout.mask.sum(1).max())
    tokens = rollout.tokens[:, :steps]
    mini = tokens[: ppo.minibatch_size]

    def backward(forward, rows):
        prompt = trainer.prompt.detach().clone().requires_grad_(True)
        logprobs, hidden, _ = forward(prompt, prompt_ids, rows)
        (logprobs.sum() + hidden.sum()).backward()
        return logprobs.detach(), prompt.grad

    shared_out, baseline_out = backward(trainer._forward, mini), backward(
        lambda *a: per_row_forward(trainer, *a), mini)
    logprob_diff = float((shared_out[0] - baseline_out[0]).abs().max())
    grad_rel = float((shared_out[1] - baseline_out[1]).norm() / baseline_out[1].norm())

    def no_grad(forward):
        with torch.no_grad():
            forward(trainer.prompt, prompt_ids, tokens)

    shared_fwd, baseline_fwd = alternate(lambda: no_grad(trainer._forward),
                                         lambda: no_grad(lambda *a: per_row_forward(trainer, *a)), args.repeats)
    shared_bwd, baseline_bwd = alternate(lambda: backward(trainer._forward, mini),
                                         lambda: backward(lambda *a: per_row_forward(trainer, *a), mini), args.repeats)
    prefix_tokens = soft.shape[0] + len(prompt_ids)
    result = {
        "threads": args.threads, "repeats": args.repeats, "prefix_tokens": prefix_tokens,
        "generation": {"batch": batch, "budget": budget, "same_tokens": same_tokens,
                       "temperature": gen.temperature, "top_p": gen.top_p,
                       "mean_sample_tokens": round(float(draw(True).mask.sum(1).float().mean()), 1),
                       **summary(shared_gen, baseline_gen, batch, "samples")},
        "ppo_rollout_forward": {"rows": ppo.rollout_batch_size, "steps": steps,
                                **summary(shared_fwd, baseline_fwd, ppo.rollout_batch_size, "rows")},
        "ppo_minibatch_forward_backward": {"rows": ppo.minibatch_size, "steps": steps,
                                           "max_abs_logprob_diff": logprob_diff, "prompt_grad_rel_diff": grad_rel,
                                           **summary(shared_bwd, baseline_bwd, ppo.minibatch_size, "rows")},
    }
    write(result)
    print(render(result))


def write(result: dict) -> None:
    out = ROOT / "results"
    write_json(out / "shared_prefix.json", result, __file__)
    write_md(out / "shared_prefix.md", render(result), __file__)


def render(result: dict) -> str:
    g, f, b = result["generation"], result["ppo_rollout_forward"], result["ppo_minibatch_forward_backward"]
    # Reports from before the sampling settings were kept in the JSON ran with the defaults.
    temperature, top_p = g.get("temperature", GenerationConfig().temperature), g.get("top_p", GenerationConfig().top_p)
    lines = [
        "# Shared prefix: run [soft prompt; label prompt] once per batch, not once per row",
        "",
        f"Packaged teacher, SST-2 `positive` prompt ({result['prefix_tokens']} prefix tokens: soft prompt + label "
        f"prompt), {result['threads']} threads, {result['repeats']} timed pairs after a warm-up, shared and per-row in "
        "turn in one process; speed-up = per-row time / shared time, per pair (median, min–max).",
        "",
        "| what | rows | tokens | per-row (s) | shared (s) | speed-up | check |",
        "|---|---|---|---|---|---|---|",
    ]
    lines.append(f"| step 1 sampling (T {temperature}, top-p {top_p}) | {g['batch']} | budget {g['budget']}, mean "
                 f"{g['mean_sample_tokens']} | {g['baseline_s']} | {g['shared_s']} | {g['speedup_median']}× "
                 f"({g['speedup_min']}–{g['speedup_max']}) | same tokens: {g['same_tokens']} |")
    lines.append(f"| PPO rollout forward, no grad | {f['rows']} | {f['steps']} | {f['baseline_s']} | {f['shared_s']} | "
                 f"{f['speedup_median']}× ({f['speedup_min']}–{f['speedup_max']}) | |")
    lines.append(f"| PPO minibatch forward + backward | {b['rows']} | {b['steps']} | {b['baseline_s']} | {b['shared_s']} | "
                 f"{b['speedup_median']}× ({b['speedup_min']}–{b['speedup_max']}) | max Δ log-prob "
                 f"{b['max_abs_logprob_diff']:.1e}, prompt grad rel. Δ {b['prompt_grad_rel_diff']:.1e} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
