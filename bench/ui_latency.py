"""Page-action latency of every tab, idle and while a step-1 job holds the CPU, against a real `python app.py`.

    python -m bench.ui_latency [--teacher-cache DIR] [--rounds 5] [--store-entries 100000]
    python -m bench.ui_latency --render [--store-entries 100000]   # rewrite the md from the JSON

Each action is one gradio_client call (the server round trip a click makes; the browser's rendering is not in
it). `--teacher-cache` is a workspace `cache/` folder holding the converted teacher, so the job starts quickly.
`--store-entries N` first grows the demo run's store and key index by N entries (`bench/big_store.py`), makes
one store edit (so Compare redoes retrieval through the edited store), and also times each action's first call
(cold caches). Writes bench/results/ui_latency.{json,md}, or ui_latency-<N>.{json,md} with --store-entries.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.report import write_json, write_md

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DEMO = "demo-SST-2"
# seed, run name, soft prompt tokens, tuning steps, tuning batch, tuning lr, init from text, samples per label,
# generation batch, max new tokens, temperature, top-p, sampling seed, student size, width, layers, k
SETUP_FORM = [13, "", 16, 0, 8, 0.03, True, 0, 32, 0, 0.9, 0.95, 13, 0.01, 128, 3, 8, False]
STORE_FILTERS = ["any", "any", "any", None, "", "", 20, 1]


def actions(client) -> dict:
    """Tab -> (description, call) of its most common action."""
    return {
        "Compare": ("open the demo run (table, chart, first example)", lambda: open_compare(client)),
        "Compare (example)": ("open another example",
                              lambda: client.predict(DEMO, "sst2-dev-7", api_name="/compare_example")),
        "Compare (filter)": ("pick 'retrieval broke it'",
                             lambda: client.predict(DEMO, "retrieval broke it", api_name="/compare_filter")),
        "Compare (typed)": ("predict a typed review", lambda: client.predict(
            DEMO, "a gorgeous , witty , seductive movie .", "", api_name="/compare_predict")),
        "Setup": ("save the config as YAML", lambda: client.predict(
            "packaged", "", "", "Built-in or saved task", "SST-2", *SETUP_FORM, api_name="/setup_save")),
        "Generate": ("poll the job", lambda: client.predict(api_name="/generate_poll")),
        "PPO": ("poll the job", lambda: client.predict(api_name="/ppo_poll")),
        "Knowledge store (from Compare)": ("open a neighbour from Compare (the run's table and map, then the "
                                           "entry)", lambda: from_compare(client)),
        "Knowledge store": ("filter the table (text contains 'good'), then its map", lambda: store_filter(
            client, DEMO, "", "any", "any", "any", None, "good", "", 20, 1)),
        "Knowledge store (label)": ("filter the table (label negative), then its map", lambda: store_filter(
            client, DEMO, "", "negative", "any", "any", None, "", "", 20, 1)),
        "Knowledge store (page)": ("next page of the whole store", lambda: client.predict(
            DEMO, "", "any", "any", "any", None, "", "", 20, 1, api_name="/store_next_page")),
        "Knowledge store (open)": ("open an entry (details and the map with it ringed)", lambda: client.predict(
            DEMO, opened_entry(client), *STORE_FILTERS, api_name="/store_open")),
        "Knowledge store (search)": ("semantic search, 20 nearest, then their map", lambda: store_filter(
            client, DEMO, "", "any", "any", "any", None, "", "a boring film", 20, 1)),
        "Student": ("show a run's results", lambda: client.predict(DEMO, api_name="/student_results")),
        "Jobs": ("poll the table", lambda: client.predict("", api_name="/jobs_poll")),
    }


def store_filter(client, *inputs):
    """Apply in the Knowledge store: the rows, then the map (the browser's two events, one after the other)."""
    rows = client.predict(*inputs, api_name="/store_list")
    return rows, client.predict(*inputs, api_name="/store_map")


_NEIGHBOUR: dict[str, str] = {}


def open_compare(client):
    """Open the demo run in Compare; remembers the first example's first neighbour, which `from_compare` opens."""
    shown = client.predict(DEMO, "all", api_name="/compare_open_run")
    _NEIGHBOUR.setdefault("id", shown[9]["data"][0][-1])  # the neighbour table's last column is the entry id
    return shown


def from_compare(client):
    """Compare's "Open it in the Knowledge store tab": the tab loads the run (rows and map), then opens the entry."""
    run = client.predict(DEMO, *STORE_FILTERS, api_name="/store_open_run")
    return run, client.predict(DEMO, _NEIGHBOUR["id"], *STORE_FILTERS, api_name="/store_open")


def opened_entry(client, _seen: dict = {}) -> str:  # noqa: B006 - a per-process memo of one id
    """The id of the table's 150th row (any entry; read once)."""
    if "id" not in _seen:
        table = client.predict(DEMO, "", *STORE_FILTERS, api_name="/store_list")[1]
        _seen["id"] = table["data"][min(149, len(table["data"]) - 1)][0]
    return _seen["id"]


def timed(call, rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


@contextlib.contextmanager
def serve(workspace: Path, env: dict | None = None):
    """A real `python app.py` on a free loopback port for the block's duration; yields its URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "app.py", "--workspace", str(workspace), "--port", str(port)],
                              cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 300
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise RuntimeError("the studio did not start")
                time.sleep(1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--teacher-cache", help="a workspace cache/ folder with the converted teacher")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--store-entries", type=int, default=0,
                        help="grow the demo run's store by this many entries first")
    parser.add_argument("--render", action="store_true",
                        help="start nothing: rewrite the md of --store-entries' report from its JSON")
    args = parser.parse_args()
    if args.render:
        stem = f"ui_latency-{args.store_entries}" if args.store_entries else "ui_latency"
        write(json.loads((RESULTS / f"{stem}.json").read_text(encoding="utf-8")), args.store_entries)
        return
    from gradio_client import Client

    workspace = Path(tempfile.mkdtemp(prefix="retrikt-ui-"))
    if args.teacher_cache:
        shutil.copytree(args.teacher_cache, workspace / "cache")
    grown = None
    if args.store_entries:
        from bench.big_store import grow

        grown = grow(workspace, args.store_entries)
    try:
        with serve(workspace) as url:
            client = Client(url, verbose=False)
            todo = actions(client)
            if grown:
                # One hand edit: Compare then redoes each example's retrieval through the edited store.
                client.predict(DEMO, opened_entry(client), "negative", *STORE_FILTERS,
                               api_name="/store_set_label")
            client.predict("SST-2", 0, 0, 0.9, 0.95, api_name="/generate_start")
            while not any(f"`{stage}`" in client.predict(api_name="/generate_poll")[0] for stage in ("score", "tune")):
                time.sleep(1)
            # The first call of each action, while the job runs: cold caches (the student, the key index, the
            # map's axes) on a busy machine, the worst a visitor meets.
            first_call = {tab: timed(call, 1)[0] for tab, (_, call) in todo.items()}
            busy = {tab: timed(call, args.rounds) for tab, (_, call) in todo.items()}
            state = client.predict(api_name="/generate_poll")[0].split("\n")[0]
            client.predict(api_name="/generate_cancel")
            while not any(word in client.predict(api_name="/generate_poll")[0] for word in ("cancelled", "failed")):
                time.sleep(1)
            idle = {tab: timed(call, args.rounds) for tab, (_, call) in todo.items()}
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    rows = {tab: {"action": todo[tab][0], "first_call_s": round(first_call[tab], 3),
                  "idle_median_s": round(statistics.median(idle[tab]), 3),
                  "busy_median_s": round(statistics.median(busy[tab]), 3), "busy_max_s": round(max(busy[tab]), 3)}
            for tab in todo}
    result = {"rounds": args.rounds, "job_while_busy": state, "first_call_busy": True, "cpu_threads": os.cpu_count(),
              "actions": rows, "store": grown or "the demo run's own store"}
    write(result, args.store_entries)
    print(render(result))


def write(result: dict, store_entries: int) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"ui_latency-{store_entries}" if store_entries else "ui_latency"
    how = f"--store-entries {store_entries}" if store_entries else ""
    write_json(RESULTS / f"{stem}.json", result, __file__, how)
    write_md(RESULTS / f"{stem}.md", render(result), __file__, how)


def render(result: dict) -> str:
    rows, grown = result["actions"], result.get("store")
    # Reports from before the store line and the first-call column were measured have neither.
    first = all("first_call_s" in r for r in rows.values())
    lines = [f"# Page-action latency (gradio_client round trip, median of {result['rounds']})", ""]
    if isinstance(grown, dict):
        lines += [f"The demo run's store grown to {grown['entries']:,} entries (`bench/big_store.py`), with one store "
                  "edit, so Compare redoes retrieval through the edited store.", ""]
    elif grown:
        lines += ["The demo run's own store.", ""]
    when = ", while the job runs" if result.get("first_call_busy") else ""
    lines += [(f"First call = the action's first call after the studio started (cold caches){when}. " if first else "")
              + f"Busy = while a step-1 job ran ({result['job_while_busy']}).", "",
              "| tab | action | " + ("first call s | " if first else "") + "idle s | busy s | busy max s |",
              "|---|---|" + "---|" * (4 if first else 3)]
    lines += [f"| {tab} | {r['action']} | " + (f"{r['first_call_s']} | " if first else "")
              + f"{r['idle_median_s']} | {r['busy_median_s']} | {r['busy_max_s']} |" for tab, r in rows.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
