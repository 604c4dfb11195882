"""The studio in a real headless Chromium: every tab, the knowledge store view, and a step-1 job that survives a
page reload and stops on Cancel.

Screenshots go to `test-output/screenshots/`, the measured page-action latency to `test-output/latency.json`.
"""
from __future__ import annotations

import json
import re
import shutil
import statistics
import time
from pathlib import Path

import pytest

from test_store_view import seed_run


ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "test-output"
SHOTS = OUTPUT / "screenshots"
RUN = "browser-demo"
STAGES = ("load", "score", "tune", "generate", "store")
TABS = ("Compare", "Classroom", "Setup", "Generate", "PPO", "Knowledge store", "Student", "Jobs")
DEMO = "demo-SST-2"
# Debian's Chromium as a root user in a container: no sandbox, no GPU, and no calls home that could stall a page.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
# The machine may be busy with other jobs: server round trips get generous limits (milliseconds).
SLOW = 60_000
JOB = 180_000
# What the Generate and Jobs tabs say once the server answered their first poll.
GENERATE_STATUS = re.compile(r"^(No job yet\.|Step 1 on .+ — )")
JOBS_HEADER = re.compile(r"^(No jobs yet|.+ \(\w+\) — )")

pytestmark = [pytest.mark.browser, pytest.mark.server, pytest.mark.timeout(600)]


@pytest.fixture(scope="session")  # session scope: set up before the slow teacher, so a missing browser fails fast
def browser():
    # A missing browser must fail these tests loudly: a skip would let a broken install pass unnoticed.
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.fail("Chromium is not installed, so the browser tests cannot run. `make test` installs the Debian "
                    "packages chromium and chromium-driver when apt-get is available; install them by hand "
                    "otherwise.", pytrace=False)
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        pytest.fail("The playwright package is missing: `make test` installs it from requirements-test.txt.",
                    pytrace=False)
    expect.set_options(timeout=SLOW)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def studio_url(workspace, workspace_studio):
    folder = Path(workspace) / "runs" / RUN
    shutil.rmtree(folder, ignore_errors=True)  # a workspace reused across sessions may hold it already
    seed_run(workspace, RUN)  # pages list the runs when they load, so a run seeded after the start shows
    yield workspace_studio
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def page(browser, studio_url):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(SLOW)
    page = context.new_page()
    page.goto(studio_url)
    yield page
    context.close()


def open_tab(page, name):
    """Select a tab and return its panel; role locators skip the hidden tabs, whose fields share labels."""
    page.get_by_role("tab", name=name, exact=True).click()
    panel = page.get_by_role("tabpanel")
    panel.wait_for()
    return panel


# [room for a table header's text, width of its longest word] in px, in the header's own font. The text sits in
# Gradio's cell-wrap box, inside its padding and beside its menu button.
WORD_ROOM = """cell => {
    const box = cell.querySelector('.cell-wrap') || cell, style = getComputedStyle(box);
    const menu = box.querySelector('button');
    const ctx = document.createElement('canvas').getContext('2d');
    ctx.font = style.font;
    const word = Math.max(...cell.innerText.trim().split(/\\s+/).map(w => ctx.measureText(w).width));
    return [box.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight)
            - (menu ? menu.offsetWidth : 0), word];
}"""


def screenshot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def grid_rows(grid) -> list[list[str]]:
    """Cell texts of a Gradio table's data rows (the header row holds column headers, not cells)."""
    return [row.get_by_role("gridcell").all_inner_texts() for row in grid.get_by_role("row").all()
            if row.get_by_role("gridcell").count()]


