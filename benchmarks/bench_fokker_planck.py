"""Steady state of sgdscope.FokkerPlanck against fplanck on isotropic 2-D problems.

Both solvers get the same problem, with β = 1 and D = I: a non-polynomial gradient drift
(``wavy_bowl``: −∇U, U = |x|²/2 + 0.8 cos 2x₁ cos 2x₂), and the drift of Example 19 (double well)
with λ = 0 (gradient, cubic) and λ = 1.5 (rotating, non-gradient); the exact stationary density
is e^{−U} resp. e^{−Φ} for every λ. fplanck receives the drift as its ``force`` (it cannot take a
general D, only one scalar per axis); for λ = 0 it is also run with the ``potential`` Φ, which its
scheme reproduces exactly at the nodes (a reference line, not something a drift-only user has).
Both grids put the unknowns at the same points (fplanck's nodes = our cell centres).

Error: max |ρ − ρ_exact| / max ρ_exact with ρ_exact = e^{−Φ} normalised on the same grid.
Time: wall clock of construction + steady state, same process, alternating the solvers.

Install the anchor first: ``pip install torch==2.13.0 fplanck==0.2.2``.
Run: ``python benchmarks/bench_fokker_planck.py [--sizes 64 128 256 512] [--repeat 2]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

import sgdscope as sg

np.product = np.prod  # noqa: NPY003, NPY201 -- fplanck 0.2.2 calls np.product (gone in numpy 2)
import fplanck  # noqa: E402
from scipy import constants  # noqa: E402


def wavy_bowl() -> sg.examples.Example:
    """A non-polynomial gradient drift: U = |x|²/2 + 0.8 cos(2x₁) cos(2x₂), D = I, ρ ∝ e^{−U}."""

    def potential(x):
        xp = torch if isinstance(x, torch.Tensor) else np
        return 0.5 * (x**2).sum(-1) + 0.8 * xp.cos(2 * x[..., 0]) * xp.cos(2 * x[..., 1])

    def drift(x):
        xp = torch if isinstance(x, torch.Tensor) else np
        c0, s0 = xp.cos(2 * x[..., 0]), xp.sin(2 * x[..., 0])
        c1, s1 = xp.cos(2 * x[..., 1]), xp.sin(2 * x[..., 1])
        g = [1.6 * s0 * c1 - x[..., 0], 1.6 * c0 * s1 - x[..., 1]]  # −∇U
        return torch.stack(g, -1) if isinstance(x, torch.Tensor) else np.stack(g, -1)

    return sg.examples.Example(
        name="wavy_bowl",
        dim=2,
        bounds=((-4.5, 4.5), (-4.5, 4.5)),
        beta=1.0,
        drift=drift,
        diffusion=np.eye(2),
        potential=potential,
        loss=potential,
    )


def exact_density(ex, grid):
    rho = np.exp(-ex.beta * np.asarray(ex.potential(grid.points)))
    return rho / (rho.sum() * grid.cell_volume)


def run_sgdscope(ex, n):
    t0 = time.perf_counter()
    grid = sg.Grid(ex.bounds, (n, n))
    fp = sg.FokkerPlanck(grid, drift=ex.drift, diffusion=ex.diffusion, beta=ex.beta)
    t1 = time.perf_counter()
    ss = fp.steady_state()
    t2 = time.perf_counter()
    exact = exact_density(ex, grid)
    err = float(np.abs(ss.density - exact).max() / exact.max())
    return {"build_s": t1 - t0, "solve_s": t2 - t1, "total_s": t2 - t0, "max_rel_error": err}


def run_fplanck(ex, n, use_potential):
    extent = np.array([hi - lo for lo, hi in ex.bounds])
    t0 = time.perf_counter()
    kwargs = {}
    if use_potential:
        kwargs["potential"] = lambda x, y: np.asarray(ex.potential(np.stack([x, y], -1)))
    else:
        kwargs["force"] = lambda x, y: np.moveaxis(
            np.asarray(ex.drift(np.stack([x, y], -1))), -1, 0
        )
    sim = fplanck.fokker_planck(
        temperature=1 / constants.k,  # k T = 1/β = 1
        drag=1.0,  # D = kT / drag = 1
        extent=extent,
        resolution=extent / n,
        boundary=fplanck.boundary.reflecting,
        **kwargs,
    )
    t1 = time.perf_counter()
    steady = sim.steady_state()
    t2 = time.perf_counter()
    assert tuple(sim.Ngrid) == (n, n), sim.Ngrid
    grid = sg.Grid(ex.bounds, (n, n))
    # Same points: fplanck's nodes are centred, spacing extent/n, i.e. our cell centres.
    np.testing.assert_allclose(sim.axes[0], grid.axes[0] - np.mean(grid.axes[0]), atol=1e-9)
    rho = steady / grid.cell_volume
    exact = exact_density(ex, grid)
    err = float(np.abs(rho - exact).max() / exact.max())
    return {"build_s": t1 - t0, "solve_s": t2 - t1, "total_s": t2 - t0, "max_rel_error": err}


def machine() -> dict:
    def sh(cmd):
        try:
            return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
        except OSError:
            return ""

    return {
        "lscpu": sh("lscpu | head -n 15"),
        "nproc": sh("nproc"),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "fplanck": "0.2.2",
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "note": "timings under shared load (other jobs on the same 2 cores); compare ratios",
    }


def to_markdown(rows: list[dict]) -> str:
    """One row per (problem, n): errors, times and the sgdscope/fplanck(force) ratios."""
    lines = [
        "| problem | grid | sgdscope error | fplanck(force) error | error ratio | sgdscope s "
        "| fplanck(force) s | speed-up | fplanck(potential) error |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["problem"], r["n"]) for r in rows}, key=lambda k: (k[0], k[1]))
    for problem, n in keys:
        by = {r["solver"]: r for r in rows if r["problem"] == problem and r["n"] == n}
        a, b = by["sgdscope"], by["fplanck(force)"]
        pot = by.get("fplanck(potential)")
        pot_err = "—" if pot is None else f"{pot['max_rel_error']:.1e}"
        lines.append(
            f"| {problem} | {n}² | {a['max_rel_error']:.2e} | {b['max_rel_error']:.2e} "
            f"| {b['max_rel_error'] / a['max_rel_error']:.3g}× | {a['total_s']:.2f} "
            f"| {b['total_s']:.2f} | {b['total_s'] / a['total_s']:.1f}× "
            f"| {pot_err} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "fokker_planck.json"
    )
    args = parser.parse_args()
    rows = []
    cases = [
        ("wavy_bowl (gradient)", wavy_bowl(), True),
        ("double_well λ=0", sg.examples.double_well(0.0), True),
        ("double_well λ=1.5", sg.examples.double_well(1.5), False),
    ]
    for label, ex, with_potential in cases:
        for n in args.sizes:
            best = {}
            solvers = [("sgdscope", lambda ex=ex, n=n: run_sgdscope(ex, n))]
            solvers.append(("fplanck(force)", lambda ex=ex, n=n: run_fplanck(ex, n, False)))
            if with_potential:
                solvers.append(("fplanck(potential)", lambda ex=ex, n=n: run_fplanck(ex, n, True)))
            for _ in range(args.repeat):
                for name, fn in solvers:  # alternate, so that load drifts hit both alike
                    r = fn()
                    if name not in best or r["total_s"] < best[name]["total_s"]:
                        best[name] = r
            for name, r in best.items():
                rows.append({"problem": label, "n": n, "solver": name, **r})
                print(
                    f"{label:<21} {n:>4}² {name:<19} err {r['max_rel_error']:.3e} "
                    f"build {r['build_s']:.2f}s solve {r['solve_s']:.2f}s total {r['total_s']:.2f}s",
                    flush=True,
                )
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2))
    print(to_markdown(rows))


if __name__ == "__main__":
    main()
