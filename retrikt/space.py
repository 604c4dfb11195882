"""Space mode: the studio hosted for many anonymous visitors (a Hugging Face Space or any public server).

On in a Space (Hugging Face sets `SPACE_ID`) or with `RETRIKT_SPACE=1`. What changes:
- no free-text file path anywhere: the teacher comes from an allow-list, task data only by upload, a config YAML
  may not name a workspace, a local model, a Chroma server or another embedder;
- uploads are bounded in bytes and rows;
- curation edits a per-visitor copy of a run's store (the shared stores stay read-only);
- heavy jobs share one worker fairly: a bounded queue, one waiting-or-running job per visitor, and only the
  visitor who started a job can cancel it;
- the workspace lives under `/data` (a Space's only persistent disk) when it exists;
- optional login from `RETRIKT_AUTH` ("user:password,user2:password2").
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from .config import ConfigError, RunConfig

_TRUE = ("1", "true", "yes", "on")
DEFAULT_ALLOWED_TEACHERS = ("packaged:smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct",
                            "HuggingFaceTB/SmolLM2-360M-Instruct")
_VISITOR = re.compile(r"^[A-Za-z0-9_-]{6,64}$")


@dataclass(frozen=True)
class SpaceSettings:
    """How the studio behaves for visitors; `from_env` builds it from environment variables."""

    enabled: bool = False
    """Space mode on (`RETRIKT_SPACE=1`, or automatically when `SPACE_ID` is set)."""
    workspace: str = "workspace"
    """Workspace folder: `RETRIKT_WORKSPACE`, else `/data/retrikt` in Space mode when `/data` exists."""
    allowed_teachers: tuple[str, ...] = DEFAULT_ALLOWED_TEACHERS
    """Teachers a visitor may pick (`RETRIKT_ALLOWED_TEACHERS`, comma-separated); ignored outside Space mode."""
    max_upload_bytes: int = 5_000_000
    """Largest task file a visitor may upload (`RETRIKT_MAX_UPLOAD_MB`)."""  # design choice: 5 MB ~ 50k reviews
    max_upload_rows: int = 20_000
    """Most data rows in an uploaded task file (`RETRIKT_MAX_UPLOAD_ROWS`)."""
    max_queued_jobs: int = 3
    """Heavy jobs that may wait behind the running one (`RETRIKT_MAX_QUEUED`); more are refused with a message."""
    jobs_per_visitor: int = 1
    """Jobs one visitor may have waiting or running at once."""
    auth: tuple[tuple[str, str], ...] = field(default=())
    """Logins from `RETRIKT_AUTH` ("user:password,..."); empty = no login."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "SpaceSettings":
        env = os.environ if environ is None else environ
        enabled = env.get("RETRIKT_SPACE", "").lower() in _TRUE or (
            bool(env.get("SPACE_ID")) and env.get("RETRIKT_SPACE", "").lower() not in ("0", "false", "no", "off"))
        workspace = env.get("RETRIKT_WORKSPACE") or (
            "/data/retrikt" if enabled and os.path.isdir("/data") and os.access("/data", os.W_OK) else "workspace")
        allowed = tuple(t.strip() for t in env.get("RETRIKT_ALLOWED_TEACHERS", "").split(",") if t.strip())
        return cls(
            enabled=enabled, workspace=workspace, allowed_teachers=allowed or DEFAULT_ALLOWED_TEACHERS,
            max_upload_bytes=int(float(env.get("RETRIKT_MAX_UPLOAD_MB", "5")) * 1_000_000),
            max_upload_rows=int(env.get("RETRIKT_MAX_UPLOAD_ROWS", "20000")),
            max_queued_jobs=int(env.get("RETRIKT_MAX_QUEUED", "3")),
            auth=parse_auth(env.get("RETRIKT_AUTH", "")),
        )

    @property
    def max_upload_text(self) -> str:
        """The upload limit as Gradio's `max_file_size` takes it."""
        return f"{max(1, self.max_upload_bytes // 1000)}kb"


def parse_auth(text: str) -> tuple[tuple[str, str], ...]:
    """("user", "password") pairs from "user:password,user2:password2"; ConfigError on a pair without both."""
    pairs = []
    for item in (t.strip() for t in (text or "").split(",")):
        if not item:
            continue
        user, sep, password = item.partition(":")
        if not sep or not user.strip() or not password:
            raise ConfigError("RETRIKT_AUTH must look like user:password[,user2:password2]")
        pairs.append((user.strip(), password))
    return tuple(pairs)


def check_visitor_config(config: RunConfig, settings: SpaceSettings, workspace: str | Path) -> RunConfig:
    """Refuse what a visitor must not choose in Space mode; returns the config with the server's workspace."""
    if not settings.enabled:
        return config
    if config.teacher.model not in settings.allowed_teachers or config.teacher.gguf_file:
        raise ConfigError(f"this hosted studio runs only these teachers: {', '.join(settings.allowed_teachers)}; "
                          f"`{config.teacher.model}` is not one of them")
    if config.store.url:
        raise ConfigError("this hosted studio keeps stores on its own disk: `store.url` must be empty")
    if config.store.embedder:
        raise ConfigError("this hosted studio uses the packaged embedder: `store.embedder` must be empty")
    if config.student.encoder != "tiny":
        raise ConfigError("this hosted studio trains the built-in tiny student only: `student.encoder` must be tiny")
    config.workspace = str(workspace)
    return config


def visitor_id(browser_value: str | None, session_hash: str | None) -> str:
    """A visitor's id: the one their browser keeps, else (an API client) its session; always folder-safe."""
    for candidate in (browser_value, f"s-{session_hash}" if session_hash else None):
        if candidate and _VISITOR.match(candidate):
            return candidate
    return "anonymous"
