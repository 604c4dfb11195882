"""Step-1 runs `bench-SST-2-s<seed>` (same settings as the accuracy benchmark), one after the other.

Usage: python -m bench.step1_runs --workspace DIR --seeds 13 21
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402

from bench.accuracy import log, quiet_progress, step1  # noqa: E402

ROOT = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default=str(ROOT.parent / "workspace"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[13, 21])
    parser.add_argument("--task", default="SST-2")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for seed in args.seeds:
        log(f"step 1 {args.task} seed {seed}")
        step1(Path(args.workspace), args.task, seed, quiet_progress)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
