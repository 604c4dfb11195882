"""Can TRL's GRPO / RLOO trainers train a PEFT prompt-tuning soft prompt? A feasibility check, then (if it passes) the
real comparison against the project's own PPO.

Usage: python -m bench.trl_grpo check [--trainers grpo rloo] [--out trl_grpo]
       python -m bench.trl_grpo sst2 --step1-runs DIR --workspace DIR --cache DIR [--seed 13]
                                     [--arms trl_grpo trl_rloo project_ppo] [--updates N] [--out trl_grpo]
       python -m bench.trl_grpo render [--out trl_grpo]

`sst2` copies the step-1 run `bench-SST-2-s<seed>` per arm and trains its soft prompt with TRL's GRPO or RLOO
(reward = the run's default reward callables, budget = the PPOConfig defaults: 24 rollout batches of 8, 2 epochs of
minibatches of 4) or with the project's own PPO (`bench/ppo.py`'s `default` row), then measures samples from each
tuned prompt like `bench/ppo.py`.

`check` builds a 2-layer Llama from config (random weights, the packaged teacher's tokenizer), wraps it with
`get_peft_model(PromptTuningConfig(num_virtual_tokens=8))` and runs each trainer for 2 optimizer steps on CPU with a
length reward. It records, for every forward of the wrapped causal LM during training, whether the virtual tokens
were prepended and which adapter's prompt they came from (policy vs reference), and then checks:
  - the soft prompt changed and every base weight stayed bit-identical;
  - the trainer's own log-prob function gives the same numbers as PeftModel.forward (virtual tokens in) and not
    the numbers of the bare base model (virtual tokens bypassed);
  - what the KL reference is: with a pre-wrapped PeftModel the trainer copies the adapter into a frozen "ref"
    adapter (reference = the starting prompt, what step 2 wants: KL to the step-1 prompt); with `peft_config=` it
    disables the adapter (reference = the base model with no soft prompt at all).
Each check prints PASS/FAIL with the measured numbers; the process exits non-zero if a required check fails.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402

from bench.report import write_json, write_md  # noqa: E402

ROOT = Path(__file__).resolve().parent

torch.set_num_threads(1)

VIRTUAL = 8


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def versions() -> dict:
    import datasets
    import peft
    import transformers
    import trl
    return {"trl": trl.__version__, "peft": peft.__version__, "transformers": transformers.__version__,
            "torch": torch.__version__, "datasets": datasets.__version__,
            "python": ".".join(map(str, sys.version_info[:3]))}


def teacher_tokenizer():
    """The packaged teacher's tokenizer, read from its GGUF file (no network)."""
    from transformers import AutoTokenizer

    from retrikt.teacher.load import packaged_gguf

    gguf = packaged_gguf("smollm2")
    if gguf is None:
        raise SystemExit("the packaged teacher is not installed; the check needs its tokenizer")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def tiny_model(tokenizer, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    # design choice: hidden 16 / 2 layers / 2 heads: the smallest Llama that exercises attention, cache and RoPE.
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.bos_token_id, tie_word_embeddings=True)
    return LlamaForCausalLM(config)


class ForwardRecorder:
    """Records every forward of the wrapped causal LM: sequence length in, and whether its first VIRTUAL input
    embeddings are the policy's ("default") prompt, the reference ("ref") prompt, or neither (no virtual tokens)."""

    def __init__(self, peft_model):
        self.peft_model = peft_model
        self.calls: list[dict] = []
        self.handle = peft_model.get_base_model().register_forward_pre_hook(self._hook, with_kwargs=True)

    def _prompt(self, name):
        encoder = self.peft_model.prompt_encoder
        return encoder[name].embedding.weight.detach() if name in encoder else None

    def _hook(self, module, args, kwargs):
        embeds = kwargs.get("inputs_embeds")
        ids = kwargs.get("input_ids", args[0] if args else None)
        call = {"grad": torch.is_grad_enabled(), "input_ids": ids is not None, "prefix": "none",
                "length": int((embeds if embeds is not None else ids).shape[1])}
        if embeds is not None and embeds.shape[1] >= VIRTUAL:
            head = embeds[0, :VIRTUAL].detach()
            for name in ("default", "ref"):
                prompt = self._prompt(name)
                if prompt is not None and torch.equal(head, prompt.to(head.dtype)):
                    call["prefix"] = name
                    break
        self.calls.append(call)

    def summary(self) -> dict:
        out: dict[str, int] = {}
        for call in self.calls:
            key = f"{'grad' if call['grad'] else 'no_grad'}/{call['prefix']}"
            out[key] = out.get(key, 0) + 1
        return out

    def remove(self):
        self.handle.remove()


