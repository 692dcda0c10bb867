"""Memory budgets: refuse work that would not fit before allocating it, and say what would fit."""

from __future__ import annotations

import os

import torch

__all__ = ["MemoryBudgetError", "default_budget", "format_bytes"]


class MemoryBudgetError(MemoryError):
    """Raised before an allocation that would exceed the memory budget; the message says what fits."""


def format_bytes(n: float) -> str:
    """Human-readable size, e.g. ``1.5 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def default_budget(device: torch.device) -> int:
    """Half of the device's memory: free GPU memory on CUDA, physical RAM on the CPU."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free // 2)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        total = 8 * 1024**3
    return int(total // 2)