def test_every_tab_renders(page):
    from playwright.sync_api import expect

    expect(page.get_by_role("heading", name="RetriKT studio")).to_be_visible()
    assert page.get_by_role("tab").all_inner_texts() == list(TABS)
    # What each tab must show once its first server answer is in: a page that failed to load shows none of it.
    ready = {
        # The run summary (a server answer), not the intro above it, which names the demo run too.
        "Compare": lambda p: expect(p.get_by_text(re.compile(r"demo run shipped with the studio"))).to_be_visible(),
        "Classroom": lambda p: expect(p.get_by_text("of the teacher's accuracy kept")).to_be_visible(),
        "Setup": lambda p: (expect(p.get_by_text(re.compile(r"Teacher: .*parameters"))).to_be_visible(),
                            expect(p.get_by_text(re.compile(r"^Student: at most 1,345,150 parameters"))).to_be_visible()),
        "Generate": lambda p: expect(p.get_by_text(GENERATE_STATUS)).to_be_visible(),
        "Knowledge store": lambda p: expect(p.get_by_text(re.compile(r"^\d+ of \d+ entries match"))).to_be_visible(),
        "PPO": lambda p: expect(p.get_by_text(re.compile(r"^(No job yet\.|PPO on .+ — )"))).to_be_visible(),
        "Student": lambda p: expect(p.get_by_text(re.compile(r"^(No job yet\.|Student on .+ — )"))).to_be_visible(),
        "Jobs": lambda p: expect(p.get_by_text(JOBS_HEADER)).to_be_visible(),
    }
    for name in TABS:
        panel = open_tab(page, name)
        ready[name](panel)
        screenshot(page, name.split(" (")[0].lower().replace(" ", "-"))


def test_compare_opens_on_the_demo_shows_neighbours_and_links_to_the_store(page):
    from playwright.sync_api import expect

    panel = page.get_by_role("tabpanel")  # Compare is the first screen
    expect(panel.get_by_text(re.compile(r"^SST-2, 872 test examples. The student has"))).to_be_visible()
    systems = panel.get_by_role("grid", name="All systems")
    expect(systems.get_by_role("gridcell", name="student + retrieval", exact=True)).to_be_visible()
    panel.get_by_role("radio", name=re.compile(r"^retrieval fixed it \(\d+\)$")).check()
    verdict = panel.get_by_text(re.compile(r"^Gold .* → retrieval fixed it\."))
    expect(verdict).to_be_visible()
    grid = panel.get_by_role("grid", name=re.compile("^Retrieved neighbours"))
    expect(grid.get_by_role("row")).to_have_count(9)  # header + k = 8
    screenshot(page, "compare")
    # an empty input gets one message by its box; the panels keep what they showed, with no error badge
    panel.get_by_role("button", name="…or type your own input").click()
    panel.get_by_role("button", name="Predict", exact=True).click()
    expect(panel.get_by_text("Type an input to classify first.")).to_be_visible()
    expect(panel.get_by_text("Error", exact=True)).to_have_count(0)
    expect(verdict).to_be_visible()
    first = grid_rows(grid)[0]
    page.set_viewport_size({"width": 1100, "height": 900})  # a laptop screen: the neighbour table is tight
    grid.get_by_role("gridcell", name=first[5], exact=True).click()
    expect(panel.get_by_role("textbox", name="Picked neighbour id")).to_have_value(first[6])
    table = grid.bounding_box()
    for column in ("label", "id"):  # clicking a text cell keeps the label and id columns in view
        cell = grid.get_by_role("columnheader", name=column, exact=True).bounding_box()
        assert table["x"] <= cell["x"] and cell["x"] + cell["width"] <= table["x"] + table["width"] + 1, column
    # before any edit: how many test examples retrieve the picked entry
    reach = re.compile(rf"^Entry {first[6]} is among the 8 neighbours of \d+ of the 872")
    expect(panel.get_by_text(reach)).to_be_visible()
    panel.get_by_role("button", name="Open it in the Knowledge store tab").click()
    store = page.get_by_role("tabpanel")
    expect(store.get_by_role("textbox", name="Entry id")).to_have_value(first[6])
    expect(store.get_by_text(re.compile(rf"^Entry {first[6]} · source"))).to_be_visible()
    expect(page.get_by_role("tab", name="Knowledge store", exact=True)).to_have_attribute("aria-selected", "true")
    screenshot(page, "compare-neighbour-in-store")