def length_reward(completions, **kwargs):
    """Trivial reward with spread inside every group (so the advantages are not all 0): characters written."""
    return [float(len(c)) / 40.0 for c in completions]


def completion_logps(model, ids, mask, logits_to_keep, virtual: int):
    """Log-probs of the last `logits_to_keep` tokens of `ids` from one forward of `model`; `virtual` = number of
    prepended positions to skip (the output then has ids.shape[1] + virtual positions)."""
    logits = model(input_ids=ids, attention_mask=mask).logits[:, virtual:][:, :-1][:, -logits_to_keep:]
    return torch.log_softmax(logits.float(), -1).gather(-1, ids[:, -logits_to_keep:].unsqueeze(-1)).squeeze(-1)


def generation_gap(peft_model, tokenizer, steps: int = 6) -> float:
    """Max |difference| between the logits `PeftModel.generate` (the trainers' rollout path, KV cache, left padding)
    sees at each greedy step and those of a full PeftModel.forward over [virtual tokens; prompt; tokens so far]:
    0 means the rollouts are sampled from the prompt-tuned policy the loss trains."""
    batch = tokenizer(["The movie was", "I think that this film is"], return_tensors="pt", padding=True,
                      padding_side="left")
    with torch.no_grad():
        out = peft_model.generate(**batch, do_sample=False, max_new_tokens=steps, min_new_tokens=steps,
                                  output_logits=True, return_dict_in_generate=True,
                                  pad_token_id=tokenizer.pad_token_id)
        ids = out.sequences
        mask = torch.cat([batch.attention_mask, torch.ones(ids.shape[0], steps, dtype=torch.long)], dim=1)
        full = peft_model(input_ids=ids, attention_mask=mask).logits[:, VIRTUAL:].float()
    prompt_len = batch.input_ids.shape[1]
    gaps = [(full[:, prompt_len - 1 + t] - out.logits[t].float()).abs().max() for t in range(steps)]
    return float(torch.stack(gaps).max())


