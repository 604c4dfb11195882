"""Autoregressive sampling from a frozen causal LM with a soft prompt prepended to the input embeddings.

Our own loop instead of `generate()`: PEFT prompt tuning + `generate()` has had cache and position bugs
(peft #1391, #2123, #2379), and the PPO step needs the per-token log-probs of exactly what was sampled.
All prompts in a call have the same token length (one label's prompt), so there is no padding to get wrong.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class SampledBatch:
    tokens: torch.Tensor
    """(batch, steps) sampled ids; positions after a row finished hold `pad_id`."""
    logprobs: torch.Tensor
    """(batch, steps) log-prob of each sampled token under the sampling distribution's model (T=1, no top-p)."""
    mask: torch.Tensor
    """(batch, steps) True where the token belongs to the sample (up to and including its stop token)."""
    texts: list[str]
    """Decoded samples, stop text removed."""
    stopped: torch.Tensor
    """(batch,) True where the row ended at a stop token/text rather than at the token budget."""


def prompt_embeddings(model, soft_prompt: torch.Tensor | None, prompt_ids: list[int], batch: int) -> torch.Tensor:
    """[soft prompt ; embedded prompt tokens], repeated over the batch."""
    embed = model.get_input_embeddings()
    device = embed.weight.device
    ids = torch.tensor(prompt_ids, device=device).unsqueeze(0)
    embeds = embed(ids)
    if soft_prompt is not None:
        embeds = torch.cat([soft_prompt.to(device=device, dtype=embeds.dtype).unsqueeze(0), embeds], dim=1)
    return embeds.expand(batch, -1, -1)


def shares_one_prompt(prompt_embeds: torch.Tensor) -> bool:
    """True when every row of the batch holds the same prompt (as `prompt_embeddings` builds it)."""
    return prompt_embeds.shape[0] > 1 and bool((prompt_embeds == prompt_embeds[:1]).all())


def prefill_once(model, prompt_embeds: torch.Tensor):
    """Logits after the prompt and a KV cache of it for the whole batch, from one row's forward pass.

    Every row of a generation batch starts from the same prompt (soft prompt and label prompt): computing it once
    and repeating its keys and values over the batch gives the same cache as a batched prefill, for 1/batch of the
    prompt's cost (step 1 sampling on SST-2: 1.12x, `bench/shared_prefix.py`)."""
    batch = prompt_embeds.shape[0]
    out = model(inputs_embeds=prompt_embeds[:1], use_cache=True, logits_to_keep=1)
    past = out.past_key_values
    past.batch_repeat_interleave(batch)
    return out.logits[:, -1, :].float().repeat(batch, 1), past


def filter_top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of tokens whose probability mass reaches `top_p` (the top token always stays)."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    cumulative = sorted_logits.softmax(-1).cumsum(-1)
    remove_sorted = cumulative - sorted_logits.softmax(-1) >= top_p
    remove = torch.zeros_like(remove_sorted).scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))


