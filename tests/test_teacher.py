import os
import time
from pathlib import Path

import pytest
import torch

from retrikt.config import TeacherConfig
from retrikt.teacher.load import TeacherLoadError, load_teacher, pick_device_dtype, resolve_source


def test_packaged_teacher_loads_from_its_cache_without_converting_again(teacher, model_cache, monkeypatch):
    assert 130e6 < teacher.n_params < 140e6  # SmolLM2-135M
    assert not any(p.requires_grad for p in teacher.model.parameters())

    def convert_again(*args):
        raise AssertionError("the cached conversion was not reused")

    monkeypatch.setattr("retrikt.teacher.load._convert_gguf", convert_again)
    again = load_teacher(cache_dir=model_cache)
    ids = torch.tensor([teacher.encode("The movie was")])
    assert torch.equal(teacher.model(ids).logits, again.model(ids).logits)


def test_packaged_teacher_greedy_text_is_sensible(teacher):
    ids = torch.tensor([teacher.encode("The capital of France is")])
    out = teacher.model.generate(ids, max_new_tokens=3, do_sample=False)
    assert "Paris" in teacher.tokenizer.decode(out[0, ids.shape[1]:])


@pytest.mark.parametrize(
    "device,dtype,expected",
    [("cpu", "auto", ("cpu", torch.float32)), ("cpu", "bfloat16", ("cpu", torch.bfloat16)),
     ("cpu", "float16", ("cpu", torch.float16))],
)
def test_pick_device_dtype(device, dtype, expected):
    dev, dt = pick_device_dtype(device, dtype)
    assert (dev.type, dt) == expected


def test_auto_device_follows_cuda_availability():
    dev, dt = pick_device_dtype("auto", "auto")
    if torch.cuda.is_available():
        assert dev.type == "cuda" and dt in (torch.bfloat16, torch.float16)
    else:
        assert (dev.type, dt) == ("cpu", torch.float32)


def test_bad_dtype_and_missing_gpu_are_clear():
    with pytest.raises(TeacherLoadError, match="dtype"):
        pick_device_dtype("cpu", "float8")
    if not torch.cuda.is_available():
        with pytest.raises(TeacherLoadError, match="no CUDA GPU"):
            pick_device_dtype("cuda", "auto")


def test_text_file_named_gguf_is_refused(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_text("not a model")
    with pytest.raises(TeacherLoadError, match="not a GGUF file"):
        resolve_source(str(fake), None, tmp_path / "cache")


def test_truncated_gguf_is_refused(tmp_path):
    from retrikt.teacher.load import packaged_gguf

    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(packaged_gguf("smollm2").read_bytes()[:200_000])
    with pytest.raises(TeacherLoadError, match="cannot read GGUF"):
        resolve_source(str(truncated), None, tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("teachers/*/config.json"))


def test_folder_without_config_and_unknown_packaged(tmp_path):
    with pytest.raises(TeacherLoadError, match="config.json"):
        resolve_source(str(tmp_path), None, tmp_path / "cache")
    with pytest.raises(TeacherLoadError, match="unknown packaged"):
        resolve_source("packaged:nope", None, tmp_path / "cache")


def test_unknown_hub_id_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TeacherLoadError, match="could not be fetched"):
        load_teacher(TeacherConfig(model="no-such-org/no-such-model-xyz"), cache_dir=tmp_path)


@pytest.mark.parametrize("fallback", [True, False])
def test_missing_packaged_model_falls_back_to_its_hub_id(tmp_path, monkeypatch, fallback):
    import retrikt.teacher.load as teacher_module

    monkeypatch.setattr(teacher_module, "packaged_gguf", lambda name: None)
    if fallback:
        assert resolve_source("packaged:smollm2", None, tmp_path, hub_fallback=True) == (
            "HuggingFaceTB/SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct")
    else:
        with pytest.raises(TeacherLoadError, match="not installed.*HuggingFaceTB/SmolLM2-135M-Instruct"):
            resolve_source("packaged:smollm2", None, tmp_path, hub_fallback=False)


def test_fallback_offline_names_the_hub_id(tmp_path, monkeypatch):
    import retrikt.teacher.load as teacher_module
    from retrikt.config import TeacherConfig

    monkeypatch.setattr(teacher_module, "packaged_gguf", lambda name: None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TeacherLoadError, match="not installed here, and its hub id `HuggingFaceTB/SmolLM2-135M"):
        load_teacher(TeacherConfig(), cache_dir=tmp_path)


def test_two_conversions_at_once_both_succeed(tmp_path, monkeypatch):
    """A second process converting the same GGUF while the first is still writing must not break either."""
    import transformers
    from transformers import LlamaConfig, LlamaForCausalLM

    import retrikt.teacher.load as teacher_module

    target = tmp_path / "cache" / "teachers" / "tiny"
    tiny = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=2)
    nested = []
    killed = target.parent / "tiny.tmp-killed"  # a conversion killed long ago: its 0.5 GB must not stay forever
    killed.mkdir(parents=True)
    os.utime(killed, (time.time() - 2 * 3600,) * 2)

    class Tokenizer:
        def save_pretrained(self, folder):
            if not nested:  # the other process runs its whole conversion while ours is half written
                nested.append(True)
                teacher_module._convert_gguf(tmp_path, "m.gguf", target)
                assert (target / "config.json").is_file()
            (Path(folder) / "tokenizer.json").write_text("{}")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: Tokenizer())
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", lambda *a, **k: LlamaForCausalLM(tiny))
    teacher_module._convert_gguf(tmp_path, "m.gguf", target)
    assert nested and sorted(p.name for p in target.parent.iterdir()) == ["tiny"]
    assert LlamaForCausalLM.from_pretrained(target).config.hidden_size == 16
