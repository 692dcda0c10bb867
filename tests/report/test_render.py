"""render_report reads the results once and writes the page, the JSON and the Markdown from that one
reading; the template, style sheet and script ship as package data."""

from __future__ import annotations

import fnmatch
import json
from importlib import resources
from pathlib import Path

import pytest

import sgdscope.report.render as render_module
from sgdscope.report import ExperimentResult, collect_results, render_report

from .test_html import make_sample, read

ROOT = Path(__file__).resolve().parents[2]


def test_one_reading_of_the_results_for_every_file(tmp_path, monkeypatch):
    make_sample(tmp_path)
    calls = []

    def counting(out):
        calls.append(out)
        return collect_results(out)

    monkeypatch.setattr(render_module, "collect_results", counting)
    render_report(tmp_path)
    assert len(calls) == 1
    report = tmp_path / "report"
    assert sorted(p.name for p in report.iterdir()) == ["index.html", "results.json", "results.md"]
    # the three files hold the same experiments, in the same order
    names = [e["name"] for e in json.loads((report / "results.json").read_text())["experiments"]]
    assert names == ["spectra", "toy", "scaling"]
    md = (report / "results.md").read_text()
    assert [line.split("`")[1] for line in md.splitlines() if line.startswith("`")] == names
    _, page = read(tmp_path)
    assert list(page.sections) == [f"exp-{n}" for n in names]


def test_markdown_rows_match_the_results(tmp_path):
    results = make_sample(tmp_path)
    render_report(tmp_path)
    md = (tmp_path / "report" / "results.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ") and "---" not in line]
    body = [r for r in rows if not r.startswith("| claim |")]
    assert len(body) == sum(len(r.comparisons) for r in results)
    assert "**reduced run** (embedded 10,000-image MNIST subset, 2 epochs)" in md
    # a '|' inside a cell is escaped, so every row keeps its five cells
    assert all(row.replace("\\|", "").count("|") == 6 for row in body)


def test_a_rerun_after_a_new_experiment_updates_every_file(tmp_path):
    make_sample(tmp_path)
    render_report(tmp_path)
    ExperimentResult("extra", "An extra experiment", False).save(tmp_path / "extra")
    render_report(tmp_path)
    report = tmp_path / "report"
    assert "An extra experiment" in (report / "results.md").read_text()
    assert "extra" in [
        e["name"] for e in json.loads((report / "results.json").read_text())["experiments"]
    ]


def _package_data_globs() -> list[str]:
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return config["tool"]["setuptools"]["package-data"]["sgdscope"]


def test_the_template_and_its_assets_are_package_data():
    """Each file of report/templates is shipped (a package-data glob names it) and found
    through importlib.resources, as an installed wheel finds it."""
    globs = _package_data_globs()
    folder = ROOT / "src" / "sgdscope" / "report" / "templates"
    files = sorted(p.name for p in folder.iterdir() if p.is_file())
    assert {"report.html.j2", "report.css", "report.js"} <= set(files)
    for name in files:
        assert any(fnmatch.fnmatch(f"report/templates/{name}", g) for g in globs), name
        assert resources.files("sgdscope.report").joinpath("templates", name).is_file()


def test_jinja2_is_a_declared_dependency():
    tomllib = pytest.importorskip("tomllib")
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.lower().startswith("jinja2") for d in deps)
