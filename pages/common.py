"""Helpers the tabs share: turning the core's user-fixable errors into Gradio messages."""
from __future__ import annotations

import functools
import logging

import gradio as gr

from retrikt.errors import JobRefused, RetriktError

log = logging.getLogger("retrikt.studio")


def user_errors(fn):
    """Run a handler; a problem the user can fix becomes a `gr.Error` with the core's message (no traceback).

    `functools.wraps` keeps the signature visible, so Gradio still injects `gr.SelectData` arguments.
    """
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except RetriktError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        except UnicodeDecodeError:
            raise gr.Error("The file is not UTF-8 text: save it with UTF-8 encoding and try again.",
                           print_exception=False) from None
        except Exception as exc:  # noqa: BLE001 - the page must answer with a message, never a traceback
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(f"Unexpected problem ({type(exc).__name__}: {exc}). Details are in the server log.",
                           print_exception=False) from None

    return wrapper


def run_choices(names: list[str], current: str | None):
    """A run dropdown's update: the listed runs, keeping the current pick while it is listed, else the first."""
    return gr.update(choices=names, value=current if current in names else (names[0] if names else None))


def followed_job(jobs, current: str | None, kind: str):
    """(job id, job copy or None, queue position) of the job a tab follows: `current`, else its kind's newest."""
    if not current:
        newest = [j for j in jobs.snapshot() if j.kind == kind]
        current = newest[0].id if newest else None
    if current is None:
        return None, None, None
    return current, jobs.get(current), jobs.queue_position(current)


CANCEL_WAIT_S = 1.5
"""How long a Cancel click waits for its job to stop, so the status poll chained after it already shows
"cancelled" (a job stops within a batch, ~0.1-0.5 s; the tabs' timers poll only every 2 s)."""


def cancel_followed(jobs, current: str | None, kind: str, message: str, owner: str | None = None) -> None:
    """Ask the followed job to stop, say `message` when it was still queued or running, and wait up to
    `CANCEL_WAIT_S` for it to stop."""
    job_id, _, _ = followed_job(jobs, current, kind)
    try:
        cancelled = bool(job_id) and jobs.cancel(job_id, owner)
    except JobRefused as exc:
        raise gr.Error(str(exc), print_exception=False) from None
    if cancelled:
        gr.Info(message)
        jobs.wait_ended(job_id, CANCEL_WAIT_S)


def sample_rows(job) -> list[list[str]]:
    """The job's latest generations as (label, parsed, text) table rows."""
    return [[s["label"], "yes" if s["parsed"] else "no", s["text"]] for s in (job.samples if job else [])]


def editor_name(studio, request) -> str:
    """Who an edit is recorded under: the hosted visitor's id, else the login name, else the one local user."""
    visitor = studio.visitor(request)
    if visitor:
        return f"visitor {visitor[:12]}"
    return getattr(request, "username", None) or "local user"



class OptionalNumber(gr.Number):
    """A number box for a setting whose None means "the task's default"; only for settings whose minimum is above 0.

    The browser cannot show an empty number box: it shows None as 0 and sends an emptied box as "", which
    `gr.Number` refuses. So here 0 stands for None both ways, and an emptied box reads as None too.
    """

    is_template = True  # drawn by the browser's own Number component

    def preprocess(self, payload):
        return super().preprocess(None if payload in ("", 0) else payload)

    def postprocess(self, value):
        return super().postprocess(0 if value is None else value)
