"""The paper-against-measured tables as Markdown (``OUT/report/results.md``).

The same rows as the HTML report (:mod:`sgdscope.reproduce.html_report`), for pasting into an
issue, a paper's appendix or ``docs/REPRODUCTION.md``: per experiment its title, whether it was a
reduced run, its time, and a table claim | paper | measured | verdict | note.
"""

from __future__ import annotations

import os
from pathlib import Path

from .results import ExperimentResult, collect_results

__all__ = ["markdown_tables", "render_markdown"]


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|") or "—"


def markdown_tables(results: list[ExperimentResult]) -> str:
    """Return one Markdown section per experiment with its paper-against-measured table."""
    parts = []
    for r in results:
        head = f"### {r.title}\n\n`{r.name}`: {r.seconds:.0f} s"
        if r.reduced:
            head += f"; **reduced run** ({_cell(r.reduced_note)})"
        rows = ["| claim | paper | measured | verdict | note |", "|---|---|---|---|---|"]
        rows += [
            f"| {_cell(c.claim)} | {_cell(c.paper)} | {_cell(c.measured)} | "
            f"**{c.verdict.value}** | {_cell(c.note)} |"
            for c in r.comparisons
        ]
        parts.append(head + "\n\n" + "\n".join(rows))
    return "\n\n".join(parts) + "\n"


def render_markdown(out: str | os.PathLike[str]) -> Path:
    """Write ``OUT/report/results.md`` from the saved results and return its path."""
    folder = Path(out) / "report"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "results.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(markdown_tables(collect_results(out)))
    os.replace(tmp, path)
    return path
