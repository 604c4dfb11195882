"""How long each step of a run will take on this machine, from what the runs finished here measured.

Every finished run in the workspace yields unit costs: a stage's measured seconds divided by the work it did, with
the work counted from the run's config and task: inputs the teacher scores; tuning steps x batch and generated samples
times the task's mean text length in characters (the teacher reads and writes that many tokens); student examples x
epochs. A new config's estimate is its own work
times the median unit cost of the newest runs that ran on as many torch threads (the studio's jobs leave a core free;
the command line uses all). Unit costs are cached per run in `<workspace>/cache/costs.json`. The shipped demo run's
timings came from another machine and are not used. Without a finished run here there is no estimate: nothing
stands in for a measurement.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from .config import RunConfig
from .errors import RetriktError
from .runs import Run, open_run, runs_newest_first

STAGES = ("load", "score", "tune", "generate", "ppo", "ppo-generate", "unlabeled", "student", "eval")
NAMES = {"load": "load the teacher", "score": "choose demonstrations", "tune": "tune the soft prompt",
         "generate": "generate + label samples", "ppo": "PPO training", "ppo-generate": "PPO's samples",
         "unlabeled": "label real inputs", "student": "train the students", "eval": "evaluate"}
NEWEST = 5
"""Runs whose unit costs are pooled (the newest; older ones may predate a faster version)."""
LATENCY_SAMPLE = 32
"""Test inputs the evaluation scores once more one at a time, for latency (see student/evaluate.py)."""
_DEMO = "demo-SST-2"
UNITS_VERSION = 4
"""Bumped whenever a stage's unit of work changes, so cached unit costs are computed again."""
DAMAGED = (OSError, UnicodeDecodeError, json.JSONDecodeError, RetriktError)
"""What reading a damaged or foreign run raises: a file gone or unreadable, a summary that is not JSON, a config this
version cannot read or rejects, or a task it no longer finds (the last two RetriktError)."""


def _mean_chars(task, examples) -> float:
    texts = [task.serialize(e.fields) for e in examples]
    return sum(map(len, texts)) / max(1, len(texts))


@dataclass
class Work:
    """A config's work per unit of cost (the counts each stage's seconds are divided by)."""

    units: dict[str, float]
    samples: int


def work(config: RunConfig, task, eval_limit: int | None = None, store_entries: int | None = None,
         with_ppo: bool | None = None, searched_inputs: int | None = None) -> Work:
    """How much each stage has to do for `config` on `task`; `with_ppo` says whether step 2 runs (None: as `run`
    would do it, i.e. `ppo.enabled`); `searched_inputs`: the inputs a finished run's demo search scored (None: as
    the search would do it now)."""
    from .generate.generation import default_samples_per_label, default_tuning_batch, default_tuning_steps
    from .teacher.scorer import default_demo_candidates, demos_in_prompt, search_inputs

    chars = _mean_chars(task, task.train)
    candidates = max(config.scorer.demo_candidates or default_demo_candidates(task), 1 + len(task.query_candidates))
    demos = demos_in_prompt(config.scorer.demos_total, task)
    if searched_inputs is None:
        searched_inputs = search_inputs(candidates, max(0, len(task.train) - demos))
    test_n = min(len(task.test), eval_limit) if eval_limit else len(task.test)
    samples = (config.generation.samples_per_label or default_samples_per_label(task)) * len(task.labels)
    ppo = config.ppo.updates > 0 and (config.ppo.enabled if with_ppo is None else with_ppo)
    # A finished run's store holds them all: generated, train copies and teacher-labelled real inputs.
    items = store_entries if store_entries is not None else \
        samples * (2 if ppo else 1) + len(task.train) + config.student.teacher_unlabeled
    s = config.student
    units = {
        "load": 1.0,
        # the demo search's held-out inputs, then the calibration inputs; a scored input costs about the same
        # whatever its length (the demonstrations' cache dominates), so no length factor
        "score": float(searched_inputs + config.scorer.calibration_inputs),
        "tune": (config.prompt_tuning.steps or default_tuning_steps(task))
        * (config.prompt_tuning.batch_size or default_tuning_batch(task)) * chars,
        "generate": samples * chars,
        "ppo": config.ppo.updates * config.ppo.rollout_batch_size * chars if ppo else 0.0,
        "ppo-generate": samples * chars if ppo else 0.0,
        "unlabeled": float(config.student.teacher_unlabeled),
        "student": s.pretrain_epochs * s.pretrain_pool + 2 * s.epochs * items,
        "eval": float(test_n + LATENCY_SAMPLE),
    }
    return Work(units, samples)


