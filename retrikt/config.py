"""Run configuration: small dataclasses; each field has its default and allowed range or choices on its line
(`knob`) and its docstring right below. A field typed `X | None` takes null (YAML) or None for "the task's default".

The CLI and the UI build the same `RunConfig`; `save_yaml`/`load_yaml` let a UI run be replayed headless.
Unknown, null (where a value is needed), mistyped or out-of-range fields are refused with a one-line `ConfigError`
that names the field. A saved run's `config.yaml` may hold settings that were removed since (`REMOVED`): reading
a saved run drops them with a note; a user's own YAML or `--set` naming one is refused.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError


def knob(default: Any, low: float | None = None, high: float | None = None, *, choices: tuple = ()) -> Any:
    """A config field with its default and the values it accepts: `[low, high]` for a number, or `choices`."""
    metadata = {"range": (low, high)} if low is not None else {}
    if choices:
        metadata["choices"] = tuple(choices)
    return field(default=default, metadata=metadata)


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
    hub_fallback: bool = True
    """When the packaged model's pip package is not installed (e.g. on a hosted Space), load the hub id it was
    converted from (`HuggingFaceTB/SmolLM2-135M-Instruct`) instead of failing."""


@dataclass
class ScorerConfig:
    """How the teacher labels samples (its soft labels are the knowledge the student retrieves)."""

    demos_total: int | None = knob(None, 1, 32)
    """Few-shot demonstrations in the classification prompt (spread evenly over labels, at least one each). None = the
    task's default: two a label for a one-text task with 3 to 6 labels, else 4."""
    demo_candidates: int | None = knob(None, 1, 64)
    """Random demo sets tried; the one with the best accuracy on the held-out rest of the train split wins.
    None = the task's default (8 for one text field, 4 for one text field with two demonstrations a label, 2 for pairs,
    whose long prompts make each try ~4x dearer)."""
    calibration_inputs: int = knob(128, 0, 5000)
    """Unlabeled in-domain inputs whose mean class probability is divided out (label-prior calibration)."""
    batch_size: int = knob(16, 1, 256)
    """Queries scored per forward pass (they share the demo prefix's KV cache)."""
    answer_score: str = knob("sum", choices=("sum", "mean"))  # design choice: see bench/results/teacher_check.md
    """A class's score from its answer's tokens: `sum` of their log-probabilities (the answer's likelihood) or their
    `mean` (length-normalised, so a long answer is not penalised for its length). One-token answers: the same."""


@dataclass
class PromptTuningConfig:
    """Step 1: label-conditioned soft prompt tuning of the frozen teacher."""

    num_virtual_tokens: int = knob(16, 1, 256)
    """Trainable soft prompt length."""  # design choice: 16 tokens; the paper does not give its length
    steps: int | None = knob(None, 1, 100_000)
    """Optimizer steps over the train split (examples are cycled); None = the task's default (40 for one text field,
    16 for pairs, whose ~3x longer sequences make a step ~3x dearer)."""
    batch_size: int | None = knob(None, 1, 256)
    """Examples per optimizer step; None = the task's default (8 for one text field, 4 for pairs)."""
    learning_rate: float = knob(0.03, 1e-06, 10.0)
    """AdamW learning rate of the soft prompt."""  # design choice: prompt tuning needs a large LR on few params
    init_from_text: bool = True
    """Initialise the soft prompt from the embeddings of the task description (else random vocab rows)."""


