"""Tests for retrikt.tasks: packaged built-in tasks, templates and the generation parser, user-data loaders."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import pytest

from retrikt.tasks import (
    BUILTIN_TASKS,
    KSHOT_SEEDS,
    MAX_GENERATED_CHARS,
    Example,
    Task,
    TaskDataError,
    load_builtin,
    load_custom,
    normalize_text,
    preview_file,
)

REPO = Path(__file__).resolve().parents[1]
GLUE_TASKS = ("SST-2", "MRPC")
SIZES = {  # task: (train, dev, test)
    "SST-2": (32, 32, 872),
    "CB": (32, 32, 56),
    "RTE": (32, 32, 277),
    "COPA": (32, 32, 100),
    "BoolQ": (32, 32, 3270),
    "WiC": (32, 32, 638),
    "MRPC": (32, 32, 408),
}


def key(fields: dict[str, str]) -> tuple:
    return tuple(sorted((k, normalize_text(v)) for k, v in fields.items()))


@pytest.fixture(scope="module")
def tasks() -> dict[str, Task]:
    return {name: load_builtin(name) for name in BUILTIN_TASKS}


def continuation(task: Task, fields: dict[str, str]) -> str:
    """What a perfect teacher writes after generation_prompt: the serialization minus the first header."""
    text = task.serialize(fields)
    header = task.field_names[task.text_fields[0]] + ":"
    assert text.startswith(header)
    return text[len(header) :]


# ---- built-in tasks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BUILTIN_TASKS)
def test_builtin_sizes_and_consistency(tasks, name):
    task = tasks[name]
    assert task.name == name
    assert (len(task.train), len(task.dev), len(task.test)) == SIZES[name]
    assert task.unlabeled
    assert 2 <= len(task.labels) <= 20
    assert set(task.verbalizers) == set(task.labels)
    assert len({w.lower() for w in task.verbalizers.values()}) == len(task.labels)
    assert set(task.field_names) >= set(task.text_fields)
    assert task.seed == (13 if name in GLUE_TASKS else None)
    uids = [ex.uid for split in (task.train, task.dev, task.test) for ex in split]
    assert len(uids) == len(set(uids))
    for ex in task.train + task.dev + task.test:
        assert ex.label in task.labels
        assert set(ex.fields) == set(task.text_fields)
        assert all(v and v == normalize_text(v) for v in ex.fields.values())
    for fields in task.unlabeled:
        assert set(fields) == set(task.text_fields)
    for label in task.labels:  # every class is represented in evaluation data
        assert any(ex.label == label for ex in task.test)


@pytest.mark.parametrize("name", GLUE_TASKS)
@pytest.mark.parametrize("seed", KSHOT_SEEDS)
def test_glue_kshot_is_16_per_class(name, seed):
    task = load_builtin(name, seed=seed)
    assert task.seed == seed
    for split in (task.train, task.dev):
        assert sorted(ex.label for ex in split) == sorted(list(task.labels) * 16)


@pytest.mark.parametrize("name", GLUE_TASKS)
def test_glue_seeds_give_different_train_sets(name):
    trains = {seed: {ex.uid for ex in load_builtin(name, seed=seed).train} for seed in KSHOT_SEEDS}
    for a, b in combinations(KSHOT_SEEDS, 2):
        assert trains[a] != trains[b], (a, b)


@pytest.mark.parametrize("name", BUILTIN_TASKS)
def test_no_kshot_example_in_test(tasks, name):
    task = tasks[name]
    shots = {key(ex.fields) for ex in task.train + task.dev}
    assert not shots & {key(ex.fields) for ex in task.test}


@pytest.mark.parametrize("name", GLUE_TASKS)
def test_glue_unlabeled_excludes_every_kshot_seed_and_test(name):
    task = load_builtin(name)
    pool = [key(f) for f in task.unlabeled]
    assert len(pool) == len(set(pool)) and len(pool) <= 5000
    banned = {key(ex.fields) for ex in task.test}
    for seed in KSHOT_SEEDS:
        seeded = load_builtin(name, seed=seed)
        banned |= {key(ex.fields) for ex in seeded.train + seeded.dev}
    assert not banned & set(pool)


@pytest.mark.parametrize("name", sorted(set(BUILTIN_TASKS) - set(GLUE_TASKS)))
def test_fewglue_unlabeled_is_train_and_dev_inputs(tasks, name):
    task = tasks[name]
    assert [key(f) for f in task.unlabeled] == [key(ex.fields) for ex in task.train + task.dev]


@pytest.mark.parametrize(
    "alias,name", [("sst2", "SST-2"), ("Sst-2", "SST-2"), ("boolq", "BoolQ"), ("WIC", "WiC"), ("cb", "CB")]
)
def test_names_are_case_insensitive(alias, name):
    assert load_builtin(alias).name == name


def test_unknown_task_and_seed():
    with pytest.raises(TaskDataError, match="SST-2.*MRPC"):
        load_builtin("imdb")
    with pytest.raises(TaskDataError, match="13, 21, 42, 87, 100"):
        load_builtin("SST-2", seed=7)
    assert load_builtin("CB", seed=7).seed is None  # FewGLUE has one fixed split


# ---- templates and the generation parser ------------------------------------------------------------


@pytest.mark.parametrize("name", BUILTIN_TASKS)
def test_templates(tasks, name):
    task = tasks[name]
    fields = task.train[0].fields
    prompt = task.classification_prompt(fields)
    assert prompt == task.serialize(fields) + "\n" + task.query
    assert len(task.serialize(fields).split("\n")) == len(task.text_fields)
    for label in task.labels:
        gen = task.generation_prompt(label)
        assert gen.startswith("Task: ") and gen.endswith("\n" + task.field_names[task.text_fields[0]] + ":")
        assert task.labels[task.label_index(label)] == label
    with pytest.raises(TaskDataError, match="unknown label"):
        task.generation_prompt("no-such-label")
    with pytest.raises(TaskDataError):
        task.label_index("no-such-label")


@pytest.mark.parametrize("name", BUILTIN_TASKS)
def test_serialize_parse_round_trip_on_real_examples(tasks, name):
    task = tasks[name]
    checked = 0
    for ex in task.train + task.dev + task.test[:300]:
        parsed = task.parse_generation(continuation(task, ex.fields))
        if max(len(v) for v in ex.fields.values()) > MAX_GENERATED_CHARS:
            assert parsed is None  # long BoolQ passages exceed the generation limit by design
            continue
        assert parsed == {f: normalize_text(ex.fields[f]) for f in task.text_fields}
        demo = task.generation_demo(ex.fields, ex.label)
        prompt = task.generation_prompt(ex.label)
        assert demo.startswith(prompt) and task.parse_generation(demo[len(prompt) :]) == parsed
        checked += 1
    assert checked >= 50


def test_serialize_collapses_newlines():
    task = load_builtin("RTE")
    fields = {"premise": "a\nb  c", "hypothesis": " d\r\ne "}
    assert task.serialize(fields) == "Premise: a b c\nHypothesis: d e"
    assert task.parse_generation(continuation(task, fields)) == {"premise": "a b c", "hypothesis": "d e"}


BAD_GENERATIONS = [
    ("SST-2", ""),
    ("SST-2", "   "),
    ("SST-2", "\nIt was great."),  # empty first value
    ("SST-2", " " + "x" * (MAX_GENERATED_CHARS + 1)),
    ("RTE", " A man sleeps."),  # hypothesis missing
    ("RTE", " A man sleeps.\n\nHypothesis: He rests."),  # blank line ends the example first
    ("RTE", " A man sleeps.\nLabel: entailment\nHypothesis: He rests."),
    ("RTE", " A man sleeps.\nTask: write\nHypothesis: He rests."),
    ("RTE", " A man sleeps.\nHypothesis:   "),
    ("RTE", " A man sleeps.\nPremise: again\nHypothesis: He rests."),  # repeated header
    ("RTE", " A man sleeps.\nHypothesis " + "x" * 20),  # header without colon
    ("RTE", " A man sleeps. Hypothesis: on the same line"),
    ("RTE", " " + "x" * (MAX_GENERATED_CHARS + 1) + "\nHypothesis: He rests."),
    ("CB", " p\nhypothesis: h" + "y" * MAX_GENERATED_CHARS),
    ("COPA", " The man fell.\nQuestion: why?\nFirst choice: a\nSecond choice: b"),  # not cause/effect
    ("COPA", " The man fell.\nQuestion: cause\nSecond choice: b\nFirst choice: a"),  # out of order
    ("COPA", " The man fell.\nQuestion: cause\nFirst choice: a"),
    ("WiC", " bank\nSentence 2: x\nSentence 1: y"),
    ("MRPC", " One.\nSentence 1: Two."),
    ("BoolQ", " is it?\nAnswer: yes"),
]


@pytest.mark.parametrize("name,text", BAD_GENERATIONS)
def test_parse_rejects_garbage(name, text):
    assert load_builtin(name).parse_generation(text) is None


GOOD_GENERATIONS = [
    ("SST-2", " a fine film .\nIt was great.\n\nTask: x", {"sentence": "a fine film ."}),
    ("SST-2", " a fine film .\r\nmore", {"sentence": "a fine film ."}),
    ("RTE", " A man\nsleeps.\nhypothesis: He rests.", {"premise": "A man sleeps.", "hypothesis": "He rests."}),
    ("RTE", " P.\n  Hypothesis: H.\nHypothesis: again\nAnswer: no", {"premise": "P.", "hypothesis": "H."}),
    ("RTE", " P.\nHypothesis: H.\n\nTask: next", {"premise": "P.", "hypothesis": "H."}),
    (
        "COPA",
        " The man fell.\nQuestion: Cause\nFirst choice: He slipped.\nSecond choice: He sang.\nLabel: choice1",
        {"premise": "The man fell.", "question": "cause", "choice1": "He slipped.", "choice2": "He sang."},
    ),
]


@pytest.mark.parametrize("name,text,expected", GOOD_GENERATIONS)
def test_parse_accepts_variants(name, text, expected):
    assert load_builtin(name).parse_generation(text) == expected


COMPLETION = [
    ("SST-2", " a fine film .", False),
    ("SST-2", " a fine film .\n", True),
    ("RTE", " A man sleeps.\n", False),  # the hypothesis is still to come
    ("RTE", " A man\nsleeps.\nHypothesis: He rests.", False),  # its line may go on
    ("RTE", " A man sleeps.\nHypothesis: He rests.\n", True),
    ("RTE", " A man sleeps.\nhypothesis: He rests.\nIt", True),
    ("COPA", " The man fell.\nQuestion: cause\nFirst choice: a\n", False),
    ("COPA", " The man fell.\nQuestion: cause\nFirst choice: a\nSecond choice: b\n", True),
]


@pytest.mark.parametrize("name,text,complete", COMPLETION)
def test_generation_complete_once_the_last_field_line_ends(name, text, complete):
    task = load_builtin(name)
    assert task.generation_complete(text) is complete
    if complete:  # stopping there loses nothing the parser would have kept
        assert task.parse_generation(text) == task.parse_generation(text + "more chatter\nHypothesis: x")


NEXT_HEADER = [
    ("SST-2", " a fine film .\n", None),  # one field: nothing to force
    ("RTE", " A man sleeps.\n", "Hypothesis:"),
    ("RTE", " A man sleeps.", None),  # mid-line
    ("RTE", "\n", None),  # an empty premise is not continued
    ("RTE", " A man sleeps.\nHypothesis: He rests.\n", None),  # all written
    ("COPA", " The man fell.\n", "Question:"),
    ("COPA", " The man fell.\nQuestion: cause\n", "First choice:"),
    ("COPA", " The man fell.\nQuestion: cause\nFirst choice: a\n", "Second choice:"),
]


@pytest.mark.parametrize("name,text,header", NEXT_HEADER)
def test_next_generation_header(name, text, header):
    assert load_builtin(name).next_generation_header(text) == header


class FirstCharTokenizer:
    """Test double: one token per character, so words sharing a first letter share their first token."""

    def encode(self, text, add_special_tokens=False):
        return [ord(c) for c in text.lstrip(" ")]


def test_answer_token_ids_read_every_token_and_refuse_what_scoring_cannot_use():
    task = load_builtin("CB")
    tokenizer = FirstCharTokenizer()
    assert task.answer_token_ids(tokenizer) == {"entailment": [ord("y"), ord("e"), ord("s")],
                                                "contradiction": [ord("n"), ord("o")],
                                                "neutral": [ord(c) for c in "maybe"]}
    task.verbalizers = {"entailment": "yes", "contradiction": "no", "neutral": "nope"}  # a shared first token is fine
    assert task.answer_token_ids(tokenizer)["neutral"] == [ord(c) for c in "nope"]
    task.verbalizers = {"entailment": "yes", "contradiction": "no", "neutral": "a rather long answer"}
    with pytest.raises(TaskDataError, match="over 8"):
        task.answer_token_ids(tokenizer)


def test_task_definition_is_validated():
    base = dict(
        name="t", text_fields=("text",), labels=("a", "b"), verbalizers={"a": "yes", "b": "no"},
        field_names={"text": "Text"}, description="d", query="q:",
    )
    Task(**base)
    for bad in (
        {"labels": ("a",), "verbalizers": {"a": "yes"}},
        {"verbalizers": {"a": "yes", "b": "Yes"}},
        {"verbalizers": {"a": "", "b": "no"}},
        {"verbalizers": {"a": " yes", "b": "no"}},
        {"verbalizers": {"a": "two\nlines", "b": "no"}},
        {"field_names": {"text": "Label"}},
        {"field_names": {"text": "Te:xt"}},
        {"query": "two\nlines"},
        {"train": [Example({"text": "x"}, "c", "u1")]},
        {"test": [Example({"text": " "}, "a", "u2")]},
    ):
        with pytest.raises(TaskDataError):
            Task(**{**base, **bad})


# ---- custom files -----------------------------------------------------------------------------------

LABELS3 = ("sports", "business", "world")


def rows(n_per_label=40, labels=LABELS3, pair=False):
    out = []
    for i in range(n_per_label):
        for label in labels:
            row = {"text": f'{label} story {i}, with a "quote"', "label": label}
            if pair:
                row["other"] = f"second text {i} for {label}"
            out.append(row)
    return out


def write(path: Path, records: list[dict], fmt: str) -> Path:
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        return path
    if fmt == "tsv":  # GLUE-style: no quoting at all
        lines = ["\t".join(records[0])] + ["\t".join(r.values()) for r in records]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    return path


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
@pytest.mark.parametrize("pair", [False, True])
def test_custom_good_files(tmp_path, fmt, pair):
    path = write(tmp_path / f"data.{fmt}", rows(pair=pair), fmt)
    text_columns = ["text", "other"] if pair else ["text"]
    task = load_custom(path, text_columns, "label", name="news")
    assert task.labels == ("business", "sports", "world")  # sorted
    assert task.verbalizers == {label: label for label in task.labels}
    assert task.text_fields == tuple(text_columns)
    assert sorted(ex.label for ex in task.train) == sorted(list(task.labels) * 16)
    assert sorted(ex.label for ex in task.dev) == sorted(list(task.labels) * 16)
    assert len(task.test) == 12 and {ex.label for ex in task.test} == set(task.labels)  # 4 of each label's 8 left
    assert len(task.unlabeled) == 12
    assert task.train[0].fields["text"].endswith('"quote"')  # quotes stay literal in every format
    everything = [key(ex.fields) for ex in task.train + task.dev + task.test] + [key(f) for f in task.unlabeled]
    assert len(everything) == len(set(everything)) == 120
    ex = task.test[0]
    assert task.parse_generation(continuation(task, ex.fields)) == ex.fields
    same = load_custom(path.read_bytes(), text_columns, "label", name="news", filename=path.name)
    assert [e.uid for e in same.train] == [e.uid for e in task.train]
    other = load_custom(path, text_columns, "label", seed=21)
    assert {e.uid for e in other.train} != {e.uid for e in task.train}


def test_custom_numeric_labels_are_their_own_answers_and_bom_is_ignored(tmp_path):
    labels = ("0", "1", "2", "10")
    path = tmp_path / "d.csv"
    write(path, rows(labels=labels), "csv")
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    task = load_custom(path, ["text"], "label", k=4, max_test=5)
    assert task.labels == labels and task.verbalizers == {label: label for label in labels}
    assert len(task.test) <= 5 + len(labels)


def test_an_import_with_phrase_and_punctuation_labels_reads_them_as_words_never_letters(tmp_path):
    labels = ("World", "Sports", "Business", "Sci/Tech", "not_relevant", "1 star")
    path = write(tmp_path / "news.csv", [{"text": f"item {n}", "topic": labels[n % 6]} for n in range(120)], "csv")
    task = load_custom(path, ["text"], "topic", k=4)
    assert task.verbalizers == {"World": "world", "Sports": "sports", "Business": "business", "Sci/Tech": "sci/tech",
                                "not_relevant": "not relevant", "1 star": "1 star"}
    assert task.query == "Topic:"  # the label column's own name, tried first
    assert task.query_candidates == ("Label:", "Which label fits: " + ", ".join(task.verbalizers[l] for l in
                                                                                task.labels) + "? Answer:")
    assert "letter" not in " ".join([task.query, *task.query_candidates])


@pytest.mark.parametrize("answers,message", [
    ({"Sports": ""}, "empty"),
    ({"Sports": "world"}, "same answer text"),
    ({"Cooking": "food"}, "unknown label"),
])
def test_bad_answers_get_one_clear_line(tmp_path, answers, message):
    path = write(tmp_path / "news.csv", [{"text": f"item {n}", "topic": ("World", "Sports")[n % 2]}
                                         for n in range(80)], "csv")
    with pytest.raises(TaskDataError, match=message):
        load_custom(path, ["text"], "topic", k=4, verbalizers=answers)


def test_a_query_line_of_the_users_is_tried_first_with_the_defaults(tmp_path):
    path = write(tmp_path / "news.csv", [{"text": f"item {n}", "topic": ("World", "Sports")[n % 2]}
                                         for n in range(80)], "csv")
    task = load_custom(path, ["text"], "topic", k=4, query="Subject:")
    assert (task.query, task.query_candidates) == ("Subject:", ("Topic:", "Label:",
                                                                "Which label fits: sports, world? Answer:"))


def test_chosen_answers_replace_the_defaults_of_their_labels_only(tmp_path):
    path = write(tmp_path / "news.csv", [{"text": f"item {n}", "topic": ("World", "Sci/Tech")[n % 2]}
                                         for n in range(80)], "csv")
    task = load_custom(path, ["text"], "topic", k=4, verbalizers={"Sci/Tech": "science and technology"})
    assert task.verbalizers == {"Sci/Tech": "science and technology", "World": "world"}


def test_custom_label_names_fix_the_order(tmp_path):
    path = write(tmp_path / "d.jsonl", rows(), "jsonl")
    task = load_custom(path, ["text"], "label", label_names=["world", "sports", "business"])
    assert task.labels == ("world", "sports", "business")


BAD_FILES = [
    # (case id, file content as bytes or rows, kwargs, message pattern)
    ("missing column", rows(), {"text_columns": ["body"]}, r"no column 'body'.*'text', 'label'"),
    ("empty", b"", {}, "empty"),
    ("header only", b"text,label\n", {}, "no data rows"),
    ("latin-1", "text,label\ncaf\xe9 au lait,a\n".encode("latin-1"), {}, "not UTF-8.*Latin-1.*save it with UTF-8"),
    ("too large", rows(), {"max_bytes": 100}, r"is \d+\.\d kB \(\d+ bytes\), over the 0\.1 kB limit \(100 bytes\)"),
    ("one label", rows(labels=("only",)), {}, "1 distinct label.*'only'"),
    ("21 labels", rows(n_per_label=2, labels=tuple(f"l{i}" for i in range(21))), {}, "21 distinct labels.*at most 20"),
    ("unknown label", rows(), {"label_names": ["sports", "business"]}, "not in the label order given: 'world'"),
    ("too few", rows(n_per_label=20), {}, "has 20 rows; each label needs at least 33"),
    ("empty text", rows()[:5] + [{"text": "  ", "label": "world"}] + rows()[5:], {}, "line 7: column 'text' is empty"),
    ("too many rows", rows(), {"max_rows": 50}, "more than 50 rows"),
]


@pytest.mark.parametrize("case,content,kwargs,pattern", BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_custom_bad_files(tmp_path, case, content, kwargs, pattern):
    path = tmp_path / "data.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        write(path, content, "csv")
    args = {"text_columns": ["text"], "label_column": "label", **kwargs}
    with pytest.raises(TaskDataError, match=pattern):
        load_custom(path, **args)


def test_custom_bad_jsonl_and_columns(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": \n', encoding="utf-8")
    with pytest.raises(TaskDataError, match="line 2 is not valid JSON"):
        load_custom(path, ["text"], "label")
    path = tmp_path / "d.csv"
    path.write_text("text,label\na,b,c\n", encoding="utf-8")
    with pytest.raises(TaskDataError, match="3 values but the header has 2 columns"):
        load_custom(path, ["text"], "label")
    with pytest.raises(TaskDataError, match="one or two text columns"):
        load_custom(path, ["a", "b", "c"], "label")


def test_preview_file(tmp_path):
    path = write(tmp_path / "d.tsv", rows(pair=True), "tsv")
    columns, head = preview_file(path, n=3)
    assert columns == ["text", "label", "other"] and len(head) == 3
    assert head[0] == ['sports story 0, with a "quote"', "sports", "second text 0 for sports"]
    columns, head = preview_file(json.dumps(rows()[:2]).encode(), filename="x.json")
    assert columns == ["text", "label"] and len(head) == 2
    with pytest.raises(TaskDataError, match="not UTF-8"):
        preview_file(b"\xff\xfetext", filename="x.csv")


def test_load_hub_unreachable_raises_task_data_error():
    # A subprocess, because the hub's offline switch is read when huggingface_hub is first imported.
    code = (
        "from retrikt.tasks import load_hub, TaskDataError\n"
        "try:\n"
        "    load_hub('retrikt-tests/no-such-dataset', None, ['text'], 'label')\n"
        "except TaskDataError as err:\n"
        "    print('TaskDataError:', err)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert "TaskDataError:" in out.stdout, out.stderr[-2000:]
    assert "not reachable" in out.stdout and "no-such-dataset" in out.stdout


def test_load_hub_builds_a_task_from_a_local_dataset_folder(tmp_path):
    # load_dataset also accepts a local folder; parquet keeps the ClassLabel names, and a test split whose
    # labels are all -1 (as in GLUE) must be ignored in favour of the labelled validation split.
    code = f"""
