"""The run dashboard in a real browser: headless Chromium loads it with no console message (no
script error, no blocked request), decodes every figure, shows every panel, and paints it.

Skipped when no Chromium is on PATH, unless ``SGDSCOPE_REQUIRE_CHROMIUM=1`` (as the report's
browser test)."""

from __future__ import annotations

import numpy as np
from matplotlib.image import imread

from .test_chromium import Body, chromium
from .test_dashboard import MONITOR_ONLY, PANELS, Dashboard

LOGGING = ("--enable-logging=stderr", "--v=0")


def _load(browser, tmp_path, page, name):
    done = chromium(browser, tmp_path, name, *LOGGING, "--dump-dom", page.as_uri())
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], "the page wrote to the console:\n" + "\n".join(console)
    body = Body(done.stdout).attrs
    assert body is not None, f"no <body> in the dumped DOM:\n{done.stdout[:2000]}"
    assert "data-images-total" in body, "the page's load script did not run"
    return body, Dashboard(done.stdout)


def test_a_monitored_run_loads_with_every_panel_and_figure(browser, monitored_dashboard, tmp_path):
    run, page = monitored_dashboard
    body, dom = _load(browser, tmp_path, page, "monitored")
    assert int(body["data-images-total"]) == int(body["data-images-loaded"]) == len(PANELS)
    assert int(body["data-tables"]) == 2  # the facts and the windows (no notes)
    assert list(dom.panels) == PANELS and all(p["src"] for p in dom.panels.values())
    assert len(dom.windows) == len(run.windows)


def test_a_plain_record_loads_with_its_notes(browser, plain_dashboard, tmp_path):
    _, page = plain_dashboard
    body, dom = _load(browser, tmp_path, page, "plain")
    drawn = len(PANELS) - len(MONITOR_ONLY)
    assert int(body["data-images-total"]) == int(body["data-images-loaded"]) == drawn
    assert list(dom.panels) == PANELS
    assert all(dom.panels[name]["absent"] for name in MONITOR_ONLY)


def test_the_dashboard_is_painted(browser, monitored_dashboard, tmp_path):
    _, page = monitored_dashboard
    shot = tmp_path / "shot.png"
    chromium(browser, tmp_path, "shot", f"--screenshot={shot}", "--window-size=1200,1600",
             page.as_uri())  # fmt: skip
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (1600, 1200)
    # the first screen holds D's spectra (viridis) and the overlap map (magma): coloured pixels,
    # not only the page's greys
    spread = pixels.max(axis=2) - pixels.min(axis=2)
    assert np.count_nonzero(spread > 0.3) > 5000, "no coloured figure was painted"
