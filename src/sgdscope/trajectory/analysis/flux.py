r"""Coarse-grained probability flux in a 2-D plane (Battle et al., Science 352:604, 2016).

Detailed balance means no net probability current: every transition a → b is matched, on
average, by b → a. Battle et al. estimate the current of a stationary trajectory on a grid of
cells: each transition from cell a (centre :math:`r_a`) to cell b contributes
:math:`\tfrac12(r_b-r_a)` to the flux of both cells, divided by the number of steps. The
*circulation* is the angular momentum of that field about the mean position,

.. math:: L = \sum_{\text{cells } c}(r_c-\bar r)\times J_c
          = \frac{1}{T-1}\sum_t (c_t-\bar r)\times(c_{t+1}-\bar r),

(the second form, the coarse-grained Lévy area per step, is an identity), positive for
counter-clockwise rotation. For an OU process (§V-A, Lemma 20) its fine-grid limit is
:math:`E[x_t\times x_{t+1}] = C(1)_{10}-C(1)_{01} \approx 2\Delta\,Q_{01}`, so its sign is the
sign of :math:`Q_{01}` (with β⁻¹ absorbed in D and Q).

Significance: reversing time turns L into −L exactly. Under detailed balance a stretch of
trajectory and its time reverse are equally likely, so the Lévy areas :math:`L_b` of B
consecutive blocks, each about its own mean, are symmetric about 0; the surrogates
:math:`\sum_b s_b L_b` with random signs :math:`s_b=\pm1` (blocks reversed at random) give the
null distribution of :math:`\sum_b L_b`. Blocks must be longer than the relaxation time for the
contributions to be independent. For Brownian motion (independent increments) the test is exact
up to the coarse-graining.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..._validation import check_int
from ..projection import Projection
from ._input import as_generator, positions, project

__all__ = ["ProbabilityFlux", "probability_flux"]


@dataclass(frozen=True)
class ProbabilityFlux:
    r"""The coarse-grained flux field in a plane, its circulation and significance.

    Attributes:
        x_edges: (nx + 1,) cell edges along the plane's first axis.
        y_edges: (ny + 1,) cell edges along the second axis.
        occupancy: (nx, ny) fraction of snapshots in each cell.
        flux: (nx, ny, 2) flux :math:`J_c` per cell: probability × displacement per step, in the
            plane's units.
        circulation: L, the angular momentum of the flux about the mean (units² per step);
            > 0 is counter-clockwise.
        block_circulation: :math:`\sum_b L_b`, the same with each block's area taken about the
            block's own mean: the statistic that is tested (it drops the coarse, between-block
            term, which does not flip under block reversal; for blocks much longer than the
            relaxation time the two agree).
        p_value: Two-sided p-value of ``block_circulation`` against the block time-reversal
            surrogates.
        null: (n_surrogates,) surrogate values :math:`\sum_b s_b L_b`.
        n_blocks: Number of blocks reversed at random.
        projection: The projection onto the plane (PCA by default; None when d = 2); its
            ``apply`` maps new points (then subtract the trajectory's projected mean).
        plane: Where the flux lives, in words (e.g. "the top-2 PCA plane (93.1% of the variance)").
    """

    x_edges: np.ndarray
    y_edges: np.ndarray
    occupancy: np.ndarray
    flux: np.ndarray
    circulation: float
    block_circulation: float
    p_value: float
    null: np.ndarray
    n_blocks: int
    projection: Projection | None
    plane: str

    @property
    def z_score(self) -> float:
        """Block circulation in units of the surrogates' standard deviation."""
        sd = float(self.null.std())
        return self.block_circulation / sd if sd > 0 else 0.0

    def summary(self) -> dict:
        """Scalars for reports."""
        return {
            "circulation": self.circulation,
            "direction": "counter-clockwise" if self.circulation > 0 else "clockwise",
            "p_value": self.p_value,
            "z_score": self.z_score,
            "n_blocks": self.n_blocks,
            "plane": self.plane,
        }


def _cells(y: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Edges per axis, the cell index pair of each row, and the cell centres of each row."""
    edges, idx, centres = [], [], []
    for a in range(2):
        lo, hi = y[:, a].min(), y[:, a].max()
        pad = 1e-9 * max(hi - lo, 1e-300)
        e = np.linspace(lo - pad, hi + pad, bins + 1)
        i = np.clip(np.searchsorted(e, y[:, a], side="right") - 1, 0, bins - 1)
        edges.append(e)
        idx.append(i)
        centres.append(0.5 * (e[i] + e[i + 1]))
    return edges[0], edges[1], np.stack(idx, axis=1), np.stack(centres, axis=1)


def _flux_field(y: np.ndarray, bins: int) -> tuple:
    """Edges, occupancy, flux field, per-step area contributions and cell centres of a path."""
    xe, ye, idx, c = _cells(y, bins)
    n = y.shape[0]
    flat = idx[:, 0] * bins + idx[:, 1]
    occ = np.bincount(flat, minlength=bins * bins).reshape(bins, bins) / n
    step = np.diff(c, axis=0) / (2.0 * (n - 1))
    per_cell = np.zeros((bins * bins, 2))
    for a in range(2):
        per_cell[:, a] = np.bincount(flat[:-1], weights=step[:, a], minlength=bins * bins)
        per_cell[:, a] += np.bincount(flat[1:], weights=step[:, a], minlength=bins * bins)
    flux = per_cell.reshape(bins, bins, 2)
    rbar = c.mean(axis=0)
    u = c - rbar
    area = (u[:-1, 0] * u[1:, 1] - u[:-1, 1] * u[1:, 0]) / (n - 1)
    return xe, ye, occ, flux, area, c


def _circulation_of_field(xe: np.ndarray, ye: np.ndarray, flux: np.ndarray, rbar) -> float:
    """Σ_c (r_c − r̄) × J_c from the field itself (equals the area sum; used in tests)."""
    cx = 0.5 * (xe[1:] + xe[:-1])[:, None] - rbar[0]
    cy = 0.5 * (ye[1:] + ye[:-1])[None, :] - rbar[1]
    return float((cx * flux[..., 1] - cy * flux[..., 0]).sum())


def _block_areas(c: np.ndarray, n_blocks: int) -> np.ndarray:
    r"""Lévy area per step of each of B consecutive blocks of a (T, 2) path, about the block mean.

    :math:`L_b = \frac{1}{T-1}\sum_{t\in b}(c_t-m_b)\times(c_{t+1}-m_b)`; reversing the block in
    time maps it to exactly −L_b, and it does not depend on where the block sits.

    Returns:
        The areas L_b, shape (B,).
    """
    n = c.shape[0]
    cross = c[:-1, 0] * c[1:, 1] - c[:-1, 1] * c[1:, 0]
    out = np.empty(n_blocks)
    for b, steps in enumerate(np.array_split(np.arange(n - 1), n_blocks)):
        s, e = steps[0], steps[-1] + 1
        m = c[s : e + 1].mean(axis=0)
        disp = c[e] - c[s]
        out[b] = cross[s:e].sum() - (m[0] * disp[1] - m[1] * disp[0])
    return out / (n - 1)


def probability_flux(
    traj: Any,
    *,
    bins: int = 20,
    n_components: int = 2,
    basis: np.ndarray | None = None,
    n_surrogates: int = 999,
    n_blocks: int = 20,
    seed: int | np.random.Generator | None = 0,
) -> ProbabilityFlux:
    r"""Coarse-grained probability flux in the top-2 PCA plane, circulation and its p-value.

    See the module docstring for the estimator (Battle et al. 2016) and the null. Positions are
    projected onto the top two principal components (or onto a given (2, d) ``basis``); a 2-D
    trajectory is used as it is.

    Args:
        traj: A Trajectory or an array of shape (T, d), d ≥ 2.
        bins: Cells per axis of the grid (≥ 2).
        n_components: Must be 2 (the flux field lives in a plane); kept for symmetry with the
            other analyses.
        basis: Optional (2, d) basis of the plane (one direction per row) instead of PCA.
        n_surrogates: Number of block time-reversal surrogates (≥ 19).
        n_blocks: Number of blocks B reversed at random (≥ 4; the smallest attainable p-value
            is 2^(1 − B)).
        seed: Seed or Generator for the surrogates.

    Returns:
        A :class:`ProbabilityFlux`.

    Raises:
        ValueError: If an argument is out of range, d < 2, or T < 10·``n_blocks``.

    Example:
        >>> x = np.random.default_rng(0).standard_normal((5000, 2)).cumsum(axis=0)
        >>> bool(probability_flux(x).p_value > 0.01)  # Brownian motion: no significant flux
        True
    """
    where = "probability_flux"
    bins = check_int("bins", bins, where=where, low=2)
    check_int(
        "n_components",
        n_components,
        where=where,
        low=2,
        high=2,
        hint="The flux field is drawn in a plane; pick the plane with 'basis'.",
    )
    n_surrogates = check_int("n_surrogates", n_surrogates, where=where, low=19)
    n_blocks = check_int("n_blocks", n_blocks, where=where, low=4)
    x = positions(
        traj,
        where=where,
        min_length=10 * n_blocks,
        why=f"{n_blocks} blocks of ≥ 10 steps",
        check_values=False,  # project() checks them in its single pass
    )
    if x.shape[1] < 2:
        raise ValueError(
            f"the 'traj' parameter of {where} must have at least 2 coordinates for a flux in a "
            f"plane, got d = {x.shape[1]}."
        )
    y, proj, plane = project(x, 2, basis, where=where)
    xe, ye, occ, flux, area, centres = _flux_field(y, bins)
    parts = _block_areas(centres, n_blocks)
    local = float(parts.sum())
    signs = as_generator(seed).choice(np.array([-1.0, 1.0]), size=(n_surrogates, n_blocks))
    null = signs @ parts
    p = (1.0 + np.count_nonzero(np.abs(null) >= abs(local))) / (n_surrogates + 1.0)
    return ProbabilityFlux(
        x_edges=xe,
        y_edges=ye,
        occupancy=occ,
        flux=flux,
        circulation=float(area.sum()),
        block_circulation=local,
        p_value=float(p),
        null=null,
        n_blocks=n_blocks,
        projection=proj,
        plane=plane,
    )
