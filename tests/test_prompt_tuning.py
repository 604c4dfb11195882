import pytest
import torch

from retrikt.config import GenerationConfig, PromptTuningConfig
from retrikt.generate.generation import generate_samples
from retrikt.generate.prompt_tuning import continuation_text, load_soft_prompt, save_adapter, training_batch, tune_soft_prompt
from retrikt.teacher.sampling import filter_top_p, prompt_embeddings, sample


def _greedy(teacher, soft_prompt, prompt_text, n_tokens=12, use_cache=True):
    embeds = prompt_embeddings(teacher.model, soft_prompt, teacher.encode(prompt_text), 1)
    return sample(teacher.model, teacher.tokenizer, embeds, max_new_tokens=n_tokens, temperature=0.0,
                  stop_text=None, stop_ids=set(), use_cache=use_cache).tokens[0].tolist()


def test_training_batch_masks_prompt_and_padding(tiny_teacher, sst2):
    batch = training_batch(tiny_teacher, sst2, sst2.train[:3])
    for row in range(3):
        ex = sst2.train[row]
        prompt_len = len(tiny_teacher.encode(sst2.generation_prompt(ex.label)))
        target = tiny_teacher.encode(continuation_text(sst2, ex.fields)) + [tiny_teacher.tokenizer.eos_token_id]
        labels = batch["labels"][row]
        assert (labels[:prompt_len] == -100).all()
        assert labels[prompt_len: prompt_len + len(target)].tolist() == target
        assert (labels[prompt_len + len(target):] == -100).all()
        assert batch["attention_mask"][row].sum() == prompt_len + len(target)


def test_tuning_step_moves_only_the_soft_prompt(tiny_teacher, sst2):
    frozen_before = {n: p.clone() for n, p in tiny_teacher.model.named_parameters()}
    peft_model, soft_prompt, report = tune_soft_prompt(
        tiny_teacher, sst2, PromptTuningConfig(num_virtual_tokens=4, steps=1, batch_size=2, learning_rate=0.1)
    )
    initial = torch.stack([tiny_teacher.model.get_input_embeddings().weight[i]
                           for i in (tiny_teacher.encode(sst2.description) * 4)[:4]])
    assert report.trainable_params == 4 * 32
    assert not torch.allclose(soft_prompt, initial), "soft prompt did not move"
    for name, param in tiny_teacher.model.named_parameters():
        assert torch.equal(param, frozen_before[name]), f"frozen {name} changed"
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("prompt_encoder" in n for n in trainable)


def test_tuned_generation_differs_from_base_and_cache_does_not_matter(tiny_teacher, sst2, tmp_path):
    # Teach one example hard: its loss must fall far, and greedy generation must change.
    one = [e for e in sst2.train if e.label == "positive"][:1]
    task = type(sst2)(**{**sst2.__dict__, "train": one})
    peft_model, soft_prompt, report = tune_soft_prompt(
        tiny_teacher, task, PromptTuningConfig(num_virtual_tokens=8, steps=60, batch_size=1, learning_rate=0.3)
    )
    assert report.losses[-1] < report.losses[0] / 2
    prompt = task.generation_prompt("positive")
    tuned = _greedy(tiny_teacher, soft_prompt, prompt)
    base = _greedy(tiny_teacher, None, prompt)
    assert tuned != base
    assert _greedy(tiny_teacher, soft_prompt, prompt, use_cache=False) == tuned
    # Our loop places the soft prompt exactly where PEFT does: PEFT's own forward gives the same greedy token.
    ids = torch.tensor([tiny_teacher.encode(prompt)])
    peft_next = peft_model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, -1].argmax().item()
    assert peft_next == tuned[0]
    # Saved adapter round-trips through PEFT's format.
    save_adapter(peft_model, tmp_path / "adapter")
    assert torch.allclose(load_soft_prompt(tmp_path / "adapter"), soft_prompt)


def test_sampling_with_and_without_cache_matches_at_temperature(tiny_teacher):
    soft = torch.randn(4, 32)
    embeds = prompt_embeddings(tiny_teacher.model, soft, tiny_teacher.encode("Label: positive\nReview:"), 3)
    runs = [sample(tiny_teacher.model, tiny_teacher.tokenizer, embeds, max_new_tokens=10, temperature=1.0,
                   top_p=0.9, stop_text=None, use_cache=cache, generator=torch.Generator().manual_seed(5))
            for cache in (True, False)]
    assert torch.equal(runs[0].tokens, runs[1].tokens)
    assert torch.allclose(runs[0].logprobs, runs[1].logprobs, atol=1e-4)


