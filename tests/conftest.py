"""Shared fixtures: the packaged teacher (converted once per session) and tiny random teachers built from config."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def workspace(tmp_path_factory):
    """A session workspace; RETRIKT_TEST_WORKSPACE reuses one (and its converted teacher) across sessions."""
    return os.environ.get("RETRIKT_TEST_WORKSPACE") or str(tmp_path_factory.mktemp("workspace"))


@pytest.fixture(scope="session")
def model_cache(workspace):
    """Cache folder for the GGUF -> safetensors conversion (the pipeline uses `<workspace>/cache` too)."""
    return os.path.join(workspace, "cache")


@pytest.fixture(scope="session")
def teacher(model_cache):
    from retrikt.teacher.load import load_teacher

    return load_teacher(cache_dir=model_cache)


@pytest.fixture(scope="session")
def sst2():
    from retrikt.tasks import load_builtin

    return load_builtin("SST-2", seed=13)


@pytest.fixture
def tiny_teacher(teacher):
    """A 2-layer random Llama that shares the packaged teacher's tokenizer (so prompts tokenize for real)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from retrikt.teacher.load import Teacher

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(teacher.tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        initializer_range=0.5,  # default 0.02 makes a random model deaf to its prompt; prompt tuning could not move it
    )
    model = LlamaForCausalLM(config).eval()
    model.requires_grad_(False)
    return Teacher(model, teacher.tokenizer, "tiny-llama", torch.device("cpu"), torch.float32, 0.0)


def _copy_demo_run(template: Path, workspace: Path) -> None:
    """Give `workspace` the installed demo run of `template`, pointed at `workspace` (its config names the cache)."""
    import shutil

    from retrikt.config import load_yaml, save_yaml
    from retrikt.studio.demo import DEMO_RUN

    target = Path(workspace) / "runs" / DEMO_RUN
    shutil.copytree(template / "runs" / DEMO_RUN, target)
    config = load_yaml(target / "config.yaml")
    config.workspace = str(workspace)
    save_yaml(config, target / "config.yaml")
    os.utime(target / "config.yaml", (0, 0))  # as install_demo leaves it: listed after the user's own runs


@pytest.fixture(scope="session")
def start_studio(tmp_path_factory):
    """Start a real `python app.py` on a workspace: `url, stop = start_studio(workspace)`; leftovers stop at the end.

    A workspace without the demo run gets a copy of one installed once per session, so each studio start does not
    rebuild it (~6 s); `install_demo` itself is tested in test_compare."""
    running, template = [], []

    def start(workspace, env: dict | None = None) -> tuple[str, object]:
        from retrikt.studio.demo import DEMO_ASSET, DEMO_RUN, install_demo

        if (DEMO_ASSET / "config.yaml").is_file() and not (Path(workspace) / "runs" / DEMO_RUN).exists():
            if not template:
                template.append(tmp_path_factory.mktemp("demo-template"))
                install_demo(template[0])
            _copy_demo_run(template[0], Path(workspace))
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        # A file, not a pipe: nobody reads the server's output while it runs, and a full pipe would block it.
        output = tempfile.TemporaryFile("w+")
        proc = subprocess.Popen([sys.executable, "app.py", "--workspace", str(workspace), "--port", str(port)],
                                cwd=Path(__file__).resolve().parents[1], env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
                                stdout=output, stderr=subprocess.STDOUT, text=True)
        running.append(proc)
        url, deadline = f"http://127.0.0.1:{port}/", time.time() + 180
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if proc.poll() is not None:
                    output.seek(0)
                    raise RuntimeError(output.read()[-3000:])
                if time.time() > deadline:
                    proc.kill()
                    raise TimeoutError("the studio did not start within 180 s")
                time.sleep(1)

        def stop(kill: bool = False) -> None:
            """Stop the server; `kill=True` is a SIGKILL (no clean-up), as when a host dies."""
            if proc.poll() is None:
                proc.kill() if kill else proc.terminate()
                proc.wait(timeout=30)

        return url, stop

    yield start
    for proc in running:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


@pytest.fixture(scope="session")
def workspace_studio(workspace, teacher, start_studio):
    """One studio on the session workspace, shared by the tests that do not stop it (each start costs ~10 s).

    `teacher` has converted the packaged GGUF into `<workspace>/cache`, so its jobs load the teacher in a second.
    Tests that share it leave no job running: each cancels or finishes what it started."""
    url, stop = start_studio(workspace)
    yield url
    stop()


# `make test-fast` deselects by marker, so a test that reaches a served studio or a Chroma server through these
# fixtures but lacks the mark would slip into the fast loop and slow it by minutes.
_SERVER_FIXTURES = {"start_studio", "workspace_studio", "chroma_server"}


def pytest_collection_modifyitems(config, items):
    unmarked = [item.nodeid for item in items
                if _SERVER_FIXTURES & set(getattr(item, "fixturenames", ())) and not item.get_closest_marker("server")]
    if unmarked:
        raise pytest.UsageError("mark these tests `server` (they start a server): " + ", ".join(unmarked))
