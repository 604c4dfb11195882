"""The setup form's logic: teacher choice, the step-1 fields it shows, config <-> form values, and the check
of an uploaded task file's column mapping. Nothing here loads a model.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..config import ConfigError, RunConfig, field_type, from_dict, override, to_dict
from ..runs import RunError, check_name
from ..tasks import (
    BUILTIN_TASKS, TaskDataError, check_task_name, list_saved, load_custom, load_hub, preview_file, resolve_task,
    save_task,
)
from .measured import ppo_gain

PACKAGED_TEACHER = "packaged:smollm2"
PACKAGED_TEACHER_NAME = "SmolLM2-135M-Instruct"
PACKAGED_TEACHER_PARAMS = 134_515_008
"""Parameters of the packaged SmolLM2-135M-Instruct as loaded (counted once; other teachers are counted on load)."""

TEACHER_SOURCES = {
    "packaged": "Packaged SmolLM2-135M-Instruct (default)",
    "hub": "Hugging Face hub id",
    "local": "Local model folder or .gguf file",
}


@dataclass(frozen=True)
class FormField:
    """One config field on the form: its dotted key, the label shown, and its default value (gives the type)."""

    key: str
    label: str

    @property
    def default(self) -> Any:
        node: Any = RunConfig()
        for part in self.key.split("."):
            node = getattr(node, part)
        return node

    @property
    def kind(self) -> type:
        """The value type: `bool`, `int`, `float` or `str` (a field that may be empty takes None too)."""
        return field_type(self.key)[0]


FORM_FIELDS: tuple[FormField, ...] = (
    FormField("seed", "Seed (k-shot split and every random choice)"),
    FormField("run_name", "Run name (empty = task-timestamp)"),
    FormField("prompt_tuning.num_virtual_tokens", "Soft prompt tokens"),
    FormField("prompt_tuning.steps", "Tuning steps (0 = task default)"),
    FormField("prompt_tuning.batch_size", "Tuning batch size (0 = task default)"),
    FormField("prompt_tuning.learning_rate", "Tuning learning rate"),
    FormField("prompt_tuning.init_from_text", "Initialise the prompt from the task description"),
    FormField("generation.samples_per_label", "Samples per label (0 = task default)"),
    FormField("generation.batch_size", "Generation batch size"),
    FormField("generation.max_new_tokens", "Max new tokens (0 = task default)"),
    FormField("generation.temperature", "Temperature (0 = greedy)"),
    FormField("generation.top_p", "Top-p"),
    FormField("generation.seed", "Sampling seed"),
    FormField("student.max_params_fraction", "Student size (fraction of the teacher's parameters)"),
    FormField("student.hidden_size", "Student width"),
    FormField("student.num_layers", "Student layers"),
    FormField("student.k", "Neighbours retrieved (k)"),
    FormField("ppo.enabled", "Step 2 (PPO) in a full run (the Classroom's live run, `run --config`), off by default"
              + (f"; {gain.sentence()}" if (gain := ppo_gain()) else "")),
)
"""Fields the setup tab edits; every other field keeps the value of the loaded (or default) config."""


def student_note(fraction, teacher_params: int | None = PACKAGED_TEACHER_PARAMS) -> str:
    """Markdown about the student's parameter budget, shown before anything runs."""
    try:
        fraction = float(fraction)
    except (TypeError, ValueError):
        return "**Student:** the size must be a number (e.g. 0.01 = 1% of the teacher)."
    if teacher_params is None:
        return (f"**Student:** at most {fraction:.2%} of the teacher's parameters (counted when the teacher "
                "loads); its embedding width shrinks to fit.")
    return (f"**Student:** at most **{int(fraction * teacher_params):,}** parameters = {fraction:.2%} of the "
            f"teacher's {teacher_params:,}; its embedding width shrinks to fit the task's vocabulary into that.")


# ---------------------------------------------------------------- teacher

def teacher_to_form(model: str, gguf_file: str | None) -> tuple[str, str, str]:
    """(source key, model text, GGUF file name) for a config's teacher."""
    if model == PACKAGED_TEACHER:
        return "packaged", "", ""
    path = Path(model).expanduser()
    local = model.startswith((".", "/", "~")) or path.suffix.lower() == ".gguf" or path.exists()
    return ("local" if local else "hub"), model, gguf_file or ""


