"""Jobs tab: every background job with its state, duration and run; the selected job's log; Cancel."""
from __future__ import annotations

import gradio as gr
import pandas as pd

from pages.common import user_errors
from retrikt.studio.jobs_view import (JOB_COLUMNS, OUTSIDE_RUN_COLUMNS, job_header, job_log, job_rows,
                                      outside_run_rows)
from retrikt.studio.timing import job_eta

POLL_SECONDS = 2.0


def build(studio) -> None:
    """Add the Jobs tab to ``studio.demo``."""
    jobs = studio.jobs
    with gr.Tab("Jobs", id="jobs"):
        gr.Markdown(f"All background jobs, newest first, refreshed every {POLL_SECONDS:g} s. One job runs at a time; "
                    "the others wait in the queue. Jobs survive a page reload and a server restart (a job that was "
                    "running when the server stopped shows as *interrupted*).")
        table = gr.Dataframe(pd.DataFrame([], columns=list(JOB_COLUMNS)), label="Jobs (click a row to see its log)",
                             interactive=False, wrap=True, max_height=320)
        with gr.Row():
            job_id = gr.Textbox(label="Selected job id (empty = the newest)", scale=3)
            cancel = gr.Button("Cancel this job", variant="stop", scale=1)
        header = gr.Markdown()
        log = gr.Textbox(label="Log", lines=14, max_lines=30, autoscroll=True, interactive=False)
        gr.Markdown("**Runs made outside the studio** (from the command line), read-only: their status and the time "
                    "each stage took. Open them in the other tabs like any run.")
        outside = gr.Dataframe(pd.DataFrame([], columns=list(OUTSIDE_RUN_COLUMNS)), interactive=False, wrap=True,
                               max_height=240, label="Other runs in this workspace")
        timer = gr.Timer(POLL_SECONDS)  # inside the tab: a component between tabs would shift the tab bar's labels

    def poll(selected):
        snapshot = jobs.snapshot()
        selected = (selected or "").strip()
        job = next((j for j in snapshot if j.id == selected), None) if selected else (snapshot[0] if snapshot else None)
        if selected and job is None:
            text = f"No job with id `{selected}`: pick one from the table."
        else:
            text = job_header(job, jobs.queue_position(job.id) if job else None, studio.space.enabled,
                              job_eta(studio.workspace, job))
        return pd.DataFrame(job_rows(snapshot), columns=list(JOB_COLUMNS)), text, job_log(job)

    def on_row(evt: gr.SelectData):
        row = evt.row_value or []
        return str(row[0]) if row else ""

    @user_errors
    def on_cancel(selected, request: gr.Request):
        selected = (selected or "").strip()
        job = jobs.get(selected) if selected else next(iter(jobs.snapshot()), None)
        if job is None:
            raise gr.Error(f"No job with id `{selected}`." if selected else "There is no job to cancel.")
        if jobs.cancel(job.id, studio.visitor(request)):
            message = f"Cancel requested for {job.title} (`{job.id}`): it stops at its next step."
            gr.Info(message)
        else:
            message = f"{job.title} (`{job.id}`) is {job.state}: only queued or running jobs can be cancelled."
            gr.Warning(message)
        return message

    def poll_outside():
        made_here = {j.run for j in jobs.snapshot() if j.run}
        return pd.DataFrame(outside_run_rows(studio.workspace, made_here), columns=list(OUTSIDE_RUN_COLUMNS))

    outputs = [table, header, log]
    timer.tick(poll, job_id, outputs, api_name="jobs_poll")
    timer.tick(poll_outside, None, outside, api_name="jobs_outside_runs")
    studio.demo.load(poll, job_id, outputs, api_visibility="private")
    table.select(on_row, None, job_id, api_visibility="private").then(poll, job_id, outputs, api_visibility="private")
    job_id.submit(poll, job_id, outputs, api_visibility="private")
    cancel.click(on_cancel, job_id, header, api_name="jobs_cancel")
