"""Knowledge store tab: browse, search, curate, import/export a run's store and see its 2-D embedding map."""
from __future__ import annotations

import contextlib
import tempfile
import threading
from types import SimpleNamespace
from pathlib import Path

import gradio as gr
import pandas as pd

from pages.common import editor_name, run_choices, user_errors
from retrikt.errors import RetriktError
from retrikt.store.embed import EmbedderError, default_embedder
from retrikt.store.knowledge_store import SOURCES, StoreError
from retrikt.studio.store_view import (
    AGREEMENT_CHOICES, ANY, HISTORY_COLUMNS, TABLE_COLUMNS, describe, empty_map, filtered_map, form_filters,
    history_rows, list_entries, manual_entry, matching_ids, open_visitor_store, run_overview, runs_newest_first,
    shown_page, warm_map_code,
)

MAX_FIELDS = 4
"""Text boxes for a hand-written entry: COPA, with four fields, has the most of the built-in tasks."""

_export_root: Path | None = None


def _empty_table() -> pd.DataFrame:
    return pd.DataFrame([], columns=list(TABLE_COLUMNS))


def _history_table(rows=()) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=list(HISTORY_COLUMNS))


# The view values, as the events send them: the five filters, the search text, its k, then the page.

def _rows(rs, values) -> tuple[str, pd.DataFrame, int]:
    """(status, table, page shown): the table shows one page of MAX_ROWS rows (the map is `_map`'s)."""
    *form, query, k, page = values
    listing = list_entries(rs.store, form_filters(*form), query, k, page)
    return listing.status, pd.DataFrame(listing.rows, columns=listing.headers), listing.page


def _map(rs, selected, values):
    """The embedding map of every entry the view values match, the selected one ringed."""
    *form, query, k = values[:7]
    return filtered_map(rs, form_filters(*form), query, k, selected)


def _export_path(run_name: str) -> Path:
    global _export_root
    if _export_root is None:
        _export_root = Path(tempfile.mkdtemp(prefix="retrikt-export-"))
    # A folder per export: two exports of one run at the same time must not share a file.
    return Path(tempfile.mkdtemp(dir=_export_root)) / f"{run_name}-store.jsonl"


def _require_id(entry_id: str | None) -> str:
    entry_id = (entry_id or "").strip()
    if not entry_id:
        raise StoreError("Select an entry first: click a table row, or paste an id (the map shows it on hover).")
    return entry_id


def _warm_up() -> None:
    # A missing embedder is reported when a store is opened; here it only must not kill the thread loudly.
    with contextlib.suppress(EmbedderError):
        default_embedder()
    warm_map_code()


class _Tab(SimpleNamespace):
    """The tab's components by name, and the lists of them its events take and fill.

    A list's order is the order of an endpoint's values, which API clients rely on."""

    @property
    def filters(self) -> list:
        return [self.label_f, self.source_f, self.agree_f, self.min_reward, self.contains, self.query, self.k,
                self.page]

    @property
    def view_in(self) -> list:
        return [self.run, self.entry_id, *self.filters]

    @property
    def view_out(self) -> list:
        return [self.status, self.entries, self.emap]

    @property
    def run_out(self) -> list:
        return [self.run_info, self.label_f, self.new_label, self.add_label, *self.field_boxes, *self.view_out,
                self.entry_id, self.details, self.page]

    @property
    def entry_out(self) -> list:
        return [self.entry_id, self.details, self.new_label, self.curated, self.emap, self.seen]


def _layout() -> _Tab:
    ui = _Tab()
    gr.Markdown("The teacher-labelled samples of a run. Filter, search, fix labels, delete or add entries, "
                "and export or import them as JSONL.")
    _run_and_filters(ui)
    _table_and_entry(ui)
    _tools(ui)
    return ui


