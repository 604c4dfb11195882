"""Load: many concurrent visitors browsing Compare and the Knowledge store while one job runs.

    python -m bench.load [--sessions 20] [--rounds 10] [--teacher-cache DIR] [--space]
    python -m bench.load --render   # rewrite load.md from load.json, starting nothing

Starts a real `python app.py` on a fresh workspace (loopback only), starts one step-1 job, then runs `--sessions`
gradio_client visitors at once, each doing `--rounds` rounds of the page actions below, and stops by itself.
Writes bench/results/load.json and load.md (p50 / p95 / max per action, errors). `run_load` is what the test
suite's short version calls.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

from bench.report import write_json, write_md

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DEMO = "demo-SST-2"
FILTERS = ["any", "any", "any", None, "", "", 20]
QUERIES = ["a boring film", "wonderful acting", "the plot makes no sense", "a warm, funny story"]


def store_filter(client, *inputs):
    """Apply in the Knowledge store: the rows, then the map (the browser's two events, one after the other)."""
    return client.predict(*inputs, api_name="/store_list"), client.predict(*inputs, api_name="/store_map")


def _actions(client, examples: list[str], rng: random.Random) -> list[tuple[str, object]]:
    example = rng.choice(examples)
    return [
        ("compare: open run", lambda: client.predict(DEMO, "all", api_name="/compare_open_run")),
        ("compare: open example", lambda: client.predict(DEMO, example, api_name="/compare_example")),
        ("compare: filter", lambda: client.predict(DEMO, rng.choice(["retrieval fixed it", "retrieval broke it",
                                                                     "both wrong"]), api_name="/compare_filter")),
        ("store: filter", lambda: store_filter(client, DEMO, "", "any",
                                               rng.choice(["any", "generated:step1", "train"]), "any", None, "", "",
                                               20)),
        ("store: semantic search", lambda: store_filter(client, DEMO, "", *FILTERS[:5], rng.choice(QUERIES), 20)),
        ("jobs: poll", lambda: client.predict("", api_name="/jobs_poll")),
    ]


def run_load(url: str, sessions: int, rounds: int, seed: int = 0, think: float = 1.0,
             client_niceness: int = 5, ramp: float = 10.0) -> dict:
    """`sessions` visitors at once, `rounds` rounds of every action each; latencies per action and errors.

    Between two actions a visitor waits `think` seconds on average (uniform 0.5x-1.5x), as a person reading the
    page does; `think=0` fires back to back (a stress test, not browsing). Visitors arrive one by one over `ramp`
    seconds (a load tool's spawn rate), not all in the same instant."""
    from gradio_client import Client

    from retrikt.jobs import lower_thread_priority

    first = Client(url, verbose=False)
    _, _, _, _, example, *_ = first.predict(DEMO, "all", api_name="/compare_open_run")
    examples = [c[1] if isinstance(c, (list, tuple)) else c for c in example["choices"]][:50]
    times: dict[str, list[float]] = {}
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(sessions)

    def visitor(n: int) -> None:
        # The load runs on the server's machine; a visitor's browser would not take CPU from it. The client
        # threads (and the threads gradio_client starts from them) yield to the server.
        lower_thread_priority(client_niceness)
        rng = random.Random(seed + n)
        try:
            client = Client(url, verbose=False)
        except Exception as exc:  # noqa: BLE001 - counted as an error of the run
            with lock:
                errors.append(f"connect: {type(exc).__name__}: {exc}")
            barrier.abort()
            return
        try:
            barrier.wait(timeout=300)
        except threading.BrokenBarrierError:
            return
        time.sleep(ramp * n / sessions)
        for _ in range(rounds):
            for name, call in _actions(client, examples, rng):
                time.sleep(think * rng.uniform(0.5, 1.5))
                start = time.perf_counter()
                try:
                    call()
                except Exception as exc:  # noqa: BLE001
                    with lock:
                        errors.append(f"{name}: {type(exc).__name__}: {str(exc)[:200]}")
                    continue
                with lock:
                    times.setdefault(name, []).append(time.perf_counter() - start)

    started, client_cpu = time.perf_counter(), time.process_time()
    threads = [threading.Thread(target=visitor, args=(n,)) for n in range(sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=1800)
    wall = time.perf_counter() - started
    client_cpu = time.process_time() - client_cpu
    every = sorted(t for values in times.values() for t in values)

    def pct(values, q):
        values = sorted(values)
        return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else None

    return {
        "sessions": sessions, "rounds": rounds, "think_seconds": think, "ramp_seconds": ramp, "errors": errors,
        "actions": sum(len(v) for v in times.values()), "wall_seconds": round(wall, 1),
        "client_cpu_seconds": round(client_cpu, 1), "p50_s": round(pct(every, 0.5), 3) if every else None,
        "p95_s": round(pct(every, 0.95), 3) if every else None, "max_s": round(every[-1], 3) if every else None,
        "per_action": {name: {"n": len(v), "p50_s": round(statistics.median(v), 3), "p95_s": round(pct(v, 0.95), 3),
                              "max_s": round(max(v), 3)} for name, v in sorted(times.items())},
    }


def start_job(url: str) -> object:
    """Start a long step-1 job (its tuning holds the CPU) and return the client that follows it."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    client.predict("SST-2", 0, 400, 0.9, 0.95, api_name="/generate_start")
    deadline = time.time() + 300
    while "running" not in client.predict(api_name="/generate_poll")[0]:
        if time.time() > deadline:
            raise RuntimeError("the background job did not start")
        time.sleep(1)
    return client


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--teacher-cache", help="a workspace cache/ folder with the converted teacher")
    parser.add_argument("--space", action="store_true", help="serve in hosted (Space) mode")
    parser.add_argument("--think", type=float, default=1.0, help="mean seconds a visitor waits between actions")
    parser.add_argument("--ramp", type=float, default=10.0, help="seconds over which the visitors arrive")
    parser.add_argument("--render", action="store_true", help="rewrite load.md from load.json, starting nothing")
    args = parser.parse_args()
    if args.render:
        write(json.loads((RESULTS / "load.json").read_text(encoding="utf-8")))
        return
    from bench.ui_latency import serve

    workspace = Path(tempfile.mkdtemp(prefix="retrikt-load-"))
    if args.teacher_cache:
        shutil.copytree(args.teacher_cache, workspace / "cache")
    env = {"RETRIKT_SPACE": "1"} if args.space else {}
    with serve(workspace, env) as url:
        alone = run_load(url, 1, 2, think=0.2, ramp=0)  # the baseline: one visitor, no job, same actions
        follower = start_job(url)
        state = follower.predict(api_name="/generate_poll")[0].split("\n")[0]
        result = run_load(url, args.sessions, args.rounds, think=args.think, ramp=args.ramp)
        result["alone"] = {k: alone[k] for k in ("actions", "p50_s", "p95_s", "max_s")}
        result["job_during_load"] = state
        result["job_after_load"] = follower.predict(api_name="/generate_poll")[0].split("\n")[0]
        follower.predict(api_name="/generate_cancel")
    shutil.rmtree(workspace, ignore_errors=True)
    result.update(space_mode=args.space, cpu_count=os.cpu_count(), load_average=list(os.getloadavg()))
    write(result)
    print(render(result))


def write(result: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "load.json", result, __file__)
    write_md(RESULTS / "load.md", render(result), __file__)


def render(result: dict) -> str:
    lines = [f"# Load: {result['sessions']} concurrent visitors x {result['rounds']} rounds while a step-1 job runs", "",
             f"Visitors arrive over {result['ramp_seconds']:g} s; each waits {result['think_seconds']:g} s on average "
             "between actions (think time).", "",
             f"{result['actions']} page actions in {result['wall_seconds']} s, {len(result['errors'])} errors; "
             f"all actions p50 {result['p50_s']} s, **p95 {result['p95_s']} s**, max {result['max_s']} s "
             f"({result['cpu_count']} CPU cores, space mode {result['space_mode']}). The {result['sessions']} clients "
             f"ran on the same machine and used {result['client_cpu_seconds']} s of CPU "
             f"({result['client_cpu_seconds'] / result['wall_seconds']:.0%} of one core) that a real visitor's browser "
             "would not take from the server; they ran at niceness 5, the studio's job at 10, its page handlers at 0.",
             ""]
    if "alone" in result:  # runs from before the one-visitor baseline have none
        lines += [f"Baseline in the same run, one visitor alone and no job: p50 {result['alone']['p50_s']} s, slowest "
                  f"{result['alone']['max_s']} s; loaded p95 / slowest alone = "
                  f"**{result['p95_s'] / result['alone']['max_s']:.1f}×** (the test suite's short version asks ≤ 8×).",
                  ""]
    lines += [f"Job while loaded: {result['job_during_load']} → {result['job_after_load']}", "",
              "| action | n | p50 s | p95 s | max s |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {r['n']} | {r['p50_s']} | {r['p95_s']} | {r['max_s']} |"
              for name, r in result["per_action"].items()]
    if result["errors"]:
        lines += ["", "Errors (first 10):", *[f"- {e}" for e in result["errors"][:10]]]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
