"""`sgdscope dashboard RUN` and its alias `sgdscope analyze RUN --html`: the page is written where
asked, with the options given; bad invocations are usage errors (never a traceback); progress goes
to standard error, readable in a log."""

import numpy as np
import pytest
from click.testing import CliRunner

from sgdscope.cli import main

from .monitor._runs import record_array
from .report.test_dashboard import PANELS, Dashboard
from .trajectory._analysis_processes import rotated_ou


def _invoke(args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    return record_array(tmp_path_factory.mktemp("r") / "run", rotated_ou(1.0, 420, seed=2)[0])


def test_dashboard_writes_the_page_in_the_record(record):
    res = _invoke(["dashboard", record, "--surrogates", "19", "--window", "210", "--stride", "210"])
    assert res.exit_code == 0, res.output
    page = record / "dashboard.html"
    assert f"wrote {page}" in res.output
    assert "equilibrium tests on windows: 2/2 done (finished)" in res.output  # the log lines
    d = Dashboard(page.read_text(encoding="utf-8"))
    assert list(d.panels) == PANELS
    assert [row["cells"][1] for row in d.windows] == ["1–210", "211–420"]


def test_analyze_html_writes_the_same_page_beside_its_figures(record, tmp_path):
    out = tmp_path / "out"
    res = _invoke(["analyze", record, "--out", out, "--surrogates", "19", "--html"])
    assert res.exit_code == 0, res.output
    assert (out / "msd.png").is_file()
    d = Dashboard((out / "dashboard.html").read_text(encoding="utf-8"))
    assert list(d.panels) == PANELS and len(d.windows) == 3  # window 200, stride 100 of 420


def _usage_error(res, *words):
    assert res.exit_code == 2, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    text = " ".join(res.output.split())
    for w in words:
        assert w in text, (w, res.output)


def test_a_missing_run(tmp_path):
    _usage_error(
        _invoke(["dashboard", tmp_path / "nope"]), "Invalid value for 'RUN'", "does not exist"
    )


def test_a_file_is_not_a_run(tmp_path):
    (tmp_path / "f.txt").write_text("notes")
    _usage_error(_invoke(["dashboard", tmp_path / "f.txt"]), "Invalid value for 'RUN'", "is a file")


def test_a_folder_that_is_not_a_record(tmp_path):
    (tmp_path / "other").mkdir()
    _usage_error(
        _invoke(["dashboard", tmp_path / "other"]),
        "Invalid value for RUN", "is not a record written by sg.Monitor", "manifest.json",
    )  # fmt: skip
    assert not (tmp_path / "other" / "dashboard.html").exists()


@pytest.mark.parametrize(
    "option, value, words",
    [
        ("--window", "100", ["'--window'", "100 is not in the range x>=200"]),
        ("--surrogates", "5", ["'--surrogates'", "x>=19"]),
        ("--alpha", "1", ["'--alpha'"]),
        ("--coordinates", "1", ["'--coordinates'"]),
    ],
)
def test_bad_options(record, option, value, words):
    _usage_error(_invoke(["dashboard", record, option, value]), *words)


def test_analyze_html_of_an_array_is_a_usage_error(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, rotated_ou(1.0, 300, seed=2)[0])
    res = _invoke(["analyze", path, "--out", tmp_path / "o", "--html"])
    _usage_error(
        res,
        "Invalid value for --html",
        "draws the dashboard of a recorded run",
        "x.npy is a .npy array",
    )
