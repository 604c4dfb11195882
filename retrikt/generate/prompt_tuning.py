"""Step 1: label-conditioned soft prompt tuning (PEFT prompt tuning, teacher frozen).

Each training text is `task.generation_prompt(label)` followed by the example's serialization and EOS; the loss is
on the example part only, so the soft prompt learns to *write* in-domain examples of the label it is told.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..config import PromptTuningConfig
from ..teacher.load import Teacher

ADAPTER_WEIGHTS = "adapter_model.safetensors"


@dataclass
class TuningReport:
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    trainable_params: int = 0
    cancelled: bool = False


def continuation_text(task, fields) -> str:
    """What the teacher should write after `generation_prompt(label)`: the serialization minus its first header."""
    text = task.serialize(fields)
    header = task.field_names[task.text_fields[0]] + ":"
    if not text.startswith(header):
        raise ValueError(f"task {task.name}: serialization does not start with its first header {header!r}")
    return text[len(header):]


def training_batch(teacher: Teacher, task, examples) -> dict[str, torch.Tensor]:
    """Right-padded ids with labels masked (-100) on the prompt and the padding."""
    rows = []
    for example in examples:
        prompt = teacher.encode(task.generation_prompt(example.label))
        target = teacher.encode(continuation_text(task, example.fields)) + [teacher.tokenizer.eos_token_id]
        rows.append((prompt + target, [-100] * len(prompt) + target))
    width = max(len(ids) for ids, _ in rows)
    pad = teacher.tokenizer.pad_token_id
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (ids, target) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, : len(ids)] = torch.tensor(target)
        attention[i, : len(ids)] = 1
    device = teacher.device
    return {"input_ids": input_ids.to(device), "attention_mask": attention.to(device), "labels": labels.to(device)}


def init_embeddings(teacher: Teacher, text: str, num_tokens: int, generator: torch.Generator) -> torch.Tensor:
    """Soft prompt initialised from the embeddings of `text`'s tokens (cycled), or random vocab rows if empty."""
    table = teacher.model.get_input_embeddings().weight.detach()
    ids = teacher.encode(text) if text else []
    if not ids:
        ids = torch.randint(0, table.shape[0], (num_tokens,), generator=generator).tolist()
    ids = (ids * (num_tokens // len(ids) + 1))[:num_tokens]
    return table[torch.tensor(ids, device=table.device)].float().clone()


def tune_soft_prompt(
    teacher: Teacher,
    task,
    config: PromptTuningConfig,
    *,
    seed: int = 13,
    on_step: Callable[[int, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
):
    """Train a PEFT prompt-tuning adapter on `task.train`; returns (peft_model, soft_prompt tensor, report).

    Only the soft prompt is trainable; the caller can check that with `report.trainable_params`.
    """
    from peft import PromptTuningConfig as PeftPromptTuningConfig
    from peft import get_peft_model

    generator = torch.Generator().manual_seed(seed)
    peft_config = PeftPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=config.num_virtual_tokens)
    peft_model = get_peft_model(teacher.model, peft_config)
    text = task.description if config.init_from_text else ""
    with torch.no_grad():
        weight = peft_model.prompt_encoder["default"].embedding.weight
        weight.copy_(init_embeddings(teacher, text, config.num_virtual_tokens, generator).to(weight))
    params = [p for p in peft_model.parameters() if p.requires_grad]
    report = TuningReport(trainable_params=sum(p.numel() for p in params))
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
    rng = random.Random(seed)
    order: list = []
    start = time.perf_counter()
    peft_model.train()
    from .generation import default_tuning_batch, default_tuning_steps

    batch_size = config.batch_size or default_tuning_batch(task)
    for step in range(config.steps or default_tuning_steps(task)):
        if should_stop is not None and should_stop():
            report.cancelled = True
            break
        batch = []
        while len(batch) < batch_size:
            if not order:
                order = list(task.train)
                rng.shuffle(order)
            batch.append(order.pop())
        loss = peft_model(**training_batch(teacher, task, batch)).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        report.losses.append(loss.item())
        if on_step is not None:
            on_step(step + 1, report.losses[-1])
    peft_model.eval()
    report.seconds = time.perf_counter() - start
    return peft_model, current_soft_prompt(peft_model), report


def current_soft_prompt(peft_model) -> torch.Tensor:
    return peft_model.get_prompt_embedding_to_save("default").detach().clone()


def save_adapter(peft_model, directory: str | Path) -> Path:
    directory = Path(directory)
    peft_model.save_pretrained(directory)
    return directory


def load_soft_prompt(directory: str | Path) -> torch.Tensor:
    """Read the soft prompt from a saved PEFT prompt-tuning adapter folder."""
    from safetensors.torch import load_file

    path = Path(directory) / ADAPTER_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"no prompt-tuning adapter in {Path(directory).name} (missing {ADAPTER_WEIGHTS})")
    return load_file(str(path))["prompt_embeddings"]
