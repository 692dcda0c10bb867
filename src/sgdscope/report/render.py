"""Write the report of ``sgdscope reproduce`` from the results on disk: ``OUT/report/``.

:func:`render_report` reads every ``OUT/<name>/result.json`` once
(:func:`~sgdscope.report.results.collect_results`) and writes, from that one reading,

- ``OUT/report/index.html``: the self-contained page (:func:`sgdscope.report.html.html_page`);
- ``OUT/report/results.json``: the same numbers, machine-readable::

      {"generated": "2025-01-01T12:00:00+00:00",
       "experiments": [ExperimentResult.to_dict(), ...],
       "verdicts": {"reproduced": 3, "partly reproduced": 1, ...}}

- ``OUT/report/results.md``: the paper-against-measured tables as Markdown
  (:func:`sgdscope.report.markdown.markdown_tables`).

The report renders results and never recomputes them.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from .html import html_page
from .markdown import markdown_tables
from .page import write_atomic
from .results import _jsonable, collect_results, verdict_counts

__all__ = ["REPORT_DIR", "render_report"]

REPORT_DIR = "report"  #: folder of the report inside OUT.


def render_report(out: str | os.PathLike[str]) -> Path:
    """Write ``index.html``, ``results.json`` and ``results.md`` in ``OUT/report``.

    Reads every ``OUT/<name>/result.json`` once; figures are read from
    ``OUT/<name>/<figure path>`` and embedded. With no result at all the page says that no
    experiment has been run yet and how to run one. Every file is written atomically (a crash
    leaves the old file or the new one).

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
    write_atomic(folder / "results.json", json.dumps(payload, indent=2, default=_jsonable))
    write_atomic(folder / "results.md", markdown_tables(results))
    return write_atomic(folder / "index.html", html_page(out, results, generated))
