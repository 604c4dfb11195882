"""The classroom view: the three steps of RetriKT as one picture, filled in with an evaluated run's own numbers, in
type large enough for a projector. Plain Python (no UI library), so it is testable on its own.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field

import plotly.graph_objects as go

from ..runs import Run, open_run, read_summary
from .demo import DEMO_RUN
from .measured import ppo_gain
from .compare import _evaluated_run, check_line, eval_summary, outcome, records, weak_teacher_warning

SHORT_TEXT = 160
"""Characters at most of the example texts shown (a projector line or two)."""


@dataclass
class Card:
    """One big number with what it means."""

    value: str
    caption: str
    detail: str = ""


@dataclass
class Classroom:
    """What the classroom view shows for one run."""

    title: str
    cards: list[Card]
    steps: list[tuple[str, str]]
    examples: dict[str, dict] = field(default_factory=dict)
    """One test record per outcome ("retrieval fixed it", "retrieval broke it") when there is one."""
    counts: dict[str, int] = field(default_factory=dict)
    warning: str = ""
    """Said first when the teacher does not beat the majority class (then there is no knowledge to keep)."""
    check: str = ""
    """The teacher check's verdict, made before the run (from the run's summary), when the run has one."""


def _millions(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


def _example(recs, kind: str) -> dict | None:
    # The shortest such example reads best on a projector.
    chosen = [r for r in recs if outcome(r) == kind]
    return min(chosen, key=lambda r: len(r["text"])) if chosen else None


def classroom(workspace, run_name: str | None) -> Classroom:
    """The run's classroom view (RunError when it is not an evaluated run of this workspace)."""
    run: Run = open_run(workspace, _evaluated_run(workspace, run_name).name)
    summary = eval_summary(workspace, run_name)
    recs = records(workspace, run_name)
    run_summary = read_summary(workspace, run.name)
    systems = summary["systems"]
    teacher, alone = systems.get("teacher", {}), systems.get("student", {})
    mixed, kd = systems.get("student_retrieval", {}), systems.get("plain_kd", {})
    cards = []
    t_params, s_params = summary.get("teacher_params"), summary.get("student_params")
    if t_params and s_params:
        cards.append(Card(f"{100 * s_params / t_params:.1f}%", "the student's size, of the teacher's",
                          f"{_millions(s_params)} vs {_millions(t_params)} parameters: {t_params / s_params:.0f}× "
                          "smaller"))
    if mixed.get("examples_per_s") and teacher.get("examples_per_s"):
        # Throughput (large batches) and latency (one input) differ by several times: both are said, labelled, and
        # where they were measured (the shipped demo was evaluated on another machine).
        where = "where the demo was made" if run.name == DEMO_RUN else "on this machine"
        latency = (f"; one input at a time {mixed['latency_ms']:.1f} vs {teacher['latency_ms']:.0f} ms, "
                   f"{teacher['latency_ms'] / mixed['latency_ms']:.0f}× faster"
                   if mixed.get("latency_ms") and teacher.get("latency_ms") else "")
        cards.append(Card(f"{mixed['examples_per_s'] / teacher['examples_per_s']:.0f}× faster",
                          f"throughput, measured {where}",
                          f"student + retrieval {mixed['examples_per_s']:,.0f} examples/s vs the teacher's "
                          f"{teacher['examples_per_s']:,.1f} in batches{latency}"))
    if "accuracy" in mixed and teacher.get("accuracy"):
        cards.append(Card(f"{100 * mixed['accuracy'] / teacher['accuracy']:.0f}%", "of the teacher's accuracy kept",
                          f"student + retrieval {100 * mixed['accuracy']:.1f}% vs teacher "
                          f"{100 * teacher['accuracy']:.1f}% on {summary['test_examples']} test examples"))
    counts = {kind: sum(1 for r in recs if outcome(r) == kind) for kind in ("retrieval fixed it", "retrieval broke it")}
    if "accuracy" in mixed and "accuracy" in alone:
        delta = 100 * (mixed["accuracy"] - alone["accuracy"])
        cards.append(Card(f"{delta:+.1f} points", "from retrieval",
                          f"student alone {100 * alone['accuracy']:.1f}% → with retrieval {100 * mixed['accuracy']:.1f}%"
                          f" (plain KD {100 * kd['accuracy']:.1f}%): it fixed {counts['retrieval fixed it']} and broke "
                          f"{counts['retrieval broke it']} test examples" if "accuracy" in kd else ""))
    generated = run_summary.get("generate") or {}
    ppo = run_summary.get("ppo") or {}
    student = run_summary.get("student") or {}
    items = student.get("items") or {}
    steps = [
        ("1 · Soft prompt", f"The frozen teacher learned {run.config.prompt_tuning.num_virtual_tokens} soft prompt "
         f"tokens from the labelled examples, then wrote {generated.get('generated', '?')} new samples; "
         f"{generated.get('stored', '?')} went into the store with the teacher's soft labels."),
        ("2 · PPO", f"Reinforcement learning tuned the prompt for label quality and diversity and wrote "
         f"{ppo.get('stored')} more samples." if ppo.get("stored") else
         "Optional, and off in this run: reinforcement learning on the prompt"
         + (f" ({gain.sentence()})." if (gain := ppo_gain()) else ".")),
        ("3 · Retrieval student", f"A student of {_millions(s_params or 0)} parameters learned from the store's "
         f"{items.get('store_entries', '?')} entries; it retrieves the {mixed.get('k', '?')} nearest of the "
         f"{items.get('indexed', '?')} it indexed and mixes their teacher labels into its own answer "
         f"(beta {mixed.get('beta', '?')})." + _left_out(items)),
    ]
    examples = {kind: ex for kind in counts if (ex := _example(recs, kind)) is not None}
    title = f"{summary['task']}: a {100 * s_params / t_params:.1f}% student" if t_params and s_params else summary["task"]
    return Classroom(title, cards, steps, examples, counts, weak_teacher_warning(summary),
                     check_line(run_summary.get("check")))