def run_check(kind: str, tokenizer, wrap: str, workdir: Path, bf16: bool = False) -> dict:
    """One trainer (`grpo` or `rloo`) for 2 optimizer steps on a tiny prompt-tuned Llama; `wrap` = `model` (pass a
    PeftModel) or `config` (pass the base model and `peft_config=`)."""
    from datasets import Dataset
    from peft import PromptTuningConfig, get_peft_model
    import trl
    from trl.trainer.utils import use_adapter

    result: dict = {"trainer": kind, "wrap": wrap, "bf16": bf16}
    if kind == "grpo":
        Trainer, Config = trl.GRPOTrainer, trl.GRPOConfig
    else:
        Trainer = getattr(trl, "RLOOTrainer", None)
        Config = getattr(trl, "RLOOConfig", None)
        if Trainer is None:
            result["error"] = f"trl {trl.__version__} has no RLOOTrainer"
            return result
    base = tiny_model(tokenizer)
    base_before = {n: p.detach().clone() for n, p in base.named_parameters()}
    peft_config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=VIRTUAL)
    model = get_peft_model(base, peft_config) if wrap == "model" else base
    # design choice: 4 prompts x 4 generations of <= 8 tokens, beta 0.1 (so the reference path runs), lr 0.05 (so
    # 2 steps visibly move a random-init soft prompt).
    args = Config(output_dir=str(workdir / f"{kind}-{wrap}"), max_steps=2, per_device_train_batch_size=4,
                  num_generations=4, max_completion_length=8, learning_rate=0.05, beta=0.1, temperature=1.0,
                  use_cpu=True, report_to="none", logging_steps=1, save_strategy="no", seed=0,
                  disable_tqdm=True, dataloader_num_workers=0,
                  # TRL defaults bf16 to True, which on CPU autocasts the loss forward to bf16 while generate() runs
                  # in fp32: rollouts and the trained policy then differ (`--bf16` shows by how much).
                  bf16=bf16)
    dataset = Dataset.from_dict({"prompt": ["The movie was", "I think that", "Review:", "Overall the film"] * 4})
    try:
        trainer = Trainer(model=model, reward_funcs=length_reward, args=args, train_dataset=dataset,
                          processing_class=tokenizer, peft_config=peft_config if wrap == "config" else None)
    except Exception as exc:  # the exact error is the finding
        result["error"] = f"construction: {type(exc).__name__}: {exc}"
        return result
    peft_model = trainer.model
    result["adapters"] = sorted(peft_model.peft_config)
    prompt_before = {n: peft_model.prompt_encoder[n].embedding.weight.detach().clone() for n in result["adapters"]}
    recorder = ForwardRecorder(peft_model)
    started = time.perf_counter()
    try:
        output = trainer.train()
    except Exception as exc:
        recorder.remove()
        result["error"] = f"train: {type(exc).__name__}: {exc}"
        return result
    result["seconds"] = round(time.perf_counter() - started, 2)
    recorder.remove()
    result["global_step"] = output.global_step
    result["forwards"] = recorder.summary()
    result["log"] = [{k: v for k, v in entry.items() if k in ("loss", "reward", "kl", "completions/mean_length")}
                     for entry in trainer.state.log_history if "loss" in entry]
    result["prompt_change"] = {n: float((peft_model.prompt_encoder[n].embedding.weight.detach() - w).norm())
                               for n, w in prompt_before.items()}
    base_after = dict(peft_model.get_base_model().named_parameters())
    result["base_max_abs_change"] = max(float((base_after[n].detach() - w).abs().max())
                                        for n, w in base_before.items())

    # Log-probs of one prompt + completion, from the trainer's own function vs PeftModel.forward vs the bare base.
    peft_model.eval()
    ids = tokenizer(["The movie was great and I liked it"], return_tensors="pt").input_ids
    mask = torch.ones_like(ids)
    keep = 4
    with torch.no_grad():
        trainer_lp = trainer._get_per_token_logps_and_entropies(peft_model, ids, mask, keep)[0]
        peft_lp = completion_logps(peft_model, ids, mask, keep, VIRTUAL)
        with peft_model.disable_adapter():
            bare_lp = completion_logps(peft_model.get_base_model(), ids, mask, keep, 0)
        with use_adapter(peft_model, adapter_name="ref" if "ref" in peft_model.peft_config else None):
            ref_lp = trainer._get_per_token_logps_and_entropies(peft_model, ids, mask, keep)[0]
    result["logp_trainer_vs_peft_forward"] = float((trainer_lp - peft_lp).abs().max())
    result["logp_trainer_vs_bare_base"] = float((trainer_lp - bare_lp).abs().max())
    result["logp_ref_vs_bare_base"] = float((ref_lp - bare_lp).abs().max())
    result["generate_logits_vs_full_forward"] = generation_gap(peft_model, tokenizer)
    result["reference"] = ("frozen copy of the starting prompt ('ref' adapter)" if "ref" in peft_model.peft_config
                           else "adapter disabled: the base model without any soft prompt")
    return result


def verdict(result: dict) -> list[tuple[str, bool, str]]:
    """(check, passed, detail) per required property."""
    if "error" in result:
        return [("runs", False, result["error"])]
    forwards = result["forwards"]
    grad_without = forwards.get("grad/none", 0)
    checks = [
        ("runs 2 optimizer steps", result["global_step"] == 2, f"global_step {result['global_step']}"),
        ("soft prompt trained", result["prompt_change"].get("default", 0) > 0,
         f"norm(delta prompt) {result['prompt_change'].get('default', 0):.4g}"),
        ("base weights frozen", result["base_max_abs_change"] == 0.0,
         f"max abs(delta base weight) {result['base_max_abs_change']:.3g}"),
        ("every gradient forward prepends the trained prompt",
         forwards.get("grad/default", 0) > 0 and grad_without == 0, f"forwards {forwards}"),
        ("trainer log-probs = PeftModel.forward", result["logp_trainer_vs_peft_forward"] < 1e-5,
         f"max abs diff {result['logp_trainer_vs_peft_forward']:.3g} "
         f"(vs bare base {result['logp_trainer_vs_bare_base']:.3g})"),
    ]
    checks.append(("rollouts (generate) use the prompt-tuned policy", result["generate_logits_vs_full_forward"] < 1e-4,
                   f"max abs logit diff, generate vs full forward {result['generate_logits_vs_full_forward']:.3g}"))
    if "ref" in result.get("adapters", []):
        checks.append(("reference prompt stayed frozen", result["prompt_change"].get("ref", 1) == 0.0,
                       f"norm(delta ref) {result['prompt_change'].get('ref')}"))
    return checks