def measured_seconds(run: Run) -> dict[str, float]:
    """The seconds a run's summaries record per estimated stage (evaluation: the teacher's scoring of the test
    split); stages it did not run are absent."""
    summary = run.summary()
    gen, ppo = summary.get("generate") or {}, summary.get("ppo") or {}
    seconds = {"load": summary.get("load_seconds"), "score": (summary.get("score") or {}).get("seconds"),
               "tune": (summary.get("tune") or {}).get("seconds"),
               "generate": gen["generate_seconds"] + gen.get("label_and_store_seconds", 0.0)
               if "generate_seconds" in gen else None,
               "ppo": ppo.get("ppo_seconds"), "ppo-generate": ppo.get("generate_seconds"),
               "unlabeled": (summary.get("unlabeled") or {}).get("seconds"),
               "student": (summary.get("student") or {}).get("seconds")}
    if run.eval_summary_path.is_file():
        systems = json.loads(run.eval_summary_path.read_text(encoding="utf-8")).get("systems") or {}
        seconds["eval"] = (systems.get("teacher") or {}).get("seconds")
    return {stage: float(s) for stage, s in seconds.items() if isinstance(s, (int, float))}


def unit_costs(run: Run) -> dict[str, float]:
    """Seconds per unit of work of each stage a finished run measured ({} when it did not finish)."""
    from .tasks import task_of_run
    from .teacher.scorer import demos_in_prompt

    summary = run.summary()
    if summary.get("status") != "done" or run.config is None:
        return {}
    eval_limit = None
    if run.eval_summary_path.is_file():
        eval_limit = json.loads(run.eval_summary_path.read_text(encoding="utf-8")).get("test_examples")
    stored = (summary.get("student") or {}).get("items", {}).get("store_entries")
    # The run did step 2 when its summary has PPO's block, whatever `ppo.enabled` says now.
    task, score = task_of_run(run), summary.get("score") or {}
    searched = sum(score["candidate_rows"]) if score.get("candidate_rows") else None
    if searched is None and score.get("candidate_accuracies"):  # a run made before successive halving: every row
        demos = demos_in_prompt(run.config.scorer.demos_total, task)
        searched = len(score["candidate_accuracies"]) * max(0, len(task.train) - demos)
    units = dict(work(run.config, task, eval_limit, stored, with_ppo=bool(summary.get("ppo")),
                      searched_inputs=searched).units)
    # The evaluation's recorded seconds are the teacher's scoring only, without the latency sample.
    units["eval"] = units["eval"] * eval_limit / (eval_limit + LATENCY_SAMPLE) if eval_limit else 0
    # PPO's own samples are priced at step 1's generation rate, so they yield no unit cost of their own.
    costs = {stage: seconds / units[stage] for stage, seconds in measured_seconds(run).items()
             if stage != "ppo-generate" and units.get(stage)}
    costs["threads"] = float(summary.get("torch_threads") or 0)
    return costs


def _cached_costs(workspace: str | Path, names: list[str]) -> dict[str, dict]:
    cache = Path(workspace) / "cache" / "costs.json"
    try:
        known = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    out, changed = {}, False
    for name in names:
        run = Run(Path(workspace) / "runs" / name)
        stamp = max((p.stat().st_mtime for p in (run.summary_path, run.eval_summary_path) if p.is_file()),
                    default=0.0)
        entry = known.get(name)
        if not entry or entry.get("stamp") != stamp or entry.get("units") != UNITS_VERSION:
            try:
                entry = {"stamp": stamp, "units": UNITS_VERSION, "costs": unit_costs(open_run(workspace, name))}
            except DAMAGED:  # a damaged or foreign run gives no measurement; a bug in this module still raises
                entry = {"stamp": stamp, "units": UNITS_VERSION, "costs": {}}
            known[name], changed = entry, True
        out[name] = entry["costs"]
    if changed:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps(known), encoding="utf-8")
        tmp.replace(cache)
    return out


