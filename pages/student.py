"""Student tab (step 3): train the retrieval student and plain KD on a finished run's store, evaluate them as a
background job, then show every system's accuracy, speed and confusion matrix."""
from __future__ import annotations

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


def build(studio) -> None:
    """Add the Student tab to ``studio.demo``."""
    workspace = studio.workspace
    defaults = RunConfig().student
    with gr.Tab("Student", id="student"):
        gr.Markdown(f"**Step 3.** Train a student of at most {defaults.max_params_fraction:.0%} of the teacher's size "
                    "on a run's knowledge store (with retrieval, and the same student as plain KD without it), then "
                    "evaluate every system on the test split. Runs in the background; the result also appears in the "
                    "Compare tab.")
        with gr.Row():
            run = gr.Dropdown([], label="Run with a finished knowledge store", allow_custom_value=True, scale=4)
            refresh = gr.Button("Refresh runs", scale=1)
        with gr.Row():
            epochs = gr.Number(defaults.epochs, precision=0, label="Training epochs")
            k = gr.Number(defaults.k, precision=0, label="Neighbours k")
            beta = gr.Slider(0.0, 1.0, value=defaults.beta, step=0.05, label="beta (weight of the neighbours)")
            tune_beta = gr.Checkbox(defaults.tune_beta, label="Check beta on the dev split")
        with gr.Row():
            store_filter = gr.Dropdown(FILTERS, value=defaults.store_filter, label="Store entries used", scale=3)
            init = gr.Dropdown(INITS, value=defaults.init, label="Student initialisation", scale=2)
            limit = gr.Number(200, precision=0, label="Test examples (0 = the whole test split)", scale=1)
        with gr.Row():
            start = gr.Button("Train and evaluate", variant="primary")
            cancel = gr.Button("Cancel", variant="stop")
        job_id = gr.State(None)
        finished = gr.State(None)
        timer = gr.Timer(2.0)  # inside the tab: a component between tabs would shift the tab bar's labels
        status = gr.Markdown("No job yet.")
        results_md = gr.Markdown()
        systems = gr.Dataframe(pd.DataFrame([], columns=list(SYSTEM_COLUMNS)), label="Results per system",
                               interactive=False, wrap=True)
        bars = gr.Plot(label="Accuracy")
        matrices = gr.Plot(label="Confusion matrices")
        with gr.Row():
            export = gr.Button("Export the student (.zip)", scale=1)
            bundle = gr.File(label="Student bundle: weights, key index, store entries, metrics, model card", scale=3)

    def runs_update(current):
        return run_choices(step1_runs(workspace), current)

    @user_errors
    def on_start(run_name, n_epochs, n_k, b, tb, sf, student_init, n_limit, request: gr.Request):
        check_step1_run(run_name, step1_runs(workspace), studio.owns(request, run_name), "the student")
        config = student_config(workspace, run_name, n_epochs, n_k, b, tb, sf, student_init)
        limit_value = int(n_limit or 0)
        if limit_value < 0:
            raise RunError("The number of test examples cannot be negative (0 = all).")
        job = studio.jobs.submit(KIND, f"Student on {run_name}", student_job(config, run_name, limit_value or None),
                                 owner=studio.visitor(request), run=run_name)
        return job.id

    def on_cancel(current, request: gr.Request):
        cancel_followed(studio.jobs, current, KIND, "Cancel requested: the job stops within a training or "
                                                    "scoring batch.", studio.visitor(request))

    @user_errors
    def show_results(run_name):
        if not run_name:
            return "", pd.DataFrame([], columns=list(SYSTEM_COLUMNS)), None, None
        try:
            summary = eval_summary(workspace, run_name)
        except RunError:
            return (f"Run {run_name} has no evaluation yet.", pd.DataFrame([], columns=list(SYSTEM_COLUMNS)),
                    None, None)
        headers, rows = systems_table(summary)
        recs = records(workspace, run_name)
        labels = list(recs[0]["student"]["probs"]) if recs else []
        block = open_run(workspace, run_name).summary().get("student") or {}
        text = (f"**{run_name}**: {summary['test_examples']} of {summary['test_total']} test examples · "
                f"beta {summary['systems']['student_retrieval'].get('beta')}"
                + (f" ({beta_reason(block)})" if block else ""))
        if teacher_contribution(summary):
            text += "\n\n" + teacher_contribution(summary)
        if weak_teacher_warning(summary):
            text += "\n\n" + weak_teacher_warning(summary)
        return text, pd.DataFrame(rows, columns=headers), accuracy_figure(summary), confusion_figure(recs, labels)

    def poll(current, _shown_run):
        current, job, position = followed_job(studio.jobs, current, KIND)
        return current, job_status(job, position, studio.space.enabled, job_eta(studio.workspace, job)), \
            finished_marker(job)

    @user_errors
    def on_export(run_name):
        return str(export_student_zip(workspace, run_name))

    export.click(on_export, run, bundle, api_name="student_export")
    refresh.click(runs_update, run, run, api_name="student_runs")
    studio.demo.load(runs_update, run, run, api_visibility="private").then(
        show_results, run, [results_md, systems, bars, matrices], api_visibility="private")
    run.change(show_results, run, [results_md, systems, bars, matrices], api_name="student_results")
    start.click(on_start, [run, epochs, k, beta, tune_beta, store_filter, init, limit], job_id, api_name="student_start")
    cancel.click(on_cancel, job_id, None, api_name="student_cancel").then(
        poll, [job_id, run], [job_id, status, finished], api_visibility="private")
    timer.tick(poll, [job_id, run], [job_id, status, finished], api_name="student_poll")
    # A finished job's results replace the table without a click.
    finished.change(lambda marker, r: show_results(r) if marker else (gr.skip(),) * 4, [finished, run],
                    [results_md, systems, bars, matrices], api_visibility="private")
