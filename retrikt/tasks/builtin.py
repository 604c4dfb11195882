"""The built-in tasks: their templates and verbalizers, and loading their packaged data.

Packaged files live in `retrikt/data/<TASK>/` as JSONL, one `{"uid", "fields", "label"}` object per line
(`label` is null in `unlabeled.jsonl`); `bench/prepare_data.py` rebuilds them from the public sources.
- FewGLUE tasks (CB, RTE, COPA, BoolQ, WiC): `train.jsonl` (the 32 FewGLUE examples), `dev.jsonl` (the
  32 FewGLUE_32dev examples), `test.jsonl` (the full official validation set).
- GLUE tasks (SST-2, MRPC): LM-BFF k-shot splits, 16 per class, `train-<seed>.jsonl` / `dev-<seed>.jsonl`
  for each seed in KSHOT_SEEDS, sampled from the GLUE train file; `test.jsonl` is the full GLUE dev set.
- `unlabeled.jsonl`: in-domain inputs without labels. GLUE tasks: up to 5000 GLUE train inputs that are
  in no k-shot split of any seed nor in test. FewGLUE tasks: only the 64 train+dev inputs (labels
  dropped) - a small pool, because FewGLUE ships no unlabeled data beyond them.
- `unlabeled-sentences.jsonl` (SST-2): every whole GLUE train sentence (a parse-tree root, the kind of input the
  test split holds) in no k-shot split nor in test; the teacher labels inputs from it for the student
  (`teacher_pool`). `bench/prepare_unlabeled_sentences.py` rebuilds it.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import resources

from .base import Example, Task, TaskDataError

BUILTIN_TASKS: tuple[str, ...] = ("SST-2", "CB", "RTE", "COPA", "BoolQ", "WiC", "MRPC")
KSHOT_SEEDS: tuple[int, ...] = (13, 21, 42, 87, 100)
"""The LM-BFF k-shot seeds packaged for the GLUE tasks."""


@dataclass(frozen=True)
class _Spec:
    text_fields: tuple[str, ...]
    labels: tuple[str, ...]
    verbalizers: dict[str, str]
    field_names: dict[str, str]
    description: str
    query: str
    kshot: bool = False
    field_choices: dict[str, tuple[str, ...]] = field(default_factory=dict)


_NLI_HEADERS = {"premise": "Premise", "hypothesis": "Hypothesis"}

# Label order follows the dataset's own integer ids (GLUE/SuperGLUE), so label_index matches them.
_SPECS: dict[str, _Spec] = {
    "SST-2": _Spec(
        text_fields=("sentence",),
        labels=("negative", "positive"),
        # design choice: "Sentiment: negative/positive" — with SmolLM2-135M 4-shot + calibration it scored 77% on
        # 200 test reviews vs 60% for LM-BFF's "It was great/terrible" and 70% for a question-style query.
        verbalizers={"negative": "negative", "positive": "positive"},
        field_names={"sentence": "Review"},
        description="Movie review sentiment: the label says whether the review is positive or negative",
        query="Sentiment:",
        kshot=True,
    ),
    "CB": _Spec(
        text_fields=("premise", "hypothesis"),
        labels=("entailment", "contradiction", "neutral"),
        # design choice: yes/no/maybe answers to "does the premise imply the hypothesis?" (neutral = maybe).
        verbalizers={"entailment": "yes", "contradiction": "no", "neutral": "maybe"},
        field_names=_NLI_HEADERS,
        description="Natural language inference: does the premise entail, contradict, or leave open the hypothesis",
        query="Does the premise imply the hypothesis? Answer yes, no or maybe:",
    ),
    "RTE": _Spec(
        text_fields=("premise", "hypothesis"),
        labels=("entailment", "not_entailment"),
        # design choice: yes/no answers to "does the premise imply the hypothesis?".
        verbalizers={"entailment": "yes", "not_entailment": "no"},
        field_names=_NLI_HEADERS,
        description="Recognizing textual entailment: does the premise entail the hypothesis",
        query="Does the premise imply the hypothesis? Answer yes or no:",
    ),
    "COPA": _Spec(
        text_fields=("premise", "question", "choice1", "choice2"),
        labels=("choice1", "choice2"),
        # design choice: first/second rather than 1/2, since tokenizers that split digits would give " 1"
        # and " 2" the same first token (a bare space).
        verbalizers={"choice1": "first", "choice2": "second"},
        field_names={
            "premise": "Premise",
            "question": "Question",
            "choice1": "First choice",
            "choice2": "Second choice",
        },
        description=(
            "Choice of plausible alternatives: the label names the choice that is the more likely "
            "cause or effect (as the question asks) of the premise"
        ),
        query="Which choice is the more plausible answer to the question? Answer first or second:",
        field_choices={"question": ("cause", "effect")},
    ),
    "BoolQ": _Spec(
        # design choice: question before passage, so a generation budget that runs out cuts the long
        # passage rather than dropping the question.
        text_fields=("question", "passage"),
        labels=("false", "true"),
        # design choice: yes/no, the natural answers to BoolQ's yes/no questions.
        verbalizers={"false": "no", "true": "yes"},
        field_names={"question": "Question", "passage": "Passage"},
        description=(
            "Yes/no reading comprehension: the label says whether the passage answers the question "
            "with yes (true) or no (false)"
        ),
        query="According to the passage, is the answer to the question yes or no? Answer:",
    ),
    "WiC": _Spec(
        text_fields=("word", "sentence1", "sentence2"),
        labels=("false", "true"),
        # design choice: yes/no answers to "is the word used in the same sense in both sentences?".
        verbalizers={"false": "no", "true": "yes"},
        field_names={"word": "Word", "sentence1": "Sentence 1", "sentence2": "Sentence 2"},
        description=(
            "Word in context: the label says whether the word has the same meaning in both sentences "
            "(true) or not (false)"
        ),
        query="Is the word used in the same sense in both sentences? Answer yes or no:",
    ),
    "MRPC": _Spec(
        text_fields=("sentence1", "sentence2"),
        labels=("not_equivalent", "equivalent"),
        # design choice: yes/no answers to "do the two sentences mean the same thing?".
        verbalizers={"not_equivalent": "no", "equivalent": "yes"},
        field_names={"sentence1": "Sentence 1", "sentence2": "Sentence 2"},
        description="Paraphrase detection: the label says whether the two sentences mean the same thing",
        query="Do the two sentences mean the same thing? Answer yes or no:",
        kshot=True,
    ),
}


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def canonical_name(name: str) -> str:
    """The built-in spelling of a task name given in any case, with or without punctuation ("sst2")."""
    by_key = {_key(n): n for n in BUILTIN_TASKS}
    try:
        return by_key[_key(name)]
    except KeyError:
        raise TaskDataError(
            f"unknown built-in task {name!r}; choose one of {', '.join(BUILTIN_TASKS)}"
        ) from None


def _read_jsonl(task: str, filename: str) -> list[dict]:
    path = resources.files("retrikt").joinpath("data", task, filename)
    with path.open("r", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def teacher_pool(task: Task) -> list[dict[str, str]]:
    """Inputs the teacher may label for the student: the built-in task's pool of whole sentences when it ships one
    (SST-2), else `task.unlabeled`."""
    try:
        name = canonical_name(task.name)
    except TaskDataError:
        return list(task.unlabeled)
    if not resources.files("retrikt").joinpath("data", name, "unlabeled-sentences.jsonl").is_file():
        return list(task.unlabeled)
    return [r["fields"] for r in _read_jsonl(name, "unlabeled-sentences.jsonl")]


def _examples(task: str, filename: str) -> list[Example]:
    return [Example(fields=r["fields"], label=r["label"], uid=r["uid"]) for r in _read_jsonl(task, filename)]


def load_builtin(name: str, seed: int = 13) -> Task:
    """Load a built-in task with its packaged splits.

    `name` is case-insensitive and ignores punctuation ("sst2" is SST-2). `seed` picks the k-shot split of
    the GLUE tasks (SST-2, MRPC; one of KSHOT_SEEDS); FewGLUE tasks have one fixed split, ignore it and
    report `seed=None`.
    """
    task = canonical_name(name)
    spec = _SPECS[task]
    if spec.kshot:
        if seed not in KSHOT_SEEDS:
            raise TaskDataError(
                f"{task} has k-shot splits for seeds {', '.join(map(str, KSHOT_SEEDS))}; got seed {seed}"
            )
        train_file, dev_file = f"train-{seed}.jsonl", f"dev-{seed}.jsonl"
    else:
        train_file, dev_file = "train.jsonl", "dev.jsonl"
    return Task(
        name=task,
        text_fields=spec.text_fields,
        labels=spec.labels,
        verbalizers=dict(spec.verbalizers),
        field_names=dict(spec.field_names),
        description=spec.description,
        query=spec.query,
        train=_examples(task, train_file),
        dev=_examples(task, dev_file),
        test=_examples(task, "test.jsonl"),
        unlabeled=[r["fields"] for r in _read_jsonl(task, "unlabeled.jsonl")],
        seed=seed if spec.kshot else None,
        field_choices=dict(spec.field_choices),
    )
