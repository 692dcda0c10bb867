r"""Sparse solvers for the Fokker–Planck generator: sparse LU, algebraic multigrid, ILU-GMRES.

The steady state solves the pinned system :math:`A\rho = e_k` (the generator with one redundant
row replaced by ρ_k = c, see :meth:`FokkerPlanck.steady_state`) and backward Euler solves
:math:`(I - \Delta t L)\rho_{n+1} = \rho_n`. Both matrices are (up to the pinned row) M-matrices
of a convection–diffusion operator. Sparse LU is exact and fastest on small grids, but its
fill-in grows like :math:`N^{3/2}` cells in 2-D and :math:`N^{2}` in 3-D. Classical
(Ruge–Stüben) algebraic multigrid (Ruge & Stüben 1987; ``pyamg``) used as a stationary V-cycle
iteration solves the same systems in O(N) work per cycle with a cycle count that does not grow
with the grid; measured in ``docs/benchmarks/fokker_planck.md``, where GMRES preconditioned by
an incomplete LU (scipy's ``spilu``) is the slower fallback used when ``pyamg`` is absent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

try:  # optional: pip install "sgdscope[amg]"
    import pyamg
except ImportError:  # pragma: no cover - exercised by monkeypatching HAVE_PYAMG
    pyamg = None

HAVE_PYAMG = pyamg is not None

# Minimum-degree ordering on the structure of A + Aᵀ: the generator is structurally symmetric, and
# on 2-D grids this halves the LU fill-in and time of SuperLU's default (COLAMD).
ORDERING = "MMD_AT_PLUS_A"

# Largest grid (cells) on which "auto" picks the sparse LU, per dimension: the measured crossover
# with AMG on 2 cores (docs/benchmarks/fokker_planck.md: in 2-D the LU is faster up to 512² and
# even with AMG at 1024², using more memory; in 3-D AMG is faster from 24³ on, 2× at 32³).
LU_MAX_CELLS = {1: 10**7, 2: 1 << 20, 3: 20**3}

# Rough LU fill-in, in nonzeros of the factors per cell, for the memory estimate (minimum-degree
# ordering: O(N log N) in 2-D, O(N^{4/3}) in 3-D).
_BYTES_PER_NNZ = 16


class Solver(str, Enum):
    """Linear solver of :meth:`FokkerPlanck.steady_state` and :meth:`FokkerPlanck.evolve`."""

    AUTO = "auto"  # LU up to LU_MAX_CELLS[dim] cells, then AMG (ILU-GMRES without pyamg)
    LU = "lu"  # SuperLU, minimum-degree ordering: exact, fill-in limits the grid
    AMG = "amg"  # Ruge–Stüben AMG V-cycles (pyamg), GMRES-accelerated if they stall
    ILU_GMRES = "ilu_gmres"  # GMRES with an incomplete-LU preconditioner (scipy only)


def resolve(solver: Solver, cells: int, dim: int) -> Solver:
    """The solver that ``solver`` means for a grid of ``cells`` cells in ``dim`` dimensions."""
    if solver is not Solver.AUTO:
        if solver is Solver.AMG and not HAVE_PYAMG:
            raise ImportError(
                "solver='amg' needs the optional dependency pyamg: pip install 'sgdscope[amg]' "
                "(or pyamg), or pass solver='ilu_gmres' (scipy only) or solver='lu'."
            )
        return solver
    if cells <= LU_MAX_CELLS[dim]:
        return Solver.LU
    return Solver.AMG if HAVE_PYAMG else Solver.ILU_GMRES


def lu_bytes(nnz: int, cells: int, dim: int) -> float:
    """Estimated bytes of the LU factors: fill-in grows like N log N (2-D) or N^{4/3} (3-D)."""
    if dim == 1:
        fill = 3.0 * cells
    elif dim == 2:
        fill = 12.0 * cells * max(math.log2(cells), 1.0)
    else:
        fill = 6.0 * cells ** (4.0 / 3.0) * 9.0
    return (nnz + fill) * _BYTES_PER_NNZ


@dataclass
class Prepared:
    """A factorisation or multigrid hierarchy of one matrix, ready for repeated solves."""

    solver: Solver
    matrix: sp.csr_matrix
    factor: Any
    rtol: float

    def solve(self, rhs: np.ndarray, x0: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        """Solve A x = rhs; returns x and the relative residual ‖b − Ax‖₂ / ‖b‖₂."""
        a = self.matrix
        if self.solver is Solver.LU:
            x = self.factor.solve(rhs)
        elif self.solver is Solver.AMG:
            res: list[float] = []
            x = self.factor.solve(rhs, x0=x0, tol=self.rtol, accel=None, maxiter=100, residuals=res)
            if _relres(a, x, rhs) > self.rtol:  # V-cycles stalled: accelerate them
                x = self.factor.solve(rhs, x0=x, tol=self.rtol, accel="gmres", maxiter=200)
        else:
            x, _ = spla.gmres(a, rhs, x0=x0, M=self.factor, rtol=self.rtol, restart=60, maxiter=20)
        return x, _relres(a, x, rhs)


def _relres(a: sp.csr_matrix, x: np.ndarray, b: np.ndarray) -> float:
    nb = float(np.linalg.norm(b))
    return float(np.linalg.norm(b - a @ x)) / (nb if nb > 0 else 1.0)


def prepare(a: sp.spmatrix, solver: Solver, rtol: float) -> Prepared:
    """Factor (LU, ILU) or build the multigrid hierarchy (AMG) of ``a`` for ``solver``."""
    if solver is Solver.LU:
        return Prepared(solver, a.tocsr(), spla.splu(a.tocsc(), permc_spec=ORDERING), rtol)
    a = a.tocsr()
    if solver is Solver.AMG:
        return Prepared(solver, a, pyamg.ruge_stuben_solver(a), rtol)
    ilu = spla.spilu(a.tocsc(), drop_tol=1e-5, fill_factor=10, permc_spec=ORDERING)
    return Prepared(solver, a, spla.LinearOperator(a.shape, ilu.solve), rtol)
