"""Run configuration: small dataclasses; each field has its default and allowed range or choices on its line
(`knob`) and its docstring right below.

The CLI and the UI build the same `RunConfig`; `save_yaml`/`load_yaml` let a UI run be replayed headless.
Unknown, mistyped or out-of-range fields are refused with a `ConfigError` that names the field.
"""
from __future__ import annotations

import dataclasses
import os
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

    demos_total: int = knob(4, 1, 32)
    """Few-shot demonstrations in the classification prompt (spread evenly over labels, at least one each)."""
    demo_candidates: int = knob(0, 0, 64)
    """Random demo sets tried; the one with the best accuracy on the held-out rest of the train split wins.
    0 = the task's default (8 for one text field, 2 for pairs, whose long prompts make each try ~4x dearer)."""
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
    steps: int = knob(0, 0, 100_000)
    """Optimizer steps over the train split (examples are cycled); 0 = the task's default (40 for one text field,
    16 for pairs, whose ~3x longer sequences make a step ~3x dearer)."""
    batch_size: int = knob(0, 0, 256)
    """Examples per optimizer step; 0 = the task's default (8 for one text field, 4 for pairs)."""
    learning_rate: float = knob(0.03, 1e-06, 10.0)
    """AdamW learning rate of the soft prompt."""  # design choice: prompt tuning needs a large LR on few params
    init_from_text: bool = True
    """Initialise the soft prompt from the embeddings of the task description (else random vocab rows)."""