@dataclass
class GenerationConfig:
    """Sampling the teacher (with its soft prompt) to write new labelled examples."""

    samples_per_label: int | None = knob(None, 1, 100_000)
    """Samples to generate for each label; None = the task's default (SST-2: 280, pair tasks: 118)."""
    batch_size: int = knob(64, 1, 512)
    """Sequences sampled together (all of one label, so prompts have equal length and need no padding)."""
    # design choice: 64 measured 2.55-2.82 SST-2 samples/s vs 2.14-2.16 at 32 and 1.59 at 16 on 2 CPU cores
    max_new_tokens: int | None = knob(None, 1, 2048)
    """Token budget per sample; None = derived from the task's own train examples (see `budget_percentile`)."""
    budget_percentile: float = knob(95.0, 50.0, 100.0)
    """With `max_new_tokens` None: the budget is this percentile of the train examples' token lengths, written as the
    teacher writes a sample, plus `budget_margin` (a sample cut by the budget is dropped)."""
    # design choice: the 95th percentile; a fixed 48 dropped 61% of the samples of a task whose texts average ~40 words
    budget_margin: int = knob(16, 0, 1024)
    """Tokens added to that percentile (generated texts run a little longer than the few train examples)."""
    budget_max: int = knob(256, 16, 2048)
    """Ceiling of the derived budget: one long sample holds its whole batch of 64 at the budget."""
    temperature: float = knob(0.9, 0.0, 5.0)
    """Sampling temperature; 0 means greedy."""
    top_p: float = knob(0.95, 0.01, 1.0)
    """Nucleus sampling mass."""
    seed: int = knob(13, 0, 2**31 - 1)
    """Sampling seed."""
    force_headers: bool = True  # design choice: the tiny teacher often stopped after a premise (RTE parse 66% -> 89%)
    """Pair and multi-field tasks: write the next field's header after each line and keep a sample from ending
    before its last field (template-constrained decoding); off = the teacher must keep the template itself."""


@dataclass
class StoreConfig:
    """Where the knowledge store lives."""

    url: str | None = None
    """Chroma server URL (`http://host:port`) for scale-out; empty = embedded store in the run folder."""
    embedder: str | None = None
    """Sentence embedder for store keys; empty = the packaged all-MiniLM-L6-v2."""
    hnsw_max_neighbors: int = knob(16, 2, 512)
    """Links per node of the HNSW graph (Chroma's `max_neighbors`, the "M" of HNSW) in the store's collection and
    its student-key index; more raise recall and memory. Fixed when a collection is created: an existing one keeps
    its own."""
    hnsw_ef_construction: int = knob(100, 1, 10_000)
    """Candidates kept while inserting into the HNSW graph; more build a better graph, slower. Fixed when a
    collection is created: an existing one keeps its own."""
    hnsw_ef_search: int = knob(100, 1, 10_000)
    """Candidates kept while searching (at least the k asked for); more raise recall and latency. Also written to
    existing collections when a store or key index is opened; Chroma uses it from its next load of the index (a new
    process, or a restarted server), not in a process or server that already holds it."""

    def hnsw(self) -> dict[str, int]:
        """These HNSW settings under Chroma's configuration names."""
        return {"max_neighbors": self.hnsw_max_neighbors, "ef_construction": self.hnsw_ef_construction,
                "ef_search": self.hnsw_ef_search}


@dataclass
class StudentConfig:
    """Step 3: a small encoder student that retrieves the teacher's soft labels from the store (ReAugKD-style)."""

    encoder: str = "tiny"
    """`tiny` (a BERT-style encoder built from this config, vocabulary trimmed to the task's text pool) or a
    HF encoder id / local folder (kept whole; its compression ratio is reported either way)."""
    max_params_fraction: float = knob(0.01, 1e-05, 10.0)
    """Parameter budget of the tiny student as a fraction of the teacher's; the embedding width shrinks to fit."""
    hidden_size: int = knob(128, 8, 4096)
    """Transformer width of the tiny student."""
    num_layers: int = knob(3, 1, 48)
    """Transformer layers of the tiny student."""
    num_heads: int = knob(4, 1, 64)
    """Attention heads of the tiny student."""
    intermediate_size: int = knob(256, 8, 16_384)
    """Feed-forward width of the tiny student."""
    max_length: int = knob(128, 8, 2048)
    """Input tokens the student reads (longer inputs are cut)."""
    key_dim: int = knob(64, 2, 4096)
    """Width of the learned retrieval-key projection."""
    init: str = knob("minilm", choices=('minilm', 'random'))
    """`minilm`: token embeddings are a PCA projection of the packaged MiniLM's, then the encoder is pretrained to
    reproduce MiniLM sentence embeddings on the unlabeled pool; `random`: neither (quicker, ~11 points lower on
    SST-2: bench/results/student_init.md)."""
    pretrain_epochs: int = knob(4, 0, 1000)
    """Epochs of MiniLM sentence-embedding distillation over the unlabeled pool (with `init: minilm`)."""
    pretrain_pool: int = knob(4000, 0, 1_000_000)
    """Unlabeled inputs (plus store texts) used for that distillation."""
    epochs: int = knob(8, 1, 10_000)
    """Training epochs over the store entries and the train split."""  # design choice: longer overfit SST-2 stores
    batch_size: int = knob(32, 2, 4096)
    """Examples per optimizer step."""
    learning_rate: float = knob(2e-3, 1e-06, 1.0)
    """AdamW learning rate."""
    k: int = knob(8, 1, 1000)
    """Neighbours retrieved per query."""
    temperature: float = knob(0.05, 0.001, 10.0)
    """Neighbour weights are softmax(cosine similarity / temperature)."""
    beta: float = knob(0.5, 0.0, 1.0)
    """Prediction = (1 - beta) * student softmax + beta * neighbour mix. With `tune_beta` the rule picks it (this
    value only breaks ties of the dev-split fallback); without, it is used as given."""
    tune_beta: bool = True
    """Pick beta in 0, 0.25, ..., 1: the one whose predictions agree most with the teacher's on 256 held-out inputs
    it labels for this (never a train, dev, test or store input; ties: the larger beta). Retrieval stays off
    (beta 0) when the teacher is no better than the majority class on the gold train examples it was not shown, or
    answers no more dev examples right than the student alone. A task with no unlabeled inputs picks beta on the dev
    split instead (see `student.stage.choose_beta`)."""
    store_filter: str = knob("agree", choices=('none', 'agree', 'weight'))
    """Which store entries the student learns from and retrieves: `agree` keeps entries whose teacher label equals
    the intended label; `weight` keeps all, weighted by the teacher's probability of the intended label; `none`
    keeps all unweighted."""
    teacher_unlabeled: int = knob(0, 0, 1_000_000)
    """Unlabeled in-domain inputs (never a train/dev/test input) the teacher labels into the store (source
    `unlabeled`, label = the teacher's) before the student trains; 0 = the store holds only step-1/PPO samples."""

    def __post_init__(self):
        _check_choices(self, "student.")
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"`student.hidden_size` ({self.hidden_size}) must be a multiple of `student.num_heads`")


