"""Core task types: `Example`, `Task` (prompt templates and the generation parser) and `TaskDataError`.

A task renders an input as one "Header: value" line per text field. The same layout serves three uses:
the classification prompt (fields + a query line, the LM answers with a verbalizer word), the teacher's
label-conditioned generation prompt (task + label lines, then the first header), and the parser that turns
the teacher's continuation back into fields.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping
from ..errors import TaskDataError

MAX_GENERATED_CHARS = 1000
"""A generated field value longer than this is treated as a runaway generation and rejected."""
MAX_INPUT_CHARS = 5000
"""Longest text field a user may give (upload row, hand-written entry, typed input)."""
# design choice: 5000 holds every packaged example (BoolQ passages reach 4,805) and is far past what the teacher's
# few-shot prompt and the student's 128-token window use; a longer value is a pasted document, not an example.

MIN_LABELS, MAX_LABELS = 2, 20
MAX_ANSWER_TOKENS = 8
"""Longest answer text (in the teacher's tokens) a label may have: the teacher scores every token of it."""

# The generation prompt uses these line prefixes; a field header equal to one would make parsing ambiguous.
_RESERVED_HEADERS = ("task", "label")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")



@dataclass(frozen=True)
class Example:
    """One input: text fields by name, its label name (None when unlabeled) and a stable id."""

    fields: dict[str, str]
    label: str | None
    uid: str


def normalize_text(value: Any) -> str:
    """Collapse every whitespace run (newlines included) into one space and strip the ends."""
    return " ".join(str(value).split())


def _is_one_line(text: str) -> bool:
    return bool(text.strip()) and _LINE_BREAK.search(text) is None


def _starts_with_header(line: str, header: str) -> bool:
    return line.lstrip().lower().startswith(header.lower() + ":")


@dataclass
class Task:
    """A text-classification task: its template, its label words and its data splits.

    `train`/`dev` are the k-shot labelled splits, `test` the evaluation split and `unlabeled` a pool of
    in-domain inputs (fields only) for calibration and vocabulary. `field_choices` optionally restricts a
    field to a closed set of values (COPA's question is "cause" or "effect"); generations outside it are
    rejected by `parse_generation`. `pool` (imported tasks) holds the labelled rows in no split, from which
    another seed's k-shot split is drawn.
    """

    name: str
    text_fields: tuple[str, ...]
    labels: tuple[str, ...]
    verbalizers: dict[str, str]
    field_names: dict[str, str]
    description: str
    query: str
    train: list[Example] = field(default_factory=list)
    dev: list[Example] = field(default_factory=list)
    test: list[Example] = field(default_factory=list)
    unlabeled: list[dict[str, str]] = field(default_factory=list)
    seed: int | None = None
    field_choices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    pool: list[Example] = field(default_factory=list)
    query_candidates: tuple[str, ...] = ()
    """Other query lines the teacher's scorer tries against `query` on held-out train rows, as it tries
    demonstration sets; the best pair wins (imported tasks: the label column's name, "Label:", a question)."""

    def __post_init__(self) -> None:
        self.text_fields = tuple(self.text_fields)
        self.labels = tuple(self.labels)
        self.field_choices = {k: tuple(v) for k, v in self.field_choices.items()}
        self.query_candidates = tuple(q for q in dict.fromkeys(self.query_candidates) if q != self.query)
        self._check_definition()
        for split in ("train", "dev", "test"):
            for ex in getattr(self, split):
                self._check_fields(ex.fields, f"{split} example {ex.uid}")
                if ex.label not in self.labels:
                    raise TaskDataError(
                        f"{self.name}: {split} example {ex.uid} has label {ex.label!r}; "
                        f"use one of {', '.join(self.labels)}"
                    )
        for i, fields in enumerate(self.unlabeled):
            self._check_fields(fields, f"unlabeled input #{i}")

    # ---- validation -------------------------------------------------------------------------------

    def _check_definition(self) -> None:
        where = self.name or "task"
        if not self.text_fields:
            raise TaskDataError(f"{where}: give at least one text field")
        if len(set(self.text_fields)) != len(self.text_fields):
            raise TaskDataError(f"{where}: text fields {self.text_fields} repeat a name; use distinct fields")
        headers = []
        for f in self.text_fields:
            header = self.field_names.get(f)
            if header is None:
                raise TaskDataError(f"{where}: no display header for field {f!r}; add it to field_names")
            if not _is_one_line(header) or ":" in header or header != header.strip():
                raise TaskDataError(
                    f"{where}: header {header!r} of field {f!r} must be one line without ':' or edge spaces"
                )
            if header.lower() in _RESERVED_HEADERS:
                raise TaskDataError(
                    f"{where}: header {header!r} is reserved by the generation template; rename field {f!r}"
                )
            headers.append(header.lower())
        if len(set(headers)) != len(headers):
            raise TaskDataError(f"{where}: field headers must differ (ignoring case): {headers}")
        if not MIN_LABELS <= len(self.labels) <= MAX_LABELS:
            raise TaskDataError(
                f"{where}: a task needs {MIN_LABELS} to {MAX_LABELS} labels, got {len(self.labels)}"
            )
        if len(set(self.labels)) != len(self.labels):
            raise TaskDataError(f"{where}: label names repeat: {self.labels}")
        for label in self.labels:
            if not isinstance(label, str) or not _is_one_line(label):
                raise TaskDataError(f"{where}: label {label!r} must be a non-empty one-line string")
        if set(self.verbalizers) != set(self.labels):
            raise TaskDataError(
                f"{where}: verbalizers must cover exactly the labels {self.labels}, got {sorted(self.verbalizers)}"
            )
        answers = [self.verbalizers[label] for label in self.labels]
        for label, answer in zip(self.labels, answers):
            if not isinstance(answer, str) or not _is_one_line(answer) or answer != normalize_text(answer):
                raise TaskDataError(f"{where}: the answer text of label {label!r} is {answer!r}; give it one line of "
                                    "text without leading, trailing or repeated spaces")
        if len({a.lower() for a in answers}) != len(answers):
            raise TaskDataError(f"{where}: two labels have the same answer text (ignoring case): {answers}; give "
                                "each label its own")
        for attr in ("description", "query"):
            if not _is_one_line(getattr(self, attr)):
                raise TaskDataError(f"{where}: {attr} must be one non-empty line")
        for line in self.query_candidates:
            if not isinstance(line, str) or not _is_one_line(line):
                raise TaskDataError(f"{where}: each query candidate must be one non-empty line, got {line!r}")
        unknown = set(self.field_choices) - set(self.text_fields)
        if unknown:
            raise TaskDataError(f"{where}: field_choices names unknown fields {sorted(unknown)}")

    def _check_fields(self, fields: Mapping[str, str], what: str) -> None:
        for f in self.text_fields:
            if not normalize_text(fields.get(f, "")):
                raise TaskDataError(f"{self.name}: {what} has no text in field {f!r}; fill it or drop the row")

    # ---- templates --------------------------------------------------------------------------------

    def serialize(self, fields: Mapping[str, str]) -> str:
        """Render an input as one "Header: value" line per text field (whitespace in values collapsed)."""
        lines = []
        for f in self.text_fields:
            if f not in fields:
                raise TaskDataError(f"{self.name}: input lacks field {f!r}; expected {', '.join(self.text_fields)}")
            lines.append(f"{self.field_names[f]}: {normalize_text(fields[f])}")
        return "\n".join(lines)

    def classification_prompt(self, fields: Mapping[str, str], query: str | None = None) -> str:
        """`serialize(fields)` followed by the query line (`query`, else the task's); the LM goes on with " " + a
        label's answer text."""
        return self.serialize(fields) + "\n" + (query or self.query)

    def generation_prompt(self, label: str) -> str:
        """Prompt the teacher continues to write a new input of `label`; it ends with the first header + ":"."""
        self.label_index(label)
        # design choice: show the label name (underscores as spaces) rather than the verbalizer, since names
        # such as "contradiction" tell the teacher more than the answer word "no".
        shown = label.replace("_", " ")
        return f"Task: {self.description}\nLabel: {shown}\n{self.field_names[self.text_fields[0]]}:"

    def generation_demo(self, fields: Mapping[str, str], label: str) -> str:
        """A finished generation block for few-shot teacher prompts: `generation_prompt(label)` followed by
        the input; `parse_generation` of the text after the prompt gives back the (normalized) fields."""
        first_header = self.field_names[self.text_fields[0]]
        body = self.serialize(fields)[len(first_header) + 1 :]
        return self.generation_prompt(label) + body

    def generation_complete(self, continuation: str) -> bool:
        """True once `continuation` holds the whole last field: its line has ended. `parse_generation` ignores
        everything after that line, so sampling can stop there instead of spending tokens on chatter (or running
        into the token budget, which drops the sample)."""
        lines = _LINE_BREAK.split(continuation)
        if len(lines) < 2:
            return False
        if len(self.text_fields) == 1:
            return True
        last = self.field_names[self.text_fields[-1]]
        return any(_starts_with_header(line, last) for line in lines[1:-1])

    def next_generation_header(self, continuation: str) -> str | None:
        """The header ("Hypothesis:") the sample must go on with, when `continuation` has just ended a non-empty
        line of a field that is not the last; None otherwise (one-field tasks, mid-line, all fields written).

        design choice (`generation.force_headers`): a tiny teacher often ends a pair after the premise or runs the
        premise on; writing the next header for it after each line keeps every sample in the template.
        """
        if len(self.text_fields) < 2:
            return None
        lines = _LINE_BREAK.split(continuation)
        if len(lines) < 2 or lines[-1].strip() or not lines[-2].strip():
            return None
        headers = [self.field_names[f] for f in self.text_fields]
        written = 1
        for line in lines[1:-1]:
            if written < len(headers) and _starts_with_header(line, headers[written]):
                written += 1
        if written >= len(headers):
            return None
        return headers[written] + ":"

    def parse_generation(self, continuation: str) -> dict[str, str] | None:
        """Fields from the text the teacher wrote after `generation_prompt(label)`, or None if unusable.

        Rules, in order:
        - The text ends at the first blank line or at a line starting with "Task:" or "Label:" (the model
          began another example).
        - The first line is the first field's value. Every further field must start its own line with its
          header and ":" (case-insensitive), in template order. Lines before the last field's header that
          carry no header continue the current value (models wrap long passages).
        - Everything after the line holding the last field is ignored: the last value is one line, so any
          trailing chatter ("It was great.", a second hypothesis) cannot leak into it.
        - None when a field is missing, a header repeats or comes out of order before the last field's
          line, a value is empty after whitespace normalisation or longer than MAX_GENERATED_CHARS, or a
          value falls outside the field's `field_choices`.
        The caller should also drop generations cut by the token budget: a truncated last value parses.
        """
        headers = [self.field_names[f] for f in self.text_fields]
        lines = _LINE_BREAK.split(continuation)
        values: list[list[str]] = [[lines[0]]]
        for line in lines[1:]:
            if len(values) == len(headers):
                break
            if not line.strip() or any(_starts_with_header(line, h) for h in _RESERVED_HEADERS):
                break
            hit = next((i for i, h in enumerate(headers) if _starts_with_header(line, h)), None)
            if hit is None:
                values[-1].append(line)
            elif hit == len(values):
                values.append([line.lstrip()[len(headers[hit]) + 1 :]])
            else:
                return None
        if len(values) != len(headers):
            return None
        out: dict[str, str] = {}
        for f, parts in zip(self.text_fields, values):
            value = normalize_text(" ".join(parts))
            if not value or len(value) > MAX_GENERATED_CHARS:
                return None
            choices = self.field_choices.get(f)
            if choices:
                match = [c for c in choices if c.lower() == value.lower()]
                if not match:
                    return None
                value = match[0]
            out[f] = value
        return out

    # ---- labels -----------------------------------------------------------------------------------

    def label_index(self, label: str) -> int:
        """Position of `label` in `labels`; TaskDataError naming the valid labels when unknown."""
        try:
            return self.labels.index(label)
        except ValueError:
            raise TaskDataError(
                f"{self.name}: unknown label {label!r}; use one of {', '.join(self.labels)}"
            ) from None

    def answer_token_ids(self, tokenizer: Any) -> dict[str, list[int]]:
        """The tokens of " " + each label's answer text, as the LM would write it after the query.

        `tokenizer` needs `encode(text, add_special_tokens=False)` (any Hugging Face tokenizer). Raises
        TaskDataError when an answer encodes to no tokens or to more than MAX_ANSWER_TOKENS, or when two answers
        encode to the same tokens (scoring could not tell them apart). Answers may share their first tokens:
        the scorer reads every token.
        """
        ids: dict[str, list[int]] = {}
        for label in self.labels:
            answer = self.verbalizers[label]
            tokens = [int(t) for t in tokenizer.encode(" " + answer, add_special_tokens=False)]
            if not tokens:
                raise TaskDataError(f"{self.name}: the answer text {answer!r} of label {label!r} encodes to no tokens")
            if len(tokens) > MAX_ANSWER_TOKENS:
                raise TaskDataError(f"{self.name}: the answer text {answer!r} of label {label!r} is {len(tokens)} "
                                    f"tokens for this teacher, over {MAX_ANSWER_TOKENS}; give it a shorter answer")
            ids[label] = tokens
        by_tokens: dict[tuple, list[str]] = {}
        for label, tokens in ids.items():
            by_tokens.setdefault(tuple(tokens), []).append(label)
        clashes = [group for group in by_tokens.values() if len(group) > 1]
        if clashes:
            shown = "; ".join(" and ".join(repr(self.verbalizers[l]) for l in group) for group in clashes)
            raise TaskDataError(f"{self.name}: the answers {shown} are the same tokens for this teacher; give "
                                "each label its own answer text")
        return ids
