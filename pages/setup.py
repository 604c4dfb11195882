"""Setup tab: choose the teacher, the task and the step-1 settings; save them as YAML or load a YAML back."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pandas as pd

from pages.common import OptionalNumber, user_errors
from retrikt.config import ConfigError, RunConfig, field_type, load_yaml, save_yaml
from retrikt.generate.check import run_check
from retrikt.generate.stage import generate_job
from retrikt.runs import list_runs
from retrikt.space import check_visitor_config
from retrikt.studio.setup_form import (
    FORM_FIELDS, PACKAGED_TEACHER, PACKAGED_TEACHER_PARAMS, TEACHER_SOURCES, UploadLimits, base_dict, check_mapping,
    chosen_teacher_note, config_from_form, config_yaml, file_preview, form_values, label_names, save_hub_task,
    parse_answers, save_uploaded_task, student_note, task_choices, teacher_check_text, teacher_choices,
    teacher_from_choice, teacher_from_form, teacher_note, teacher_to_form,
)
from retrikt.studio.timing import estimate_text
from retrikt.tasks import canonical_name, is_builtin, resolve_task

BUILT_IN, UPLOADED, HUB = "Built-in or saved task", "Upload a file (CSV, TSV, JSONL)", "Hugging Face dataset"
NO_COLUMN = "(none)"
TASK_FILE_TYPES = [".csv", ".tsv", ".jsonl", ".json"]
_save_dir: Path | None = None


def _field_widget(field, value):
    if field.kind is bool:
        return gr.Checkbox(value=value, label=field.label)
    kind, optional = field_type(field.key)
    number = OptionalNumber if optional else gr.Number
    if kind is int:
        return number(value=value, precision=0, label=field.label)
    if kind is float:
        return number(value=value, label=field.label)
    return gr.Textbox(value=value, label=field.label)


def _saved_path(name: str) -> Path:
    global _save_dir
    if _save_dir is None:
        _save_dir = Path(tempfile.mkdtemp(prefix="retrikt-config-"))
    # A folder per save: two users saving at once must not download each other's file.
    return Path(tempfile.mkdtemp(dir=_save_dir)) / f"{name}-config.yaml"


def _guess_columns(columns: list[str]) -> tuple[str, str, str]:
    """(first text column, second text column or none, label column): a column called label wins."""
    label = next((c for c in columns if c.lower() in ("label", "labels", "class", "target")), columns[-1])
    texts = [c for c in columns if c != label]
    return (texts[0] if texts else label), NO_COLUMN, label


def _text_columns(first: str, second: str) -> list[str]:
    return [first, "" if second == NO_COLUMN else second]


class _Tab(SimpleNamespace):
    """The tab's components by name, and the lists of them its events take and fill.

    A list's order is the order of an endpoint's values, which API clients rely on. `teacher_in` is the teacher's
    widgets: one dropdown on a hosted studio, else (source, model, GGUF file)."""

    def _widget(self, key: str):
        return self.widgets[[f.key for f in FORM_FIELDS].index(key)]

    @property
    def seed(self):
        return self._widget("seed")

    @property
    def fraction(self):
        return self._widget("student.max_params_fraction")

    @property
    def form_in(self) -> list:
        """What a config is built from: the loaded config's data, the teacher, the task and FORM_FIELDS."""
        return [self.base, *self.teacher_in, self.task_mode, self.builtin, *self.widgets]

    @property
    def mapping_in(self) -> list:
        return [self.task_file, self.text_col1, self.text_col2, self.label_col, self.seed, self.test_file,
                self.k_per_label, self.label_order, self.answer_words, self.query_line]

    @property
    def upload_in(self) -> list:
        return [self.task_file, self.text_col1, self.text_col2, self.label_col, self.upload_name, self.seed,
                self.test_file, self.k_per_label, self.label_order, self.answer_words, self.query_line]

    @property
    def hub_in(self) -> list:
        return [self.hub_id, self.hub_config, self.hub_text1, self.hub_text2, self.hub_label, self.hub_name,
                self.seed]

    @property
    def preview_out(self) -> list:
        return [self.text_col1, self.text_col2, self.label_col, self.preview, self.mapping_result]

    @property
    def saved_out(self) -> list:
        """A task just saved: it becomes the picked built-in task and the upload and hub boxes close."""
        return [self.builtin, self.task_mode, self.upload_box, self.hub_box]

    @property
    def loaded_out(self) -> list:
        return [*self.teacher_in, self.teacher_info, self.task_mode, self.builtin, *self.widgets, self.base,
                self.yaml_view]


