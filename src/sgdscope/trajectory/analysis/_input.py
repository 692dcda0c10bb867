"""One adapter for every analysis: a ``Trajectory`` or a plain array of shape (T, d).

It validates once (finite values, enough snapshots, no constant coordinate) and offers a streaming
projection (the trajectory package's PCA) shared by the analyses that work in a plane.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..projection import Projection, basis_projection, pca_projection

# Rows per chunk when streaming over time (about 32 MB of float64 at d = 10³).
_CHUNK = 4096


def positions(traj: Any, *, where: str, min_length: int = 2, why: str = "") -> np.ndarray:
    """Return the weights of ``traj`` as an array of shape (T, d), validated.

    Args:
        traj: A ``Trajectory`` (anything with a ``weights`` attribute sliceable as
            ``weights[t0:t1]``) or an array-like of shape (T, d) (a 1-D array is one coordinate).
        where: Name of the calling function, for error messages.
        min_length: Smallest number of snapshots T the caller can work with.
        why: What the minimum is for (e.g. ``"the lags up to 50"``), appended to the message.

    Returns:
        A (T, d) array (float32 or float64; a view or memory map when possible, never upcast).

    Raises:
        TypeError: If ``traj`` is neither a Trajectory nor numeric.
        ValueError: If the shape is not (T, d), T < ``min_length``, a value is not finite, or a
            coordinate is constant.
    """
    if hasattr(traj, "weights") and not isinstance(traj, np.ndarray):
        x = traj.weights[0 : len(traj)]
    else:
        x = traj
    try:
        x = np.asarray(x)
    except (TypeError, ValueError) as exc:  # pragma: no cover - numpy message is kept
        raise TypeError(
            f"the 'traj' parameter of {where} must be a Trajectory or an array of shape (T, d), "
            f"got {type(traj).__name__}."
        ) from exc
    if x.dtype.kind not in "fiu" or x.dtype == np.float16:
        raise TypeError(
            f"the 'traj' parameter of {where} must hold real numbers, got dtype {x.dtype}."
        )
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(
            f"the 'traj' parameter of {where} must have shape (T, d), got shape {x.shape}."
        )
    if x.dtype.kind in "iu":
        x = x.astype(np.float64)
    n = x.shape[0]
    if n < min_length:
        tail = f" for {why}" if why else ""
        raise ValueError(
            f"the 'traj' parameter of {where} has {n} snapshots, but at least {min_length} are "
            f"needed{tail}. Record a longer trajectory or ask for fewer/shorter lags."
        )
    lo = np.full(x.shape[1], np.inf)
    hi = np.full(x.shape[1], -np.inf)
    for t0 in range(0, n, _CHUNK):
        blk = x[t0 : t0 + _CHUNK]
        if not np.isfinite(blk).all():
            bad = np.argwhere(~np.isfinite(blk))[0]
            raise ValueError(
                f"the 'traj' parameter of {where} contains a non-finite value (NaN or inf) at "
                f"snapshot {t0 + bad[0]}, coordinate {bad[1]}. Drop the diverged part of the run "
                "(e.g. traj.weights[:t]) before analysing it."
            )
        lo = np.minimum(lo, blk.min(axis=0))
        hi = np.maximum(hi, blk.max(axis=0))
    const = np.flatnonzero(hi <= lo)
    if const.size:
        shown = ", ".join(str(i) for i in const[:5]) + (", ..." if const.size > 5 else "")
        raise ValueError(
            f"the 'traj' parameter of {where} has {const.size} constant coordinate(s) "
            f"(index {shown}); their statistics are undefined. Drop them first, e.g. "
            "x[:, x.std(axis=0) > 0], or record only the parameters that train."
        )
    return x


def _total_variance(x: np.ndarray) -> float:
    """tr Cov(x) of the rows of x, streamed in float64 (shifted sums keep round-off small)."""
    shift = np.asarray(x[0], dtype=np.float64)
    s = np.zeros(x.shape[1])
    ss = np.zeros(x.shape[1])
    for t0 in range(0, x.shape[0], _CHUNK):
        blk = np.asarray(x[t0 : t0 + _CHUNK], dtype=np.float64) - shift
        s += blk.sum(axis=0)
        ss += (blk**2).sum(axis=0)
    n = x.shape[0]
    return float(np.sum(ss / n - (s / n) ** 2))


def project(
    x: np.ndarray, n_components: int, basis: Any, *, where: str
) -> tuple[np.ndarray, Projection | None, str]:
    """Project (T, d) positions to centred float64 (T, k) coordinates.

    PCA of positions by :func:`sgdscope.trajectory.projection.pca_projection` (top
    ``n_components``), or the rows of a given (k, d) ``basis`` (orthonormalised), centred on the
    mean position. When d ≤ ``n_components`` and no basis is given, the coordinates are kept.

    Returns:
        ``(y, projection or None, plane)`` where ``plane`` says in words where y lives.

    Raises:
        ValueError: If ``basis`` is not (k, d) with the trajectory's d.
    """
    d = x.shape[1]
    if basis is None and d <= n_components:
        y = np.asarray(x, dtype=np.float64)
        return y - y.mean(axis=0), None, f"the {d} original coordinates"
    if basis is None:
        proj = pca_projection(x, k=n_components)
        what = f"top-{proj.k} PCA plane" if proj.k == 2 else f"top-{proj.k} PCA subspace"
    else:
        b = np.asarray(basis, dtype=np.float64)
        if b.ndim != 2 or b.shape[1] != d:
            raise ValueError(
                f"the 'basis' parameter of {where} must have shape (k, d) = (k, {d}), one "
                f"direction per row, got shape {b.shape}."
            )
        mean = np.zeros(d)
        for t0 in range(0, x.shape[0], _CHUNK):
            mean += np.asarray(x[t0 : t0 + _CHUNK], dtype=np.float64).sum(axis=0)
        proj = basis_projection(b, mean=mean / x.shape[0], orthonormalize=True)
        what = f"given {proj.k}-D basis"
    y = proj.apply(x)
    y = y - y.mean(axis=0)
    pct = 100.0 * float(y.var(axis=0).sum()) / max(_total_variance(x), 1e-300)
    return y, proj, f"the {what} ({pct:.1f}% of the variance)"


def as_generator(seed: int | np.random.Generator | None) -> np.random.Generator:
    """A dedicated numpy Generator (never the global RNG) from a seed or a Generator."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)