@dataclass
class PPOConfig:
    """Step 2: PPO on the step-1 soft prompt (teacher frozen) with a quality + diversity reward."""

    enabled: bool = False  # design choice: off: +0.7 ± 0.8 points for a third of the run (bench/results/ppo.md)
    """Whether `run` (and the Classroom's live run) does step 2; the `ppo` command and the PPO tab always do. Off by
    default: no reward setting tried bought a full point of student + retrieval for its minutes."""
    updates: int = knob(24, 0, 100_000)
    """PPO updates; each samples one rollout batch (labels take turns) and optimises on it (0: `run` skips PPO)."""
    rollout_batch_size: int = knob(8, 1, 1024)
    """Sequences sampled per update, all for one label (equal prompt lengths, no padding)."""
    minibatch_size: int = knob(4, 1, 1024)
    """Sequences per gradient step inside an update."""
    epochs: int = knob(2, 1, 64)
    """Passes over each rollout batch."""
    learning_rate: float = knob(0.01, 1e-07, 10.0)  # design choice: below step 1's 0.03, PPO steps must stay small
    """Adam learning rate of the soft prompt (the value head's is fixed, see `ppo.trainer`)."""
    clip_range: float = knob(0.2, 0.01, 10.0)
    """PPO ratio clip epsilon."""
    kl_coef: float = knob(0.05, 0.0, 100.0)
    """Initial weight of the per-token KL penalty to the frozen step-1 prompt (subtracted from the reward); an
    adaptive controller (Ziegler et al. 2019) then moves it so the KL tracks `kl_target`."""
    kl_target: float = knob(4.0, 0.01, 1000.0)
    """Target KL per sample, in nats, for the adaptive controller."""
    temperature: float = knob(1.0, 0.05, 5.0)
    """Rollout temperature; the policy is softmax(logits / temperature) with no top-p, so rollouts are on-policy."""
    max_new_tokens: int | None = knob(None, 1, 2048)
    """Rollout token budget; None = derived from the task's train examples as for generation (see
    `generation.budget_percentile`)."""
    weight_label: float = knob(1.0, 0.0, 100.0)
    """Weight of the label reward: the teacher's calibrated p(intended label | sample)."""
    weight_diversity: float = knob(0.5, 0.0, 100.0)
    """Weight of the diversity reward (1 - max cosine similarity to the batch and the store)."""
    weight_validity: float = knob(0.5, 0.0, 100.0)
    """Weight of the validity reward (parses and is not a copy of a train example)."""
    checkpoint_every: int = knob(4, 1, 100_000)
    """Save prompt, value head, optimizer and KL coefficient every this many updates (and on cancel/finish)."""
    resume: bool = True
    """Continue from the run's PPO checkpoint when there is one."""