def test_classroom_shows_the_runs_story_on_one_screen_and_opens_an_example_in_compare(page):
    from playwright.sync_api import expect

    panel = open_tab(page, "Classroom")
    expect(panel.get_by_text(re.compile(r"^SST-2: a [\d.]+% student$"))).to_be_visible()
    for caption in ("the student's size, of the teacher's", "of the teacher's accuracy kept", "from retrieval"):
        expect(panel.get_by_text(caption, exact=True)).to_be_visible()
    expect(panel.get_by_text("1 · Soft prompt")).to_be_visible()
    expect(panel.locator(".js-plotly-plot")).to_have_count(1)  # one figure at most
    # The accuracy chart is on the first screen of a 1400x900 projector, beside the cards, not under the fold.
    chart = panel.locator("#classroom-accuracy").bounding_box()
    assert chart["y"] + chart["height"] <= page.viewport_size["height"], chart
    # Projector-readable: nothing wider than the screen, and the big numbers in large type.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    size = page.evaluate("parseFloat(getComputedStyle(document.querySelector('.rk-value')).fontSize)")
    assert size >= 40
    screenshot(page, "classroom")
    quote = panel.locator(".rk-quote").first.inner_text().strip("“”")
    panel.get_by_role("button", name="Open this example in Compare").first.click()
    expect(page.get_by_role("tab", name="Compare", exact=True)).to_have_attribute("aria-selected", "true")
    compare = page.get_by_role("tabpanel")
    expect(compare.get_by_text(re.compile(r"^Gold .* → retrieval fixed it\."))).to_be_visible()
    expect(compare.get_by_text(quote[:40])).to_be_visible()


def test_setup_estimates_each_steps_time(page):
    from playwright.sync_api import expect

    panel = open_tab(page, "Setup")
    panel.get_by_role("button", name="Estimate the time of each step").click()
    # Either runs finished in this workspace give an estimate, or the page says there is none yet; never a number
    # that was not measured here.
    expect(panel.get_by_text(re.compile(r"^Estimated time( on this machine)?"))).to_be_visible()
    screenshot(page, "setup-estimate")


def test_compare_fixes_a_neighbour_reevaluates_and_the_store_tab_undoes_it(page):
    from playwright.sync_api import expect

    panel = page.get_by_role("tabpanel")
    expect(panel.get_by_text(re.compile(r"^SST-2, 872 test examples. The student has"))).to_be_visible()
    grid = panel.get_by_role("grid", name=re.compile("^Retrieved neighbours"))
    expect(grid.get_by_role("row")).to_have_count(9)
    first = grid_rows(grid)[0]
    other = "negative" if first[2] == "positive" else "positive"
    grid.get_by_role("gridcell", name=first[5], exact=True).click()
    expect(panel.get_by_role("textbox", name="Picked neighbour id")).to_have_value(first[6])
    panel.get_by_role("combobox", name="Its label should be").click()
    page.get_by_role("option", name=other, exact=True).click()
    started = time.perf_counter()
    panel.get_by_role("button", name="Fix its label (curated)").click()
    line = panel.get_by_text(re.compile(rf"^Entry {first[6]} now has the curated label {other}\. With retrieval, "
                                        r"before → after: "))
    expect(line).to_be_visible()
    click_to_line_ms = 1000 * (time.perf_counter() - started)
    ms = float(re.search(r"took (\d+) ms", line.inner_text()).group(1))
    assert 0 <= ms <= click_to_line_ms  # the time it reports is inside what the user waited
    fixed = next(row for row in grid_rows(grid) if row[6] == first[6])
    assert fixed[2] == other
    screenshot(page, "compare-fix-neighbour")
    panel.get_by_role("button", name="Re-evaluate with the edited store").click()
    expect(panel.get_by_text(re.compile(r"^Student \+ retrieval with the edited store: [\d.]+% on 872 test "
                                        r"examples"))).to_be_visible()
    screenshot(page, "compare-reevaluated")

    store = open_tab(page, "Knowledge store")
    store.get_by_role("combobox", name="Run", exact=True).click()
    page.get_by_role("option", name=DEMO, exact=True).click()
    expect(store.get_by_text(re.compile(rf"^{DEMO} · task SST-2"))).to_be_visible()
    store.get_by_role("button", name="Edit history and undo").click()
    history = store.get_by_role("grid", name="Edits")
    expect(history.get_by_role("gridcell", name=first[6], exact=True).first).to_be_visible()
    newest = grid_rows(history)[0]
    assert newest[3] == "label" and newest[4] == first[6] and newest[5].endswith(f"→ {other} · curated")
    store.get_by_role("spinbutton", name="Edit # to undo").fill(newest[0])
    store.get_by_role("button", name="Undo this edit").click()
    said = store.get_by_text(re.compile(rf"^Undid edit #{newest[0]} \(1 entry\)"))
    expect(said).to_be_visible()
    # the message sits by the button that caused it, not at the filter status a screen height above
    assert abs(said.bounding_box()["y"] - store.get_by_role("button", name="Undo this edit").bounding_box()["y"]) < 150
    expect(history.get_by_role("gridcell", name=f"undo of #{newest[0]}", exact=True)).to_be_visible()
    screenshot(page, "knowledge-store-history")


