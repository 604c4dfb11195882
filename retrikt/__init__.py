"""RetriKT: compress a teacher LLM into a ~1% student that retrieves the teacher's knowledge from a store.

The public API, for notebooks and scripts (names load on first use, so `import retrikt` stays light)::

    import retrikt
    task = retrikt.load_task("SST-2", seed=13)              # a built-in or saved task and its splits
    run = retrikt.run_all(retrikt.RunConfig(task="SST-2"))  # steps 1-3 and the evaluation
    student = retrikt.load_student(run)                     # no teacher needed from here on
    student.predict(["a gripping , funny film ."], retrieval=True).labels

Step by step: `run_generate` (step 1), `run_ppo` (step 2), `run_student` (step 3); `open_run` / `list_runs` reopen
runs; `install_demo` puts the shipped demo run into a workspace; `export_bundle(run, DIR)` writes a trained student
with its key index and store as one folder, and `load_bundle(DIR)` predicts from it with no teacher or workspace. Every error a user can fix is a `RetriktError`.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "RunConfig": "config", "load_yaml": "config", "save_yaml": "config", "override": "config",
    "RetriktError": "errors", "Cancelled": "errors",
    "BUILTIN_TASKS": "tasks", "load_task": "tasks",
    "load_teacher": "teacher.load", "TeacherScorer": "teacher.scorer",
    "run_generate": "generate.stage", "run_ppo": "ppo.stage", "run_student": "student.stage", "run_all": "workflow",
    "Run": "runs", "open_run": "runs", "list_runs": "runs",
    "TrainedStudent": "student.predictor", "load_student": "student.predictor",
    "export_bundle": "student.bundle", "load_bundle": "student.bundle",
    "install_demo": "studio.demo", "DEMO_RUN": "studio.demo",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'retrikt' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
