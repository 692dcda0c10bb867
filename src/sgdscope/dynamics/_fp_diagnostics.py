r"""Grid derivatives and critical points for the steady-state diagnostics of :class:`FokkerPlanck`.

Critical points (Theorem 22 of Chaudhari & Soatto 2018) are found cell by cell: with the gradient
g and the Jacobian H of a field at a cell centre (second-order central differences), one Newton
step :math:`\delta = -H^{-1}g` is taken and the zero is accepted when it lands inside the cell.
A non-degenerate zero is thus found once, to the accuracy of the differences (O(h²)); cells
where no gradient component changes sign in the 3^d neighbourhood are skipped first.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
from scipy import ndimage

from .grid import Grid

__all__ = ["CriticalKind", "CriticalPoint", "find_critical_points", "gradient"]


class CriticalKind(str, Enum):
    """Type of a critical point, from the signs of the Hessian eigenvalues."""

    MIN = "min"
    MAX = "max"
    SADDLE = "saddle"
    CENTER = "center"  # non-gradient drift only: complex eigenvalues with ~zero real parts
    DEGENERATE = "degenerate"


@dataclass(frozen=True, eq=False)
class CriticalPoint:
    """A critical point of f (a zero of the drift) or of Φ.

    Attributes:
        location: Coordinates, shape (dim,).
        kind: ``min``, ``max``, ``saddle`` or ``degenerate``.
        value: The function there (nan when unknown, e.g. f for a drift that is not −∇f).
        eigenvalues: Eigenvalues of the Hessian (for a drift b: real parts of those of −∂b),
            ascending, shape (dim,).
    """

    location: np.ndarray
    kind: CriticalKind
    value: float
    eigenvalues: np.ndarray

    def to_dict(self) -> dict:
        """JSON-friendly form."""
        return {
            "location": [float(v) for v in self.location],
            "kind": self.kind.value,
            "value": None if not np.isfinite(self.value) else float(self.value),
            "eigenvalues": [float(v) for v in self.eigenvalues],
        }


_CENTER_RTOL = 1e-2  # |Re λ| below 1% of |λ| counts as zero (finite differences are O(h²))


def gradient(values: np.ndarray, grid: Grid, periodic: bool) -> np.ndarray:
    """Second-order central differences of ``values`` (shape (*shape, ...)) along every axis.

    One-sided second-order differences at reflecting walls, wrap-around when periodic.

    Returns:
        Array of shape (*shape, ..., dim): the last axis indexes the derivative direction.
    """
    out = []
    for i, h in enumerate(grid.spacing):
        if periodic:
            d = (np.roll(values, -1, axis=i) - np.roll(values, 1, axis=i)) / (2.0 * h)
        else:
            d = np.gradient(values, h, axis=i, edge_order=2)
        out.append(d)
    return np.stack(out, axis=-1)


def _classify(eig: np.ndarray, tol: float) -> CriticalKind:
    if np.iscomplexobj(eig):
        re, scale = eig.real, np.abs(eig).max()
        if np.any(np.abs(eig.imag) > _CENTER_RTOL * scale) and np.all(
            np.abs(re) <= _CENTER_RTOL * scale
        ):
            return CriticalKind.CENTER
        eig = re
    if np.any(np.abs(eig) <= tol):
        return CriticalKind.DEGENERATE
    if np.all(eig > 0):
        return CriticalKind.MIN
    if np.all(eig < 0):
        return CriticalKind.MAX
    return CriticalKind.SADDLE


def find_critical_points(
    grid: Grid,
    grad: np.ndarray,
    jac: np.ndarray,
    *,
    values: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    periodic: bool = False,
    symmetric: bool = True,
) -> list[CriticalPoint]:
    """Zeros of a gradient field on the grid, each refined by one in-cell Newton step.

    Args:
        grid: The grid.
        grad: The field g, shape (*shape, dim) (∇Φ, or ∇f = −b for a drift).
        jac: Its Jacobian, shape (*shape, dim, dim) (the Hessian for a gradient field).
        values: The function whose critical points these are, shape (*shape), for the reported
            value (second-order Taylor from the cell centre); None gives nan values.
        mask: Cells to search (e.g. where the density is resolved); None searches all.
        periodic: Whether the grid wraps around (otherwise wall cells are skipped).
        symmetric: Classify by eigenvalues of the symmetric part (True) or by real parts of the
            eigenvalues of ``jac`` itself (False, for non-gradient drifts).

    Returns:
        Critical points sorted by location (lexicographic).
    """
    dim = grid.dim
    cand = np.ones(grid.shape, dtype=bool) if mask is None else mask.copy()
    for c in range(dim):
        mode = "wrap" if periodic else "nearest"
        lo = ndimage.minimum_filter(grad[..., c], size=3, mode=mode)
        hi = ndimage.maximum_filter(grad[..., c], size=3, mode=mode)
        cand &= (lo <= 0) & (hi >= 0)
    if not periodic:
        inner = np.zeros(grid.shape, dtype=bool)
        # The Hessian differences the gradient again: skip the two cells next to each wall,
        # where both are one-sided.
        inner[tuple(slice(2, -2) for _ in range(dim))] = True
        cand &= inner
    idx = np.flatnonzero(cand)
    if idx.size == 0:
        return []
    g = grad.reshape(-1, dim)[idx]
    jm = jac.reshape(-1, dim, dim)[idx]
    det = np.linalg.det(jm)
    scale = np.abs(jm).max(axis=(1, 2)) ** dim + 1e-300  # per cell: tails can be huge
    ok = np.abs(det) > 1e-12 * scale
    idx, g, jm = idx[ok], g[ok], jm[ok]
    if idx.size == 0:
        return []
    delta = -np.linalg.solve(jm, g[..., None])[..., 0]
    h = grid.spacing
    # Accept slightly outside the cell (differences are O(h²)); duplicates are merged below.
    inside = np.all(np.abs(delta) <= 0.55 * h, axis=1)
    idx, g, jm, delta = idx[inside], g[inside], jm[inside], delta[inside]
    centres = grid.points.reshape(-1, dim)[idx]
    locs = centres + delta
    if periodic:  # wrap into the box, and compare positions modulo the period
        locs = grid.low + np.mod(locs - grid.low, grid.high - grid.low)
    period = grid.high - grid.low

    def apart(u, v):
        d = np.abs(u - v)
        if periodic:
            d = np.minimum(d, period - d)
        return np.any(d > h)

    order = np.argsort(np.linalg.norm(g, axis=1))
    kept: list[int] = []
    for k in order:
        if all(apart(locs[k], locs[m]) for m in kept):
            kept.append(int(k))
    eig_tol = 1e-8 * (np.abs(jm).max() + 1e-300)
    out = []
    for k in kept:
        if symmetric:
            eig = np.linalg.eigvalsh(0.5 * (jm[k] + jm[k].T))
        else:
            eig = np.linalg.eigvals(jm[k]).astype(complex)
        if values is None:
            val = np.nan
        else:
            v0 = values.reshape(-1)[idx[k]]
            val = float(v0 + g[k] @ delta[k] + 0.5 * delta[k] @ jm[k] @ delta[k])
        kind = _classify(eig, eig_tol)
        out.append(
            CriticalPoint(location=locs[k], kind=kind, value=val, eigenvalues=np.sort(eig.real))
        )
    out.sort(key=lambda p: tuple(p.location))
    return out


def nearest_distances(
    targets: list[CriticalPoint], sources: list[CriticalPoint], same_kind: bool = True
) -> np.ndarray:
    """For each target, the distance to the nearest source (of the same kind); nan if none."""
    out = np.full(len(targets), np.nan)
    for t, p in enumerate(targets):
        ds = [
            np.linalg.norm(p.location - q.location)
            for q in sources
            if not same_kind or q.kind == p.kind
        ]
        if ds:
            out[t] = min(ds)
    return out


def weighted_ratio(num: np.ndarray, den: np.ndarray, weight: np.ndarray) -> float:
    """``Σ w |num| / Σ w |den|`` (0 when the denominator vanishes)."""
    a = float(np.sum(weight * np.abs(num)))
    b = float(np.sum(weight * np.abs(den)))
    return a / b if b > 0 else 0.0
