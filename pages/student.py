"""Student tab (step 3): train the retrieval student and plain KD on a finished run's store, evaluate them as a
background job, then show every system's accuracy, speed and confusion matrix."""
from __future__ import annotations

from types import SimpleNamespace

import gradio as gr
import pandas as pd

from pages.common import cancel_followed, followed_job, run_choices, user_errors
from retrikt.studio.compare import (
    SYSTEM_COLUMNS, accuracy_figure, confusion_figure, eval_summary, export_student_zip, records, systems_table,
    teacher_contribution, weak_teacher_warning,
)
from retrikt.config import RunConfig, override
from retrikt.studio.measured import student_init
from retrikt.studio.timing import job_eta
from retrikt.studio.jobs_view import check_step1_run, finished_marker, job_status
from retrikt.runs import RunError, list_runs, open_run
from retrikt.student.stage import beta_reason, step1_runs, student_job

KIND = "student"
FILTERS = [("agree: keep entries whose teacher label is the intended one", "agree"),
           ("weight: keep all, weighted by the teacher's probability", "weight"), ("none: keep all", "none")]


INITS = [("MiniLM: embeddings + sentence distillation"
          + (f" ({found.sentence()})" if (found := student_init()) else ""), "minilm"),
         ("random (quick)", "random")]


def student_config(workspace, run_name: str, epochs, k, beta, tune_beta, store_filter, init) -> RunConfig:
    """The run's own config with the form's student fields (the CLI's `student --set student.x=...` twin)."""
    if not run_name or run_name not in list_runs(workspace):
        raise RunError("Pick a run whose step 1 is done (refresh the list after a Generate job finished).")
    config = open_run(workspace, run_name).config
    config.workspace = str(workspace)
    return override(config, {"student.epochs": int(epochs or 0), "student.k": int(k or 0),
                             "student.beta": float(beta), "student.tune_beta": bool(tune_beta),
                             "student.store_filter": store_filter, "student.init": init})


def _empty_systems() -> pd.DataFrame:
    return pd.DataFrame([], columns=list(SYSTEM_COLUMNS))


def _headline(workspace, run_name: str, summary: dict) -> str:
    """The evaluation in words: how many test examples, the beta used and why, and what to make of the teacher."""
    block = open_run(workspace, run_name).summary().get("student") or {}
    text = (f"**{run_name}**: {summary['test_examples']} of {summary['test_total']} test examples · "
            f"beta {summary['systems']['student_retrieval'].get('beta')}"
            + (f" ({beta_reason(block)})" if block else ""))
    if teacher_contribution(summary):
        text += "\n\n" + teacher_contribution(summary)
    if weak_teacher_warning(summary):
        text += "\n\n" + weak_teacher_warning(summary)
    return text


class _Tab(SimpleNamespace):
    """The tab's components by name, and the lists of them its events take and fill.

    A list's order is the order of an endpoint's values, which API clients rely on."""

    @property
    def start_in(self) -> list:
        return [self.run, self.epochs, self.k, self.beta, self.tune_beta, self.store_filter, self.init, self.limit]

    @property
    def results_out(self) -> list:
        return [self.results_md, self.systems, self.bars, self.matrices]

    @property
    def poll_out(self) -> list:
        return [self.job_id, self.status, self.finished]


def _layout() -> _Tab:
    ui, defaults = _Tab(), RunConfig().student
    gr.Markdown(f"**Step 3.** Train a student of at most {defaults.max_params_fraction:.0%} of the teacher's size "
                "on a run's knowledge store (with retrieval, and the same student as plain KD without it), then "
                "evaluate every system on the test split. Runs in the background; the result also appears in the "
                "Compare tab.")
    with gr.Row():
        ui.run = gr.Dropdown([], label="Run with a finished knowledge store", allow_custom_value=True, scale=4)
        ui.refresh = gr.Button("Refresh runs", scale=1)
    _settings_layout(ui, defaults)
    with gr.Row():
        ui.start = gr.Button("Train and evaluate", variant="primary")
        ui.cancel = gr.Button("Cancel", variant="stop")
    ui.job_id = gr.State(None)
    ui.finished = gr.State(None)
    ui.timer = gr.Timer(2.0)  # inside the tab: a component between tabs would shift the tab bar's labels
    ui.status = gr.Markdown("No job yet.")
    ui.results_md = gr.Markdown()
    ui.systems = gr.Dataframe(_empty_systems(), label="Results per system", interactive=False, wrap=True)
    ui.bars = gr.Plot(label="Accuracy")
    ui.matrices = gr.Plot(label="Confusion matrices")
    with gr.Row():
        ui.export = gr.Button("Export the student (.zip)", scale=1)
        ui.bundle = gr.File(label="Student bundle: weights, key index, store entries, metrics, model card", scale=3)
    return ui


