"""``sgdscope toy``: solve one of the paper's toy problems and draw Fig. 4 with its diagnostics."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import torch
from rich.console import Console

from ..dynamics import examples
from ..dynamics.fokker_planck import Evolution, FokkerPlanck, SteadyState, gaussian_density
from ..dynamics.grid import Grid
from ..dynamics.sde import simulate_sde
from ..report.fig_toy import plot_drift, plot_toy
from ..report.style import save_figure
from ._options import make_out

_WITH_LAM = ("double_well", "accel")


def _known_potential_error(ex, ss) -> float | None:
    if ex.potential is None:
        return None
    known = np.asarray(ex.potential(ss.grid.points), dtype=float)
    resolved = ss.density > 1e-3 * ss.density.max()
    diff = (ss.potential - known)[resolved]
    return float(np.abs(diff - diff.mean()).max())


def _moments(points: np.ndarray, weights: np.ndarray | None = None):
    w = np.full(len(points), 1 / len(points)) if weights is None else weights / weights.sum()
    mean = w @ points
    cov = np.einsum("n,ni,nj->ij", w, points - mean, points - mean)
    return mean, cov


@dataclass(frozen=True)
class _Solved:
    """Example, grid, Fokker–Planck solve, steady state and relaxation from the start ρ₀."""

    example: examples.Example
    grid: Grid
    fp: FokkerPlanck
    steady: SteadyState
    start: np.ndarray
    cov0: np.ndarray
    evolution: Evolution


def _example_params(name: str, lam: float | None, beta: float | None) -> dict:
    params = {}
    if lam is not None:
        if name not in _WITH_LAM:
            raise click.BadParameter(
                f"--lam applies to {' and '.join(_WITH_LAM)}, not to {name}.", param_hint="--lam"
            )
        params["lam"] = lam
    if beta is not None:
        params["beta"] = beta
    return params


def _solve(name: str, params: dict, n: int, t_max: float) -> _Solved:
    """Build the example, solve its steady state and relax a Gaussian ρ₀ over ``t_max``."""
    try:
        ex = examples.get(name, **params)
        grid = Grid(ex.bounds, (n, n))
        # the loss when the example has one (the drift is then −∇f), else the drift
        drift = ex.drift if ex.loss is None else None
        fp = FokkerPlanck(grid, drift, ex.loss, diffusion=ex.diffusion, beta=ex.beta)
        ss = fp.steady_state()
        lo, hi = grid.low, grid.high
        start = lo + np.array([0.3, 0.7]) * (hi - lo)
        cov0 = np.diag((0.05 * (hi - lo)) ** 2)
        times = np.linspace(0.0, t_max, 41)
        ev = fp.evolve(gaussian_density(grid, start, cov0), times)
    except ValueError as err:
        raise click.ClickException(str(err)) from err
    return _Solved(ex, grid, fp, ss, start, cov0, ev)


def _simulate(s: _Solved, t_max: float, particles: int, seed: int) -> tuple[np.ndarray, float, int]:
    """SDE paths from the same Gaussian ρ₀; a CFL-like step keeps Euler–Maruyama stable."""
    ex, ss = s.example, s.steady
    speed = np.linalg.norm(s.fp.drift_cells, axis=-1)[ss.density > 1e-4 * ss.density.max()].max()
    dt = float(np.clip(0.1 * s.grid.spacing.min() / max(speed, 1e-12), 1e-4, 2e-3))
    n_steps = int(np.ceil(t_max / dt))
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.as_tensor(s.start) + torch.randn(
        particles, 2, generator=gen, dtype=torch.float64
    ) * (torch.as_tensor(np.sqrt(np.diag(s.cov0))))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # (n, 2) tensors: thread start-up costs more than it saves
    try:
        paths = simulate_sde(
            ex.drift,
            ex.diffusion,
            x0,
            dt,
            n_steps,
            beta=ex.beta,
            seed=seed,
            record_every=max(1, n_steps // 400),
        ).numpy()
    except ValueError as err:
        raise click.ClickException(str(err)) from err
    finally:
        torch.set_num_threads(threads)
    return paths, dt, n_steps


def _summary(
    name: str, params: dict, s: _Solved, paths: np.ndarray, dt: float, n_steps: int
) -> dict:
    """summary.json: the steady state, Φ against the known Φ, the free energy, the SDE moments."""
    ex, ss, ev = s.example, s.steady, s.evolution
    fp_mean, fp_cov = _moments(s.grid.points.reshape(-1, 2), ev.density[-1].ravel())
    sde_mean, sde_cov = _moments(paths[-1])
    return {
        "example": name,
        "params": params,
        "description": ex.description,
        "satisfies_assumption4": ex.satisfies_assumption4,
        "steady_state": ss.summary(),
        "known_potential_max_error": _known_potential_error(ex, ss),
        "known_critical_points_potential": [
            {"location": c.location.tolist(), "kind": c.kind} for c in ex.critical_points
        ],
        "free_energy": {
            "times": ev.times.tolist(),
            "values": ev.free_energy.tolist(),
            "monotone": bool(np.all(np.diff(ev.free_energy) <= 1e-12 * ev.free_energy[0])),
            "max_mass_error": float(np.abs(ev.mass - 1).max()),
        },
        "sde": {
            "dt": dt,
            "n_steps": n_steps,
            "particles": paths.shape[1],
            "mean_at_t": sde_mean.tolist(),
            "fokker_planck_mean_at_t": fp_mean.tolist(),
            "cov_at_t": sde_cov.tolist(),
            "fokker_planck_cov_at_t": fp_cov.tolist(),
        },
    }


def _print(console: Console, summary: dict, s: _Solved, t_max: float, out: Path) -> None:
    """The steady state's diagnostics, its critical points and the files written."""
    ss, ev = s.steady, s.evolution
    params = summary["params"]
    console.print(f"[bold]{summary['example']}[/bold] {params or ''}: {s.example.description}")
    console.print(
        f"  detailed balance: {ss.detailed_balance} (|J|/|bρ| = {ss.current_ratio:.3g}); "
        f"Assumption 4: {ss.assumption4} (∇·j rel {ss.div_force:.2g}, j·∇Φ rel "
        f"{ss.force_dot_grad_potential:.2g})"
    )
    for p, d in zip(ss.critical_points_potential, ss.critical_distances, strict=True):
        console.print(
            f"  Φ {p.kind.value:<7} at {np.round(p.location, 3).tolist()}; nearest f "
            f"{p.kind.value}: {'none' if not np.isfinite(d) else f'{d:.3g} away'}"
        )
    for p in ss.critical_points_f:
        console.print(f"  f {p.kind.value:<7} at {np.round(p.location, 3).tolist()}")
    err = summary["known_potential_max_error"]
    if err is not None:
        console.print(f"  max |Φ − Φ_known| (resolved region): {err:.2e}")
    console.print(
        f"  free energy {ev.free_energy[0]:.3g} → {ev.free_energy[-1]:.3g} over t = {t_max:g} "
        f"(monotone: {summary['free_energy']['monotone']})"
    )
    console.print(f"  wrote {out / 'drift.png'}, {out / 'toy.png'}, {out / 'summary.json'}")


