"""Compare tab (the first screen): all systems of an evaluated run, then one example at a time, the student without
and with retrieval side by side with the neighbours it retrieved."""
from __future__ import annotations

from types import SimpleNamespace

import gradio as gr
import pandas as pd

from pages.common import editor_name, run_choices, user_errors
from retrikt.studio.compare import (
    NEIGHBOUR_COLUMNS, OUTCOMES, SYSTEM_COLUMNS, accuracy_figure, eval_summary, evaluated_runs, example_choices,
    edit_count, find_record, headline, live_student, outcome_counts, records, systems_table, view_record,
)
from retrikt.studio.demo import DEMO_RUN
from retrikt.studio.store_view import open_visitor_store
from retrikt.config import RunConfig
from retrikt.errors import RetriktError
from retrikt.runs import RunError, read_summary

def _outcome_choices(recs) -> list[tuple[str, str]]:
    counts = outcome_counts(recs)
    return [(f"{name} ({counts[name]})", name) for name in OUTCOMES]


def build(studio) -> None:
    """Add the Compare tab to ``studio.demo``."""
    workspace = studio.workspace
    with gr.Tab("Compare", id="compare"):
        gr.Markdown(f"A student of at most {RunConfig().student.max_params_fraction:.0%} of the teacher's size (the "
                    "default budget), with and without retrieval from the teacher's knowledge store. A fresh install "
                    "shows the precomputed demo run; your own runs appear here once their student is trained and "
                    "evaluated.")
        with gr.Row():
            run = gr.Dropdown([], label="Evaluated run", allow_custom_value=True, scale=4)
            refresh = gr.Button("Refresh runs", scale=1)
        summary_md = gr.Markdown()
        systems = gr.Dataframe(pd.DataFrame([], columns=list(SYSTEM_COLUMNS)), label="All systems",
                               interactive=False, wrap=True)
        with gr.Accordion("Accuracy chart", open=False):
            accuracy_plot = gr.Plot(label="Accuracy")
        with gr.Row():
            wanted = gr.Radio([(o, o) for o in OUTCOMES], value="all", label="Show test examples where", scale=2)
            example = gr.Dropdown([], label="Test example", allow_custom_value=False, scale=3)
        with gr.Accordion("…or type your own input", open=False):
            with gr.Row():
                own_first = gr.Textbox(label="Text (the first field of the task)", scale=3)
                own_second = gr.Textbox(label="Second text (pair tasks only)", scale=3)
                own_go = gr.Button("Predict", variant="primary", scale=1)
        text = gr.Markdown()
        verdict = gr.Markdown()
        with gr.Row():
            alone = gr.Label(label="Student alone", num_top_classes=5)
            mixed = gr.Label(label="Student + retrieval", num_top_classes=5)
        neighbours = gr.Dataframe(pd.DataFrame([], columns=list(NEIGHBOUR_COLUMNS)),
                                  label="Retrieved neighbours (their teacher soft labels are mixed in, weighted by "
                                        "similarity; click a row to pick it)", interactive=False, wrap=True)
        with gr.Row():
            neighbour_id = gr.Textbox(label="Picked neighbour id", scale=3)
            open_in_store = gr.Button("Open it in the Knowledge store tab", scale=1)
        with gr.Row():
            fix_label = gr.Dropdown([], label="Its label should be", scale=2)
            fix = gr.Button("Fix its label (curated)", scale=1)
            remove = gr.Button("Remove it from the store", variant="stop", scale=1)
        edit_result = gr.Markdown()
        with gr.Row():
            reevaluate = gr.Button("Re-evaluate with the edited store", scale=1)
            reevaluated = gr.Markdown()
        gr.Markdown("Fixes go into the run's knowledge store (your own copy of it on a shared server) and reach "
                    "retrieval at once, with no retraining; the Knowledge store tab lists them and can undo them.",
                    elem_classes="hint")
        # The input on screen, as the student reads it, and its gold label (None for a typed input).
        shown = gr.State(None)

    def runs_update(current):
        return run_choices(evaluated_runs(workspace), current)

    def show(view):
        return (f"> {view.text}", view.verdict, view.alone, view.mixed,
                pd.DataFrame(view.neighbours, columns=list(NEIGHBOUR_COLUMNS)), [view.text, view.gold])

    blank = ("", "", None, None, pd.DataFrame([], columns=list(NEIGHBOUR_COLUMNS)), None)

    def _store(request, run_name, write: bool = False):
        # Hosted mode: a visitor's fixes go to their own copy of the run's store (see open_visitor_store).
        visitor = None if studio.owns(request, run_name) else studio.visitor(request)
        return open_visitor_store(workspace, run_name, visitor, write)

    def _record_view(request, run_name, record):
        try:
            rs = _store(request, run_name)
        except RetriktError:  # a run whose store is gone still shows its evaluation
            return view_record(record)
        # Without edits the evaluation's record is what retrieval gives: no need to load the student.
        return live_student(workspace, run_name).record_view(record, rs) if edit_count(rs) else view_record(record)

    @user_errors
    def on_run(request: gr.Request, run_name, outcome_filter):
        return opened(request, run_name, outcome_filter)

    @user_errors
    def open_example(request: gr.Request, run_name, outcome_filter, uid):
        """The run opened on test example `uid` (the Classroom tab links here)."""
        return opened(request, run_name, outcome_filter, uid)

    def opened(request, run_name, outcome_filter, uid=None):
        if not run_name:
            return ("No evaluated run yet: train and evaluate a student first.", pd.DataFrame([]), None,
                    gr.update(choices=[(o, o) for o in OUTCOMES], value="all"), gr.update(choices=[], value=None),
                    *blank, gr.update(choices=[], value=None))
        summary = eval_summary(workspace, run_name)
        recs = records(workspace, run_name)
        headers, rows = systems_table(summary)
        outcome_filter = outcome_filter if outcome_filter in OUTCOMES else "all"
        choices = example_choices(recs, outcome_filter)
        first = uid if uid in {c[1] for c in choices} else (choices[0][1] if choices else None)
        note = " This is the precomputed demo run shipped with the studio." if run_name == DEMO_RUN else ""
        view = show(_record_view(request, run_name, find_record(recs, first))) if first else blank
        labels = list(recs[0]["student"]["probs"]) if recs else []
        run_summary = read_summary(workspace, run_name)
        said = headline(summary, run_summary.get("student"), run_summary.get("check"))
        return (said + note, pd.DataFrame(rows, columns=headers), accuracy_figure(summary),
                gr.update(choices=_outcome_choices(recs), value=outcome_filter), gr.update(choices=choices,
                                                                                          value=first), *view,
                gr.update(choices=labels, value=None))

    @user_errors
    def on_filter(request: gr.Request, run_name, outcome_filter):
        recs = records(workspace, run_name)
        choices = example_choices(recs, outcome_filter)
        if not choices:
            gr.Info(f"No test example where {outcome_filter}.")
        first = choices[0][1] if choices else None
        return (gr.update(choices=choices, value=first),
                *(show(_record_view(request, run_name, find_record(recs, first))) if first else blank))

    @user_errors
    def on_example(request: gr.Request, run_name, uid):
        if not uid:
            return blank
        return show(_record_view(request, run_name, find_record(records(workspace, run_name), uid)))

    @user_errors
    def on_own(request: gr.Request, run_name, first, second):
        if not run_name:
            raise RunError("Pick an evaluated run first.")
        return show(live_student(workspace, run_name).view([first, second], _store(request, run_name)))

    def edit_neighbour(request, run_name, entry_id, label, current):
        if not run_name:
            raise RunError("Pick an evaluated run first.")
        text, gold = current or (None, None)
        view, line = live_student(workspace, run_name).edit_neighbour(
            _store(request, run_name, write=True), editor_name(studio, request), entry_id, label, text, gold)
        return (*show(view), line)

    @user_errors
    def on_fix(request: gr.Request, run_name, entry_id, label, current):
        if not label:
            raise RunError("Choose the label the picked neighbour should have.")
        return edit_neighbour(request, run_name, entry_id, label, current)

    @user_errors
    def on_remove(request: gr.Request, run_name, entry_id, current):
        return edit_neighbour(request, run_name, entry_id, None, current)

    @user_errors
    def on_reevaluate(request: gr.Request, run_name):
        if not run_name:
            raise RunError("Pick an evaluated run first.")
        result = live_student(workspace, run_name).reevaluate(records(workspace, run_name), _store(request, run_name))
        return result.markdown()

    def on_neighbour(evt: gr.SelectData):
        row = evt.row_value or []
        return row[-1] if row else ""

    run_outputs = [summary_md, systems, accuracy_plot, wanted, example, text, verdict, alone, mixed, neighbours,
                   shown, fix_label]
    view_outputs = [text, verdict, alone, mixed, neighbours, shown]
    refresh.click(runs_update, run, run, api_name="compare_runs").then(on_run, [run, wanted], run_outputs,
                                                                     api_visibility="private")
    studio.demo.load(runs_update, run, run, api_visibility="private").then(on_run, [run, wanted], run_outputs,
                                                                           api_visibility="private")
    run.input(on_run, [run, wanted], run_outputs, api_name="compare_open_run")
    wanted.input(on_filter, [run, wanted], [example, *view_outputs], api_name="compare_filter")
    example.input(on_example, [run, example], view_outputs, api_name="compare_example")
    own_go.click(on_own, [run, own_first, own_second], view_outputs, api_name="compare_predict")
    own_first.submit(on_own, [run, own_first, own_second], view_outputs, api_visibility="private")
    neighbours.select(on_neighbour, None, neighbour_id, api_visibility="private")
    fix.click(on_fix, [run, neighbour_id, fix_label, shown], [*view_outputs, edit_result], api_name="compare_fix")
    remove.click(on_remove, [run, neighbour_id, shown], [*view_outputs, edit_result], api_name="compare_remove")
    reevaluate.click(on_reevaluate, run, reevaluated, api_name="compare_reevaluate")

    def link_to_store(store) -> None:
        @user_errors
        def go_to_store(run_name, entry_id):
            if not (entry_id or "").strip():
                raise RunError("Click a neighbour row first (or paste an entry id).")
            return gr.update(value=run_name), gr.Tabs(selected="store")

        def open_picked(request: gr.Request, run_name, entry_id, *filters):
            return store.on_open(request, run_name, entry_id.strip(), *filters)

        # The store tab's run change clears its entry box, so the entry is opened after the run is loaded.
        open_in_store.click(go_to_store, [run, neighbour_id], [store.run, studio.tabs],
                            api_visibility="private").success(
            store.on_run, store.run_in, store.run_out, api_visibility="private").success(
            open_picked, [run, neighbour_id, *store.view_in[2:]], store.entry_out, api_visibility="private")

    studio.links.append(("store", link_to_store))
    studio.pages["compare"] = SimpleNamespace(run=run, wanted=wanted, run_outputs=run_outputs,
                                              open_example=open_example)
