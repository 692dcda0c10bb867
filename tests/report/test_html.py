"""The self-contained HTML report: parsed back with the stdlib parser and checked against the
results it was rendered from (rows, verdict classes, embedded bytes, labels, escaping)."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from sgdscope.report import render_report
from sgdscope.report.results import (
    Comparison,
    ExperimentResult,
    FigureRef,
    Verdict,
    collect_results,
)
from sgdscope.report.style import new_figure, save_figure

CLASS = {  # the page's contract, written out here rather than read from the module
    Verdict.REPRODUCED: "v-reproduced",
    Verdict.PARTLY: "v-partly",
    Verdict.NOT_REPRODUCED: "v-not-reproduced",
    Verdict.NOT_TESTABLE: "v-not-testable",
}

EVIL = "<script>alert('x')</script> & \"quoted\""


def draw_png(path: Path, colour=(1.0, 0.0, 1.0), seed: int = 0) -> Path:
    """A small real PNG: a solid colour block beside a random line (distinct bytes per seed)."""
    fig, (left, right) = new_figure(2, width=2.2, height=1.8)
    left.imshow(np.ones((4, 4, 3)) * np.asarray(colour), interpolation="nearest")
    right.plot(np.random.default_rng(seed).standard_normal(20))
    return save_figure(fig, path)


def make_sample(out: Path) -> list[ExperimentResult]:
    """Three experiments (one reduced, every verdict, figures, notes, numbers) saved under out."""
    v = Verdict
    spectra = ExperimentResult(
        name="spectra",
        title="Figs 1–2: eigenspectrum of D(x)",
        reduced=True,
        reduced_note="embedded 10,000-image MNIST subset, 2 epochs",
        config={"networks": ["small-lenet", "small-fc"], "epochs": 2, "lr": {"base": 0.1}},
        seconds=61.25,
        comparisons=[
            Comparison(
                "fig1a.rank",
                "Fig. 1a: rank(D) % of d, small-lenet",
                "1.8 %",
                "2.1 %",
                v.REPRODUCED,
                "same order",
            ),
            Comparison(
                "fig1b.rank",
                "Fig. 1b: rank(D) % of d, small-fc",
                "0.6 %",
                "1.4 %",
                v.PARTLY,
                "reduced run",
            ),
            Comparison(
                "fig2a.rank",
                "Fig. 2a: small-allcnn, CIFAR-10",
                "0.34 %",
                "—",
                v.NOT_TESTABLE,
                "no CIFAR-10 given",
            ),
            Comparison(
                "rem13",
                "Remark 13: D constant over training",
                "indistinguishable",
                "overlap 0.41",
                v.NOT_REPRODUCED,
                EVIL,
            ),
        ],
        figures=[
            FigureRef("fig1a.png", "Fig. 1a: eigenvalues of D, small-lenet"),
            FigureRef("sub/fig1b.png", "Fig. 1b: eigenvalues of D, small-fc"),
        ],
        numbers={"small-lenet": {"rank": 280, "eig": list(np.linspace(0, 1, 50))}, "d": 13338},
        notes=["The rank depends on the threshold.", EVIL],
    )
    toy = ExperimentResult(
        name="toy",
        title="Fig. 4: Example 19 <double well>",
        reduced=False,
        config={"lambdas": [0.0, 0.5, 1.5]},
        seconds=3.5,
        comparisons=[
            Comparison(
                "fig4.phi", "Φ ≠ f for λ > 0", "Φ differs", "max |Φ − f| = 0.8", v.REPRODUCED
            )
        ],
        figures=[FigureRef("fig4.png", "Fig. 4: Φ and f for λ ∈ {0, 0.5, 1.5}")],
    )
    scaling = ExperimentResult(
        name="scaling", title="Remarks 11–12", reduced=False, seconds=0.5, notes=["no figure"]
    )
    draw_png(out / "spectra" / "fig1a.png", seed=1)
    draw_png(out / "spectra" / "sub" / "fig1b.png", seed=2)
    draw_png(out / "toy" / "fig4.png", seed=3)
    for r in (spectra, toy, scaling):
        r.save(out / r.name)
    return [spectra, toy, scaling]


class Page(HTMLParser):
    """What the tests look at: rows, images, labels, sections, attributes, text, tables."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.rows: dict[str, dict] = {}  # data-key -> {"classes", "cells"}
        self.images: list[dict] = []  # {"src", "section"}
        self.reduced_labels: list[tuple[str | None, bool]] = []  # (section, in figcaption)
        self.sections: dict[str, set[str]] = {}  # experiment id -> classes
        self.missing: list[str] = []
        self.links: list[str] = []  # every src / href value
        self.tables = self.scripts = 0
        self.text: list[str] = []
        self.total_row: list[str] = []
        self._section: str | None = None
        self._row: dict | None = None
        self._cell: list[str] | None = None
        self._in: list[str] = []  # open tags whose text we collect
        self._total = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = set((a.get("class") or "").split())
        for name in ("src", "href"):
            if name in a:
                self.links.append(a[name])
        if tag == "section" and "experiment" in classes:
            self._section = a["id"]
            self.sections[a["id"]] = classes
        elif tag == "table":
            self.tables += 1
        elif tag == "script":
            self.scripts += 1
        elif tag == "tr" and "data-key" in a:
            self._row = {"classes": classes, "cells": []}
            self.rows[a["data-key"]] = self._row
        elif tag == "tr" and "total" in classes and not self.total_row:
            self._total = True
        elif tag == "td" and (self._row is not None or self._total):
            self._cell = []
        elif tag == "img":
            self.images.append({"src": a["src"], "width": a.get("width"), "section": self._section})
        elif tag == "span" and "reduced-label" in classes:
            self.reduced_labels.append((self._section, "figcaption" in self._in))
        elif tag == "div" and "missing" in classes:
            self._in.append("missing")
            self.missing.append("")
            return
        if tag == "figcaption":
            self._in.append("figcaption")

    def handle_endtag(self, tag):
        if tag == "section":
            self._section = None
        elif tag == "td" and self._cell is not None:
            text = "".join(self._cell).strip()
            (self._row["cells"] if self._row is not None else self.total_row).append(text)
            self._cell = None
        elif tag == "tr":
            self._row, self._total = None, False
        elif tag in ("figcaption", "div") and self._in:
            self._in.pop()

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)
        if self._in and self._in[-1] == "missing":
            self.missing[-1] += data