def test_store_tab_lists_maps_searches_and_opens_an_entry(page):
    from playwright.sync_api import expect

    panel = open_tab(page, "Knowledge store")
    panel.get_by_role("combobox", name="Run", exact=True).click()
    page.get_by_role("option", name=RUN, exact=True).click()
    expect(panel.get_by_text(re.compile(rf"^{RUN} · task SST-2"))).to_be_visible()
    status = panel.get_by_text(re.compile(r"^\d+ (of \d+ )?entries (match|closest)"))
    expect(status).to_have_text("8 of 8 entries match the filters.")
    grid = panel.get_by_role("grid", name="Entries (click a row to open it)")
    assert sorted(row[0] for row in grid_rows(grid)) == ["g1", "g2", "g3", "m1", "p1", "p2", "t1", "t2"]
    plot = panel.locator(".js-plotly-plot")
    expect(plot.get_by_text("8 entries, PCA of the store embeddings")).to_be_visible()
    expect(plot.locator(".scatterlayer path.point")).to_have_count(8)

    panel.get_by_role("textbox", name=re.compile("^Semantic search")).fill("boring film with wooden actors")
    panel.get_by_role("spinbutton", name="Results").fill("3")
    panel.get_by_role("button", name="Apply filters / search").click()
    expect(status).to_have_text(re.compile(r"^3 entries closest in meaning to “boring film with wooden actors”"))
    rows = grid_rows(grid)
    assert len(rows) == 3 and rows[0][0] == "g2" and "Boring plot" in " ".join(rows[0])

    grid.get_by_role("gridcell", name="Review: Boring plot and wooden acting throughout.").click()
    expect(panel.get_by_role("textbox", name="Entry id")).to_have_value("g2")
    expect(panel.get_by_text(re.compile(r"^Entry g2 · source generated:step1 · label negative"))).to_be_visible()
    expect(panel.get_by_text(re.compile(r"teacher: positive \(disagrees\)"))).to_be_visible()
    expect(plot.locator(".legendtext", has_text="selected")).to_have_count(1)  # the map marks the opened entry
    screenshot(page, "knowledge-store-entry")

    # Clicking a point on the map opens that entry (plotly sits under a drag layer: click by position).
    entry_box = panel.get_by_role("textbox", name="Entry id")
    entry_box.fill("")
    # Opening g2 redrew the map: click only once the new drawing has its click handler.
    expect(panel.locator("#store-map .js-plotly-plot[data-retrikt-click='1']")).to_have_count(1)
    point = plot.locator(".scatterlayer path.point").first
    # mouse.click takes viewport coordinates: a point below the fold (where the map lands depends on the panels
    # above it) would be clicked off-screen, where nothing receives it.
    point.scroll_into_view_if_needed()
    box = point.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    expect(entry_box).to_have_value(re.compile(r"^(g1|g2|g3|m1|p1|p2|t1|t2)$"))
    clicked = entry_box.input_value()
    expect(panel.get_by_text(re.compile(rf"^Entry {clicked} · source"))).to_be_visible()