@dataclass
class RunConfig:
    """One run of the pipeline; saved as `config.yaml` in the run folder."""

    task: str = "SST-2"
    """Built-in task (SST-2, CB, RTE, COPA, BoolQ, WiC, MRPC) or a task saved in `<workspace>/tasks/` from a file or
    a hub dataset (`python -m retrikt task import|hub`, or the Setup tab)."""
    seed: int = knob(13, 0, 2**31 - 1)
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
    student: StudentConfig = field(default_factory=StudentConfig)
    """Step 3 student and its retrieval."""
    ppo: PPOConfig = field(default_factory=PPOConfig)
    """Step 2 PPO on the soft prompt."""


def _check_choices(config: Any, prefix: str) -> None:
    """Refuse a value outside a field's `choices` (also for a config built in Python, not only from data)."""
    for f in dataclasses.fields(config):
        choices = f.metadata.get("choices")
        if choices and getattr(config, f.name) not in choices:
            raise ConfigError(f"`{prefix}{f.name}` = {getattr(config, f.name)!r}; choose one of {', '.join(choices)}")


REMOVED = {
    # Ablations whose settings lost: the bench script that ran them keeps them (bench/results/ppo.md, ablation.md).
    **{f"ppo.{k}": "a PPO ablation setting that lost; bench/ppo.py keeps it, in bench/ppo_levers.py"
       for k in ("advantage", "entropy_coef", "weight_novelty", "novelty_window", "novelty_count_cap",
                 "validity_gate", "min_words_quantile", "label_reward", "kl_length_neutral")},
    "student.beta_rule": "beta is picked by the teacher rule; the dev rule lost in bench/unlabeled_ablation.py",
    "student.teacher_beats_student": "always on; bench/beta_guard.py shows each run without it",
    # Fixed constants now, at their old defaults (see the module that uses each).
    **{f"ppo.{k}": "fixed in retrikt/ppo/trainer.py"
       for k in ("value_learning_rate", "value_clip_range", "gamma", "lam", "max_grad_norm", "whiten_advantages")},
    **{f"ppo.{k}": "fixed in retrikt/ppo/core.py, the KL coefficient always adapts"
       for k in ("kl_controller", "kl_horizon")},
    **{f"student.{k}": "fixed in retrikt/student/stage.py"
       for k in ("beta_heldout", "beta_min_gain", "teacher_trust_alpha")},
    **{f"student.{k}": "fixed in retrikt/student/train.py"
       for k in ("ce_weight", "kd_weight", "relational_weight", "retrieval_weight", "relational_temperature",
                 "min_confidence", "gold_only_epochs")},
}
"""Settings that were removed: a saved run's `config.yaml` (or trained student) holding one still loads (the key is
dropped with a note); a user's YAML or `--set` naming one is refused, saying where it went."""

_ZERO_WAS_DEFAULT = ("scorer.demo_candidates", "prompt_tuning.steps", "prompt_tuning.batch_size",
                     "generation.samples_per_label", "generation.max_new_tokens", "ppo.max_new_tokens")
"""Fields that wrote "the task's default" as 0 before None took that role: 0 in a saved run reads as None."""

log = logging.getLogger(__name__)


def _unknown(key: str) -> ConfigError:
    if key in REMOVED:
        return ConfigError(f"`{key}` was removed from the config: {REMOVED[key]}; delete it")
    return ConfigError(f"unknown field `{key}` (`python -m retrikt config` lists the fields)")


def _build(cls: type, data: Any, prefix: str = "") -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"`{prefix.rstrip('.') or 'config'}` must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        key = prefix + str(name)
        if name not in fields:
            raise _unknown(key)
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            # design choice: a section header left empty (all its lines commented out) keeps that section's defaults
            kwargs[name] = _build(kind, {} if value is None else value, key + ".")
            continue
        kwargs[name] = _coerce(key, value, kind, fields[name].metadata)
    return cls(**kwargs)