def read(out: Path) -> tuple[str, Page]:
    html = (out / "report" / "index.html").read_text(encoding="utf-8")
    return html, Page(html)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    results = make_sample(out)
    path = render_report(out)
    html, page = read(out)
    return out, results, path, html, page


def test_returns_index_path(rendered):
    out, _, path, _, _ = rendered
    assert path == out / "report" / "index.html"


def test_every_comparison_row_with_its_verdict_class(rendered):
    _, results, _, _, page = rendered
    comparisons = [c for r in results for c in r.comparisons]
    assert set(page.rows) == {c.key for c in comparisons}
    for c in comparisons:
        row = page.rows[c.key]
        assert CLASS[c.verdict] in row["classes"]
        assert row["cells"] == [c.claim, c.paper, c.measured, c.verdict.value, c.note]


def test_figures_embedded_byte_for_byte(rendered):
    out, results, _, _, page = rendered
    expected = [(out / r.name / f.path).read_bytes() for r in results for f in r.figures]
    prefix = "data:image/png;base64,"
    assert all(img["src"].startswith(prefix) for img in page.images)
    assert [base64.b64decode(img["src"][len(prefix) :]) for img in page.images] == expected


def test_figures_shown_at_their_physical_size(rendered):
    _, _, _, _, page = rendered
    # draw_png: figsize 2 × 2.2 in wide, saved at 150 dpi; shown at 96 CSS px per inch
    assert [img["width"] for img in page.images] == [str(round(4.4 * 96))] * 3


