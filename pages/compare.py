"""Compare tab (the first screen): all systems of an evaluated run, then one example at a time, the student without
and with retrieval side by side with the neighbours it retrieved."""
from __future__ import annotations

import functools
from types import SimpleNamespace

import gradio as gr
import pandas as pd

from pages.common import editor_name, run_choices, user_errors
from retrikt.studio.compare import (
    NEIGHBOUR_COLUMNS, OUTCOMES, SYSTEM_COLUMNS, accuracy_figure, evaluated_runs, example_choices, edit_count,
    find_record, live_student, open_evaluated, records, view_record,
)
from retrikt.studio.demo import DEMO_RUN
from retrikt.studio.store_view import open_visitor_store
from retrikt.errors import RetriktError
from retrikt.runs import RunError


class _Tab(SimpleNamespace):
    """The tab's components by name, and the lists of them its events fill.

    A list's order is the order of an endpoint's values, which API clients rely on."""

    @property
    def view_outputs(self) -> list:
        """One example: its text, the verdict, both predictions, the neighbours, and the input as shown."""
        return [self.text, self.verdict, self.alone, self.mixed, self.neighbours, self.shown]

    @property
    def run_outputs(self) -> list:
        return [self.summary_md, self.systems, self.accuracy_plot, self.wanted, self.example, *self.view_outputs,
                self.fix_label]


def _layout() -> _Tab:
    ui = _Tab()
    gr.Markdown("A student of about 1% of the teacher's size, with and without retrieval from the teacher's "
                "knowledge store. A fresh install shows the precomputed demo run; your own runs appear here once "
                "their student is trained and evaluated.")
    with gr.Row():
        ui.run = gr.Dropdown([], label="Evaluated run", allow_custom_value=True, scale=4)
        ui.refresh = gr.Button("Refresh runs", scale=1)
    ui.summary_md = gr.Markdown()
    ui.systems = gr.Dataframe(pd.DataFrame([], columns=list(SYSTEM_COLUMNS)), label="All systems",
                              interactive=False, wrap=True)
    with gr.Accordion("Accuracy chart", open=False):
        ui.accuracy_plot = gr.Plot(label="Accuracy")
    with gr.Row():
        ui.wanted = gr.Radio([(o, o) for o in OUTCOMES], value="all", label="Show test examples where", scale=2)
        ui.example = gr.Dropdown([], label="Test example (type to filter, or type an id)", allow_custom_value=True,
                                 scale=3)
    with gr.Accordion("…or type your own input", open=False):
        with gr.Row():
            ui.own_first = gr.Textbox(label="Text (the first field of the task)", scale=3)
            ui.own_second = gr.Textbox(label="Second text (pair tasks only)", scale=3)
            ui.own_go = gr.Button("Predict", variant="primary", scale=1)
    _example_layout(ui)
    return ui


def _example_layout(ui: _Tab) -> None:
    ui.text = gr.Markdown()
    ui.verdict = gr.Markdown()
    with gr.Row():
        ui.alone = gr.Label(label="Student alone", num_top_classes=5)
        ui.mixed = gr.Label(label="Student + retrieval", num_top_classes=5)
    ui.neighbours = gr.Dataframe(pd.DataFrame([], columns=list(NEIGHBOUR_COLUMNS)),
                                 label="Retrieved neighbours (their teacher soft labels are mixed in, weighted by "
                                       "similarity; click a row to pick it)", interactive=False, wrap=True,
                                 # widths that fit the page, so a clicked text cell never scrolls label and id away
                                 column_widths=["6%", "9%", "11%", "13%", "10%", "37%", "14%"], pinned_columns=3)
    with gr.Row():
        ui.neighbour_id = gr.Textbox(label="Picked neighbour id", scale=3)
        ui.open_in_store = gr.Button("Open it in the Knowledge store tab", scale=1)
    with gr.Row():
        ui.fix_label = gr.Dropdown([], label="Its label should be", scale=2)
        ui.fix = gr.Button("Fix its label (curated)", scale=1)
        ui.remove = gr.Button("Remove it from the store", variant="stop", scale=1)
    ui.edit_result = gr.Markdown()
    with gr.Row():
        ui.reevaluate = gr.Button("Re-evaluate with the edited store", scale=1)
        ui.reevaluated = gr.Markdown()
    gr.Markdown("Fixes go into the run's knowledge store (your own copy of it on a shared server) and reach "
                "retrieval at once, with no retraining; the Knowledge store tab lists them and can undo them.",
                elem_classes="hint")
    # The input on screen, as the student reads it, and its gold label (None for a typed input).
    ui.shown = gr.State(None)