def _coerce(key: str, value: Any, kind: Any, metadata: Any) -> Any:
    """`value` checked against the field's type (`int`, `float`, `bool`, `str`, or one of them `| None`) and its
    range or choices (`knob`)."""
    options = typing.get_args(kind) or (kind,)
    optional = type(None) in options
    expected = next(t for t in options if t is not type(None))
    if value is None:
        if optional:
            return None
        raise ConfigError(f"`{key}` must be {expected.__name__}, got null")
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if (expected is bool) != isinstance(value, bool) or not isinstance(value, expected):
        raise ConfigError(f"`{key}` must be {expected.__name__}{' or null' if optional else ''}, got {value!r}")
    if "range" in metadata:
        low, high = metadata["range"]
        if not low <= value <= high:
            hint = " (or null: the task's default)" if optional else ""
            raise ConfigError(f"`{key}` = {value} is out of range [{low}, {high}]{hint}")
    if "choices" in metadata and value not in metadata["choices"]:
        raise ConfigError(f"`{key}` = {value!r}; choose one of {', '.join(metadata['choices'])}")
    return value


def field_type(key: str) -> tuple[type, bool]:
    """(value type, whether it takes None) of the dotted field `key`, e.g. `(int, True)` for `prompt_tuning.steps`."""
    cls: Any = RunConfig
    *parents, leaf = key.split(".")
    for part in parents:
        cls = typing.get_type_hints(cls)[part]
    options = typing.get_args(typing.get_type_hints(cls)[leaf]) or (typing.get_type_hints(cls)[leaf],)
    return next(t for t in options if t is not type(None)), type(None) in options


def from_dict(data: dict[str, Any]) -> RunConfig:
    """Build a validated RunConfig from plain data (YAML, UI form, CLI overrides)."""
    return _build(RunConfig, data)


def from_saved(data: dict[str, Any], source: str = "a saved run") -> RunConfig:
    """`from_dict` for a config this program wrote earlier (a run's `config.yaml`): settings removed since are
    dropped with a note, and an old 0 meaning "the task's default" reads as None."""
    if not isinstance(data, dict):
        return from_dict(data)
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for key in REMOVED:
        section, name = key.split(".")
        if isinstance(data.get(section), dict) and name in data[section]:
            log.info("%s: `%s` = %r dropped (%s)", source, key, data[section].pop(name), REMOVED[key])
    for key in _ZERO_WAS_DEFAULT:
        section, name = key.split(".")
        if isinstance(data.get(section), dict) and data[section].get(name) == 0:
            data[section][name] = None
    return from_dict(data)


def to_dict(config: RunConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def load_yaml(path: str | os.PathLike, saved_run: bool = False) -> RunConfig:
    """The config in YAML file `path`; `saved_run`: a run's own `config.yaml` (read with `from_saved`)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config {Path(path).name}: {exc}") from exc
    return from_saved(data, str(path)) if saved_run else from_dict(data)


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
                raise _unknown(key)
            node = node[part]
        if leaf not in node:
            raise _unknown(key)
        node[leaf] = value
    return from_dict(data)


def parse_sets(items: list[str]) -> dict[str, Any]:
    """`["generation.temperature=0.7", ...]` (the CLI's `--set`) as dotted overrides, values read as YAML."""
    values = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        values[key.strip()] = yaml.safe_load(raw)
    return values


@dataclass(frozen=True)
class Preset:
    """A named set of settings for a purpose, as dotted overrides on top of any config (the CLI's `--preset`)."""

    about: str
    overrides: dict
    eval_limit: int | None = None
    """Test examples the evaluation scores (None: the whole test split)."""


PRESETS = {
    # design choice: the classroom preset trades samples and steps for time; what it costs in accuracy is measured
    # in bench/results/quick_run.md and said in the Classroom tab.
    "quick": Preset(
        "Quick classroom run: step 1, the student and the evaluation live, with fewer samples and steps.",
        {"scorer.demo_candidates": 2, "scorer.calibration_inputs": 32, "prompt_tuning.steps": 4,
         "generation.samples_per_label": 30, "ppo.updates": 1, "student.pretrain_epochs": 2,
         "student.pretrain_pool": 1500},
        eval_limit=100,
    ),
}


def apply_preset(config: RunConfig, name: str | None) -> RunConfig:
    """`config` with preset `name`'s overrides (unchanged for None)."""
    if not name:
        return config
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return override(config, PRESETS[name].overrides)
