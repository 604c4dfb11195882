"""The studio served by a real `python app.py` process, driven with gradio_client."""
import time

import pytest


@pytest.fixture
def app_url(workspace, teacher, start_studio):
    # `teacher` has converted the packaged GGUF into `<workspace>/cache`, so jobs load it in about a second.
    url, stop = start_studio(workspace)
    yield url
    stop()


def _wait_for(client, predicate, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = client.predict(api_name="/generate_poll")[0]
        if predicate(status):
            return status
        time.sleep(1)
    raise AssertionError(f"timed out; last status: {status}")


def test_start_see_progress_cancel_and_start_again(app_url):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    client.predict("SST-2", 4, 200, 0.9, 0.95, api_name="/generate_start")
    running = _wait_for(client, lambda s: "running" in s and ("`tune`" in s or "`score`" in s))
    assert "Step 1 on SST-2" in running
    started = time.time()
    client.predict(api_name="/generate_cancel")
    cancelled = _wait_for(client, lambda s: "cancelled" in s, timeout=120)
    assert "cancelled" in cancelled
    assert time.time() - started < 120
    client.predict("SST-2", 4, 200, 0.9, 0.95, api_name="/generate_start")
    _wait_for(client, lambda s: "running" in s)
    client.predict(api_name="/generate_cancel")
    _wait_for(client, lambda s: "cancelled" in s, timeout=120)
