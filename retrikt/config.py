"""Run configuration: small dataclasses, one docstring per field.

The CLI and the UI build the same `RunConfig`; `save_yaml`/`load_yaml` let a UI run be replayed headless.
Unknown or out-of-range fields are refused with a `ConfigError` that names the field.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration value the user can fix (unknown field, wrong type, out of range)."""


@dataclass
class TeacherConfig:
    model: str = "packaged:smollm2"
    """Teacher LLM: `packaged:smollm2` (SmolLM2-135M-Instruct shipped as a pip package), a HF hub id,
    a local model directory, or a path to a `.gguf` file."""
    gguf_file: str | None = None
    """GGUF file name inside `model` when `model` is a hub id or directory holding GGUF files."""
    device: str = "auto"
    """`auto` (CUDA when present, else CPU), `cpu`, `cuda`, `cuda:1`, ..."""
    dtype: str = "auto"
    """`auto` (bf16 on CUDA, fp32 on CPU), `float32`, `bfloat16`, `float16`."""


@dataclass
class ScorerConfig:
    """How the teacher labels samples (its soft labels are the knowledge the student retrieves)."""

    demos_total: int = 4
    """Few-shot demonstrations in the classification prompt (spread evenly over labels, at least one each)."""
    demo_candidates: int = 8
    """Random demo sets tried; the one with the best accuracy on the held-out rest of the train split wins."""
    calibration_inputs: int = 128
    """Unlabeled in-domain inputs whose mean class probability is divided out (label-prior calibration)."""
    batch_size: int = 16
    """Queries scored per forward pass (they share the demo prefix's KV cache)."""


@dataclass
class PromptTuningConfig:
    """Step 1: label-conditioned soft prompt tuning of the frozen teacher."""

    num_virtual_tokens: int = 16
    """Trainable soft prompt length."""  # design choice: 16 tokens; the paper does not give its length
    steps: int = 40
    """Optimizer steps over the train split (examples are cycled)."""
    batch_size: int = 8
    """Examples per optimizer step."""
    learning_rate: float = 0.03
    """AdamW learning rate of the soft prompt."""  # design choice: prompt tuning needs a large LR on few params
    init_from_text: bool = True
    """Initialise the soft prompt from the embeddings of the task description (else random vocab rows)."""


@dataclass
class GenerationConfig:
    """Sampling the teacher (with its soft prompt) to write new labelled examples."""

    samples_per_label: int = 0
    """Samples to generate for each label; 0 = the task's default (SST-2: 260, pair tasks: 110)."""
    batch_size: int = 16
    """Sequences sampled together (all of one label, so prompts have equal length and need no padding)."""
    max_new_tokens: int = 0
    """Token budget per sample; 0 = the task's default (48 for one text field, 128 for pairs)."""
    temperature: float = 0.9
    """Sampling temperature; 0 means greedy."""
    top_p: float = 0.95
    """Nucleus sampling mass."""
    seed: int = 13
    """Sampling seed."""


@dataclass
class StoreConfig:
    """Where the knowledge store lives."""

    url: str | None = None
    """Chroma server URL (`http://host:port`) for scale-out; empty = embedded store in the run folder."""
    embedder: str | None = None
    """Sentence embedder for store keys; empty = the packaged all-MiniLM-L6-v2."""


@dataclass
class RunConfig:
    """One run of the pipeline; saved as `config.yaml` in the run folder."""

    task: str = "SST-2"
    """Built-in task name (SST-2, CB, RTE, COPA, BoolQ, WiC, MRPC)."""
    seed: int = 13
    """k-shot split seed for GLUE tasks and the seed of every random choice in the run."""
    workspace: str = "workspace"
    """Folder holding runs, caches and stores."""
    run_name: str | None = None
    """Run folder name under `<workspace>/runs`; empty = `<task>-<timestamp>`."""
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    """Teacher model."""
    scorer: ScorerConfig = field(default_factory=ScorerConfig)
    """Teacher soft-label scorer."""
    prompt_tuning: PromptTuningConfig = field(default_factory=PromptTuningConfig)
    """Step 1 soft prompt tuning."""
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    """Sample generation."""
    store: StoreConfig = field(default_factory=StoreConfig)
    """Knowledge store."""


_RANGES: dict[str, tuple[float, float]] = {
    "seed": (0, 2**31 - 1),
    "scorer.demos_total": (1, 32),
    "scorer.demo_candidates": (1, 64),
    "scorer.calibration_inputs": (0, 5000),
    "scorer.batch_size": (1, 256),
    "prompt_tuning.num_virtual_tokens": (1, 256),
    "prompt_tuning.steps": (0, 100_000),
    "prompt_tuning.batch_size": (1, 256),
    "prompt_tuning.learning_rate": (1e-6, 10.0),
    "generation.samples_per_label": (0, 100_000),
    "generation.batch_size": (1, 512),
    "generation.max_new_tokens": (0, 2048),
    "generation.temperature": (0.0, 5.0),
    "generation.top_p": (0.01, 1.0),
    "generation.seed": (0, 2**31 - 1),
}


def _build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"`{prefix.rstrip('.') or 'config'}` must be a mapping, got {type(data).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown field(s) {', '.join(prefix + u for u in unknown)}; "
            f"known: {', '.join(prefix + k for k in known)}"
        )
    kwargs = {}
    for name, value in data.items():
        default = getattr(cls(), name)
        key = prefix + name
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value or {}, key + ".")
            continue
        kwargs[name] = _coerce(key, value, default)
    return cls(**kwargs)


def _coerce(key: str, value: Any, default: Any) -> Any:
    if value is None:
        return None
    expected = type(default) if default is not None else str
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if expected is bool and not isinstance(value, bool) or (
        expected in (int, float) and (isinstance(value, bool) or not isinstance(value, expected))
    ) or (expected is str and not isinstance(value, str)):
        raise ConfigError(f"`{key}` must be {expected.__name__}, got {value!r}")
    if key in _RANGES:
        low, high = _RANGES[key]
        if not low <= value <= high:
            raise ConfigError(f"`{key}` = {value} is out of range [{low}, {high}]")
    return value


def from_dict(data: dict[str, Any]) -> RunConfig:
    """Build a validated RunConfig from plain data (YAML, UI form, CLI overrides)."""
    return _build(RunConfig, data)


def to_dict(config: RunConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def load_yaml(path: str | os.PathLike) -> RunConfig:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config {Path(path).name}: {exc}") from exc
    return from_dict(data)


def save_yaml(config: RunConfig, path: str | os.PathLike) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False), encoding="utf-8")


def override(config: RunConfig, dotted: dict[str, Any]) -> RunConfig:
    """Apply `{"generation.temperature": 0.7}`-style overrides and re-validate."""
    data = to_dict(config)
    for key, value in dotted.items():
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"unknown field `{key}`")
            node = node[part]
        if leaf not in node:
            raise ConfigError(f"unknown field `{key}`")
        node[leaf] = value
    return from_dict(data)
