"""What the report's tests share: the headless browser, and two dashboards drawn once (each is a
few seconds to draw) for the parser and the browser tests."""

from __future__ import annotations

import os
import shutil

import pytest

import sgdscope as sg
from sgdscope.report.dashboard import render_dashboard

from ..monitor._runs import monitored_run, record_array
from ..trajectory._analysis_processes import rotated_ou

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


@pytest.fixture(scope="session")
def browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    reason = f"no headless browser on PATH (looked for {', '.join(BROWSERS)})"
    if os.environ.get("SGDSCOPE_REQUIRE_CHROMIUM") == "1":
        pytest.fail(
            f"{reason}, and SGDSCOPE_REQUIRE_CHROMIUM=1 requires one: install it with "
            "`apt-get install chromium` (Debian/Ubuntu) or put chromium on PATH, "
            "or unset SGDSCOPE_REQUIRE_CHROMIUM to skip this test."
        )
    pytest.skip(reason)


@pytest.fixture(scope="session")
def monitored_dashboard(tmp_path_factory):
    """(diagnosis, page) of a finished monitored run: 450 steps, D measured every 50."""
    path = monitored_run(tmp_path_factory.mktemp("d") / "run", 450, measure_every=50)
    run = sg.diagnose_run(path, n_surrogates=19)
    return run, render_dashboard(run)


@pytest.fixture(scope="session")
def plain_dashboard(tmp_path_factory):
    """(diagnosis, page) of a plain trajectory record of a rotating OU process, written to a
    folder that does not exist yet."""
    path = record_array(tmp_path_factory.mktemp("p") / "run", rotated_ou(1.0, 600, seed=3)[0])
    run = sg.diagnose_run(path, n_surrogates=19)
    return run, render_dashboard(run, tmp_path_factory.mktemp("o") / "deep" / "page.html")
