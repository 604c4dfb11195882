"""The errors a user can cause and fix, as one family, and cooperative cancellation.

Every message names what to change. The studio's pages, the job runner and the CLI each catch `RetriktError` once
and show its message as one line; anything else is a bug and keeps its traceback in the log.
"""


class Cancelled(Exception):
    """Raised between steps when the caller's stop flag is set; artefacts finished so far stay valid."""


class RetriktError(Exception):
    """A problem the user can fix (bad input, bad setting, missing run or model); the message says how."""


class ConfigError(RetriktError, ValueError):
    """A configuration value the user can fix (unknown field, wrong type, out of range)."""


class RunError(RetriktError, ValueError):
    """Bad run name or a run folder that is missing what a stage needs."""


class TaskDataError(RetriktError, ValueError):
    """A problem with task data or a task definition that the user can fix; the message says how."""


class TeacherLoadError(RetriktError, RuntimeError):
    """The teacher could not be loaded; the message says what to change."""


class EmbedderError(RetriktError, RuntimeError):
    """The embedding model could not be found or loaded."""


class StoreError(RetriktError, RuntimeError):
    """A knowledge store that cannot be opened, read or written as asked; the message says what to do."""


class StudentError(RetriktError, RuntimeError):
    """The student cannot be built, trained or loaded; the message says what to change."""


class JobRefused(RetriktError, ValueError):
    """A job the manager will not take or cancel (queue full, visitor limit, someone else's job)."""


def check_stop(should_stop, what: str) -> None:
    """Raise Cancelled(what) when the caller's stop flag is set; `should_stop` None means nobody can stop this."""
    if should_stop is not None and should_stop():
        raise Cancelled(what)
