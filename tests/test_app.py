"""The studio served by a real `python app.py` process, driven with gradio_client."""
import json
import shutil
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.server


def _wait_for(client, predicate, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = client.predict(api_name="/generate_poll")[0]
        if predicate(status):
            return status
        time.sleep(1)
    raise AssertionError(f"timed out; last status: {status}")


def test_start_see_progress_cancel_and_start_again(workspace_studio):
    from gradio_client import Client

    client = Client(workspace_studio, verbose=False)
    client.predict("SST-2", 4, 200, 0.9, 0.95, api_name="/generate_start")
    running = _wait_for(client, lambda s: "running" in s and ("`tune`" in s or "`score`" in s))
    assert "Step 1 on SST-2" in running
    client.predict(api_name="/generate_cancel")
    cancelled = _wait_for(client, lambda s: "cancelled" in s, timeout=120)
    assert "cancelled" in cancelled
    client.predict("SST-2", 4, 200, 0.9, 0.95, api_name="/generate_start")
    _wait_for(client, lambda s: "running" in s)
    client.predict(api_name="/generate_cancel")
    _wait_for(client, lambda s: "cancelled" in s, timeout=120)


def test_student_tab_trains_evaluates_and_cancels(workspace, teacher, workspace_studio):
    from gradio_client import Client

    from test_store_view import finished_summary, seed_run

    name = "student-ui"
    folder = Path(workspace) / "runs" / name
    shutil.rmtree(folder, ignore_errors=True)  # a workspace reused across sessions may hold it already
    seed_run(workspace, name)
    (folder / "summary.json").write_text(json.dumps(finished_summary(teacher.n_params)), encoding="utf-8")
    try:
        client = Client(workspace_studio, verbose=False)
        assert client.predict(name, api_name="/student_runs")["value"] == name
        # run, epochs, k, beta, check beta on dev, store filter, init, test examples
        form = [name, 1, 4, 0.5, False, "none", "random", 16]
        client.predict(*form, api_name="/student_start")
        deadline = time.time() + 300
        while "— done" not in (status := client.predict(name, api_name="/student_poll")):
            assert "failed" not in status and time.time() < deadline, status
            time.sleep(1)
        text, table, _, _ = client.predict(name, api_name="/student_results")
        assert "16 of 872 test examples" in text
        rows = {row[0]: row for row in table["data"]}
        assert set(rows) == {"majority class", "teacher (few-shot, calibrated)", "student alone",
                             "student + retrieval", "plain KD (no retrieval)", "student, gold only (no teacher)"}
        assert "What the teacher adds:" in text
        assert float(rows["student alone"][4].rstrip("%")) <= 1.0
        assert client.predict(None, api_name="/compare_runs")["value"] == name  # the newest evaluated run first
        client.predict(*form[:-1], 0, api_name="/student_start")
        client.predict(api_name="/student_cancel")
        deadline = time.time() + 180
        while "— cancelled" not in (status := client.predict(name, api_name="/student_poll")):
            assert time.time() < deadline, status
            time.sleep(1)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_setup_checks_the_teacher_on_a_task_before_any_run(workspace_studio):
    from gradio_client import Client

    from retrikt.config import RunConfig
    from retrikt.studio.setup_form import form_values

    client = Client(workspace_studio, verbose=False)
    form = form_values(RunConfig())
    shown = client.predict("packaged", "", "", "Built-in or saved task", "SST-2", *form, api_name="/setup_check")
    verdict = shown.split("**")[1]
    assert verdict.startswith("The teacher ") and "on 32 dev rows, 90% CI" in verdict
    assert "`negative` → “negative”, `positive` → “positive”" in shown and "“Sentiment:”" in shown
    assert "Checked in" in shown