@pytest.mark.parametrize(
    "probs,top_p,kept",
    [([0.5, 0.3, 0.2], 0.5, [True, False, False]), ([0.5, 0.3, 0.2], 0.8, [True, True, False]),
     ([0.5, 0.3, 0.2], 0.81, [True, True, True]), ([0.2, 0.5, 0.3], 0.6, [False, True, True]),
     ([0.9, 0.05, 0.05], 0.1, [True, False, False]), ([0.4, 0.6], 1.0, [True, True])],
)
def test_filter_top_p(probs, top_p, kept):
    logits = torch.tensor(probs).log().unsqueeze(0)
    out = filter_top_p(logits, top_p)[0]
    assert (out > float("-inf")).tolist() == kept


def test_generation_counts_truncated_and_honours_cancel(tiny_teacher, sst2):
    config = GenerationConfig(samples_per_label=4, batch_size=2, max_new_tokens=3, temperature=1.0)
    result = generate_samples(tiny_teacher, sst2, None, config)
    assert len(result.samples) == 8
    # A random model rarely stops within 3 tokens; whatever was cut by the budget is never parsed.
    assert all(s.fields is None for s in result.samples if s.truncated)
    calls = []
    stopped = generate_samples(tiny_teacher, sst2, None, config,
                               progress=lambda d, t, new: calls.append(d), should_stop=lambda: len(calls) >= 1)
    assert stopped.cancelled and len(stopped.samples) == 2 and calls == [2]


def test_rows_that_stop_early_leave_the_batch_without_disturbing_the_others(tiny_teacher):
    # Stop ids picked from an unstopped run, so rows finish at different steps and get pruned from the KV cache.
    embeds = torch.randn(5, 6, 32, generator=torch.Generator().manual_seed(3))
    free = sample(tiny_teacher.model, tiny_teacher.tokenizer, embeds, max_new_tokens=12, temperature=0.0,
                  stop_ids=set(), stop_text=None).tokens
    stop_ids = {int(free[0, 2]), int(free[1, 6])}
    kwargs = dict(max_new_tokens=12, temperature=0.0, stop_ids=stop_ids, stop_text=None)
    batched = sample(tiny_teacher.model, tiny_teacher.tokenizer, embeds, **kwargs)
    lengths = batched.mask.sum(1).tolist()
    assert len(set(lengths)) > 1, "rows should stop at different steps for this test to mean anything"
    for row in range(5):
        alone = sample(tiny_teacher.model, tiny_teacher.tokenizer, embeds[row:row + 1], **kwargs)
        n = lengths[row]
        assert alone.mask.sum() == n
        assert batched.tokens[row, :n].tolist() == alone.tokens[0, :n].tolist()
        assert torch.allclose(batched.logprobs[row, :n], alone.logprobs[0, :n], atol=1e-4)
        assert bool(batched.stopped[row]) == bool(alone.stopped[0])
    no_cache = sample(tiny_teacher.model, tiny_teacher.tokenizer, embeds, use_cache=False, **kwargs)
    per_row = sample(tiny_teacher.model, tiny_teacher.tokenizer, embeds, share_prefix=False, **kwargs)
    assert torch.equal(no_cache.tokens, batched.tokens) and torch.equal(per_row.tokens, batched.tokens)


def test_stop_when_ends_the_sample_at_the_line_break_that_completes_it(teacher, sst2):
    embeds = prompt_embeddings(teacher.model, None, teacher.encode(sst2.generation_prompt("positive")), 1)
    kwargs = dict(max_new_tokens=40, temperature=0.0, stop_ids=set(), stop_text=None)
    free = sample(teacher.model, teacher.tokenizer, embeds, **kwargs)
    assert "\n" in free.texts[0], "the teacher should end its sentence with a line break for this test to mean anything"
    cut = sample(teacher.model, teacher.tokenizer, embeds, stop_when=sst2.generation_complete, **kwargs)
    assert bool(cut.stopped[0]) and cut.mask.sum() < free.mask.sum()
    assert free.texts[0].startswith(cut.texts[0]) and cut.texts[0].count("\n") == 1
    assert sst2.parse_generation(cut.texts[0]) == sst2.parse_generation(free.texts[0]) is not None


