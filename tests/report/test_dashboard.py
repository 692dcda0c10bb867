"""The run dashboard, parsed back with the stdlib parser: every panel of a monitored run drawn
from its record, a plain trajectory's monitor-only panels replaced by their note, the windows'
table against the diagnosis, text escaped, nothing fetched, and a page regenerated while the run
trains (a record written, rendered, appended to, rendered again)."""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from html.parser import HTMLParser

import pytest

import sgdscope as sg
from sgdscope.report.dashboard import DASHBOARD_FILE, dashboard_page, render_dashboard

from ..monitor._runs import TinyRun, record_array
from ..trajectory._analysis_processes import rotated_ou

PANELS = [  # the page's contract, written out here rather than read from the module
    "noise-spectra", "overlap", "noise-scale", "training", "windows", "last-window", "flux",
    "spectrum", "autocorrelation", "msd",
]  # fmt: skip
MONITOR_ONLY = ["noise-spectra", "overlap", "noise-scale"]
CLASS = {
    "out of equilibrium": "s-out",
    "no evidence against equilibrium": "s-no-evidence",
    "not testable: not stationary": "s-not-stationary",
    "not tested": "s-not-tested",
}


class Dashboard(HTMLParser):
    """Panels (id -> image src or the absent note), the windows' rows, the facts, every tag."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.panels: dict[str, dict] = {}
        self.windows: list[dict] = []
        self.facts: dict[str, str] = {}
        self.tags: list[tuple[str, dict]] = []
        self._panel: dict | None = None
        self._text: list[str] | None = None
        self._row: dict | None = None
        self._table: str | None = None
        self._tables = 0
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        classes = set((a.get("class") or "").split())
        if tag == "div" and "data-panel" in a:
            self._panel = self.panels[a["data-panel"]] = {
                "src": None,
                "absent": None,
                "wide": "wide" in classes,
            }
        elif tag == "img" and self._panel is not None:
            self._panel["src"] = a["src"]
        elif tag == "div" and "absent" in classes:
            self._text = []
        elif tag == "table":
            self._tables += 1
            self._table = (
                "windows" if "windows" in classes else ("facts" if self._tables == 1 else None)
            )
        elif tag == "tr" and self._table in ("windows", "facts"):
            self._row = {"classes": classes, "cells": []}
        elif tag == "td" and self._row is not None:
            self._text = []
        elif tag == "span" and self._row is not None and "badge" in classes:
            self._row["badge"] = classes - {"badge"}

    def handle_endtag(self, tag):
        if (
            tag == "div"
            and self._text is not None
            and self._panel is not None
            and self._row is None
        ):
            self._panel["absent"] = "".join(self._text).strip()
            self._text = None
        elif tag == "td" and self._row is not None and self._text is not None:
            self._row["cells"].append("".join(self._text).strip())
            self._text = None
        elif tag == "tr" and self._row is not None:
            if self._table == "windows" and self._row["cells"]:
                self.windows.append(self._row)
            elif self._table == "facts":
                self.facts[self._row["cells"][0]] = self._row["cells"][1]
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)


def png(src: str) -> bytes:
    head, _, body = src.partition(",")
    assert head == "data:image/png;base64"
    raw = base64.b64decode(body)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    return raw


@pytest.fixture(scope="module")
def monitored(monitored_dashboard):
    run, page = monitored_dashboard
    return run, page, Dashboard(page.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def plain(plain_dashboard):
    run, page = plain_dashboard
    return run, page, Dashboard(page.read_text(encoding="utf-8"))


def test_the_page_is_written_in_the_record_by_default(monitored):
    run, page, _ = monitored
    assert page == run.trajectory.path / DASHBOARD_FILE
    sg.load_monitor(run.path)  # and the record still opens


def test_every_panel_of_a_monitored_run_is_drawn(monitored):
    _, _, d = monitored
    assert list(d.panels) == PANELS
    for name, panel in d.panels.items():
        assert panel["src"] is not None and panel["absent"] is None, name
        png(panel["src"])
    assert {n for n, p in d.panels.items() if p["wide"]} == {"noise-scale", "training", "windows"}


def test_the_facts_are_the_records(monitored):
    _, _, d = monitored
    assert d.facts["records"] == "450 (steps 1–450)"
    assert d.facts["model parameters d"] == "83"
    assert d.facts["measurements of D"] == "9 (top-4, on 48 probe samples)"
    assert d.facts["state"] == "complete (closed cleanly)"
    assert d.facts["single weights analysed"] == "83 of 83, drawn with seed 0"
    assert d.facts["windows"].startswith("3 of 200 records, every 100: ")


def test_the_windows_table_is_the_diagnosis(monitored):
    run, _, d = monitored
    assert len(d.windows) == len(run.windows) == 3
    for row, w in zip(d.windows, run.windows, strict=True):
        assert row["cells"][1] == f"{w.first_step}–{w.last_step}"
        assert row["cells"][3] == w.status and row["badge"] == {CLASS[w.status]}
        assert row["cells"][4] == f"{w.test.p_value:.3g}"


def test_a_plain_record_keeps_every_panel_and_says_what_it_lacks(plain):
    run, _, d = plain
    assert list(d.panels) == PANELS
    for name in MONITOR_ONLY:
        assert d.panels[name]["src"] is None
        assert "D was not measured: this is a plain trajectory record" in d.panels[name]["absent"]
    for name in set(PANELS) - set(MONITOR_ONLY):
        png(d.panels[name]["src"])
    assert [row["cells"][3] for row in d.windows] == [w.status for w in run.windows]
    assert d.facts["recorded"] == "2 coordinates (a plain trajectory record)"


def test_nothing_outside_the_file_is_referenced(monitored):
    _, _, d = monitored
    links = [a.get("src") or a.get("href") for _, a in d.tags if a.get("src") or a.get("href")]
    assert links and all(link.startswith("data:image/png;base64,") for link in links)
    csp = [a["content"] for t, a in d.tags if a.get("http-equiv") == "Content-Security-Policy"]
    assert csp == [
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
    ]
    assert [t for t, _ in d.tags].count("script") == 1


def test_text_from_the_record_is_escaped(tmp_path):
    path = record_array(tmp_path / 'run<b id="x">&', rotated_ou(1.0, 60, seed=3)[0])
    text = dashboard_page(sg.diagnose_run(path), datetime.now(timezone.utc).isoformat())
    assert '<b id="x">' not in text and "run&lt;b id=&#34;x&#34;&gt;&amp;" in text
    assert not [t for t, a in Dashboard(text).tags if t == "b"]


def test_regenerated_while_the_run_trains(tmp_path):
    """Render, train on, render again: the page follows the record as far as it is committed."""
    training = TinyRun(tmp_path / "run", measure_every=100).train(250)
    out = tmp_path / "page.html"
    first = Dashboard(render_dashboard(sg.diagnose_run(tmp_path / "run", n_surrogates=19), out)
                      .read_text(encoding="utf-8"))  # fmt: skip
    assert first.facts["records"] == "250 (steps 1–250)" and len(first.windows) == 1
    assert first.facts["state"].startswith("still being written")
    training.train(250)
    second = Dashboard(render_dashboard(sg.diagnose_run(tmp_path / "run", n_surrogates=19), out)
                       .read_text(encoding="utf-8"))  # fmt: skip
    assert second.facts["records"] == "500 (steps 1–500)" and len(second.windows) == 4
    assert second.facts["measurements of D"].startswith("5 ")
    assert second.panels["overlap"]["src"] != first.panels["overlap"]["src"]
    training.close()
    assert not list(tmp_path.glob("*.tmp"))  # written through a temporary file and a rename


@pytest.mark.parametrize("steps", [0, 1])
def test_a_run_that_has_just_started_shows_every_panel_or_why_not(tmp_path, steps):
    training = TinyRun(tmp_path / "run", measure_every=2).train(steps)
    d = Dashboard(render_dashboard(sg.diagnose_run(tmp_path / "run")).read_text(encoding="utf-8"))
    training.close()
    assert list(d.panels) == PANELS
    assert d.panels["noise-spectra"]["absent"] == "no measurement of D yet."
    assert "an equilibrium test needs a window of at least 200" in d.panels["windows"]["absent"]
    assert "at least 16 are needed" in d.panels["spectrum"]["absent"]
    assert d.panels["training"]["src"] is not None  # axes that say what is missing, or 1 step
    assert d.facts["records"] == ("0" if steps == 0 else "1 (steps 1–1)")
