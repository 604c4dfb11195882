"""RetriKT studio: `python app.py` serves the Gradio app (tabs are built from `pages/`)."""
from __future__ import annotations

import argparse
import os
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from pathlib import Path

import gradio as gr

from pages import compare, generate, jobs, ppo, setup, store, student
from retrikt.demo import install_demo
from retrikt.jobs import JobManager
from retrikt.preload import preload_ml_stack

ASSETS = Path(__file__).resolve().parent / "assets"
log = logging.getLogger("retrikt.studio")


@dataclass
class Studio:
    """What every page needs: the workspace, the shared job manager and the Blocks being built."""

    workspace: Path
    jobs: JobManager
    demo: gr.Blocks | None = None
    tabs: gr.Tabs | None = None
    pages: dict[str, Any] = field(default_factory=dict)
    """What a page exposes to others (e.g. the store tab's run picker), by page name."""
    links: list[tuple[str, Callable[[Any], None]]] = field(default_factory=list)
    """(page name, wire) pairs: `wire(pages[name])` runs once every page is built, for cross-tab links."""


def build_app(workspace: str | Path) -> tuple[gr.Blocks, Studio]:
    workspace = Path(workspace)
    preload_ml_stack()  # before the job thread exists: transformers' lazy import is not thread-safe
    started = time.perf_counter()
    if install_demo(workspace) is not None:
        log.info("demo run ready in %.1f s", time.perf_counter() - started)
    studio = Studio(workspace, JobManager(workspace))
    with gr.Blocks(title="RetriKT studio") as demo:
        studio.demo = demo
        gr.Markdown("# RetriKT studio\nExtreme compression of an LLM by retrieval-based knowledge transfer.")
        with gr.Tabs() as studio.tabs:
            # Compare first: it is what a visitor came to see, and the shipped demo run fills it.
            for page in (compare, setup, generate, ppo, store, student, jobs):
                page.build(studio)
        for name, wire in studio.links:
            wire(studio.pages[name])
    return demo, studio


def main() -> None:
    parser = argparse.ArgumentParser(description="RetriKT studio")
    parser.add_argument("--workspace", default=os.environ.get("RETRIKT_WORKSPACE", "workspace"))
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    args = parser.parse_args()
    demo, _ = build_app(args.workspace)
    css = (ASSETS / "studio.css").read_text(encoding="utf-8")
    js = (ASSETS / "studio.js").read_text(encoding="utf-8")
    demo.queue(default_concurrency_limit=8).launch(server_name=args.host, server_port=args.port, css=css, js=js,
                                                    theme=gr.themes.Soft())


if __name__ == "__main__":
    main()
