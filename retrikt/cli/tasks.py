"""`python -m retrikt task ...`: save an uploaded file or a hub dataset as a named task that runs can use."""
from __future__ import annotations

import json
import sys

from ..config import RunConfig


def add_parser(sub) -> None:
    task = sub.add_parser("task", help="save a CSV/TSV/JSONL file or a HF dataset as a named task; list saved tasks")
    actions = task.add_subparsers(dest="task_command", required=True)
    imp = actions.add_parser("import", help="build a task from a CSV/TSV/JSONL/JSON file and save it")
    imp.add_argument("file")
    imp.add_argument("--test", metavar="FILE", help="the dataset's own test split, same columns (without it, test "
                                                   "rows are cut from FILE)")
    imp.add_argument("--labels", nargs="+", metavar="LABEL",
                     help="the labels in the order the studio shows them (e.g. a rating scale); default: sorted")
    imp.add_argument("--answers", nargs="+", metavar="LABEL=TEXT",
                     help="the words the teacher answers with for a label (default: the label name in lower case, "
                          "underscores as spaces), e.g. --answers 'Sci/Tech=science and technology'")
    imp.add_argument("--query", metavar="LINE",
                     help="a query line of your own, e.g. 'Sentiment:'; the teacher's scorer tries it with the label "
                          "column's name, 'Label:' and a question, and keeps the best on the train rows")
    hub = actions.add_parser("hub", help="build a task from a datasets.load_dataset id and save it")
    hub.add_argument("dataset", help="hub id (e.g. glue) or a local dataset folder")
    hub.add_argument("--config", dest="dataset_config", help="dataset config (e.g. sst2)")
    for command in (imp, hub):
        command.add_argument("--name", required=True, help="task name (3-64 of letters, digits, . _ -)")
        command.add_argument("--text", action="append", required=True, metavar="COLUMN",
                             help="text column; give it twice for sentence pairs")
        command.add_argument("--label", required=True, metavar="COLUMN", help="label column")
        command.add_argument("--seed", type=int, default=13,
                             help="seed of the saved k-shot split (`run --seed N` draws seed N's from the same rows)")
        command.add_argument("--k", type=int, default=16, help="labelled examples per label in train, and in dev")
    listing = actions.add_parser("list", help="list the built-in and saved tasks")
    for command in (imp, hub, listing):
        command.add_argument("--workspace", default=RunConfig().workspace)


def main_task(args) -> int:
    from ..studio.setup_form import describe_task, parse_answers, save_hub_task, save_uploaded_task
    from ..tasks import BUILTIN_TASKS, list_saved, load_saved, tasks_root

    try:
        if args.task_command == "list":
            print(json.dumps({"builtin": list(BUILTIN_TASKS), "saved": list_saved(args.workspace)}))
            return 0
        if args.task_command == "import":
            name = save_uploaded_task(args.workspace, args.name, args.file, args.text, args.label, seed=args.seed,
                                      test_path=args.test, k=args.k, label_names=args.labels,
                                      answers=parse_answers(args.answers), query=args.query)
        else:
            name = save_hub_task(args.workspace, args.name, args.dataset, args.dataset_config, args.text, args.label,
                                 seed=args.seed, k=args.k)
    except OSError as exc:  # a file the user named that cannot be read
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"saved task {name}: {describe_task(load_saved(tasks_root(args.workspace) / name))}")
    print(f"check the teacher on it first: python -m retrikt check --task {name} --workspace {args.workspace}")
    print(f"use it with: python -m retrikt run --task {name} --workspace {args.workspace}   (all steps; "
          f"`generate` for step 1 only)")
    print(f"`run --seed N` draws seed N's {args.k} train and {args.k} dev examples per label from the same rows; "
          "the test split stays the same for every seed")
    if args.task_command == "import" and args.test:
        print("the test file is the test split: at most 1,000 of its rows (a seeded sample), without rows that "
              "repeat a train or dev input")
    return 0
