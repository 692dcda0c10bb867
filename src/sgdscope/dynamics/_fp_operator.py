r"""The finite-volume Fokker–Planck generator: pure kernels used by :class:`FokkerPlanck`.

The Itô Fokker–Planck equation (Chaudhari & Soatto 2018, eq. FP, with a general drift b)

.. math:: \partial_t\rho = -\nabla\cdot J,\qquad
          J_i = b_i\rho - \beta^{-1}\sum_j \partial_j (D_{ij}\rho),

is integrated over each cell of a :class:`~sgdscope.dynamics.grid.Grid`; the change of the
cell average is minus the sum of the fluxes through its faces divided by the cell width. Each
face flux is a linear combination of nearby cell averages, so ``dρ/dt = L ρ`` with a sparse
generator L whose columns sum to zero exactly (every face flux leaves one cell and enters its
neighbour), which is why mass is conserved to round-off. Zero-flux (reflecting) boundaries drop
the boundary faces; periodic boundaries join the last cell to the first.

**Diagonal part (Scharfetter–Gummel / exponential fitting).** On a face normal to axis i between
cells L and R, write :math:`b_i\rho - \beta^{-1}\partial_i(D_{ii}\rho) = \tilde b\rho -
\beta^{-1}D_{ii}\partial_i\rho` with :math:`\tilde b = b_i - \beta^{-1}\partial_i D_{ii}`.
Freezing :math:`\tilde b` and :math:`D_{ii}` on the segment joining the two cell centres and
solving the 1-D two-point problem exactly gives

.. math:: J^{\rm diag} = \frac{D_{ii}}{\beta h_i}\big[B(-P)\rho_L - B(P)\rho_R\big],\qquad
          P = \frac{\beta\tilde b h_i}{D_{ii}},\qquad B(z) = \frac{z}{e^z - 1}.

It is second order for smooth fields, reduces to central differences as P → 0 and to upwinding
as |P| → ∞, and its off-diagonal coefficients are non-negative for every P (Scharfetter & Gummel
1969; Markowich 1986). :math:`b_i` enters through its mean over the segment L–R, by Simpson's rule
:math:`(b_L + 4b_{\rm face} + b_R)/6` (the frozen value that makes the exponential fit exact for
1-D equilibria, up to O(h⁵) per segment: for gradient drifts with constant D the discrete
steady state is then accurate well beyond second order; the general order stays 2).
:math:`D_{ii}` and its derivative come from the two neighbouring cell centres (arithmetic mean
and difference).

**Cross terms (sign-dependent diagonal stencil).** For j ≠ i, with :math:`w = D_{ij}\rho` on cell
centres, :math:`\partial_j w` on the face is the average of two one-cell differences placed
symmetrically about the face along the diagonal that matches the sign of :math:`D_{ij}`:

.. math:: D_{ij}\ge0:\ \partial_j w \approx \tfrac{1}{2h_j}[w_{R+e_j} - w_R + w_L - w_{L-e_j}],
          \qquad D_{ij}<0:\ \partial_j w \approx \tfrac{1}{2h_j}[w_R - w_{R-e_j} + w_{L+e_j} - w_L].

Summed over the faces this is the classical monotone 7-point stencil for the mixed derivative
(second order); its diagonal-neighbour weights are non-negative and it subtracts
:math:`|D_{ij}|/(\beta h_i h_j)` from the edge-neighbour weights. The generator therefore stays an
M-matrix (non-negative off-diagonal entries, hence :math:`\rho \ge 0` for the steady state and for
implicit time steps) when, without drift, :math:`|D_{ij}| \le \min(D_{ii} h_j/h_i,\ D_{jj}
h_i/h_j)`. That holds for every positive-definite D if the cell aspect ratio is
:math:`h_j/h_i = \sqrt{D_{jj}/D_{ii}}`; drift tightens it by the factor B(P) < 1 on the downwind
side, so a finer grid helps. :func:`check_m_matrix` reports where it fails. Missing neighbours
at a reflecting wall are mirrored (their difference is dropped), which keeps the M-matrix
property and the flux form.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .grid import Grid

__all__ = ["Assembly", "assemble_generator", "bernoulli", "check_m_matrix"]


def bernoulli(z: np.ndarray) -> np.ndarray:
    r"""The Bernoulli function :math:`B(z) = z/(e^z - 1)`, with B(0) = 1, stable for all z.

    Args:
        z: Array of real numbers (±inf allowed: B(+inf) = 0, B(−inf) = +inf).

    Returns:
        B(z), same shape.
    """
    z = np.asarray(z, dtype=float)
    out = np.empty_like(z)
    small = np.abs(z) < 1e-4
    zs = z[small]
    out[small] = 1.0 - zs / 2.0 + zs * zs / 12.0
    pos = (z > 0) & ~small
    zp = z[pos]
    with np.errstate(over="ignore", invalid="ignore"):
        out[pos] = np.where(np.isinf(zp), 0.0, zp * np.exp(-zp) / -np.expm1(-zp))
        neg = (z < 0) & ~small
        zn = z[neg]
        out[neg] = np.where(np.isinf(zn), np.inf, zn / np.expm1(zn))
    return out


@dataclass(frozen=True, eq=False)
class Assembly:
    """The generator and the per-face quantities the checks need.

    Attributes:
        generator: (n, n) CSR matrix L with dρ/dt = L ρ (ρ flattened in C order).
        peclet: One array per axis: the face Péclet numbers P (inf where D_ii = 0 and b̃ ≠ 0).
        face_points: One array per axis of face-centre coordinates, shape (n_faces, dim).
    """

    generator: sp.csr_matrix
    peclet: list[np.ndarray]
    face_points: list[np.ndarray]


def _neighbour(
    index: np.ndarray, axis: int, step: int, shape: tuple[int, ...], periodic: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Flat index of the neighbour ``step`` cells along ``axis`` and whether it exists."""
    multi = np.unravel_index(index, shape)
    k = multi[axis] + step
    n = shape[axis]
    valid = np.ones(index.shape, dtype=bool) if periodic else (k >= 0) & (k < n)
    k = np.mod(k, n)
    moved = list(multi)
    moved[axis] = k
    return np.ravel_multi_index(tuple(moved), shape), valid


