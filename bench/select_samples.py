"""Over-generate and select: the baseline step 2 must beat (SST-2, equal store size, downstream student + retrieval).

Usage: python -m bench.select_samples --workspace DIR --seeds 13 21 [--factor 3] [--arms random select-3x ...]
       python -m bench.select_samples --render    # rebuild select_samples.md from the json, running nothing

Per seed, one step-1 run generates `--factor` times the task's default samples per label (the pool, run
`pool<factor>-SST-2-s<seed>`, default settings otherwise). Each arm copies that run and keeps, per label, as many generated
entries as a default run stores (the pool's count divided by the factor), removing the rest; the train examples stay.
Then the default student trains on the arm's store and is scored on the SST-2 test split (the default beta rule,
and every fixed beta). Arms:

- `random`: a seeded uniform choice from the whole pool: the default step 1 in distribution (its control);
- `confident-3x`: the entries with the highest teacher probability of their intended label;
- `select-2x` / `select-3x`: from the first 2/3 of the pool (in generation order: what generating twice the
  default would have given) or the whole pool, `select_rows`: the entries the teacher labels as intended, near
  duplicates dropped, then greedy farthest-point selection in the store's key space from the most confident entry;
  when too few pass, the most confident of the rest fill up;
- `ppo-<setting>`: the `random` arm's store in which, per label, as many step-1 entries as a `bench/ppo.py` run of
  that setting on the same store (`--export-step1`, then `python -m bench.ppo --step1-runs ...`) stored PPO
  samples are replaced by them (`bench/ppo_downstream.py`'s `equalise`): step 2 as PPO, at the same store size.

The time an arm adds to the default run is the pool's own generation and labelling time per sample times the extra
samples it draws on. Writes `bench/results/select_samples.{json,md}`.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402
import torch  # noqa: E402

from retrikt.config import RunConfig, override  # noqa: E402
from retrikt.context import run_embedder, run_store  # noqa: E402
from retrikt.generate.metrics import distinct_n, self_bleu, tokenize  # noqa: E402
from retrikt.runs import open_run, read_summary, run_path  # noqa: E402
from retrikt.tasks import load_task, task_of_run  # noqa: E402
from retrikt.teacher.load import load_teacher  # noqa: E402

from bench.ppo_downstream import STEP1_SOURCE, copy_run, log, quiet, student  # noqa: E402
from bench.report import write_json, write_md  # noqa: E402
from bench.stats import mean_std  # noqa: E402

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "select_samples.json"

ARMS = {
    "random": "a random 1/3 of the pool (the default step 1's store, in distribution)",
    "confident-3x": "the 1/3 of the pool the teacher is most confident of (intended label)",
    "select-2x": "teacher agrees, dedup, farthest-point, from the first 2/3 of the pool",
    "select-3x": "teacher agrees, dedup, farthest-point, from the whole pool",
    "ppo-default": "the random arm with 64 a label of its step-1 entries replaced by PPO samples (PPO defaults)",
    "ppo-student_gap": "the same with PPO rewarding p_T(y) x (1 - p_S(y)) of a quick student",
    "ppo-key_novelty": "the same with PPO rewarding p_T(y) x distance to the store in that student's key space",
}


def pool_run(workspace: Path, seed: int, factor: int) -> str:
    """The seed's over-generated step-1 run (reused when finished)."""
    from retrikt.generate.generation import default_samples_per_label
    from retrikt.generate.stage import run_generate

    name = f"pool{factor}-SST-2-s{seed}"
    if read_summary(workspace, name).get("status") == "done":
        return name
    task = load_task("SST-2")
    default = RunConfig().generation.samples_per_label or default_samples_per_label(task)
    config = override(RunConfig(), {"task": "SST-2", "seed": seed, "workspace": str(workspace), "run_name": name,
                                    "generation.samples_per_label": factor * default, "generation.seed": seed})
    started = time.perf_counter()
    run_generate(config, quiet)
    log(f"{name}: step 1 with {factor * default} samples per label in {time.perf_counter() - started:.0f}s")
    return name


DEDUP_COSINE = 0.95  # design choice: store keys (MiniLM) of two wordings of one short review sit above ~0.9


