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
                    "(teacher's probability of the intended label, or its margin over the other labels) + diversity "
                    "(embedding and bigram novelty) + validity (a term or a gate), optionally gated on a minimum "
                    "length, minus a KL penalty to the step-1 prompt (summed over tokens, or length-neutral). "
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
            label_reward = gr.Dropdown(["probability", "margin"], value=cfg.label_reward, label="Label term")
            w_div = gr.Number(cfg.weight_diversity, label="Weight: diversity")
            w_novelty = gr.Number(cfg.weight_novelty, label="Weight: bigram novelty")
            w_valid = gr.Number(cfg.weight_validity, label="Weight: validity")
            gate = gr.Checkbox(cfg.validity_gate, label="Validity as a gate")
        with gr.Row():
            count_cap = gr.Number(cfg.novelty_count_cap, precision=0, minimum=0,
                                  label="Novelty as a count of new bigrams, capped at (0: as a share)")
            min_words = gr.Number(cfg.min_words_quantile, minimum=0, maximum=1,
                                  label="Minimum length: quantile of step-1 sample words (0: off)")
            kl = gr.Number(cfg.kl_coef, label="Initial KL coefficient")
            kl_neutral = gr.Checkbox(cfg.kl_length_neutral, label="Length-neutral KL penalty")
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
    def on_start(run_name, n_updates, n_batch, wl, lr, wd, wn, wv, gated, kl_coef, cap, quantile, neutral,
                 request: gr.Request):
        check_step1_run(run_name, step1_runs(workspace), studio.owns(request, run_name), "PPO")
        overrides = {"ppo.updates": int(n_updates or 0), "ppo.rollout_batch_size": int(n_batch or 0),
                     "ppo.weight_label": float(wl), "ppo.label_reward": lr, "ppo.weight_diversity": float(wd),
                     "ppo.weight_novelty": float(wn), "ppo.weight_validity": float(wv),
                     "ppo.validity_gate": bool(gated), "ppo.kl_coef": float(kl_coef),
                     "ppo.novelty_count_cap": int(cap or 0), "ppo.min_words_quantile": float(quantile or 0),
                     "ppo.kl_length_neutral": bool(neutral)}
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
    start.click(on_start, [run, updates, batch, w_label, label_reward, w_div, w_novelty, w_valid, gate, kl, count_cap,
                           min_words, kl_neutral], job_id, api_name="ppo_start")
    cancel.click(on_cancel, job_id, None, api_name="ppo_cancel").then(poll, job_id, outputs, api_visibility="private")
    timer.tick(poll, job_id, outputs, api_name="ppo_poll")
    studio.demo.load(poll, job_id, outputs, api_visibility="private")
