"""What the benchmarks measured, read from `bench/results/` where the studio quotes it (never typed into the UI).

Each reader returns None when its results file is absent (an installed library without the repository's bench/),
so the caller says less rather than something unmeasured.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"


@dataclass(frozen=True)
class PPOGain:
    """Step 2's default PPO against step 1 alone on SST-2: student + retrieval at an equal store size and the same
    beta (1) on both arms, per seed, and PPO's minutes of training."""

    points: float
    std: float
    seeds: int
    improved: int
    """Seeds on which student + retrieval rose."""
    minutes: float

    def sentence(self) -> str:
        return (f"measured on SST-2: {self.points:+.1f} ± {self.std:.1f} points of student + retrieval ({self.seeds} "
                f"seeds, up on {self.improved}) for about {self.minutes:.0f} min of PPO")


def _read(name: str):
    try:
        return json.loads((RESULTS / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def ppo_gain() -> PPOGain | None:
    """From bench/results/ppo_downstream.json (the `default` rows against `step1-arm`) and ppo.json (minutes)."""
    downstream, ppo = _read("ppo_downstream.json"), _read("ppo.json")
    if not downstream or not ppo:
        return None
    gains = [row["with_ppo"]["by_beta"]["1.0"] - row["step1"]["by_beta"]["1.0"]
             for key, row in downstream.items() if key.startswith("default|") and "by_beta" in row.get("step1", {})]
    minutes = [row["ppo_minutes"] for key, row in ppo.get("results", {}).items()
               if key.startswith("SST-2|default|") and "ppo_minutes" in row]
    if len(gains) < 2 or not minutes:
        return None
    return PPOGain(points=100 * statistics.mean(gains), std=100 * statistics.stdev(gains), seeds=len(gains),
                   improved=sum(g > 0 for g in gains), minutes=statistics.mean(minutes))


def _quick_runs() -> list[dict]:
    return [r for r in (_read("quick_run.json") or {}).get("runs", []) if r.get("full_test")]


def _quick_cores() -> str:
    """' on N CPU cores' when bench/results/quick_run.json recorded the machine's cores (older files did not)."""
    cpus = (_read("quick_run.json") or {}).get("cpus")
    return f" on {cpus} CPU cores" if isinstance(cpus, int) else ""


def quick_run_minutes() -> str | None:
    """The quick classroom run's measured minutes as a studio job (a span over its seeds) and the machine's cores
    when known, from bench/results/quick_run.json, e.g. '3.8–4.5 minutes on 2 CPU cores'."""
    minutes = sorted(r["seconds"] / 60 for r in _quick_runs())
    if not minutes:
        return None
    span = f"{minutes[0]:.1f}" if len(minutes) == 1 else f"{minutes[0]:.1f}–{minutes[-1]:.1f}"
    return f"{span} minutes{_quick_cores()}"


def _default_stored(task: str) -> int | None:
    """Samples a default step 1 stored on `task`, from bench/results/generation.json."""
    stored = (((_read("generation.json") or {}).get(task) or {}).get("summary") or {}).get("generate", {}).get("stored")
    return stored if isinstance(stored, int) else None


def quick_run_cost() -> str | None:
    """What the quick classroom run costs, from bench/results/quick_run.json: its minutes as a studio job, and its
    student + retrieval on the whole test split per seed (with what a default step 1 stored, from generation.json,
    for scale)."""
    runs = _quick_runs()
    if not runs:
        return None
    scores = " and ".join(f"{100 * r['full_test']['student_retrieval']:.1f}%" for r in runs)
    seeds = " and ".join(str(r["seed"]) for r in runs)
    tasks = sorted({r["task"] for r in runs})
    with_ppo = "; those runs did step 2, which it now skips" if any(r["stages"].get("ppo") for r in runs) else ""
    stored = " and ".join(str(r["stored"]) for r in runs)
    default = _default_stored(tasks[0]) if len(tasks) == 1 else None
    scale = f" where a default step 1 on {tasks[0]} stored {default}" if default else ""
    on = [r for r in runs if r.get("beta")]
    if len(on) == len(runs):
        retrieval = " Retrieval was on at the end of every measured run."
    else:
        # Said before a class starts it: on a store this small the dev rule may switch the neighbours' vote off.
        retrieval = (f" Retrieval was on at the end of {len(on)} of the {len(runs)} measured runs (beta "
                     f"{', '.join(str(r.get('beta')) for r in runs)}): on a store this small the dev rule may switch "
                     "it off, and the run then shows the steps without the neighbours' vote.")
    return (f"Measured as a studio job (one thread{with_ppo}): {quick_run_minutes()} on {', '.join(tasks)}. It "
            f"costs accuracy: on the whole test split its student + retrieval scored {scores} (seeds {seeds}), "
            f"because it stored {stored} samples{scale}.{retrieval}")


@dataclass(frozen=True)
class StudentInit:
    """The student's MiniLM initialisation (embeddings + sentence distillation) against a random one."""

    task: str
    points: float
    """Student + retrieval, in points of test accuracy."""
    time_ratio: float
    """Its training time over a random start's, measured in the same bench process (a ratio, so that a loaded
    machine does not show up as minutes)."""

    def sentence(self) -> str:
        return f"{self.points:+.1f} points of accuracy for {self.time_ratio:.1f}x the training time, on {self.task}"


def student_init() -> StudentInit | None:
    """From bench/results/student_init.json: MiniLM embeddings + sentence distillation against a random
    initialisation, mean over the runs (seeds) that trained both; a file with no such runs yet gives its first
    version's single run."""
    data = _read("student_init.json")
    if not data:
        return None
    minilm, random = "MiniLM embeddings + sentence distillation", "random"
    by_run: dict[tuple, dict] = {}
    for row in (data.get("rows") or {}).values():
        by_run.setdefault((row["task"], row["seed"]), {})[row["initialisation"]] = row
    pairs = [(task, both[minilm], both[random]) for (task, _), both in by_run.items() if minilm in both and random in both]
    if not pairs:
        old = {v["initialisation"]: v for v in data.get("variants") or []}
        if minilm not in old or random not in old:
            return None
        pairs = [(data.get("task", "SST-2"), old[minilm], old[random])]
    task = pairs[0][0]
    pairs = [(m, r) for t, m, r in pairs if t == task]
    return StudentInit(task=task, points=100 * statistics.mean(m["student_retrieval"] - r["student_retrieval"]
                                                               for m, r in pairs),
                       time_ratio=statistics.mean(m["seconds"] / r["seconds"] for m, r in pairs))
