"""Records of the knowledge store: the Entry type, its Chroma metadata form, and JSONL files.

Nothing here talks to Chroma; :mod:`retrikt.store.knowledge_store` does that and re-exports the
public names below.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ..errors import StoreError

SOURCES = ("train", "generated:step1", "generated:ppo", "manual", "unlabeled")


@dataclass
class Entry:
    """One labelled sample in the store."""

    fields: dict[str, str]  # task text fields
    label: str  # intended label (the label the sample was generated for / gold for train)
    source: str  # one of SOURCES
    soft_labels: dict[str, float] | None = None  # teacher's calibrated class probabilities
    teacher_label: str | None = None  # argmax of soft_labels
    agreement: bool | None = None  # teacher_label == label
    gen_settings: dict | None = None  # temperature, top_p, seed, step...
    rewards: dict[str, float] | None = None  # reward terms when available (PPO)
    curated: bool = False
    created: float = field(default_factory=time.time)
    id: str | None = None  # assigned on add (uuid4 hex) if None
    text: str = ""  # serialized text (what is embedded); caller passes task.serialize(fields)



def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_entry(entry: Entry, labels: list[str] | None) -> str | None:
    """Why ``entry`` cannot be stored (one sentence), or None when it is fine."""
    if not isinstance(entry.fields, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in entry.fields.items()
    ):
        return "'fields' must map field names to strings"
    if not isinstance(entry.text, str) or not entry.text.strip():
        return "'text' is empty: pass the serialized fields (task.serialize(fields))"
    if not isinstance(entry.label, str) or not entry.label:
        return "'label' must be a non-empty string"
    if labels and entry.label not in labels:
        return f"label {entry.label!r} is not one of the task labels {labels}"
    if entry.source not in SOURCES:
        return f"source {entry.source!r} is not one of {list(SOURCES)}"
    for name, terms in (("soft_labels", entry.soft_labels), ("rewards", entry.rewards)):
        if terms is not None and not (
            isinstance(terms, dict) and terms and all(isinstance(k, str) and _number(v) for k, v in terms.items())
        ):
            return f"'{name}' must map names to finite numbers"
    if entry.soft_labels is not None and labels:
        unknown = sorted(set(entry.soft_labels) - set(labels))
        if unknown:
            return f"soft_labels has labels {unknown} that are not task labels {labels}"
    if entry.teacher_label is not None and not isinstance(entry.teacher_label, str):
        return "'teacher_label' must be a string"
    if entry.agreement is not None and not isinstance(entry.agreement, bool):
        return "'agreement' must be true, false or null"
    if entry.gen_settings is not None and not isinstance(entry.gen_settings, dict):
        return "'gen_settings' must be an object"
    if not isinstance(entry.curated, bool):
        return "'curated' must be true or false"
    if not _number(entry.created):
        return "'created' must be a timestamp"
    if entry.id is not None and (not isinstance(entry.id, str) or not entry.id):
        return "'id' must be a non-empty string"
    return None


def complete(entry: Entry) -> Entry:
    """Copy of ``entry`` with teacher_label and agreement derived where possible."""
    teacher = entry.teacher_label
    if teacher is None and entry.soft_labels:
        teacher = max(entry.soft_labels, key=entry.soft_labels.get)
    # agreement is defined by the two labels, so it is recomputed rather than trusted.
    agreement = (teacher == entry.label) if teacher is not None else entry.agreement
    return Entry(**{**entry.__dict__, "teacher_label": teacher, "agreement": agreement})


def reward_total(rewards: dict[str, float]) -> float:
    """The filterable reward of an entry: an explicit "total" term, else the sum of the terms."""
    if "total" in rewards:
        return float(rewards["total"])
    return float(sum(rewards.values()))


def to_metadata(entry: Entry) -> dict:
    """Chroma metadata for ``entry``: flat filterable scalars plus JSON strings."""
    # None is not a valid Chroma metadata value, so absent parts are left out.
    meta: dict = {
        "label": entry.label,
        "source": entry.source,
        "curated": bool(entry.curated),
        "created": float(entry.created),
        "fields_json": json.dumps(entry.fields, ensure_ascii=False, sort_keys=True),
    }
    if entry.soft_labels is not None:
        meta["soft_labels_json"] = json.dumps(entry.soft_labels, sort_keys=True)
        meta["teacher_conf"] = float(max(entry.soft_labels.values()))
    if entry.teacher_label is not None:
        meta["teacher_label"] = entry.teacher_label
    if entry.agreement is not None:
        meta["agreement"] = bool(entry.agreement)
    if entry.gen_settings is not None:
        meta["gen_settings_json"] = json.dumps(entry.gen_settings, ensure_ascii=False, sort_keys=True, default=str)
    if entry.rewards is not None:
        meta["rewards_json"] = json.dumps(entry.rewards, sort_keys=True)
        meta["reward_total"] = reward_total(entry.rewards)
    return meta


def from_record(id_: str, document: str | None, meta: dict | None) -> Entry:
    """Rebuild an Entry from a Chroma record."""
    meta = meta or {}

    def load(key: str):
        raw = meta.get(key)
        return json.loads(raw) if isinstance(raw, str) else None

    return Entry(
        fields=load("fields_json") or {},
        label=meta.get("label", ""),
        source=meta.get("source", ""),
        soft_labels=load("soft_labels_json"),
        teacher_label=meta.get("teacher_label"),
        agreement=meta.get("agreement"),
        gen_settings=load("gen_settings_json"),
        rewards=load("rewards_json"),
        curated=bool(meta.get("curated", False)),
        created=float(meta.get("created", 0.0)),
        id=id_,
        text=document or "",
    )


# ---------------------------------------------------------------- JSONL

_ENTRY_KEYS = set(Entry.__dataclass_fields__)
_EXTRA_KEYS = {"embedder", "embedding"}
_REQUIRED = ("fields", "label", "source", "text")


def to_json(entry: Entry, embedding=None, embedder: str | None = None) -> dict:
    """One JSONL line (as a dict) for ``entry``, with its vector when given."""
    line = dict(entry.__dict__)
    if embedding is not None:
        line["embedder"] = embedder
        line["embedding"] = [float(x) for x in embedding]
    return line


def write_jsonl(path: str | Path, lines: list[dict]) -> int:
    """Write ``lines`` to ``path`` atomically (a crash never leaves half a file)."""
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            for line in lines:
                fh.write(json.dumps(line, ensure_ascii=False) + "\n")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return len(lines)


@dataclass
class ImportedLine:
    """A validated JSONL line: the entry, its stored vector (if usable) and its line number."""

    lineno: int
    entry: Entry
    embedding: list[float] | None


def read_jsonl(path: str | Path, labels: list[str] | None, embedder: str, dim: int) -> list[ImportedLine]:
    """Parse and validate an exported file; the first bad line raises StoreError naming it.

    A stored vector is only kept when it came from the same embedder (``embedder``)
    and has ``dim`` numbers; other lines are re-embedded by the caller.
    """
    source = Path(path).expanduser()
    if not source.is_file():
        raise StoreError(f"No file at {source}: give the path of an exported .jsonl file.")
    out: list[ImportedLine] = []
    seen: dict[str, int] = {}
    with source.open(encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue

            def bad(problem: str) -> StoreError:
                return StoreError(f"{source.name} line {lineno}: {problem}; fix or remove the line, nothing was imported.")

            try:
                data = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise bad(f"not valid JSON ({exc.msg})") from exc
            if not isinstance(data, dict):
                raise bad("expected a JSON object")
            unknown = sorted(set(data) - _ENTRY_KEYS - _EXTRA_KEYS)
            if unknown:
                raise bad(f"unknown keys {unknown}")
            missing = [k for k in _REQUIRED if k not in data]
            if missing:
                raise bad(f"missing keys {missing}")
            entry = Entry(**{k: v for k, v in data.items() if k in _ENTRY_KEYS})
            problem = check_entry(entry, labels)
            if problem:
                raise bad(problem)
            if entry.id is not None:
                if entry.id in seen:
                    raise bad(f"id {entry.id!r} repeats line {seen[entry.id]}")
                seen[entry.id] = lineno
            vector = data.get("embedding")
            if vector is not None and not (isinstance(vector, list) and all(_number(x) for x in vector)):
                raise bad("'embedding' must be a list of numbers")
            usable = vector is not None and data.get("embedder") == embedder and len(vector) == dim
            out.append(ImportedLine(lineno, entry, vector if usable else None))
    return out


def line_vectors(lines: list[ImportedLine], dim: int, encode) -> np.ndarray:
    """The imported lines' vectors: the stored one where usable, else `encode`d from the entry's text."""
    vectors = np.zeros((len(lines), dim), dtype=np.float32)
    fresh = [n for n, line in enumerate(lines) if line.embedding is None]
    for n, line in enumerate(lines):
        if line.embedding is not None:
            vectors[n] = line.embedding
    if fresh:
        vectors[fresh] = encode([lines[n].entry.text for n in fresh])
    return vectors
