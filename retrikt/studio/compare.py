"""What the Compare tab shows: every system of an evaluated run side by side, and per test example the student's
prediction without and with retrieval, the neighbours it retrieved and whether retrieval fixed or broke it.
Plain Python (no UI library), so it is testable on its own.
"""
from __future__ import annotations

import functools
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..runs import Run, RunError, list_runs, open_run, read_summary, run_path, runs_newest_first
from .store_view import open_run_store
from ..student.stage import beta_reason
from ..tasks import MAX_INPUT_CHARS

SYSTEM_NAMES = {"majority": "majority class", "teacher": "teacher (few-shot, calibrated)", "student": "student alone",
                "student_retrieval": "student + retrieval", "plain_kd": "plain KD (no retrieval)",
                "student_gold": "student, gold only (no teacher)"}
OUTCOMES = ("all", "retrieval fixed it", "retrieval broke it", "both wrong", "both right")
SYSTEM_COLUMNS = ("system", "accuracy %", "macro-F1 %", "parameters", "size vs teacher", "examples/s",
                  "latency ms (batch 1)", "speed-up vs teacher")
NEIGHBOUR_COLUMNS = ("rank", "similarity", "label", "teacher soft label", "source", "text", "id")
MAX_CHOICES = 2000
"""Examples listed in the picker at most (the outcome filter narrows them); any other is reached by typing its id."""


def evaluated_runs(workspace: str | Path) -> list[str]:
    """Runs with an evaluation, newest first."""
    return [name for name in runs_newest_first(workspace) if Run(run_path(workspace, name)).is_evaluated]


def _evaluated_run(workspace, run_name: str | None) -> Run:
    if not run_name:
        raise RunError("Pick a run (none evaluated yet? train and evaluate a student in the Student tab).")
    if run_name not in list_runs(workspace):  # only listed names: a free-form path would leave the workspace
        raise RunError(f"There is no run {run_name!r} in this workspace (any more): refresh the run list.")
    run = Run(run_path(workspace, run_name))
    if not run.is_evaluated:
        raise RunError(f"Run {run_name} has not been evaluated yet: train and evaluate its student first.")
    return run


@functools.lru_cache(maxsize=8)
def _read_records(path: str, mtime: float) -> tuple[dict, ...]:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return tuple(json.loads(line) for line in lines if line.strip())


def eval_summary(workspace, run_name: str | None) -> dict:
    return json.loads(_evaluated_run(workspace, run_name).eval_summary_path.read_text(encoding="utf-8"))


def records(workspace, run_name: str | None) -> tuple[dict, ...]:
    path = _evaluated_run(workspace, run_name).eval_records_path
    return _read_records(str(path), path.stat().st_mtime)


def _pct(value) -> str:
    return "" if value is None else f"{100 * value:.1f}"


def systems_table(summary: dict) -> tuple[list[str], list[list]]:
    """One row per system: accuracy, macro-F1, size, throughput, latency and speed-up over the teacher."""
    teacher_params, student_params = summary.get("teacher_params"), summary.get("student_params")
    teacher_speed = (summary["systems"].get("teacher") or {}).get("examples_per_s")
    rows = []
    for key, label in SYSTEM_NAMES.items():
        result = summary["systems"].get(key)
        if result is None:
            continue
        params = {"teacher": teacher_params, "majority": None}.get(key, student_params)
        ratio = f"{100 * params / teacher_params:.2f}%" if params and teacher_params else ""
        speed = result.get("examples_per_s")
        speedup = round(speed / teacher_speed, 1) if speed and teacher_speed and key != "teacher" else None
        rows.append([label, _pct(result.get("accuracy")), _pct(result.get("macro_f1")),
                     f"{params:,}" if params else "", ratio, result.get("examples_per_s") or "",
                     result.get("latency_ms") or "", f"{speedup}x" if speedup else ""])
    return list(SYSTEM_COLUMNS), rows


def check_line(check: dict | None) -> str:
    """The teacher check's verdict from a run's summary (its step 1 ran the check), else ""."""
    return f"**Teacher check, before the run:** {check['verdict']}" if check and check.get("verdict") else ""


