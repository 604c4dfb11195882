"""Short load test (the long one is bench/load.py): 20 concurrent visitors browse Compare and the store while a
step-1 job runs on the same 2-core machine. Loopback only; it stops by itself."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from load import run_load, start_job  # noqa: E402


SESSIONS, ROUNDS, P95_GOAL_S = 20, 2, 2.0
THINK_S = 3.0  # a visitor reads the page for about 3 s before the next click
RAMP_S = 10.0  # visitors arrive one every half second, not all in the same instant


def test_twenty_visitors_while_a_job_runs(workspace_studio):
    follower = start_job(workspace_studio)
    try:
        result = run_load(workspace_studio, SESSIONS, ROUNDS, think=THINK_S, ramp=RAMP_S)
        during = follower.predict(api_name="/generate_poll")[0]
    finally:
        follower.predict(api_name="/generate_cancel")
    print(result)
    assert not result["errors"], result["errors"][:5]
    assert result["actions"] == SESSIONS * ROUNDS * 6
    assert "running" in during  # the job really ran under the load
    assert result["p95_s"] < P95_GOAL_S, result
