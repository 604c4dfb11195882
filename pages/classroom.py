"""Classroom tab: the three steps as one picture with an evaluated run's own numbers, for a projector."""
from __future__ import annotations

import functools
import time
from types import SimpleNamespace

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
NO_QUICK_RUN = "No quick run yet."
NO_RUN = "<h2 class='rk-title'>No evaluated run yet: train and evaluate a student first.</h2>"


def quick_run_text() -> str:
    """The quick run's paragraph: what the preset does, what it cost when the bench measured it, what it is for."""
    return " ".join(filter(None, (PRESETS[QUICK].about, quick_run_cost(), QUICK_USE)))


class _Tab(SimpleNamespace):
    """The tab's components by name, and the lists of them its events fill.

    A list's order is the order of an endpoint's values, which API clients rely on."""

    @property
    def run_out(self) -> list:
        """The run's cards, steps and chart, its two examples (fixed, broke) and their uids for the Compare links."""
        return [self.cards, self.steps, self.figure, self.fixed, self.broke, self.shown]

    @property
    def example_links(self) -> list:
        """(button, kind of example it opens in Compare), in the order of KINDS."""
        return [(self.open_fixed, KINDS[0]), (self.open_broke, KINDS[1])]


def _layout(workspace) -> _Tab:
    ui = _Tab()
    with gr.Row():
        ui.run = gr.Dropdown([], label="Evaluated run", allow_custom_value=True, scale=4)
        ui.refresh = gr.Button("Refresh runs", scale=1)
    # The chart beside the cards: below them it sat under the fold of a 1400x900 projector screen.
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            ui.cards = gr.HTML()
        with gr.Column(scale=2):
            ui.figure = gr.Plot(label="Test accuracy", elem_id="classroom-accuracy")
    ui.steps = gr.HTML()
    ui.shown = gr.State({})
    with gr.Row():
        with gr.Column():
            ui.fixed = gr.HTML()
            ui.open_fixed = gr.Button("Open this example in Compare")
        with gr.Column():
            ui.broke = gr.HTML()
            ui.open_broke = gr.Button("Open this example in Compare")
    with gr.Accordion("Quick classroom run: all three steps, live", open=False):
        gr.Markdown(quick_run_text(), elem_classes="rk-detail")
        with gr.Row():
            ui.quick_task = gr.Dropdown(task_choices(workspace), value="SST-2", label="Task", scale=3)
            ui.quick_start = gr.Button("Start a quick classroom run", variant="primary", scale=1)
            ui.quick_cancel = gr.Button("Cancel", variant="stop", scale=1)
        ui.quick_job = gr.State(None)
        ui.quick_status = gr.Markdown(NO_QUICK_RUN)
    ui.quick_timer = gr.Timer(2.0)  # inside the tab: a component between tabs would shift the tab bar's labels
    return ui


class _Handlers:
    """The tab's event handlers. Their parameter names are the API's: a client may pass the values by name."""

    def __init__(self, studio):
        self.studio, self.workspace = studio, studio.workspace

    def runs_update(self, current):
        return run_choices(evaluated_runs(self.workspace), current)

    @user_errors
    def on_run(self, run_name):
        if not run_name:
            return NO_RUN, "", None, "", "", {}
        view = classroom(self.workspace, run_name)
        picked = {kind: record["uid"] for kind, record in view.examples.items()}
        return (cards_html(view), steps_html(view), classroom_figure(self.workspace, run_name),
                *(example_html(view.examples.get(kind), kind) for kind in KINDS), picked)

    @user_errors
    def on_quick(self, task_name, request: gr.Request):
        config = apply_preset(override(RunConfig(workspace=str(self.workspace)), {
            "task": task_name, "run_name": f"quick-{task_name}-{time.strftime('%Y%m%d-%H%M%S')}"}), QUICK)
        job = self.studio.jobs.submit(KIND, f"Quick classroom run on {task_name}",
                                      run_all_job(config, PRESETS[QUICK].eval_limit),
                                      owner=self.studio.visitor(request), run=config.run_name)
        return job.id

    def on_quick_cancel(self, current, request: gr.Request):
        cancel_followed(self.studio.jobs, current, KIND, "Cancel requested: the run stops at its next step.",
                        self.studio.visitor(request))

    def quick_poll(self, current):
        current, job, position = followed_job(self.studio.jobs, current, KIND)
        if not job:
            return current, NO_QUICK_RUN
        eta = job_eta(self.workspace, job, PRESETS[QUICK].eval_limit)
        return current, job_status(job, position, self.studio.space.enabled, eta)


def build(studio) -> None:
    """Add the Classroom tab to ``studio.demo``."""
    with gr.Tab("Classroom", id="classroom"):
        ui = _layout(studio.workspace)
    h = _Handlers(studio)
    ui.refresh.click(h.runs_update, ui.run, ui.run, api_name="classroom_runs").then(
        h.on_run, ui.run, ui.run_out, api_visibility="private")
    studio.demo.load(h.runs_update, ui.run, ui.run, api_visibility="private").then(
        h.on_run, ui.run, ui.run_out, api_visibility="private")
    ui.run.input(h.on_run, ui.run, ui.run_out, api_name="classroom_open_run")
    ui.quick_start.click(h.on_quick, ui.quick_task, ui.quick_job, api_name="classroom_quick_start")
    ui.quick_cancel.click(h.on_quick_cancel, ui.quick_job, None, api_name="classroom_quick_cancel")
    ui.quick_timer.tick(h.quick_poll, ui.quick_job, [ui.quick_job, ui.quick_status], api_name="classroom_quick_poll")
    studio.links.append(("compare", functools.partial(_link_to_compare, studio, ui)))


def _link_to_compare(studio, ui: _Tab, compare) -> None:
    """Each example's button opens it in the Compare tab (`compare` is what that tab exposes)."""
    for button, kind in ui.example_links:
        def go(run_name, picked, kind=kind):
            if not (picked or {}).get(kind):
                raise gr.Error(f"This run has no test example where {kind}.", print_exception=False)
            return gr.update(value=run_name), gr.update(value=kind), gr.Tabs(selected="compare")

        def show(request: gr.Request, run_name, picked, kind=kind):
            return compare.open_example(request, run_name, kind, picked[kind])

        button.click(go, [ui.run, ui.shown], [compare.run, compare.wanted, studio.tabs],
                     api_visibility="private").success(show, [ui.run, ui.shown], compare.run_outputs,
                                                       api_visibility="private")