@dataclass
class GenerationConfig:
    """Sampling the teacher (with its soft prompt) to write new labelled examples."""

    samples_per_label: int = knob(0, 0, 100_000)
    """Samples to generate for each label; 0 = the task's default (SST-2: 280, pair tasks: 118)."""
    batch_size: int = knob(64, 1, 512)
    """Sequences sampled together (all of one label, so prompts have equal length and need no padding)."""
    # design choice: 64 measured 2.55-2.82 SST-2 samples/s vs 2.14-2.16 at 32 and 1.59 at 16 on 2 CPU cores
    max_new_tokens: int = knob(0, 0, 2048)
    """Token budget per sample; 0 = derived from the task's own train examples (see `budget_percentile`)."""
    budget_percentile: float = knob(95.0, 50.0, 100.0)
    """With `max_new_tokens` 0: the budget is this percentile of the train examples' token lengths, written as the
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
    reproduce MiniLM sentence embeddings on the unlabeled pool; `random`: neither."""
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
    ce_weight: float = knob(1.0, 0.0, 100.0)
    """Weight of cross-entropy on gold labels of the train split."""
    kd_weight: float = knob(1.0, 0.0, 100.0)
    """Weight of KL(teacher soft labels || student) on store entries."""
    relational_weight: float = knob(1.0, 0.0, 100.0)
    """Weight of the in-batch relational loss (student key-space neighbours vs teacher-space neighbours)."""
    retrieval_weight: float = knob(1.0, 0.0, 100.0)
    """Weight of the loss on the retrieval-mixed prediction (neighbours exclude the example itself)."""
    relational_temperature: float = knob(0.1, 0.001, 10.0)
    """Softmax temperature of both in-batch similarity distributions."""
    k: int = knob(8, 1, 1000)
    """Neighbours retrieved per query."""
    temperature: float = knob(0.05, 0.001, 10.0)
    """Neighbour weights are softmax(cosine similarity / temperature)."""
    beta: float = knob(0.5, 0.0, 1.0)
    """Prediction = (1 - beta) * student softmax + beta * neighbour mix."""
    tune_beta: bool = True
    """Check beta on the dev split: retrieval is used only when the neighbours' vote alone beats the dev majority
    class and some beta in 0.25, 0.5, ..., 1 beats the student alone (beta 0), each by `beta_min_gain` dev examples;
    among those betas, the ones within one example of the best are kept and the one closest to `beta` wins. A
    store whose votes do not help held-out gold labels gets beta 0."""
    # design choice: `teacher` by default: over SST-2 seeds 13, 21, 42, 87 it beat the dev rule in 12 of 22 runs and
    # lost 4 (bench/results/unlabeled_ablation.md); 32 dev examples move in steps of 3 points.
    beta_rule: str = knob("teacher", choices=("dev", "teacher"))
    """How `tune_beta` picks beta. `dev`: on the labelled dev split, as above. `teacher`: the beta in 0, 0.25, ..., 1
    whose predictions agree most with the teacher's on `beta_heldout` inputs it labels for this (never a train, dev,
    test or store input; ties: the larger beta), still 0 when the teacher fails the trust check; a task with no
    unlabeled inputs falls back to `dev`."""
    beta_heldout: int = knob(256, 16, 100_000)
    """Teacher-labelled held-out inputs the `teacher` beta rule scores against."""
    beta_min_gain: int = knob(1, 0, 1000)
    """Dev examples by which the vote alone must beat the majority class, and a beta > 0 the student alone, for
    retrieval to be used (with `tune_beta`); 0 lets ties on dev keep retrieval on."""
    # design choice: on by default: the `teacher` rule follows the teacher even where it knows less than the student
    # (imported TREC seed 13: beta 0.75 cost 3.2 points; SST-5: beta 1 cost 5.2; bench/results/user_tasks.md).
    teacher_beats_student: bool = True
    """With the `teacher` beta rule, retrieval is used only when the teacher answers more dev examples right than the
    student alone (a tie keeps the student alone): agreeing with the teacher is only worth it where the teacher
    knows more than the student. Costs one teacher pass over the dev split."""
    teacher_trust_alpha: float = knob(0.05, 0.0, 1.0)
    """With `tune_beta`, retrieval is used only when the teacher's soft labels beat the majority class on the
    store's gold train entries it was not shown as demonstrations, at one-sided binomial p below this; 1 = no check."""
    store_filter: str = knob("agree", choices=('none', 'agree', 'weight'))
    """Which store entries the student learns from and retrieves: `agree` keeps entries whose teacher label equals
    the intended label (and confidence >= min_confidence); `weight` keeps all, weighted by the teacher's probability
    of the intended label; `none` keeps all unweighted."""
    min_confidence: float = knob(0.0, 0.0, 1.0)
    """With `agree`: drop entries whose top teacher probability is below this."""
    gold_only_epochs: int = knob(0, 0, 100_000)
    """Epochs of the "student, gold only" baseline (the same pretrained student, trained on the train split's gold
    labels alone: no generated sample, no teacher label, no store); 0 = as many optimizer steps as the student got."""
    # design choice: matched optimizer steps, so the baseline is not under-trained next to the student.
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
    learning_rate: float = knob(0.01, 1e-07, 10.0)
    """Adam learning rate of the soft prompt."""  # design choice: below step 1's 0.03, PPO steps must stay small
    value_learning_rate: float = knob(0.01, 1e-07, 10.0)
    """Adam learning rate of the value head."""  # design choice: high, the head starts at 0 and runs are short
    clip_range: float = knob(0.2, 0.01, 10.0)
    """PPO ratio clip epsilon."""
    value_clip_range: float = knob(0.2, 0.0, 100.0)
    """Clip of the value update around the rollout's values; 0 = no value clipping."""
    gamma: float = knob(1.0, 0.0, 1.0)
    """Discount per token."""  # design choice: 1.0, the reward is a judgement of the whole sample
    lam: float = knob(0.95, 0.0, 1.0)
    """GAE lambda."""
    kl_controller: str = knob("adaptive", choices=('adaptive', 'fixed'))
    """`adaptive` (Ziegler et al. 2019: the coefficient tracks `kl_target`) or `fixed` (stays at `kl_coef`)."""
    kl_coef: float = knob(0.05, 0.0, 100.0)
    """Initial weight of the per-token KL penalty to the frozen step-1 prompt (subtracted from the reward)."""
    kl_target: float = knob(4.0, 0.01, 1000.0)
    """Target KL per sample, in nats, for the adaptive controller."""
    kl_horizon: int = knob(400, 1, 10_000_000)
    """Samples over which the adaptive controller moves the coefficient by up to +-20%."""
    # design choice: 400 rather than the usual 10000, since a run here sees a few hundred samples, not millions.
    kl_length_neutral: bool = False
    """Scale each sample's KL penalty by (the rollout batch's mean length / its length), so it pays for its mean
    per-token KL rather than the total: the summed KL grows with length and so pays the policy to write short."""
    max_grad_norm: float = knob(1.0, 0.0001, 1000.0)
    """Gradient norm clip (soft prompt and value head clipped separately)."""
    whiten_advantages: bool = True
    """Normalise advantages to zero mean, unit variance over each rollout batch (`gae` advantages only)."""
    advantage: str = knob("gae", choices=("gae", "group"))
    """`gae`: per-token advantages from a learned value head (classic PPO). `group`: each sample's return (score minus
    its KL penalty) standardised over its rollout batch, which shares one prompt (GRPO/RLOO-style, no value head)."""
    entropy_coef: float = knob(0.0, 0.0, 10.0)
    """Weight of an entropy bonus in the policy loss (mean per-token entropy of the policy over sampled tokens)."""
    temperature: float = knob(1.0, 0.05, 5.0)
    """Rollout temperature; the policy is softmax(logits / temperature) with no top-p, so rollouts are on-policy."""
    max_new_tokens: int = knob(0, 0, 2048)
    """Rollout token budget; 0 = the task's generation default."""
    weight_label: float = knob(1.0, 0.0, 100.0)
    """Weight of the label reward (see `label_reward`)."""
    label_reward: str = knob("probability", choices=("probability", "margin"))
    """Label term: `probability` = teacher p(intended label); `margin` = p(intended) - max p(other label)."""
    weight_diversity: float = knob(0.5, 0.0, 100.0)
    """Weight of the diversity reward (1 - max cosine similarity to the batch and the store)."""
    weight_novelty: float = knob(0.0, 0.0, 100.0)
    """Weight of the n-gram novelty reward (share of a sample's bigrams absent from the batch and a running buffer
    of the label's recent samples)."""
    novelty_window: int = knob(64, 1, 100_000)
    """Samples per label kept in the n-gram novelty buffer."""
    novelty_count_cap: int = knob(0, 0, 1000)
    """0 = the novelty reward is the share of a sample's bigrams that are novel; N > 0 = the number of novel bigrams,
    capped at N and divided by N, so only a sample with N new bigrams earns the full term (a short one cannot)."""
    weight_validity: float = knob(0.5, 0.0, 100.0)
    """Weight of the validity reward (parses and is not a copy of a train example); unused with `validity_gate`."""
    validity_gate: bool = False
    """Validity as a gate instead of a term: the reward is 0 unless the sample parses and is not a train copy."""
    min_words_quantile: float = knob(0.0, 0.0, 1.0)
    """0 = off; q > 0 = a minimum-length gate: a sample with fewer words than the q-quantile of the step-1 samples'
    word counts (those in the store) earns 0."""
    checkpoint_every: int = knob(4, 1, 100_000)
    """Save prompt, value head, optimizer and KL coefficient every this many updates (and on cancel/finish)."""
    resume: bool = True
    """Continue from the run's PPO checkpoint when there is one."""

    def __post_init__(self):
        _check_choices(self, "ppo.")


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
        kwargs[name] = _coerce(key, value, default, known[name].metadata.get("range"))
    return cls(**kwargs)


def _coerce(key: str, value: Any, default: Any, limits: tuple[float, float] | None) -> Any:
    if value is None:
        return None
    expected = type(default) if default is not None else str
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if expected is bool and not isinstance(value, bool) or (
        expected in (int, float) and (isinstance(value, bool) or not isinstance(value, expected))
    ) or (expected is str and not isinstance(value, str)):
        raise ConfigError(f"`{key}` must be {expected.__name__}, got {value!r}")
    if limits is not None:
        low, high = limits
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
