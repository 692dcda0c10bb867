"""Progress bars (rich) for long data passes; silent when disabled or not on a terminal."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@contextmanager
def progress_bar(description: str, total: int | None, *, enabled: bool = True) -> Iterator:
    """Yield an ``advance(n)`` callable that moves a rich progress bar by n units.

    Args:
        description: Text shown beside the bar.
        total: Number of units, or None when unknown.
        enabled: When False, nothing is drawn and ``advance`` does nothing.

    Yields:
        A function ``advance(n: int = 1) -> None``.
    """
    if not enabled:
        yield lambda n=1: None
        return
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
    ) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)
