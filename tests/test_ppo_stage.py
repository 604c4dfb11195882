import json
import uuid
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from retrikt.cli.main import main
from retrikt.config import GenerationConfig, RunConfig
from retrikt.context import Context, open_store
from retrikt.generate.judge import load_judge
from retrikt.generate.prompt_tuning import ADAPTER_WEIGHTS, init_embeddings, load_soft_prompt
from retrikt.runs import create_run
from retrikt.store.knowledge_store import Entry


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _step1_run(teacher, sst2, workspace):
    """A stand-in for a finished step-1 run: adapter, scorer demos in the summary, two train entries stored."""
    config = RunConfig(
        task="SST-2", workspace=workspace, run_name=f"ppo-stage-{uuid.uuid4().hex[:8]}",
        generation=GenerationConfig(samples_per_label=3, batch_size=3, max_new_tokens=32),
    )
    run = create_run(config)
    demos = [next(e for e in sst2.train if e.label == label).uid for label in sst2.labels]
    run.update_summary(score={"demo_uids": demos, "label_prior": [0.5, 0.5]})
    open_store(Context(run, sst2, teacher)).add([
        Entry(fields=e.fields, label=e.label, source="train", soft_labels={"negative": 0.5, "positive": 0.5},
              text=sst2.serialize(e.fields)) for e in sst2.train[:2]])
    # Two step-1 samples, the second labelled against its plain sentiment: the judge's step-1 arm reads 1 of 2.
    open_store(Context(run, sst2, teacher)).add([
        Entry(fields={"sentence": text}, label=label, source="generated:step1",
              soft_labels={"negative": 0.5, "positive": 0.5}, text=sst2.serialize({"sentence": text}))
        for text, label in (("a wonderful , moving and heartfelt film", "positive"),
                            ("a dull , tedious and lifeless mess", "positive"))])
    step1 = init_embeddings(teacher, sst2.description, 4, torch.Generator().manual_seed(0))
    run.adapter_dir.mkdir()
    save_file({"prompt_embeddings": step1}, str(run.adapter_dir / ADAPTER_WEIGHTS))
    (run.adapter_dir / "adapter_config.json").write_text('{"peft_type": "PROMPT_TUNING", "num_virtual_tokens": 4}')
    return run, step1


@pytest.mark.slow
def test_cli_ppo_tunes_the_prompt_and_stores_rewarded_samples(teacher, sst2, workspace, one_thread, capsys):
    run, step1 = _step1_run(teacher, sst2, workspace)
    sets = ["ppo.updates=2", "ppo.rollout_batch_size=2", "ppo.minibatch_size=2", "ppo.epochs=1",
            "ppo.max_new_tokens=12", "ppo.checkpoint_every=1"]
    argv = ["ppo", "--task", "sst2", "--from", run.name, "--workspace", workspace]
    for item in sets:
        argv += ["--set", item]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "ppo       2/2 [positive] reward" in out and "generate" in out

    updates = [e for e in run.read_log() if e["event"] == "ppo_update"]
    assert [(u["update"], u["key"]) for u in updates] == [(1, "negative"), (2, "positive")]
    assert set(updates[0]["reward_terms"]) == {"label_consistency", "diversity", "validity"}
    summary = run.summary()
    assert summary["ppo_status"] == "done"
    assert summary["ppo"]["updates"] == 2 and summary["ppo"]["generated"] == 6
    # The overrides were used for this stage only: the run's own config is unchanged, PPO's is saved beside it.
    assert "updates: 2" in (run.path / "ppo" / "config.yaml").read_text()
    assert "updates: 24" in (run.path / "config.yaml").read_text()

    # With rollouts this short every reward may be 0 (then PPO rightly leaves the prompt alone; learning is
    # tested on the toy task): check that the saved adapter is the checkpoint's prompt in PEFT's format.
    checkpoint = torch.load(run.path / "ppo" / "checkpoint.pt", weights_only=True)
    assert checkpoint["updates_done"] == 2 and torch.equal(checkpoint["ref_prompt"], step1)
    assert torch.equal(load_soft_prompt(run.path / "ppo" / "adapter"), checkpoint["prompt"])
    assert json.loads((run.path / "ppo" / "adapter" / "adapter_config.json").read_text())["num_virtual_tokens"] == 4

    stored = open_store(Context(run, sst2, teacher)).list(source="generated:ppo")
    assert len(stored) == summary["ppo"]["stored"] >= 1
    # The independent judge (not the reward's teacher) read both arms as stored.
    judge = load_judge(Path(workspace) / "cache")
    assert summary["ppo"]["step1_judge_agreement"] == 0.5
    assert summary["ppo"]["judge_agreement"] == round(judge.agreement([e.fields["sentence"] for e in stored],
                                                                      [e.label for e in stored]), 4)
    assert summary["ppo"]["judge_test_accuracy"] == round(judge.accuracy, 4)
    for entry in stored:
        terms = entry.rewards
        assert set(terms) == {"label_consistency", "diversity", "validity", "total"}
        weighted = terms["label_consistency"] + 0.5 * terms["diversity"] + 0.5 * terms["validity"]
        assert terms["total"] == pytest.approx(weighted)
        assert terms["label_consistency"] == pytest.approx(entry.soft_labels[entry.label])
        assert terms["validity"] == 1.0  # stored samples parsed and are not train copies

    # A second PPO on the same run would mix two generations of PPO samples: refused.
    assert main(argv) == 2
    assert "already holds" in capsys.readouterr().err
    assert run.summary()["ppo_status"] == "done"


def test_cli_ppo_checks_the_run(tmp_path, capsys):
    assert main(["ppo", "--task", "CB", "--from", "nope", "--workspace", str(tmp_path)]) == 2
    assert "no run 'nope'" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("stop_at", ["ppo", "generate"])
def test_cancelled_ppo_leaves_the_store_as_it_was_and_keeps_its_checkpoint(teacher, sst2, workspace, one_thread,
                                                                         stop_at):
    from retrikt.errors import Cancelled
    from retrikt.ppo.stage import run_ppo

    run, _ = _step1_run(teacher, sst2, workspace)
    before = sorted(e.id for e in open_store(Context(run, sst2, teacher)).list())
    overrides = {"ppo.updates": 2, "ppo.rollout_batch_size": 2, "ppo.minibatch_size": 2, "ppo.epochs": 1,
                 "ppo.max_new_tokens": 12, "ppo.checkpoint_every": 1}
    seen = []
    with pytest.raises(Cancelled):
        run_ppo(workspace, run.name, overrides, lambda stage, done, total, info: seen.append(stage),
                should_stop=lambda: stop_at in seen)
    # No half-written batch: the store holds exactly what step 1 left, and the prompt so far is checkpointed.
    assert sorted(e.id for e in open_store(Context(run, sst2, teacher)).list()) == before
    checkpoint = torch.load(run.path / "ppo" / "checkpoint.pt", weights_only=True)
    assert checkpoint["updates_done"] == (1 if stop_at == "ppo" else 2)
    assert run.summary().get("ppo_status") == "cancelled"