def test_png_without_resolution_keeps_its_natural_size(tmp_path):
    png = draw_png(tmp_path / "toy" / "fig.png").read_bytes()
    at = png.index(b"pHYs") - 4
    (tmp_path / "toy" / "fig.png").write_bytes(png[:at] + png[at + 4 + 4 + 9 + 4 :])
    ExperimentResult("toy", "toy", False, figures=[FigureRef("fig.png", "no pHYs")]).save(
        tmp_path / "toy"
    )
    render_report(tmp_path)
    _, page = read(tmp_path)
    assert len(page.images) == 1 and page.images[0]["width"] is None


def test_reduced_label_exactly_for_reduced_experiments(rendered):
    _, results, _, html, page = rendered
    for r in results:
        labels = [inside for section, inside in page.reduced_labels if section == f"exp-{r.name}"]
        assert ("reduced" in page.sections[f"exp-{r.name}"]) == r.reduced
        if r.reduced:
            # one banner for the section and one on each figure's caption
            assert labels.count(True) == len(r.figures) and labels.count(False) == 1
            assert r.reduced_note in html
        else:
            assert labels == []
    # outside the sections the label appears only in the summary row of the reduced run
    assert sum(section is None for section, _ in page.reduced_labels) == 1


def test_no_external_reference(rendered):
    _, _, _, html, page = rendered
    assert page.links, "the page has images and in-page links"
    for link in page.links:
        assert link.startswith(("data:", "#")), link
    assert "http://" not in html and "https://" not in html
    assert "<link" not in html and "@import" not in html and "url(" not in html


def test_text_is_escaped(rendered):
    _, _, _, html, page = rendered
    assert page.scripts == 1  # only the page's own inline script
    assert "&lt;script&gt;alert(" in html and "<script>alert(" not in html
    text = "".join(page.text)
    assert EVIL in text  # shown verbatim as text (note row and notes paragraph)
    assert "Fig. 4: Example 19 <double well>" in text


def test_results_json_round_trips_and_matches_page(rendered):
    out, results, _, _, page = rendered
    data = json.loads((out / "report" / "results.json").read_text())
    datetime.fromisoformat(data["generated"])
    rebuilt = [ExperimentResult.from_dict(d) for d in data["experiments"]]
    assert rebuilt == collect_results(out)
    assert sorted(r.name for r in rebuilt) == sorted(r.name for r in results)
    by_name = {r.name: r for r in rebuilt}
    for r in results:
        assert by_name[r.name].comparisons == r.comparisons
        assert by_name[r.name].numbers == r.numbers
    # counted by hand from make_sample: 2 reproduced, 1 partly, 1 not reproduced, 1 not testable
    expected = {
        "reproduced": 2,
        "partly reproduced": 1,
        "not reproduced": 1,
        "not testable here": 1,
    }
    assert data["verdicts"] == expected
    # the summary table's total row: label, run, the four counts, the total
    assert page.total_row[2:] == [*map(str, expected.values()), "5"]


def test_times_and_environment_shown(rendered):
    _, results, _, _, page = rendered
    text = "".join(page.text)
    assert f"{sum(r.seconds for r in results):.1f}" in text  # 65.3 s total
    assert results[0].environment["torch"] in text
    assert "small-lenet" in text  # the configuration


def test_missing_figure_gives_placeholder(tmp_path):
    make_sample(tmp_path)
    (tmp_path / "spectra" / "sub" / "fig1b.png").unlink()
    render_report(tmp_path)
    _, page = read(tmp_path)
    assert len(page.images) == 2
    assert len(page.missing) == 1 and "spectra/sub/fig1b.png" in page.missing[0]
    assert "missing" in page.missing[0]


def test_figure_outside_its_folder_is_not_embedded(tmp_path):
    draw_png(tmp_path / "secret.png")
    r = ExperimentResult("toy", "toy", False, figures=[FigureRef("../secret.png", "escape")])
    r.save(tmp_path / "toy")
    render_report(tmp_path)
    _, page = read(tmp_path)
    assert page.images == [] and "outside its experiment folder" in page.missing[0]


