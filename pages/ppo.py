"""PPO tab (step 2): tune a finished run's step-1 soft prompt with PPO as a background job, with live reward-term,
KL and clip-fraction curves, then add the PPO samples to its store."""
from __future__ import annotations

import gradio as gr

from pages.common import cancel_followed, followed_job, run_choices, sample_rows, user_errors
from retrikt.config import RunConfig, override
from retrikt.ppo.stage import ppo_job
from retrikt.student.stage import step1_runs
from retrikt.studio.timing import job_eta
from retrikt.runs import read_summary
from retrikt.studio.measured import ppo_gain
from retrikt.studio.jobs_view import check_step1_run, job_status, ppo_figure, ppo_quality

KIND = "ppo"
def build(studio) -> None:
    """Add the PPO tab to ``studio.demo``."""
    workspace = studio.workspace
    cfg = RunConfig().ppo
    with gr.Tab("PPO", id="ppo"):
        gr.Markdown("**Step 2.** Tune a run's step-1 soft prompt with PPO (teacher frozen): the reward is a label term "
                    "(the teacher's probability of the intended label) + diversity (embedding novelty) + validity, "
                    "minus a KL penalty to the step-1 prompt. "
                    "Then the teacher writes as many samples as in step 1, stored as "
                    "`generated:ppo`. A cancelled job keeps its checkpoint; starting it again resumes.")
        gain = ppo_gain()
        gr.Markdown("**Optional: a full run skips this step unless asked** (`run --ppo`, or the Setup switch)"
                    + (f". What it buys, {gain.sentence()}." if gain else "."))
        with gr.Row():
            run = gr.Dropdown([], label="Run with a finished step 1", allow_custom_value=True, scale=4)
            refresh = gr.Button("Refresh runs", scale=1)
        with gr.Row():
            updates = gr.Number(cfg.updates, precision=0, label="PPO updates")
            batch = gr.Number(cfg.rollout_batch_size, precision=0, label="Samples per update")
            w_label = gr.Number(cfg.weight_label, label="Weight: label")
            w_div = gr.Number(cfg.weight_diversity, label="Weight: diversity")
            w_valid = gr.Number(cfg.weight_validity, label="Weight: validity")
            kl = gr.Number(cfg.kl_coef, label="Initial KL coefficient")
        with gr.Row():
            start = gr.Button("Start PPO", variant="primary")
            cancel = gr.Button("Cancel", variant="stop")
        job_id = gr.State(None)
        timer = gr.Timer(2.0)  # inside the tab: a component between tabs would shift the tab bar's labels
        status = gr.Markdown("No job yet.")
        curves = gr.Plot(label="Per update")
        quality = gr.Markdown("")
        samples = gr.Dataframe(headers=["label", "parsed", "text"], label="Latest generations", wrap=True)

    def runs_update(current):
        return run_choices(step1_runs(workspace), current)

    @user_errors
    def on_start(run_name, n_updates, n_batch, wl, wd, wv, kl_coef, request: gr.Request):
        check_step1_run(run_name, step1_runs(workspace), studio.owns(request, run_name), "PPO")
        overrides = {"ppo.updates": int(n_updates or 0), "ppo.rollout_batch_size": int(n_batch or 0),
                     "ppo.weight_label": float(wl), "ppo.weight_diversity": float(wd),
                     "ppo.weight_validity": float(wv), "ppo.kl_coef": float(kl_coef)}
        override(RunConfig(), overrides)  # refuse out-of-range values now, not in the job
        return studio.jobs.submit(KIND, f"PPO on {run_name}", ppo_job(workspace, run_name, overrides),
                                  owner=studio.visitor(request), run=run_name).id

    def on_cancel(current, request: gr.Request):
        cancel_followed(studio.jobs, current, KIND,
                        "Cancel requested: PPO stops after the current update (its checkpoint is kept).",
                        studio.visitor(request))

    def poll(current):
        current, job, position = followed_job(studio.jobs, current, KIND)
        status = job_status(job, position, studio.space.enabled, job_eta(studio.workspace, job))
        table = ppo_quality(read_summary(workspace, job.run)) if job and job.run else ""
        return current, status, ppo_figure(job.points if job else []), table, sample_rows(job)

    outputs = [job_id, status, curves, quality, samples]
    refresh.click(runs_update, run, run, api_name="ppo_runs")
    studio.demo.load(runs_update, run, run, api_visibility="private")
    start.click(on_start, [run, updates, batch, w_label, w_div, w_valid, kl], job_id, api_name="ppo_start")
    cancel.click(on_cancel, job_id, None, api_name="ppo_cancel").then(poll, job_id, outputs, api_visibility="private")
    timer.tick(poll, job_id, outputs, api_name="ppo_poll")
    studio.demo.load(poll, job_id, outputs, api_visibility="private")