def test_store_tab_pages_through_the_demo_store_and_the_page_box_follows(page):
    from playwright.sync_api import expect

    panel = open_tab(page, "Knowledge store")
    panel.get_by_role("combobox", name="Run", exact=True).click()
    page.get_by_role("option", name=DEMO, exact=True).click()
    status = panel.get_by_text(re.compile(r"^[\d,]+ of [\d,]+ entries match the filters\. Page"))
    expect(status).to_contain_text("Page 1 of ")
    pages = int(re.search(r"Page 1 of (\d+)", status.inner_text()).group(1))
    assert pages > 2  # the demo store holds more than two pages of rows
    grid = panel.get_by_role("grid", name="Entries (click a row to open it)")
    # Headers read as words: no column is narrower than the longest word of its header (as the header's font draws it).
    for header in ("id", "label", "source", "teacher label", "agreement", "teacher confidence", "reward total",
                   "curated", "text"):
        room, word = grid.get_by_role("columnheader", name=header, exact=True).evaluate(WORD_ROOM)
        assert word <= room, (header, word, room)
    screenshot(page, "knowledge-store-demo")
    box = panel.get_by_role("spinbutton", name="Page")
    panel.get_by_role("button", name="Next ▶").click()
    expect(status).to_contain_text(f"Page 2 of {pages}")
    expect(box).to_have_value("2")
    # A page past the end shows the last page, and the box must say so, after Apply as after Enter.
    box.fill("999")
    panel.get_by_role("button", name="Apply filters / search").click()
    expect(status).to_contain_text(f"Page {pages} of {pages}")
    expect(box).to_have_value(str(pages))
    box.fill("998")
    box.press("Enter")
    expect(box).to_have_value(str(pages))
    panel.get_by_role("button", name="◀ Previous").click()
    expect(status).to_contain_text(f"Page {pages - 1} of {pages}")
    expect(box).to_have_value(str(pages - 1))


def _store_filter_latency(page, rounds: int) -> list[float]:
    """Seconds from clicking Apply with a text filter to the store table showing the filtered rows, per click."""
    from playwright.sync_api import expect

    open_tab(page, "Knowledge store")
    page.get_by_role("combobox", name="Run", exact=True).click()
    page.get_by_role("option", name=RUN, exact=True).click()
    expect(page.get_by_text("8 of 8 entries match the filters.", exact=True)).to_be_visible()
    samples = []
    for _ in range(rounds):
        samples.append(_store_filter_seconds(page, "boring", "1 of 8 entries match the filters."))
        samples.append(_store_filter_seconds(page, "", "8 of 8 entries match the filters."))
    return samples


def _store_filter_seconds(page, text: str, expected: str) -> float:
    """Seconds from clicking Apply with a text filter to the store table showing the filtered rows."""
    from playwright.sync_api import expect

    panel = page.get_by_role("tabpanel")
    panel.get_by_role("textbox", name="Text contains (case-insensitive)").fill(text)
    started = time.perf_counter()
    panel.get_by_role("button", name="Apply filters / search").click()
    expect(panel.get_by_text(expected, exact=True)).to_be_visible()
    return time.perf_counter() - started


def _compare_filter_latency(page, rounds: int) -> list[float]:
    """Seconds from picking an outcome filter in Compare to its first example's verdict being shown, per click."""
    from playwright.sync_api import expect

    panel = open_tab(page, "Compare")
    samples = []
    for _ in range(rounds):
        for wanted in ("retrieval fixed it", "retrieval broke it"):
            started = time.perf_counter()
            panel.get_by_role("radio", name=re.compile(rf"^{wanted} \(\d+\)$")).check()
            expect(panel.get_by_text(re.compile(rf"^Gold .* → {wanted}\."))).to_be_visible()
            samples.append(time.perf_counter() - started)
    return samples


def _progress(status: str) -> tuple[int, int]:
    """(stage index, steps done) from the Generate tab's status line, to tell that a job moved on."""
    stage, done = re.search(r"stage (\w+) (\d+)/", status).groups()
    return STAGES.index(stage), int(done)


