"""Statistics of surrogate paths drawn in batches from a seeded generator, on up to two threads.

Shared by the tests that compare a record with surrogates of a fitted linear model
(:func:`~sgdscope.trajectory.analysis.equilibrium_test`,
:func:`~sgdscope.trajectory.analysis.subspace_currents`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

# Normals per batch (8 MB of float64).
_BATCH_ELEMENTS = 1 << 20


def surrogate_statistics(
    paths: Callable[[np.ndarray], np.ndarray],
    k: int,
    n: int,
    n_surrogates: int,
    rng: np.random.Generator,
    statistics: Callable[[np.ndarray], np.ndarray],
    width: int,
    threads: int,
) -> np.ndarray:
    """(n_surrogates, width) values of ``statistics(yt)`` on surrogates yᵀ (k, T).

    ``paths(eps)`` maps standard normals (B, T, k) to B surrogate paths (B, k, T). The normals
    are drawn in the calling thread, in surrogate order (a batch ``rng.standard_normal((B, T, k))``
    is the same stream as B single draws), so the values do not depend on ``threads`` or the
    batch size; the paths and statistics of a batch run on a worker thread (numpy and scipy
    release the GIL in their loops).

    Returns:
        The values, one row per surrogate, float64.
    """
    batch = max(1, min(n_surrogates, _BATCH_ELEMENTS // max(n * k, 1)))
    out = np.empty((n_surrogates, width))

    def work(i0: int, eps: np.ndarray) -> None:
        for j, yt in enumerate(paths(eps)):
            out[i0 + j] = statistics(yt)

    starts = range(0, n_surrogates, batch)
    if threads <= 1:
        for i0 in starts:
            work(i0, rng.standard_normal((min(batch, n_surrogates - i0), n, k)))
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            futures = [
                pool.submit(work, i0, rng.standard_normal((min(batch, n_surrogates - i0), n, k)))
                for i0 in starts
            ]
            for f in futures:
                f.result()
    return out


def worker_threads(n: int, n_surrogates: int) -> int:
    """Worker threads for the surrogates: up to 2 (the CPUs this process may use), 1 when small."""
    if n * n_surrogates < 1_000_000:
        return 1
    return max(1, min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1))
