"""The studio served by a real `python app.py` process, driven with gradio_client."""
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def app_url(workspace, teacher):
    # `teacher` has converted the packaged GGUF into `<workspace>/cache`, so jobs load it in about a second.
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "app.py", "--workspace", workspace, "--port", str(port)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(proc.stdout.read()[-3000:])
            time.sleep(1)
    else:
        proc.kill()
        raise TimeoutError("app did not start")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


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