def _left_out(items: dict) -> str:
    """Why the student indexes fewer entries than the store holds, when it does."""
    stored, indexed = items.get("store_entries"), items.get("indexed")
    if not isinstance(stored, int) or not isinstance(indexed, int) or indexed >= stored:
        return ""
    left = stored - indexed
    other = f"The other {left} are" if left != 1 else "The other one is"
    if items.get("filter") == "agree":
        return (f" {other} never retrieved: the teacher's label disagreed with the label "
                "they were written for (the Knowledge store tab lists them under agreement: disagrees).")
    # Without the agreement filter only an entry the teacher never labelled is left out (a hand edit's, say).
    return f" {other} never retrieved: {'they carry' if left != 1 else 'it carries'} no teacher soft labels."


def cards_html(view: Classroom) -> str:
    """The big numbers as a wrapping row of cards (no table: it must fit a projector's width)."""
    cards = "".join(f"<div class='rk-card'><div class='rk-value'>{html.escape(c.value)}</div>"
                    f"<div class='rk-caption'>{html.escape(c.caption)}</div>"
                    f"<div class='rk-detail'>{html.escape(c.detail)}</div></div>" for c in view.cards)
    warning = ""
    if view.warning:  # Markdown bold in the shared sentence; plain text here
        warning = f"<div class='rk-warning'>{html.escape(view.warning.replace('**', ''))}</div>"
    if view.check:
        warning += f"<p class='rk-check'>{html.escape(view.check.replace('**', ''))}</p>"
    return f"<h2 class='rk-title'>{html.escape(view.title)}</h2>{warning}<div class='rk-cards'>{cards}</div>"


def steps_html(view: Classroom) -> str:
    """The three steps left to right, as arrows."""
    boxes = "<div class='rk-arrow'>→</div>".join(
        f"<div class='rk-step'><div class='rk-step-name'>{html.escape(name)}</div>"
        f"<div class='rk-step-text'>{html.escape(text)}</div></div>" for name, text in view.steps)
    return f"<div class='rk-steps'>{boxes}</div>"


def example_html(record: dict | None, kind: str) -> str:
    if record is None:
        return f"<div class='rk-example'>No test example where {html.escape(kind)}.</div>"
    text = record["text"] if len(record["text"]) <= SHORT_TEXT else record["text"][: SHORT_TEXT - 1] + "…"
    return (f"<div class='rk-example'><div class='rk-caption'>{html.escape(kind.capitalize())}:</div>"
            f"<div class='rk-quote'>“{html.escape(text)}”</div>"
            f"<div class='rk-detail'>gold <b>{html.escape(record['gold'])}</b> · student alone "
            f"<b>{html.escape(record['student']['pred'])}</b> · with retrieval "
            f"<b>{html.escape(record['student_retrieval']['pred'])}</b></div></div>")


def classroom_figure(workspace, run_name: str | None) -> go.Figure:
    """The view's one figure: test accuracy of the teacher and the students, in large type; the student trained on
    the gold labels alone shows what the teacher adds."""
    systems = eval_summary(workspace, run_name)["systems"]
    names = {"teacher": ("teacher", "#f5b041"), "student_gold": ("gold labels only", "#bdc3c7"),
             "student": ("student alone", "#5dade2"), "plain_kd": ("plain KD", "#7f8c8d"),
             "student_retrieval": ("student + retrieval", "#2e86de")}
    shown = [(label, 100 * systems[key]["accuracy"], colour) for key, (label, colour) in names.items()
             if "accuracy" in systems.get(key, {})]
    # Bars across, one system a row: the chart sits in a column beside the cards, where upright bars' names collide.
    fig = go.Figure(go.Bar(y=[s[0] for s in shown], x=[s[1] for s in shown], orientation="h",
                           text=[f"{s[1]:.1f}%" for s in shown], textposition="outside", textfont=dict(size=24),
                           marker_color=[s[2] for s in shown], cliponaxis=False))
    majority = systems.get("majority", {}).get("accuracy")
    if majority is not None:
        # Its label sits above the top bar, where no bar's own label is.
        fig.add_vline(x=100 * majority, line_dash="dot", annotation_text=f"majority class {100 * majority:.1f}%",
                      annotation_position="top", annotation_font_size=18)
    fig.update_layout(height=440, margin=dict(l=10, r=30, t=40, b=50), font=dict(size=20),
                      xaxis=dict(title="test accuracy %", range=[0, 112]), yaxis=dict(autorange="reversed"))
    return fig
