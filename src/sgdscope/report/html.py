"""The self-contained HTML page of the report: ``OUT/report/index.html``.

:func:`html_page` turns the saved results (:class:`~sgdscope.report.results.ExperimentResult`)
into one page that shows everything offline. The markup lives in the jinja2 template
``templates/report.html.j2``, rendered with autoescape on, so every text that comes from a
result (titles, claims, notes, captions, configuration keys and values) is escaped by default;
this module only shapes the data. The style sheet and the script (``templates/report.css``,
``templates/report.js``) ship as package data and are inlined. Figures are embedded as base64
``data:`` URIs, and a Content-Security-Policy forbids every network request, so nothing outside
the file is ever fetched.

The page holds a summary, the "paper against measured" table of every experiment (§IV-A–B, §V,
Figs 1–4, Remarks 11–18) with colour-coded verdicts, the figures with captions, the notes, and
at the end the configuration, run times and versions. Reduced runs (``--quick``) carry a visible
"REDUCED RUN" label on their section and on each of their figures. A figure file that is
missing, outside its experiment folder or of an unknown type gives a visible placeholder naming
the file, not a crash.

The inline script runs on ``load`` and writes, on ``<body>``, ``data-images-total``,
``data-images-loaded`` (images with ``complete && naturalWidth > 0``) and ``data-tables``, so a
headless browser can check that every figure decoded.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .page import CSP, MIME, asset, css_width, data_uri, readable_time, template, version
from .results import ORDER, ExperimentResult, FigureRef, Verdict, verdict_counts

__all__ = ["PAPER", "VERDICT_CLASS", "html_page"]

#: CSS class of each verdict (rows of the comparison tables and their badges).
VERDICT_CLASS: dict[Verdict, str] = {
    Verdict.REPRODUCED: "v-reproduced",
    Verdict.PARTLY: "v-partly",
    Verdict.NOT_REPRODUCED: "v-not-reproduced",
    Verdict.NOT_TESTABLE: "v-not-testable",
}

#: The paper every number of the report is compared with.
PAPER = (
    "P. Chaudhari and S. Soatto, “Stochastic gradient descent performs variational inference, "
    "converges to limit cycles for deep networks”, ICLR 2018 (arXiv:1710.11029)"
)


def html_page(
    out: str | os.PathLike[str], results: Sequence[ExperimentResult], generated: str
) -> str:
    """Return the report page for ``results``, figures read from ``out/<name>/`` and embedded.

    With no result the page says that no experiment has been run yet and how to run one.

    Args:
        out: The output folder of ``sgdscope reproduce``; the figures of result ``r`` are read
            from ``out/r.name`` (a figure path that leaves that folder is not read).
        results: The results, in the order to show them (as
            :func:`~sgdscope.report.results.collect_results` returns them).
        generated: When the report is made, an ISO 8601 time with its offset.

    Returns:
        The whole HTML document.
    """
    out = Path(out)
    numbers = itertools.count(1)
    experiments = [_experiment(out, r, numbers) for r in results]
    envs = [r.environment for r in results]
    keys = list(dict.fromkeys(k for env in envs for k in env))
    shared = len({json.dumps(env, sort_keys=True, default=str) for env in envs}) == 1
    total = sum(r.seconds for r in results)
    present = {r.name for r in results}
    return template("report.html.j2").render(
        csp=CSP,
        css=asset("report.css"),
        script=asset("report.js"),
        paper=PAPER,
        version=version(),
        generated=readable_time(generated),
        out=os.fspath(out),
        order=ORDER,
        experiments=experiments,
        verdicts=[(v.value, VERDICT_CLASS[v]) for v in Verdict],
        total=_counts(results),
        n_reduced=sum(r.reduced for r in results),
        not_run=[name for name in ORDER if name not in present],
        times={"seconds": f"{total:.1f}", "clock": _clock(total)},
        environment={
            "keys": keys,
            "shared": [(k, _format(envs[0][k])) for k in keys] if shared and keys else None,
            "rows": [(k, [_format(env.get(k, "—")) for env in envs]) for k in keys],
        },
    )


# --------------------------------------------------------------------------------------------
# data shaping: one dict per experiment, plain text only (the template escapes it)


def _experiment(out: Path, r: ExperimentResult, numbers: Iterator[int]) -> dict[str, Any]:
    folder = out / r.name
    return {
        "id": f"exp-{r.name}",
        "name": r.name,
        "title": r.title or r.name,
        "reduced": r.reduced,
        "reduced_note": r.reduced_note,
        "duration": _duration(r.seconds),
        "seconds": f"{r.seconds:.1f}",
        "clock": _clock(r.seconds),
        "counts": _counts([r]),
        "comparisons": [
            {
                "key": c.key,
                "claim": c.claim,
                "paper": c.paper,
                "measured": c.measured,
                "verdict": c.verdict.value,
                "note": c.note,
                "css_class": VERDICT_CLASS[c.verdict],
            }
            for c in r.comparisons
        ],
        "figures": [
            _figure(folder, ref, n, r.name) for ref, n in zip(r.figures, numbers, strict=False)
        ],
        "notes": list(r.notes),
        "numbers": [(k, _format(v)) for k, v in _flatten(r.numbers).items()],
        "config": [(k, _format(v)) for k, v in _flatten(r.config).items()],
    }


def _counts(results: Iterable[ExperimentResult]) -> dict[str, Any]:
    counts = verdict_counts(results)
    return {"counts": list(counts.items()), "count": sum(counts.values())}


def _figure(folder: Path, ref: FigureRef, number: int, name: str) -> dict[str, Any]:
    """The figure's data URI and width, or the reason it cannot be shown (a placeholder)."""
    path = folder / ref.path
    figure: dict[str, Any] = {
        "number": number,
        "caption": ref.caption,
        "shown": f"{name}/{ref.path}",
        "src": None,
        "width": None,
        "problem": None,
    }
    mime = MIME.get(path.suffix.lower())
    if not path.resolve().is_relative_to(folder.resolve()):
        figure["problem"] = "Figure outside its experiment folder"
    elif mime is None:
        figure["problem"] = "Figure of unknown image type"
    elif not path.is_file():
        figure["problem"] = "Figure file missing"
    else:
        raw = path.read_bytes()
        figure["width"] = css_width(raw) if mime == "image/png" else None
        figure["src"] = data_uri(raw, mime)
    return figure


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


def _clock(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