def _layout(studio) -> _Tab:
    ui, space = _Tab(), studio.space
    default = RunConfig(workspace=str(studio.workspace))
    # A hosted visitor has no command line: the replay hint is for a studio on one's own machine.
    gr.Markdown("Pick the teacher, the task and the step-1 settings, then save them as a YAML file."
                + ("" if space.enabled else " The command line replays it: `python -m retrikt run --config "
                                            "FILE.yaml` (`generate --config FILE.yaml` for step 1 only)."))
    chosen = _teacher_layout(ui, space, default)
    _task_layout(ui, studio, default)
    _upload_layout(ui)
    _hub_layout(ui)
    with gr.Accordion("Step 1: prompt tuning and generation", open=True):
        ui.widgets, defaults = [], form_values(default)
        for start in range(0, len(FORM_FIELDS), 4):
            with gr.Row():
                ui.widgets += [_field_widget(f, v) for f, v in
                               zip(FORM_FIELDS[start:start + 4], defaults[start:start + 4])]
    known = PACKAGED_TEACHER_PARAMS if not space.enabled or chosen == PACKAGED_TEACHER else None
    ui.student_info = gr.Markdown(student_note(default.student.max_params_fraction, known))
    _actions_layout(ui)
    return ui


def _teacher_layout(ui: _Tab, space, default: RunConfig) -> str | None:
    """The teacher's widgets; returns the hosted studio's preselected teacher (None on one's own machine)."""
    if not space.enabled:
        with gr.Row():
            ui.teacher_source = gr.Radio([(v, k) for k, v in TEACHER_SOURCES.items()], value="packaged",
                                         label="Teacher")
            ui.teacher_model = gr.Textbox(label="Hub id, model folder or .gguf path", interactive=False)
            ui.gguf_file = gr.Textbox(label="GGUF file inside that folder or repo (optional)", interactive=False)
        ui.teacher_in = [ui.teacher_source, ui.teacher_model, ui.gguf_file]
        ui.teacher_info = gr.Markdown(teacher_note("packaged", "", ""))
        return None
    # One list of the allowed teachers by name: a visitor has no disk to point at, and the server refuses any
    # other teacher (check_visitor_config), so the page offers nothing else.
    allowed = list(space.allowed_teachers)
    chosen = default.teacher.model if default.teacher.model in allowed else allowed[0]
    ui.teacher_pick = gr.Dropdown(teacher_choices(allowed), value=chosen, label="Teacher")
    ui.teacher_in = [ui.teacher_pick]
    ui.teacher_info = gr.Markdown(chosen_teacher_note(chosen))
    return chosen


def _task_layout(ui: _Tab, studio, default: RunConfig) -> None:
    space = studio.space
    # Hosted: no free-text path anywhere, so no hub dataset, which may name a folder.
    modes = [BUILT_IN, UPLOADED] if space.enabled else [BUILT_IN, UPLOADED, HUB]
    ui.task_mode = gr.Radio(modes, value=BUILT_IN, label="Task")
    if space.enabled:
        gr.Markdown(f"Hosted studio: {len(space.allowed_teachers)} teacher(s) to pick from; task data by upload, "
                    f"up to {space.max_upload_bytes / 1e6:.0f} MB and {space.max_upload_rows:,} rows.")
    ui.builtin = gr.Dropdown(task_choices(studio.workspace), value=default.task,
                             label="Task (built-in, or saved from an upload)" if space.enabled else
                             "Task (built-in, or saved from an upload or a hub dataset)")


