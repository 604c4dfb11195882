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


def quick_run_cost() -> str | None:
    """What the quick classroom run costs, from bench/results/quick_run.json: its minutes on 2 cores as a studio
    job, and its student + retrieval on the whole test split per seed."""
    data = _read("quick_run.json")
    runs = [r for r in (data or {}).get("runs", []) if r.get("full_test")]
    if not runs:
        return None
    minutes = sorted(r["seconds"] / 60 for r in runs)
    span = f"{minutes[0]:.1f}" if len(minutes) == 1 else f"{minutes[0]:.1f}–{minutes[-1]:.1f}"
    scores = " and ".join(f"{100 * r['full_test']['student_retrieval']:.1f}%" for r in runs)
    seeds = " and ".join(str(r["seed"]) for r in runs)
    tasks = ", ".join(sorted({r["task"] for r in runs}))
    with_ppo = "; those runs did step 2, which it now skips" if any(r["stages"].get("ppo") for r in runs) else ""
    return (f"Measured on 2 CPU cores as a studio job (one thread{with_ppo}): {span} minutes on {tasks}. It costs "
            f"accuracy: on the whole test split its student + retrieval scored {scores} (seeds {seeds}), because it "
            "writes a few dozen samples where the default run writes about 500.")