def _settings_layout(ui: _Tab, defaults) -> None:
    with gr.Row():
        ui.epochs = gr.Number(defaults.epochs, precision=0, label="Training epochs")
        ui.k = gr.Number(defaults.k, precision=0, label="Neighbours k")
        ui.beta = gr.Slider(0.0, 1.0, value=defaults.beta, step=0.05, label="beta (weight of the neighbours)")
        ui.tune_beta = gr.Checkbox(defaults.tune_beta, label="Check beta on the dev split")
    with gr.Row():
        ui.store_filter = gr.Dropdown(FILTERS, value=defaults.store_filter, label="Store entries used", scale=3)
        ui.init = gr.Dropdown(INITS, value=defaults.init, label="Student initialisation", scale=2)
        ui.limit = gr.Number(200, precision=0, label="Test examples (0 = the whole test split)", scale=1)


class _Handlers:
    """The tab's event handlers. Their parameter names are the API's: a client may pass the values by name."""

    def __init__(self, studio):
        self.studio, self.workspace = studio, studio.workspace

    def runs_update(self, current):
        return run_choices(step1_runs(self.workspace), current)

    @user_errors
    def on_start(self, run_name, n_epochs, n_k, b, tb, sf, student_init, n_limit, request: gr.Request):
        check_step1_run(run_name, step1_runs(self.workspace), self.studio.owns(request, run_name), "the student")
        config = student_config(self.workspace, run_name, n_epochs, n_k, b, tb, sf, student_init)
        limit_value = int(n_limit or 0)
        if limit_value < 0:
            raise RunError("The number of test examples cannot be negative (0 = all).")
        job = self.studio.jobs.submit(KIND, f"Student on {run_name}",
                                      student_job(config, run_name, limit_value or None),
                                      owner=self.studio.visitor(request), run=run_name)
        return job.id

    def on_cancel(self, current, request: gr.Request):
        cancel_followed(self.studio.jobs, current, KIND, "Cancel requested: the job stops within a training or "
                                                         "scoring batch.", self.studio.visitor(request))

    @user_errors
    def show_results(self, run_name):
        if not run_name:
            return "", _empty_systems(), None, None
        try:
            summary = eval_summary(self.workspace, run_name)
        except RunError:
            return f"Run {run_name} has no evaluation yet.", _empty_systems(), None, None
        headers, rows = systems_table(summary)
        recs = records(self.workspace, run_name)
        labels = list(recs[0]["student"]["probs"]) if recs else []
        return (_headline(self.workspace, run_name, summary), pd.DataFrame(rows, columns=headers),
                accuracy_figure(summary), confusion_figure(recs, labels))

    def on_finished(self, marker, run_name):
        return self.show_results(run_name) if marker else (gr.skip(),) * 4

    def poll(self, current, _shown_run):
        current, job, position = followed_job(self.studio.jobs, current, KIND)
        return (current, job_status(job, position, self.studio.space.enabled, job_eta(self.workspace, job)),
                finished_marker(job))

    @user_errors
    def on_export(self, run_name):
        return str(export_student_zip(self.workspace, run_name))


def build(studio) -> None:
    """Add the Student tab to ``studio.demo``."""
    with gr.Tab("Student", id="student"):
        ui = _layout()
    h = _Handlers(studio)
    ui.export.click(h.on_export, ui.run, ui.bundle, api_name="student_export")
    ui.refresh.click(h.runs_update, ui.run, ui.run, api_name="student_runs")
    studio.demo.load(h.runs_update, ui.run, ui.run, api_visibility="private").then(
        h.show_results, ui.run, ui.results_out, api_visibility="private")
    ui.run.change(h.show_results, ui.run, ui.results_out, api_name="student_results")
    ui.start.click(h.on_start, ui.start_in, ui.job_id, api_name="student_start")
    ui.cancel.click(h.on_cancel, ui.job_id, None, api_name="student_cancel").then(
        h.poll, [ui.job_id, ui.run], ui.poll_out, api_visibility="private")
    ui.timer.tick(h.poll, [ui.job_id, ui.run], ui.poll_out, api_name="student_poll")
    # A finished job's results replace the table without a click.
    ui.finished.change(h.on_finished, [ui.finished, ui.run], ui.results_out, api_visibility="private")
