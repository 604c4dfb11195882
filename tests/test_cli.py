import json
import subprocess
import sys
import uuid

import pytest

from retrikt.config import load_yaml


def _run(args, **kw):
    return subprocess.run([sys.executable, "-m", "retrikt", *args], capture_output=True, text=True, timeout=900, **kw)


@pytest.mark.slow
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
    check = summary["check"]  # step 1 runs the teacher check with the scorer it fitted
    assert check["rows"] == 32 and check["ci_low"] <= check["accuracy"] <= check["ci_high"]
    assert check["query"] == summary["score"]["query"] == "Sentiment:" and check["verdict"].startswith("The teacher ")
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
    (["check", "--task", "NOPE"], "unknown task"),
])
def test_cli_errors_are_one_clear_line(args, message, tmp_path):
    proc = _run([*args, "--workspace", str(tmp_path)])
    assert proc.returncode == 2
    assert message in proc.stderr.lower() and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def _topic_csv(path):
    rows = ["text,topic"]
    for n in range(40):
        rows.append(f"a new chip makes phones {n} times faster,Sci/Tech")
        rows.append(f"leaders of {n} countries met for peace talks,World")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.mark.slow
def test_import_with_answers_then_check_the_teacher_on_the_task(workspace, teacher, tmp_path):
    data = _topic_csv(tmp_path / "topics.csv")
    name = f"topics-{uuid.uuid4().hex[:6]}"
    imported = _run(["task", "import", str(data), "--name", name, "--text", "text", "--label", "topic",
                     "--answers", "World=world news", "--query", "Subject:", "--workspace", workspace])
    assert imported.returncode == 0, imported.stderr[-2000:]
    assert "“sci/tech”" in imported.stdout and "“world news”" in imported.stdout  # what the teacher will read
    assert f"retrikt check --task {name}" in imported.stdout
    proc = _run(["check", "--task", name, "--workspace", workspace, "--set", "scorer.demo_candidates=1",
                 "--set", "scorer.calibration_inputs=8"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout[: proc.stdout.rindex("}") + 1])
    assert report["answers"] == {"Sci/Tech": "sci/tech", "World": "world news"}  # two tokens or more each
    assert report["candidate_queries"] == ["Subject:", "Topic:", "Label:",  # the user's line first
                                           "Which label fits: sci/tech, world news? Answer:"]
    assert report["query"] in report["candidate_queries"] and report["rows"] == 32
    assert 0 <= report["ci_low"] <= report["accuracy"] <= report["ci_high"] <= 1
    assert report["bar"] == max(0.5, report["majority_share"]) and report["chance"] == 0.5
    assert report["knows"] == (report["ci_low"] > report["bar"])
    assert proc.stdout.strip().splitlines()[-1] == report["verdict"]


@pytest.mark.parametrize("answers,message", [
    (["Nope=x"], "unknown label"),
    (["World="], "empty"),
    (["World"], "label=text"),
    (["World=sci/tech"], "same answer text"),
])
def test_import_answers_errors_are_one_clear_line(answers, message, tmp_path):
    data = _topic_csv(tmp_path / "topics.csv")
    proc = _run(["task", "import", str(data), "--name", "topics", "--text", "text", "--label", "topic",
                 "--answers", *answers, "--workspace", str(tmp_path)])
    assert proc.returncode == 2
    assert message in proc.stderr.lower() and "Traceback" not in proc.stderr