def test_generate_job_runs_survives_a_reload_cancels_and_is_listed(page):
    from playwright.sync_api import expect

    jobs = open_tab(page, "Jobs")
    jobs_grid = jobs.get_by_role("grid", name="Jobs (click a row to see its log)")
    expect(jobs.get_by_text(JOBS_HEADER)).to_be_visible()  # the server's first answer, so the table is filled
    known = {row[0] for row in grid_rows(jobs_grid)}
    idle = _store_filter_latency(page, rounds=2)  # the same action with no job, to compare against
    idle_compare = _compare_filter_latency(page, rounds=1)

    panel = open_tab(page, "Generate")
    panel.get_by_role("spinbutton", name="Samples per label (0 = task default)").fill("4")
    panel.get_by_role("spinbutton", name="Tuning steps (0 = task default)").fill("400")  # far more than the test waits for
    panel.get_by_role("button", name="Start", exact=True).click()
    status = panel.get_by_role("paragraph").filter(has_text=re.compile(r"^Step 1 on SST-2 — "))
    expect(status).to_contain_text("— running", timeout=JOB)
    # Progress: a stage past loading with at least one finished step of a known total.
    progress = re.compile(r"running, stage (score|tune|generate) [1-9]\d*/\d+ \d+%")
    expect(status).to_have_text(progress, timeout=JOB)
    expect(panel.locator(".js-plotly-plot").get_by_text("Soft prompt tuning loss")).to_be_visible()
    screenshot(page, "generate-running")
    seen = status.inner_text()

    # Page-action latency while the job holds the CPU.
    busy = _store_filter_latency(page, rounds=3)
    busy_compare = _compare_filter_latency(page, rounds=2)

    page.reload()
    panel = open_tab(page, "Generate")
    status = panel.get_by_role("paragraph").filter(has_text=re.compile(r"^Step 1 on SST-2 — "))
    # The reloaded page knows nothing itself: the job and its progress come back from the server.
    expect(status).to_have_text(progress)
    assert _progress(status.inner_text()) >= _progress(seen), (seen, status.inner_text())
    expect(panel.locator(".js-plotly-plot").get_by_text("Soft prompt tuning loss")).to_be_visible()  # the curve too
    background_state = re.search(r"stage \w+ \d+/\d+", status.inner_text())[0]

    started = time.perf_counter()
    panel.get_by_role("button", name="Cancel", exact=True).click()
    expect(page.get_by_text("Cancel requested: the job stops at its next step.")).to_be_visible()
    expect(status).to_contain_text("— cancelled", timeout=120_000)
    cancel_seconds = time.perf_counter() - started
    screenshot(page, "generate-cancelled")

    jobs = open_tab(page, "Jobs")
    jobs_grid = jobs.get_by_role("grid", name="Jobs (click a row to see its log)")
    expect(jobs_grid.get_by_role("row").nth(1)).to_contain_text("cancelled")
    newest = grid_rows(jobs_grid)[0]
    assert newest[0] not in known, "the newest job is not the one this test started"
    assert newest[1:4] == ["cancelled", "generate", "Step 1 on SST-2"] and newest[-1].startswith("SST-2-")
    jobs_grid.get_by_role("gridcell", name=newest[0], exact=True).click()
    expect(jobs.get_by_role("textbox", name=re.compile(r"^Selected job id"))).to_have_value(newest[0])
    expect(jobs.get_by_text(re.compile(rf"Step 1 on SST-2 \({newest[0]}\) — cancelled"))).to_be_visible()
    expect(jobs.get_by_role("textbox", name="Log", exact=True)).to_have_value(re.compile("cancel requested"))
    screenshot(page, "jobs-cancelled")

    def figures(action: str, samples: list[float], idle_samples: list[float]) -> dict:
        return {"action": action, "samples_s": [round(x, 3) for x in samples],
                "median_s": round(statistics.median(samples), 3), "max_s": round(max(samples), 3),
                "idle_samples_s": [round(x, 3) for x in idle_samples]}

    latency = {
        "while": f"a step-1 job was running ({background_state})", "goal_s": 1.0,
        "actions": [
            figures("Knowledge store: click Apply with a text filter until the table shows the filtered rows",
                    busy, idle),
            figures("Compare: pick an outcome filter until its first example's verdict shows", busy_compare,
                    idle_compare),
        ],
        "cancel_to_cancelled_s": round(cancel_seconds, 1),
    }
    OUTPUT.mkdir(exist_ok=True)
    (OUTPUT / "latency.json").write_text(json.dumps(latency, indent=2) + "\n", encoding="utf-8")
    for action in latency["actions"]:
        print(f"\n{action['action']}: median {action['median_s']}s, max {action['max_s']}s while a job runs "
              f"(idle: {', '.join(f'{x:.2f}s' for x in action['idle_samples_s'])})")
    print(f"cancel took {cancel_seconds:.1f}s")
    # A job must not starve the page: the filter, with a job holding the CPU, stays within 3x its idle time here.
    # (The studio's goals, < 1 s per page action and < 2 s per cancel, are absolute: bench/ui_latency.py measures
    # them, since a fixed number of seconds in a test turns red on a slower machine.)
    store = latency["actions"][0]
    assert store["median_s"] <= 3 * statistics.median(store["idle_samples_s"]), store