def face_cells(grid: Grid, axis: int, periodic: bool) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices (left, right) of the two cells of every face normal to ``axis``.

    Faces are ordered as :meth:`Grid.face_points` orders them (C order over the face array).

    Returns:
        Two int arrays of equal length: the left and the right cell of each face.
    """
    idx = np.arange(grid.size).reshape(grid.shape)
    n = grid.shape[axis]
    if periodic:
        left = idx
        right = np.roll(idx, -1, axis=axis)
    else:
        left = np.take(idx, np.arange(n - 1), axis=axis)
        right = np.take(idx, np.arange(1, n), axis=axis)
    return left.ravel(), right.ravel()


def assemble_generator(
    grid: Grid,
    drift_faces: list[np.ndarray],
    drift_cells: np.ndarray,
    diffusion_cells: np.ndarray,
    beta: float,
    periodic: bool,
) -> Assembly:
    """Assemble the sparse generator L of the scheme described in the module docstring.

    Args:
        grid: The grid.
        drift_faces: For each axis i, the drift b at the centres of the faces normal to i,
            shape (n_faces_i, dim), in :meth:`Grid.face_points` order.
        drift_cells: The drift at the cell centres, shape (n_cells, dim).
        diffusion_cells: D at the cell centres, shape (n_cells, dim, dim), symmetric PSD.
        beta: Inverse temperature β.
        periodic: Periodic (True) or reflecting, zero-flux (False) boundaries on every axis.

    Returns:
        An :class:`Assembly` with L in CSR format.
    """
    shape, h, dim, n = grid.shape, grid.spacing, grid.dim, grid.size
    inv_beta = 1.0 / beta
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    peclets = []

    def add(face_left, face_right, cells, coef, axis):
        # A face flux coef * rho[cells] leaves the left cell and enters the right cell.
        c = coef / h[axis]
        rows.extend((face_left, face_right))
        cols.extend((cells, cells))
        vals.extend((-c, c))

    for i in range(dim):
        left, right = face_cells(grid, i, periodic)
        dii_l = diffusion_cells[left, i, i]
        dii_r = diffusion_cells[right, i, i]
        d_face = 0.5 * (dii_l + dii_r)
        # Simpson's rule for the mean of b_i over the segment joining the two cell centres.
        b_edge = (drift_cells[left, i] + 4.0 * drift_faces[i][:, i] + drift_cells[right, i]) / 6.0
        b_eff = b_edge - inv_beta * (dii_r - dii_l) / h[i]
        with np.errstate(divide="ignore", invalid="ignore"):
            p = np.where(d_face > 0, beta * b_eff * h[i] / d_face, np.inf * np.sign(b_eff))
        p = np.nan_to_num(p, nan=0.0, posinf=np.inf, neginf=-np.inf)
        peclets.append(p)
        scale = inv_beta * d_face / h[i]
        degenerate = d_face <= 0
        with np.errstate(invalid="ignore", over="ignore"):
            c_left = np.where(degenerate, np.maximum(b_eff, 0.0), scale * bernoulli(-p))
            c_right = np.where(degenerate, np.minimum(b_eff, 0.0), -scale * bernoulli(p))
        add(left, right, left, c_left, i)
        add(left, right, right, c_right, i)

        for j in range(dim):
            if j == i:
                continue
            dij = diffusion_cells[:, i, j]
            c = inv_beta / (2.0 * h[j])
            positive = 0.5 * (dij[left] + dij[right]) >= 0
            r_up, r_up_ok = _neighbour(right, j, +1, shape, periodic)
            l_dn, l_dn_ok = _neighbour(left, j, -1, shape, periodic)
            r_dn, r_dn_ok = _neighbour(right, j, -1, shape, periodic)
            l_up, l_up_ok = _neighbour(left, j, +1, shape, periodic)
            # D_ij >= 0: -c [w(R+e_j) - w(R)] - c [w(L) - w(L-e_j)]
            m = positive & r_up_ok
            add(left[m], right[m], r_up[m], -c * dij[r_up[m]], i)
            add(left[m], right[m], right[m], c * dij[right[m]], i)
            m = positive & l_dn_ok
            add(left[m], right[m], left[m], -c * dij[left[m]], i)
            add(left[m], right[m], l_dn[m], c * dij[l_dn[m]], i)
            # D_ij < 0: -c [w(R) - w(R-e_j)] - c [w(L+e_j) - w(L)]
            m = ~positive & r_dn_ok
            add(left[m], right[m], right[m], -c * dij[right[m]], i)
            add(left[m], right[m], r_dn[m], c * dij[r_dn[m]], i)
            m = ~positive & l_up_ok
            add(left[m], right[m], l_up[m], -c * dij[l_up[m]], i)
            add(left[m], right[m], left[m], c * dij[left[m]], i)

    gen = sp.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    ).tocsr()
    gen.sum_duplicates()
    faces = [grid.face_points(i, periodic).reshape(-1, dim) for i in range(dim)]
    return Assembly(generator=gen, peclet=peclets, face_points=faces)


def check_m_matrix(generator: sp.csr_matrix, rtol: float = 1e-12) -> tuple[int, int, float] | None:
    """Return ``(row, col, value)`` of the most negative off-diagonal entry, or None if all ≥ 0.

    Entries above ``−rtol · max|L_kk|`` count as zero (round-off in the cancellations).
    """
    coo = generator.tocoo()
    off = coo.row != coo.col
    if not off.any():
        return None
    scale = np.abs(generator.diagonal()).max()
    vals = np.where(off, coo.data, 0.0)
    k = int(np.argmin(vals))
    if vals[k] >= -rtol * scale:
        return None
    return int(coo.row[k]), int(coo.col[k]), float(vals[k])
