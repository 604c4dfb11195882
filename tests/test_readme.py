"""The README is a front door whose numbers come from bench/results/, never typed by hand."""
import re

from bench.readme import IMAGES, README, RENDERERS, SCREENSHOTS, render


def test_the_readmes_generated_blocks_are_what_the_results_say():
    text = README.read_text(encoding="utf-8")
    assert set(re.findall(r"<!-- generated: (\w+) -->", text)) == set(RENDERERS)
    assert render(text) == text, "README.md is out of date with bench/results: run python -m bench.readme"


def test_the_readme_is_short_and_shows_its_screenshots():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 160
    for name in SCREENSHOTS:
        assert f"(docs/images/{name}.png)" in text and (IMAGES / f"{name}.png").is_file()


def test_a_number_outside_the_generated_blocks_is_not_a_measurement():
    prose = re.sub(r"<!-- generated: (\w+) -->.*?<!-- end: \1 -->", "", README.read_text(encoding="utf-8"), flags=re.S)
    prose = re.sub(r"```.*?```", "", prose, flags=re.S)  # commands and code, not claims
    measured = re.findall(r"\d+(?:\.\d+)?\s*(?:%|×|x\b|min\b|minutes|s\b|seconds|ms\b|MB|GB)", prose)
    allowed = {"1%", "90%"}  # the method's target size and the check's interval: definitions, not results
    assert set(measured) <= allowed, measured