def _run_and_filters(ui: _Tab) -> None:
    with gr.Row():
        ui.run = gr.Dropdown([], label="Run", allow_custom_value=True, scale=4)
        ui.refresh_runs = gr.Button("Refresh runs", scale=1)
    ui.run_info = gr.Markdown()
    with gr.Row():
        ui.label_f = gr.Dropdown([ANY], value=ANY, label="Label", allow_custom_value=True)
        ui.source_f = gr.Dropdown([ANY, *SOURCES], value=ANY, label="Source")
        ui.agree_f = gr.Dropdown(list(AGREEMENT_CHOICES), value=ANY, label="Teacher agreement")
        # A text box, not gr.Number: the browser shows an empty Number as 0 and sends 0, which would hide
        # every entry without a PPO reward.
        ui.min_reward = gr.Textbox(label="Min reward total (PPO entries; empty = no minimum)",
                                   placeholder="no minimum")
        ui.contains = gr.Textbox(label="Text contains (case-insensitive)")
    with gr.Row():
        ui.query = gr.Textbox(label="Semantic search: entries closest in meaning to this text (empty = plain list)",
                              scale=4)
        ui.k = gr.Number(20, precision=0, label="Results", scale=1)
        ui.apply = gr.Button("Apply filters / search", variant="primary", scale=1)
    with gr.Row():
        ui.status = gr.Markdown()
        # Large stores are read a page at a time (MAX_ROWS rows): the table never holds the whole store.
        ui.page = gr.Number(1, precision=0, minimum=1, label="Page", scale=0, min_width=90)
        ui.previous_page = gr.Button("◀ Previous", scale=0, min_width=150)
        ui.next_page = gr.Button("Next ▶", scale=0, min_width=120)


def _table_and_entry(ui: _Tab) -> None:
    ui.entries = gr.Dataframe(_empty_table(), label="Entries (click a row to open it)", interactive=False,
                              wrap=True, max_height=420,
                              # fixed widths: the text column would take the rest, squeezing headers to a letter
                              column_widths=["10%", "7%", "12%", "7%", "8%", "9%", "7%", "7%", "33%"])
    with gr.Row():
        with gr.Column(scale=3):
            ui.emap = gr.Plot(label="Embedding map: colour = label, symbol = source", elem_id="store-map")
            gr.Markdown("Click a point to open its entry on the right (hover shows its id and text).")
        with gr.Column(scale=2):
            with gr.Row():
                ui.entry_id = gr.Textbox(label="Entry id", scale=3, elem_id="store-entry-id")
                ui.open_btn = gr.Button("Open", scale=1, elem_id="store-open")
            ui.details = gr.Markdown()
            with gr.Row():
                ui.new_label = gr.Dropdown([], label="Label", allow_custom_value=True, scale=3)
                ui.set_label = gr.Button("Set label", scale=1)
            ui.curated = gr.Checkbox(label="Curated (checked by a person)")
            # (entry id, label) as this page last saw it: a label saved meanwhile by someone else is a conflict
            ui.seen = gr.State(None)
            ui.delete = gr.Button("Delete this entry", variant="stop")


def _tools(ui: _Tab) -> None:
    with gr.Accordion("Add an entry by hand", open=False):
        ui.field_boxes = [gr.Textbox(label=f"Field {n + 1}", visible=n == 0) for n in range(MAX_FIELDS)]
        with gr.Row():
            ui.add_label = gr.Dropdown([], label="Label", allow_custom_value=True)
            ui.add = gr.Button("Add entry")
    with gr.Accordion("Bulk clean-up", open=False):
        ui.disagree = gr.Button("Delete every entry where the teacher disagrees…", variant="stop")
        with gr.Group(visible=False) as ui.confirm_box:
            ui.confirm_text = gr.Markdown()
            with gr.Row():
                ui.confirm = gr.Button("Yes, delete them", variant="stop")
                ui.keep = gr.Button("No, keep them")
    with gr.Accordion("Export / import JSONL", open=False):
        with gr.Row():
            ui.export = gr.Button("Export the store")
            ui.export_file = gr.File(label="Exported file", interactive=False)
        with gr.Row():
            ui.import_file = gr.File(label="JSONL file to import", file_types=[".jsonl"], type="filepath")
            ui.import_btn = gr.Button("Import")
    with gr.Accordion("Edit history and undo", open=False):
        gr.Markdown("Every change made here or from the Compare tab, newest first. Edits reach the student's "
                    "retrieval at once; undo puts an edit's entries back as they were.")
        ui.history = gr.Dataframe(_history_table(), label="Edits", interactive=False, wrap=True, max_height=300)
        with gr.Row():
            ui.undo_seq = gr.Number(None, precision=0, label="Edit # to undo", scale=2)
            ui.undo = gr.Button("Undo this edit", scale=1)
            ui.refresh_history = gr.Button("Refresh history", scale=1)
        ui.undo_said = gr.Markdown()  # by the button: the filter status line is a screen height above