def headline(summary: dict, student_block: dict | None = None, check: dict | None = None) -> str:
    """One sentence a presenter can read out: how small the student is and what retrieval adds; with the run's
    student block, why beta is what it is; with its teacher check, the check's verdict."""
    systems = summary["systems"]
    alone, mixed = systems.get("student", {}), systems.get("student_retrieval", {})
    teacher = systems.get("teacher", {})
    parts = [f"**{summary['task']}**, {summary['test_examples']} test examples."]
    if summary.get("teacher_params") and summary.get("student_params"):
        parts.append(f"The student has {summary['student_params']:,} parameters, "
                     f"{100 * summary['student_params'] / summary['teacher_params']:.2f}% of the teacher's "
                     f"{summary['teacher_params']:,}.")
    if "accuracy" in alone and "accuracy" in mixed:
        delta = 100 * (mixed["accuracy"] - alone["accuracy"])
        parts.append(f"Retrieval moves its accuracy from {_pct(alone['accuracy'])}% to {_pct(mixed['accuracy'])}% "
                     f"({delta:+.1f} points, beta {mixed.get('beta')}, k {mixed.get('k')}).")
        if student_block and student_block.get("beta") == mixed.get("beta"):  # a retrained run: its old eval's beta
            reason = beta_reason(student_block)
            parts.append(f"Beta {mixed.get('beta')}: {reason[:1].lower() + reason[1:]}.")
    if "accuracy" in teacher:
        parts.append(f"The teacher scores {_pct(teacher['accuracy'])}%"
                     + (f" and is {mixed['speedup_vs_teacher']}x slower." if mixed.get("speedup_vs_teacher") else "."))
    added = teacher_contribution(summary)
    if added:
        parts.append(added)
    warning = weak_teacher_warning(summary)
    if warning:
        parts.append(warning)
    checked = check_line(check)
    if checked:
        parts.append(checked)
    return " ".join(parts)


def teacher_contribution(summary: dict) -> str:
    """What the teacher's knowledge adds, as a sentence (else ""): student + retrieval against the same pretrained
    student trained on the labelled examples alone, so the teacher is not credited with what pretraining did."""
    systems = summary.get("systems", {})
    mixed, gold = systems.get("student_retrieval", {}), systems.get("student_gold", {})
    if "accuracy" not in mixed or "accuracy" not in gold:
        return ""
    delta = 100 * (mixed["accuracy"] - gold["accuracy"])
    return (f"**What the teacher adds: {delta:+.1f} points** — the same student, with the same pretraining, trained "
            f"on the labelled examples alone scores {_pct(gold['accuracy'])}%; with the teacher's store and "
            f"retrieval, {_pct(mixed['accuracy'])}%.")


def weak_teacher_warning(summary: dict) -> str:
    """A plain sentence when the teacher does not beat the majority class on the test split (else ""): then its
    labels carry no knowledge of the task, and whatever the student gets right comes from its own pretraining and
    the gold examples, not from the teacher."""
    systems = summary.get("systems", {})
    teacher, majority = systems.get("teacher", {}), systems.get("majority", {})
    if "accuracy" not in teacher or "accuracy" not in majority or teacher["accuracy"] > majority["accuracy"]:
        return ""
    return (f"**The teacher does not beat the majority class here** ({_pct(teacher['accuracy'])}% vs "
            f"{_pct(majority['accuracy'])}%): it has no knowledge of this task to pass on, so the student's accuracy "
            "comes from its pretraining and the labelled examples, not from the teacher.")


def outcome(record: dict) -> str:
    """Which of OUTCOMES[1:] a record falls in (student alone vs student + retrieval against gold)."""
    alone = record["student"]["pred"] == record["gold"]
    mixed = record["student_retrieval"]["pred"] == record["gold"]
    if mixed and not alone:
        return "retrieval fixed it"
    if alone and not mixed:
        return "retrieval broke it"
    return "both right" if alone else "both wrong"


def outcome_counts(recs) -> dict[str, int]:
    counts = {name: 0 for name in OUTCOMES}
    counts["all"] = len(recs)
    for record in recs:
        counts[outcome(record)] += 1
    return counts


