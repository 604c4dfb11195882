"""The teacher check: before a run, does the teacher know this task?

It scores the dev rows (never used to choose the scorer's demonstrations or query line) with the fitted scorer and
compares its accuracy, with a 90% confidence interval, against the stronger of chance and always answering the
task's commonest label; a MiniLM + logistic regression fitted on the
train rows is the quick baseline a user would reach for. `python -m retrikt check --task T`, the Setup tab's button
and every step-1 run (its summary's `check` block) give the same report.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np

CONFIDENCE = 0.90


@dataclass
class TeacherCheck:
    rows: int
    """Dev rows scored (k per label, none of them a demonstration nor used to choose the prompt)."""
    accuracy: float
    ci_low: float
    ci_high: float
    """The 90% Clopper-Pearson interval of `accuracy` over `rows`."""
    chance: float
    """1 / labels: the dev rows hold as many of each label."""
    majority_label: str
    majority_share: float
    """The commonest label over every labelled row the task holds (train, dev, test and the labelled pool)."""
    baseline_accuracy: float
    """all-MiniLM-L6-v2 embeddings + logistic regression fitted on the train rows, on the same dev rows."""
    query: str
    answers: dict[str, str]
    bar: float
    """What the teacher must beat: max(chance, majority_share)."""
    knows: bool
    """The interval's lower end is above `bar`."""
    verdict: str
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def accuracy_interval(correct: int, rows: int) -> tuple[float, float]:
    """The 90% Clopper-Pearson interval of correct / rows ((0, 1) for no rows)."""
    if rows == 0:
        return 0.0, 1.0
    from scipy.stats import binomtest

    ci = binomtest(correct, rows).proportion_ci(confidence_level=CONFIDENCE, method="exact")
    return float(ci.low), float(ci.high)


def knowledge_bar(chance: float, majority_share: float) -> float:
    """What the check's interval must clear. The dev rows are label-balanced, so chance is their own floor; but a
    task whose labels are skewed (SST-5's test: 25-33% one label against 20% chance) is only learnt from the
    teacher if it beats answering its commonest label (bench/results/teacher_check.md: verdicts right at 12 of 12
    default-setting rows with this bar, 10 of 12 with chance alone)."""
    return max(chance, majority_share)


def verdict_line(accuracy: float, low: float, high: float, rows: int, chance: float, knows: bool,
                 baseline: float, majority_label: str = "", majority_share: float = 0.0) -> str:
    if majority_share > chance:
        against = f"{chance:.0%} chance, {majority_share:.0%} always answering '{majority_label}'"
    else:
        against = f"{chance:.0%} chance"
    measured = f"{accuracy:.0%} on {rows} dev rows, 90% CI {low:.0%}–{high:.0%}, vs {against}"
    if knows:
        line = f"The teacher knows this task ({measured}): retrieval can add its knowledge."
    else:
        where = ("is at chance here" if accuracy <= chance else "is not clearly above chance here" if low <= chance
                 else "does not clearly beat always answering its commonest label here")
        line = (f"The teacher {where} ({measured}): the student will learn from the labels alone; try a stronger "
                "teacher.")
    if knows and high < baseline:
        return line[:-1] + (f", but less than MiniLM + logistic regression on the same rows ({baseline:.0%}): the "
                            "labels alone may teach the student more; retrieval is used only where the teacher beats "
                            "the student on dev.")
    return line + f" MiniLM + logistic regression on the same rows: {baseline:.0%}."


def majority(task) -> tuple[str, float]:
    counts = Counter(e.label for e in [*task.train, *task.dev, *task.test, *task.pool])
    label, count = counts.most_common(1)[0]
    return label, count / sum(counts.values())


def minilm_baseline(task, embedder) -> float:
    """Accuracy on dev of a logistic regression on the embedder's vectors of the train rows."""
    from sklearn.linear_model import LogisticRegression

    train = embedder.encode([task.serialize(e.fields) for e in task.train])
    dev = embedder.encode([task.serialize(e.fields) for e in task.dev])
    model = LogisticRegression(max_iter=2000).fit(train, [e.label for e in task.train])
    return float(np.mean(model.predict(dev) == np.array([e.label for e in task.dev])))


def check_teacher(task, scorer, embedder, should_stop=None) -> TeacherCheck:
    """The check with a fitted `scorer` (demonstrations, query line and calibration chosen on train)."""
    started = time.perf_counter()
    probs = scorer.probs([e.fields for e in task.dev], should_stop)
    gold = np.array([task.labels.index(e.label) for e in task.dev])
    correct = int((probs.argmax(-1) == gold).sum()) if len(gold) else 0
    rows = len(gold)
    accuracy = correct / rows if rows else 0.0
    low, high = accuracy_interval(correct, rows)
    chance = 1.0 / len(task.labels)
    label, share = majority(task)
    bar = knowledge_bar(chance, share)
    knows = low > bar
    baseline = minilm_baseline(task, embedder)
    return TeacherCheck(
        rows=rows, accuracy=round(accuracy, 4), ci_low=round(low, 4), ci_high=round(high, 4),
        chance=round(chance, 4), majority_label=label, majority_share=round(share, 4),
        baseline_accuracy=round(baseline, 4), query=scorer.query, answers=dict(task.verbalizers), bar=round(bar, 4),
        knows=knows, verdict=verdict_line(accuracy, low, high, rows, chance, knows, baseline, label, share),
        seconds=round(time.perf_counter() - started, 2))


def run_check(config, progress=None, should_stop=None) -> dict:
    """Load the task and the teacher of `config`, fit the scorer as step 1 does (demonstrations, query line,
    calibration) and check; the report's `seconds` is the whole time, teacher loading included."""
    from pathlib import Path

    from ..context import run_embedder
    from ..tasks import resolve_task
    from ..teacher.load import load_teacher
    from ..teacher.scorer import TeacherScorer

    started = time.perf_counter()
    say = progress or (lambda message: None)
    task = resolve_task(config.task, config.seed, config.workspace, None)
    say(f"loading teacher {config.teacher.model}")
    teacher = load_teacher(config.teacher, cache_dir=f"{config.workspace}/cache")
    say("choosing demonstrations and the query line on the train rows")
    scorer = TeacherScorer(teacher, task, config.scorer, seed=config.seed, cache_dir=Path(config.workspace) / "cache")
    fit = scorer.fit(should_stop=should_stop)
    say("scoring the dev rows")
    report = check_teacher(task, scorer, run_embedder(config), should_stop).to_dict()
    report.update(task=task.name, teacher=teacher.name, candidate_queries=fit.candidate_queries,
                  candidate_accuracies=fit.candidate_accuracies,
                  seconds=round(time.perf_counter() - started, 2))
    return report
