"""Short load test (the long one is bench/load.py): 20 concurrent visitors browse Compare and the store while a
step-1 job runs on the same 2-core machine. Loopback only; it stops by itself."""
from __future__ import annotations

import pytest

from bench.load import run_load, start_job

pytestmark = pytest.mark.server


SESSIONS, ROUNDS = 20, 2
THINK_S = 3.0  # a visitor reads the page for about 3 s before the next click
RAMP_S = 10.0  # visitors arrive one every half second, not all in the same instant
# 20 visitors and a tuning job share 2 cores: each action may wait for others, but the slowest 5% of actions must
# stay within this many times the slowest action of one visitor alone, measured first in the same test (a slow
# machine slows both; a queue that starves some visitors, or a job that holds the page handlers, does not pass).
P95_RATIO_GOAL = 8.0


def test_twenty_visitors_while_a_job_runs(workspace_studio):
    alone = run_load(workspace_studio, 1, ROUNDS, think=0.2, ramp=0)
    follower = start_job(workspace_studio)
    try:
        result = run_load(workspace_studio, SESSIONS, ROUNDS, think=THINK_S, ramp=RAMP_S)
        during = follower.predict(api_name="/generate_poll")[0]
    finally:
        follower.predict(api_name="/generate_cancel")
    print("alone:", alone)
    print("loaded:", result)
    assert not alone["errors"] and not result["errors"], (alone["errors"] + result["errors"])[:5]
    assert result["actions"] == SESSIONS * ROUNDS * 6
    assert "running" in during  # the job really ran under the load
    assert result["p95_s"] <= P95_RATIO_GOAL * alone["max_s"], (result, alone)