def example_choices(recs, wanted: str = "all") -> list[tuple[str, str]]:
    """(label, uid) pairs for the picker: the examples with outcome `wanted` (all by default)."""
    if wanted not in OUTCOMES:
        raise RunError(f"unknown filter {wanted!r}; choose one of: {', '.join(OUTCOMES)}")
    chosen = [r for r in recs if wanted == "all" or outcome(r) == wanted][:MAX_CHOICES]
    return [(f"{r['uid']} · gold {r['gold']} · {_short(r['text'], 70)}", r["uid"]) for r in chosen]


def find_record(recs, uid: str | None) -> dict:
    """The record with id `uid`, or typed as its id's last part (`123` for `sst2-test-123`) when only one ends so."""
    typed = (uid or "").strip().split(" · ")[0]
    for record in recs:
        if record["uid"] == typed:
            return record
    endings = [r for r in recs if typed and str(r["uid"]).endswith(f"-{typed}")]
    if len(endings) == 1:
        return endings[0]
    raise RunError(f"Test example {uid!r} is not in this run's evaluation: pick one from the list, or type its id.")


def outcome_choices(recs) -> list[tuple[str, str]]:
    """The outcome filter's choices, each named with its number of test examples."""
    counts = outcome_counts(recs)
    return [(f"{name} ({counts[name]})", name) for name in OUTCOMES]


@dataclass
class OpenedRun:
    """An evaluated run as the tab opens it: its headline, every system, the examples listed and the one shown."""

    headline: str
    headers: list[str]
    rows: list[list]
    summary: dict
    outcome: str
    """The outcome filter: "all" unless another outcome was asked for."""
    outcome_choices: list[tuple[str, str]]
    example_choices: list[tuple[str, str]]
    record: dict | None
    """The example shown: the one asked for when the filter lists it, else the first listed (None: none is)."""
    labels: list[str]


def open_evaluated(workspace, run_name: str, outcome_filter: str | None, uid: str | None = None) -> OpenedRun:
    """The evaluated run `run_name` with the test examples of `outcome_filter` listed, example `uid` shown."""
    summary = eval_summary(workspace, run_name)
    recs = records(workspace, run_name)
    headers, rows = systems_table(summary)
    outcome_filter = outcome_filter if outcome_filter in OUTCOMES else "all"
    choices = example_choices(recs, outcome_filter)
    first = uid if uid in {c[1] for c in choices} else (choices[0][1] if choices else None)
    record = find_record(recs, first) if first else None
    labels = list(recs[0]["student"]["probs"]) if recs else []
    run_summary = read_summary(workspace, run_name)
    said = headline(summary, run_summary.get("student"), run_summary.get("check"))
    return OpenedRun(said, headers, rows, summary, outcome_filter, outcome_choices(recs), choices, record, labels)


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def neighbour_rows(neighbours: list[dict]) -> list[list]:
    rows = []
    for rank, n in enumerate(neighbours, 1):
        soft = n.get("teacher_soft_labels") or {}
        best = max(soft, key=soft.get) if soft else ""
        rows.append([rank, round(n["similarity"], 3), n["label"], f"{best} {soft[best]:.2f}" if best else "",
                     n.get("source", ""), n["text"], n["id"]])
    return rows


@dataclass
class ExampleView:
    """Everything the tab shows for one example (a test record or a typed input)."""

    text: str
    gold: str | None
    alone: dict[str, float]
    mixed: dict[str, float]
    neighbours: list[list]
    verdict: str


def view_record(record: dict) -> ExampleView:
    kind = outcome(record)
    verdict = (f"Gold **{record['gold']}** · student alone **{record['student']['pred']}** · with retrieval "
               f"**{record['student_retrieval']['pred']}** → {kind}.")
    if "teacher" in record:
        verdict += f" The teacher said **{record['teacher']['pred']}**."
    return ExampleView(record["text"], record["gold"], record["student"]["probs"],
                       record["student_retrieval"]["probs"], neighbour_rows(record["neighbours"]), verdict)


