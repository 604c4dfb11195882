"""Command line: `python -m retrikt generate --task SST-2 [--config run.yaml] [--set generation.temperature=0.7]`;
`student --from RUN` trains and evaluates the step-3 student on a run, `run --task CB` does every step."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

from ..config import PRESETS, RunConfig, apply_preset, load_yaml, override, parse_sets, to_dict
from ..errors import Cancelled, RetriktError, RunError


def build_config(args) -> RunConfig:
    config = apply_preset(load_yaml(args.config) if args.config else RunConfig(), getattr(args, "preset", None))
    dotted = parse_sets(args.set or [])
    for key in ("task", "seed", "workspace", "run_name"):
        value = getattr(args, key, None)
        if value is not None:
            dotted[key] = value
    if args.teacher:
        dotted["teacher.model"] = args.teacher
    if getattr(args, "ppo", None) is not None:
        dotted["ppo.enabled"] = args.ppo
    return override(config, dotted)


class ConsoleProgress:
    """One line per stage change, then a throttled line per update (logs stay readable in CI)."""

    def __init__(self):
        self.stage, self.last, self.start = None, 0.0, time.perf_counter()

    def __call__(self, stage, done, total, info):
        now = time.perf_counter()
        if stage == self.stage and now - self.last < 2.0 and done < total:
            return
        self.stage, self.last = stage, now
        extra = info.get("message") or (f"loss {info['loss']:.3f}" if "loss" in info else "")
        if "samples" in info and info["samples"]:
            sample = info["samples"][-1]
            extra = f"[{sample.label}] {sample.raw.strip()[:90]!r}"
        print(f"[{now - self.start:7.1f}s] {stage:<9} {done}/{total} {extra}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m retrikt", description="RetriKT studio pipeline")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="step 1: tune the soft prompt, generate samples, fill the knowledge store")
    gen.add_argument("--task", help="built-in task (default SST-2) or a task saved with `task import`/`task hub`")
    gen.add_argument("--config", help="YAML config (as saved by the UI or `config` command)")
    gen.add_argument("--teacher", help="packaged:smollm2, a HF id, a model folder or a .gguf file")
    gen.add_argument("--seed", type=int)
    gen.add_argument("--workspace")
    gen.add_argument("--run-name", dest="run_name")
    gen.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any config field, e.g. generation.temperature=0.7")
    stu = sub.add_parser("student", help="step 3: train the retrieval student and plain KD on a run's store, then evaluate")
    stu.add_argument("--from", dest="from_run", required=True, metavar="RUN", help="step-1 run name or folder")
    stu.add_argument("--skip-eval", action="store_true", help="train only")
    full = sub.add_parser("run", help="the whole pipeline: step 1 [+ PPO with --ppo] + student + evaluation")
    for command in (stu, full):
        command.add_argument("--task", help="built-in task (default SST-2) or a task saved with `task import`/`task "
                                            "hub` in the same --workspace")
        command.add_argument("--config", help="YAML config")
        command.add_argument("--workspace")
        command.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any config field")
        command.add_argument("--eval-limit", dest="eval_limit", type=int, help="evaluate on a fixed subset of the test split")
    stu.set_defaults(teacher=None)  # the run's own teacher evaluates its student
    full.add_argument("--teacher", help="packaged:smollm2, a HF id, a model folder or a .gguf file")
    full.add_argument("--seed", type=int)
    full.add_argument("--run-name", dest="run_name")
    full.add_argument("--ppo", action=argparse.BooleanOptionalAction, default=None,
                      help="do step 2 (PPO) between step 1 and the student (default: off, see `ppo.enabled`)")
    full.add_argument("--preset", choices=sorted(PRESETS),
                      help="named settings under the config and --set: quick = the Classroom's short live run")
    ppo = sub.add_parser("ppo", help="step 2: PPO on a run's step-1 soft prompt, then add generated:ppo samples")
    ppo.add_argument("--from", dest="from_run", required=True, metavar="RUN", help="step-1 run name or folder")
    ppo.add_argument("--task", help="expected task of the run (checked)")
    ppo.add_argument("--workspace")
    ppo.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field, e.g. ppo.updates=8")
    pack = sub.add_parser("pack-demo", help="turn an evaluated run into the studio's shipped demo run")
    pack.add_argument("--from", dest="from_run", required=True, metavar="RUN", help="evaluated run name or folder")
    pack.add_argument("--workspace", default="workspace")
    pack.add_argument("--dest", help="asset folder to write (default: the studio's assets/demo-run)")
    export = sub.add_parser("export", help="write a run's trained student, key index and store as one folder + .zip")
    export.add_argument("--from", dest="from_run", required=True, metavar="RUN", help="run name or folder")
    export.add_argument("--out", required=True, metavar="DIR", help="bundle folder to write (DIR.zip too)")
    export.add_argument("--workspace", default="workspace")
    export.add_argument("--push-to-hub", dest="push_to_hub", metavar="REPO",
                        help="also upload the folder to this Hugging Face model repo (needs HF_TOKEN)")
    check = sub.add_parser("check", help="before a run: does the teacher know the task? (its accuracy on the dev "
                                          "rows with a 90%% interval, chance and the commonest label, a MiniLM baseline, a verdict)")
    check.add_argument("--task", help="built-in task (default SST-2) or a task saved with `task import`/`task hub`")
    check.add_argument("--config", help="YAML config")
    check.add_argument("--teacher", help="packaged:smollm2, a HF id, a model folder or a .gguf file")
    check.add_argument("--seed", type=int)
    check.add_argument("--workspace")
    check.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field, e.g. "
                                                                           "scorer.answer_score=mean")
    from .tasks import add_parser as add_task_parser

    add_task_parser(sub)
    show = sub.add_parser("config", help="print the default (or given) config as YAML")
    show.add_argument("--config")
    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except RetriktError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (Cancelled, KeyboardInterrupt):
        hint = " (the PPO checkpoint is kept; run the same command again to resume)" if args.command == "ppo" else ""
        print(f"cancelled{hint}", file=sys.stderr)
        return 130


def _dispatch(args) -> int:
    if args.command == "pack-demo":
        from ..runs import open_run
        from ..studio.demo import DEMO_ASSET, pack_demo

        print(json.dumps(pack_demo(open_run(args.workspace, args.from_run), Path(args.dest or DEMO_ASSET))))
        return 0
    if args.command == "export":
        import os

        from ..runs import open_run
        from ..student.bundle import export_bundle, push_bundle

        report = export_bundle(open_run(args.workspace, args.from_run), Path(args.out))
        if args.push_to_hub:
            report["pushed"] = push_bundle(args.out, args.push_to_hub, os.environ.get("HF_TOKEN"))
        print(json.dumps(report, indent=2))
        return 0
    if args.command == "task":
        from .tasks import main_task

        return main_task(args)
    if args.command == "config":
        config = load_yaml(args.config) if args.config else RunConfig()
        print(yaml.safe_dump(to_dict(config), sort_keys=False), end="")
        return 0
    if args.command == "ppo":
        return _ppo(args)
    if args.command == "check":
        from ..generate.check import run_check

        report = run_check(build_config(args), lambda message: print(message, file=sys.stderr, flush=True))
        print(json.dumps(report, indent=2))
        print(report["verdict"])
        return 0

    config = build_config(args)
    from ..generate.stage import run_generate
    from ..student.stage import run_student
    from ..workflow import run_all

    if args.command == "student":
        run = run_student(config, args.from_run, ConsoleProgress(), evaluate_after=not args.skip_eval,
                          eval_limit=args.eval_limit, check_task=args.task is not None)
    elif args.command == "run":
        limit = args.eval_limit if args.eval_limit is not None else (
            PRESETS[args.preset].eval_limit if args.preset else None)
        run = run_all(config, ConsoleProgress(), eval_limit=limit)
    else:
        run = run_generate(config, ConsoleProgress())
    print(json.dumps(run.summary(), indent=2))
    print(f"run folder: {run.path}")
    return 0


def _ppo(args) -> int:
    """`ppo --from RUN` [--task NAME to double-check] [--workspace DIR] [--set KEY=VALUE]."""
    from ..ppo.stage import run_ppo
    from ..runs import open_run
    from ..tasks import same_task

    workspace = args.workspace or RunConfig().workspace
    overrides = parse_sets(args.set or [])
    run = open_run(workspace, args.from_run)
    if args.task and not same_task(args.task, run.config.task):
        raise RunError(f"run {run.name} is a {run.config.task} run, not {args.task}")
    run = run_ppo(workspace, args.from_run, overrides, ConsoleProgress())
    print(json.dumps(run.summary().get("ppo", {}), indent=2))
    print(f"run folder: {run.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