def cmd_check(args) -> int:
    tokenizer = teacher_tokenizer()
    info = versions()
    log(f"versions: {info}")
    results = []
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.trainers:
            for wrap in ("model", "config"):
                log(f"{kind}, {'PeftModel passed' if wrap == 'model' else 'peft_config passed'}")
                result = run_check(kind, tokenizer, wrap, Path(tmp), bf16=args.bf16)
                result["checks"] = [{"check": c, "passed": ok, "detail": d} for c, ok, d in verdict(result)]
                for item in result["checks"]:
                    log(f"  {'PASS' if item['passed'] else 'FAIL'} {item['check']}: {item['detail']}")
                    failed |= not item["passed"]
                if "reference" in result:
                    log(f"  KL reference: {result['reference']} (ref vs bare base log-probs max |diff| "
                        f"{result['logp_ref_vs_bare_base']:.3g})")
                results.append(result)
    out = ROOT / "results" / f"{args.out}-check{'-bf16' if args.bf16 else ''}.json"
    write_json(out, {"versions": info, "results": results}, __file__, "check" + (" --bf16" if args.bf16 else ""),
               indent=1, newline=False)
    log(f"wrote {out.relative_to(ROOT.parent)}")
    write_render(args.out)
    return 1 if failed else 0


# ---- the real task: SST-2, one seed, TRL GRPO vs the project's own PPO from the same step-1 run --------------------
def quiet(stage, done, total, info):
    pass


def step1_samples(ctx, run, task_name: str, seed: int, args):
    """The step-1 arm's evaluation samples, cached under the name `bench/ppo.py` uses (so both arms share them)."""
    from bench.ppo import _sample_dicts, _samples_from

    from retrikt.generate.generation import generate_samples
    from retrikt.generate.prompt_tuning import load_soft_prompt

    cache = args.workspace / f"step1-samples-{task_name}-s{seed}-n{args.eval_per_label}.json"
    if cache.is_file():
        return _samples_from(json.loads(cache.read_text()))
    samples = generate_samples(ctx.teacher, ctx.task, load_soft_prompt(run.adapter_dir), run.config.generation).samples
    cache.write_text(json.dumps(_sample_dicts(samples)))
    return samples


def trainer_config(kind: str, cfg, budget: int, stop_ids: list[int], out_dir: Path, seed: int, updates: int):
    """GRPOConfig (`kind` grpo) or RLOOConfig (rloo) with the same budget as the project's PPO config `cfg`:
    `updates` rollout batches of `rollout_batch_size` samples of one prompt, each optimised for `epochs` passes of
    `minibatch_size` minibatches."""
    import trl

    from retrikt.ppo.trainer import MAX_GRAD_NORM

    per_update = cfg.rollout_batch_size // cfg.minibatch_size
    if kind == "grpo":
        # GRPO normalises rewards per group by default (scale_rewards="group"), like PPO's advantage whitening.
        Config, extra = trl.GRPOConfig, {}
    else:
        # RLOO leaves advantages unnormalised by default; PPO whitens them, so this does too.
        Config, extra = trl.RLOOConfig, {"normalize_advantages": True}
    return Config(**extra,
        output_dir=str(out_dir), max_steps=updates * per_update * cfg.epochs,
        per_device_train_batch_size=cfg.minibatch_size, steps_per_generation=per_update,
        num_generations=cfg.rollout_batch_size, num_iterations=cfg.epochs,
        learning_rate=cfg.learning_rate, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
        max_grad_norm=MAX_GRAD_NORM, epsilon=cfg.clip_range, temperature=cfg.temperature, top_p=1.0, top_k=0,
        # design choice: beta = PPO's initial KL coefficient. GRPO adds beta * (per-token KL estimate) to the loss;
        # RLOO subtracts beta * (summed KL) from each sample's reward, like PPO, but with a fixed coefficient where
        # PPO's adapts to a target.
        beta=cfg.kl_coef,
        max_completion_length=budget,
        # design choice: a blank-line token ends a rollout like the project's sampler's "\n\n" stop (a blank line
        # split over two tokens does not, unlike there); generate() then pads with eos, which TRL's mask keeps.
        generation_kwargs={"eos_token_id": stop_ids},
        # design choice: labels take turns in dataset order, as in the project's PPO (no shuffling).
        shuffle_dataset=False,
        # fp32 and no recomputation, as the project runs on CPU: TRL's bf16 default autocasts the loss forward but
        # not generate(), and its gradient checkpointing only trades time for memory.
        bf16=False, gradient_checkpointing=False,
        use_cpu=True, report_to="none", logging_steps=1, save_strategy="no", seed=seed, disable_tqdm=True,
        dataloader_num_workers=0)


