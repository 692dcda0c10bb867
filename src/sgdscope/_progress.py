"""Progress for long data passes: a rich bar on a terminal, plain text lines in a log.

On a terminal the bar redraws in place. When the output is a file or a pipe (a batch job's log,
``nohup``, CI), a bar would only leave blank lines, so progress is written as plain lines instead:
one when the work starts, one at most every ``_LOG_EVERY`` seconds, and one when it ends, each with
the count done, the elapsed time and an estimate of the time left.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

_LOG_EVERY = 30.0  # seconds between two plain progress lines


def _duration(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class _LogProgress:
    """Plain-text progress lines for a non-terminal stream."""

    def __init__(self, description: str, total: int | None, stream: TextIO, every: float) -> None:
        self.description, self.total, self.stream, self.every = description, total, stream, every
        self.done = 0
        self.t0 = self.last = time.monotonic()
        self._write("started")

    def _write(self, state: str) -> None:
        elapsed = time.monotonic() - self.t0
        count = f"{self.done:,}" if self.total is None else f"{self.done:,}/{self.total:,}"
        left = ""
        if self.total and 0 < self.done < self.total:
            left = f", about {_duration(elapsed * (self.total - self.done) / self.done)} left"
        print(
            f"{self.description}: {count} {state}, {_duration(elapsed)} elapsed{left}",
            file=self.stream,
            flush=True,
        )

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._write("done")

    def finish(self) -> None:
        self._write("done (finished)" if self.total in (None, self.done) else "done (stopped)")


@contextmanager
def progress_bar(
    description: str,
    total: int | None,
    *,
    enabled: bool = True,
    stream: TextIO | None = None,
) -> Iterator[Callable[..., None]]:
    """Yield an ``advance(n)`` callable that reports progress by n units.

    Args:
        description: Text shown beside the bar (or at the start of each log line).
        total: Number of units, or None when unknown.
        enabled: When False, nothing is shown and ``advance`` does nothing.
        stream: Where to report; default standard error. A terminal gets a rich bar, anything
            else plain lines (at the start, every 30 s, at the end).

    Yields:
        A function ``advance(n: int = 1) -> None``.
    """
    if not enabled:
        yield lambda n=1: None
        return
    stream = sys.stderr if stream is None else stream
    console = Console(file=stream)
    if not console.is_terminal:
        log = _LogProgress(description, total, stream, _LOG_EVERY)
        try:
            yield log.advance
        finally:
            log.finish()
        return
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
        console=console,
    ) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)
