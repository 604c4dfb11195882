"""Fit (or load) the independent SST-2 judge of generated samples and print its test accuracy.

The judge lives in the package (`retrikt/generate/judge.py`): TF-IDF word 1-2 grams + logistic regression on the
full SST-2 train set. The step-2 bench (`bench/ppo.py`) imports `load_judge` from here.

Usage: python -m bench.sst2_judge [--cache DIR]
"""
from __future__ import annotations

import argparse
from pathlib import Path

from retrikt.generate.judge import load_judge  # noqa: F401 - re-exported for bench/ppo.py

ROOT = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default="workspace/cache")
    args = parser.parse_args()
    judge = load_judge(Path(args.cache))
    print(f"SST-2 judge: test accuracy {judge.accuracy:.4f} (872 sentences), fitted in {judge.fit_seconds:.0f} s")


if __name__ == "__main__":
    main()
