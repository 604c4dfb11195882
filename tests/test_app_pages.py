"""Setup, Knowledge store and Jobs tabs of a real `python app.py`, driven with gradio_client (no model is run)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError, ValidationError

from retrikt.runs import Run
from test_run_history import write_recorded_log
from test_store_view import seed_run

pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parents[1]
ANY = "any"
FILTERS = [ANY, ANY, ANY, None, "", "", 20]  # label, source, agreement, min reward, text contains, query, results
BUILT_IN, UPLOADED = "Built-in or saved task", "Upload a file (CSV, TSV, JSONL)"
HUB_TEACHER = "HuggingFaceTB/SmolLM2-360M-Instruct"


def _jobs(now: float) -> list[dict]:
    base = {"kind": "generate", "message": "", "error": None, "points": [], "samples": []}
    return [
        {**base, "id": "job-old", "title": "Step 1 on SST-2", "state": "done", "created": now - 100,
         "started": now - 99, "finished": now - 40, "stage": "store", "done": 10, "total": 10, "run": "demo",
         "log": ["[load] loading task SST-2", "done"]},
        {**base, "id": "job-new", "title": "Step 1 on RTE", "state": "running", "created": now - 30,
         "started": now - 29, "finished": None, "stage": "generate", "done": 3, "total": 20, "run": None,
         "log": ["[load] loading teacher"]},
    ]


@pytest.fixture(scope="module")
def studio(tmp_path_factory, start_studio):
    """A workspace with several small runs and two recorded jobs, served by a real studio process."""
    workspace = tmp_path_factory.mktemp("studio")
    for name in ("demo", "edit", "bulk", "gone"):
        seed_run(workspace, name)
    seed_run(workspace, "empty", entries=[])
    no_store = workspace / "runs" / "nostore"
    no_store.mkdir()
    shutil.copy(workspace / "runs" / "demo" / "config.yaml", no_store / "config.yaml")
    (workspace / "jobs.json").write_text(json.dumps(_jobs(time.time())), encoding="utf-8")
    url, stop = start_studio(workspace)
    yield workspace, Client(url, verbose=False)
    stop()


def listed(client, run, **filters) -> tuple[str, list[str], list[list]]:
    """(status, table headers, rows) of the store tab for ``run`` with some filters changed."""
    values = dict(zip(("label", "source", "agreement", "min_reward", "contains", "query", "k"), FILTERS))
    values.update(filters)
    status, table = client.predict(run, "", *values.values(), api_name="/store_list")
    return status, table["headers"], table["data"]


def ids(rows) -> list[str]:
    return sorted(row[0] for row in rows)


def test_store_lists_filters_and_searches(studio):
    _, client = studio
    out = client.predict("demo", *FILTERS, api_name="/store_open_run")
    assert "**8** entries" in out[0] and "labels negative, positive" in out[0]
    status, table, figure = out[8], out[9], out[10]
    assert status == "8 of 8 entries match the filters." and len(table["data"]) == 8
    assert figure["type"] == "plotly" and '"customdata"' in figure["plot"]
    assert ids(listed(client, "demo", label="negative")[2]) == ["g2", "g3", "p2", "t2"]
    assert ids(listed(client, "demo", source="generated:step1", agreement="disagrees")[2]) == ["g2", "g3"]
    assert ids(listed(client, "demo", min_reward=1.0)[2]) == ["p1"]
    assert len(listed(client, "demo", min_reward=" ")[2]) == 8  # the browser sends an empty box as text
    with pytest.raises(AppError, match="minimum reward must be a number"):
        listed(client, "demo", min_reward="lots")
    assert ids(listed(client, "demo", contains="boring")[2]) == ["g2"]
    status, headers, rows = listed(client, "demo", query="boring film with wooden actors", k=3)
    assert headers[-1] == "similarity" and rows[0][0] == "g2" and len(rows) == 3
    assert "closest in meaning" in status


def test_edit_label_curate_delete_and_add(studio):
    _, client = studio
    status, _, _, details = client.predict("edit", "g3", "positive", *FILTERS, api_name="/store_set_label")
    assert "now has the curated label **positive**" in status and "(agrees)" in details
    assert ids(listed(client, "edit", agreement="disagrees")[2]) == ["g2"]
    with pytest.raises(AppError, match="Unknown label 'great'"):
        client.predict("edit", "g3", "great", *FILTERS, api_name="/store_set_label")
    with pytest.raises(AppError, match="Select an entry first"):
        client.predict("edit", " ", "positive", *FILTERS, api_name="/store_set_label")
    client.predict("edit", "g1", True, *FILTERS, api_name="/store_set_curated")
    headers, rows = listed(client, "edit")[1:]
    curated = {row[0]: row[headers.index("curated")] for row in rows}
    assert curated["g1"] == "yes" and curated["g2"] == ""
    status = client.predict("edit", "p2", *FILTERS, api_name="/store_delete")[0]
    assert status.startswith("Deleted entry p2. 7 of 7")
    with pytest.raises(AppError, match="No entry 'p2'"):
        client.predict("edit", "p2", *FILTERS, api_name="/store_delete")
    status, _, _, new_id, _ = client.predict("edit", "Great fun for all ages", "", "", "", "positive", *FILTERS,
                                             api_name="/store_add")
    rows = listed(client, "edit", source="manual")[2]
    assert new_id in ids(rows) and any(row[-1] == "Review: Great fun for all ages" for row in rows)
    with pytest.raises(AppError, match="Fill in Review"):
        client.predict("edit", "  ", "", "", "", "positive", *FILTERS, api_name="/store_add")
    opened = client.predict("edit", "g3", *FILTERS, api_name="/store_open")
    # a label set by a person marks the entry curated: it then votes with that label (see student/live.py)
    assert opened[0] == "g3" and "label **positive**" in opened[1] and opened[3] is True
    history = client.predict("edit", api_name="/store_history")
    actions = [row[3] for row in history["data"]]
    assert actions == ["add", "delete", "curated", "label"] and history["data"][-1][5] == "negative → positive · curated"
    status, _, _, history, said = client.predict("edit", 3, "", *FILTERS, api_name="/store_undo")
    assert said.startswith("Undid edit #3") and "Undid" not in status and "p2" in ids(listed(client, "edit")[2])
    assert history["data"][0][3] == "undo of #3"
    with pytest.raises(AppError, match="already undone"):
        client.predict("edit", 3, "", *FILTERS, api_name="/store_undo")


def test_bulk_delete_where_teacher_disagrees_asks_first(studio):
    _, client = studio
    question = client.predict("bulk", api_name="/store_disagree_preview")
    assert "Delete 2 of 8 entries" in str(question)
    assert len(listed(client, "bulk")[2]) == 8  # asking deletes nothing
    status = client.predict("bulk", "", *FILTERS, api_name="/store_disagree_confirm")[0]
    assert status.startswith("Deleted 2 entries") and len(listed(client, "bulk")[2]) == 6
    assert listed(client, "bulk", agreement="disagrees")[2] == []


def test_export_then_bad_and_good_import(studio, tmp_path):
    _, client = studio
    exported = Path(client.predict("demo", api_name="/store_export"))
    lines = exported.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 8 and {json.loads(line)["id"] for line in lines} >= {"g1", "p2", "m1"}
    with pytest.raises(AppError, match="empty: there is nothing to export"):
        client.predict("empty", api_name="/store_export")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(lines[0] + "\n{not json\n", encoding="utf-8")
    with pytest.raises(AppError, match="bad.jsonl line 2: not valid JSON"):
        client.predict("empty", handle_file(str(bad)), "", *FILTERS, api_name="/store_import")
    assert listed(client, "empty")[0].startswith("The store is empty")  # the valid first line was not written
    status = client.predict("empty", handle_file(str(exported)), "", *FILTERS, api_name="/store_import")[0]
    assert status.startswith("Imported 8 entries") and len(listed(client, "empty")[2]) == 8
    with pytest.raises(AppError, match="is already in"):
        client.predict("empty", handle_file(str(exported)), "", *FILTERS, api_name="/store_import")
    assert len(listed(client, "empty")[2]) == 8


def test_runs_without_or_after_losing_their_store(studio):
    workspace, client = studio
    out = client.predict("nostore", *FILTERS, api_name="/store_open_run")
    assert "has no knowledge store" in out[0] and out[9]["data"] == []
    with pytest.raises(AppError, match="has no knowledge store"):
        listed(client, "nostore")
    assert len(listed(client, "gone")[2]) == 8
    shutil.rmtree(workspace / "runs" / "gone" / "store")
    with pytest.raises(AppError, match="its store folder is missing"):
        listed(client, "gone")
    shutil.rmtree(workspace / "runs" / "gone")
    with pytest.raises(AppError, match="There is no run 'gone'"):
        client.predict("gone", "g1", "positive", *FILTERS, api_name="/store_set_label")
    assert "gone" not in str(client.predict(None, api_name="/store_runs"))


def _form(seed=21, steps=12):
    # seed, run name, soft prompt tokens, tuning steps, tuning batch, tuning lr, init from text,
    # samples per label, generation batch, max new tokens, temperature, top-p, sampling seed,
    # student size fraction, student width, student layers, k, PPO in a full run
    return [seed, "", 16, steps, 8, 0.03, True, 4, 16, None, 0.7, 0.9, 5, 0.02, 96, 2, 6, False]


def test_setup_saves_a_yaml_the_cli_reads_and_loads_it_back(studio, tmp_path):
    _, client = studio
    path, shown = client.predict("hub", HUB_TEACHER, "", BUILT_IN, "RTE", *_form(),
                                 api_name="/setup_save")
    saved = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    assert yaml.safe_load(shown) == saved
    assert (saved["task"], saved["seed"], saved["teacher"]["model"]) == ("RTE", 21, HUB_TEACHER)
    generation = saved["generation"]
    assert (saved["prompt_tuning"]["steps"], generation["temperature"], generation["seed"]) == (12, 0.7, 5)
    assert saved["student"]["max_params_fraction"] == 0.02 and saved["student"]["k"] == 6
    replay = subprocess.run([sys.executable, "-m", "retrikt", "config", "--config", path], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert replay.returncode == 0, replay.stderr
    assert yaml.safe_load(replay.stdout) == saved
    loaded = client.predict(handle_file(path), api_name="/setup_load")
    assert loaded[0] == "hub" and loaded[1]["value"] == HUB_TEACHER
    assert "loaded on first run" in loaded[3] and loaded[4] == BUILT_IN and loaded[5]["value"] == "RTE"
    assert list(loaded[6:24]) == [21, "", 16, 12, 8, 0.03, True, 4, 16, 0, 0.7, 0.9, 5, 0.02, 96, 2, 6, False]
    with pytest.raises(AppError, match="Save the file or dataset as a task first"):
        client.predict("packaged", "", "", UPLOADED, "RTE", *_form(), api_name="/setup_save")
    with pytest.raises(AppError, match="seeds 13, 21, 42, 87, 100"):
        client.predict("packaged", "", "", BUILT_IN, "SST-2", *_form(seed=3), api_name="/setup_save")
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: SST-2\ngeneration:\n  temprature: 0.5\n", encoding="utf-8")
    with pytest.raises(AppError, match="unknown field.*generation.temprature"):
        client.predict(handle_file(str(bad)), api_name="/setup_load")


def test_setup_previews_an_uploaded_task_and_checks_the_mapping(studio, tmp_path):
    _, client = studio
    table = tmp_path / "reviews.csv"
    table.write_text("review,label\n" + "\n".join(f"review {n},{'pos' if n % 2 else 'neg'}" for n in range(80)),
                     encoding="utf-8")
    first, second, label, preview, note = client.predict(handle_file(str(table)), api_name="/setup_preview")
    assert (first["value"], second["value"], label["value"]) == ("review", "(none)", "label")
    assert preview["headers"] == ["review", "label"] and len(preview["data"]) == 8 and "2 columns" in note
    result = client.predict(handle_file(str(table)), "review", "(none)", "label", 13, None, 16, "",
                            api_name="/setup_check_mapping")
    assert "The mapping works: 2 labels" in result
    result = client.predict(handle_file(str(table)), "review", "(none)", "label", 13, None, 4, "pos, neg",
                            api_name="/setup_check_mapping")
    assert "2 labels (`pos`, `neg`); train 8, dev 8" in result  # k and the label order as typed
    with pytest.raises(AppError, match="no column 'text'"):
        client.predict(handle_file(str(table)), "text", "(none)", "label", 13, None, 16, "",
                       api_name="/setup_check_mapping")


def test_setup_saves_an_upload_as_a_task_that_a_config_can_name(studio, tmp_path):
    workspace, client = studio
    table = tmp_path / "reviews.csv"
    table.write_text("review,label\n" + "\n".join(f"review {n},{'pos' if n % 2 else 'neg'}" for n in range(80)),
                     encoding="utf-8")
    with pytest.raises(AppError, match="task name"):
        client.predict(handle_file(str(table)), "review", "(none)", "label", "../up", 13, None, 16, "",
                       api_name="/setup_save_upload_task")
    with pytest.raises(AppError, match="built-in task"):
        client.predict(handle_file(str(table)), "review", "(none)", "label", "sst2", 13, None, 16, "",
                       api_name="/setup_save_upload_task")
    assert not (workspace / "tasks").exists() or not any((workspace / "tasks").iterdir())
    # What the teacher will read, before saving: the answer words (the user's, else the label names), the query lines.
    shown = client.predict(handle_file(str(table)), "review", "(none)", "label", 13, None, 16, "", "pos=good",
                           "Sentiment:", api_name="/setup_check_mapping")
    assert "`neg` → “neg”, `pos` → “good”" in shown and "“Sentiment:” / “Label:”" in shown
    with pytest.raises(AppError, match="LABEL=TEXT"):
        client.predict(handle_file(str(table)), "review", "(none)", "label", 13, None, 16, "", "pos good", "",
                       api_name="/setup_check_mapping")
    task_list, mode, note = client.predict(handle_file(str(table)), "review", "(none)", "label", "my-reviews",
                                           13, None, 16, "", api_name="/setup_save_upload_task")
    assert task_list["value"] == "my-reviews" and ["my-reviews", "my-reviews"] in task_list["choices"]
    assert mode["value"] == BUILT_IN and "Saved as task `my-reviews`" in note
    assert (workspace / "tasks" / "my-reviews" / "task.json").is_file()
    with pytest.raises(AppError, match="exists already"):
        client.predict(handle_file(str(table)), "review", "(none)", "label", "my-reviews", 13, None, 16, "",
                       api_name="/setup_save_upload_task")
    path, shown = client.predict("packaged", "", "", BUILT_IN, "my-reviews", *_form(seed=13), api_name="/setup_save")
    assert yaml.safe_load(Path(path).read_text(encoding="utf-8"))["task"] == "my-reviews"
    with pytest.raises(AppError, match="no-such-task is not in the list"):
        client.predict("packaged", "", "", BUILT_IN, "no-such-task", *_form(seed=13), api_name="/setup_save")


def test_setup_takes_the_datasets_own_test_split_as_a_second_file(studio, tmp_path):
    workspace, client = studio
    table, test = tmp_path / "train.csv", tmp_path / "test.csv"
    table.write_text("review,label\n" + "\n".join(f"review {n},{'pos' if n % 2 else 'neg'}" for n in range(80)),
                     encoding="utf-8")
    test.write_text("review,label\n" + "\n".join(f"held-out {n},{'pos' if n % 3 else 'neg'}" for n in range(30)),
                    encoding="utf-8")
    result = client.predict(handle_file(str(table)), "review", "(none)", "label", 13, handle_file(str(test)), 16, "",
                            api_name="/setup_check_mapping")
    # 16 + 16 per label from the first file, all 30 test rows from the second, the other 16 rows unlabeled
    assert "train 32, dev 32, test 30, unlabeled 16 examples" in result
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("text,label\nsomething,pos\n", encoding="utf-8")
    with pytest.raises(AppError, match="wrong.csv.*no column 'review'"):
        client.predict(handle_file(str(table)), "review", "(none)", "label", 13, handle_file(str(wrong)), 16, "",
                       api_name="/setup_check_mapping")
    client.predict(handle_file(str(table)), "review", "(none)", "label", "own-test", 13, handle_file(str(test)), 16, "",
                   api_name="/setup_save_upload_task")
    folder = workspace / "tasks" / "own-test"
    assert json.loads((folder / "task.json").read_text(encoding="utf-8"))["origin"]["test_file"] == "test.csv"
    test_rows = [json.loads(line) for line in (folder / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(r["fields"]["review"] for r in test_rows) == sorted(f"held-out {n}" for n in range(30))


def test_setup_hub_task_offline_is_a_clear_message(studio):
    workspace, client = studio
    with pytest.raises(AppError, match="not reachable"):
        client.predict("glue", "sst2", "sentence", "", "label", "glue-sst2", 13, api_name="/setup_save_hub_task")
    with pytest.raises(AppError, match="type a dataset id"):
        client.predict("", "", "sentence", "", "label", "glue-sst2", 13, api_name="/setup_save_hub_task")
    assert not (workspace / "tasks" / "glue-sst2").exists()


def test_jobs_tab_lists_jobs_shows_logs_and_refuses_to_cancel_finished_ones(studio):
    _, client = studio
    table, header, log = client.predict("", api_name="/jobs_poll")
    rows = {row[0]: dict(zip(table["headers"], row)) for row in table["data"]}
    assert [row[0] for row in table["data"]] == ["job-new", "job-old"]  # newest first
    assert rows["job-new"]["state"] == "interrupted" and rows["job-old"]["state"] == "done"
    assert rows["job-old"]["duration"] == "59s" and rows["job-old"]["run"] == "demo"
    assert "Step 1 on RTE" in header and "interrupted: the server stopped" in log
    table, header, log = client.predict("job-old", api_name="/jobs_poll")
    assert "**done**" in header and "runs/demo" in header and log.endswith("done")
    message = client.predict("job-old", api_name="/jobs_cancel")
    assert "only queued or running jobs can be cancelled" in message
    with pytest.raises(AppError, match="No job with id `zzz`"):
        client.predict("zzz", api_name="/jobs_cancel")
    outside = client.predict(api_name="/jobs_outside_runs")
    listed = {row[0]: dict(zip(outside["headers"], row)) for row in outside["data"]}
    assert "demo" not in listed  # job-old made it: it is in the jobs table
    assert {"edit", "bulk", "nostore"} <= set(listed) and listed["nostore"]["status"] == "not started"


def test_compare_opens_on_the_shipped_demo_run(studio):
    _, client = studio
    runs = client.predict(None, api_name="/compare_runs")
    # the only evaluated run (the seeded runs have no evaluation): the first screen is never empty
    assert runs["value"] == "demo-SST-2" and runs["choices"] == [["demo-SST-2", "demo-SST-2"]]
    headline, systems, _, _, first, text, verdict, alone, mixed, neighbours, fix_label = client.predict(
        "demo-SST-2", "all", api_name="/compare_open_run")
    assert fix_label["choices"] == [["negative", "negative"], ["positive", "positive"]]
    assert "SST-2" in headline and "precomputed demo run" in headline
    assert [row[0] for row in systems["data"]][2:4] == ["student alone", "student + retrieval"]
    assert first["value"].startswith("sst2-") and text.startswith("> Review: ") and verdict.startswith("Gold **")
    assert {c["label"] for c in alone["confidences"]} == {"negative", "positive"}
    assert len(neighbours["data"]) == 8 and neighbours["headers"][0] == "rank"


@pytest.mark.parametrize("wanted", ["retrieval fixed it", "retrieval broke it", "both wrong"])
def test_compare_filters_examples_by_what_retrieval_did(studio, wanted):
    _, client = studio
    example, text, verdict, alone, mixed, neighbours = client.predict("demo-SST-2", wanted,
                                                                      api_name="/compare_filter")
    assert f"→ {wanted}." in verdict
    assert example["value"] == example["choices"][0][1]
    again = client.predict("demo-SST-2", example["value"], api_name="/compare_example")
    assert again[1] == verdict


def test_compare_reaches_every_test_example_by_list_or_typed_id(studio):
    _, client = studio
    example = client.predict("demo-SST-2", "all", api_name="/compare_filter")[0]
    assert len(example["choices"]) == 872  # the whole SST-2 test split is listed
    text = client.predict("demo-SST-2", "871", api_name="/compare_example")[0]  # typed: the last example's number
    last = client.predict("demo-SST-2", example["choices"][-1][1], api_name="/compare_example")[0]
    assert text == last and "sst2-dev-871" == example["choices"][-1][1]


def test_compare_predicts_typed_input_and_refuses_bad_requests(studio):
    _, client = studio
    text, verdict, alone, mixed, neighbours = client.predict("demo-SST-2", "a gorgeous , witty movie", "",
                                                             api_name="/compare_predict")
    assert text == "> Review: a gorgeous , witty movie" and "with retrieval" in verdict
    assert len(neighbours["data"]) == 8
    # the page's validator answers an empty input (one message by the box), before the handler runs
    with pytest.raises(ValidationError, match="Type an input to classify first"):
        client.predict("demo-SST-2", "  ", "", api_name="/compare_predict")
    with pytest.raises(AppError, match="no run '../runs'"):
        client.predict("../runs", "all", api_name="/compare_open_run")
    with pytest.raises(AppError, match="not been evaluated"):
        client.predict("demo", "all", api_name="/compare_open_run")


def test_setup_starts_step1_with_its_own_settings(studio):
    _, client = studio
    message = client.predict("hub", HUB_TEACHER, "", BUILT_IN, "RTE", *_form(), api_name="/setup_run")
    assert message.startswith("Started job") and "run `RTE-" in message
    deadline = time.time() + 120
    while "— failed" not in (status := client.predict(api_name="/generate_poll")[0]):
        assert time.time() < deadline, status
        time.sleep(1)
    # Offline, the hub teacher chosen in Setup cannot load: the job names it, so the Setup settings were used.
    assert "Step 1 on RTE" in status and HUB_TEACHER in status


def test_ppo_tab_lists_finished_runs_and_refuses_others(studio):
    _, client = studio
    assert client.predict(None, api_name="/ppo_runs")["choices"] == [["demo-SST-2", "demo-SST-2"]]
    with pytest.raises(AppError, match="Pick a run whose step 1 is done"):
        client.predict("demo", 2, 4, 1.0, 0.5, 0.5, 0.05, api_name="/ppo_start")
    with pytest.raises(AppError, match="ppo.rollout_batch_size"):
        client.predict("demo-SST-2", 2, 0, 1.0, 0.5, 0.5, 0.05, api_name="/ppo_start")


def test_ppo_and_generate_tabs_show_a_finished_runs_record(studio):
    workspace, client = studio
    steps, updates = write_recorded_log(Run(workspace / "runs" / "demo-SST-2"))
    status, figure, quality, samples = client.predict("demo-SST-2", api_name="/ppo_record")
    assert status.startswith(f"**PPO on demo-SST-2** — recorded: {updates} updates")
    curves = json.loads(figure["plot"])["data"]
    assert curves and all(len(curve["x"]) == updates for curve in curves)
    assert "| samples | step 1 | after PPO |" in quality
    assert samples["data"] and {row[0] for row in samples["data"]} == {"negative", "positive"}
    status, figure, samples = client.predict("demo-SST-2", api_name="/generate_record")
    assert status.startswith(f"**Step 1 on demo-SST-2** — recorded: {steps} tuning steps")
    assert [len(curve["x"]) for curve in json.loads(figure["plot"])["data"]] == [steps] and samples["data"]


def test_student_tab_exports_a_bundle_that_loads(studio, tmp_path):
    import zipfile

    from retrikt.student.bundle import load_bundle

    _, client = studio
    downloaded = client.predict("demo-SST-2", api_name="/student_export")
    path = Path(downloaded if isinstance(downloaded, str) else downloaded["path"])
    assert path.name == "demo-SST-2-student.zip"
    with zipfile.ZipFile(path) as archive:
        archive.extractall(tmp_path / "bundle")
    found = load_bundle(tmp_path / "bundle").predict(["a gorgeous , witty , seductive movie ."])
    assert found.labels == ["positive"] and len(found.neighbours[0]) == 8
    with pytest.raises(Exception, match="has not been evaluated"):
        client.predict("edit", api_name="/student_export")


def test_compare_fixes_a_neighbour_shows_before_and_after_reevaluates_and_undoes(studio):
    _, client = studio
    first = client.predict("demo-SST-2", "all", api_name="/compare_open_run")
    neighbour = first[9]["data"][0]
    entry_id, label = neighbour[-1], neighbour[2]
    other = "negative" if label == "positive" else "positive"
    reach = client.predict("demo-SST-2", entry_id, api_name="/compare_reach")
    retrieving = int(re.search(r"\*\*(\d+) of the 872 test examples\*\*", reach).group(1))
    assert retrieving >= 1  # at least the example shown retrieves it
    started = time.perf_counter()
    text, verdict, _, mixed, neighbours, line = client.predict("demo-SST-2", entry_id, other,
                                                               api_name="/compare_fix")
    changed = re.search(r"Across the 872 test examples, (\d+) predictions? changed: (\d+) fixed, (\d+) broken", line)
    assert int(changed.group(1)) <= retrieving  # an edit moves only the examples that retrieve the entry
    assert int(changed.group(2)) + int(changed.group(3)) == int(changed.group(1))  # two labels: a change fixes or breaks
    round_trip_ms = 1000 * (time.perf_counter() - started)
    assert f"Entry {entry_id} now has the curated label **{other}**" in line and "before → after" in line
    assert 0 < float(line.rsplit("took ", 1)[1].split(" ms")[0]) <= round_trip_ms  # its own time, within the call
    fixed = next(row for row in neighbours["data"] if row[-1] == entry_id)
    assert fixed[2] == other  # the neighbour now shows (and votes with) the fixed label
    result = client.predict("demo-SST-2", api_name="/compare_reevaluate")
    assert "with the edited store" in result and "1 edit(s)" in result
    assert f"fixed {changed.group(2)} and broke {changed.group(3)} predictions" in result  # the one edit's reach
    # reopening the example redoes retrieval through the edited store and says so
    again = client.predict("demo-SST-2", first[4]["value"], api_name="/compare_example")
    assert "redone through the store's 1 edit" in again[1]
    said = client.predict("demo-SST-2", 1, "", *FILTERS, api_name="/store_undo")[-1]
    assert said.startswith("Undid edit #1")
    result = client.predict("demo-SST-2", api_name="/compare_reevaluate")
    assert "+0.0 points" in result and "fixed 0 and broke 0" in result


def test_classroom_tells_the_demo_runs_story(studio):
    _, client = studio
    cards, steps, _, fixed, broke = client.predict("demo-SST-2", api_name="/classroom_open_run")
    assert "of the teacher&#x27;s accuracy kept" in cards or "of the teacher's accuracy kept" in cards
    assert "1 · Soft prompt" in steps and "3 · Retrieval student" in steps
    assert "Retrieval fixed it:" in fixed and "Retrieval broke it:" in broke
    with pytest.raises(AppError, match="There is no run"):
        client.predict("nope", api_name="/classroom_open_run")
