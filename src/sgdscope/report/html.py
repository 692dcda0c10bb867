"""The self-contained HTML report of ``sgdscope reproduce``: ``OUT/report/index.html``.

:func:`render_report` reads every ``OUT/<name>/result.json`` (one
:class:`~sgdscope.reproduce.results.ExperimentResult` per experiment, see
:func:`~sgdscope.reproduce.results.collect_results`) and writes

- ``OUT/report/index.html``: one file that shows everything offline. Figures are embedded as
  base64 ``data:`` URIs, the style sheet and a tiny script are inline, and a
  Content-Security-Policy forbids every network request, so nothing outside the file is ever
  fetched. The page holds a summary, the "paper against measured" table of every experiment
  (§IV-A–B, §V, Figs 1–4, Remarks 11–18) with colour-coded verdicts, the figures with captions, the
  notes, and at the end the configuration, run times and versions.
- ``OUT/report/results.json``: the same numbers, machine-readable::

      {"generated": "2025-01-01T12:00:00+00:00",
       "experiments": [ExperimentResult.to_dict(), ...],
       "verdicts": {"reproduced": 3, "partly reproduced": 1, ...}}

The report renders results and never recomputes them. Reduced runs
(``--quick``) carry a visible "REDUCED RUN" label on their section and on each of their figures.
A figure file that is missing gives a visible placeholder naming the file, not a crash.

The inline script runs on ``load`` and writes, on ``<body>``, ``data-images-total``,
``data-images-loaded`` (images with ``complete && naturalWidth > 0``) and ``data-tables``, so a
headless browser can check that every figure decoded (``tests/reproduce/test_report_chromium.py``).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from html import escape
from importlib import metadata
from pathlib import Path
from typing import Any

from .results import ORDER, ExperimentResult, FigureRef, Verdict, _jsonable, collect_results

__all__ = ["REPORT_DIR", "VERDICT_CLASS", "render_report", "verdict_counts"]

REPORT_DIR = "report"  #: folder of the report inside OUT.

#: CSS class of each verdict (rows of the comparison tables and their badges).
VERDICT_CLASS: dict[Verdict, str] = {
    Verdict.REPRODUCED: "v-reproduced",
    Verdict.PARTLY: "v-partly",
    Verdict.NOT_REPRODUCED: "v-not-reproduced",
    Verdict.NOT_TESTABLE: "v-not-testable",
}

_MIME = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".svg": "image/svg+xml",
    ".webp": "image/webp",
}

_PAPER = (
    "P. Chaudhari and S. Soatto, “Stochastic gradient descent performs variational inference, "
    "converges to limit cycles for deep networks”, ICLR 2018 (arXiv:1710.11029)"
)

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"

_CSS = """
:root { --ink: #1f2328; --muted: #59636e; --rule: #d0d7de; --head: #f3f4f6; }
* { box-sizing: border-box; }
body { margin: 0; background: #fff; color: var(--ink);
  font: 15px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
        "Noto Sans", "Liberation Sans", sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 2.2rem 1.5rem 4rem; }
h1 { font-size: 1.75rem; line-height: 1.25; margin: 0 0 .3rem; }
h2 { font-size: 1.35rem; margin: 2.6rem 0 .8rem; padding-bottom: .3rem;
  border-bottom: 2px solid var(--ink); }
h3 { font-size: 1.08rem; margin: 1.6rem 0 .5rem; }
h4 { font-size: .98rem; margin: 1.2rem 0 .4rem; }
p { margin: .5rem 0 .8rem; }
.subtitle { color: var(--muted); margin: 0 0 1.2rem; }
.lead { font-size: 1.02rem; }
code { font: .9em/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono",
  monospace; background: var(--head); padding: .05em .3em; border-radius: 3px; }
a { color: #0b57d0; text-decoration: none; }
a:hover { text-decoration: underline; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; font-size: .9rem; }
th, td { border: 1px solid var(--rule); padding: .4rem .55rem; text-align: left;
  vertical-align: top; }
th { background: var(--head); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.total td { font-weight: 600; background: #fafbfc; }
table.kv, table.times { width: auto; min-width: 50%; }
table.kv td { padding: .25rem .6rem; vertical-align: baseline; }
table.kv td:first-child { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas,
  "Liberation Mono", monospace; font-size: .84rem; color: #24292f; white-space: nowrap; }
.config-grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(330px, 1fr));
  gap: 0 1.6rem; align-items: start; }
.config-grid table.kv { width: 100%; min-width: 0; }
table.comparisons td:nth-child(1) { width: 25%; }
table.comparisons td:nth-child(2) { width: 14%; }
table.comparisons td:nth-child(3) { width: 21%; }
table.comparisons td:nth-child(4) { width: 1%; white-space: nowrap; }
table.summary td:nth-child(2) { width: 1%; white-space: nowrap; }
table.summary th.num { width: 10%; }
td.zero { color: #8c959f; }
.lead code { white-space: nowrap; }
table.comparisons td.note { color: #3d444d; }
tr.v-reproduced td:first-child { box-shadow: inset 4px 0 0 #1a7f37; }
tr.v-partly td:first-child { box-shadow: inset 4px 0 0 #bf8700; }
tr.v-not-reproduced td:first-child { box-shadow: inset 4px 0 0 #cf222e; }
tr.v-not-testable td:first-child { box-shadow: inset 4px 0 0 #8c959f; }
.badge { display: inline-block; padding: .08rem .5rem; border-radius: 999px;
  font-size: .8rem; font-weight: 600; white-space: nowrap; }
.badge.v-reproduced, th.v-reproduced { background: #dafbe1; color: #116329; }
.badge.v-partly, th.v-partly { background: #fff1c2; color: #7d4e00; }
.badge.v-not-reproduced, th.v-not-reproduced { background: #ffe0e0; color: #a40e26; }
.badge.v-not-testable, th.v-not-testable { background: #eaeef2; color: #424a53; }
.reduced-label { display: inline-block; padding: .05rem .45rem; border: 1.5px solid #bc4c00;
  border-radius: 3px; color: #bc4c00; font-size: .75rem; font-weight: 700;
  letter-spacing: .04em; white-space: nowrap; }
.reduced-banner { background: #fff8f0; border-left: 4px solid #bc4c00;
  padding: .5rem .8rem; margin: .6rem 0 1rem; }
.experiment-meta { color: var(--muted); font-size: .9rem; margin-top: -.3rem; }
figure { margin: 1.2rem 0 1.6rem; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto;
  border: 1px solid #eaeef2; }
figcaption { font-size: .9rem; color: #3d444d; margin: .5rem auto 0; max-width: 960px; }
figcaption .reduced-label { margin-top: .3rem; }
figcaption b { color: var(--ink); }
.missing { border: 2px dashed #cf222e; background: #fff5f5; color: #a40e26;
  padding: 1.4rem; text-align: center; font-size: .92rem; }
figure.broken img { outline: 3px solid #cf222e; }
.empty { border: 1px solid var(--rule); background: #fafbfc; padding: 1.2rem 1.4rem; }
details { margin: .6rem 0 1rem; }
summary { cursor: pointer; color: var(--muted); }
footer { margin-top: 3rem; color: var(--muted); font-size: .85rem;
  border-top: 1px solid var(--rule); padding-top: .8rem; }
@media print { main { max-width: none; } details { display: block; }
  figure { break-inside: avoid; } }
"""

_SCRIPT = """
window.addEventListener("load", function () {
  var imgs = document.images, loaded = 0;
  for (var i = 0; i < imgs.length; i++) {
    if (imgs[i].complete && imgs[i].naturalWidth > 0) { loaded++; }
    else if (imgs[i].parentNode) { imgs[i].parentNode.classList.add("broken"); }
  }
  var body = document.body;
  body.setAttribute("data-images-total", String(imgs.length));
  body.setAttribute("data-images-loaded", String(loaded));
  body.setAttribute("data-tables", String(document.getElementsByTagName("table").length));
});
"""


def render_report(out: str | os.PathLike[str]) -> Path:
    """Write ``OUT/report/index.html`` and ``OUT/report/results.json`` from the saved results.

    Reads every ``OUT/<name>/result.json`` with
    :func:`~sgdscope.reproduce.results.collect_results`; figures are read from
    ``OUT/<name>/<figure path>`` and embedded. With no result at all the page says that no
    experiment has been run yet and how to run one. Both files are written atomically.

    Args:
        out: The output folder of ``sgdscope reproduce`` (it need not exist yet).

    Returns:
        The path of ``index.html``.

    Raises:
        ValueError: If ``out`` is a file, or (from ``collect_results``) a ``result.json`` is
            not a result written by ``sgdscope reproduce``.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(
            f"the 'out' parameter of render_report must be a folder, got the file "
            f"{os.fspath(out)!r}; pass the output folder of `sgdscope reproduce`."
        )
    results = collect_results(out) if out.is_dir() else []
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    folder = out / REPORT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    payload = {
        "generated": generated,
        "experiments": [r.to_dict() for r in results],
        "verdicts": verdict_counts(results),
    }
    _write_atomic(folder / "results.json", json.dumps(payload, indent=2, default=_jsonable))
    page = _page(out, results, generated)
    return _write_atomic(folder / "index.html", page)


def verdict_counts(results: Iterable[ExperimentResult]) -> dict[str, int]:
    """Count the comparison rows per verdict, every verdict listed (zeros included)."""
    counts = Counter(c.verdict for r in results for c in r.comparisons)
    return {v.value: counts.get(v, 0) for v in Verdict}


# --------------------------------------------------------------------------------------------
# page


def _page(out: Path, results: list[ExperimentResult], generated: str) -> str:
    body = _body(out, results, generated) if results else _empty_body(out, generated)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        "<title>sgdscope reproduce: Chaudhari &amp; Soatto (ICLR 2018)</title>\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n"
        f"<script>{_SCRIPT}</script>\n</body>\n</html>\n"
    )


def _header(generated: str) -> str:
    return (
        "<header>\n<h1>Reproduction report: SGD performs variational inference, "
        "converges to limit cycles</h1>\n"
        f'<p class="subtitle">{_e(_PAPER)}. Generated by sgdscope {_e(_version())} '
        f"on {_e(_readable(generated))}.</p>\n</header>"
    )


def _empty_body(out: Path, generated: str) -> str:
    return (
        f"{_header(generated)}\n"
        '<div class="empty">\n<p><b>No experiment has been run yet</b>: no '
        f"<code>result.json</code> was found under <code>{_e(os.fspath(out))}</code>.</p>\n"
        "<p>Run every experiment at reduced sizes on the embedded data (a few minutes on a "
        "laptop) with <code>sgdscope reproduce --quick</code>, or one experiment with "
        f"<code>sgdscope reproduce &lt;name&gt;</code> ({_e(', '.join(ORDER))}), then open "
        "this page again.</p>\n</div>"
    )


def _body(out: Path, results: list[ExperimentResult], generated: str) -> str:
    figures = itertools.count(1)
    parts = [
        _header(generated),
        _summary_paragraph(results),
        _summary_table(results),
        *(_experiment(out, r, figures) for r in results),
        _configuration(results),
        '<section id="references">\n<h2>References</h2>\n'
        f"<p>{_e(_PAPER)}. Numbered equations, figures and remarks in this report are that "
        "paper's.</p>\n</section>",
        f"<footer>sgdscope {_e(_version())} · {_e(_readable(generated))} · the same numbers in "
        "<code>results.json</code> beside this page.</footer>",
    ]
    return "\n".join(parts)


def _summary_paragraph(results: list[ExperimentResult]) -> str:
    counts = verdict_counts(results)
    total = sum(counts.values())
    n = len(results)
    said = ", ".join(f"{k} {_e(v)}" for v, k in counts.items())
    text = (
        f"sgdscope reran {n} experiment{'s' * (n != 1)} of the paper and put {total} of its "
        f"numbers and claims against what this run measured: {said}. Each section below gives "
        "the paper's value as printed beside the measured one, with a verdict and the reason "
        "for it, then the figures and notes; the configuration, run times and versions "
        "close the report."
    )
    reduced = [r for r in results if r.reduced]
    if reduced:
        are = "is a <b>reduced run</b>" if len(reduced) == 1 else "are <b>reduced runs</b>"
        text += (
            f" {len(reduced)} of the {n} experiments {are} "
            "(<code>--quick</code>: smaller data, networks or epochs than the paper's "
            "protocol); their numbers check the pipeline more than they test the paper."
        )
    missing = [name for name in ORDER if name not in {r.name for r in results}]
    if missing:
        text += (
            f" Not run yet: {_e(', '.join(missing))} "
            f"(<code>sgdscope reproduce {_e(missing[0])}</code>)."
        )
    return f'<p class="lead">{text}</p>'


def _summary_table(results: list[ExperimentResult]) -> str:
    head = "".join(f'<th class="num {VERDICT_CLASS[v]}">{_e(v.value)}</th>' for v in Verdict)
    rows = []
    for r in results:
        counts = verdict_counts([r])
        run = '<span class="reduced-label">REDUCED RUN</span>' if r.reduced else "full"
        cells = "".join(_count_cell(counts[v.value]) for v in Verdict)
        rows.append(
            f'<tr><td><a href="#exp-{_e(r.name)}">{_e(r.title or r.name)}</a></td>'
            f'<td>{run}</td>{cells}<td class="num">{sum(counts.values())}</td></tr>'
        )
    totals = verdict_counts(results)
    cells = "".join(_count_cell(totals[v.value]) for v in Verdict)
    rows.append(
        f'<tr class="total"><td>All experiments</td><td></td>{cells}'
        f'<td class="num">{sum(totals.values())}</td></tr>'
    )
    return (
        '<h2 id="summary">Summary</h2>\n<table class="summary">\n'
        f'<thead><tr><th>Experiment</th><th>Run</th>{head}<th class="num">total</th></tr>'
        "</thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>"
    )


def _count_cell(count: int) -> str:
    return f'<td class="num{" zero" * (count == 0)}">{count}</td>'


def _experiment(out: Path, r: ExperimentResult, figure_numbers: Iterable[int]) -> str:
    classes = "experiment reduced" if r.reduced else "experiment"
    parts = [
        f'<section class="{classes}" id="exp-{_e(r.name)}">',
        f"<h2>{_e(r.title or r.name)}</h2>",
        f'<p class="experiment-meta">Experiment <code>{_e(r.name)}</code> · '
        f"{_e(_duration(r.seconds))}</p>",
    ]
    if r.reduced:
        parts.append(
            f'<p class="reduced-banner"><span class="reduced-label">REDUCED RUN</span> '
            f"{_e(r.reduced_note or 'reduced sizes against the paper protocol.')}</p>"
        )
    parts.append("<h3>Paper against measured</h3>")
    parts.append(_comparisons(r))
    if r.figures:
        parts.append("<h3>Figures</h3>")
        folder = out / r.name
        for ref, number in zip(r.figures, figure_numbers, strict=False):
            parts.append(_figure(folder, ref, number, r))
    if r.notes:
        parts.append("<h3>Notes</h3>")
        parts.extend(f"<p>{_e(note)}</p>" for note in r.notes)
    if r.numbers:
        flat = _flatten(r.numbers)
        parts.append(
            f"<details><summary>All measured numbers ({len(flat)})</summary>\n"
            f"{_kv_table(flat)}</details>"
        )
    parts.append("</section>")
    return "\n".join(parts)


def _comparisons(r: ExperimentResult) -> str:
    if not r.comparisons:
        return "<p><i>This experiment reported no comparison with the paper.</i></p>"
    rows = []
    for c in r.comparisons:
        cls = VERDICT_CLASS[c.verdict]
        rows.append(
            f'<tr class="{cls}" data-key="{_e(c.key)}"><td>{_e(c.claim)}</td>'
            f"<td>{_e(c.paper)}</td><td>{_e(c.measured)}</td>"
            f'<td><span class="badge {cls}">{_e(c.verdict.value)}</span></td>'
            f'<td class="note">{_e(c.note)}</td></tr>'
        )
    return (
        '<table class="comparisons">\n<thead><tr><th>Claim</th><th>Paper</th>'
        "<th>Measured</th><th>Verdict</th><th>Note</th></tr></thead>\n<tbody>\n"
        + "\n".join(rows)
        + "\n</tbody>\n</table>"
    )


def _figure(folder: Path, ref: FigureRef, number: int, r: ExperimentResult) -> str:
    path = folder / ref.path
    shown = f"{r.name}/{ref.path}"
    mime = _MIME.get(path.suffix.lower())
    inside = path.resolve().is_relative_to(folder.resolve())
    if not inside:
        body = f'<div class="missing">Figure outside its experiment folder: {_e(shown)}</div>'
    elif mime is None:
        body = f'<div class="missing">Figure of unknown image type: {_e(shown)}</div>'
    elif not path.is_file():
        body = f'<div class="missing">Figure file missing: {_e(shown)}</div>'
    else:
        raw = path.read_bytes()
        width = _css_width(raw) if mime == "image/png" else None
        size = f' width="{width}"' if width else ""
        data = base64.b64encode(raw).decode("ascii")
        body = f'<img src="data:{mime};base64,{data}"{size} alt="{_e(ref.caption)}">'
    label = ""
    if r.reduced:
        note = _e(r.reduced_note or "reduced sizes against the paper's protocol")
        label = f'<br><span class="reduced-label">REDUCED RUN</span> <i>{note}</i>'
    return (
        f"<figure>{body}<figcaption><b>Figure {number}.</b> {_e(ref.caption)}{label}"
        "</figcaption></figure>"
    )


def _css_width(png: bytes) -> int | None:
    """Width in CSS pixels (96 per inch) of a PNG that records its resolution, else None.

    Matplotlib writes the ``savefig`` dpi in the ``pHYs`` chunk; showing every figure at its
    physical size keeps the figures' fonts at the size of the page's text, whatever the dpi.
    """
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        return None
    width = int.from_bytes(png[16:20], "big")
    at = 8
    while at + 8 <= len(png):
        length = int.from_bytes(png[at : at + 4], "big")
        kind = png[at + 4 : at + 8]
        if kind == b"pHYs" and length == 9:
            per_metre = int.from_bytes(png[at + 8 : at + 12], "big")
            if png[at + 16] != 1 or per_metre == 0:  # unit 1 = metre; 0 = aspect ratio only
                return None
            return round(width * 96 / (per_metre * 0.0254))
        if kind in (b"IDAT", b"IEND"):
            return None
        at += 12 + length
    return None


def _configuration(results: list[ExperimentResult]) -> str:
    total = sum(r.seconds for r in results)
    rows = "\n".join(
        f'<tr><td><a href="#exp-{_e(r.name)}">{_e(r.name)}</a></td>'
        f'<td class="num">{r.seconds:.1f}</td><td class="num">{_e(_clock(r.seconds))}</td></tr>'
        for r in results
    )
    parts = [
        '<section id="configuration">',
        "<h2>Configuration, times and environment</h2>",
        "<h3>Run times</h3>",
        '<table class="times">\n<thead><tr><th>Experiment</th><th class="num">seconds</th>'
        f'<th class="num">h:mm:ss</th></tr></thead>\n<tbody>\n{rows}\n'
        f'<tr class="total"><td>total</td><td class="num">{total:.1f}</td>'
        f'<td class="num">{_e(_clock(total))}</td></tr>\n</tbody>\n</table>',
        "<h3>Configuration</h3>",
    ]
    parts.append('<div class="config-grid">')
    for r in results:
        table = _kv_table(_flatten(r.config)) if r.config else "<p><i>none recorded</i></p>"
        parts.append(f"<div><h4>{_e(r.name)}</h4>\n{table}</div>")
    parts.append("</div>")
    parts.append("<h3>Versions and machine</h3>")
    parts.append(_environment(results))
    parts.append("</section>")
    return "\n".join(parts)


def _environment(results: list[ExperimentResult]) -> str:
    envs = [r.environment for r in results]
    keys = list(dict.fromkeys(k for env in envs for k in env))
    if not keys:
        return "<p><i>not recorded</i></p>"
    distinct = {json.dumps(env, sort_keys=True, default=str) for env in envs}
    if len(distinct) == 1:
        return _kv_table({k: envs[0][k] for k in keys})
    head = "".join(f"<th>{_e(r.name)}</th>" for r in results)
    rows = "\n".join(
        f"<tr><td>{_e(k)}</td>"
        + "".join(f"<td>{_e(_format(env.get(k, '—')))}</td>" for env in envs)
        + "</tr>"
        for k in keys
    )
    return (
        f'<table class="kv">\n<thead><tr><th></th>{head}</tr></thead>\n<tbody>\n{rows}\n'
        "</tbody>\n</table>"
    )


def _kv_table(items: Mapping[str, Any]) -> str:
    rows = "\n".join(
        f"<tr><td>{_e(k)}</td><td>{_e(_format(v))}</td></tr>" for k, v in items.items()
    )
    return f'<table class="kv">\n<tbody>\n{rows}\n</tbody>\n</table>'


# --------------------------------------------------------------------------------------------
# small helpers


def _e(text: Any) -> str:
    return escape(str(text), quote=True)


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``{"a.b.c": value}``; lists and scalars are leaves."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _format(value: Any, *, max_items: int = 8) -> str:
    """One readable line for a config or measured value; long lists are summarised."""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        if len(value) <= max_items and all(not isinstance(v, list | tuple | dict) for v in value):
            return "[" + ", ".join(_format(v) for v in value) + "]"
        numeric = [v for v in value if isinstance(v, int | float) and not isinstance(v, bool)]
        if numeric and len(numeric) == len(value):
            return (
                f"{len(value)} values in [{_format(float(min(numeric)))}, "
                f"{_format(float(max(numeric)))}]"
            )
        return f"list of {len(value)} items"
    if isinstance(value, dict):
        return json.dumps(value, default=str)
    if value is None:
        return "—"
    return str(value)


def _duration(seconds: float) -> str:
    return f"ran in {seconds:.1f} s" if seconds < 120 else f"ran in {_clock(seconds)}"


def _readable(iso: str) -> str:
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M UTC")


def _clock(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _version() -> str:
    try:
        return metadata.version("sgdscope")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "(unknown version)"


def _write_atomic(path: Path, text: str) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
