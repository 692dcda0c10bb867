"""A ``with`` block for writers that must keep what they wrote when the block fails."""

from __future__ import annotations

import contextlib
from typing import Any, TypeVar

__all__ = ["ClosesOnExit"]

_T = TypeVar("_T", bound="ClosesOnExit")


class ClosesOnExit:
    """``with obj:`` calls ``obj.close()`` at the end of the block.

    When the block raises, the close still runs, to save what was recorded, but an error of the
    close itself is suppressed: the user's exception is the one that propagates.
    """

    def close(self) -> None:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def __enter__(self: _T) -> _T:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
            return
        with contextlib.suppress(Exception):  # keep the user's exception; save what was recorded
            self.close()