def trl_one(kind: str, task_name: str, seed: int, args, judge) -> dict:
    """TRL GRPO (`kind` grpo) or RLOO (rloo) on a copy of the step-1 run, with the run's own default reward
    callables; then the same evaluation as `bench/ppo.py` (samples from the tuned prompt, measured like the step-1
    arm)."""
    import copy

    import numpy as np
    from datasets import Dataset
    from peft import PromptTuningConfig, get_peft_model
    import trl

    from bench.ppo import copy_step1_run, sample_metrics

    from retrikt.config import override
    from retrikt.context import load_context, open_store
    from retrikt.generate.generation import default_max_new_tokens, generate_samples
    from retrikt.ppo.rewards import CompositeReward, Samples
    from retrikt.ppo.stage import check_ready, restore_scorer
    from retrikt.teacher.sampling import _clean, blank_line_ids

    source = args.step1_runs / f"bench-{task_name}-s{seed}"
    name = source.name
    workspace = args.workspace / f"trl_{kind}"
    run = copy_step1_run(source, workspace, args.cache)
    run.config = override(run.config, {"workspace": str(workspace), "run_name": name,
                                       "generation.samples_per_label": args.eval_per_label})
    ctx = load_context(run.config, quiet, run=run)
    scorer = restore_scorer(ctx)
    step1_prompt = check_ready(ctx)
    step1 = step1_samples(ctx, run, task_name, seed, args)
    cfg = run.config.ppo
    updates = args.updates if args.updates is not None else cfg.updates
    store = open_store(ctx)
    reward = CompositeReward.from_config(cfg, ctx.task, scorer, store.embedder, store)
    teacher, task = ctx.teacher, ctx.task
    budget = cfg.max_new_tokens or default_max_new_tokens(task, teacher.tokenizer, run.config.generation)

    tokenizer = copy.deepcopy(teacher.tokenizer)
    # generate() pads finished rows with pad_token_id and TRL cuts a completion after its first eos only, so
    # padding must be eos or it would count as completion tokens.
    tokenizer.pad_token = tokenizer.eos_token
    stop_ids = {tokenizer.eos_token_id}
    stop_tokens = sorted(stop_ids | blank_line_ids(teacher.tokenizer, "\n\n"))
    prompts = [task.generation_prompt(label) for label in task.labels]
    same_tokens = all(tokenizer(text=p)["input_ids"] == teacher.encode(p) for p in prompts)

    # The adapter goes in pre-wrapped, not as `peft_config=`: TRL then copies it into a frozen "ref" adapter, so the
    # KL reference is the step-1 prompt (with `peft_config=` it is the teacher without any prompt). It is built with
    # get_peft_model, since PeftModel.from_pretrained defaults to is_trainable=False, which leaves nothing to train.
    peft_config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=int(step1_prompt.shape[0]))
    model = get_peft_model(teacher.model, peft_config)
    with torch.no_grad():
        model.prompt_encoder["default"].embedding.weight.copy_(step1_prompt.to(torch.float32))
    # The first 4096 values of every teacher tensor: any optimizer step on a tensor would move them.
    base_fingerprint = [p.detach().flatten()[:4096].clone() for p in model.get_base_model().parameters()]

    rollouts: list[dict] = []

    def task_reward(prompts, completions, completion_ids, label, **kwargs):
        """The run's CompositeReward (the default reward callables) per label group of a generation batch."""
        out = np.zeros(len(completion_ids))
        for lab in sorted(set(label)):
            rows = [i for i, l in enumerate(label) if l == lab]
            ids = [list(completion_ids[i]) for i in rows]
            texts = [_clean(tokenizer, x, stop_ids, "\n\n") for x in ids]
            stopped = [bool(x) and (x[-1] in stop_ids or "\n\n" in tokenizer.decode(x)) for x in ids]
            breakdown = reward(Samples.parse(task, lab, texts, stopped))
            out[rows] = breakdown.total
            rollouts.append({"key": lab, "reward": float(breakdown.total.mean()), "reward_terms": breakdown.means(),
                             "tokens": float(np.mean([len(x) for x in ids])), "stopped": float(np.mean(stopped))})
        return out.tolist()

    # Labels take turns: one prompt per generation batch (num_generations = the batch), labels alternating.
    dataset = Dataset.from_dict({"prompt": prompts * updates, "label": list(task.labels) * updates})
    config = trainer_config(kind, cfg, budget, stop_tokens, workspace / "trainer-out", seed, updates)
    Trainer = trl.GRPOTrainer if kind == "grpo" else trl.RLOOTrainer
    trainer = Trainer(model=model, reward_funcs=task_reward, args=config, train_dataset=dataset,
                              processing_class=tokenizer)
    reference = "step-1 prompt (frozen 'ref' adapter copy)" if "ref" in model.peft_config else "no soft prompt"
    log(f"{name} {kind}: {config.max_steps} optimizer steps, {updates} rollout batches of {cfg.rollout_batch_size}, "
        f"budget {budget} tokens, KL reference: {reference}")
    started = time.perf_counter()
    output = trainer.train()
    train_seconds = time.perf_counter() - started
    tuned = model.prompt_encoder["default"].embedding.weight.detach().clone()
    base_unchanged = all(torch.equal(p.detach().flatten()[:4096], w)
                         for p, w in zip(model.get_base_model().parameters(), base_fingerprint))
    ref_unchanged = ("ref" not in model.prompt_encoder
                     or torch.equal(model.prompt_encoder["ref"].embedding.weight.detach(), step1_prompt.float()))
    teacher.model.eval()
    teacher.model.requires_grad_(False)

    started = time.perf_counter()
    samples = generate_samples(teacher, task, tuned, run.config.generation).samples
    generate_seconds = time.perf_counter() - started
    steps = [e for e in trainer.state.log_history if "loss" in e]
    return {
        "task": task_name, "seed": seed, "variant": f"trl_{kind}", "trainer": type(trainer).__name__,
        "step1": sample_metrics(task, step1, scorer, judge), "ppo": sample_metrics(task, samples, scorer, judge),
        "updates": updates, "optimizer_steps": output.global_step,
        "seconds_per_update": train_seconds / updates, "rollout_samples_per_second":
            updates * cfg.rollout_batch_size / train_seconds, "ppo_minutes": train_seconds / 60,
        "generate_samples_per_second": len(samples) / generate_seconds,
        "prompt_shift": float((tuned - step1_prompt.float()).norm() / step1_prompt.float().norm()),
        "base_unchanged": base_unchanged, "ref_prompt_unchanged": ref_unchanged, "kl_reference": reference,
        "prompt_tokens_match": same_tokens, "max_completion_length": budget,
        "config": {k: getattr(config, k, None) for k in ("max_steps", "per_device_train_batch_size",
                                                         "steps_per_generation",
                                                   "num_generations", "num_iterations", "learning_rate", "beta",
                                                   "epsilon", "loss_type", "scale_rewards", "normalize_advantages",
                                                   "temperature")},
        "rollouts": rollouts,
        "history": [{k: e.get(k) for k in ("step", "loss", "reward", "reward_std", "kl", "entropy", "grad_norm",
                                           "completions/mean_length", "completions/clipped_ratio", "step_time")}
                    for e in steps],
    }


