"""Step 1 tab: run prompt tuning + generation into a knowledge store as a background job, watch it live; with no
job running, show a finished run's recorded tuning loss and samples."""
from __future__ import annotations

import time
from types import SimpleNamespace

import gradio as gr

from pages.common import OptionalNumber, cancel_followed, followed_job, sample_rows, user_errors
from retrikt.config import RunConfig, override
from retrikt.studio.timing import job_eta
from retrikt.studio.jobs_view import job_is_live, job_status, tuning_loss_figure
from retrikt.studio.run_history import tuning_record, tuning_status
from retrikt.generate.stage import generate_job
from retrikt.student.stage import step1_runs
from retrikt.studio.setup_form import task_choices

KIND = "generate"


def build(studio) -> None:
    with gr.Tab("Generate", id="generate") as tab:
        gr.Markdown("**Step 1.** Tune a soft prompt on the task's few labelled examples, then let the teacher write new "
                    "labelled samples into a knowledge store. Runs in the background; you can reload the page.")
        with gr.Row():
            task = gr.Dropdown(task_choices(studio.workspace), value="SST-2", label="Task")
            per_label = OptionalNumber(value=None, precision=0, label="Samples per label (0 = task default)")
            steps = OptionalNumber(value=RunConfig().prompt_tuning.steps, precision=0,
                              label="Tuning steps (0 = task default)")
            temperature = gr.Slider(0.0, 2.0, value=0.9, step=0.05, label="Temperature")
            top_p = gr.Slider(0.05, 1.0, value=0.95, step=0.05, label="Top-p")
        with gr.Row():
            start = gr.Button("Start", variant="primary")
            cancel = gr.Button("Cancel", variant="stop")
        job_id = gr.State(None)
        finished_run = gr.Dropdown([], value=None, label="Show a finished run", allow_custom_value=True)
        timer = gr.Timer(2.0)
        status = gr.Markdown("No job yet.")
        loss = gr.Plot(label="Loss")
        samples = gr.Dataframe(headers=["label", "parsed", "text"], label="Latest generations", wrap=True)

        @user_errors
        def on_start(task_name, n, n_steps, temp, p, request: gr.Request):
            config = override(RunConfig(workspace=str(studio.workspace)), {
                "task": task_name, "generation.samples_per_label": None if n is None else int(n),
                "prompt_tuning.steps": None if n_steps is None else int(n_steps), "generation.temperature": float(temp),
                "generation.top_p": float(p),
                "run_name": f"{task_name}-{time.strftime('%Y%m%d-%H%M%S')}",
            })
            job = studio.jobs.submit(KIND, f"Step 1 on {task_name}", generate_job(config),
                                     owner=studio.visitor(request), run=config.run_name)
            return job.id

        def on_cancel(current, request: gr.Request):
            cancel_followed(studio.jobs, current, KIND, "Cancel requested: the job stops at its next step.",
                            studio.visitor(request))

        def poll(current):
            current, job, position = followed_job(studio.jobs, current, KIND)
            status = job_status(job, position, studio.space.enabled, job_eta(studio.workspace, job))
            return current, status, tuning_loss_figure(job.points if job else []), sample_rows(job)

        outputs = [job_id, status, loss, samples]
        # A started job is what the tab shows, also once it is over: the finished run picked before is put away.
        start.click(on_start, [task, per_label, steps, temperature, top_p], job_id, api_name="generate_start").success(
            lambda: (gr.Timer(active=True), None), None, [timer, finished_run], api_visibility="private")
        cancel.click(on_cancel, job_id, None, api_name="generate_cancel").then(
            poll, job_id, outputs, api_visibility="private")
        after_poll = _wire_record(studio, SimpleNamespace(tab=tab, job_id=job_id, run=finished_run, timer=timer,
                                                          shown=[status, loss, samples]))
        after_poll(timer.tick(poll, job_id, outputs, api_name="generate_poll"))
        after_poll(studio.demo.load(poll, job_id, outputs, api_name="generate_poll_on_load"))
        # Tasks saved in the Setup tab join the list on the next page load (and on focus, without one).
        refresh = lambda current: gr.update(choices=task_choices(studio.workspace), value=current)  # noqa: E731
        studio.demo.load(refresh, task, task, api_visibility="private")
        task.focus(refresh, task, task, api_visibility="private")


def _wire_record(studio, ui):
    """Show the run picked under "Show a finished run" while no followed job is live; returns how to chain that
    after a poll."""
    workspace = studio.workspace

    def run_record(current, run_name):
        _, job, _ = followed_job(studio.jobs, current, KIND)
        if job_is_live(job) or not run_name or run_name not in step1_runs(workspace):
            return (gr.skip(),) * len(ui.shown)  # a live job's poll draws; no pick leaves the last job in view
        record = tuning_record(workspace, run_name)
        return tuning_status(record), tuning_loss_figure(record.points), record.samples

    def record_when_idle(current, run_name):
        # Polling stops once the job is over: the record then stays, instead of being redrawn every tick.
        _, job, _ = followed_job(studio.jobs, current, KIND)
        return *run_record(current, run_name), gr.Timer(active=job_is_live(job))

    def refresh(current):
        names = step1_runs(workspace)  # unlike the PPO tab, nothing is picked for the visitor: step 1 is the new job
        return gr.update(choices=names, value=current if current in names else None)

    ui.run.change(run_record, [ui.job_id, ui.run], ui.shown, api_name="generate_record")
    studio.demo.load(refresh, ui.run, ui.run, api_visibility="private")
    ui.run.focus(refresh, ui.run, ui.run, api_visibility="private")
    # A job started elsewhere (the Setup tab, another window) is picked up when the tab is opened again.
    ui.tab.select(lambda: gr.Timer(active=True), None, ui.timer, api_visibility="private")
    return lambda event: event.then(record_when_idle, [ui.job_id, ui.run], [*ui.shown, ui.timer],
                                    api_visibility="private")