def farthest_points(vectors: np.ndarray, n: int) -> list[int]:
    """Greedy farthest-point order over unit row vectors, from row 0: each next row is the one whose highest
    cosine to the rows already chosen is lowest. Returns min(n, rows) row indices."""
    if not len(vectors) or n <= 0:
        return []
    chosen = [0]
    nearest = vectors @ vectors[0]
    nearest[0] = np.inf
    while len(chosen) < min(n, len(vectors)):
        row = int(np.argmin(nearest))
        chosen.append(row)
        nearest = np.maximum(nearest, vectors @ vectors[row])
        nearest[chosen] = np.inf
    return chosen


def select_rows(confidence: np.ndarray, agrees: np.ndarray, vectors: np.ndarray, n: int) -> list[int]:
    """n rows of one label's samples: those the teacher labels as intended (`agrees`), most confident first, minus
    near duplicates of a kept one (cosine >= DEDUP_COSINE), thinned by farthest-point selection from the most
    confident; when fewer than n pass, the most confident of the rest fill up.

    `confidence`: the teacher's probability of the intended label per row; `vectors`: unit store keys."""
    order = [int(i) for i in np.argsort(-np.asarray(confidence), kind="stable")]
    kept: list[int] = []
    for i in order:
        if agrees[i] and (not kept or float((vectors[kept] @ vectors[i]).max()) < DEDUP_COSINE):
            kept.append(i)
    if len(kept) > n:
        kept = [kept[r] for r in farthest_points(vectors[kept], n)]
    taken = set(kept)
    return kept + [i for i in order if i not in taken][: n - len(kept)]


def intended_probability(entry) -> float:
    return float((entry.soft_labels or {}).get(entry.label, 0.0))


def select(entries: list, vectors: np.ndarray, n: int) -> list:
    """`select_rows` over one label's entries."""
    rows = select_rows(np.array([intended_probability(e) for e in entries]),
                       np.array([bool(e.agreement) for e in entries]), vectors, n)
    return [entries[i] for i in rows]


def ppo_variant(arm: str) -> str | None:
    return arm.removeprefix("ppo-") if arm.startswith("ppo-") else None


def choose(arm: str, entries: list, vectors: np.ndarray, n: int, factor: int, seed: int) -> list:
    """The arm's n entries of one label's pool (entries in generation order)."""
    if arm == "random":
        return random.Random(seed).sample(entries, n)
    if arm.startswith("confident-"):
        return sorted(entries, key=lambda e: -intended_probability(e))[:n]
    share = int(arm.removeprefix("select-").removesuffix("x"))
    if share > factor:
        raise SystemExit(f"arm {arm} needs a pool of at least {share}x")
    cut = len(entries) * share // factor
    return select(entries[:cut], vectors[:cut], n)


def prune(run, arm: str, factor: int, seed: int) -> dict:
    """Keep the arm's generated entries per label; returns the counts and what the store's generated entries are
    like (`generated_metrics`)."""
    task = task_of_run(run)
    store = run_store(run, task)
    out = {}
    for label in task.labels:
        pool = sorted(store.list(label=label, source=STEP1_SOURCE), key=lambda e: e.created)
        found = store.lookup([e.id for e in pool], vectors=True)
        vectors = np.stack([found[e.id][1] for e in pool]).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        n = len(pool) // factor
        keep = choose(arm, pool, vectors, n, factor, seed)
        store.delete(sorted({e.id for e in pool} - {e.id for e in keep}))
        out[label] = {"pool": len(pool), "kept": len(keep)}
    return {**out, **generated_metrics(store, task)}


def generated_metrics(store, task) -> dict:
    """Teacher agreement with the intended label, mean p(intended), Self-BLEU, distinct-2 and mean words over the
    store's generated entries (step 1 and PPO)."""
    kept = [e for e in store.list() if e.source.startswith("generated:")]
    texts = [" ".join(e.fields[f] for f in task.text_fields) for e in kept]
    return {"teacher_agrees": round(float(np.mean([bool(e.agreement) for e in kept])), 4),
            "intended_probability": round(float(np.mean([intended_probability(e) for e in kept])), 4),
            "self_bleu": round(self_bleu(texts), 4), "distinct_2": round(distinct_n(texts, 2), 4),
            "mean_words": round(float(np.mean([len(tokenize(t)) for t in texts])), 2), "total": store.count()}


