"""All three steps in one run folder: step 1, step 2 (PPO) when `ppo.enabled` (off by default), step 3 and the
evaluation."""
from __future__ import annotations

from .config import RunConfig
from .errors import Cancelled
from .context import Progress, load_context, noop_progress
from .generate.stage import run_generate
from .ppo.stage import stage_ppo
from .runs import Run
from .student.stage import run_student


def run_all(config: RunConfig, progress: Progress = noop_progress, eval_limit: int | None = None,
            should_stop=None) -> Run:
    """The `run` command: every step with `config`, the loaded teacher kept between them."""
    run = run_generate(config, progress, should_stop)
    _check_stop(should_stop, "after step 1")
    ctx = load_context(run.config, progress, run=run)
    if config.ppo.enabled and config.ppo.updates > 0:
        run.update_summary(ppo=stage_ppo(ctx, progress, should_stop))
        _check_stop(should_stop, "after PPO")

    def guarded(stage, done, total, info):
        # Step 3 checks for a cancel at every progress report (an epoch, a stage of the evaluation).
        _check_stop(should_stop, f"during {stage}")
        progress(stage, done, total, info)

    return run_student(run.config, str(run.path), guarded, eval_limit=eval_limit, teacher=ctx.teacher,
                       should_stop=should_stop)


def _check_stop(should_stop, where: str) -> None:
    if should_stop is not None and should_stop():
        raise Cancelled(f"stopped {where}")


def run_all_job(config: RunConfig, eval_limit: int | None = None):
    """A job function (for `JobManager.submit`) running every step with `config` (its run name must be set)."""
    def fn(progress, should_stop, job):
        job.run = config.run_name
        return run_all(config, progress, eval_limit, should_stop).name

    return fn