@pytest.mark.slow
def test_forced_headers_keep_every_finished_pair_in_the_template(teacher):
    from retrikt.tasks import load_builtin

    rte = load_builtin("RTE")
    embeds = prompt_embeddings(teacher.model, None, teacher.encode(rte.generation_prompt("entailment")), 4)
    forced = sample(teacher.model, teacher.tokenizer, embeds, max_new_tokens=80, temperature=0.9, top_p=0.95,
                    stop_when=rte.generation_complete, next_header=rte.next_generation_header,
                    generator=torch.Generator().manual_seed(2))
    finished = [t for t, done in zip(forced.texts, forced.stopped.tolist()) if done]
    assert finished, "some of the four samples should finish within the budget for this test to mean anything"
    # A finished row ended complete (never at eos or a blank line before its hypothesis), so it parses.
    assert all(rte.parse_generation(t) is not None for t in finished)
    assert all("\nHypothesis:" in t for t in finished)


@pytest.mark.parametrize("task_name, force, forced", [("SST-2", True, False), ("SST-2", False, False),
                                                     ("RTE", True, True), ("RTE", False, False)])
def test_force_headers_only_for_multi_field_tasks(tiny_teacher, monkeypatch, task_name, force, forced):
    # A one-field task has no header to write: forcing it would only mask eos and run every review to the budget.
    import retrikt.generate.generation as generation
    from retrikt.tasks import load_builtin

    seen = []
    real = generation.sample
    monkeypatch.setattr(generation, "sample", lambda *a, **kw: seen.append(kw["next_header"]) or real(*a, **kw))
    config = GenerationConfig(samples_per_label=1, batch_size=1, max_new_tokens=2, force_headers=force)
    generate_samples(tiny_teacher, load_builtin(task_name), None, config)
    assert seen and all((header is not None) == forced for header in seen)


def test_cancel_stops_inside_a_batch_and_keeps_none_of_it(tiny_teacher, sst2):
    asked = []

    def should_stop():
        asked.append(1)
        return len(asked) > 4  # the loop's own check, then three sampling steps, then cancel

    config = GenerationConfig(samples_per_label=4, batch_size=4, max_new_tokens=40, temperature=1.0)
    result = generate_samples(tiny_teacher, sst2, None, config, should_stop=should_stop)
    assert result.cancelled and result.samples == []
    assert len(asked) <= 6, "the batch should stop at the token where cancel was asked, not run to its budget"


def test_a_batch_of_one_prompt_is_prefilled_once_with_the_same_result(tiny_teacher):
    # Rows sharing one prompt take the prefill-once path: greedy and sampled tokens must match the per-row prefill,
    # the uncached path and a batch of one, token for token.
    from retrikt.teacher.sampling import shares_one_prompt

    soft = torch.randn(4, 32, generator=torch.Generator().manual_seed(2))
    embeds = prompt_embeddings(tiny_teacher.model, soft, tiny_teacher.encode("Label: negative\nReview:"), 4)
    assert shares_one_prompt(embeds) and not shares_one_prompt(embeds[:1])
    assert not shares_one_prompt(embeds + torch.arange(4.0).view(4, 1, 1))
    kwargs = dict(max_new_tokens=8, temperature=0.0, stop_ids=set(), stop_text=None)
    shared = sample(tiny_teacher.model, tiny_teacher.tokenizer, embeds, **kwargs)
    no_cache = sample(tiny_teacher.model, tiny_teacher.tokenizer, embeds, use_cache=False, **kwargs)
    per_row = sample(tiny_teacher.model, tiny_teacher.tokenizer, embeds, share_prefix=False, **kwargs)
    alone = sample(tiny_teacher.model, tiny_teacher.tokenizer, embeds[:1], **kwargs)
    assert torch.equal(shared.tokens, no_cache.tokens) and torch.equal(shared.tokens, per_row.tokens)
    assert torch.allclose(shared.logprobs, per_row.logprobs, atol=1e-5)
    assert all(torch.equal(row, alone.tokens[0]) for row in shared.tokens)
    assert torch.allclose(shared.logprobs, no_cache.logprobs, atol=1e-4)
    at_temperature = [sample(tiny_teacher.model, tiny_teacher.tokenizer, embeds, max_new_tokens=8, temperature=1.0,
                             stop_text=None, stop_ids=set(), use_cache=cache, share_prefix=share,
                             generator=torch.Generator().manual_seed(9))
                      for cache, share in ((True, True), (False, True), (True, False))]
    assert torch.equal(at_temperature[0].tokens, at_temperature[1].tokens)
    assert torch.equal(at_temperature[0].tokens, at_temperature[2].tokens)
    assert len({tuple(row.tolist()) for row in at_temperature[0].tokens}) > 1, "sampled rows should differ"
