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
