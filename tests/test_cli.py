import json
import subprocess
import sys
import uuid

import pytest

from retrikt.config import load_yaml


def _run(args, **kw):
    return subprocess.run([sys.executable, "-m", "retrikt", *args], capture_output=True, text=True, timeout=900, **kw)


def test_generate_end_to_end_fills_the_store(workspace, teacher):
    # `teacher` makes sure the GGUF conversion is already cached in the workspace.
    name = f"cli-{uuid.uuid4().hex[:6]}"
    proc = _run(["generate", "--task", "SST-2", "--workspace", workspace, "--run-name", name,
                 "--set", "prompt_tuning.steps=2", "--set", "prompt_tuning.batch_size=2",
                 "--set", "generation.samples_per_label=4", "--set", "generation.batch_size=4",
                 "--set", "generation.max_new_tokens=32",
                 "--set", "scorer.demo_candidates=1", "--set", "scorer.calibration_inputs=8"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "generate" in proc.stdout and "run folder" in proc.stdout
    from retrikt.runs import open_run

    run = open_run(workspace, name)
    summary = run.summary()
    assert summary["status"] == "done" and summary["train_entries"] == 32
    gen = summary["generate"]
    assert gen["generated"] == 8 and 0 <= gen["parse_rate"] <= 1 and gen["stored"] <= gen["parsed"]
    assert (run.adapter_dir / "adapter_model.safetensors").is_file()
    assert load_yaml(run.path / "config.yaml").generation.samples_per_label == 4
    events = [json.loads(line)["event"] for line in (run.path / "log.jsonl").read_text().splitlines()]
    assert events.count("tune_step") == 2 and "generate_batch" in events and events[-1] == "done"

    from retrikt.context import Context, open_store
    from retrikt.tasks import load_builtin

    store = open_store(Context(run, load_builtin("SST-2"), teacher=None))
    assert store.count() == 32 + gen["stored"]
    assert store.count({"source": "train"}) == 32
    generated = store.list(source="generated:step1")
    assert all(e.soft_labels and abs(sum(e.soft_labels.values()) - 1) < 1e-4 for e in generated)
    # Replaying the saved config headless refuses to overwrite the finished run.
    again = _run(["generate", "--config", str(run.path / "config.yaml")])
    assert again.returncode == 2 and "already exists" in again.stderr


@pytest.mark.parametrize("args,message", [
    (["generate", "--task", "NOPE", "--run-name", "x1"], "unknown task"),
    (["generate", "--set", "generation.temperature=99"], "out of range"),
    (["generate", "--set", "nonsense"], "key=value"),
    (["generate", "--run-name", "../escape"], "run name"),
])
def test_cli_errors_are_one_clear_line(args, message, tmp_path):
    proc = _run([*args, "--workspace", str(tmp_path)])
    assert proc.returncode == 2
    assert message in proc.stderr.lower() and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