def teacher_from_form(source: str, model: str, gguf_file: str) -> tuple[str, str | None]:
    """(teacher.model, teacher.gguf_file) from the form; ConfigError when a needed value is missing."""
    if source == "packaged":
        return PACKAGED_TEACHER, None
    model, gguf_file = (model or "").strip(), (gguf_file or "").strip() or None
    if source not in TEACHER_SOURCES:
        raise ConfigError(f"teacher source {source!r} is not one of {', '.join(TEACHER_SOURCES)}")
    if not model:
        what = "a hub id such as HuggingFaceTB/SmolLM2-360M-Instruct" if source == "hub" else "a folder or .gguf path"
        raise ConfigError(f"type {what} for the teacher, or pick the packaged model")
    return model, gguf_file


def teacher_note(source: str, model: str, gguf_file: str) -> str:
    """Markdown about the chosen teacher: its size when known, or why the given path will not load."""
    if source == "packaged":
        return f"**Teacher:** {PACKAGED_TEACHER_NAME}, **{PACKAGED_TEACHER_PARAMS / 1e6:.1f}M** parameters."
    model = (model or "").strip()
    if not model:
        return "**Teacher:** type a hub id or a path."
    # A path typed as a hub id is checked as a path too: a hub id never starts with "/", "./" or "~".
    as_path = source == "local" or model.startswith(("/", "./", "../", "~"))
    problem = local_teacher_problem(model, gguf_file) if as_path else None
    if problem:
        return f"**Teacher:** `{model}` will not load: {problem}"
    return f"**Teacher:** `{model}` — parameter count: loaded on first run."


def teacher_label(model: str) -> str:
    """A readable name for a teacher of the hosted allow-list: a visitor picks a model, not a path or a hub id."""
    if model == PACKAGED_TEACHER:
        return f"{PACKAGED_TEACHER_NAME}, packaged 4-bit copy (Q4_1) on this server (default)"
    if model.startswith("packaged:"):
        return f"{model.split(':', 1)[1]} (packaged)"
    if teacher_to_form(model, None)[0] == "local":  # the host may allow a model of its own disk
        return f"{Path(model).expanduser().stem} (installed on this server)"
    owner, _, name = model.rpartition("/")
    return f"{name} from the Hugging Face Hub ({owner}), its published weights" if owner else \
        f"{name} from the Hugging Face Hub, its published weights"


def teacher_choices(allowed: tuple[str, ...] | list[str]) -> list[tuple[str, str]]:
    """(readable name, teacher.model) pairs for hosted mode's one teacher dropdown."""
    return [(teacher_label(model), model) for model in allowed]


def teacher_from_choice(model: str | None) -> tuple[str, None]:
    """(teacher.model, teacher.gguf_file) from hosted mode's teacher dropdown. Whether the teacher is allowed is
    `check_visitor_config`'s decision, made on every config a visitor sends whatever the page offered."""
    model = (model or "").strip()
    if not model:
        raise ConfigError("pick a teacher from the list")
    return model, None


def chosen_teacher_note(model: str) -> str:
    """`teacher_note` for a teacher picked from the hosted list, by its readable name."""
    if model == PACKAGED_TEACHER:
        return teacher_note("packaged", "", "")
    return f"**Teacher:** {teacher_label(model)} — parameter count: loaded on first run."


def local_teacher_problem(model: str, gguf_file: str | None) -> str | None:
    """Why a local teacher path will not load on this machine (cheap checks only), or None."""
    path = Path(model).expanduser()
    gguf = path if path.suffix.lower() == ".gguf" else (path / gguf_file if gguf_file else None)
    if gguf is not None:
        if not gguf.is_file():
            return f"no GGUF file at {gguf} on this machine."
        with gguf.open("rb") as handle:
            if handle.read(4) != b"GGUF":
                return f"{gguf.name} is not a GGUF file (it lacks the GGUF header)."
        return None
    if path.is_file():
        return f"{path} is a file, not a model folder (with a config.json) or a .gguf file."
    if not path.is_dir():
        return f"no folder {path} on this machine."
    if not (path / "config.json").is_file():
        return f"{path.name} has no config.json: it is not a transformers model folder."
    return None


# ---------------------------------------------------------------- config <-> form

def form_values(config: RunConfig) -> list[Any]:
    """Values of ``FORM_FIELDS`` for ``config``, in order (None shown as empty: "" in a text box)."""
    data = to_dict(config)
    values = []
    for f in FORM_FIELDS:
        node: Any = data
        for part in f.key.split("."):
            node = node[part]
        values.append("" if node is None and f.kind is str else node)
    return values


