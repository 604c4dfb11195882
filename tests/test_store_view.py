"""The studio's page logic without a browser: store table rows, filters, search, the 2-D map, jobs and setup form."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from retrikt.config import ConfigError, RunConfig, load_yaml, save_yaml
from retrikt.jobs import Job
from retrikt.studio.jobs_view import duration_text, job_header, job_rows, job_status
from retrikt.studio.setup_form import (
    FORM_FIELDS, PACKAGED_TEACHER, base_dict, check_mapping, chosen_teacher_note, config_from_form, form_values,
    teacher_choices, teacher_from_choice, teacher_from_form, teacher_note, teacher_to_form,
)
from retrikt.store.knowledge_store import Entry, KnowledgeStore, StoreError, collection_name
from retrikt.studio.store_view import (
    MAX_ROWS, TABLE_COLUMNS, Filters, describe, embedding_map, manual_entry, map_figure, open_run_store,
    pca_2d, runs_newest_first, search, select, table, warm_map_code,
)
from retrikt.tasks import TaskDataError, load_builtin


def _soft(p_pos: float) -> dict[str, float]:
    return {"negative": round(1 - p_pos, 4), "positive": p_pos}


def sample_entries() -> list[Entry]:
    """Eight SST-2 entries covering every source, both agreements, an unscored one and PPO rewards."""
    rows = [
        ("t1", "A warm, funny and moving film.", "positive", "train", 0.9, None),
        ("t2", "A dull, lifeless mess of a movie.", "negative", "train", 0.2, None),
        ("g1", "The actors shine in this delightful comedy.", "positive", "generated:step1", 0.8, None),
        ("g2", "Boring plot and wooden acting throughout.", "negative", "generated:step1", 0.7, None),  # disagrees
        ("g3", "An uplifting story with a great soundtrack.", "negative", "generated:step1", 0.85, None),  # disagrees
        ("p1", "A gorgeous, heartfelt masterpiece.", "positive", "generated:ppo", 0.95, {"label": 0.9, "total": 1.4}),
        ("p2", "Painfully slow and utterly forgettable.", "negative", "generated:ppo", 0.1,
         {"label": 0.8, "total": 0.6}),
        ("m1", "I laughed from start to finish.", "positive", "manual", None, None),
    ]
    return [Entry(fields={"sentence": text}, label=label, source=source, text=f"Review: {text}", id=id_,
                  soft_labels=None if p is None else _soft(p), rewards=rewards)
            for id_, text, label, source, p, rewards in rows]


def seed_run(workspace: str | Path, name: str, entries: list[Entry] | None = None) -> KnowledgeStore:
    """A run folder with config.yaml and an SST-2 knowledge store holding ``entries`` (default: the eight above)."""
    folder = Path(workspace) / "runs" / name
    folder.mkdir(parents=True)
    save_yaml(RunConfig(workspace=str(workspace), run_name=name, task="SST-2"), folder / "config.yaml")
    task = load_builtin("SST-2", seed=13)
    store = KnowledgeStore(path=folder / "store", collection=collection_name(task.name, name),
                           task_labels=list(task.labels))
    store.add(sample_entries() if entries is None else entries)
    return store


def finished_summary(teacher_params: int, task_name: str = "SST-2") -> dict:
    """A step-1 summary for a seeded run, with the scorer block a real step 1 writes (two train demos per label and
    a flat prior), so an evaluation restores the teacher scorer instead of searching demos for minutes."""
    task = load_builtin(task_name, seed=13)
    demos = [uid for label in task.labels for uid in [e.uid for e in task.train if e.label == label][:2]]
    return {"status": "done", "task": task_name, "teacher_params": teacher_params,
            "score": {"demo_uids": demos, "label_prior": [1.0 / len(task.labels)] * len(task.labels)}}


@pytest.fixture(scope="module")
def run_store(tmp_path_factory):
    """One store for the read-only tests (nothing below writes to it)."""
    workspace = tmp_path_factory.mktemp("store-view")
    seed_run(workspace, "demo")
    return open_run_store(workspace, "demo")


def ids(entries) -> list[str]:
    return sorted(e.id for e in entries)


def test_filters_select_the_matching_rows(run_store):
    store = run_store.store
    assert len(select(store, Filters())) == 8
    assert ids(select(store, Filters(label="negative"))) == ["g2", "g3", "p2", "t2"]
    assert ids(select(store, Filters(source="generated:step1", agreement="disagrees"))) == ["g2", "g3"]
    assert ids(select(store, Filters(agreement="not scored"))) == ["m1"]
    assert ids(select(store, Filters(min_reward=1.0))) == ["p1"]
    assert ids(select(store, Filters(contains="BORING"))) == ["g2"]  # case-insensitive substring
    assert select(store, Filters(label="positive", contains="boring")) == []
    with pytest.raises(StoreError, match="Agreement filter"):
        Filters(agreement="maybe")


def test_rows_hold_every_column(run_store):
    headers, rows = table(select(run_store.store, Filters(source="generated:ppo")))
    assert headers == list(TABLE_COLUMNS)
    row = dict(zip(headers, rows[0]))
    assert row == {"id": "p1", "label": "positive", "source": "generated:ppo", "teacher label": "positive",
                   "agreement": "yes", "teacher confidence": 0.95, "reward total": 1.4, "curated": "",
                   "text": "Review: A gorgeous, heartfelt masterpiece."}
    manual = dict(zip(headers, table(select(run_store.store, Filters(source="manual")))[1][0]))
    assert manual["teacher label"] == manual["agreement"] == manual["teacher confidence"] == ""
    many = [Entry(fields={"sentence": "x"}, label="positive", source="manual", text="x", id=str(n))
            for n in range(MAX_ROWS + 3)]
    assert len(table(many)[1]) == MAX_ROWS


def test_semantic_search_ranks_by_meaning_and_applies_filters(run_store):
    hits = search(run_store.store, "a tedious, boring film with stiff actors", 3, Filters())
    assert hits[0][0].id == "g2"
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    headers, rows = table([e for e, _ in hits], [s for _, s in hits])
    assert headers[-1] == "similarity" and len(rows[0]) == len(TABLE_COLUMNS) + 1
    assert all(e.label == "positive" for e, _ in search(run_store.store, "boring", 8, Filters(label="positive")))
    with pytest.raises(StoreError, match="Type some text"):
        search(run_store.store, "  ", 5, Filters())


def test_describe_and_manual_entries(run_store):
    entry = run_store.store.get(["g3"])[0]
    text = describe(entry, run_store.task)
    assert "*Review*: An uplifting story" in text and "teacher: **positive** (disagrees)" in text
    new = manual_entry(run_store.task, {"sentence": "  Simply   wonderful. "}, "positive")
    assert (new.source, new.text, new.soft_labels, new.fields) == ("manual", "Review: Simply wonderful.", None,
                                                                   {"sentence": "Simply wonderful."})
    with pytest.raises(StoreError, match="Fill in Review"):
        manual_entry(run_store.task, {"sentence": " "}, "positive")
    with pytest.raises(StoreError, match="Unknown label 'great'"):
        manual_entry(run_store.task, {"sentence": "ok"}, "great")


def test_open_run_store_refuses_without_creating_anything(tmp_path):
    with pytest.raises(StoreError, match="Pick a run"):
        open_run_store(tmp_path, "")
    with pytest.raises(StoreError, match="no run 'nope'"):
        open_run_store(tmp_path, "nope")
    folder = tmp_path / "runs" / "empty"
    folder.mkdir(parents=True)
    save_yaml(RunConfig(workspace=str(tmp_path), run_name="empty"), folder / "config.yaml")
    with pytest.raises(StoreError, match="has no knowledge store"):
        open_run_store(tmp_path, "empty")
    assert not (folder / "store").exists()
    (folder / "store").mkdir()
    with pytest.raises(StoreError, match="has no knowledge store yet"):
        open_run_store(tmp_path, "empty")
    # Outside paths are refused even when they hold a run.
    seed_run(tmp_path / "elsewhere", "other", entries=[])
    with pytest.raises(StoreError, match="no run"):
        open_run_store(tmp_path, str(tmp_path / "elsewhere" / "runs" / "other"))


def test_runs_are_listed_newest_first(tmp_path):
    for name in ("b-old", "a-new"):
        seed_run(tmp_path, name, entries=[])
        time.sleep(0.02)
    assert runs_newest_first(tmp_path) == ["a-new", "b-old"]


def test_pca_shapes_and_stable_signs():
    assert pca_2d(np.zeros((0, 5)))[0].shape == (0, 2)
    assert pca_2d(np.ones((1, 5)))[0].tolist() == [[0.0, 0.0]]
    rng = np.random.default_rng(0)
    data = rng.normal(size=(30, 6)) * np.array([5, 2, 0.1, 0.1, 0.1, 0.1])
    coords, (first, second) = pca_2d(data)
    assert coords.shape == (30, 2) and first > second > 0 and first + second <= 1
    again, _ = pca_2d(-data)  # mirrored input, same picture: signs are fixed by the largest loading
    assert np.allclose(np.abs(coords), np.abs(again))
    one_axis, ratios = pca_2d(np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]))
    assert one_axis.shape == (3, 2) and ratios[0] == pytest.approx(1.0)


def test_the_warm_up_draws_a_map_of_its_own_and_keeps_no_axes():
    from retrikt.studio import store_view

    before = dict(store_view._BASES)
    warm_map_code()
    assert store_view._BASES == before


def test_map_groups_by_label_and_source(run_store):
    emap = embedding_map(run_store.store)
    assert emap.xy.shape == (8, 2) and len(emap.entries) == 8
    fig = map_figure(emap, run_store.task.labels, selected="g2")
    traces = {t.name: t for t in fig.data}
    assert "negative · generated:step1" in traces and traces["positive · manual"].marker.symbol == "star"
    assert sorted(traces["negative · generated:step1"].customdata) == ["g2", "g3"]
    assert traces["selected"].x[0] == emap.xy[[e.id for e in emap.entries].index("g2"), 0]
    assert any(text.startswith("id g2<br>") for text in traces["negative · generated:step1"].hovertext)
    kept = embedding_map(run_store.store, {"p1", "p2"})
    assert ids(kept.entries) == ["p1", "p2"]
    # The projection is fitted on the whole store, so a filtered point does not move.
    def where(m, id_):
        return m.xy[[e.id for e in m.entries].index(id_)]

    assert np.allclose(where(kept, "p1"), where(emap, "p1"))


def test_a_large_selection_is_drawn_as_an_even_sample_that_keeps_the_selected_entry(run_store):
    sampled = embedding_map(run_store.store, None, selected="t2", limit=3)
    assert sampled.matched == 8 and "t2" in ids(sampled.entries) and len(sampled.entries) in (3, 4)
    assert map_figure(sampled, run_store.task.labels).layout.title.text.startswith(f"{len(sampled.entries)} of 8 "
                                                                                 "entries (an even sample)")
    assert embedding_map(run_store.store, None, limit=8).matched is None


def test_job_rows_and_header():
    job = Job(id="abc", kind="generate", title="Step 1 on SST-2", state="failed", started=100.0, finished=225.0,
              stage="generate", done=40, total=520, run="SST-2-x", error="TaskDataError: bad")
    row = dict(zip(("id", "state", "kind", "title", "started", "duration", "progress", "run"), job_rows([job])[0]))
    assert (row["state"], row["duration"], row["progress"], row["run"]) == ("failed", "2m 05s", "generate 40/520",
                                                                          "SST-2-x")
    assert "**failed**" in job_header(job) and "TaskDataError: bad" in job_header(job)
    assert duration_text(None) == "" and duration_text(7.4) == "7s" and duration_text(3725) == "1h 02m"
    assert "No jobs yet" in job_header(None)
    done = Job(id="abc", kind="generate", title="Step 1 on SST-2", state="done", run="SST-2-x")
    for text in (job_header(done), job_status(done, None)):
        assert "Run folder: `runs/SST-2-x`" in text
    for text in (job_header(done, hosted=True), job_status(done, None, hosted=True)):  # a visitor has no folders
        assert "Run: `SST-2-x`" in text and "folder" not in text and "runs/" not in text


def test_setup_form_round_trip(tmp_path):
    config = RunConfig(workspace=str(tmp_path), seed=21, run_name="my-run")
    config.generation.temperature = 0.7
    config.ppo.updates = 3  # a field the form does not show survives through the base config
    values = form_values(config)
    assert len(values) == len(FORM_FIELDS)
    values[[f.key for f in FORM_FIELDS].index("prompt_tuning.steps")] = 12.0  # numbers arrive as floats
    rebuilt = config_from_form(base_dict(config), workspace=str(tmp_path), task="RTE",
                               teacher=("HuggingFaceTB/SmolLM2-360M-Instruct", None), values=values)
    assert (rebuilt.task, rebuilt.seed, rebuilt.run_name, rebuilt.prompt_tuning.steps) == ("RTE", 21, "my-run", 12)
    assert rebuilt.generation.temperature == 0.7 and rebuilt.ppo.updates == 3
    save_yaml(rebuilt, tmp_path / "c.yaml")
    assert load_yaml(tmp_path / "c.yaml") == rebuilt
    bad_seed = form_values(RunConfig(seed=5))
    with pytest.raises(ConfigError, match="seeds 13, 21"):
        config_from_form(None, workspace="w", task="SST-2", teacher=(PACKAGED_TEACHER, None), values=bad_seed)
    empty = form_values(RunConfig())
    empty[[f.key for f in FORM_FIELDS].index("generation.top_p")] = None
    with pytest.raises(ConfigError, match="Top-p is empty"):
        config_from_form(None, workspace="w", task="SST-2", teacher=(PACKAGED_TEACHER, None), values=empty)


def test_teacher_choices(tmp_path):
    assert "134.5M" in teacher_note("packaged", "", "")
    assert "loaded on first run" in teacher_note("hub", "HuggingFaceTB/SmolLM2-360M-Instruct", "")
    assert "no GGUF file" in teacher_note("local", str(tmp_path / "m.gguf"), "")
    (tmp_path / "fake.gguf").write_bytes(b"nope")
    assert "not a GGUF file" in teacher_note("local", str(tmp_path / "fake.gguf"), "")
    assert "no config.json" in teacher_note("local", str(tmp_path), "")
    assert teacher_from_form("packaged", "ignored", "") == (PACKAGED_TEACHER, None)
    with pytest.raises(ConfigError, match="hub id"):
        teacher_from_form("hub", " ", "")
    assert teacher_to_form(PACKAGED_TEACHER, None) == ("packaged", "", "")
    assert teacher_to_form("HuggingFaceTB/SmolLM2-360M-Instruct", None)[0] == "hub"
    assert teacher_to_form(str(tmp_path / "x.gguf"), None)[0] == "local"


def test_hosted_teacher_list_names_models_not_paths(tmp_path):
    allowed = [PACKAGED_TEACHER, "HuggingFaceTB/SmolLM2-360M-Instruct", str(tmp_path / "models" / "mine.gguf"),
               "gpt2"]
    assert teacher_choices(allowed) == [  # what each is: the packaged quantised copy, or the hub's own weights
        ("SmolLM2-135M-Instruct, packaged 4-bit copy (Q4_1) on this server (default)", PACKAGED_TEACHER),
        ("SmolLM2-360M-Instruct from the Hugging Face Hub (HuggingFaceTB), its published weights",
         "HuggingFaceTB/SmolLM2-360M-Instruct"),
        ("mine (installed on this server)", str(tmp_path / "models" / "mine.gguf")),  # a host's own model
        ("gpt2 from the Hugging Face Hub, its published weights", "gpt2"),
    ]
    assert teacher_from_choice(" HuggingFaceTB/SmolLM2-360M-Instruct ") == ("HuggingFaceTB/SmolLM2-360M-Instruct", None)
    with pytest.raises(ConfigError, match="pick a teacher"):
        teacher_from_choice(None)
    assert "134.5M" in chosen_teacher_note(PACKAGED_TEACHER)
    note = chosen_teacher_note("HuggingFaceTB/SmolLM2-360M-Instruct")
    assert "SmolLM2-360M-Instruct from the Hugging Face Hub (HuggingFaceTB)" in note and "/" not in note


@pytest.mark.parametrize("source,model,gguf,problem", [
    ("local", "/etc/passwd", "", "is a file, not a model folder"),
    ("hub", "/etc/passwd", "", "is a file, not a model folder"),  # a path typed as a hub id
    ("local", "/no/such/folder", "", "no folder"),
    ("hub", "HuggingFaceTB/SmolLM2-360M-Instruct", "", None),
])
def test_a_teacher_path_that_cannot_load_is_said_when_typed(source, model, gguf, problem):
    note = teacher_note(source, model, gguf)
    if problem:
        assert problem in note and "will not load" in note and "loaded on first run" not in note
    else:
        assert note.endswith("parameter count: loaded on first run.")


def test_uploaded_task_mapping(tmp_path):
    lines = ["review,stars,label"] + [f"review number {n} is {'good' if n % 2 else 'bad'},{n % 5},"
                                      f"{'pos' if n % 2 else 'neg'}" for n in range(100)]
    path = tmp_path / "reviews.csv"
    path.write_text("\n".join(lines), encoding="utf-8")
    summary = check_mapping(str(path), ["review", ""], "label")
    assert "2 labels (`neg`, `pos`)" in summary and "train 32" in summary
    with pytest.raises(TaskDataError, match="no column 'text'"):
        check_mapping(str(path), ["text"], "label")
    with pytest.raises(TaskDataError, match="label column"):
        check_mapping(str(path), ["review"], "")


@pytest.mark.parametrize("fraction,teacher_params,expected", [
    (0.01, 134_515_008, "at most **1,345,150** parameters = 1.00% of the teacher's 134,515,008"),
    (0.005, 1_000_000, "at most **5,000** parameters = 0.50% of the teacher's 1,000,000"),
    (0.01, None, "at most 1.00% of the teacher's parameters (counted when the teacher loads)"),
    ("x", 1_000, "must be a number"),
])
def test_student_budget_is_shown_before_anything_runs(fraction, teacher_params, expected):
    from retrikt.studio.setup_form import student_note

    assert expected in student_note(fraction, teacher_params)


def test_filtered_ids_are_reused_until_the_store_changes(tmp_path):
    """The store tab keeps the ids each filter matched per store version: every kind of write must show next time."""
    from retrikt.studio.store_view import matching_ids

    store = seed_run(tmp_path, "cached")
    first = matching_ids(store, Filters())
    assert matching_ids(store, Filters()) is first and len(first) == 8
    other = KnowledgeStore(path=store.location, collection=store.name)  # a second handle, as a job would have
    other.update_label("g2", "positive")  # same count: only the write counter tells
    assert "g2" not in ids(select(store, Filters(label="negative")))
    other.set_curated(["g3"])
    assert {e.id: e for e in select(store, Filters())}["g3"].curated
    other.delete(["p1"])
    assert "p1" not in ids(select(store, Filters())) and embedding_map(store).xy.shape == (7, 2)
    other.add([Entry(fields={"sentence": "a fresh one"}, label="negative", source="manual", text="a fresh one")])
    assert len(select(store, Filters(source="manual"))) == 2
    assert other.delete_where_teacher_disagrees() > 0
    assert not [e for e in select(store, Filters()) if e.agreement is False]


def test_pages_of_the_table_and_whole_store_reads_go_page_by_page(run_store, monkeypatch):
    """A page past the end shows the last one; reads longer than one Chroma page are stitched in order."""
    from retrikt.store import knowledge_store
    from retrikt.studio.store_view import select_page

    monkeypatch.setattr(knowledge_store, "READ_PAGE", 3)  # 8 entries: three pages of reads
    store = run_store.store
    everything = [e.id for e in store.list()]
    assert len(everything) == 8 and store.ids() == everything
    assert [e.id for e in store.list(limit=5, offset=2)] == everything[2:7]
    assert len(store.all_embeddings()[0]) == 8 and store.count({"source": "generated:step1"}) == 3
    assert store.ids(text_contains="boring", ignore_case=True) == ["g2"] and not store.ids(text_contains="boring")
    second = select_page(store, Filters(), page=2, per_page=3)
    assert (second.matched, second.page, second.pages, second.first_row) == (8, 2, 3, 4)
    assert [e.id for e in second.entries] == everything[3:6]
    last = select_page(store, Filters(), page=99, per_page=3)
    assert last.page == 3 and [e.id for e in last.entries] == everything[6:]


@pytest.mark.parametrize("text", ["(copy", "a+b", "[x]", "50%", "\\d", "it 's", "C$", "#1 ~ & -"])
def test_text_filter_matches_regex_characters_literally(tmp_path, text):
    store = seed_run(tmp_path, "literal", [
        Entry(fields={"sentence": f"Before {text} after"}, label="positive", source="manual",
              text=f"Before {text} after", id="hit"),
        Entry(fields={"sentence": "nothing here"}, label="negative", source="manual", text="nothing here", id="miss"),
    ])
    assert store.ids(text_contains=text.upper(), ignore_case=True) == ["hit"]
    assert store.ids(text_contains=text) == ["hit"]
