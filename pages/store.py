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
    AGREEMENT_CHOICES, ANY, HISTORY_COLUMNS, TABLE_COLUMNS, Filters, cached_map, describe, embedding_map,
    empty_map, history_rows, manual_entry, map_figure, matching_ids, open_visitor_store, run_overview,
    runs_newest_first, search, select_page, shown_page, table, with_selected,
)

MAX_FIELDS = 4
"""Text boxes for a hand-written entry: COPA, with four fields, has the most of the built-in tasks."""

_export_root: Path | None = None


def _empty_table() -> pd.DataFrame:
    return pd.DataFrame([], columns=list(TABLE_COLUMNS))


def _min_reward(value) -> float | None:
    text = "" if value is None else str(value).strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise StoreError(f"The minimum reward must be a number (or empty for no minimum), not {text!r}.") from None


def _filters(label, source, agreement, min_reward, contains) -> Filters:
    return Filters(label or ANY, source or ANY, agreement or ANY, _min_reward(min_reward), (contains or "").strip())


def _render(rs, selected, *values):
    """(status, table, map) for the run's store under the current filters or semantic query."""
    status, table_value, _ = _rows(rs, selected, *values)
    return status, table_value, _map_view(rs, selected, *values[:7])


def _search_hits(rs, query, k, filters):
    return search(rs.store, query.strip(), int(k or 0), filters)


def _rows(rs, selected, label, source, agreement, min_reward, contains, query, k, page=1):
    """(status, table, page shown): the table shows one page of MAX_ROWS rows (the map is `_map_view`'s)."""
    filters = _filters(label, source, agreement, min_reward, contains)
    total = rs.store.count()
    if query and query.strip():
        hits = _search_hits(rs, query, k, filters)
        headers, rows = table([e for e, _ in hits], [s for _, s in hits])
        status = (f"{len(hits)} entries closest in meaning to “{query.strip()}” (the {int(k or 0)} nearest, then "
                  "filtered).")
        page = 1
    else:
        shown = select_page(rs.store, filters, int(page or 1))
        headers, rows = table(shown.entries)
        status = f"{shown.matched:,} of {total:,} entries match the filters."
        if shown.pages > 1:
            last = shown.first_row + len(shown.entries) - 1
            status += (f" Page {shown.page:,} of {shown.pages:,} (rows {shown.first_row:,}–{last:,}): change the "
                       "page to see the others.")
        page = shown.page
    if total == 0:
        status = "The store is empty: add entries by hand, import a JSONL file, or run step 1."
    return status, pd.DataFrame(rows, columns=headers), page


def _map_view(rs, selected, label, source, agreement, min_reward, contains, query, k):
    """The embedding map of every entry matching the filters (or of the search hits), the selected one ringed."""
    filters = _filters(label, source, agreement, min_reward, contains)
    selected = (selected or "").strip() or None
    if query and query.strip():
        keep = [e.id for e, _ in _search_hits(rs, query, k, filters)]
        emap = embedding_map(rs.store, keep)
    else:
        keep = matching_ids(rs.store, filters)
        emap = cached_map(rs.store, filters, keep)
    if selected and selected in set(keep):
        emap = with_selected(rs.store, emap, selected)
    return map_figure(emap, rs.task.labels, selected)


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


def _warm_embedder() -> None:
    # A missing embedder is reported when a store is opened; here it only must not kill the thread loudly.
    with contextlib.suppress(EmbedderError):
        default_embedder()


