"""Tasks from user data: an uploaded table (`load_custom`) or a Hugging Face Hub dataset (`load_hub`).

Both build the same splits, LM-BFF style: shuffle with `seed`, take `k` examples per label as train and
the next `k` per label as dev. `load_custom` then cuts a stratified test split from the rest
(`test_fraction` of each label, about `max_test` in total); `load_hub` uses the dataset's own
validation/test split when it has labels. Whatever is left becomes the unlabeled pool (labels dropped).
Inputs identical to a k-shot example are kept out of test and unlabeled, so duplicated rows cannot leak.
"""
from __future__ import annotations

import os
import random
import re
from dataclasses import replace
from typing import Any, Iterable, Sequence

from .base import MAX_INPUT_CHARS, MAX_LABELS, MIN_LABELS, Example, Task, TaskDataError, normalize_text
from .files import Source, iter_rows, read_source

def _input_key(fields: dict[str, str]) -> tuple:
    return tuple(sorted(fields.items()))


def _label_sort_key(labels: Iterable[str]):
    numeric = all(re.fullmatch(r"-?\d+", label) for label in labels)
    return (lambda label: (int(label), label)) if numeric else (lambda label: label)


def _resolve_labels(found: set[str], label_names: Sequence[Any] | None, where: str, column: str) -> tuple[str, ...]:
    """Label names: `label_names` in the given order, else the labels found, sorted (numerically when
    every label is an integer, so "2" comes before "10"; otherwise by string)."""
    if label_names is not None:
        names = [str(n) for n in label_names]
        if len(set(names)) != len(names):
            raise TaskDataError(f"the label order repeats a name: {names}; list each label once")
        unknown = sorted(found - set(names))
        if unknown:
            shown = ", ".join(map(repr, unknown[:10])) + (" ..." if len(unknown) > 10 else "")
            raise TaskDataError(
                f"{where}: column {column!r} has labels that are not in the label order given: {shown}; "
                f"it lists {', '.join(map(repr, names))} - add the missing labels to it, or fix those rows"
            )
        labels = names
    else:
        labels = sorted(found, key=_label_sort_key(found))
    if len(labels) < MIN_LABELS:
        only = f" ({labels[0]!r})" if labels else ""
        raise TaskDataError(
            f"{where}: column {column!r} has {len(labels)} distinct label{only}; a classification task needs "
            f"{MIN_LABELS} to {MAX_LABELS} - check the label column or add rows of another class"
        )
    if len(labels) > MAX_LABELS:
        raise TaskDataError(
            f"{where}: column {column!r} has {len(labels)} distinct labels (e.g. {', '.join(map(repr, labels[:5]))}); "
            f"at most {MAX_LABELS} are supported - check that {column!r} is the label column, or merge labels"
        )
    return tuple(labels)


def _header(column: str) -> str:
    header = normalize_text(column.replace("_", " ").replace(":", " ")) or "Text"
    header = header[0].upper() + header[1:]
    # "Task:" and "Label:" lines belong to the generation template.
    return f"{header} text" if header.lower() in ("task", "label") else header


def default_answers(labels: Sequence[str]) -> dict[str, str]:
    """Each label's answer text, the words the teacher is asked to write: the label name in lower case with
    underscores as spaces ("Sci/Tech" -> "sci/tech", "not_relevant" -> "not relevant", "1 star" -> "1 star")."""
    # design choice: lower case, as the built-in tasks' answers are; a 135M teacher scored 48.5% with plain lower-case
    # words on a 4-topic set where letters A-D, the old default for any label that was not one word, scored 18.5%.
    for shown in (lambda l: normalize_text(l.replace("_", " ")).lower(), lambda l: normalize_text(l.replace("_", " "))):
        answers = {label: shown(label) for label in labels}
        if all(answers.values()) and len({a.lower() for a in answers.values()}) == len(labels):
            return answers
    return {label: label for label in labels}


def with_answers(labels: Sequence[str], answers: dict[str, str] | None) -> dict[str, str]:
    """The default answers with the user's `answers` (label -> text) in place; an unknown label is an error."""
    chosen = {str(k): normalize_text(v) for k, v in (answers or {}).items()}
    unknown = sorted(set(chosen) - set(labels))
    if unknown:
        raise TaskDataError(f"answers name unknown label(s) {', '.join(map(repr, unknown))}; the labels are "
                            f"{', '.join(map(repr, labels))}")
    empty = [label for label, text in chosen.items() if not text]
    if empty:
        raise TaskDataError(f"the answer text of label {empty[0]!r} is empty; give it a word or a few")
    return {**default_answers(labels), **chosen}