class _Handlers:
    """The tab's event handlers: each opens the run's store afresh, so no handler works on a stale copy."""

    def __init__(self, studio, ui: _Tab):
        self.studio, self.ui = studio, ui

    def _open(self, request, run_name, write: bool = False):
        # Hosted mode: a visitor changes their own copy of any run they did not make (see open_visitor_store).
        visitor = None if self.studio.owns(request, run_name) else self.studio.visitor(request)
        return open_visitor_store(self.studio.workspace, run_name, visitor, write)

    def _view(self, rs, selected, values, said: str = "") -> dict:
        """Status, table and map under the view values; `said`, what an edit did, leads the status."""
        status, table_value, _ = _rows(rs, values)
        return {self.ui.status: f"{said} {status}" if said else status, self.ui.entries: table_value,
                self.ui.emap: _map(rs, selected, values)}

    def runs_update(self, current):
        return run_choices(runs_newest_first(self.studio.workspace), current)

    @user_errors
    def on_run(self, request: gr.Request, run_name, label, source, agreement, reward, text, search_text, top_k,
               page_number=1):
        # Picking a run that has no store is not an error: say so and show an empty view.
        ui = self.ui
        try:
            rs = self._open(request, run_name)
        except RetriktError as exc:
            if run_name:
                gr.Warning(str(exc))
            return self._no_store(str(exc))
        labels, fields = list(rs.task.labels), rs.task.text_fields
        boxes = {box: gr.update(visible=n < len(fields), value="",
                                label=rs.task.field_names[fields[n]] if n < len(fields) else "")
                 for n, box in enumerate(ui.field_boxes)}
        label = label if label in labels else ANY
        try:
            view = self._view(rs, None, (label, source, agreement, reward, text, search_text, top_k, 1))
        except RetriktError as exc:
            gr.Warning(str(exc))
            view = {ui.status: str(exc), ui.entries: _empty_table(), ui.emap: empty_map("No entries to map")}
        return {ui.run_info: run_overview(rs), ui.label_f: gr.update(choices=[ANY, *labels], value=label),
                ui.new_label: gr.update(choices=labels, value=None),
                ui.add_label: gr.update(choices=labels, value=labels[0]), **boxes, **view,
                ui.entry_id: "", ui.details: "", ui.page: 1}

    def _no_store(self, message: str) -> dict:
        ui, cleared = self.ui, gr.update(choices=[], value=None)
        boxes = {box: gr.update(visible=n == 0, label=f"Field {n + 1}", value="")
                 for n, box in enumerate(ui.field_boxes)}
        return {ui.run_info: message, ui.label_f: gr.update(choices=[ANY], value=ANY), ui.new_label: cleared,
                ui.add_label: cleared, **boxes, ui.status: "", ui.entries: _empty_table(),
                ui.emap: empty_map("No store"), ui.entry_id: "", ui.details: "", ui.page: 1}

    @user_errors
    def on_list(self, request: gr.Request, run_name, selected, *values):
        return _rows(self._open(request, run_name), values)[:2]

    @user_errors
    def on_map(self, request: gr.Request, run_name, selected, *values):
        # The map is its own event after the rows: drawing ~1,000 points took ~0.5 s of the browser's ~0.9 s per
        # filter here, and the table, which the user reads first, no longer waits for it.
        return _map(self._open(request, run_name), selected, values)

    @user_errors
    def on_list_page(self, request: gr.Request, run_name, selected, *values):
        return _rows(self._open(request, run_name), values)

    @user_errors
    def page_shown(self, request: gr.Request, run_name, selected, label, source, agreement, min_reward, contains,
                   query, k, page_number):
        # store_list's API returns two values; the Page box must still show the page the table now holds (a page
        # past the end shows the last one). The matching ids are cached, so this reads no entry.
        if query and query.strip():
            return 1
        found = matching_ids(self._open(request, run_name).store,
                             form_filters(label, source, agreement, min_reward, contains))
        return shown_page(len(found), page_number)[0]

    def _turn(self, request, step, run_name, values):
        *rest, current = values
        return _rows(self._open(request, run_name), (*rest, max(1, int(current or 1) + step)))

    @user_errors
    def on_previous(self, request: gr.Request, run_name, selected, *values):
        return self._turn(request, -1, run_name, values)

    @user_errors
    def on_next(self, request: gr.Request, run_name, selected, *values):
        return self._turn(request, 1, run_name, values)

    def _opened(self, request, run_name, entry_id_value, values) -> dict:
        entry_id_value = _require_id(entry_id_value)
        rs = self._open(request, run_name)
        entry = rs.store.get([entry_id_value])[0]
        ui = self.ui
        return {ui.entry_id: entry.id, ui.details: describe(entry, rs.task),
                ui.new_label: gr.update(value=entry.label), ui.curated: entry.curated,
                ui.emap: _map(rs, entry.id, values), ui.seen: [entry.id, entry.label]}

    @user_errors
    def on_open(self, request: gr.Request, run_name, entry_id_value, *values):
        return self._opened(request, run_name, entry_id_value, values)

    @user_errors
    def on_row(self, request: gr.Request, run_name, label, source, agreement, reward, text, search_text, top_k,
               page_number, evt: gr.SelectData):
        row = evt.row_value or []
        if not row:
            raise StoreError("That row has no entry: refresh the table.")
        return self._opened(request, run_name, str(row[0]),
                            (label, source, agreement, reward, text, search_text, top_k, page_number))

    @user_errors
    def on_set_label(self, request: gr.Request, run_name, entry_id_value, label, seen_value, *values):
        entry_id_value = _require_id(entry_id_value)
        rs = self._open(request, run_name, write=True)
        expected = seen_value[1] if seen_value and seen_value[0] == entry_id_value else None
        entry = rs.editor(editor_name(self.studio, request)).set_label(entry_id_value, label, expected=expected)
        said = f"Entry {entry.id} now has the curated label **{entry.label}**."
        return {**self._view(rs, entry_id_value, values, said), self.ui.details: describe(entry, rs.task),
                self.ui.seen: [entry.id, entry.label]}

    @user_errors
    def on_curated(self, request: gr.Request, run_name, entry_id_value, flag, *values):
        entry_id_value = _require_id(entry_id_value)
        rs = self._open(request, run_name, write=True)
        entry = rs.editor(editor_name(self.studio, request)).set_curated(entry_id_value, bool(flag))
        said = f"Entry {entry.id} is {'marked curated' if flag else 'no longer curated'}."
        return {**self._view(rs, entry_id_value, values, said), self.ui.details: describe(entry, rs.task)}

    @user_errors
    def on_delete(self, request: gr.Request, run_name, entry_id_value, *values):
        entry_id_value = _require_id(entry_id_value)
        rs = self._open(request, run_name, write=True)
        if rs.editor(editor_name(self.studio, request)).delete([entry_id_value]) == 0:
            raise StoreError(f"No entry {entry_id_value!r} in this store: it may already be deleted; refresh.")
        return {**self._view(rs, None, values, f"Deleted entry {entry_id_value}."), self.ui.entry_id: "",
                self.ui.details: ""}

    @user_errors
    def on_add(self, request: gr.Request, run_name, *values):
        texts, label, view_values = values[:MAX_FIELDS], values[MAX_FIELDS], values[MAX_FIELDS + 1:]
        rs = self._open(request, run_name)
        entry = manual_entry(rs.task, dict(zip(rs.task.text_fields, texts)), label)
        rs = self._open(request, run_name, write=True)  # only a valid entry makes a hosted visitor's store copy
        rs.editor(editor_name(self.studio, request)).add([entry])
        return {**self._view(rs, entry.id, view_values, f"Added entry {entry.id}."), self.ui.entry_id: entry.id,
                self.ui.details: describe(entry, rs.task)}

    @user_errors
    def on_disagree(self, request: gr.Request, run_name):
        store = self._open(request, run_name).store
        n = store.count({"agreement": False})
        if n == 0:
            gr.Warning("No entry has a teacher label that differs from its label: nothing to delete.")
            return gr.update(visible=False), ""
        return gr.update(visible=True), (f"**Delete {n} of {store.count()} entries** whose teacher label differs "
                                         "from their label? You can undo it from the edit history.")

    @user_errors
    def on_confirm(self, request: gr.Request, run_name, selected, *values):
        rs = self._open(request, run_name, write=True)
        n = rs.editor(editor_name(self.studio, request)).delete_where_teacher_disagrees()
        return {self.ui.confirm_box: gr.update(visible=False),
                **self._view(rs, selected, values, f"Deleted {n} entries where the teacher disagreed.")}

    @user_errors
    def on_export(self, request: gr.Request, run_name):
        rs = self._open(request, run_name)
        if rs.store.count() == 0:
            raise StoreError("The store is empty: there is nothing to export.")
        path = _export_path(rs.run.name)
        n = rs.store.export_jsonl(path)
        gr.Info(f"Exported {n} entries.")
        return str(path)

    @user_errors
    def on_import(self, request: gr.Request, run_name, path, selected, *values):
        if not path:
            raise StoreError("Choose a .jsonl file to import first.")
        rs = self._open(request, run_name, write=True)
        n = rs.editor(editor_name(self.studio, request)).import_jsonl(path)
        if n == 0:
            gr.Warning("The file holds no entries: nothing was imported.")
        return self._view(rs, selected, values, f"Imported {n} entries from {Path(path).name}.")

    @user_errors
    def on_history(self, request: gr.Request, run_name):
        if not run_name:
            return _history_table()
        try:
            rs = self._open(request, run_name)
        except RetriktError:
            return _history_table()
        return _history_table(history_rows(rs))

    @user_errors
    def on_undo(self, request: gr.Request, run_name, seq, selected, *values):
        if seq is None:
            raise StoreError("Type the number (#) of the edit to undo.")
        rs = self._open(request, run_name, write=True)
        edit = rs.editor(editor_name(self.studio, request)).undo(int(seq))
        said = f"Undid edit #{edit.undoes} ({len(edit.ids)} entr{'y' if len(edit.ids) == 1 else 'ies'})."
        return {**self._view(rs, selected, values), self.ui.history: _history_table(history_rows(rs)),
                self.ui.undo_said: said}


