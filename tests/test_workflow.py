"""`run` does step 2 only when asked: `ppo.enabled` (off by default), `run --ppo`, or the Setup switch."""
from __future__ import annotations

import argparse
from types import SimpleNamespace

import pytest

from retrikt import workflow
from retrikt.cli.main import build_config
from retrikt.config import RunConfig, override


@pytest.mark.parametrize("overrides,ppo_runs", [
    ({}, False),  # the default run skips PPO
    ({"ppo.enabled": True}, True),
    ({"ppo.enabled": True, "ppo.updates": 0}, False),
])
def test_run_all_does_step_2_only_when_enabled(monkeypatch, overrides, ppo_runs):
    calls = []
    run = SimpleNamespace(config=None, path="run-folder", update_summary=lambda **kw: calls.append(sorted(kw)))
    monkeypatch.setattr(workflow, "run_generate", lambda config, progress, stop: calls.append("step 1") or run)
    monkeypatch.setattr(workflow, "load_context", lambda config, progress, run: SimpleNamespace(teacher="teacher"))
    monkeypatch.setattr(workflow, "stage_ppo", lambda ctx, progress, stop: calls.append("ppo") or {})
    monkeypatch.setattr(workflow, "run_student", lambda *args, **kw: calls.append("student") or run)
    workflow.run_all(override(RunConfig(task="SST-2"), overrides))
    assert calls == (["step 1", "ppo", ["ppo"], "student"] if ppo_runs else ["step 1", "student"])


@pytest.mark.parametrize("flag,enabled", [(None, False), (True, True), (False, False)])
def test_the_run_commands_ppo_flag_sets_ppo_enabled(flag, enabled):
    args = argparse.Namespace(config=None, preset=None, set=None, task="SST-2", seed=None, workspace=None,
                              run_name=None, teacher=None, ppo=flag)
    assert build_config(args).ppo.enabled is enabled


def test_the_studio_quotes_step_2_and_the_quick_run_from_the_bench_results():
    import json
    import statistics

    from retrikt.studio.measured import RESULTS, ppo_gain, quick_run_cost

    rows = json.loads((RESULTS / "ppo_downstream.json").read_text())
    gains = [r["with_ppo"]["by_beta"]["1.0"] - r["step1"]["by_beta"]["1.0"] for k, r in rows.items()
             if k.startswith("default|")]
    gain = ppo_gain()
    assert gain.seeds == len(gains) and gain.points == pytest.approx(100 * statistics.mean(gains))
    assert f"{gain.points:+.1f} ± {gain.std:.1f} points" in gain.sentence()
    runs = json.loads((RESULTS / "quick_run.json").read_text())["runs"]
    text = quick_run_cost()
    assert all(f"{100 * r['full_test']['student_retrieval']:.1f}%" in text for r in runs)