import datasets
from retrikt.tasks import load_hub
label = datasets.ClassLabel(names=["neg", "pos"])
features = datasets.Features({{"sentence": datasets.Value("string"), "label": label}})
def part(n, offset, labelled=True):
    return datasets.Dataset.from_dict(
        {{"sentence": [f"text {{i}}" for i in range(offset, offset + n)],
          "label": [i % 2 if labelled else -1 for i in range(n)]}}, features=features)
root = {str(tmp_path / "ds")!r}
part(100, 0).to_parquet(root + "/train.parquet")
part(20, 1000).to_parquet(root + "/validation.parquet")
part(10, 2000, labelled=False).to_parquet(root + "/test.parquet")
task = load_hub(root, None, ["sentence"], "label", k=8)
print(task.labels, len(task.train), len(task.dev), len(task.test), len(task.unlabeled), task.verbalizers)
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[-2] == "('neg', 'pos') 16 16 20 68 {'neg': 'neg', 'pos': 'pos'}"


def test_the_teacher_labels_whole_sst2_sentences_that_no_split_holds():
    from retrikt.tasks.builtin import teacher_pool

    pool = teacher_pool(load_builtin("SST-2", seed=13))
    texts = [f["sentence"] for f in pool]
    assert len(texts) == len(set(texts)) > 6000
    held = set()
    for seed in KSHOT_SEEDS:
        task = load_builtin("SST-2", seed=seed)
        held |= {e.fields["sentence"] for e in task.train + task.dev + task.test}
    assert not held & set(texts)
    # whole sentences, not the treebank's phrases: no pool text is a whole-token span of another
    sample = texts[:300]
    padded = {f" {t} " for t in texts}
    assert not any(f" {s} " in other and f" {s} " != other for s in sample for other in padded)


def test_other_tasks_label_their_own_unlabeled_inputs():
    from retrikt.tasks.builtin import teacher_pool

    task = load_builtin("RTE")
    assert teacher_pool(task) == list(task.unlabeled)
