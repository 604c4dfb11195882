"""All three steps in one run folder: step 1, step 2 (PPO) unless `ppo.updates` is 0, step 3 and the evaluation."""
from __future__ import annotations

from .config import RunConfig
from .context import Progress, load_context, noop_progress
from .generate.stage import run_generate
from .ppo.stage import stage_ppo
from .runs import Run
from .student.stage import run_student


def run_all(config: RunConfig, progress: Progress = noop_progress, eval_limit: int | None = None) -> Run:
    """The `run` command: every step with `config`, the loaded teacher kept between them."""
    run = run_generate(config, progress)
    ctx = load_context(run.config, progress, run=run)
    if config.ppo.updates > 0:
        run.update_summary(ppo=stage_ppo(ctx, progress))
    return run_student(run.config, str(run.path), progress, eval_limit=eval_limit, teacher=ctx.teacher)