def config_from_form(base: dict | None, *, workspace: str, task: str, teacher: tuple[str, str | None],
                     values: list[Any]) -> RunConfig:
    """A validated RunConfig: ``base`` (a loaded config's dict, or defaults) with the form's values on top."""
    config = from_dict(base) if base else RunConfig()
    dotted: dict[str, Any] = {"workspace": str(workspace), "task": task, "teacher.model": teacher[0],
                              "teacher.gguf_file": teacher[1]}
    for f, value in zip(FORM_FIELDS, values, strict=True):
        dotted[f.key] = _coerce(f, value)
    config = override(config, dotted)
    try:
        # a bad task or seed is caught here, not when a run starts
        resolve_task(config.task, config.seed, config.workspace)
    except TaskDataError as exc:
        raise ConfigError(str(exc)) from exc
    if config.run_name:
        try:
            check_name(config.run_name)
        except RunError as exc:
            raise ConfigError(str(exc)) from exc
    return config


def _coerce(f: FormField, value: Any) -> Any:
    kind, optional = field_type(f.key)
    if kind is bool:
        return bool(value)
    if kind is str:
        text = "" if value is None else str(value).strip()
        return text or None
    if value is None or value == "":
        if optional:
            return None
        raise ConfigError(f"{f.label} is empty: give a number")
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def config_yaml(config: RunConfig) -> str:
    """The YAML text `save_yaml` writes, for showing on screen."""
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def base_dict(config: RunConfig) -> dict:
    """The plain data of ``config`` to keep between form edits (fields the form does not show survive)."""
    return dataclasses.asdict(config)


# ---------------------------------------------------------------- uploaded task files

def task_choices(workspace: str | Path) -> list[str]:
    """Built-in tasks, then the tasks saved from uploads and hub datasets in this workspace."""
    return [*BUILTIN_TASKS, *list_saved(workspace)]


def answers_text(answers: dict[str, str]) -> str:
    """Each label with the words the teacher answers with, as the Setup tab and `task import` show them."""
    return ", ".join(f"`{label}` → “{text}”" for label, text in answers.items())


def describe_task(task) -> str:
    """Labels, split sizes and what the teacher will read: each label's answer text and the query line(s)."""
    labels = ", ".join(f"`{label}`" for label in task.labels)
    answers = answers_text({label: task.verbalizers[label] for label in task.labels})
    queries = " / ".join(f"“{line}”" for line in (task.query, *task.query_candidates))
    tried = "the scorer keeps the best of" if task.query_candidates else "the query line is"
    return (f"{len(task.labels)} labels ({labels}); train {len(task.train)}, dev {len(task.dev)}, "
            f"test {len(task.test)}, unlabeled {len(task.unlabeled)} examples. The teacher answers with: "
            f"{answers}; {tried} {queries}.")


def parse_answers(pairs) -> dict[str, str] | None:
    """LABEL=TEXT pairs (a list, or lines of text) as {label: answer text}; None for none. A pair without "=" is a
    TaskDataError with the fix; a label or a text is checked when the task is built."""
    if isinstance(pairs, str):
        pairs = pairs.splitlines()
    answers = {}
    for pair in pairs or []:
        if not pair.strip():
            continue
        label, sep, text = pair.partition("=")
        if not sep:
            raise TaskDataError(f"answer words are LABEL=TEXT pairs, got {pair.strip()!r}")
        answers[label.strip()] = text
    return answers or None


def teacher_check_text(report: dict) -> str:
    """The teacher check (`generate.check.run_check`) as the Setup tab shows it: the verdict, then what the teacher
    reads and how long the check took."""
    answers = answers_text(report["answers"])
    tried = sorted(set(report["candidate_queries"]))
    return (f"**{report['verdict']}**\n\nThe teacher answers with {answers} after the query line "
            f"“{report['query']}” (the best of {len(tried)} tried on the train rows). The commonest label, "
            f"`{report['majority_label']}`, is {report['majority_share']:.0%} of the task's labelled rows. "
            f"Checked in {report['seconds']:.0f} s.")


def _mapped(text_columns: list[str], label_column: str) -> list[str]:
    text_columns = [c for c in text_columns if c]
    if not text_columns:
        raise TaskDataError("choose the text column")
    if not label_column:
        raise TaskDataError("choose the label column")
    return text_columns


@dataclass(frozen=True)
class UploadLimits:
    """Bounds on an uploaded task file (tighter in Space mode)."""

    max_bytes: int = 20_000_000
    """Largest file accepted."""
    max_rows: int = 50_000
    """Most data rows accepted."""


