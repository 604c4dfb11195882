"""RetriKT studio: `python app.py` serves the Gradio app (tabs are built from `pages/`)."""
from __future__ import annotations

import argparse
import hashlib
import os
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from pathlib import Path

import gradio as gr

from pages import classroom, compare, generate, jobs, ppo, setup, store, student
from retrikt.config import ConfigError
from retrikt.studio.demo import install_demo
from retrikt.studio.store_view import serve_from_copies
from retrikt.jobs import JobManager
from retrikt.jobs import job_threads, preload_ml_stack
from retrikt.space import SpaceSettings, visitor_id

ASSETS = Path(__file__).resolve().parent / "assets"
VISITOR_COOKIE = "retrikt_visitor"  # set by assets/studio.js
log = logging.getLogger("retrikt.studio")


@dataclass
class Studio:
    """What every page needs: the workspace, the shared job manager and the Blocks being built."""

    workspace: Path
    jobs: JobManager
    space: SpaceSettings = field(default_factory=SpaceSettings)
    """Hosted (Space) mode settings; `space.enabled` False = one local user, nothing restricted."""
    demo: gr.Blocks | None = None
    tabs: gr.Tabs | None = None
    pages: dict[str, Any] = field(default_factory=dict)
    """What a page exposes to others (e.g. the store tab's run picker), by page name."""
    links: list[tuple[str, Callable[[Any], None]]] = field(default_factory=list)
    """(page name, wire) pairs: `wire(pages[name])` runs once every page is built, for cross-tab links."""

    def visitor(self, request: gr.Request | None) -> str | None:
        """Who is asking (Space mode): the login name, else the browser's visitor cookie, else the session.

        Outside Space mode there is one user and no owner (None)."""
        if not self.space.enabled:
            return None
        if request is None:
            return "anonymous"
        if getattr(request, "username", None):
            return "u-" + hashlib.sha1(request.username.encode("utf-8")).hexdigest()[:16]
        cookies = getattr(request, "cookies", None) or {}
        return visitor_id(cookies.get(VISITOR_COOKIE), getattr(request, "session_hash", None))

    def owns(self, request: gr.Request | None, run_name: str | None) -> bool:
        """Whether the asker may change this run (always, outside Space mode; in it, runs their jobs wrote)."""
        return not self.space.enabled or (bool(run_name) and run_name in self.jobs.runs_of(self.visitor(request)))


def build_app(workspace: str | Path, space: SpaceSettings | None = None) -> tuple[gr.Blocks, Studio]:
    workspace = Path(workspace)
    space = space or SpaceSettings()
    preload_ml_stack()  # before the job thread exists: transformers' lazy import is not thread-safe
    import torch

    torch.set_num_threads(job_threads())
    started = time.perf_counter()
    if install_demo(workspace) is not None:
        log.info("demo run ready in %.1f s", time.perf_counter() - started)
    if space.enabled:
        serve_from_copies(workspace)  # shared runs stay byte-identical whatever visitors do
        job_manager = JobManager(workspace, max_queued=space.max_queued_jobs, per_owner=space.jobs_per_visitor,
                                 owners_only=True)
    else:
        job_manager = JobManager(workspace)
    studio = Studio(workspace, job_manager, space)
    with gr.Blocks(title="RetriKT studio") as demo:
        studio.demo = demo
        gr.Markdown("# RetriKT studio\nExtreme compression of an LLM by retrieval-based knowledge transfer.")
        if space.enabled:
            gr.Markdown("*Hosted mode: runs and stores are shared and read-only; your edits in the Knowledge store "
                        "tab go to your own copy, and you can change the runs your own jobs made.*",
                        elem_id="space-note")
        with gr.Tabs() as studio.tabs:
            # Compare first: it is what a visitor came to see, and the shipped demo run fills it.
            for page in (compare, classroom, setup, generate, ppo, store, student, jobs):
                page.build(studio)
        for name, wire in studio.links:
            wire(studio.pages[name])
    return demo, studio


def main() -> None:
    parser = argparse.ArgumentParser(description="RetriKT studio")
    try:
        space = SpaceSettings.from_env()
    except (ConfigError, ValueError) as exc:  # a host's malformed setting: one line, not a traceback
        raise SystemExit(f"studio settings: {exc}") from None
    parser.add_argument("--workspace", default=space.workspace)
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    args = parser.parse_args()
    demo, _ = build_app(args.workspace, space)
    css = (ASSETS / "studio.css").read_text(encoding="utf-8")
    js = (ASSETS / "studio.js").read_text(encoding="utf-8")
    extra = {"auth": list(space.auth) or None, "max_file_size": space.max_upload_text} if space.enabled else {}
    demo.queue(default_concurrency_limit=8).launch(server_name=args.host, server_port=args.port, css=css, js=js,
                                                    theme=gr.themes.Soft(), **extra)


if __name__ == "__main__":
    main()
