"""PPO tab (step 2): tune a finished run's step-1 soft prompt with PPO as a background job, with live reward-term,
KL and clip-fraction curves, then add the PPO samples to its store. With no job running it shows the selected
run's recorded curves, quality table and PPO samples."""
from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from pages.common import cancel_followed, followed_job, run_choices, sample_rows, user_errors
from retrikt.config import RunConfig, override
from retrikt.ppo.stage import ppo_job
from retrikt.student.stage import step1_runs
from retrikt.studio.timing import job_eta
from retrikt.runs import read_summary
from retrikt.studio.measured import ppo_gain
from retrikt.studio.jobs_view import check_step1_run, job_is_live, job_status, ppo_figure, ppo_quality
from retrikt.studio.run_history import ppo_record, ppo_status

KIND = "ppo"


def _layout() -> SimpleNamespace:
    cfg = RunConfig().ppo
    with gr.Tab("PPO", id="ppo") as tab:
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
    return SimpleNamespace(tab=tab, run=run, refresh=refresh, settings=[updates, batch, w_label, w_div, w_valid, kl],
                           start=start, cancel=cancel, job_id=job_id, timer=timer, status=status, curves=curves,
                           quality=quality, samples=samples)


def build(studio) -> None:
    """Add the PPO tab to ``studio.demo``."""
    workspace = studio.workspace
    ui = _layout()

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

    outputs = [ui.job_id, ui.status, ui.curves, ui.quality, ui.samples]
    ui.refresh.click(runs_update, ui.run, ui.run, api_name="ppo_runs")
    ui.start.click(on_start, [ui.run, *ui.settings], ui.job_id, api_name="ppo_start").success(
        lambda: gr.Timer(active=True), None, ui.timer, api_visibility="private")
    ui.cancel.click(on_cancel, ui.job_id, None, api_name="ppo_cancel").then(
        poll, ui.job_id, outputs, api_visibility="private")
    after_poll = _wire_record(studio, ui)
    after_poll(ui.timer.tick(poll, ui.job_id, outputs, api_name="ppo_poll"))
    after_poll(studio.demo.load(runs_update, ui.run, ui.run, api_visibility="private").then(
        poll, ui.job_id, outputs, api_visibility="private"))


def _wire_record(studio, ui):
    """Show the selected run's record while no followed job is live; returns how to chain it after a poll."""
    workspace = studio.workspace
    shown = [ui.status, ui.curves, ui.quality, ui.samples]

    def run_record(current, run_name):
        _, job, position = followed_job(studio.jobs, current, KIND)
        if job_is_live(job) or not run_name or run_name not in step1_runs(workspace):
            return (gr.skip(),) * len(shown)  # a live job's poll draws; a typed name that is no run changes nothing
        summary, record = read_summary(workspace, run_name), ppo_record(workspace, run_name)
        status = ppo_status(record, summary)
        if job is not None and job.run == run_name:  # the job's outcome (an error, say) stays in view
            status = job_status(job, position, studio.space.enabled) + "\n\n" + status
        return status, ppo_figure(record.points), ppo_quality(summary), record.samples

    def record_when_idle(current, run_name):
        # Polling stops once the job is over: the record then stays, instead of being redrawn every tick.
        _, job, _ = followed_job(studio.jobs, current, KIND)
        return *run_record(current, run_name), gr.Timer(active=job_is_live(job))

    ui.run.change(run_record, [ui.job_id, ui.run], shown, api_name="ppo_record")
    # A job started in another window is picked up when the tab is opened again.
    ui.tab.select(lambda: gr.Timer(active=True), None, ui.timer, api_visibility="private")
    return lambda event: event.then(record_when_idle, [ui.job_id, ui.run], [*shown, ui.timer],
                                    api_visibility="private")
