"""Can TRL's GRPO / RLOO trainers train a PEFT prompt-tuning soft prompt? A feasibility check, then (if it passes) the
real comparison against the project's own PPO.

Usage: python bench/trl_grpo.py check [--trainers grpo rloo] [--out trl_grpo]
       python bench/trl_grpo.py sst2 --step1-runs DIR --workspace DIR [--seed 13] [--updates N] [--out trl_grpo]

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

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
sys.path.insert(0, str(ROOT))

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
         f"|delta prompt| {result['prompt_change'].get('default', 0):.4g}"),
        ("base weights frozen", result["base_max_abs_change"] == 0.0,
         f"max |delta base weight| {result['base_max_abs_change']:.3g}"),
        ("every gradient forward prepends the trained prompt",
         forwards.get("grad/default", 0) > 0 and grad_without == 0, f"forwards {forwards}"),
        ("trainer log-probs = PeftModel.forward", result["logp_trainer_vs_peft_forward"] < 1e-5,
         f"max |diff| {result['logp_trainer_vs_peft_forward']:.3g} (vs bare base {result['logp_trainer_vs_bare_base']:.3g})"),
    ]
    checks.append(("rollouts (generate) use the prompt-tuned policy", result["generate_logits_vs_full_forward"] < 1e-4,
                   f"max |logit diff| generate vs full forward {result['generate_logits_vs_full_forward']:.3g}"))
    if "ref" in result.get("adapters", []):
        checks.append(("reference prompt stayed frozen", result["prompt_change"].get("ref", 1) == 0.0,
                       f"|delta ref| {result['prompt_change'].get('ref')}"))
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
    out.write_text(json.dumps({"versions": info, "results": results}, indent=1))
    log(f"wrote {out.relative_to(ROOT.parent)}")
    return 1 if failed else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="tiny-model feasibility check")
    check.add_argument("--trainers", nargs="+", default=["grpo", "rloo"], choices=["grpo", "rloo"])
    check.add_argument("--out", default="trl_grpo")
    check.add_argument("--bf16", action="store_true", help="keep TRL's bf16 default (autocast on CPU)")
    args = parser.parse_args(argv)
    if args.command == "check":
        return cmd_check(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
