"""Setup tab: choose the teacher, the task and the step-1 settings; save them as YAML or load a YAML back."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import gradio as gr
import pandas as pd

from pages.common import user_errors
from retrikt.config import ConfigError, RunConfig, load_yaml, save_yaml
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
_save_dir: Path | None = None


def _field_widget(field, value):
    if isinstance(field.default, bool):
        return gr.Checkbox(value=value, label=field.label)
    if isinstance(field.default, int):
        return gr.Number(value=value, precision=0, label=field.label)
    if isinstance(field.default, float):
        return gr.Number(value=value, label=field.label)
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


def build(studio) -> None:
    """Add the Setup tab to ``studio.demo``."""
    default = RunConfig(workspace=str(studio.workspace))
    defaults = form_values(default)
    space = studio.space
    # Hosted: no free-text path anywhere (the teacher from a list, no hub dataset, which may name a folder).
    modes = [BUILT_IN, UPLOADED] if space.enabled else [BUILT_IN, UPLOADED, HUB]
    limits = UploadLimits(space.max_upload_bytes, space.max_upload_rows) if space.enabled else UploadLimits()

    def visitor_config(config: RunConfig) -> RunConfig:
        return check_visitor_config(config, space, studio.workspace)
    with gr.Tab("Setup", id="setup"):
        # A hosted visitor has no command line: the replay hint is for a studio on one's own machine.
        gr.Markdown("Pick the teacher, the task and the step-1 settings, then save them as a YAML file."
                    + ("" if space.enabled else " The command line replays it: `python -m retrikt run --config "
                                                "FILE.yaml` (`generate --config FILE.yaml` for step 1 only)."))
        if space.enabled:
            # One list of the allowed teachers by name: a visitor has no disk to point at, and the server refuses
            # any other teacher (check_visitor_config), so the page offers nothing else.
            allowed = list(space.allowed_teachers)
            chosen = default.teacher.model if default.teacher.model in allowed else allowed[0]
            teacher_pick = gr.Dropdown(teacher_choices(allowed), value=chosen, label="Teacher")
            teacher_in = [teacher_pick]
            read_teacher = teacher_from_choice
            teacher_info = gr.Markdown(chosen_teacher_note(chosen))
        else:
            with gr.Row():
                teacher_source = gr.Radio([(v, k) for k, v in TEACHER_SOURCES.items()], value="packaged",
                                          label="Teacher")
                teacher_model = gr.Textbox(label="Hub id, model folder or .gguf path", interactive=False)
                gguf_file = gr.Textbox(label="GGUF file inside that folder or repo (optional)", interactive=False)
            teacher_in = [teacher_source, teacher_model, gguf_file]
            read_teacher = teacher_from_form
            teacher_info = gr.Markdown(teacher_note("packaged", "", ""))
        task_mode = gr.Radio(modes, value=BUILT_IN, label="Task")
        if space.enabled:
            gr.Markdown(f"Hosted studio: {len(space.allowed_teachers)} teacher(s) to pick from; task data by upload, "
                        f"up to {space.max_upload_bytes / 1e6:.0f} MB and {space.max_upload_rows:,} rows.")
        builtin = gr.Dropdown(task_choices(studio.workspace), value=default.task,
                              label="Task (built-in, or saved from an upload)" if space.enabled else
                              "Task (built-in, or saved from an upload or a hub dataset)")
        with gr.Group(visible=False) as upload_box:
            gr.Markdown("Map the file's columns, check the mapping, then save it as a task: it joins the task list "
                        "and runs like a built-in one (k per label for train and dev, the rest split into "
                        "test and an unlabeled pool, unless you give the dataset's own test split as a second "
                        "file with the same columns). A run's seed draws its own k-shot split from the same rows; "
                        "the test split is the same for every seed.")
            with gr.Row():
                task_file = gr.File(label="Task file", file_types=[".csv", ".tsv", ".jsonl", ".json"],
                                    type="filepath")
                test_file = gr.File(label="Test split (optional, same columns)",
                                    file_types=[".csv", ".tsv", ".jsonl", ".json"], type="filepath")
            with gr.Row():
                text_col1 = gr.Dropdown([], label="Text column", allow_custom_value=True)
                text_col2 = gr.Dropdown([NO_COLUMN], value=NO_COLUMN, label="Second text column (pairs)",
                                        allow_custom_value=True)
                label_col = gr.Dropdown([], label="Label column", allow_custom_value=True)
            with gr.Row():
                k_per_label = gr.Number(16, label="Labelled examples per label, in train and in dev (k-shot)",
                                        precision=0, minimum=1, maximum=1000)
                label_order = gr.Textbox(label="Label order (optional: the labels, comma-separated, e.g. a rating "
                                               "scale; empty = sorted)")
                check = gr.Button("Check the mapping")
            with gr.Row():
                answer_words = gr.Textbox("", label="Answer words (optional: LABEL=TEXT, one per line; empty = each "
                                                "label's own name, in lower case)", lines=2)
                query_line = gr.Textbox("", label="Query line (optional, e.g. Sentiment:; tried beside the label "
                                              "column's name, Label: and a question)")
            preview = gr.Dataframe(label="First rows", interactive=False, wrap=True)
            with gr.Row():
                upload_name = gr.Textbox(label="Task name (3-64 letters, digits, . _ -)")
                save_upload = gr.Button("Save as a task")
            mapping_result = gr.Markdown()
        with gr.Group(visible=False) as hub_box:
            gr.Markdown("Any dataset `datasets.load_dataset` can open (a hub id such as `glue` with config `sst2`). "
                        "Train is its `train` split, test its `validation` (or `test`) split when that has labels.")
            with gr.Row():
                hub_id = gr.Textbox(label="Dataset id")
                hub_config = gr.Textbox(label="Config (optional)")
                hub_name = gr.Textbox(label="Task name (3-64 letters, digits, . _ -)")
            with gr.Row():
                hub_text1 = gr.Textbox(label="Text column", value="sentence")
                hub_text2 = gr.Textbox(label="Second text column (pairs, optional)")
                hub_label = gr.Textbox(label="Label column", value="label")
                save_hub = gr.Button("Load and save as a task")
            hub_result = gr.Markdown()
        with gr.Accordion("Step 1: prompt tuning and generation", open=True):
            widgets = []
            for start in range(0, len(FORM_FIELDS), 4):
                with gr.Row():
                    widgets += [_field_widget(f, v) for f, v in
                                zip(FORM_FIELDS[start:start + 4], defaults[start:start + 4])]
        fraction = widgets[[f.key for f in FORM_FIELDS].index("student.max_params_fraction")]
        known = PACKAGED_TEACHER_PARAMS if not space.enabled or chosen == PACKAGED_TEACHER else None
        student_info = gr.Markdown(student_note(default.student.max_params_fraction, known))
        with gr.Row():
            save = gr.Button("Save config as YAML", variant="primary")
            saved_file = gr.File(label="Saved config (download)", interactive=False)
            load_file = gr.File(label="Load a config YAML", file_types=[".yaml", ".yml"], type="filepath")
        with gr.Row():
            teacher_check_btn = gr.Button("Check the teacher on this task (about a minute)", scale=1)
            teacher_checked = gr.Markdown()
        with gr.Row():
            estimate_btn = gr.Button("Estimate the time of each step", scale=1)
            estimated = gr.Markdown()
        with gr.Row():
            run_step1 = gr.Button("Start step 1 with these settings (follow it in the Generate tab)")
            started = gr.Markdown()
        yaml_view = gr.Code(language="yaml", label="Config", interactive=False)
        base = gr.State(None)  # the loaded config's data: fields the form does not show are kept on save

    if space.enabled:
        teacher_pick.change(chosen_teacher_note, teacher_pick, teacher_info, api_visibility="private")
    else:
        def on_teacher(source, model, gguf):
            editable = source != "packaged"
            return (gr.update(interactive=editable), gr.update(interactive=editable),
                    teacher_note(source, model, gguf))

        teacher_source.change(on_teacher, teacher_in, [teacher_model, gguf_file, teacher_info],
                              api_visibility="private")
        for box in (teacher_model, gguf_file):
            box.blur(on_teacher, teacher_in, [teacher_model, gguf_file, teacher_info], api_visibility="private")
            box.submit(on_teacher, teacher_in, [teacher_model, gguf_file, teacher_info], api_visibility="private")
    task_mode.change(lambda mode: (gr.update(visible=mode == BUILT_IN), gr.update(visible=mode == UPLOADED),
                                   gr.update(visible=mode == HUB)),
                     task_mode, [builtin, upload_box, hub_box], api_visibility="private")

    def _saved(name: str, where: str):
        gr.Info(f"Saved task {name}; it is now the run's task.")
        return (gr.update(choices=task_choices(studio.workspace), value=name, visible=True),
                gr.update(value=BUILT_IN), gr.update(visible=False), gr.update(visible=False),
                f"Saved as task `{name}` from {where}: pick it in the task list (selected now).")

    saved_outputs = [builtin, task_mode, upload_box, hub_box]

    @user_errors
    def on_save_upload(path, first, second, label, name, seed, test_path, k, order, answers="", query_text=""):
        if not path:
            raise ConfigError("Upload a task file first.")
        name = save_uploaded_task(studio.workspace, name, path, [first, "" if second == NO_COLUMN else second],
                                  label, seed=int(seed or 13), limits=limits, test_path=test_path,
                                  k=int(k or 16), label_names=label_names(order), answers=parse_answers(answers),
                                  query=query_text)
        return _saved(name, Path(path).name)

    @user_errors
    def on_save_hub(dataset_id, config_name, first, second, label, name, seed):
        if space.enabled:
            raise ConfigError("This hosted studio takes task data by upload only: save the data as CSV/JSONL.")
        name = save_hub_task(studio.workspace, name, dataset_id, config_name, [first, second], label,
                             seed=int(seed or 13))
        return _saved(name, f"`{dataset_id}`")

    @user_errors
    def on_file(path):
        if not path:
            return gr.update(), gr.update(), gr.update(), pd.DataFrame(), ""
        columns, rows = file_preview(path, limits=limits)
        first, second, label = _guess_columns(columns)
        return (gr.update(choices=columns, value=first), gr.update(choices=[NO_COLUMN, *columns], value=second),
                gr.update(choices=columns, value=label), pd.DataFrame(rows, columns=columns),
                f"{len(columns)} columns found; check the mapping below.")

    @user_errors
    def on_check(path, first, second, label, seed, test_path, k, order, answers="", query_text=""):
        if not path:
            raise ConfigError("Upload a task file first.")
        return check_mapping(path, [first, "" if second == NO_COLUMN else second], label, seed=int(seed or 13),
                             limits=limits, test_path=test_path, k=int(k or 16), label_names=label_names(order),
                             answers=parse_answers(answers), query=query_text)

    def form_config(base_data, inputs, then: str) -> RunConfig:
        """The config the form's inputs (teacher widgets, task mode, task, FORM_FIELDS) describe, as the server
        allows it; saving and starting step 1 both build it here, so the saved YAML is what a run would use."""
        teacher, (mode, task, *values) = read_teacher(*inputs[:len(teacher_in)]), inputs[len(teacher_in):]
        if mode != BUILT_IN:
            raise ConfigError(f"Save the file or dataset as a task first (the Save button above), then {then}.")
        return visitor_config(config_from_form(base_data, workspace=str(studio.workspace), task=task,
                                               teacher=teacher, values=list(values)))

    @user_errors
    def on_save(base_data, *inputs):
        config = form_config(base_data, inputs, "save the config")
        path = _saved_path(config.run_name or config.task)
        save_yaml(config, path)
        return str(path), config_yaml(config), base_dict(config)

    @user_errors
    def on_run_step1(request: gr.Request, base_data, *inputs):
        config = form_config(base_data, inputs, "start step 1")
        config.run_name = config.run_name or f"{config.task}-{time.strftime('%Y%m%d-%H%M%S')}"
        if config.run_name in list_runs(studio.workspace):
            raise ConfigError(f"A run named {config.run_name!r} exists already: pick another run name.")
        job = studio.jobs.submit("generate", f"Step 1 on {config.task}", generate_job(config),
                                 owner=studio.visitor(request), run=config.run_name)
        return f"Started job `{job.id}` → run `{config.run_name}`; its progress is in the Generate tab."

    @user_errors
    def on_estimate(base_data, *inputs):
        config = form_config(base_data, inputs, "estimate its time")
        return estimate_text(config, resolve_task(config.task, config.seed, studio.workspace), studio.workspace)

    @user_errors
    def on_teacher_check(base_data, *inputs):
        config = form_config(base_data, inputs, "check the teacher on it")
        return teacher_check_text(run_check(config))

    @user_errors
    def on_load(path):
        if not path:
            raise ConfigError("Choose a .yaml file to load.")
        config = visitor_config(load_yaml(path))
        resolve_task(config.task, config.seed, studio.workspace)  # a task this workspace lacks is refused here
        config.task = canonical_name(config.task) if is_builtin(config.task) else config.task
        gr.Info(f"Loaded {Path(path).name}.")
        if space.enabled:  # visitor_config let only an allowed teacher through
            teacher = [config.teacher.model, chosen_teacher_note(config.teacher.model)]
        else:
            source, model, gguf = teacher_to_form(config.teacher.model, config.teacher.gguf_file)
            teacher = [source, gr.update(value=model, interactive=source != "packaged"),
                       gr.update(value=gguf, interactive=source != "packaged"), teacher_note(source, model, gguf)]
        return [*teacher, BUILT_IN, gr.update(choices=task_choices(studio.workspace), value=config.task),
                *form_values(config), base_dict(config), config_yaml(config)]

    task_file.upload(on_file, task_file, [text_col1, text_col2, label_col, preview, mapping_result],
                     api_name="setup_preview")
    seed = widgets[[f.key for f in FORM_FIELDS].index("seed")]
    check.click(on_check, [task_file, text_col1, text_col2, label_col, seed, test_file, k_per_label, label_order,
                           answer_words, query_line],
                mapping_result,
                api_name="setup_check_mapping")
    save_upload.click(on_save_upload, [task_file, text_col1, text_col2, label_col, upload_name, seed, test_file,
                                       k_per_label, label_order, answer_words, query_line],
                      [*saved_outputs, mapping_result], api_name="setup_save_upload_task")
    save_hub.click(on_save_hub, [hub_id, hub_config, hub_text1, hub_text2, hub_label, hub_name, seed],
                   [*saved_outputs, hub_result], api_name="setup_save_hub_task")
    studio.demo.load(lambda current: gr.update(choices=task_choices(studio.workspace), value=current), builtin,
                     builtin, api_visibility="private")
    save.click(on_save, [base, *teacher_in, task_mode, builtin, *widgets], [saved_file, yaml_view, base],
               api_name="setup_save")
    packaged = PACKAGED_TEACHER if space.enabled else "packaged"  # the hosted list holds models, the radio sources

    def on_size(teacher, value):
        return student_note(value, PACKAGED_TEACHER_PARAMS if teacher == packaged else None)

    fraction.change(on_size, [teacher_in[0], fraction], student_info, api_visibility="private")
    teacher_in[0].change(on_size, [teacher_in[0], fraction], student_info, api_visibility="private")
    estimate_btn.click(on_estimate, [base, *teacher_in, task_mode, builtin, *widgets], estimated,
                       api_name="setup_estimate")
    # One check at a time: it holds the CPU for about a minute, as a job's step does.
    teacher_check_btn.click(on_teacher_check, [base, *teacher_in, task_mode, builtin, *widgets], teacher_checked,
                            api_name="setup_check", concurrency_limit=1)
    run_step1.click(on_run_step1, [base, *teacher_in, task_mode, builtin, *widgets], started, api_name="setup_run")
    load_file.upload(on_load, load_file, [*teacher_in, teacher_info, task_mode, builtin, *widgets, base, yaml_view],
                     api_name="setup_load")