class _Handlers:
    """The tab's event handlers."""

    def __init__(self, studio, ui: _Tab):
        self.studio, self.ui, self.workspace = studio, ui, studio.workspace

    def _show(self, view) -> dict:
        ui = self.ui
        return {ui.text: f"> {view.text}", ui.verdict: view.verdict, ui.alone: view.alone, ui.mixed: view.mixed,
                ui.neighbours: pd.DataFrame(view.neighbours, columns=list(NEIGHBOUR_COLUMNS)),
                ui.shown: [view.text, view.gold]}

    def _blank(self) -> dict:
        ui = self.ui
        return {ui.text: "", ui.verdict: "", ui.alone: None, ui.mixed: None,
                ui.neighbours: pd.DataFrame([], columns=list(NEIGHBOUR_COLUMNS)), ui.shown: None}

    def _store(self, request, run_name, write: bool = False):
        # Hosted mode: a visitor's fixes go to their own copy of the run's store (see open_visitor_store).
        visitor = None if self.studio.owns(request, run_name) else self.studio.visitor(request)
        return open_visitor_store(self.workspace, run_name, visitor, write)

    def _example(self, request, run_name, record) -> dict:
        try:
            rs = self._store(request, run_name)
        except RetriktError:  # a run whose store is gone still shows its evaluation
            return self._show(view_record(record))
        # Without edits the evaluation's record is what retrieval gives: no need to load the student.
        if not edit_count(rs):
            return self._show(view_record(record))
        return self._show(live_student(self.workspace, run_name).record_view(record, rs))

    def runs_update(self, current):
        return run_choices(evaluated_runs(self.workspace), current)

    @user_errors
    def on_run(self, request: gr.Request, run_name, outcome_filter):
        return self._opened(request, run_name, outcome_filter)

    @user_errors
    def open_example(self, request: gr.Request, run_name, outcome_filter, uid):
        """The run opened on test example `uid` (the Classroom tab links here)."""
        return self._opened(request, run_name, outcome_filter, uid)

    def _opened(self, request, run_name, outcome_filter, uid=None) -> dict:
        ui = self.ui
        if not run_name:
            return {ui.summary_md: "No evaluated run yet: train and evaluate a student first.",
                    ui.systems: pd.DataFrame([]), ui.accuracy_plot: None,
                    ui.wanted: gr.update(choices=[(o, o) for o in OUTCOMES], value="all"),
                    ui.example: gr.update(choices=[], value=None), **self._blank(),
                    ui.fix_label: gr.update(choices=[], value=None)}
        run = open_evaluated(self.workspace, run_name, outcome_filter, uid)
        note = " This is the precomputed demo run shipped with the studio." if run_name == DEMO_RUN else ""
        example = self._example(request, run_name, run.record) if run.record else self._blank()
        return {ui.summary_md: run.headline + note, ui.systems: pd.DataFrame(run.rows, columns=run.headers),
                ui.accuracy_plot: accuracy_figure(run.summary),
                ui.wanted: gr.update(choices=run.outcome_choices, value=run.outcome),
                ui.example: gr.update(choices=run.example_choices, value=run.record["uid"] if run.record else None),
                **example, ui.fix_label: gr.update(choices=run.labels, value=None)}

    @user_errors
    def on_filter(self, request: gr.Request, run_name, outcome_filter):
        recs = records(self.workspace, run_name)
        choices = example_choices(recs, outcome_filter)
        if not choices:
            gr.Info(f"No test example where {outcome_filter}.")
        first = choices[0][1] if choices else None
        example = self._example(request, run_name, find_record(recs, first)) if first else self._blank()
        return {self.ui.example: gr.update(choices=choices, value=first), **example}

    @user_errors
    def on_example(self, request: gr.Request, run_name, uid):
        if not uid:
            return self._blank()
        return self._example(request, run_name, find_record(records(self.workspace, run_name), uid))

    @user_errors
    def on_own(self, request: gr.Request, run_name, first, second):
        if not run_name:
            raise RunError("Pick an evaluated run first.")
        return self._show(live_student(self.workspace, run_name).view([first, second], self._store(request, run_name)))

    def _edit_neighbour(self, request, run_name, entry_id, label, current) -> dict:
        if not run_name:
            raise RunError("Pick an evaluated run first.")
        text, gold = current or (None, None)
        view, line = live_student(self.workspace, run_name).edit_neighbour(
            self._store(request, run_name, write=True), editor_name(self.studio, request), entry_id, label, text, gold,
            records(self.workspace, run_name))
        return {**self._show(view), self.ui.edit_result: line}

    @user_errors
    def on_fix(self, request: gr.Request, run_name, entry_id, label, current):
        if not label:
            raise RunError("Choose the label the picked neighbour should have.")
        return self._edit_neighbour(request, run_name, entry_id, label, current)

    @user_errors
    def on_remove(self, request: gr.Request, run_name, entry_id, current):
        return self._edit_neighbour(request, run_name, entry_id, None, current)

    @user_errors
    def on_reevaluate(self, request: gr.Request, run_name):
        if not run_name:
            raise RunError("Pick an evaluated run first.")
        result = live_student(self.workspace, run_name).reevaluate(records(self.workspace, run_name),
                                                                   self._store(request, run_name))
        return result.markdown()

    def on_neighbour(self, evt: gr.SelectData):
        row = evt.row_value or []
        return row[-1] if row else ""

    @user_errors
    def on_reach(self, request: gr.Request, run_name, entry_id):
        if not run_name:
            raise RunError("Pick an evaluated run first.")
        return live_student(self.workspace, run_name).reach(records(self.workspace, run_name), entry_id,
                                                            self._store(request, run_name))