def question_query(labels: Sequence[str], answers: dict[str, str]) -> str:
    return f"Which label fits: {', '.join(answers[label] for label in labels)}? Answer:"


def default_queries(labels: Sequence[str], answers: dict[str, str], label_column: str | None) -> list[str]:
    """Query lines for an imported task, best guess first: the label column's own name ("Sentiment:", "Topic:"),
    "Label:", and a question that lists the answers. The teacher's scorer keeps the best one."""
    name = normalize_text((label_column or "").replace("_", " ").replace(":", " "))
    named = f"{name[0].upper()}{name[1:]}:" if name else None
    # design choice: the built-in SST-2's "Sentiment:" beat a question by 7 points; on an imported review set the
    # column's name scored 70.7% against 56.3% for the question (300 test items, same demonstrations).
    return list(dict.fromkeys(line for line in (named, "Label:", question_query(labels, answers)) if line))


def _check_args(k: int, test_fraction: float, max_test: int, max_unlabeled: int) -> None:
    if not (isinstance(k, int) and k >= 1):
        raise TaskDataError(f"k (examples per label) must be a positive integer, got {k!r}")
    if not 0 < test_fraction < 1:
        raise TaskDataError(f"test_fraction must be between 0 and 1, got {test_fraction!r}")
    if max_test < 1 or max_unlabeled < 0:
        raise TaskDataError("max_test must be at least 1 and max_unlabeled at least 0")


def _check_columns(text_columns: Sequence[str], label_column: str, columns: Sequence[str], where: str) -> None:
    if not 1 <= len(text_columns) <= 2:
        raise TaskDataError(f"choose one or two text columns, got {len(text_columns)}: {list(text_columns)}")
    if len(set(text_columns)) != len(text_columns) or label_column in text_columns:
        raise TaskDataError("the text columns and the label column must be different columns")
    missing = [c for c in [*text_columns, label_column] if c not in columns]
    if missing:
        raise TaskDataError(
            f"{where}: no column {', '.join(map(repr, missing))}; the file has columns "
            f"{', '.join(map(repr, columns))} - pick from these or rename the header"
        )