@dataclass
class Estimate:
    """Estimated seconds per stage (None: no run here measured that stage yet) and the runs it rests on."""

    seconds: dict[str, float | None]
    based_on: dict[str, list[str]] = field(default_factory=dict)
    other_threads: dict[str, int] = field(default_factory=dict)
    """Finished runs left out because they ran on another number of torch threads (name -> threads)."""

    @property
    def total(self) -> float | None:
        known = [v for v in self.seconds.values() if v is not None]
        return sum(known) if known and all(v is not None for v in self.seconds.values()) else None


def estimate(config: RunConfig, task, workspace: str | Path, threads: int, eval_limit: int | None = None,
             stages: tuple[str, ...] | None = None, only: list[str] | None = None) -> Estimate:
    """Seconds each of `stages` (default: those `config` runs) will take here, on `threads` torch threads; `only`
    limits the measured runs to those names (to replay what an estimate would have said earlier)."""
    stages = stages or tuple(s for s in STAGES if (not s.startswith("ppo") or work(config, task).units["ppo"] > 0)
                             and (s != "unlabeled" or config.student.teacher_unlabeled > 0))
    names = [n for n in runs_newest_first(workspace) if n != _DEMO and (only is None or n in only)]
    measured = _cached_costs(workspace, names)
    units = work(config, task, eval_limit, with_ppo=any(s.startswith("ppo") for s in stages)).units
    seconds, based = {}, {}
    for stage in stages:
        # PPO writes its samples exactly as step 1 does: step 1's generation rate prices them.
        unit = "generate" if stage == "ppo-generate" else stage
        pool = [(name, costs) for name, costs in measured.items() if unit in costs
                and int(costs.get("threads", 0)) == threads][:NEWEST]
        if not pool:
            seconds[stage] = None
            continue
        # design choice: loading takes the fastest run's time: the first load in a workspace also converts the
        # packaged teacher (~40 s once), which later loads never repeat.
        pick = min if stage == "load" else statistics.median
        seconds[stage] = pick(c[unit] for _, c in pool) * units[stage]
        based[stage] = [name for name, _ in pool]
    # design choice: not scaled across thread counts: stages gain unequally from a second thread (teacher_throughput.md)
    other = {name: int(costs["threads"]) for name, costs in measured.items()
             if costs.get("threads") and int(costs["threads"]) != threads}
    return Estimate(seconds, based, other)


JOB_STAGES = {
    "generate": ("load", "score", "tune", "generate"),
    "ppo": ("load", "ppo", "ppo-generate"),
    "student": ("unlabeled", "student", "eval"),
    "run": ("load", "score", "tune", "generate", "ppo", "ppo-generate", "unlabeled", "student", "eval"),
}
"""The estimated stages a job of each kind goes through, in order."""
PROGRESS_STAGE = {"load": "load", "score": "score", "tune": "tune", "generate": "generate", "store": "generate",
                  "ppo": "ppo", "unlabeled": "unlabeled", "pretrain": "student", "student": "student",
                  "plain-kd": "student", "gold-only": "student", "eval": "eval"}
"""Which estimated stage a job's progress stage belongs to."""


SINGLE = {"score", "tune", "generate", "ppo", "ppo-generate", "unlabeled"}
"""Estimated stages that are one long progress stage: their own pace so far says best what is left."""


def time_left(kind: str, stages: list, done: int, total: int, now: float,
              remaining: dict[str, float | None]) -> float | None:
    """Seconds until a running job ends; `stages` are its (progress stage, start time) pairs so far, `remaining` the
    estimates of the stages it runs. The current stage goes at its own pace so far where it is one long loop (else by
    its estimate less the time spent in it), then the estimates of the stages after it; None when one is unknown."""
    order = JOB_STAGES.get(kind, ())
    if not stages:
        return None
    mapped = [PROGRESS_STAGE.get(s) for s, _ in stages]
    # PPO generates again after its training: those samples are PPO's, not step 1's.
    mapped = [("ppo-generate" if m == "generate" and "ppo" in mapped[:i] else m) for i, m in enumerate(mapped)]
    current, started = mapped[-1], stages[-1][1]
    if current not in order:
        return None
    position = order.index(current)
    stage = current
    entered = started
    for (_, at), m in zip(reversed(stages), reversed(mapped)):
        if m != current:
            break
        entered = at
    if stage in SINGLE and total and done:
        left = (now - started) / done * (total - done)
    elif remaining.get(stage) is not None:
        left = max(0.0, remaining[stage] - (now - entered))
    else:
        return None
    for later in order[position + 1:]:
        if later in remaining:
            if remaining[later] is None:
                return None
            left += remaining[later]
    return left