@click.command()
@click.argument("name", type=click.Choice(list(examples.EXAMPLES)))
@click.option("--lam", type=float, help="λ of double_well (Fig. 4: 0, 0.5, 1.5) or of accel.")
@click.option("--beta", type=click.FloatRange(min=0, min_open=True), help="Inverse temperature β.")
@click.option(
    "--grid",
    "n",
    type=click.IntRange(min=16),
    default=128,
    show_default=True,
    help="Cells per axis.",
)
@click.option(
    "--time",
    "t_max",
    type=click.FloatRange(min=0, min_open=True),
    default=5.0,
    show_default=True,
    help="Length of the relaxation and of the simulated paths.",
)
@click.option(
    "--particles",
    type=click.IntRange(min=1),
    default=2000,
    show_default=True,
    help="Number of simulated SDE particles.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the SDE noise.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Output folder (created).",
)
def toy(name, lam, beta, n, t_max, particles, seed, out):
    """Solve the Fokker–Planck equation of toy NAME and draw the paper's Fig. 4.

    Writes drift.png (Fig. 4: drift streamlines over Φ), toy.png (Φ vs f and their critical
    points, the current J, SDE paths over ρ_ss, the free energy over time) and summary.json.
    """
    make_out(out)
    params = _example_params(name, lam, beta)
    solved = _solve(name, params, n, t_max)
    paths, dt, n_steps = _simulate(solved, t_max, particles, seed)
    ex, grid, ss, drift = solved.example, solved.grid, solved.steady, solved.fp.drift_cells
    loss_values = None if ex.loss is None else np.asarray(ex.loss(grid.points), dtype=float)
    known = None if ex.potential is None else np.asarray(ex.potential(grid.points), dtype=float)
    save_figure(plot_drift(ex, ss, drift), out / "drift.png")
    summary_figure = plot_toy(
        ex, ss, drift, solved.evolution, paths, loss_values=loss_values, known_potential=known
    )
    save_figure(summary_figure, out / "toy.png")
    summary = _summary(name, params, solved, paths, dt, n_steps)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    _print(Console(), summary, solved, t_max, out)
