"""Benchmarks of the RetriKT pipeline and studio. Each module runs from the repository root as
`python -m bench.<name>` and writes its report under `bench/results/`; modules share code as `from bench.x import y`."""
