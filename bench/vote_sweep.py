"""The vote's own levers on trained runs: k, temperature, per-class normalisation, teacher-confidence weighting.

Usage: python -m bench.vote_sweep WORKSPACE RUN [RUN ...] [--note TEXT]
       python -m bench.vote_sweep --render   # rewrite the md from the json

Each RUN must have a trained retrieval student (`run` or `student --from RUN`). Nothing is retrained: per run the
student encodes the test split and the held-out inputs of the `teacher` beta rule once, its key index returns the
32 nearest entries once, and every vote variant is computed from those. Beta is chosen per variant by the shipped
rule (agreement with the teacher's labels of the held-out inputs, ties to the larger beta, off when the run's teacher
trust check failed). Writes bench/results/vote_sweep.{json,md}: test accuracy at the chosen beta and of the vote
alone (beta 1), mean ± std over the runs.
"""
from __future__ import annotations


import numpy as np

from retrikt.context import run_store, run_teacher
from retrikt.runs import open_run
from retrikt.student.retrieval import neighbour_weights
from retrikt.student.stage import BETA_GRID, BETA_HELDOUT, heldout_inputs, load_students
from retrikt.tasks import task_of_run
from retrikt.teacher.scorer import run_scorer

from bench.report import runs_cli
from bench.stats import mean_std


K_MAX = 32


def variants() -> list[dict]:
    rows = [{"k": k, "tau": tau, "class_norm": False, "confidence": False}
            for k in (4, 8, 16, 32) for tau in (0.02, 0.05, 0.1, 1.0)]
    rows += [{"k": k, "tau": tau, "class_norm": norm, "confidence": conf}
             for k, tau in ((8, 0.05), (16, 0.1), (32, 0.1)) for norm, conf in ((True, False), (False, True), (True, True))]
    return rows


def vote(found_sims, found_soft, entry_weights, prior, v: dict) -> np.ndarray:
    """sum_j w_j soft_j over the first k neighbours; w = softmax(sim / tau) times the entry weight, times the
    neighbour's teacher margin (max - second max) when `confidence`; with `class_norm`, the vote is divided by the
    index's mean soft label (its class prior) and renormalised."""
    k = v["k"]
    sims, soft, weights = found_sims[:, :k], found_soft[:, :k], entry_weights[:, :k].copy()
    if v["confidence"]:
        ordered = np.sort(soft, axis=-1)
        weights = weights * np.clip(ordered[..., -1] - ordered[..., -2], 1e-3, None)
    out = (neighbour_weights(sims, v["tau"], weights)[..., None] * soft).sum(1)
    if v["class_norm"]:
        out = out / prior
        out = out / out.sum(-1, keepdims=True)
    return out


def sweep_run(workspace: str, name: str) -> dict:
    run = open_run(workspace, name)
    task = task_of_run(run)
    store = run_store(run, task)
    block = run.summary()["student"]
    student, _, index, shipped_beta = load_students(run, store)
    if index is None or not len(index):
        raise SystemExit(f"run {name} has no key index")
    labels = list(task.labels)
    test_texts = [task.serialize(e.fields) for e in task.test]
    gold = np.array([labels.index(e.label) for e in task.test])
    held = heldout_inputs(task, BETA_HELDOUT)
    held_texts = [task.serialize(f) for f in held]
    teacher_target = run_scorer(run, task, run_teacher(run)).probs(held).argmax(-1)
    trusted = (block.get("teacher_trust") or {}).get("trusted", True)

    def encoded(texts):
        probs, keys = student.encode(texts)
        return probs.astype(np.float64), index.query(keys, K_MAX)

    test_probs, test_found = encoded(test_texts)
    held_probs, held_found = encoded(held_texts)
    table = getattr(index, "base", index).table  # the live overlay wraps the built index
    if hasattr(table, "fetch"):
        table.fetch(list(table))
    prior = np.stack([table[i][0] for i in list(table)]).mean(0)
    results = []
    for v in variants():
        held_vote = vote(held_found.sims, held_found.soft, held_found.weights, prior, v)
        test_vote = vote(test_found.sims, test_found.soft, test_found.weights, prior, v)
        agreement = {b: float((((1 - b) * held_probs + b * held_vote).argmax(-1) == teacher_target).mean())
                     for b in BETA_GRID}
        beta = max(agreement, key=lambda b: (agreement[b], b)) if trusted else 0.0
        accuracy = {b: float((((1 - b) * test_probs + b * test_vote).argmax(-1) == gold).mean()) for b in BETA_GRID}
        results.append({**v, "beta": beta, "test": round(100 * accuracy[beta], 2),
                        "vote_alone": round(100 * accuracy[1.0], 2), "best_beta_test": round(100 * max(accuracy.values()), 2)})
    student_alone = round(100 * float((test_probs.argmax(-1) == gold).mean()), 2)
    return {"run": name, "seed": run.config.seed, "indexed": len(index), "shipped_beta": shipped_beta,
            "student_alone": student_alone, "prior": [round(float(p), 4) for p in prior], "variants": results}


def sweep_runs(workspace: str, names: list[str]) -> list[dict]:
    return [sweep_run(workspace, name) for name in names]


def render(data: dict) -> str:
    runs = data["runs"]
    seeds = ", ".join(str(r["seed"]) for r in runs)
    lines = ["# The vote's levers on trained students (SST-2 test)", "", data["note"], "",
             f"Runs: seeds {seeds}; student alone {mean_std([r['student_alone'] for r in runs])}. "
             "k = neighbours, tau = softmax temperature over cosine similarities, class norm = vote divided by the "
             "index's mean soft label, confidence = each neighbour also weighted by its teacher margin. 'chosen "
             "beta' is the shipped rule on held-out inputs; 'best beta on test' is an oracle, for reference only.", "",
             "| k | tau | class norm | confidence | student + retrieval (chosen beta) | vote alone (beta 1) "
             "| best beta on test (oracle) | betas |", "|---|---|---|---|---|---|---|---|"]
    for i, v in enumerate(runs[0]["variants"]):
        cells = [r["variants"][i] for r in runs]
        lines.append(f"| {v['k']} | {v['tau']} | {'yes' if v['class_norm'] else ''} | "
                     f"{'yes' if v['confidence'] else ''} | {mean_std([c['test'] for c in cells])} | "
                     f"{mean_std([c['vote_alone'] for c in cells])} | "
                     f"{mean_std([c['best_beta_test'] for c in cells])} | "
                     + ", ".join(str(c["beta"]) for c in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    runs_cli(__doc__, "vote_sweep", __file__, sweep_runs, render)


if __name__ == "__main__":
    main()
