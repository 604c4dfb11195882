"""Classroom tab: the three steps as one picture with an evaluated run's own numbers, for a projector."""
from __future__ import annotations

import time

import gradio as gr

from pages.common import cancel_followed, followed_job, run_choices, user_errors
from retrikt.config import PRESETS, RunConfig, apply_preset, override
from retrikt.studio.timing import job_eta
from retrikt.studio.jobs_view import job_status
from retrikt.studio.setup_form import task_choices
from retrikt.workflow import run_all_job
from retrikt.studio.classroom import cards_html, classroom, classroom_figure, example_html, steps_html
from retrikt.studio.measured import quick_run_cost
from retrikt.studio.compare import evaluated_runs

KINDS = ("retrieval fixed it", "retrieval broke it")
KIND, QUICK = "run", "quick"
QUICK_USE = "Use it to show the steps; the demo run shows the accuracy."


def quick_run_text() -> str:
    """The quick run's paragraph: what the preset does, what it cost when the bench measured it, what it is for."""
    return " ".join(filter(None, (PRESETS[QUICK].about, quick_run_cost(), QUICK_USE)))


def build(studio) -> None:
    """Add the Classroom tab to ``studio.demo``."""
    workspace = studio.workspace
    with gr.Tab("Classroom", id="classroom"):
        with gr.Row():
            run = gr.Dropdown([], label="Evaluated run", allow_custom_value=True, scale=4)
            refresh = gr.Button("Refresh runs", scale=1)
        cards = gr.HTML()
        steps = gr.HTML()
        figure = gr.Plot(label="Test accuracy")
        shown = gr.State({})
        with gr.Row():
            with gr.Column():
                fixed = gr.HTML()
                open_fixed = gr.Button("Open this example in Compare")
            with gr.Column():
                broke = gr.HTML()
                open_broke = gr.Button("Open this example in Compare")
        with gr.Accordion("Quick classroom run: all three steps, live", open=False):
            gr.Markdown(quick_run_text(), elem_classes="rk-detail")
            with gr.Row():
                quick_task = gr.Dropdown(task_choices(workspace), value="SST-2", label="Task", scale=3)
                quick_start = gr.Button("Start a quick classroom run", variant="primary", scale=1)
                quick_cancel = gr.Button("Cancel", variant="stop", scale=1)
            quick_job = gr.State(None)
            quick_status = gr.Markdown("No quick run yet.")
        quick_timer = gr.Timer(2.0)  # inside the tab: a component between tabs would shift the tab bar's labels

    def runs_update(current):
        return run_choices(evaluated_runs(workspace), current)

    @user_errors
    def on_run(run_name):
        if not run_name:
            return "<h2 class='rk-title'>No evaluated run yet: train and evaluate a student first.</h2>", "", None, \
                "", "", {}
        view = classroom(workspace, run_name)
        picked = {kind: record["uid"] for kind, record in view.examples.items()}
        return (cards_html(view), steps_html(view), classroom_figure(workspace, run_name),
                *(example_html(view.examples.get(kind), kind) for kind in KINDS), picked)

    outputs = [cards, steps, figure, fixed, broke, shown]
    refresh.click(runs_update, run, run, api_name="classroom_runs").then(on_run, run, outputs,
                                                                         api_visibility="private")
    studio.demo.load(runs_update, run, run, api_visibility="private").then(on_run, run, outputs,
                                                                           api_visibility="private")
    run.input(on_run, run, outputs, api_name="classroom_open_run")

    @user_errors
    def on_quick(task_name, request: gr.Request):
        config = apply_preset(override(RunConfig(workspace=str(workspace)), {
            "task": task_name, "run_name": f"quick-{task_name}-{time.strftime('%Y%m%d-%H%M%S')}"}), QUICK)
        job = studio.jobs.submit(KIND, f"Quick classroom run on {task_name}",
                                 run_all_job(config, PRESETS[QUICK].eval_limit), owner=studio.visitor(request),
                                 run=config.run_name)
        return job.id

    def on_quick_cancel(current, request: gr.Request):
        cancel_followed(studio.jobs, current, KIND, "Cancel requested: the run stops at its next step.",
                        studio.visitor(request))

    def quick_poll(current):
        current, job, position = followed_job(studio.jobs, current, KIND)
        return current, job_status(job, position, studio.space.enabled, job_eta(studio.workspace, job, PRESETS[QUICK].eval_limit)) \
            if job else "No quick run yet."

    quick_start.click(on_quick, quick_task, quick_job, api_name="classroom_quick_start")
    quick_cancel.click(on_quick_cancel, quick_job, None, api_name="classroom_quick_cancel")
    quick_timer.tick(quick_poll, quick_job, [quick_job, quick_status], api_name="classroom_quick_poll")

    def link_to_compare(compare) -> None:
        for button, kind in ((open_fixed, KINDS[0]), (open_broke, KINDS[1])):
            def go(run_name, picked, kind=kind):
                if not (picked or {}).get(kind):
                    raise gr.Error(f"This run has no test example where {kind}.", print_exception=False)
                return gr.update(value=run_name), gr.update(value=kind), gr.Tabs(selected="compare")

            def show(request: gr.Request, run_name, picked, kind=kind):
                return compare.open_example(request, run_name, kind, picked[kind])

            button.click(go, [run, shown], [compare.run, compare.wanted, studio.tabs],
                         api_visibility="private").success(show, [run, shown], compare.run_outputs,
                                                           api_visibility="private")

    studio.links.append(("compare", link_to_compare))
