"""The paper-against-measured tables as Markdown (``OUT/report/results.md``).

The same rows as the HTML page (:mod:`sgdscope.report.html`), for pasting into an issue, a
paper's appendix or ``docs/REPRODUCTION.md``: per experiment its title, whether it was a reduced
run, its time, and a table claim | paper | measured | verdict | note.
"""

from __future__ import annotations

from collections.abc import Iterable

from .results import ExperimentResult

__all__ = ["markdown_tables"]


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|") or "—"


def markdown_tables(results: Iterable[ExperimentResult]) -> str:
    """Return one Markdown section per experiment with its paper-against-measured table.

    Args:
        results: The results, in the order to show them.

    Returns:
        The Markdown text (one ``###`` section per experiment).
    """
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
