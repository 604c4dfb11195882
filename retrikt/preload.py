"""Import the ML stack once, in the main thread, before any job thread starts.

transformers resolves `from transformers import AutoModelForCausalLM` through a lazy module whose first attribute
lookup is not thread-safe: a job thread importing it while another thread is half-way through the same lazy import
has failed with "cannot import name 'AutoModelForCausalLM'". Servers call `preload_ml_stack()` at start-up.
"""
from __future__ import annotations

import time


def preload_ml_stack() -> float:
    """Import transformers (the classes we use), peft and sentence-transformers; returns the seconds it took."""
    started = time.perf_counter()
    import peft  # noqa: F401
    import sentence_transformers  # noqa: F401
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer  # noqa: F401

    return time.perf_counter() - started


def job_threads(environ=None) -> int:
    """Torch threads for the studio's background jobs: every core but one, so page actions keep a core.

    design choice: on 2 cores a job with 2 torch threads pushed store-tab actions past 1 s; `RETRIKT_JOB_THREADS`
    overrides it (the CLI is not affected and uses every core)."""
    import os

    env = os.environ if environ is None else environ
    if env.get("RETRIKT_JOB_THREADS", "").strip():
        return max(1, int(env["RETRIKT_JOB_THREADS"]))
    return max(1, (os.cpu_count() or 1) - 1)
