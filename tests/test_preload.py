"""transformers' lazy imports race between threads; the studio imports the stack before its job thread starts."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

RACE = """
import sys, threading
if sys.argv[1] == "preload":
    from retrikt.jobs import preload_ml_stack
    preload_ml_stack()
errors = []
def load(name):
    try:
        exec(f"from transformers import {name}")
    except ImportError as error:
        errors.append(str(error))
threads = [threading.Thread(target=load, args=(n,)) for n in ("AutoModelForCausalLM", "AutoTokenizer", "AutoModel") * 2]
[t.start() for t in threads]
[t.join() for t in threads]
print(len(errors))
"""


def _errors(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", RACE, mode], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


@pytest.mark.slow
def test_preloading_stops_the_threaded_import_race():
    assert _errors("preload") == 0
    # Without the preload the race shows up (the reason the preload exists) on nearly every try.
    assert any(_errors("race") > 0 for _ in range(3))  # stops at the first try that shows it


def test_the_studio_preloads_before_building_pages():
    source = (ROOT / "app.py").read_text(encoding="utf-8")
    assert source.index("preload_ml_stack()") < source.index("JobManager(workspace)")
