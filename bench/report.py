"""Every file in bench/results/ names the command that writes it, so a number can be traced to the code behind it
and regenerated rather than edited: a report's first lines say "Written by `python -m bench.x`", a JSON report
carries a "written_by" key.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
KEY = "written_by"
BEGIN, END = "<!-- table:begin -->", "<!-- table:end -->"
# Findings written after reading a report's numbers go below this line, where a rewrite of the report keeps them.
NOTES = "<!-- Notes written by hand after the run: the script keeps everything below this line as it is. -->"


def command(script: str) -> str:
    """`python -m bench.<name>` for a bench module's `__file__` (or its name)."""
    return f"python -m bench.{Path(script).stem}"


def header(script: str, how: str = "", tables_only: bool = False) -> str:
    """The line under a report's title. `how` adds the arguments or the mode that wrote this file; `tables_only`
    says that the script writes only what stands between the table markers."""
    written = f"Written by `{command(script)}{' ' + how if how else ''}`"
    return written + (" between the table markers; the text around them is written by hand." if tables_only else ".")


def stamp(text: str, script: str, how: str = "", tables_only: bool = False) -> str:
    """`text` with the header as its first line under the title (a header already there is replaced)."""
    lines = text.split("\n")
    title = lines[:1] if lines and lines[0].startswith("# ") else []
    rest = lines[len(title):]
    while rest and (not rest[0].strip() or rest[0].startswith("Written by `python -m bench.")):
        rest.pop(0)
    return "\n".join(title + [""] * bool(title) + [header(script, how, tables_only), ""] + rest)


def write_md(path: Path, text: str, script: str, how: str = "") -> None:
    """Write a report; what stands below the NOTES line of the file already there is kept as it is."""
    text = stamp(text, script, how).rstrip("\n") + "\n"
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    if NOTES in old:
        text += "\n" + NOTES + old.split(NOTES, 1)[1]
    path.write_text(text, encoding="utf-8")


def replace_table(md: Path, body: str, script: str, new_head: str = "") -> None:
    """Write `body` between the table markers of `md` (a new file: `new_head` then the markers), so the prose a
    person wrote around the table survives a re-run; the header under the title names `script`."""
    text = md.read_text(encoding="utf-8") if md.is_file() else f"{new_head}{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    text = head + BEGIN + "\n" + body + "\n" + END + rest.split(END, 1)[1]
    md.write_text(stamp(text, script, tables_only=True), encoding="utf-8")


def block_markers(name: str) -> tuple[str, str]:
    return f"<!-- table:{name}:begin -->", f"<!-- table:{name}:end -->"


def replace_blocks(md: Path, blocks: dict[str, str], script: str, new_head: str = "") -> None:
    """`replace_table` for a report with several tables: each body goes between its own named markers (a marker
    pair missing from the file is appended at the end)."""
    text = md.read_text(encoding="utf-8") if md.is_file() else new_head
    for name, body in blocks.items():
        begin, end = block_markers(name)
        if begin not in text:
            text = text.rstrip("\n") + f"\n\n{begin}\n{end}\n"
        head, rest = text.split(begin, 1)
        text = head + begin + "\n" + body + "\n" + end + rest.split(end, 1)[1]
    md.write_text(stamp(text, script, tables_only=True), encoding="utf-8")


def with_key(data: dict, script: str, how: str = "") -> dict:
    """`data` with "written_by" first (any older value replaced)."""
    return {KEY: command(script) + (f" {how}" if how else ""), **{k: v for k, v in data.items() if k != KEY}}


def write_json(path: Path, data: dict, script: str, how: str = "", indent: int = 2, newline: bool = True) -> None:
    text = json.dumps(with_key(data, script, how), indent=indent)
    path.write_text(text + ("\n" if newline else ""), encoding="utf-8")


def write_report(out: Path, stem: str, data: dict, text: str, script: str, how: str = "", indent: int = 2,
                 newline: bool = True) -> None:
    """`<stem>.json` and `<stem>.md` in `out`, both naming `script`."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{stem}.json", data, script, how, indent, newline)
    write_md(out / f"{stem}.md", text, script, how)


def runs_cli(doc: str, stem: str, script: str, collect, render) -> None:
    """The command line of a bench that reads finished runs, `WORKSPACE RUN [RUN ...] [--note TEXT]`, into
    {"note", "runs": collect(workspace, runs)}; with --render it rewrites the md from the JSON instead."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workspace", nargs="?")
    parser.add_argument("runs", nargs="*")
    parser.add_argument("--note", default="")
    parser.add_argument("--render", action="store_true", help=f"rewrite {stem}.md from {stem}.json, reading no run")
    args = parser.parse_args()
    if args.render:
        data = json.loads((RESULTS / f"{stem}.json").read_text(encoding="utf-8"))
    elif not (args.workspace and args.runs):
        parser.error("WORKSPACE and at least one RUN, or --render")
    else:
        data = {"note": args.note, "runs": collect(args.workspace, args.runs)}
    write_report(RESULTS, stem, data, render(data), script)
    print(render(data))


def entries(data: dict) -> dict:
    """A JSON report keyed by run (task, variant|seed, ...) without its "written_by" key."""
    return {k: v for k, v in data.items() if k != KEY}
