"""FokkerPlanck at large grids: sparse LU vs algebraic multigrid vs ILU-GMRES, and fplanck.

Problems with a closed form (Lemma 20: for b = −(D + Q)U x with Q antisymmetric, the stationary
density is the Gaussian N(0, β⁻¹U⁻¹) whatever Q):

* ``ou3d``: a rotating 3-D OU with a full D (off-diagonal entries) and Q ≠ 0, box ±5.5 σ;
* ``ou2d``: a rotating 2-D OU with a full D, box ±5.5 σ;
* ``ou2d_iso``: a rotating 2-D OU with D = I (what fplanck can express: one scalar diffusion),
  for the side-by-side run with fplanck (given the drift as its ``force``).

Error: L1 = Σ |ρ − ρ_exact| ΔV with ρ_exact the Gaussian at the cell centres (nodes), normalised
on the same grid, and against the exact cell averages (the quantity a finite-volume density is). Time: wall
clock of construction + steady state (including sgdscope's diagnostics: Φ, J, j, critical points).
Each solver runs in a fresh subprocess (so that one's memory does not weigh on the next), one
after the other.

Run: ``python benchmarks/bench_fp_large.py [--quick]`` (fplanck: ``pip install fplanck==0.2.2``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def problem(name: str):
    if name == "ou3d":
        U = np.array([[1.0, 0.3, 0.1], [0.3, 1.5, 0.2], [0.1, 0.2, 2.0]])
        D = np.array([[1.0, 0.2, 0.0], [0.2, 0.8, 0.1], [0.0, 0.1, 0.6]])
        Q = np.array([[0, 0.8, 0.3], [-0.8, 0, 0.5], [-0.3, -0.5, 0]])
    elif name == "ou2d":
        U = np.array([[1.0, 0.3], [0.3, 1.5]])
        D = np.array([[1.0, 0.2], [0.2, 0.8]])
        Q = np.array([[0, 0.8], [-0.8, 0]])
    else:
        U = np.array([[1.0, 0.3], [0.3, 1.5]])
        D = np.eye(2)
        Q = np.array([[0, 0.8], [-0.8, 0]])
    return U, D, Q


def cell_averages(grid, U: np.ndarray) -> np.ndarray:
    """Cell averages of the Gaussian e^{−xᵀUx/2} (3-point Gauss–Legendre per axis), normalised.

    sgdscope's densities are cell averages (a finite-volume scheme); fplanck's are values at the
    nodes. The point values differ from the averages by (h²/24) Δρ, the order of both schemes'
    errors, so each is reported against both.
    """
    dim = grid.dim
    nodes = np.array([-np.sqrt(0.6), 0.0, np.sqrt(0.6)]) / 2
    weights = np.array([5.0, 8.0, 5.0]) / 18
    x = grid.points.reshape(-1, dim)
    out = np.zeros(len(x))
    for idx in np.ndindex(*(3,) * dim):
        p = x + nodes[list(idx)] * grid.spacing
        out += np.prod(weights[list(idx)]) * np.exp(-0.5 * np.einsum("ni,ij,nj->n", p, U, p))
    return out / (out.sum() * grid.cell_volume)


def one(name: str, n: int, solver: str) -> dict:
    """Run one case in this process and return its row."""
    import torch

    import sgdscope as sg

    U, D, Q = problem(name)
    dim = U.shape[0]
    F = (D + Q) @ U
    half = 5.5 * np.sqrt(np.diag(np.linalg.inv(U)))
    grid = sg.Grid([(-h, h) for h in half], (n,) * dim)
    x = grid.points.reshape(-1, dim)
    exact = np.exp(-0.5 * np.einsum("ni,ij,nj->n", x, U, x))
    exact /= exact.sum() * grid.cell_volume
    exact_avg = cell_averages(grid, U)
    t0 = time.perf_counter()
    if solver == "fplanck":
        np.product = np.prod  # noqa: NPY003, NPY201 -- fplanck 0.2.2 calls np.product
        import fplanck
        from scipy import constants

        extent = 2 * half
        sim = fplanck.fokker_planck(
            temperature=1 / constants.k,
            drag=1.0,
            extent=extent,
            resolution=extent / n,
            boundary=fplanck.boundary.reflecting,
            force=lambda *xs: -np.einsum("ij,j...->i...", F, np.stack(xs)),
        )
        t1 = time.perf_counter()
        rho = sim.steady_state().ravel() / grid.cell_volume
        t2 = time.perf_counter()
        row = {"solver_residual": None, "residual": None}
    else:
        Ft = torch.as_tensor(F)
        fp = sg.FokkerPlanck(grid, drift=lambda p: -(p @ Ft.T), diffusion=D)
        t1 = time.perf_counter()
        ss = fp.steady_state(solver=solver)
        t2 = time.perf_counter()
        rho = ss.density.ravel()
        row = {
            "solver_used": ss.solver,
            "solver_residual": ss.solver_residual,
            "residual": ss.residual,
        }
    import resource

    row.update(
        problem=name,
        shape=[n] * dim,
        cells=grid.size,
        solver=solver,
        build_s=t1 - t0,
        solve_s=t2 - t1,
        total_s=t2 - t0,
        l1_error=float(np.abs(rho - exact).sum() * grid.cell_volume),
        l1_error_vs_cell_averages=float(np.abs(rho - exact_avg).sum() * grid.cell_volume),
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )
    return row


def machine() -> dict:
    def sh(cmd):
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()

    return {
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": sh("lscpu | grep 'Model name'"),
        "nproc": sh("nproc"),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "scipy": sh(f"{sys.executable} -c 'import scipy; print(scipy.__version__)'"),
        "pyamg": sh(f"{sys.executable} -c 'import pyamg; print(pyamg.__version__)'"),
        "load_average_at_start": os.getloadavg(),
    }


CASES = [
    # (problem, n, solver, timeout seconds)
    ("ou3d", 24, "lu", 600),
    ("ou3d", 24, "amg", 600),
    ("ou3d", 32, "lu", 600),
    ("ou3d", 32, "amg", 600),
    ("ou3d", 32, "ilu_gmres", 600),
    ("ou3d", 48, "lu", 900),
    ("ou3d", 48, "amg", 900),
    ("ou3d", 64, "amg", 900),
    ("ou3d", 96, "amg", 900),
    ("ou2d", 256, "lu", 600),
    ("ou2d", 256, "amg", 600),
    ("ou2d", 512, "lu", 600),
    ("ou2d", 512, "amg", 600),
    ("ou2d", 1024, "lu", 900),
    ("ou2d", 1024, "amg", 900),
    ("ou2d_iso", 256, "fplanck", 600),
    ("ou2d_iso", 256, "auto", 600),
    ("ou2d_iso", 512, "fplanck", 900),
    ("ou2d_iso", 512, "auto", 600),
    ("ou2d_iso", 1024, "auto", 600),
]
QUICK = [c for c in CASES if c[1] <= 32 or (c[0] != "ou3d" and c[1] <= 256)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--one", nargs=3, metavar=("PROBLEM", "N", "SOLVER"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(RESULTS / "fp_large.json"))
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one[0], int(a.one[1]), a.one[2])))
        return
    out = {"machine": machine(), "rows": []}
    for name, n, solver, limit in QUICK if a.quick else CASES:
        cmd = [sys.executable, __file__, "--one", name, str(n), solver]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=limit)
            row = (
                json.loads(res.stdout.strip().splitlines()[-1])
                if res.returncode == 0
                else {"problem": name, "shape": n, "solver": solver, "error": res.stderr[-400:]}
            )
        except subprocess.TimeoutExpired:
            row = {"problem": name, "shape": n, "solver": solver, "error": f"> {limit} s"}
        row["load_average_after"] = os.getloadavg()[0]
        print(json.dumps(row), flush=True)
        out["rows"].append(row)
        Path(a.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