def build(studio) -> None:
    """Add the Knowledge store tab to ``studio.demo``."""
    # Every store opens with the embedder, which takes seconds to load: load it now, not on the first page view.
    threading.Thread(target=_warm_up, name="store-warmup", daemon=True).start()
    with gr.Tab("Knowledge store", id="store"):
        ui = _layout()
    handlers = _Handlers(studio, ui)
    _wire_runs(studio, ui, handlers)
    _wire_listing(ui, handlers)
    _wire_edits(ui, handlers)
    # Other tabs (Compare) open an entry here: pick the run, load it, then open the entry.
    studio.pages["store"] = SimpleNamespace(run=ui.run, entry_id=ui.entry_id, on_run=handlers.on_run,
                                            run_in=[ui.run, *ui.filters], run_out=ui.run_out,
                                            on_open=handlers.on_open, view_in=ui.view_in, entry_out=ui.entry_out)


def _wire_runs(studio, ui: _Tab, h: _Handlers) -> None:
    run_in = [ui.run, *ui.filters]
    ui.refresh_runs.click(h.runs_update, ui.run, ui.run, api_name="store_runs").then(
        h.on_run, run_in, ui.run_out, api_visibility="private")
    ui.run.input(h.on_run, run_in, ui.run_out, api_name="store_open_run").then(
        h.on_history, ui.run, ui.history, api_visibility="private")
    studio.demo.load(h.runs_update, ui.run, ui.run, api_visibility="private").then(
        h.on_run, run_in, ui.run_out, api_visibility="private")


