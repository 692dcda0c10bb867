"""The report in a real browser: headless Chromium paints it, every embedded image decodes, and
no script carried by a result.json runs.

Skipped when no Chromium is on PATH, unless ``SGDSCOPE_REQUIRE_CHROMIUM=1`` (set by ``.ci/run``),
which turns the skip into a failure that says how to install it.
"""

from __future__ import annotations

import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from matplotlib.image import imread

from sgdscope.report import render_report

from .test_html import PAYLOADS, Page, Tags, make_crafted, make_sample

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--no-first-run",
    "--mute-audio",
    "--hide-scrollbars",
    "--virtual-time-budget=5000",
)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, int, int]:
    """A rendered sample: (index.html, number of figures, number of tables in the HTML)."""
    out = tmp_path_factory.mktemp("out")
    results = make_sample(out)
    index = render_report(out)
    page = Page(index.read_text(encoding="utf-8"))
    n_figures = sum(len(r.figures) for r in results)
    assert len(page.images) == n_figures
    return index, n_figures, page.tables


def chromium(browser: str, tmp: Path, name: str, *args: str) -> subprocess.CompletedProcess:
    command = [browser, *FLAGS, f"--user-data-dir={tmp / f'profile-{name}'}", *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"{browser} did not finish within 60 s: {' '.join(command)}\n{err.stderr}")
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{done.stderr}"
    return done


def test_screenshot_is_painted(browser, report, tmp_path):
    index, _, _ = report
    shot = tmp_path / "shot.png"
    chromium(
        browser,
        tmp_path,
        "shot",
        f"--screenshot={shot}",
        "--window-size=1200,3000",
        index.as_uri(),
    )
    assert shot.is_file(), "Chromium wrote no screenshot"
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (3000, 1200)
    assert pixels.std() > 0, "the screenshot is blank"
    # the sample figures hold solid magenta blocks: some must be painted inside the window
    magenta = (pixels[..., 0] > 0.9) & (pixels[..., 1] < 0.1) & (pixels[..., 2] > 0.9)
    assert magenta.sum() > 100, "no figure was painted in the screenshot"


class Body(HTMLParser):
    def __init__(self, text: str):
        super().__init__()
        self.attrs: dict[str, str | None] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag == "body" and self.attrs is None:
            self.attrs = dict(attrs)


def test_every_image_decodes_and_tables_are_there(browser, report, tmp_path):
    index, n_figures, n_tables = report
    done = chromium(browser, tmp_path, "dom", "--dump-dom", index.as_uri())
    body = Body(done.stdout).attrs
    assert body is not None, f"no <body> in the dumped DOM:\n{done.stdout[:2000]}"
    assert "data-images-total" in body, "the page's load script did not run"
    assert int(body["data-images-total"]) == n_figures
    assert int(body["data-images-loaded"]) == n_figures
    # the browser's table count equals the parser's: summary, 2 comparison tables, numbers,
    # times, 2 configurations, environment
    assert int(body["data-tables"]) == n_tables == 8


def test_no_script_of_a_crafted_result_runs(browser, tmp_path):
    """Each payload would mark <body> with data-pwned if the browser ran it; the page's own
    script runs (it writes data-images-total), theirs do not."""
    out = tmp_path / "out"
    # alert() is left out: a dialog would hold headless Chromium until its timeout, a failure
    # that does not say which payload ran (the parser test covers it)
    make_crafted(out, " ".join(p for p in PAYLOADS if "alert" not in p))
    index = render_report(out)
    done = chromium(browser, tmp_path, "crafted", "--dump-dom", index.as_uri())
    body = Body(done.stdout).attrs
    assert body is not None, f"no <body> in the dumped DOM:\n{done.stdout[:2000]}"
    assert body.get("data-images-total") == "1" and body.get("data-images-loaded") == "1"
    assert "data-pwned" not in body, f"a script of the result ran: {body['data-pwned']}"
    tags = Tags(done.stdout).tags  # the DOM after the scripts ran
    assert not [(t, a) for t, a in tags if "data-pwned" in a]
    assert [t for t, _ in tags].count("script") == 1
