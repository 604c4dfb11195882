"""RetriKT studio: `python app.py` serves the Gradio app (tabs are built from `pages/`)."""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from pages import generate, jobs, setup, store
from retrikt.jobs import JobManager
from retrikt.preload import preload_ml_stack

ASSETS = Path(__file__).resolve().parent / "assets"


@dataclass
class Studio:
    """What every page needs: the workspace, the shared job manager and the Blocks being built."""

    workspace: Path
    jobs: JobManager
    demo: gr.Blocks | None = None


def build_app(workspace: str | Path) -> tuple[gr.Blocks, Studio]:
    workspace = Path(workspace)
    preload_ml_stack()  # before the job thread exists: transformers' lazy import is not thread-safe
    studio = Studio(workspace, JobManager(workspace))
    with gr.Blocks(title="RetriKT studio") as demo:
        studio.demo = demo
        gr.Markdown("# RetriKT studio\nExtreme compression of an LLM by retrieval-based knowledge transfer.")
        # Tab order: Setup, Generate, Knowledge store, Jobs.
        for page in (setup, generate, store, jobs):
            page.build(studio)
    return demo, studio


def main() -> None:
    parser = argparse.ArgumentParser(description="RetriKT studio")
    parser.add_argument("--workspace", default=os.environ.get("RETRIKT_WORKSPACE", "workspace"))
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    args = parser.parse_args()
    demo, _ = build_app(args.workspace)
    css = (ASSETS / "studio.css").read_text(encoding="utf-8")
    demo.queue(default_concurrency_limit=8).launch(server_name=args.host, server_port=args.port, css=css,
                                                    theme=gr.themes.Soft())


if __name__ == "__main__":
    main()