def _upload_layout(ui: _Tab) -> None:
    with gr.Group(visible=False) as ui.upload_box:
        gr.Markdown("Map the file's columns, check the mapping, then save it as a task: it joins the task list "
                    "and runs like a built-in one (k per label for train and dev, the rest split into "
                    "test and an unlabeled pool, unless you give the dataset's own test split as a second "
                    "file with the same columns). A run's seed draws its own k-shot split from the same rows; "
                    "the test split is the same for every seed.")
        with gr.Row():
            ui.task_file = gr.File(label="Task file", file_types=TASK_FILE_TYPES, type="filepath")
            ui.test_file = gr.File(label="Test split (optional, same columns)", file_types=TASK_FILE_TYPES,
                                   type="filepath")
        with gr.Row():
            ui.text_col1 = gr.Dropdown([], label="Text column", allow_custom_value=True)
            ui.text_col2 = gr.Dropdown([NO_COLUMN], value=NO_COLUMN, label="Second text column (pairs)",
                                       allow_custom_value=True)
            ui.label_col = gr.Dropdown([], label="Label column", allow_custom_value=True)
        with gr.Row():
            ui.k_per_label = gr.Number(16, label="Labelled examples per label, in train and in dev (k-shot)",
                                       precision=0, minimum=1, maximum=1000)
            ui.label_order = gr.Textbox(label="Label order (optional: the labels, comma-separated, e.g. a rating "
                                              "scale; empty = sorted)")
            ui.check = gr.Button("Check the mapping")
        with gr.Row():
            ui.answer_words = gr.Textbox("", label="Answer words (optional: LABEL=TEXT, one per line; empty = each "
                                                   "label's own name, in lower case)", lines=2)
            ui.query_line = gr.Textbox("", label="Query line (optional, e.g. Sentiment:; tried beside the label "
                                                 "column's name, Label: and a question)")
        ui.preview = gr.Dataframe(label="First rows", interactive=False, wrap=True)
        with gr.Row():
            ui.upload_name = gr.Textbox(label="Task name (3-64 letters, digits, . _ -)")
            ui.save_upload = gr.Button("Save as a task")
        ui.mapping_result = gr.Markdown()


def _hub_layout(ui: _Tab) -> None:
    with gr.Group(visible=False) as ui.hub_box:
        gr.Markdown("Any dataset `datasets.load_dataset` can open (a hub id such as `glue` with config `sst2`). "
                    "Train is its `train` split, test its `validation` (or `test`) split when that has labels.")
        with gr.Row():
            ui.hub_id = gr.Textbox(label="Dataset id")
            ui.hub_config = gr.Textbox(label="Config (optional)")
            ui.hub_name = gr.Textbox(label="Task name (3-64 letters, digits, . _ -)")
        with gr.Row():
            ui.hub_text1 = gr.Textbox(label="Text column", value="sentence")
            ui.hub_text2 = gr.Textbox(label="Second text column (pairs, optional)")
            ui.hub_label = gr.Textbox(label="Label column", value="label")
            ui.save_hub = gr.Button("Load and save as a task")
        ui.hub_result = gr.Markdown()


def _actions_layout(ui: _Tab) -> None:
    with gr.Row():
        ui.save = gr.Button("Save config as YAML", variant="primary")
        ui.saved_file = gr.File(label="Saved config (download)", interactive=False)
        ui.load_file = gr.File(label="Load a config YAML", file_types=[".yaml", ".yml"], type="filepath")
    with gr.Row():
        ui.teacher_check_btn = gr.Button("Check the teacher on this task (about a minute)", scale=1)
        ui.teacher_checked = gr.Markdown()
    with gr.Row():
        ui.estimate_btn = gr.Button("Estimate the time of each step", scale=1)
        ui.estimated = gr.Markdown()
    with gr.Row():
        ui.run_step1 = gr.Button("Start step 1 with these settings (follow it in the Generate tab)")
        ui.started = gr.Markdown()
    ui.yaml_view = gr.Code(language="yaml", label="Config", interactive=False)
    ui.base = gr.State(None)  # the loaded config's data: fields the form does not show are kept on save