def cmd_sst2(args) -> int:
    from bench.ppo import bench_one

    from retrikt.generate.judge import load_judge

    args.workspace = args.workspace.resolve()
    args.workspace.mkdir(parents=True, exist_ok=True)
    args.step1_runs = args.step1_runs.resolve()
    judge = load_judge(args.cache)
    log(f"judge test accuracy {judge.accuracy:.4f}")
    path = ROOT / "results" / f"{args.out}.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    data.update({"versions": versions(), "eval_per_label": args.eval_per_label,
                 "judge_test_accuracy": judge.accuracy, "torch_threads": torch.get_num_threads()})
    results = data.setdefault("results", {})
    for arm in args.arms:
        log(f"SST-2 s{args.seed} {arm}: start")
        if arm.startswith("trl_"):
            result = trl_one(arm[4:], "SST-2", args.seed, args, judge)
        else:
            # bench/ppo.py's own row: the project's PPO with the PPOConfig defaults, from the same step-1 run.
            result = bench_one("SST-2", args.seed, "default", args, judge)
            result["variant"] = "project_ppo"
        results[f"SST-2|{result['variant']}|{args.seed}"] = result
        write_json(path, data, __file__, "sst2", indent=1, newline=False)
        log(f"{arm}: {result['seconds_per_update']:.1f} s/update; teacher {result['step1']['teacher_agreement']} -> "
            f"{result['ppo']['teacher_agreement']}, judge {result['step1']['judge_agreement']} -> "
            f"{result['ppo']['judge_agreement']}, self-bleu {result['step1']['self_bleu']:.3f} -> "
            f"{result['ppo']['self_bleu']:.3f}, words {result['step1']['mean_words']} -> {result['ppo']['mean_words']}")
        write_render(args.out)
    return 0