class LiveStudent:
    """A run's trained student and key index, loaded once, to predict typed inputs and test examples through the
    store as it is now (a visitor's own copy in hosted mode), and to re-evaluate after store edits."""

    def __init__(self, workspace, run_name: str):
        from ..student.predictor import TrainedStudent

        _evaluated_run(workspace, run_name)  # only a listed, evaluated run: a free-form path would leave the workspace
        self.run = open_run(workspace, run_name)
        base = open_run_store(workspace, run_name).store  # a hosted studio's serving copy: shared files stay unopened
        self.trained = TrainedStudent.from_run(self.run, base)
        self._base = (base.location, base.name)
        self.task, self.beta = self.trained.task, self.trained.beta
        self._lock = threading.Lock()
        self._views: dict[tuple, object] = {}
        self._test: tuple[str, np.ndarray, np.ndarray] | None = None

    def through(self, rs=None):
        """The student retrieving through `rs` (a RunStore of this run; None: the store it was loaded with)."""
        if rs is None or (rs.store.location, rs.store.name) == self._base:
            return self.trained
        key = (rs.store.location, rs.store.name, str(rs.history_path))
        with self._lock:
            if key not in self._views:
                self._views[key] = self.trained.on_store(rs.store, rs.history_path)
            return self._views[key]

    def view(self, values: list[str], rs=None) -> ExampleView:
        fields = self.task.text_fields
        values = [(v or "").strip() for v in values][: len(fields)]
        if len(values) < len(fields) or not all(values):
            raise RunError(f"Type the {' and the '.join(fields)} of an example ({self.task.name} needs "
                           f"{len(fields)} text{'s' if len(fields) > 1 else ''}).")
        if any(len(v) > MAX_INPUT_CHARS for v in values):
            raise RunError(f"Keep each text under {MAX_INPUT_CHARS:,} characters (the student reads its first 128 "
                           "tokens only).")
        return self.text_view(self.task.serialize(dict(zip(fields, values))), rs=rs)

    def text_view(self, text: str, gold: str | None = None, rs=None, note: str = "") -> ExampleView:
        """An input in the task's serialized form, predicted now (neighbours from the store as it is)."""
        only, mixed = self.through(rs).predict_texts([text])
        a, m = only.labels[0], mixed.labels[0]
        if gold:  # with the gold label, say what retrieval did: fixed it, broke it, or both right / both wrong
            said = f" → {outcome({'gold': gold, 'student': {'pred': a}, 'student_retrieval': {'pred': m}})}."
        else:
            said = " → retrieval changed the answer." if a != m else "."
        verdict = ((f"Gold **{gold}** · " if gold else "") + f"Student alone **{a}** · with retrieval **{m}** "
                   f"(beta {self.beta})" + said + note)
        return ExampleView(text, gold, only.probs[0], mixed.probs[0], neighbour_rows(mixed.neighbours[0]), verdict)

    def record_view(self, record: dict, rs=None) -> ExampleView:
        """A test record as evaluated, or with retrieval redone now when this store has hand edits (they may
        change it); the student alone and the teacher are as evaluated."""
        edits = edit_count(rs)
        if not edits:
            return view_record(record)
        mixed = self.through(rs).predict_texts([record["text"]])[1]
        now = dict(record, student_retrieval={"pred": mixed.labels[0], "probs": mixed.probs[0]},
                   neighbours=mixed.neighbours[0])
        view = view_record(now)
        view.verdict += (f" *(With retrieval redone through the store's {edits} edit{'s' if edits != 1 else ''}; at "
                         f"evaluation it said **{record['student_retrieval']['pred']}**.)*")
        return view

    def edit_neighbour(self, rs, who: str, entry_id: str, label: str | None, text: str,
                       gold: str | None = None, recs=None) -> tuple[ExampleView, str]:
        """Relabel (curated) or, with `label` None, delete store entry `entry_id`, then predict `text` again; returns
        the new view and a before → after line with the time the edit and the new prediction took, and, given the
        evaluated test records `recs`, how many of their predictions the edit changed."""
        entry_id = (entry_id or "").strip()
        if not entry_id:
            raise RunError("Click a neighbour row first (or paste an entry id).")
        if not text:
            raise RunError("Pick a test example or type an input first.")
        before = self.through(rs).predict_texts([text])[1]
        votes_before = self.test_votes(recs, rs)[0] if recs else None
        started = time.perf_counter()
        editor = rs.editor(who)
        if label is None:
            if editor.delete([entry_id]) == 0:
                raise RunError(f"No entry {entry_id!r} in this store: it may already be deleted.")
            did = f"Deleted entry {entry_id}"
        else:
            editor.set_label(entry_id, label)
            did = f"Entry {entry_id} now has the curated label **{label}**"
        after_view = self.text_view(text, gold, rs)
        seconds = time.perf_counter() - started
        b, a = before.labels[0], after_view.mixed
        new = max(a, key=a.get)
        line = (f"{did}. With retrieval, before → after: **{b}** ({before.probs[0][b]:.2f}) → **{new}** "
                f"({a[new]:.2f})" + (" — the prediction changed." if new != b else " — same answer.")
                + f" Edit and new prediction took {1000 * seconds:.0f} ms.")
        if getattr(rs, "copy_seconds", 0.0):  # a hosted visitor's first edit waits for their own copy of the store
            line += (f" Before it, your own copy of the shared store was made: {rs.copy_seconds:.1f} s, on your first "
                     "edit only.")
        if recs:
            votes_after = self.test_votes(recs, rs)[0]
            labels = list(self.task.labels)
            gold_index = np.array([labels.index(r["gold"]) for r in recs])
            changed = votes_after != votes_before
            fixed = int((changed & (votes_after == gold_index)).sum())
            broke = int((changed & (votes_before == gold_index)).sum())
            line += (f" Across the {len(recs)} test examples, {int(changed.sum())} prediction"
                     f"{'s' if changed.sum() != 1 else ''} changed: {fixed} fixed, {broke} broken.")
        return after_view, line

    def test_votes(self, recs, rs=None) -> tuple[np.ndarray, list[list[str]]]:
        """Student + retrieval's label index for each evaluated test example through the store as it is now, and
        the entry ids each one retrieved (the student's outputs are cached: only the vote is redone)."""
        from ..student.retrieval import mix

        probs, keys = self.test_outputs(recs)
        trained = self.through(rs)
        if trained.index is None:
            raise RunError("This run's student retrieves nothing (no store entries were indexed): there is nothing "
                           "to re-evaluate.")
        found = trained.index.query(keys, trained.k)
        mixed = mix(probs, found.soft, found.sims, trained.beta, trained.temperature, found.weights).argmax(-1)
        return mixed, found.ids

    def reach(self, recs, entry_id: str, rs=None) -> str:
        """Before an edit: how many evaluated test examples retrieve store entry `entry_id`, i.e. how many
        predictions an edit of it can move."""
        entry_id = (entry_id or "").strip()
        if not entry_id:
            return ""
        hits = sum(entry_id in row for row in self.test_votes(recs, rs)[1])
        return (f"Entry {entry_id} is among the {self.through(rs).k} neighbours of **{hits} of the {len(recs)} test "
                f"examples**: an edit of it can change those predictions, and no other.")

    def test_outputs(self, recs) -> tuple[np.ndarray, np.ndarray]:
        """The student's probabilities and keys for the evaluated test examples, computed once: after a store edit
        only the neighbours' vote changes."""
        texts = "\n".join(r["text"] for r in recs)
        with self._lock:
            if self._test is None or self._test[0] != texts:
                probs, keys = self.trained.student.encode([r["text"] for r in recs])
                self._test = (texts, probs, keys)
            return self._test[1], self._test[2]

    def reevaluate(self, recs, rs=None) -> "Reevaluation":
        """Student + retrieval accuracy on the evaluated test examples, with the store as it is now."""
        started = time.perf_counter()
        mixed = self.test_votes(recs, rs)[0]
        labels = list(self.task.labels)
        gold = np.array([labels.index(r["gold"]) for r in recs])
        was = np.array([labels.index(r["student_retrieval"]["pred"]) for r in recs])
        now_right, was_right = mixed == gold, was == gold
        return Reevaluation(float(now_right.mean()), float(was_right.mean()), len(recs),
                            int((now_right & ~was_right).sum()), int((~now_right & was_right).sum()),
                            edit_count(rs), time.perf_counter() - started)


