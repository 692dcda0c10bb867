"""One adapter for every analysis: a ``Trajectory`` or a plain array of shape (T, d).

It validates once (finite values, enough snapshots, no constant coordinate) and offers a streaming
PCA so that long, wide trajectories (T = 10⁵, d = 10³) are projected without being copied into
float64 at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

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


@dataclass(frozen=True)
class Projection:
    r"""A PCA (or given) projection x ↦ (x − mean) @ basis.

    Attributes:
        mean: (d,) the mean position subtracted before projecting.
        basis: (d, k) orthonormal columns, ordered by decreasing variance for PCA.
        explained_variance: (k,) variance of the trajectory along each column.
        explained_ratio: (k,) the same as a fraction of the total variance tr Cov(x).
        method: ``"pca"``, ``"given"`` or ``"none"`` (d ≤ k: the coordinates themselves).
    """

    mean: np.ndarray
    basis: np.ndarray
    explained_variance: np.ndarray
    explained_ratio: np.ndarray
    method: str

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Project positions of shape (T, d) to float64 (T, k), streaming over time."""
        out = np.empty((x.shape[0], self.basis.shape[1]))
        for t0 in range(0, x.shape[0], _CHUNK):
            blk = np.asarray(x[t0 : t0 + _CHUNK], dtype=np.float64)
            out[t0 : t0 + _CHUNK] = (blk - self.mean) @ self.basis
        return out

    def describe(self) -> str:
        """One line saying which plane was used, for verdicts and figure titles."""
        if self.method == "none":
            return f"the {self.basis.shape[1]} original coordinates"
        pct = 100.0 * float(self.explained_ratio.sum())
        k = self.basis.shape[1]
        what = f"top-{k} PCA plane" if self.method == "pca" else f"given {k}-D basis"
        return f"the {what} ({pct:.1f}% of the variance)"


def _mean_cov(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and covariance (d, d) of the rows of x, in float64, one pass by chunks."""
    n, d = x.shape
    s = np.zeros(d)
    ss = np.zeros((d, d))
    shift = np.asarray(x[0], dtype=np.float64)  # shifted sums keep the round-off small
    for t0 in range(0, n, _CHUNK):
        blk = np.asarray(x[t0 : t0 + _CHUNK], dtype=np.float64) - shift
        s += blk.sum(axis=0)
        ss += blk.T @ blk
    mean = s / n
    cov = ss / n - np.outer(mean, mean)
    return mean + shift, 0.5 * (cov + cov.T)


def pca(x: np.ndarray, k: int) -> Projection:
    r"""Principal components of positions: the top-k eigenvectors of Cov(x).

    Computed from the d × d covariance accumulated in one streamed float64 pass
    (O(T d²) time, O(d²) memory), then ``numpy.linalg.eigh``. When d ≤ k the coordinates are kept
    as they are (``method="none"``). Eigenvector signs are fixed so that the largest entry of each
    column is positive, which makes the orientation of the plane (and the sign of a circulation)
    reproducible.

    Args:
        x: (T, d) positions.
        k: Number of components.

    Returns:
        A :class:`Projection`.
    """
    mean, cov = _mean_cov(x)
    d = cov.shape[0]
    total = float(np.trace(cov))
    if d <= k:
        var = np.diag(cov).copy()
        return Projection(mean, np.eye(d), var, var / total, "none")
    w, v = np.linalg.eigh(cov)
    order = np.argsort(w)[::-1][:k]
    w, v = w[order], v[:, order]
    flip = np.sign(v[np.argmax(np.abs(v), axis=0), np.arange(k)])
    v = v * np.where(flip == 0, 1.0, flip)
    return Projection(mean, v, w, w / total, "pca")


def given_basis(x: np.ndarray, basis: np.ndarray, *, where: str) -> Projection:
    """A :class:`Projection` onto the columns of a user-given (d, k) basis (orthonormalised).

    Raises:
        ValueError: If ``basis`` does not have d rows or its columns are linearly dependent.
    """
    b = np.asarray(basis, dtype=np.float64)
    if b.ndim != 2 or b.shape[0] != x.shape[1]:
        raise ValueError(
            f"the 'basis' parameter of {where} must have shape (d, k) = ({x.shape[1]}, k), "
            f"got {b.shape}."
        )
    q, r = np.linalg.qr(b)
    if np.abs(np.diag(r)).min() <= 1e-10 * np.abs(np.diag(r)).max():
        raise ValueError(
            f"the 'basis' parameter of {where} has linearly dependent columns; pass k independent "
            "directions."
        )
    q = q * np.sign(np.diag(r))
    mean, cov = _mean_cov(x)
    var = np.einsum("ik,ij,jk->k", q, cov, q)
    return Projection(mean, q, var, var / float(np.trace(cov)), "given")


def project(
    x: np.ndarray, n_components: int, basis: np.ndarray | None, *, where: str
) -> tuple[np.ndarray, Projection]:
    """Project (T, d) positions to (T, k) float64 with PCA or a given basis; returns both."""
    proj = pca(x, n_components) if basis is None else given_basis(x, basis, where=where)
    return proj.apply(x), proj


def as_generator(seed: int | np.random.Generator | None) -> np.random.Generator:
    """A dedicated numpy Generator (never the global RNG) from a seed or a Generator."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)