def build(studio) -> None:
    """Add the Knowledge store tab to ``studio.demo``."""
    workspace = studio.workspace
    # Every store opens with the embedder, which takes seconds to load: load it now, not on the first page view.
    threading.Thread(target=_warm_embedder, name="embedder-warmup", daemon=True).start()
    with gr.Tab("Knowledge store", id="store"):
        gr.Markdown("The teacher-labelled samples of a run. Filter, search, fix labels, delete or add entries, "
                    "and export or import them as JSONL.")
        with gr.Row():
            run = gr.Dropdown([], label="Run", allow_custom_value=True, scale=4)
            refresh_runs = gr.Button("Refresh runs", scale=1)
        run_info = gr.Markdown()
        with gr.Row():
            label_f = gr.Dropdown([ANY], value=ANY, label="Label", allow_custom_value=True)
            source_f = gr.Dropdown([ANY, *SOURCES], value=ANY, label="Source")
            agree_f = gr.Dropdown(list(AGREEMENT_CHOICES), value=ANY, label="Teacher agreement")
            # A text box, not gr.Number: the browser shows an empty Number as 0 and sends 0, which would hide
            # every entry without a PPO reward.
            min_reward = gr.Textbox(label="Min reward total (PPO entries; empty = no minimum)",
                                    placeholder="no minimum")
            contains = gr.Textbox(label="Text contains (case-insensitive)")
        with gr.Row():
            query = gr.Textbox(label="Semantic search: entries closest in meaning to this text (empty = plain list)",
                               scale=4)
            k = gr.Number(20, precision=0, label="Results", scale=1)
            apply = gr.Button("Apply filters / search", variant="primary", scale=1)
        with gr.Row():
            status = gr.Markdown()
            # Large stores are read a page at a time (MAX_ROWS rows): the table never holds the whole store.
            page = gr.Number(1, precision=0, minimum=1, label="Page", scale=0, min_width=90)
            previous_page = gr.Button("◀ Previous", scale=0, min_width=150)
            next_page = gr.Button("Next ▶", scale=0, min_width=120)
        entries = gr.Dataframe(_empty_table(), label="Entries (click a row to open it)", interactive=False,
                               wrap=True, max_height=420)
        with gr.Row():
            with gr.Column(scale=3):
                emap = gr.Plot(label="Embedding map: colour = label, symbol = source", elem_id="store-map")
                gr.Markdown("Click a point to open its entry on the right (hover shows its id and text).")
            with gr.Column(scale=2):
                with gr.Row():
                    entry_id = gr.Textbox(label="Entry id", scale=3, elem_id="store-entry-id")
                    open_btn = gr.Button("Open", scale=1, elem_id="store-open")
                details = gr.Markdown()
                with gr.Row():
                    new_label = gr.Dropdown([], label="Label", allow_custom_value=True, scale=3)
                    set_label = gr.Button("Set label", scale=1)
                curated = gr.Checkbox(label="Curated (checked by a person)")
                # (entry id, label) as this page last saw it: a label saved meanwhile by someone else is a conflict
                seen = gr.State(None)
                delete = gr.Button("Delete this entry", variant="stop")
        with gr.Accordion("Add an entry by hand", open=False):
            field_boxes = [gr.Textbox(label=f"Field {n + 1}", visible=n == 0) for n in range(MAX_FIELDS)]
            with gr.Row():
                add_label = gr.Dropdown([], label="Label", allow_custom_value=True)
                add = gr.Button("Add entry")
        with gr.Accordion("Bulk clean-up", open=False):
            disagree = gr.Button("Delete every entry where the teacher disagrees…", variant="stop")
            with gr.Group(visible=False) as confirm_box:
                confirm_text = gr.Markdown()
                with gr.Row():
                    confirm = gr.Button("Yes, delete them", variant="stop")
                    keep = gr.Button("No, keep them")
        with gr.Accordion("Export / import JSONL", open=False):
            with gr.Row():
                export = gr.Button("Export the store")
                export_file = gr.File(label="Exported file", interactive=False)
            with gr.Row():
                import_file = gr.File(label="JSONL file to import", file_types=[".jsonl"], type="filepath")
                import_btn = gr.Button("Import")
        with gr.Accordion("Edit history and undo", open=False):
            gr.Markdown("Every change made here or from the Compare tab, newest first. Edits reach the student's "
                        "retrieval at once; undo puts an edit's entries back as they were.")
            history = gr.Dataframe(pd.DataFrame([], columns=list(HISTORY_COLUMNS)), label="Edits",
                                   interactive=False, wrap=True, max_height=300)
            with gr.Row():
                undo_seq = gr.Number(None, precision=0, label="Edit # to undo", scale=2)
                undo = gr.Button("Undo this edit", scale=1)
                refresh_history = gr.Button("Refresh history", scale=1)

    filters = [label_f, source_f, agree_f, min_reward, contains, query, k, page]
    view_in = [run, entry_id, *filters]
    view_out = [status, entries, emap]

    def runs_update(current):
        return run_choices(runs_newest_first(workspace), current)

    def _open(request, run_name, write: bool = False):
        # Hosted mode: a visitor changes their own copy of any run they did not make (see open_visitor_store).
        visitor = None if studio.owns(request, run_name) else studio.visitor(request)
        return open_visitor_store(workspace, run_name, visitor, write)

    @user_errors
    def on_run(request: gr.Request, run_name, label, source, agreement, reward, text, search_text, top_k,
               page_number=1):
        # Picking a run that has no store is not an error: say so and show an empty view.
        try:
            rs = _open(request, run_name)
        except RetriktError as exc:
            if run_name:
                gr.Warning(str(exc))
            empty = [gr.update(choices=[], value=None)] * 2
            return [str(exc), gr.update(choices=[ANY], value=ANY), *empty,
                    *[gr.update(visible=n == 0, label=f"Field {n + 1}", value="") for n in range(MAX_FIELDS)],
                    "", _empty_table(), empty_map("No store"), "", "", 1]
        labels, fields = list(rs.task.labels), rs.task.text_fields
        boxes = [gr.update(visible=n < len(fields), value="",
                           label=rs.task.field_names[fields[n]] if n < len(fields) else "") for n in range(MAX_FIELDS)]
        label = label if label in labels else ANY
        try:
            view = _render(rs, None, label, source, agreement, reward, text, search_text, top_k, 1)
        except RetriktError as exc:
            gr.Warning(str(exc))
            view = (str(exc), _empty_table(), empty_map("No entries to map"))
        return [run_overview(rs), gr.update(choices=[ANY, *labels], value=label),
                gr.update(choices=labels, value=None), gr.update(choices=labels, value=labels[0]), *boxes,
                *view, "", "", 1]

    run_out = [run_info, label_f, new_label, add_label, *field_boxes, *view_out, entry_id, details, page]

    @user_errors
    def on_list(request: gr.Request, run_name, selected, *values):
        return _rows(_open(request, run_name), selected, *values)[:2]

    @user_errors
    def on_map(request: gr.Request, run_name, selected, *values):
        # The map is its own event after the rows: drawing ~1,000 points took ~0.5 s of the browser's ~0.9 s per
        # filter here, and the table, which the user reads first, no longer waits for it.
        return _map_view(_open(request, run_name), selected, *values[:7])

    def opened(request, run_name, entry_id_value, values):
        entry_id_value = _require_id(entry_id_value)
        rs = _open(request, run_name)
        entry = rs.store.get([entry_id_value])[0]
        figure = _map_view(rs, entry.id, *values[:7])
        return (entry.id, describe(entry, rs.task), gr.update(value=entry.label), entry.curated, figure,
                [entry.id, entry.label])

    @user_errors
    def on_open(request: gr.Request, run_name, entry_id_value, *values):
        return opened(request, run_name, entry_id_value, values)

    @user_errors
    def on_row(request: gr.Request, run_name, label, source, agreement, reward, text, search_text, top_k,
               page_number, evt: gr.SelectData):
        row = evt.row_value or []
        if not row:
            raise StoreError("That row has no entry: refresh the table.")
        return opened(request, run_name, str(row[0]),
                      (label, source, agreement, reward, text, search_text, top_k, page_number))

    @user_errors
    def on_set_label(request: gr.Request, run_name, entry_id_value, label, seen_value, *values):
        entry_id_value = _require_id(entry_id_value)
        rs = _open(request, run_name, write=True)
        expected = seen_value[1] if seen_value and seen_value[0] == entry_id_value else None
        entry = rs.editor(editor_name(studio, request)).set_label(entry_id_value, label, expected=expected)
        message, table_value, figure = _render(rs, entry_id_value, *values)
        return f"Entry {entry.id} now has the curated label **{entry.label}**. {message}", table_value, figure, \
            describe(entry, rs.task), [entry.id, entry.label]

    @user_errors
    def on_curated(request: gr.Request, run_name, entry_id_value, flag, *values):
        entry_id_value = _require_id(entry_id_value)
        rs = _open(request, run_name, write=True)
        entry = rs.editor(editor_name(studio, request)).set_curated(entry_id_value, bool(flag))
        message, table_value, figure = _render(rs, entry_id_value, *values)
        state = "marked curated" if flag else "no longer curated"
        return f"Entry {entry.id} is {state}. {message}", table_value, figure, describe(entry, rs.task)

    @user_errors
    def on_delete(request: gr.Request, run_name, entry_id_value, *values):
        entry_id_value = _require_id(entry_id_value)
        rs = _open(request, run_name, write=True)
        if rs.editor(editor_name(studio, request)).delete([entry_id_value]) == 0:
            raise StoreError(f"No entry {entry_id_value!r} in this store: it may already be deleted; refresh.")
        message, table_value, figure = _render(rs, None, *values)
        return f"Deleted entry {entry_id_value}. {message}", table_value, figure, "", ""

    @user_errors
    def on_add(request: gr.Request, run_name, *values):
        texts, label, view_values = values[:MAX_FIELDS], values[MAX_FIELDS], values[MAX_FIELDS + 1:]
        rs = _open(request, run_name)
        entry = manual_entry(rs.task, dict(zip(rs.task.text_fields, texts)), label)
        rs = _open(request, run_name, write=True)  # only a valid entry makes a hosted visitor's store copy
        rs.editor(editor_name(studio, request)).add([entry])
        message, table_value, figure = _render(rs, entry.id, *view_values)
        return f"Added entry {entry.id}. {message}", table_value, figure, entry.id, describe(entry, rs.task)

    @user_errors
    def on_disagree(request: gr.Request, run_name):
        store = _open(request, run_name).store
        n = store.count({"agreement": False})
        if n == 0:
            gr.Warning("No entry has a teacher label that differs from its label: nothing to delete.")
            return gr.update(visible=False), ""
        return gr.update(visible=True), (f"**Delete {n} of {store.count()} entries** whose teacher label differs "
                                         "from their label? You can undo it from the edit history.")

    @user_errors
    def on_confirm(request: gr.Request, run_name, selected, *values):
        rs = _open(request, run_name, write=True)
        n = rs.editor(editor_name(studio, request)).delete_where_teacher_disagrees()
        message, table_value, figure = _render(rs, selected, *values)
        return gr.update(visible=False), f"Deleted {n} entries where the teacher disagreed. {message}", \
            table_value, figure

    @user_errors
    def on_export(request: gr.Request, run_name):
        rs = _open(request, run_name)
        if rs.store.count() == 0:
            raise StoreError("The store is empty: there is nothing to export.")
        path = _export_path(rs.run.name)
        n = rs.store.export_jsonl(path)
        gr.Info(f"Exported {n} entries.")
        return str(path)

    @user_errors
    def on_import(request: gr.Request, run_name, path, selected, *values):
        if not path:
            raise StoreError("Choose a .jsonl file to import first.")
        rs = _open(request, run_name, write=True)
        n = rs.editor(editor_name(studio, request)).import_jsonl(path)
        if n == 0:
            gr.Warning("The file holds no entries: nothing was imported.")
        message, table_value, figure = _render(rs, selected, *values)
        return f"Imported {n} entries from {Path(path).name}. {message}", table_value, figure

    @user_errors
    def on_history(request: gr.Request, run_name):
        if not run_name:
            return pd.DataFrame([], columns=list(HISTORY_COLUMNS))
        try:
            rs = _open(request, run_name)
        except RetriktError:
            return pd.DataFrame([], columns=list(HISTORY_COLUMNS))
        return pd.DataFrame(history_rows(rs), columns=list(HISTORY_COLUMNS))

    @user_errors
    def on_undo(request: gr.Request, run_name, seq, selected, *values):
        if seq is None:
            raise StoreError("Type the number (#) of the edit to undo.")
        rs = _open(request, run_name, write=True)
        edit = rs.editor(editor_name(studio, request)).undo(int(seq))
        message, table_value, figure = _render(rs, selected, *values)
        return (f"Undid edit #{edit.undoes} ({len(edit.ids)} entr{'y' if len(edit.ids) == 1 else 'ies'}). {message}",
                table_value, figure, pd.DataFrame(history_rows(rs), columns=list(HISTORY_COLUMNS)))

    refresh_runs.click(runs_update, run, run, api_name="store_runs").then(
        on_run, [run, *filters], run_out, api_visibility="private")
    run.input(on_run, [run, *filters], run_out, api_name="store_open_run").then(
        on_history, run, history, api_visibility="private")
    studio.demo.load(runs_update, run, run, api_visibility="private").then(
        on_run, [run, *filters], run_out, api_visibility="private")
    @user_errors
    def on_list_page(request: gr.Request, run_name, selected, *values):
        return _rows(_open(request, run_name), selected, *values)

    @user_errors
    def page_shown(request: gr.Request, run_name, selected, label, source, agreement, min_reward, contains, query,
                   k, page_number):
        # store_list's API returns two values; the Page box must still show the page the table now holds (a page
        # past the end shows the last one). The matching ids are cached, so this reads no entry.
        if query and query.strip():
            return 1
        found = matching_ids(_open(request, run_name).store, _filters(label, source, agreement, min_reward, contains))
        return shown_page(len(found), page_number)[0]

    rows_out = [status, entries]
    listed = apply.click(on_list, view_in, rows_out, api_name="store_list")
    listed.success(page_shown, view_in, page, api_visibility="private")
    listed.success(on_map, view_in, emap, api_name="store_map")
    for box in (query, contains):
        box.submit(on_list, view_in, rows_out, api_visibility="private").success(
            on_map, view_in, emap, api_visibility="private")
    # Another page of the same filters: the map, which shows every match, stays as it is.
    page.submit(on_list_page, view_in, [*rows_out, page], api_visibility="private")

    def turn(request, step, run_name, selected, values):
        *rest, current = values
        return _rows(_open(request, run_name), selected, *rest, max(1, int(current or 1) + step))

    @user_errors
    def on_previous(request: gr.Request, run_name, selected, *values):
        return turn(request, -1, run_name, selected, values)

    @user_errors
    def on_next(request: gr.Request, run_name, selected, *values):
        return turn(request, 1, run_name, selected, values)

    previous_page.click(on_previous, view_in, [*rows_out, page], api_name="store_previous_page")
    next_page.click(on_next, view_in, [*rows_out, page], api_name="store_next_page")
    # A new filter starts on the first page; done in the browser, so typing costs no server round trip.
    for box in (label_f, source_f, agree_f, min_reward, contains, query):
        box.input(None, None, page, js="() => 1", api_visibility="private")
    entry_out = [entry_id, details, new_label, curated, emap, seen]
    open_btn.click(on_open, view_in, entry_out, api_name="store_open")
    entry_id.submit(on_open, view_in, entry_out, api_visibility="private")
    entries.select(on_row, [run, *filters], entry_out, api_visibility="private")
    label_set = set_label.click(on_set_label, [run, entry_id, new_label, seen, *filters], [*view_out, details, seen],
                    api_name="store_set_label")
    curated_set = curated.input(on_curated, [run, entry_id, curated, *filters], [*view_out, details], api_name="store_set_curated")
    deleted = delete.click(on_delete, view_in, [*view_out, entry_id, details], api_name="store_delete")
    added = add.click(on_add, [run, *field_boxes, add_label, *filters], [*view_out, entry_id, details], api_name="store_add")
    disagree.click(on_disagree, run, [confirm_box, confirm_text], api_name="store_disagree_preview")
    confirmed = confirm.click(on_confirm, view_in, [confirm_box, *view_out], api_name="store_disagree_confirm")
    keep.click(lambda: gr.update(visible=False), None, confirm_box, api_visibility="private")
    export.click(on_export, run, export_file, api_name="store_export")
    imported = import_btn.click(on_import, [run, import_file, entry_id, *filters], view_out, api_name="store_import")
    undo.click(on_undo, [run, undo_seq, entry_id, *filters], [*view_out, history], api_name="store_undo")
    refresh_history.click(on_history, run, history, api_name="store_history")
    for edit in (label_set, curated_set, deleted, added, confirmed, imported):
        edit.success(on_history, run, history, api_visibility="private")
    # Other tabs (Compare) open an entry here: pick the run, load it, then open the entry.
    studio.pages["store"] = SimpleNamespace(run=run, entry_id=entry_id, on_run=on_run, run_in=[run, *filters],
                                            run_out=run_out, on_open=on_open, view_in=view_in, entry_out=entry_out)