@dataclass
class Reevaluation:
    """Student + retrieval on the test split again, through the edited store."""

    accuracy: float
    recorded: float
    """The run's own student + retrieval accuracy (at evaluation time)."""
    examples: int
    fixed: int
    broken: int
    edits: int
    seconds: float

    def markdown(self) -> str:
        delta = 100 * (self.accuracy - self.recorded)
        return (f"**Student + retrieval with the edited store: {_pct(self.accuracy)}%** on {self.examples} test "
                f"examples (at evaluation: {_pct(self.recorded)}%, {delta:+.1f} points). The edits fixed "
                f"{self.fixed} and broke {self.broken} predictions. {self.edits} edit(s) in the store's history; "
                f"re-evaluated in {self.seconds:.2f} s (the student's outputs are cached, only the vote is redone).")


def edit_count(rs) -> int:
    """How many edits the store's history holds (0 without a store or history)."""
    if rs is None or rs.history_path is None or not Path(rs.history_path).is_file():
        return 0
    return sum(1 for line in Path(rs.history_path).read_text(encoding="utf-8").splitlines() if line.strip())


def accuracy_figure(summary: dict) -> go.Figure:
    """Bar chart of test accuracy per system."""
    _, rows = systems_table(summary)
    fig = go.Figure(go.Bar(x=[r[0] for r in rows], y=[float(r[1] or 0) for r in rows],
                           text=[f"{r[1]}%" for r in rows], textposition="outside",
                           marker_color=["#9aa5b1", "#7f8c8d", "#5dade2", "#2e86de", "#f5b041",
                                         "#c39bd3"][: len(rows)]))
    fig.update_layout(height=300, margin=dict(l=30, r=10, t=30, b=30), title=f"{summary['task']}: accuracy per system",
                      yaxis=dict(title="test accuracy %", range=[0, 100]))
    return fig


