"""Compare tab (the first screen): all systems of an evaluated run, then one example at a time, the student without
and with retrieval side by side with the neighbours it retrieved."""
from __future__ import annotations

import gradio as gr
import pandas as pd

from pages.common import run_choices, user_errors
from retrikt.studio.compare import (
    NEIGHBOUR_COLUMNS, OUTCOMES, SYSTEM_COLUMNS, accuracy_figure, eval_summary, evaluated_runs, example_choices,
    find_record, headline, live_student, outcome_counts, records, systems_table, view_record,
)
from retrikt.studio.demo import DEMO_RUN
from retrikt.runs import RunError

def _outcome_choices(recs) -> list[tuple[str, str]]:
    counts = outcome_counts(recs)
    return [(f"{name} ({counts[name]})", name) for name in OUTCOMES]


def build(studio) -> None:
    """Add the Compare tab to ``studio.demo``."""
    workspace = studio.workspace
    with gr.Tab("Compare", id="compare"):
        gr.Markdown("A student of about 1% of the teacher's size, with and without retrieval from the teacher's "
                    "knowledge store. A fresh install shows the precomputed demo run; your own runs appear here once "
                    "their student is trained and evaluated.")
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

    def runs_update(current):
        return run_choices(evaluated_runs(workspace), current)

    def show(view):
        return (f"> {view.text}", view.verdict, view.alone, view.mixed,
                pd.DataFrame(view.neighbours, columns=list(NEIGHBOUR_COLUMNS)))

    blank = ("", "", None, None, pd.DataFrame([], columns=list(NEIGHBOUR_COLUMNS)))

    @user_errors
    def on_run(run_name, outcome_filter):
        if not run_name:
            return ("No evaluated run yet: train and evaluate a student first.", pd.DataFrame([]), None,
                    gr.update(choices=[(o, o) for o in OUTCOMES], value="all"), gr.update(choices=[], value=None),
                    *blank)
        summary = eval_summary(workspace, run_name)
        recs = records(workspace, run_name)
        headers, rows = systems_table(summary)
        outcome_filter = outcome_filter if outcome_filter in OUTCOMES else "all"
        choices = example_choices(recs, outcome_filter)
        first = choices[0][1] if choices else None
        note = " This is the precomputed demo run shipped with the studio." if run_name == DEMO_RUN else ""
        view = show(view_record(find_record(recs, first))) if first else blank
        return (headline(summary) + note, pd.DataFrame(rows, columns=headers), accuracy_figure(summary),
                gr.update(choices=_outcome_choices(recs), value=outcome_filter), gr.update(choices=choices,
                                                                                          value=first), *view)

    @user_errors
    def on_filter(run_name, outcome_filter):
        recs = records(workspace, run_name)
        choices = example_choices(recs, outcome_filter)
        if not choices:
            gr.Info(f"No test example where {outcome_filter}.")
        first = choices[0][1] if choices else None
        return (gr.update(choices=choices, value=first),
                *(show(view_record(find_record(recs, first))) if first else blank))

    @user_errors
    def on_example(run_name, uid):
        if not uid:
            return blank
        return show(view_record(find_record(records(workspace, run_name), uid)))

    @user_errors
    def on_own(run_name, first, second):
        if not run_name:
            raise RunError("Pick an evaluated run first.")
        return show(live_student(workspace, run_name).view([first, second]))

    def on_neighbour(evt: gr.SelectData):
        row = evt.row_value or []
        return row[-1] if row else ""

    run_outputs = [summary_md, systems, accuracy_plot, wanted, example, text, verdict, alone, mixed, neighbours]
    view_outputs = [text, verdict, alone, mixed, neighbours]
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