def step1_from_pool(pools: Path, name: str, target: Path, seed: int, factor: int) -> Path:
    """The pool's `random` arm as a default-size step-1 run `bench-SST-2-s<seed>` in `target` (for bench/ppo.py):
    the run folder is copied, its store collection renamed after the new run, then pruned as the `random` arm."""
    import shutil

    from retrikt.config import save_yaml
    from retrikt.store.knowledge_store import KnowledgeStore, collection_name

    new = f"bench-SST-2-s{seed}"
    folder = run_path(target, new)
    if folder.is_dir():
        return folder
    shutil.copytree(run_path(pools, name), folder)
    run = open_run(target, new)
    task = task_of_run(run)
    # Opened under its old name: opening the run's store (`run_store`) would create the new, empty collection.
    store = KnowledgeStore(path=run.store_dir, collection=collection_name(task.name, name),
                           embedder=run_embedder(run.config), task_labels=list(task.labels))
    store._col.modify(name=collection_name(task.name, new))
    del store
    run.config = override(run.config, {"workspace": str(target), "run_name": new})
    save_yaml(run.config, run.config_path)
    log(f"{new}: {prune(run, 'random', factor, seed)}")
    return folder


def pool_costs(workspace: Path, name: str) -> dict:
    generate = read_summary(workspace, name).get("generate", {})
    samples = generate.get("generated") or 0
    seconds = (generate.get("generate_seconds") or 0) + (generate.get("label_and_store_seconds") or 0)
    return {"pool_samples": samples, "pool_seconds": round(seconds, 1),
            "seconds_per_sample": round(seconds / samples, 4) if samples else None}