def confusion(recs, system: str, labels: list[str]) -> np.ndarray:
    """Counts[gold, predicted] of one system over the records."""
    from sklearn.metrics import confusion_matrix

    pairs = [(labels.index(r["gold"]), labels.index(r[system]["pred"])) for r in recs if system in r]
    if not pairs:
        return np.zeros((len(labels), len(labels)), dtype=int)
    gold, predicted = zip(*pairs)
    return confusion_matrix(gold, predicted, labels=list(range(len(labels))))


def confusion_figure(recs, labels: list[str]) -> go.Figure:
    """One confusion matrix per system that has per-example predictions (rows gold, columns predicted)."""
    short = {"teacher": "teacher", "student": "student alone", "student_retrieval": "student + retrieval",
             "plain_kd": "plain KD", "student_gold": "gold only"}
    systems = [s for s in short if recs and s in recs[0]]
    fig = make_subplots(rows=1, cols=max(1, len(systems)), subplot_titles=[short[s] for s in systems],
                        horizontal_spacing=0.04, shared_yaxes=True)
    for col, system in enumerate(systems, 1):
        counts = confusion(recs, system, labels)
        fig.add_trace(go.Heatmap(z=counts, x=labels, y=labels, text=counts, texttemplate="%{text}",
                                 colorscale="Blues", showscale=False), row=1, col=col)
        fig.update_xaxes(title_text="predicted", row=1, col=col)
    fig.update_yaxes(title_text="gold", autorange="reversed", row=1, col=1)
    fig.update_layout(height=330, margin=dict(l=60, r=10, t=50, b=40), title="Confusion matrices (rows: gold)")
    return fig


_live: dict[tuple[str, str, float], LiveStudent] = {}
_live_lock = threading.Lock()


def live_student(workspace, run_name: str | None) -> LiveStudent:
    """The run's LiveStudent, loaded once per trained student (a retrained one has a new mtime and loads again)."""
    if not run_name or run_name not in list_runs(workspace):
        raise RunError("Pick an evaluated run first.")
    weights = Run(run_path(workspace, run_name)).student_weights
    key = (str(workspace), run_name, weights.stat().st_mtime if weights.is_file() else 0.0)
    with _live_lock:
        if key not in _live:
            _live[key] = LiveStudent(workspace, run_name)
        return _live[key]


def export_student_zip(workspace, run_name: str | None) -> Path:
    """Export an evaluated run's student bundle into a fresh temporary folder; returns the .zip to download."""
    import tempfile

    from ..student.bundle import export_bundle

    run = _evaluated_run(workspace, run_name)
    folder = Path(tempfile.mkdtemp(prefix="retrikt-bundle-")) / f"{run_name}-student"
    store = open_run_store(workspace, run.path.name).store  # a hosted studio reads a copy of the shared store
    return Path(export_bundle(open_run(workspace, run.path.name), folder, store=store)["zip"])
