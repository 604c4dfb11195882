"""Step 1 tab: run prompt tuning + generation into a knowledge store as a background job, watch it live."""
from __future__ import annotations

import time

import gradio as gr

from pages.common import OptionalNumber, cancel_followed, followed_job, sample_rows, user_errors
from retrikt.config import RunConfig, override
from retrikt.studio.timing import job_eta
from retrikt.studio.jobs_view import job_status, tuning_loss_figure
from retrikt.generate.stage import generate_job
from retrikt.studio.setup_form import task_choices

KIND = "generate"


def build(studio) -> None:
    with gr.Tab("Generate", id="generate"):
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
        start.click(on_start, [task, per_label, steps, temperature, top_p], job_id, api_name="generate_start")
        cancel.click(on_cancel, job_id, None, api_name="generate_cancel").then(
            poll, job_id, outputs, api_visibility="private")
        gr.Timer(2.0).tick(poll, job_id, outputs, api_name="generate_poll")
        studio.demo.load(poll, job_id, outputs, api_name="generate_poll_on_load")
        # Tasks saved in the Setup tab join the list on the next page load (and on focus, without one).
        refresh = lambda current: gr.update(choices=task_choices(studio.workspace), value=current)  # noqa: E731
        studio.demo.load(refresh, task, task, api_visibility="private")
        task.focus(refresh, task, task, api_visibility="private")

