r"""Slow, obviously correct dense Fokker–Planck generator (reference for tests and benchmarks).

It builds the same finite-volume scheme as :class:`sgdscope.FokkerPlanck` (documented in
:mod:`sgdscope.dynamics._fp_operator`) one face at a time with plain Python loops over multi-
indices, evaluating the drift and the diffusion point by point, and writes it into a dense
matrix. Nothing is vectorised and nothing is shared with the fast code except the scheme's
definition, so agreement on a small grid checks the vectorised index arithmetic of the sparse
assembly. Use it only for grids of a few hundred cells.

For each face between cells L and R along axis i (spacing h_i), with β⁻¹ = 1/β:

* drift and diagonal diffusion (Scharfetter–Gummel): with D_f = (D_ii(L) + D_ii(R))/2,
  b̄ = (b_i(x_L) + 4 b_i(face) + b_i(x_R))/6 (Simpson), b̃ = b̄ − β⁻¹(D_ii(R) − D_ii(L))/h_i, P = β b̃ h_i / D_f and B(z) = z/(eᶻ − 1),
  J += β⁻¹ D_f/h_i · (B(−P) ρ_L − B(P) ρ_R);
* cross terms, for j ≠ i with w = D_ij ρ: if D_ij(L) + D_ij(R) ≥ 0,
  J −= β⁻¹/(2h_j) · ([w(R+e_j) − w(R)] + [w(L) − w(L−e_j)]); otherwise
  J −= β⁻¹/(2h_j) · ([w(R) − w(R−e_j)] + [w(L+e_j) − w(L)]); a bracket whose outer cell lies
  beyond a reflecting wall is dropped;
* the flux leaves L and enters R: dρ_L/dt −= J/h_i, dρ_R/dt += J/h_i.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import torch

from ..dynamics.grid import Grid

__all__ = ["dense_generator"]


def _bernoulli(z: float) -> float:
    if abs(z) < 1e-8:
        return 1.0 - z / 2.0
    if z > 700:
        return 0.0
    return z / math.expm1(z)


def _eval(fn: Callable | np.ndarray, x: np.ndarray) -> np.ndarray:
    if not callable(fn):
        return np.asarray(fn, dtype=float)
    out = fn(torch.as_tensor(x[None, :], dtype=torch.float64))
    if isinstance(out, torch.Tensor):
        out = out.detach().numpy()
    return np.asarray(out, dtype=float)[0]


def dense_generator(
    grid: Grid,
    drift: Callable,
    diffusion: Callable | np.ndarray,
    beta: float = 1.0,
    periodic: bool = False,
) -> np.ndarray:
    """The dense (n, n) generator L with dρ/dt = L ρ (ρ flattened in C order).

    Args:
        grid: A small grid.
        drift: b(x) on a (1, dim) float64 tensor, returning (1, dim).
        diffusion: D(x) on a (1, dim) tensor returning (1, dim, dim), or a (dim, dim) array.
        beta: Inverse temperature.
        periodic: Periodic instead of reflecting boundaries.

    Returns:
        The generator as a dense float64 array.
    """
    shape, h, dim = grid.shape, grid.spacing, grid.dim
    low = grid.low
    n = grid.size
    gen = np.zeros((n, n))
    centre = {k: low + (np.array(k) + 0.5) * h for k in itertools.product(*map(range, shape))}
    dmat = {k: _eval(diffusion, x) for k, x in centre.items()}

    def shift(k, axis, step):
        m = list(k)
        m[axis] += step
        if periodic:
            m[axis] %= shape[axis]
        elif not 0 <= m[axis] < shape[axis]:
            return None
        return tuple(m)

    def flat(k):
        return int(np.ravel_multi_index(k, shape))

    for i in range(dim):
        for left in centre:
            right = shift(left, i, +1)
            if right is None:
                continue
            x_face = centre[left].copy()
            x_face[i] += 0.5 * h[i]
            flux: dict[tuple, float] = {}

            def put(cell, coef, flux=flux):
                flux[cell] = flux.get(cell, 0.0) + coef

            d_l, d_r = dmat[left][i, i], dmat[right][i, i]
            d_face = 0.5 * (d_l + d_r)
            b_mean = (
                _eval(drift, centre[left])[i]
                + 4.0 * _eval(drift, x_face)[i]
                + _eval(drift, centre[right])[i]
            ) / 6.0
            b_eff = b_mean - (d_r - d_l) / (beta * h[i])
            p = beta * b_eff * h[i] / d_face
            put(left, d_face / (beta * h[i]) * _bernoulli(-p))
            put(right, -d_face / (beta * h[i]) * _bernoulli(p))
            for j in range(dim):
                if j == i:
                    continue
                c = 1.0 / (2.0 * beta * h[j])
                if dmat[left][i, j] + dmat[right][i, j] >= 0:
                    pairs = [(shift(right, j, +1), right), (left, shift(left, j, -1))]
                else:
                    pairs = [(right, shift(right, j, -1)), (shift(left, j, +1), left)]
                for upper, lower in pairs:
                    if upper is None or lower is None:
                        continue  # mirrored ghost cell: this difference is zero
                    put(upper, -c * dmat[upper][i, j])
                    put(lower, c * dmat[lower][i, j])
            for cell, coef in flux.items():
                gen[flat(left), flat(cell)] -= coef / h[i]
                gen[flat(right), flat(cell)] += coef / h[i]
    return gen