def _build_task(
    name: str,
    examples: list[Example],
    labels: tuple[str, ...],
    text_columns: Sequence[str],
    where: str,
    *,
    k: int,
    seed: int,
    test_fraction: float,
    max_test: int,
    max_unlabeled: int,
    test_examples: list[Example] | None = None,
    verbalizers: dict[str, str] | None = None,
    field_names: dict[str, str] | None = None,
    description: str | None = None,
    query: str | None = None,
    label_column: str | None = None,
) -> Task:
    rng = random.Random(seed)
    train, dev, rest = _kshot(examples, labels, k, rng, where, need_test=test_examples is None)
    seen = {_input_key(ex.fields) for ex in train + dev}

    if test_examples is None:
        counts = {label: max(1, round(test_fraction * len(group))) if group else 0 for label, group in rest.items()}
        total = sum(counts.values())
        if total > max_test:
            counts = {label: max(1, c * max_test // total) if c else 0 for label, c in counts.items()}
        test = [ex for label in labels for ex in rest[label][: counts[label]]]
        rng.shuffle(test)
        leftovers = [ex for label in labels for ex in rest[label][counts[label] :]]
    else:
        test = [ex for ex in test_examples if _input_key(ex.fields) not in seen]
        rng.shuffle(test)
        test = test[:max_test]
        leftovers = [ex for label in labels for ex in rest[label]]
    if not test:
        raise TaskDataError(f"{where}: no rows are left for the test split (all repeat k-shot inputs); add rows")
    rng.shuffle(leftovers)
    seen.update(_input_key(ex.fields) for ex in test)
    pool = _unseen(leftovers, seen)
    unlabeled = [dict(ex.fields) for ex in pool[:max_unlabeled]]

    verbalizers = with_answers(labels, verbalizers)
    queries = default_queries(labels, verbalizers, label_column)
    field_names = dict(field_names) if field_names else {c: _header(c) for c in text_columns}
    if description is None:
        headers = " and ".join(field_names[c].lower() for c in text_columns if c in field_names)
        description = f"Text classification: the label of the {headers} is one of {', '.join(labels)}"
    return Task(
        name=name,
        text_fields=tuple(text_columns),
        labels=labels,
        verbalizers=verbalizers,
        field_names=field_names,
        description=description,
        query=query or queries[0],
        query_candidates=tuple(queries),
        train=train,
        dev=dev,
        test=test,
        unlabeled=unlabeled,
        seed=seed,
        pool=pool,
    )


def _kshot(examples: Sequence[Example], labels: Sequence[str], k: int, rng: random.Random, where: str,
           need_test: bool = False) -> tuple[list[Example], list[Example], dict[str, list[Example]]]:
    """Shuffle with `rng`, then `k` per label as train and the next `k` as dev; the rest per label, minus copies
    of a k-shot input."""
    shuffled = list(examples)
    rng.shuffle(shuffled)
    by_label: dict[str, list[Example]] = {label: [] for label in labels}
    for ex in shuffled:
        by_label[ex.label].append(ex)
    need = 2 * k + (1 if need_test else 0)
    for label, group in by_label.items():
        if len(group) < need:
            extra = " + 1 test" if need_test else ""
            raise TaskDataError(
                f"{where}: label {label!r} has {len(group)} rows; each label needs at least {need} "
                f"({k} train + {k} dev{extra}) - add rows for it or lower k (examples per label)"
            )
    train = [ex for label in labels for ex in by_label[label][:k]]
    dev = [ex for label in labels for ex in by_label[label][k : 2 * k]]
    seen = {_input_key(ex.fields) for ex in train + dev}
    rest = {label: [ex for ex in group[2 * k :] if _input_key(ex.fields) not in seen]
            for label, group in by_label.items()}
    return train, dev, rest


def _unseen(examples: Iterable[Example], seen: set) -> list[Example]:
    """`examples` in order, without inputs in `seen` or repeated ones (`seen` grows)."""
    out = []
    for ex in examples:
        key = _input_key(ex.fields)
        if key not in seen:
            seen.add(key)
            out.append(ex)
    return out


def redraw(task: Task, seed: int | None) -> Task:
    """`task` with the k-shot train/dev split of `seed`, drawn from its labelled rows (train, dev and `pool`) as an
    import with that seed would; the test split stays as imported, so seeds differ only in what the few-shot
    learner sees. Unchanged when `seed` is the task's own or it has no labelled pool (saved before pools were)."""
    if seed is None or seed == task.seed or not task.pool:
        return task
    k = len(task.train) // len(task.labels)
    train, dev, rest = _kshot(task.train + task.dev + task.pool, task.labels, k, random.Random(seed), task.name)
    leftovers = [ex for label in task.labels for ex in rest[label]]
    random.Random(seed).shuffle(leftovers)
    pool = _unseen(leftovers, {_input_key(ex.fields) for ex in train + dev + task.test})
    # design choice: an unlabeled pool as large as the import's, so seeds differ in the split, not in its size.
    unlabeled = [dict(ex.fields) for ex in pool[:len(task.unlabeled)]]
    return replace(task, train=train, dev=dev, unlabeled=unlabeled, pool=pool, seed=seed)


def _example(row: dict[str, str], uid: str, text_columns: Sequence[str], label_column: str, where: str) -> Example:
    fields = {}
    for column in text_columns:
        if column not in row:
            raise TaskDataError(f"{where}: no value for column {column!r}; give every row all columns")
        fields[column] = normalize_text(row[column])
        if not fields[column]:
            raise TaskDataError(f"{where}: column {column!r} is empty; fill in the text or delete the row")
        if len(fields[column]) > MAX_INPUT_CHARS:
            raise TaskDataError(f"{where}: column {column!r} holds {len(fields[column]):,} characters, over the "
                                f"{MAX_INPUT_CHARS:,} limit; shorten it or delete the row")
    label = normalize_text(row.get(label_column, ""))
    if not label:
        raise TaskDataError(f"{where}: column {label_column!r} is empty; give the row a label or delete it")
    return Example(fields=fields, label=label, uid=uid)


def load_custom(
    path_or_bytes: Source,
    text_columns: list[str],
    label_column: str,
    name: str = "custom",
    max_bytes: int = 20_000_000,
    max_rows: int = 50_000,
    label_names: list[str] | None = None,
    test_fraction: float = 0.5,
    seed: int = 13,
    *,
    k: int = 16,
    max_test: int = 1000,
    max_unlabeled: int = 5000,
    filename: str | None = None,
    verbalizers: dict[str, str] | None = None,
    field_names: dict[str, str] | None = None,
    description: str | None = None,
    query: str | None = None,
    test_source: Source | None = None,
    test_filename: str | None = None,
) -> Task:
    """Build a task from a CSV, TSV, JSONL or JSON-array file (a path, or its bytes plus `filename`).

    `text_columns` are one or two columns holding the input text, `label_column` the class. Labels are
    `label_names` (in that order; rows with other labels are an error) or the distinct values found,
    sorted (numerically when all are integers). Splits: `k` per label train, `k` per label dev, then
    `test_fraction` of each label's remaining rows as test (about `max_test` in total) and the rest, labels
    dropped, as the unlabeled pool (at most `max_unlabeled`). With `test_source` (a second file with the same
    columns, e.g. the dataset's official test split), the test split is that file's rows instead (a seeded sample
    of at most `max_test`, copies of k-shot inputs dropped) and all the remaining rows of the first file are the
    unlabeled pool. Template defaults come from the column and label names; override them with `verbalizers`
    (label -> answer text, for some or all labels), `field_names`, `description`, `query` (tried with the defaults).
    Every problem the user can fix raises TaskDataError with the fix in its message.
    """
    if isinstance(text_columns, str):
        text_columns = [text_columns]
    _check_args(k, test_fraction, max_test, max_unlabeled)
    examples, where = _file_examples(path_or_bytes, filename, name, text_columns, label_column, max_bytes, max_rows)
    test = None
    if test_source is not None:
        test, _ = _file_examples(test_source, test_filename, f"{name}-test", text_columns, label_column, max_bytes,
                                 max_rows)
    labels = _resolve_labels({ex.label for ex in examples + (test or [])}, label_names, where, label_column)
    return _build_task(
        name, examples, labels, text_columns, where,
        k=k, seed=seed, test_fraction=test_fraction, max_test=max_test, max_unlabeled=max_unlabeled,
        test_examples=test, verbalizers=verbalizers, field_names=field_names, description=description, query=query,
        label_column=label_column,
    )


def _file_examples(source: Source, filename: str | None, uid_prefix: str, text_columns: Sequence[str],
                   label_column: str, max_bytes: int, max_rows: int) -> tuple[list[Example], str]:
    """The labelled rows of one uploaded file, and how messages name it."""
    text, where = read_source(source, max_bytes, filename)
    columns, rows = iter_rows(text, where)
    _check_columns(text_columns, label_column, columns, where)
    examples = []
    for location, row in rows:
        if len(examples) >= max_rows:
            raise TaskDataError(
                f"{where} has more than {max_rows} rows, the limit; upload a random sample of at most {max_rows}"
            )
        examples.append(_example(row, f"{uid_prefix}-{len(examples)}", text_columns, label_column,
                                 f"{where}, {location}"))
    if not examples:
        raise TaskDataError(f"{where} has a header but no data rows; add rows below the header")
    return examples, where


def _hub_error(dataset_id: str, config: str | None, err: Exception) -> TaskDataError:
    what = repr(dataset_id) + (f" (config {config!r})" if config else "")
    message = str(err).strip()
    detail = f"{type(err).__name__}: {message.splitlines()[0] if message else ''}"[:300]
    switches = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    offline = any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in switches)
    reach = "offline mode is on" if offline else "no network connection"
    return TaskDataError(
        f"could not load {what} from the Hugging Face Hub: the hub is not reachable ({reach}) or the dataset/config "
        f"was not found [{detail}]. Check the id and config, or upload the data as a CSV/TSV/JSONL file instead"
    )


def _hub_examples(ds: Any, split: str, text_columns: Sequence[str], label_column: str, max_rows: int, seed: int):
    """Labelled examples of one hub split (a seeded sample of at most `max_rows`) and its ClassLabel names."""
    _check_columns(text_columns, label_column, ds.column_names, f"split {split!r}")
    names = getattr(ds.features[label_column], "names", None)
    order = list(range(len(ds)))
    random.Random(seed).shuffle(order)
    order = order[:max_rows]
    subset = ds.select(order).select_columns([*text_columns, label_column])
    examples = []
    for index, row in zip(order, subset):
        label = row[label_column]
        # Rows without a label (None, or -1 as in GLUE test splits) and rows with empty text cannot be
        # fixed by the user on the hub, so they are skipped rather than reported.
        if label is None or (names is not None and label < 0):
            continue
        fields = {c: normalize_text(row[c] if row[c] is not None else "") for c in text_columns}
        if not all(fields.values()) or max(map(len, fields.values())) > MAX_INPUT_CHARS:
            continue
        if names is not None:
            label = names[label]
        else:
            label = ("true" if label else "false") if isinstance(label, bool) else normalize_text(label)
        examples.append(Example(fields=fields, label=label, uid=f"{split}-{index}"))
    return examples, names


def load_hub(
    dataset_id: str,
    config: str | None,
    text_columns: list[str],
    label_column: str,
    splits: dict[str, str] | None = None,
    *,
    name: str | None = None,
    revision: str | None = None,
    k: int = 16,
    seed: int = 13,
    max_rows: int = 50_000,
    max_test: int = 1000,
    max_unlabeled: int = 5000,
    test_fraction: float = 0.5,
    label_names: list[str] | None = None,
    verbalizers: dict[str, str] | None = None,
    field_names: dict[str, str] | None = None,
    description: str | None = None,
    query: str | None = None,
) -> Task:
    """Build a task from a Hugging Face Hub dataset via `datasets.load_dataset(dataset_id, config)`.

    `dataset_id` is anything `load_dataset` accepts: a hub id ("glue" with config "sst2") or a local
    dataset folder.
    `splits` maps roles to hub split names: {"train": ..., "test": ...}. By default train is "train" and
    test the first of "validation", "test" that has labels; without one, test is cut from train as in
    `load_custom`. At most `max_rows` rows (a seeded sample) are read per split. Labels are the
    ClassLabel names when the column has them, else as in `load_custom`. Raises TaskDataError when the
    hub is unreachable, the dataset/config/split/column does not exist, or the data cannot form a task.
    """
    if isinstance(text_columns, str):
        text_columns = [text_columns]
    _check_args(k, test_fraction, max_test, max_unlabeled)
    try:
        import datasets
    except ImportError:
        raise TaskDataError("loading from the Hugging Face Hub needs the 'datasets' package; install it") from None
    try:
        loaded = datasets.load_dataset(dataset_id, config, revision=revision)
    except Exception as err:  # datasets raises many unrelated types for network, auth and naming problems
        raise _hub_error(dataset_id, config, err) from err
    available = list(loaded)
    splits = dict(splits or {})
    train_split = splits.get("train", "train")
    test_splits = [splits["test"]] if "test" in splits else [s for s in ("validation", "test") if s in loaded]
    for split in [train_split, *test_splits]:
        if split not in loaded:
            raise TaskDataError(f"{dataset_id!r} has no split {split!r}; its splits are {', '.join(available)}")
    train, names = _hub_examples(loaded[train_split], train_split, text_columns, label_column, max_rows, seed)
    test = None
    # Enough test rows to fill max_test even after dropping copies of the k-shot inputs.
    test_rows = min(max_rows, max_test + 2 * k * MAX_LABELS)
    for split in test_splits:
        test, _ = _hub_examples(loaded[split], split, text_columns, label_column, test_rows, seed)
        if test:
            break
        if "test" in splits:
            raise TaskDataError(f"split {split!r} of {dataset_id!r} has no labelled rows; choose another test split")
    where = f"{dataset_id!r} split {train_split!r}"
    found = {ex.label for ex in train + (test or [])}
    labels = _resolve_labels(found, label_names if label_names is not None else names, where, label_column)
    return _build_task(
        name or (f"{dataset_id}/{config}" if config else dataset_id), train, labels, text_columns, where,
        k=k, seed=seed, test_fraction=test_fraction, max_test=max_test, max_unlabeled=max_unlabeled,
        test_examples=test or None, verbalizers=verbalizers, field_names=field_names,
        description=description, query=query, label_column=label_column,
    )