def _wire_listing(ui: _Tab, h: _Handlers) -> None:
    rows_out, paged_out = [ui.status, ui.entries], [ui.status, ui.entries, ui.page]
    listed = ui.apply.click(h.on_list, ui.view_in, rows_out, api_name="store_list")
    listed.success(h.page_shown, ui.view_in, ui.page, api_visibility="private")
    listed.success(h.on_map, ui.view_in, ui.emap, api_name="store_map")
    for box in (ui.query, ui.contains):
        box.submit(h.on_list, ui.view_in, rows_out, api_visibility="private").success(
            h.on_map, ui.view_in, ui.emap, api_visibility="private")
    # Another page of the same filters: the map, which shows every match, stays as it is.
    ui.page.submit(h.on_list_page, ui.view_in, paged_out, api_visibility="private")
    ui.previous_page.click(h.on_previous, ui.view_in, paged_out, api_name="store_previous_page")
    ui.next_page.click(h.on_next, ui.view_in, paged_out, api_name="store_next_page")
    # A new filter starts on the first page; done in the browser, so typing costs no server round trip.
    for box in (ui.label_f, ui.source_f, ui.agree_f, ui.min_reward, ui.contains, ui.query):
        box.input(None, None, ui.page, js="() => 1", api_visibility="private")
    ui.open_btn.click(h.on_open, ui.view_in, ui.entry_out, api_name="store_open")
    ui.entry_id.submit(h.on_open, ui.view_in, ui.entry_out, api_visibility="private")
    ui.entries.select(h.on_row, [ui.run, *ui.filters], ui.entry_out, api_visibility="private")


