"""Memory budgets: refuse work that would not fit before allocating it, and say what would fit."""

from __future__ import annotations

import os

import torch

__all__ = ["MemoryBudgetError", "PeakTensorMemory", "default_budget", "format_bytes"]


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


class PeakTensorMemory:
    """Count the bytes of tensor storage alive at once while the context is open (its peak).

    A ``TorchDispatchMode`` that sees every op's outputs: each new storage adds its size, and a
    finaliser subtracts it when the storage is freed. Deterministic (unlike the process RSS) and
    independent of the allocator's caching; it counts the tensors created inside the context,
    not those that existed before. Used by the tests and benchmarks to check memory bounds.

    Example:
        >>> with PeakTensorMemory() as mem:
        ...     a = torch.zeros(1000, dtype=torch.float64)
        ...     b = a + 1
        ...     del a, b
        >>> mem.peak
        16000
    """

    def __init__(self) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode

        tracker = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                tracker._see(out)
                return out

        self._mode = _Mode()
        self._live: dict[tuple[str, int], int] = {}
        self.current = 0
        self.peak = 0

    def _see(self, out) -> None:
        import weakref

        import torch.utils._pytree as pytree

        for t in pytree.tree_leaves(out):
            if not isinstance(t, torch.Tensor) or t.is_meta:
                continue
            try:
                storage = t.untyped_storage()
            except (RuntimeError, NotImplementedError):  # functorch wrappers have none
                continue
            key = (str(t.device), storage.data_ptr())
            size = storage.nbytes()
            if size and key not in self._live:
                self._live[key] = size
                self.current += size
                self.peak = max(self.peak, self.current)
                weakref.finalize(storage, self._free, key)

    def _free(self, key) -> None:
        self.current -= self._live.pop(key, 0)

    def __enter__(self) -> PeakTensorMemory:
        self._mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._mode.__exit__(*exc)