@pytest.mark.parametrize("exists", [True, False])
def test_no_results_page(tmp_path, exists):
    out = tmp_path / "out"
    if exists:
        out.mkdir()
    render_report(out)
    _, page = read(out)
    text = " ".join("".join(page.text).split())
    assert "No experiment has been run yet" in text
    assert "sgdscope reproduce --quick" in text
    assert page.rows == {} and page.images == []
    data = json.loads((out / "report" / "results.json").read_text())
    assert data["experiments"] == [] and set(data["verdicts"].values()) == {0}


def test_out_is_a_file(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("x")
    with pytest.raises(ValueError, match=r"'out' parameter of render_report must be a folder"):
        render_report(path)


def test_corrupt_result_names_the_file(tmp_path):
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "result.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"toy/result\.json.*not a result written"):
        render_report(tmp_path)


def test_rerender_replaces_the_report(tmp_path):
    make_sample(tmp_path)
    render_report(tmp_path)
    ExperimentResult("extra", "An extra experiment", False).save(tmp_path / "extra")
    render_report(tmp_path)
    _, page = read(tmp_path)
    assert "An extra experiment" in "".join(page.text)
    assert not list((tmp_path / "report").glob("*.tmp"))


# ------------------------------------------------------------------ crafted results are inert

#: Payloads a crafted result.json might carry: each would mark <body> with data-pwned if it ran.
PAYLOADS = (
    "<script>alert(1)</script>",
    "<script>document.body.setAttribute('data-pwned', 'script')</script>",
    "<img src=x onerror=\"document.body.setAttribute('data-pwned', 'img')\">",
    "\"><svg onload=\"document.body.setAttribute('data-pwned', 'svg')\">",
    "</style><script>document.body.setAttribute('data-pwned', 'style')</script>",
    "</title></code></td><script>document.body.setAttribute('data-pwned', 'close')</script>",
    "{{ 7 * 7 }}{% if true %}template{% endif %}",  # data is never a template
)
EVERY = " ".join(PAYLOADS)


def make_crafted(out: Path, every: str = EVERY) -> None:
    """A result.json written by hand (as an attacker would) with ``every`` in each text field,
    beside one real figure."""
    draw_png(out / "x" / "real.png")
    comparison = {k: every for k in ("key", "claim", "paper", "measured", "note")}
    crafted = {
        "name": "x",
        "title": every,
        "reduced": True,
        "reduced_note": every,
        "config": {every: every, "nested": {every: [every]}},
        "seconds": 1.0,
        "comparisons": [{**comparison, "verdict": "reproduced"}],
        "figures": [
            {"path": "real.png", "caption": every},
            {"path": f"missing {every}.png", "caption": every},
        ],
        "numbers": {every: every},
        "notes": [every],
        "environment": {every: every},
    }
    (out / "x" / "result.json").write_text(json.dumps(crafted))


class Tags(HTMLParser):
    """Every element with its attributes."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_a_crafted_result_is_rendered_inert(tmp_path):
    """Every text of a result.json is escaped: its <script> and on… handlers are text, not
    markup, and its {{ … }} is not evaluated (the template's autoescape, checked by parsing)."""
    make_crafted(tmp_path)
    render_report(tmp_path)
    html, page = read(tmp_path)
    tags = Tags(html).tags
    assert [t for t, _ in tags].count("script") == 1  # the page's own
    assert not [t for t, _ in tags if t in ("svg", "iframe", "object", "embed")]
    assert [a["src"][:22] for t, a in tags if t == "img"] == ["data:image/png;base64,"]
    handlers = [(t, k) for t, a in tags for k in a if k.lower().startswith("on")]
    assert handlers == []
    assert "data-pwned" not in {k for _, a in tags for k in a}
    text = "".join(page.text)
    # the payload is shown verbatim as text, wherever it was put
    assert text.count(EVERY) >= 10
    for payload in PAYLOADS:  # the {{ 7 * 7 }} among them: not evaluated
        assert payload in text
    assert page.rows == {
        EVERY: {
            "classes": {CLASS[Verdict.REPRODUCED]},
            "cells": [EVERY] * 3 + ["reproduced", EVERY],
        }
    }
    assert len(page.missing) == 1 and EVERY in page.missing[0]