def _wire_edits(ui: _Tab, h: _Handlers) -> None:
    view_out, filters = ui.view_out, ui.filters
    label_set = ui.set_label.click(h.on_set_label, [ui.run, ui.entry_id, ui.new_label, ui.seen, *filters],
                                   [*view_out, ui.details, ui.seen], api_name="store_set_label")
    curated_set = ui.curated.input(h.on_curated, [ui.run, ui.entry_id, ui.curated, *filters],
                                   [*view_out, ui.details], api_name="store_set_curated")
    deleted = ui.delete.click(h.on_delete, ui.view_in, [*view_out, ui.entry_id, ui.details], api_name="store_delete")
    added = ui.add.click(h.on_add, [ui.run, *ui.field_boxes, ui.add_label, *filters],
                         [*view_out, ui.entry_id, ui.details], api_name="store_add")
    ui.disagree.click(h.on_disagree, ui.run, [ui.confirm_box, ui.confirm_text], api_name="store_disagree_preview")
    confirmed = ui.confirm.click(h.on_confirm, ui.view_in, [ui.confirm_box, *view_out],
                                 api_name="store_disagree_confirm")
    ui.keep.click(lambda: gr.update(visible=False), None, ui.confirm_box, api_visibility="private")
    ui.export.click(h.on_export, ui.run, ui.export_file, api_name="store_export")
    imported = ui.import_btn.click(h.on_import, [ui.run, ui.import_file, ui.entry_id, *filters], view_out,
                                   api_name="store_import")
    ui.undo.click(h.on_undo, [ui.run, ui.undo_seq, ui.entry_id, *filters], [*view_out, ui.history, ui.undo_said],
                  api_name="store_undo")
    ui.refresh_history.click(h.on_history, ui.run, ui.history, api_name="store_history")
    for edit in (label_set, curated_set, deleted, added, confirmed, imported):
        edit.success(h.on_history, ui.run, ui.history, api_visibility="private")
