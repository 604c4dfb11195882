"""Downstream value of step 2: student + retrieval accuracy with a step-1-only store vs a store that includes PPO
samples, at an equal number of store entries (per label).

Usage: python -m bench.ppo_downstream --step1-runs DIR --variant gate_margin_novelty [--seeds 13 21]
                                      [--ppo-workspace DIR] [--workspace DIR]
       python -m bench.ppo_downstream --render   # rewrite the json as it is and rebuild ppo.md

Needs the `bench/ppo.py` run of that setting and seed (its store holds the PPO samples it kept). Arm "step 1": a
copy of the step-1 run, store as step 1 left it. Arm "with PPO": another copy of the step-1 run into which the PPO
entries are imported (with their stored embeddings), and from which, per label, as many step-1 generated entries
as that label gained PPO entries are removed (a seeded random choice), so both stores hold the same number of
entries per label. Copies keep the run's name, each arm in a workspace of its own (the store collection is named
after the run). Both arms then train the default student (same config
and seed) and are evaluated on the SST-2 test split. Writes `bench/results/ppo_downstream.json` and rebuilds `ppo.md`.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402
import torch  # noqa: E402

from retrikt.config import RunConfig, override, save_yaml  # noqa: E402
from retrikt.context import run_store  # noqa: E402
from retrikt.runs import Run, open_run  # noqa: E402
from retrikt.store.embed import default_embedder  # noqa: E402
from retrikt.store.knowledge_store import KnowledgeStore, collection_name  # noqa: E402
from retrikt.student.evaluate import test_subset  # noqa: E402
from retrikt.student.retrieval import predict  # noqa: E402
from retrikt.student.stage import BETA_GRID, load_students, run_student  # noqa: E402
from retrikt.tasks import task_of_run  # noqa: E402
from retrikt.teacher.load import load_teacher  # noqa: E402

from bench.report import entries, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parent

STEP1_SOURCE, PPO_SOURCE = "generated:step1", "generated:ppo"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def quiet(stage, done, total, info):
    pass


def copy_run(source: Path, workspace: Path, cache: Path) -> Run:
    workspace.mkdir(parents=True, exist_ok=True)
    if not (workspace / "cache").exists():
        (workspace / "cache").symlink_to(cache.resolve(), target_is_directory=True)
    target = workspace / "runs" / source.name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    run = open_run(workspace, source.name)
    run.config = override(run.config, {"workspace": str(workspace), "run_name": source.name})
    save_yaml(run.config, run.config_path)
    return run


def ppo_entries(ppo_run: Path, task) -> tuple[list, np.ndarray]:
    """The PPO entries of a bench run and their stored vectors (its store's collection is named after the run)."""
    store = KnowledgeStore(path=ppo_run / "store", collection=collection_name(task.name, ppo_run.name),
                           embedder=default_embedder(), task_labels=list(task.labels))
    entries = store.list(source=PPO_SOURCE)
    if not entries:
        raise SystemExit(f"no {PPO_SOURCE} entries in {ppo_run}")
    found = store.lookup([e.id for e in entries], vectors=True)
    return [found[e.id][0] for e in entries], np.stack([found[e.id][1] for e in entries])


def equalise(run: Run, seed: int, entries: list, vectors: np.ndarray) -> dict:
    """Import the PPO entries, then remove per label as many step-1 generated entries; returns the counts."""
    store = run_store(run, task_of_run(run))
    store.add(entries, vectors)
    rng = random.Random(seed)
    counts = {}
    for label in task_of_run(run).labels:
        ppo = store.list(label=label, source=PPO_SOURCE)
        step1 = store.list(label=label, source=STEP1_SOURCE)
        drop = rng.sample([e.id for e in step1], min(len(ppo), len(step1)))
        store.delete(drop)
        counts[label] = {"ppo": len(ppo), "step1_kept": len(step1) - len(drop)}
    counts["total"] = store.count()
    return counts


def store_counts(run: Run) -> dict:
    store = run_store(run, task_of_run(run))
    out = {label: {"step1": len(store.list(label=label, source=STEP1_SOURCE))} for label in task_of_run(run).labels}
    out["total"] = store.count()
    return out


def test_by_beta(run: Run) -> dict[str, float]:
    """Test accuracy of the run's trained retrieval student at each beta of the stage's grid (nothing retrained).

    The rule's beta differs between the arms (and the beta guard came after the first arms were trained), so each
    arm is also scored at every fixed beta: the same beta on both arms compares the stores alone."""
    task = task_of_run(run)
    student_model, _, index, _ = load_students(run, run_store(run, task))
    examples = test_subset(task, None)
    texts = [task.serialize(e.fields) for e in examples]
    gold = np.array([task.label_index(e.label) for e in examples])
    cfg = run.config.student
    pred = predict(student_model, index, texts, cfg.k, cfg.temperature, 1.0)  # mixed at beta 1 = the vote alone
    return {str(b): round(float((((1 - b) * pred.student + b * pred.mixed).argmax(-1) == gold).mean()), 4)
            for b in BETA_GRID}


def student(run: Run, teacher) -> dict:
    started = time.perf_counter()
    config = override(RunConfig(), {"task": run.config.task, "seed": run.config.seed,
                                    "workspace": run.config.workspace})
    run_student(config, run.name, quiet, teacher=teacher)
    summary = json.loads(run.eval_summary_path.read_text())
    items = run.summary().get("student", {}).get("items")
    systems = summary["systems"]
    return {"student_retrieval": systems["student_retrieval"]["accuracy"], "student": systems["student"]["accuracy"],
            "beta": systems["student_retrieval"].get("beta"), "items": items,
            "seconds": round(time.perf_counter() - started, 1), "by_beta": test_by_beta(run)}


def rescore(workspace: Path, path: Path) -> None:
    """Add `by_beta` to every arm recorded without it, from the students still in `workspace`."""
    data = json.loads(path.read_text())
    for key, row in entries(data).items():
        arms = [(row, "step1")] if key.startswith("step1-arm|") else [(row["step1"], "step1"),
                                                                       (row["with_ppo"], row["variant"])]
        seed = int(key.split("|")[1]) if key.startswith("step1-arm|") else row["seed"]
        for arm, folder in arms:
            run_dir = workspace / folder / "runs" / f"bench-SST-2-s{seed}"
            if "by_beta" in arm or not (run_dir / "student").is_dir():
                continue
            run = open_run(workspace / folder, run_dir.name)
            systems = json.loads(run.eval_summary_path.read_text())["systems"]
            if (systems["student_retrieval"]["accuracy"], systems["student"]["accuracy"]) != (
                    arm["student_retrieval"], arm["student"]):
                continue  # the folder holds a later training than this row (e.g. a row from older step-1 runs)
            arm["by_beta"] = test_by_beta(run)
            log(f"{key} {folder}: {arm['by_beta']}")
    write_json(path, data, __file__, indent=1, newline=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step1-runs", dest="step1_runs", type=Path)
    parser.add_argument("--variant")
    parser.add_argument("--seeds", type=int, nargs="+", default=[13, 21, 42, 87, 100])
    parser.add_argument("--ppo-workspace", dest="ppo_workspace", type=Path,
                        default=ROOT.parent / "workspace" / "ppo-bench")
    parser.add_argument("--workspace", type=Path, default=ROOT.parent / "workspace" / "ppo-downstream")
    parser.add_argument("--cache", type=Path, default=ROOT.parent / "workspace" / "cache")
    parser.add_argument("--rescore", action="store_true",
                        help="only add the per-beta test accuracies to arms recorded without them, then stop")
    parser.add_argument("--render", action="store_true",
                        help="run nothing: rewrite ppo_downstream.json as it is and rebuild ppo.md from it")
    args = parser.parse_args()
    path = ROOT / "results" / "ppo_downstream.json"
    if args.render:
        write_json(path, json.loads(path.read_text()), __file__, indent=1, newline=False)
        from bench.ppo import rebuild_report
        rebuild_report()
        return
    if not args.step1_runs and not args.rescore:
        parser.error("--step1-runs is required (unless --rescore or --render)")
    torch.set_num_threads(1)
    workspace = args.workspace.resolve()
    workspace.mkdir(parents=True, exist_ok=True)
    teacher = None
    if args.rescore:
        rescore(workspace, path)
        args.seeds = []
    elif not args.variant:
        parser.error("--variant is required (unless --rescore)")
    for seed in args.seeds:
        ppo_run = args.ppo_workspace / args.variant / "runs" / f"bench-SST-2-s{seed}"
        if args.variant.endswith("_batchref"):
            ppo_run = args.ppo_workspace / "runs" / f"ppo-SST-2-s{seed}-{args.variant.removesuffix('_batchref')}"
        if not (ppo_run / "ppo" / "adapter").is_dir():
            log(f"s{seed}: no finished PPO run {ppo_run.name}, skipped")
            continue
        if teacher is None:
            teacher = load_teacher(RunConfig().teacher, cache_dir=args.cache)
        data = json.loads(path.read_text()) if path.is_file() else {}
        base_key = f"step1-arm|{seed}"
        if base_key not in data:  # the step-1 arm does not depend on the PPO setting: trained once per seed
            base = copy_run(args.step1_runs / f"bench-SST-2-s{seed}", workspace / "step1", args.cache)
            data = json.loads(path.read_text()) if path.is_file() else {}
            data[base_key] = {"stores": store_counts(base), **student(base, teacher)}
            write_json(path, data, __file__, indent=1, newline=False)
        mixed = copy_run(args.step1_runs / f"bench-SST-2-s{seed}", workspace / args.variant, args.cache)
        counts = {"step1": data[base_key]["stores"],
                  "with_ppo": equalise(mixed, seed, *ppo_entries(ppo_run, task_of_run(mixed)))}
        log(f"s{seed}: stores {counts}")
        result = {"seed": seed, "variant": args.variant, "stores": counts,
                  "step1": {k: v for k, v in data[base_key].items() if k != "stores"},
                  "with_ppo": student(mixed, teacher)}
        log(f"s{seed}: student + retrieval {result['step1']['student_retrieval']:.4f} (step 1) vs "
            f"{result['with_ppo']['student_retrieval']:.4f} (with PPO)")
        data = json.loads(path.read_text()) if path.is_file() else {}
        data[f"{args.variant}|{seed}"] = result
        write_json(path, data, __file__, indent=1, newline=False)
    from bench.ppo import rebuild_report
    rebuild_report()
    print((ROOT / "results" / "ppo.md").read_text())


if __name__ == "__main__":
    main()