def _typed_input(run_name, first, second):
    return [gr.validate(True, ""), gr.validate(bool((first or "").strip()), "Type an input to classify first."),
            gr.validate(True, "")]


def build(studio) -> None:
    """Add the Compare tab to ``studio.demo``."""
    with gr.Tab("Compare", id="compare"):
        ui = _layout()
    h = _Handlers(studio, ui)
    run_in, view_outputs = [ui.run, ui.wanted], ui.view_outputs
    ui.refresh.click(h.runs_update, ui.run, ui.run, api_name="compare_runs").then(
        h.on_run, run_in, ui.run_outputs, api_visibility="private")
    studio.demo.load(h.runs_update, ui.run, ui.run, api_visibility="private").then(
        h.on_run, run_in, ui.run_outputs, api_visibility="private")
    ui.run.input(h.on_run, run_in, ui.run_outputs, api_name="compare_open_run")
    ui.wanted.input(h.on_filter, run_in, [ui.example, *view_outputs], api_name="compare_filter")
    ui.example.input(h.on_example, [ui.run, ui.example], view_outputs, api_name="compare_example")
    own_in = [ui.run, ui.own_first, ui.own_second]
    # The browser checks the input first: an empty box gets one message by the box, not an error on every panel.
    # API callers skip validators, so `on_own` still refuses an empty input itself.
    ui.own_go.click(h.on_own, own_in, view_outputs, api_name="compare_predict", validator=_typed_input)
    ui.own_first.submit(h.on_own, own_in, view_outputs, api_visibility="private", validator=_typed_input)
    ui.neighbours.select(h.on_neighbour, None, ui.neighbour_id, api_visibility="private").then(
        h.on_reach, [ui.run, ui.neighbour_id], ui.edit_result, api_name="compare_reach")
    ui.fix.click(h.on_fix, [ui.run, ui.neighbour_id, ui.fix_label, ui.shown], [*view_outputs, ui.edit_result],
                 api_name="compare_fix")
    ui.remove.click(h.on_remove, [ui.run, ui.neighbour_id, ui.shown], [*view_outputs, ui.edit_result],
                    api_name="compare_remove")
    ui.reevaluate.click(h.on_reevaluate, ui.run, ui.reevaluated, api_name="compare_reevaluate")
    studio.links.append(("store", functools.partial(_link_to_store, studio, ui)))
    studio.pages["compare"] = SimpleNamespace(run=ui.run, wanted=ui.wanted, run_outputs=ui.run_outputs,
                                              open_example=h.open_example)


def _link_to_store(studio, ui: _Tab, store) -> None:
    """Open the picked neighbour in the Knowledge store tab (`store` is what that tab exposes)."""
    @user_errors
    def go_to_store(run_name, entry_id):
        if not (entry_id or "").strip():
            raise RunError("Click a neighbour row first (or paste an entry id).")
        return gr.update(value=run_name), gr.Tabs(selected="store")

    def open_picked(request: gr.Request, run_name, entry_id, *filters):
        return store.on_open(request, run_name, entry_id.strip(), *filters)

    # The store tab's run change clears its entry box, so the entry is opened after the run is loaded.
    ui.open_in_store.click(go_to_store, [ui.run, ui.neighbour_id], [store.run, studio.tabs],
                           api_visibility="private").success(
        store.on_run, store.run_in, store.run_out, api_visibility="private").success(
        open_picked, [ui.run, ui.neighbour_id, *store.view_in[2:]], store.entry_out, api_visibility="private")