class _Handlers:
    """The tab's event handlers. Their parameter names are the API's: a client may pass the values by name."""

    def __init__(self, studio, ui: _Tab):
        self.studio, self.ui, self.workspace, self.space = studio, ui, studio.workspace, studio.space
        hosted = self.space.enabled
        self.limits = (UploadLimits(self.space.max_upload_bytes, self.space.max_upload_rows) if hosted
                       else UploadLimits())
        self.read_teacher = teacher_from_choice if hosted else teacher_from_form
        self.packaged = PACKAGED_TEACHER if hosted else "packaged"  # the hosted list holds models, the radio sources

    def _visitor_config(self, config: RunConfig) -> RunConfig:
        return check_visitor_config(config, self.space, self.workspace)

    def tasks_update(self, current):
        return gr.update(choices=task_choices(self.workspace), value=current)

    def on_teacher(self, source, model, gguf):
        editable = source != "packaged"
        return gr.update(interactive=editable), gr.update(interactive=editable), teacher_note(source, model, gguf)

    def on_task_mode(self, mode):
        return gr.update(visible=mode == BUILT_IN), gr.update(visible=mode == UPLOADED), gr.update(visible=mode == HUB)

    def on_size(self, teacher, value):
        return student_note(value, PACKAGED_TEACHER_PARAMS if teacher == self.packaged else None)

    def _saved(self, name: str, where: str):
        gr.Info(f"Saved task {name}; it is now the run's task.")
        return (gr.update(choices=task_choices(self.workspace), value=name, visible=True),
                gr.update(value=BUILT_IN), gr.update(visible=False), gr.update(visible=False),
                f"Saved as task `{name}` from {where}: pick it in the task list (selected now).")

    @user_errors
    def on_file(self, path):
        if not path:
            return gr.update(), gr.update(), gr.update(), pd.DataFrame(), ""
        columns, rows = file_preview(path, limits=self.limits)
        first, second, label = _guess_columns(columns)
        return (gr.update(choices=columns, value=first), gr.update(choices=[NO_COLUMN, *columns], value=second),
                gr.update(choices=columns, value=label), pd.DataFrame(rows, columns=columns),
                f"{len(columns)} columns found; check the mapping below.")

    @user_errors
    def on_check(self, path, first, second, label, seed, test_path, k, order, answers="", query_text=""):
        if not path:
            raise ConfigError("Upload a task file first.")
        return check_mapping(path, _text_columns(first, second), label, seed=int(seed or 13), limits=self.limits,
                             test_path=test_path, k=int(k or 16), label_names=label_names(order),
                             answers=parse_answers(answers), query=query_text)

    @user_errors
    def on_save_upload(self, path, first, second, label, name, seed, test_path, k, order, answers="",
                       query_text=""):
        if not path:
            raise ConfigError("Upload a task file first.")
        name = save_uploaded_task(self.workspace, name, path, _text_columns(first, second), label,
                                  seed=int(seed or 13), limits=self.limits, test_path=test_path, k=int(k or 16),
                                  label_names=label_names(order), answers=parse_answers(answers), query=query_text)
        return self._saved(name, Path(path).name)

    @user_errors
    def on_save_hub(self, dataset_id, config_name, first, second, label, name, seed):
        if self.space.enabled:
            raise ConfigError("This hosted studio takes task data by upload only: save the data as CSV/JSONL.")
        name = save_hub_task(self.workspace, name, dataset_id, config_name, [first, second], label,
                             seed=int(seed or 13))
        return self._saved(name, f"`{dataset_id}`")

    def _form_config(self, base_data, inputs, then: str) -> RunConfig:
        """The config the form's inputs (teacher widgets, task mode, task, FORM_FIELDS) describe, as the server
        allows it; saving and starting step 1 both build it here, so the saved YAML is what a run would use."""
        n_teacher = len(self.ui.teacher_in)
        teacher, (mode, task, *values) = self.read_teacher(*inputs[:n_teacher]), inputs[n_teacher:]
        if mode != BUILT_IN:
            raise ConfigError(f"Save the file or dataset as a task first (the Save button above), then {then}.")
        return self._visitor_config(config_from_form(base_data, workspace=str(self.workspace), task=task,
                                                     teacher=teacher, values=list(values)))

    @user_errors
    def on_save(self, base_data, *inputs):
        config = self._form_config(base_data, inputs, "save the config")
        path = _saved_path(config.run_name or config.task)
        save_yaml(config, path)
        return str(path), config_yaml(config), base_dict(config)

    @user_errors
    def on_run_step1(self, request: gr.Request, base_data, *inputs):
        config = self._form_config(base_data, inputs, "start step 1")
        config.run_name = config.run_name or f"{config.task}-{time.strftime('%Y%m%d-%H%M%S')}"
        if config.run_name in list_runs(self.workspace):
            raise ConfigError(f"A run named {config.run_name!r} exists already: pick another run name.")
        job = self.studio.jobs.submit("generate", f"Step 1 on {config.task}", generate_job(config),
                                      owner=self.studio.visitor(request), run=config.run_name)
        return f"Started job `{job.id}` → run `{config.run_name}`; its progress is in the Generate tab."

    @user_errors
    def on_estimate(self, base_data, *inputs):
        config = self._form_config(base_data, inputs, "estimate its time")
        return estimate_text(config, resolve_task(config.task, config.seed, self.workspace), self.workspace)

    @user_errors
    def on_teacher_check(self, base_data, *inputs):
        config = self._form_config(base_data, inputs, "check the teacher on it")
        return teacher_check_text(run_check(config))

    @user_errors
    def on_load(self, path):
        if not path:
            raise ConfigError("Choose a .yaml file to load.")
        config = self._visitor_config(load_yaml(path))
        resolve_task(config.task, config.seed, self.workspace)  # a task this workspace lacks is refused here
        config.task = canonical_name(config.task) if is_builtin(config.task) else config.task
        gr.Info(f"Loaded {Path(path).name}.")
        return [*self._loaded_teacher(config), BUILT_IN,
                gr.update(choices=task_choices(self.workspace), value=config.task),
                *form_values(config), base_dict(config), config_yaml(config)]

    def _loaded_teacher(self, config: RunConfig) -> list:
        """The values of the teacher's widgets, then its note, for a loaded config."""
        if self.space.enabled:  # _visitor_config let only an allowed teacher through
            return [config.teacher.model, chosen_teacher_note(config.teacher.model)]
        source, model, gguf = teacher_to_form(config.teacher.model, config.teacher.gguf_file)
        editable = source != "packaged"
        return [source, gr.update(value=model, interactive=editable), gr.update(value=gguf, interactive=editable),
                teacher_note(source, model, gguf)]