@torch.no_grad()
def sample(
    model,
    tokenizer,
    prompt_embeds: torch.Tensor,
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    stop_ids: set[int] | None = None,
    stop_text: str | None = "\n\n",
    stop_when: Callable[[str], bool] | None = None,
    next_header: Callable[[str], str | None] | None = None,
    use_cache: bool = True,
    share_prefix: bool = True,
    generator: torch.Generator | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SampledBatch:
    """Sample continuations of `prompt_embeds` (batch, length, hidden).

    A row finishes at a stop id (eos), when its decoded text contains `stop_text`, or when `stop_when(text)` is
    true; `stop_when` is asked only after a token that holds a line break (a sample is complete at a line's end).
    `next_header(text)` turns on template-constrained decoding: after a line break it may return a header
    ("Hypothesis:") whose tokens are then written for the row instead of sampled, and until a row is complete it
    cannot end (eos or a blank line are masked out), so it can only finish complete or at the token budget.
    `use_cache=False` recomputes the whole sequence each step; with the same generator state it must produce the
    same tokens as the cached path (tested), which guards against cache/position bugs. With `share_prefix`, a batch
    whose rows all hold the same prompt runs it once (`prefill_once`); False prefills every row (the baseline
    `bench/shared_prefix.py` times it against).
    """
    batch = prompt_embeds.shape[0]
    device = prompt_embeds.device
    embed = model.get_input_embeddings()
    stop_ids = stop_ids if stop_ids is not None else {tokenizer.eos_token_id}
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    tokens = torch.full((batch, max_new_tokens), pad_id, dtype=torch.long, device=device)
    logprobs = torch.zeros((batch, max_new_tokens), device=device)
    mask = torch.zeros((batch, max_new_tokens), dtype=torch.bool, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    # Finished rows leave the batch (and the KV cache): samples vary a lot in length, and computing rows that
    # only emit padding wasted most of a batch's time.
    alive = torch.arange(batch, device=device)
    all_embeds, step_embeds, past = prompt_embeds, prompt_embeds, None
    steps = 0
    forced: dict[int, list[int]] = {}  # row -> header tokens still to write
    held_open = sorted(stop_ids | blank_line_ids(tokenizer, stop_text)) if next_header is not None else []
    for step in range(max_new_tokens):
        if use_cache and past is None and share_prefix and shares_one_prompt(prompt_embeds):
            logits, past = prefill_once(model, prompt_embeds)
        elif use_cache:
            out = model(inputs_embeds=step_embeds, past_key_values=past, use_cache=True, logits_to_keep=1)
            past = out.past_key_values
            logits = out.logits[:, -1, :].float()
        else:
            out = model(inputs_embeds=all_embeds, use_cache=False, logits_to_keep=1)
            logits = out.logits[:, -1, :].float()
        if held_open:
            logits[:, held_open] = float("-inf")
        if temperature <= 0:
            next_ids = logits.argmax(-1)
        else:
            probs = filter_top_p(logits / temperature, top_p).softmax(-1)
            next_ids = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        for pos, row in enumerate(alive.tolist()):
            if forced.get(row):
                next_ids[pos] = forced[row].pop(0)
        tokens[alive, step] = next_ids
        logprobs[alive, step] = logits.log_softmax(-1).gather(-1, next_ids[:, None]).squeeze(-1)
        mask[alive, step] = True
        steps = step + 1
        done_now = torch.tensor([int(t) in stop_ids for t in next_ids.tolist()], dtype=torch.bool, device=device)
        if stop_text:
            done_now |= _rows_with_text(tokenizer, tokens[alive, : step + 1], ~done_now, stop_text)
        if stop_when is not None or next_header is not None:
            done_now |= _at_line_end(tokenizer, tokens[alive, : step + 1], alive, ~done_now, stop_when, next_header,
                                     forced)
        finished[alive[done_now]] = True
        if bool(done_now.all()) or (should_stop is not None and should_stop()):
            break
        keep = ~done_now
        step_embeds = embed(next_ids[keep]).unsqueeze(1)
        if bool(done_now.any()):
            alive = alive[keep]
            if use_cache:
                past.batch_select_indices(torch.nonzero(keep).flatten())
            else:
                all_embeds = all_embeds[keep]
        if not use_cache:
            all_embeds = torch.cat([all_embeds, step_embeds], dim=1)
    tokens, logprobs, mask = tokens[:, :steps], logprobs[:, :steps], mask[:, :steps]
    texts = [_clean(tokenizer, row[m].tolist(), stop_ids, stop_text) for row, m in zip(tokens, mask)]
    return SampledBatch(tokens, logprobs, mask, texts, finished)


def _rows_with_text(tokenizer, tokens: torch.Tensor, candidates: torch.Tensor, stop_text: str) -> torch.Tensor:
    hit = torch.zeros_like(candidates)
    for row in torch.nonzero(candidates).flatten().tolist():
        tail = tokenizer.decode(tokens[row, -4:].tolist(), skip_special_tokens=False)
        if stop_text in tail:
            hit[row] = True
    return hit


def blank_line_ids(tokenizer, stop_text: str | None = "\n\n") -> set[int]:
    """Ids of the tokens that hold a blank line (or `stop_text`), computed once per tokenizer."""
    cached = getattr(tokenizer, "_retrikt_blank_line_ids", None)
    if cached is not None and cached[0] == stop_text:
        return cached[1]
    marks = ("\n\n", "\r\n\r\n") + ((stop_text,) if stop_text else ())
    pieces = tokenizer.batch_decode([[i] for i in range(len(tokenizer))], skip_special_tokens=False)
    ids = {i for i, piece in enumerate(pieces) if any(m in piece for m in marks)}
    try:
        tokenizer._retrikt_blank_line_ids = (stop_text, ids)
    except AttributeError:  # a tokenizer that refuses attributes: recomputed next call
        pass
    return ids


def _at_line_end(tokenizer, tokens: torch.Tensor, alive: torch.Tensor, candidates: torch.Tensor, stop_when,
                 next_header, forced: dict[int, list[int]]) -> torch.Tensor:
    """Rows whose newest token holds a line break are decoded once: the complete ones are returned as done, the
    others get the next header queued in `forced` (when `next_header` gives one)."""
    done = torch.zeros_like(candidates)
    for pos in torch.nonzero(candidates).flatten().tolist():
        if "\n" not in tokenizer.decode(tokens[pos, -1:].tolist(), skip_special_tokens=True):
            continue
        text = tokenizer.decode(tokens[pos].tolist(), skip_special_tokens=True)
        if stop_when is not None and stop_when(text):
            done[pos] = True
            continue
        row = int(alive[pos])
        if next_header is not None and not forced.get(row):
            header = next_header(text)
            if header:
                forced[row] = tokenizer(header, add_special_tokens=False).input_ids
    return done


def _clean(tokenizer, ids: list[int], stop_ids: set[int], stop_text: str | None) -> str:
    ids = [i for i in ids if i not in stop_ids]
    text = tokenizer.decode(ids, skip_special_tokens=True)
    if stop_text and stop_text in text:
        text = text[: text.index(stop_text)]
    return text