# ---- report ------------------------------------------------------------------------------------------------------
ROWS = [("parse_rate", "parse rate (%)", 100, "{:.1f}"),
        ("teacher_agreement", "teacher agrees with intended label (%)", 100, "{:.1f}"),
        ("judge_agreement", "independent judge agrees (%)", 100, "{:.1f}"),
        ("self_bleu", "Self-BLEU (lower = more diverse)", 1, "{:.3f}"),
        ("distinct_2", "distinct-2 (higher = more diverse)", 1, "{:.3f}"),
        ("mean_words", "mean words per sample", 1, "{:.1f}"),
        ("duplicate_rate", "duplicate rate (%)", 100, "{:.1f}")]


def _fmt(value, scale, pattern):
    return "–" if value is None else pattern.format(value * scale)


def render(out_name: str) -> str:
    """`<out>.md` from `<out>-check.json` (+ `-bf16`) and `<out>.json` (the SST-2 rows and the written notes)."""
    results = ROOT / "results"
    lines = ["# TRL GRPO / RLOO on a PEFT prompt-tuning soft prompt (step 2)", ""]
    data = json.loads((results / f"{out_name}.json").read_text()) if (results / f"{out_name}.json").is_file() else {}
    if data.get("notes"):
        lines += ["## Findings", ""] + [f"- {n}" for n in data["notes"]] + [""]
    for suffix, title in (("", "fp32 (bf16=False)"), ("-bf16", "TRL's default bf16=True (CPU autocast)")):
        path = results / f"{out_name}-check{suffix}.json"
        if not path.is_file():
            continue
        check = json.loads(path.read_text())
        versions_ = ", ".join(f"{k} {v}" for k, v in check["versions"].items())
        lines += [f"## Feasibility check, tiny model, {title}", "",
                  f"`python -m bench.trl_grpo check{' --bf16' if suffix else ''}`; {versions_}. 2-layer Llama "
                  "(hidden 16) from config with random weights and the packaged teacher's tokenizer, "
                  f"`get_peft_model(PromptTuningConfig(num_virtual_tokens={VIRTUAL}))`, 2 optimizer steps on CPU, "
                  "4 prompts x 4 generations of 8 tokens, reward = characters written / 40, beta 0.1, lr 0.05.", "",
                  "| trainer | adapter passed as | check | result | measured |", "|---|---|---|---|---|"]
        for r in check["results"]:
            wrap = "PeftModel" if r["wrap"] == "model" else "`peft_config=`"
            for c in r["checks"]:
                lines.append(f"| {r['trainer']} | {wrap} | {c['check']} | {'pass' if c['passed'] else 'FAIL'} | "
                             f"{c['detail']} |")
            if "reference" in r:
                lines.append(f"| {r['trainer']} | {wrap} | KL reference | – | {r['reference']} |")
        lines.append("")
    order = {"project_ppo": 0, "trl_grpo": 1, "trl_rloo": 2}
    all_rows = list(data.get("results", {}).values())
    for seed in sorted({r["seed"] for r in all_rows}):
        rows = sorted((r for r in all_rows if r["seed"] == seed), key=lambda r: order.get(r["variant"], 9))
        first = rows[0]
        lines += [f"## SST-2 seed {seed}: TRL GRPO / RLOO vs the project's PPO from the same step-1 run", "",
                  f"{data['eval_per_label']} samples per label from each tuned prompt (and from the step-1 prompt), "
                  "same generation config and seed, all drawn with the project's sampler; teacher agreement by the "
                  "step-1 scorer (the reward's own judge), independent judge = TF-IDF logistic regression on the "
                  f"SST-2 train set (test accuracy {100 * data['judge_test_accuracy']:.1f}%). Versions: "
                  + ", ".join(f"{k} {v}" for k, v in data["versions"].items()) + ".", "",
                  "| measure | step 1 | " + " | ".join(r["variant"] for r in rows) + " |",
                  "|---|---|" + "---|" * len(rows)]
        for key, label, scale, pattern in ROWS:
            lines.append(f"| {label} | {_fmt(first['step1'][key], scale, pattern)} | "
                         + " | ".join(_fmt(r["ppo"][key], scale, pattern) for r in rows) + " |")
        for key, label, pattern in (("updates", "rollout batches (updates)", "{:.0f}"),
                                    ("seconds_per_update", "s/update (rollout + optimisation)", "{:.1f}"),
                                    ("rollout_samples_per_second", "rollout samples/s", "{:.2f}"),
                                    ("ppo_minutes", "training minutes", "{:.1f}"),
                                    ("prompt_shift", "prompt shift, norm(P - P1) / norm(P1)", "{:.3f}")):
            lines.append(f"| {label} | – | " + " | ".join(_fmt(r.get(key), 1, pattern) for r in rows) + " |")
        halves = []
        for r in rows:
            h = r.get("rollouts") or r["history"]
            n = len(h) // 2
            mean = lambda items, k: sum(x[k] for x in items) / len(items)  # noqa: E731
            halves.append(f"{mean(h[:n], 'tokens'):.1f} -> {mean(h[n:], 'tokens'):.1f}")
        lines.append("| rollout tokens per sample, first -> second half of training | – | "
                     + " | ".join(halves) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def write_render(out_name: str) -> None:
    write_md(ROOT / "results" / f"{out_name}.md", render(out_name), __file__, "render")


def restamp(out_name: str) -> None:
    """Name the writer in the JSON reports that `render` reads, their content as it is."""
    for suffix, how in (("", "sst2"), ("-check", "check"), ("-check-bf16", "check --bf16")):
        path = ROOT / "results" / f"{out_name}{suffix}.json"
        if path.is_file():
            write_json(path, json.loads(path.read_text()), __file__, how, indent=1, newline=False)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="tiny-model feasibility check")
    check.add_argument("--trainers", nargs="+", default=["grpo", "rloo"], choices=["grpo", "rloo"])
    check.add_argument("--out", default="trl_grpo")
    check.add_argument("--bf16", action="store_true", help="keep TRL's bf16 default (autocast on CPU)")
    real = sub.add_parser("sst2", help="SST-2, one seed: TRL GRPO vs the project's PPO from one step-1 run")
    real.add_argument("--step1-runs", dest="step1_runs", type=Path, required=True,
                      help="folder holding the step-1 run bench-SST-2-s<seed>")
    real.add_argument("--workspace", type=Path, required=True)
    real.add_argument("--cache", type=Path, required=True)
    real.add_argument("--seed", type=int, default=13)
    real.add_argument("--arms", nargs="+", default=["trl_grpo", "project_ppo"],
                      choices=["trl_grpo", "trl_rloo", "project_ppo"],
                      help="each arm in its own process is safest: the TRL arms wrap the shared teacher model")
    real.add_argument("--eval-per-label", dest="eval_per_label", type=int, default=64)
    real.add_argument("--updates", type=int, default=None, help="rollout batches (default: ppo.updates)")
    real.add_argument("--out", default="trl_grpo")
    render_cmd = sub.add_parser("render", help="rebuild the Markdown report from the JSON files")
    render_cmd.add_argument("--out", default="trl_grpo")
    args = parser.parse_args(argv)
    if args.command == "render":
        restamp(args.out)
        write_render(args.out)
        return 0
    if args.command == "check":
        return cmd_check(args)
    return cmd_sst2(args)


if __name__ == "__main__":
    sys.exit(main())