def uploaded_task(path: str, text_columns: list[str], label_column: str, name: str = "custom", seed: int = 13,
                  limits: UploadLimits = UploadLimits(), test_path: str | None = None, k: int = 16,
                  label_names: list[str] | None = None, answers: dict[str, str] | None = None,
                  query: str | None = None):
    """The task an uploaded file makes with this column mapping (TaskDataError if it makes none); `test_path`, a
    second file with the same columns, is its test split (else test rows are cut from the first file);
    `label_names` fixes the labels' order (else sorted); `answers` (label -> text) the teacher's answer texts
    (else the label names); `query` a query line of the user's, tried first with the default ones."""
    text_columns = _mapped(text_columns, label_column)
    return load_custom(path, text_columns, label_column, name=name, seed=seed, k=k, filename=Path(path).name,
                       max_bytes=limits.max_bytes, max_rows=limits.max_rows, test_source=test_path or None,
                       test_filename=Path(test_path).name if test_path else None, label_names=label_names,
                       verbalizers=answers, query=(query or "").strip() or None)


def check_mapping(path: str, text_columns: list[str], label_column: str, seed: int = 13,
                  limits: UploadLimits = UploadLimits(), test_path: str | None = None, k: int = 16,
                  label_names: list[str] | None = None, answers: dict[str, str] | None = None,
                  query: str | None = None) -> str:
    """Build the task from an uploaded file with this column mapping and describe it (TaskDataError if not)."""
    return "The mapping works: " + describe_task(uploaded_task(path, text_columns, label_column, seed=seed,
                                                               limits=limits, test_path=test_path, k=k,
                                                               label_names=label_names, answers=answers,
                                                               query=query))


def label_names(order: str | None) -> list[str] | None:
    """The labels a user typed, comma-separated, in their order (None when empty: sorted)."""
    names = [name.strip() for name in (order or "").split(",") if name.strip()]
    return names or None


def save_uploaded_task(workspace: str | Path, name: str, path: str, text_columns: list[str], label_column: str,
                       seed: int = 13, limits: UploadLimits = UploadLimits(), test_path: str | None = None,
                       k: int = 16, label_names: list[str] | None = None,
                       answers: dict[str, str] | None = None, query: str | None = None) -> str:
    """Build and save a task from an upload (and its own test split, if given) so runs can name it; returns its
    name."""
    name = check_task_name(name)
    if name in list_saved(workspace):
        raise TaskDataError(f"a saved task named {name!r} exists already; pick another name")
    text_columns = _mapped(text_columns, label_column)
    task = uploaded_task(path, text_columns, label_column, name=name, seed=seed, limits=limits, test_path=test_path,
                         k=k, label_names=label_names, answers=answers, query=query)
    # Only the file's name is kept: an upload's temp path means nothing later and names a machine folder.
    origin = {"kind": "upload", "file": Path(path).name, "text_columns": text_columns,
              "label_column": label_column, "seed": seed, "k": k}
    if test_path:
        origin["test_file"] = Path(test_path).name
    save_task(task, workspace, origin=origin)
    return name


def save_hub_task(workspace: str | Path, name: str, dataset_id: str, config: str | None, text_columns: list[str],
                  label_column: str, seed: int = 13, k: int = 16) -> str:
    """Build a task from a Hugging Face dataset and save it so runs can name it; returns its name."""
    name = check_task_name(name)
    dataset_id, config = (dataset_id or "").strip(), (config or "").strip() or None
    if not dataset_id:
        raise TaskDataError("type a dataset id, e.g. glue with config sst2")
    if name in list_saved(workspace):
        raise TaskDataError(f"a saved task named {name!r} exists already; pick another name")
    text_columns = _mapped([c.strip() for c in text_columns if c], (label_column or "").strip())
    task = load_hub(dataset_id, config, text_columns, label_column.strip(), name=name, seed=seed, k=k)
    save_task(task, workspace, origin={"kind": "hub", "dataset": dataset_id, "config": config,
                                       "text_columns": text_columns, "label_column": label_column.strip(),
                                       "seed": seed, "k": k})
    return name


def file_preview(path: str, n: int = 8, limits: UploadLimits = UploadLimits()) -> tuple[list[str], list[list[str]]]:
    """Columns and the first ``n`` rows of an uploaded table (TaskDataError for unreadable files)."""
    return preview_file(path, n, filename=Path(path).name, max_bytes=limits.max_bytes)
