"""Classification tasks for retrieval-based knowledge transfer: templates, verbalizers and data splits.

`load_builtin` gives the packaged benchmark tasks (SST-2, CB, RTE, COPA, BoolQ, WiC, MRPC);
`load_custom` and `load_hub` build a task from a user file or a Hugging Face Hub dataset; `save_task` keeps one
in the workspace and `resolve_task` finds any task a run config names.
Every data problem the user can fix raises `TaskDataError`.
"""
from .base import MAX_GENERATED_CHARS, MAX_INPUT_CHARS, Example, Task, TaskDataError, normalize_text
from .builtin import BUILTIN_TASKS, KSHOT_SEEDS, canonical_name, load_builtin
from .files import preview_file
from .loaders import load_custom, load_hub
from .saved import (
    check_task_name, copy_into_run, is_builtin, list_saved, load_saved, load_task, resolve_task, same_task, save_task, task_of_run,
    tasks_root,
)

__all__ = [
    "BUILTIN_TASKS",
    "KSHOT_SEEDS",
    "MAX_GENERATED_CHARS",
    "MAX_INPUT_CHARS",
    "Example",
    "Task",
    "TaskDataError",
    "canonical_name",
    "check_task_name",
    "copy_into_run",
    "is_builtin",
    "list_saved",
    "load_saved",
    "load_task",
    "resolve_task",
    "same_task",
    "save_task",
    "task_of_run",
    "tasks_root",
    "load_builtin",
    "load_custom",
    "load_hub",
    "normalize_text",
    "preview_file",
]