def build(studio) -> None:
    """Add the Setup tab to ``studio.demo``."""
    with gr.Tab("Setup", id="setup"):
        ui = _layout(studio)
    handlers = _Handlers(studio, ui)
    _wire_teacher(ui, handlers)
    _wire_task(studio, ui, handlers)
    _wire_config(ui, handlers)


def _wire_teacher(ui: _Tab, h: _Handlers) -> None:
    if h.space.enabled:
        ui.teacher_pick.change(chosen_teacher_note, ui.teacher_pick, ui.teacher_info, api_visibility="private")
        return
    teacher_out = [ui.teacher_model, ui.gguf_file, ui.teacher_info]
    ui.teacher_source.change(h.on_teacher, ui.teacher_in, teacher_out, api_visibility="private")
    for box in (ui.teacher_model, ui.gguf_file):
        box.blur(h.on_teacher, ui.teacher_in, teacher_out, api_visibility="private")
        box.submit(h.on_teacher, ui.teacher_in, teacher_out, api_visibility="private")


def _wire_task(studio, ui: _Tab, h: _Handlers) -> None:
    ui.task_mode.change(h.on_task_mode, ui.task_mode, [ui.builtin, ui.upload_box, ui.hub_box],
                        api_visibility="private")
    ui.task_file.upload(h.on_file, ui.task_file, ui.preview_out, api_name="setup_preview")
    ui.check.click(h.on_check, ui.mapping_in, ui.mapping_result, api_name="setup_check_mapping")
    ui.save_upload.click(h.on_save_upload, ui.upload_in, [*ui.saved_out, ui.mapping_result],
                         api_name="setup_save_upload_task")
    ui.save_hub.click(h.on_save_hub, ui.hub_in, [*ui.saved_out, ui.hub_result], api_name="setup_save_hub_task")
    # Tasks saved since the page was built (from another browser, or the CLI) join the list on a reload.
    studio.demo.load(h.tasks_update, ui.builtin, ui.builtin, api_visibility="private")


def _wire_config(ui: _Tab, h: _Handlers) -> None:
    ui.save.click(h.on_save, ui.form_in, [ui.saved_file, ui.yaml_view, ui.base], api_name="setup_save")
    size_in = [ui.teacher_in[0], ui.fraction]
    ui.fraction.change(h.on_size, size_in, ui.student_info, api_visibility="private")
    ui.teacher_in[0].change(h.on_size, size_in, ui.student_info, api_visibility="private")
    ui.estimate_btn.click(h.on_estimate, ui.form_in, ui.estimated, api_name="setup_estimate")
    # One check at a time: it holds the CPU for about a minute, as a job's step does.
    ui.teacher_check_btn.click(h.on_teacher_check, ui.form_in, ui.teacher_checked, api_name="setup_check",
                               concurrency_limit=1)
    ui.run_step1.click(h.on_run_step1, ui.form_in, ui.started, api_name="setup_run")
    ui.load_file.upload(h.on_load, ui.load_file, ui.loaded_out, api_name="setup_load")