def render(data: dict) -> None:
    rows = [v for k, v in data.items() if k != "written_by"]
    factor = max((r["factor"] for r in rows), default=3)
    lines = ["# Over-generate and select (SST-2): the baseline step 2 must beat", "",
             f"Pool: {factor}x the default samples per label, one step-1 run per seed; every arm keeps the default "
             "run's store size per label and trains the default student (1 torch thread). Test accuracy (%) over the "
             "872 SST-2 test sentences, mean ± std over the seeds; `beta 1` = every arm at the same fixed beta (the "
             "stores alone compared), `rule` = each arm's own held-out beta rule (the product).", "",
             "| arm | what it keeps | seeds | student + retrieval (rule) | at beta 1 | student alone | "
             "− random (rule) | − random (beta 1) | teacher agrees (%) | Self-BLEU | distinct-2 | mean words | "
             "minutes added to the default run |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    by_seed = {(r["arm"], r["seed"]): r for r in rows}
    for arm, what in ARMS.items():
        mine = [r for r in rows if r["arm"] == arm]
        if not mine:
            continue
        seeds = sorted(r["seed"] for r in mine)
        base = [by_seed.get(("random", r["seed"])) for r in mine]
        agree = [r["kept"]["teacher_agrees"] if "teacher_agrees" in r["kept"] else  # rows written per label
                 np.mean([v["teacher_agrees"] for v in r["kept"].values() if isinstance(v, dict) and "pool" in v])
                 for r in mine]
        delta_rule = [r["student_retrieval"] - b["student_retrieval"] if b else None for r, b in zip(mine, base)]
        delta_b1 = [r["by_beta"]["1.0"] - b["by_beta"]["1.0"] if b else None for r, b in zip(mine, base)]
        lines.append(
            f"| {arm} | {what} | {', '.join(map(str, seeds))} | "
            f"{mean_std([r['student_retrieval'] for r in mine], 100)} | "
            f"{mean_std([r['by_beta']['1.0'] for r in mine], 100)} | {mean_std([r['student'] for r in mine], 100)} | "
            f"{mean_std(delta_rule, 100, signed=True) if arm != 'random' else ''} | "
            f"{mean_std(delta_b1, 100, signed=True) if arm != 'random' else ''} | {mean_std(agree, 100)} | "
            f"{mean_std([r['kept']['self_bleu'] for r in mine], digits=3)} | "
            f"{mean_std([r['kept']['distinct_2'] for r in mine], digits=3)} | "
            f"{mean_std([r['kept']['mean_words'] for r in mine])} | {mean_std([r['minutes_added'] for r in mine])} |")
    lines += ["", "Per seed, student + retrieval with the rule's beta (beta chosen):", "",
              "| arm | " + " | ".join(f"s{s}" for s in sorted({r['seed'] for r in rows})) + " |",
              "|---|" + "---|" * len({r['seed'] for r in rows})]
    for arm in ARMS:
        cells = [by_seed.get((arm, s)) for s in sorted({r["seed"] for r in rows})]
        if any(cells):
            lines.append(f"| {arm} | " + " | ".join(
                f"{100 * c['student_retrieval']:.1f} ({c['beta']})" if c else "–" for c in cells) + " |")
    write_md(ROOT / "results" / "select_samples.md", "\n".join(lines) + "\n", __file__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=ROOT.parent / "workspace" / "select-bench")
    parser.add_argument("--cache", type=Path, default=ROOT.parent / "workspace" / "cache")
    parser.add_argument("--seeds", type=int, nargs="+", default=[13, 21, 42, 87, 100])
    parser.add_argument("--factor", type=int, default=3)
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--ppo-workspace", dest="ppo_workspace", type=Path,
                        default=ROOT.parent / "workspace" / "ppo-bench",
                        help="where `python -m bench.ppo` ran on the exported step-1 runs (for the ppo-* arms)")
    parser.add_argument("--pool-only", action="store_true", help="only make the pools")
    parser.add_argument("--export-step1", dest="export_step1", type=Path,
                        help="also write each pool's random arm as a step-1 run bench-SST-2-s<seed> in this workspace")
    parser.add_argument("--render", action="store_true")
    args = parser.parse_args()
    if args.render:
        data = json.loads(RESULTS.read_text())
        write_json(RESULTS, data, __file__, indent=1, newline=False)
        render(data)
        return
    torch.set_num_threads(1)
    workspace = args.workspace.resolve()
    pools = workspace / "pools"
    pools.mkdir(parents=True, exist_ok=True)
    if not (pools / "cache").exists():
        (pools / "cache").symlink_to(args.cache.resolve(), target_is_directory=True)
    teacher = None
    for seed in args.seeds:
        name = pool_run(pools, seed, args.factor)
        if args.export_step1:
            step1_from_pool(pools, name, args.export_step1, seed, args.factor)
        if args.pool_only:
            continue
        costs = pool_costs(pools, name)
        for arm in args.arms:
            key = f"{arm}|{seed}"
            data = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
            if key in data:
                continue
            variant = ppo_variant(arm)
            ppo_run = args.ppo_workspace / str(variant) / "runs" / f"bench-SST-2-s{seed}"
            if variant and not (ppo_run / "ppo" / "adapter").is_dir():
                log(f"s{seed} {arm}: no finished PPO run in {ppo_run}, skipped")
                continue
            if teacher is None:
                teacher = load_teacher(RunConfig().teacher, cache_dir=args.cache)
            run = copy_run(run_path(pools, name), workspace / arm, args.cache)
            kept = prune(run, "random" if variant else arm, args.factor, seed)
            if variant:
                from bench.ppo_downstream import equalise, ppo_entries

                kept["with_ppo"] = equalise(run, seed, *ppo_entries(ppo_run, task_of_run(run)))
                kept.update(generated_metrics(run_store(run, task_of_run(run)), task_of_run(run)))
                ppo_row = json.loads((ROOT / "results" / "ppo.json").read_text())["results"][
                    f"SST-2|{variant}|{seed}"]
                added = ppo_row["ppo_minutes"]
            else:
                share = int(arm.split("-")[1].removesuffix("x")) if arm != "random" else 1
                added = (share - 1) / args.factor * costs["pool_seconds"] / 60
            result = {"arm": arm, "seed": seed, "factor": args.factor, "kept": kept, **costs,
                      "minutes_added": round(added, 2), **student(run, teacher)}
            log(f"s{seed} {arm}: student + retrieval {result['student_retrieval']:.4f} "
                f"(beta {result['beta']}), at beta 1 {result['by_beta']['1.0']:.4f}")
            data = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
            data[key] = result
            write_json(RESULTS, data, __file__, indent=1, newline=False)
            render(data)
    if RESULTS.is_file():
        print((ROOT / "results" / "select_samples.md").read_text())


if __name__ == "__main__":
    main()
