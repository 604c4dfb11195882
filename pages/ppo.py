"""PPO tab (step 2): tune a finished run's step-1 soft prompt with PPO as a background job, with live reward-term,
KL and clip-fraction curves, then add the PPO samples to its store."""
from __future__ import annotations

import gradio as gr
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from pages.common import cancel_followed, followed_job, run_choices, sample_rows, user_errors
from retrikt.config import RunConfig, override
from retrikt.jobs_view import job_status
from retrikt.ppo_stage import run_ppo
from retrikt.runs import RunError
from retrikt.student_stage import step1_runs

KIND = "ppo"
CURVES = (("reward", "reward (weighted, before KL)"), ("label_consistency", "label consistency"),
          ("diversity", "diversity"), ("validity", "validity"))


def ppo_figure(points: list[dict]) -> go.Figure:
    """Reward terms (left), KL and clip fraction (right) per update."""
    ppo = [p for p in points if p.get("stage") == "ppo"]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("reward terms", "KL to step 1 and clip fraction"))
    steps = [p["step"] for p in ppo]
    for key, name in CURVES:
        if any(key in p for p in ppo):
            fig.add_trace(go.Scatter(x=steps, y=[p.get(key) for p in ppo], mode="lines+markers", name=name),
                          row=1, col=1)
    for key, name in (("kl", "KL (nats / sample)"), ("clip_fraction", "clip fraction")):
        fig.add_trace(go.Scatter(x=steps, y=[p.get(key) for p in ppo], mode="lines+markers", name=name),
                      row=1, col=2)
    fig.update_xaxes(title_text="update")
    fig.update_layout(height=320, margin=dict(l=40, r=10, t=40, b=40))
    return fig


def ppo_job(workspace, run_name: str, overrides: dict):
    def fn(progress, should_stop, job):
        job.run = run_name
        return run_ppo(str(workspace), run_name, overrides, progress, should_stop).name

    return fn


def build(studio) -> None:
    """Add the PPO tab to ``studio.demo``."""
    workspace = studio.workspace
    cfg = RunConfig().ppo
    with gr.Tab("PPO", id="ppo"):
        gr.Markdown("**Step 2.** Tune a run's step-1 soft prompt with PPO (teacher frozen): the reward is label consistency "
                    "(teacher's probability of the intended label) + diversity + validity, minus a KL penalty to "
                    "the step-1 prompt. Then the teacher writes as many samples as in step 1, stored as "
                    "`generated:ppo`. A cancelled job keeps its checkpoint; starting it again resumes.")
        with gr.Row():
            run = gr.Dropdown([], label="Run with a finished step 1", allow_custom_value=True, scale=4)
            refresh = gr.Button("Refresh runs", scale=1)
        with gr.Row():
            updates = gr.Number(cfg.updates, precision=0, label="PPO updates")
            batch = gr.Number(cfg.rollout_batch_size, precision=0, label="Samples per update")
            w_label = gr.Number(cfg.weight_label, label="Weight: label consistency")
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
        samples = gr.Dataframe(headers=["label", "parsed", "text"], label="Latest generations", wrap=True)

    def runs_update(current):
        return run_choices(step1_runs(workspace), current)

    @user_errors
    def on_start(run_name, n_updates, n_batch, wl, wd, wv, kl_coef, request: gr.Request):
        if not run_name or run_name not in step1_runs(workspace):
            raise RunError("Pick a run whose step 1 is done (refresh the list after a Generate job finished).")
        if not studio.owns(request, run_name):
            raise RunError(f"In this hosted studio you can run PPO only on runs your own step-1 jobs made "
                           f"({run_name} is shared and read-only): start step 1 in the Generate tab first.")
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
        return current, job_status(job, position), ppo_figure(job.points if job else []), sample_rows(job)

    outputs = [job_id, status, curves, samples]
    refresh.click(runs_update, run, run, api_name="ppo_runs")
    studio.demo.load(runs_update, run, run, api_visibility="private")
    start.click(on_start, [run, updates, batch, w_label, w_div, w_valid, kl], job_id, api_name="ppo_start")
    cancel.click(on_cancel, job_id, None, api_name="ppo_cancel")
    timer.tick(poll, job_id, outputs, api_name="ppo_poll")
    studio.demo.load(poll, job_id, outputs, api_visibility="private")
