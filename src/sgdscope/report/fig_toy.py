"""Figures for ``sgdscope toy``: the paper's Fig. 4 and the Fokker–Planck diagnostics.

Renders result objects (an :class:`~sgdscope.dynamics.examples.Example`, a
:class:`~sgdscope.SteadyState`, an :class:`~sgdscope.dynamics.fokker_planck.Evolution` and
simulated trajectories); computes nothing but the plotted slices.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..dynamics.examples import Example
from ..dynamics.fokker_planck import CriticalKind, Evolution, SteadyState
from ._style import new_figure, save_figure

__all__ = ["draw_drift", "plot_drift", "plot_toy"]


def _xy(ss: SteadyState):
    ax0, ax1 = ss.grid.axes
    return ax0, ax1


def _window(ss: SteadyState, level: float) -> tuple[slice, slice]:
    """Index slices of the bounding box of the cells where ρ ≥ level · max ρ (plus a margin)."""
    keep = ss.density >= level * ss.density.max()
    out = []
    for axis in range(2):
        hit = np.flatnonzero(keep.any(axis=1 - axis))
        pad = max(2, (hit[-1] - hit[0]) // 8)
        out.append(slice(max(hit[0] - pad, 0), min(hit[-1] + pad + 1, ss.grid.shape[axis])))
    return out[0], out[1]


def draw_drift(ax, example: Example, ss: SteadyState, drift: np.ndarray) -> None:
    """Draw the drift's streamlines (width ∝ speed) over filled contours of Φ into ``ax`` (Fig. 4).

    Drawn, like the paper's figure, on the region that holds the mass (ρ ≥ 0.1 max ρ, plus a
    margin), so that the line widths show the speed where the process lives.
    """
    sx, sy = _window(ss, 0.1)
    x, y = ss.grid.axes[0][sx], ss.grid.axes[1][sy]
    phi = (ss.potential - ss.potential.min())[sx, sy]
    rho = ss.density[sx, sy]
    levels = np.quantile(phi[rho > 1e-4 * rho.max()], np.linspace(0, 0.9, 7))
    ax.contourf(x, y, phi.T, levels=np.unique(levels), cmap="Blues_r", alpha=0.35)
    b = drift[sx, sy]
    speed = np.linalg.norm(b, axis=-1).T
    width = 0.3 + 4.0 * speed / max(speed.max(), 1e-300)
    ax.streamplot(
        x, y, b[..., 0].T, b[..., 1].T, density=0.8, color="k", linewidth=width, arrowsize=0.7
    )
    for p in ss.critical_points_potential:
        if p.kind is CriticalKind.MIN:
            ax.plot(*p.location, "o", color="tab:red", ms=7, zorder=5)
    ax.set_xlim(x[0], x[-1])
    ax.set_ylim(y[0], y[-1])
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")


def plot_drift(example: Example, ss: SteadyState, drift: np.ndarray, path: str | Path) -> Path:
    """Save the paper's Fig. 4 panel for ``example`` (drift streamlines over Φ) to ``path``.

    Args:
        example: The example (for the title).
        ss: Its steady state (Φ and its minima, red dots as in the paper).
        drift: The drift at the cell centres, shape (*grid.shape, 2).
        path: Output file.

    Returns:
        The path written.
    """
    fig, ax = new_figure(1, 1, width=5.0, height=4.5)
    draw_drift(ax, example, ss, drift)
    ax.set_title(example.description.split(":")[0])
    return save_figure(fig, path)


def _markers(ax, ss: SteadyState) -> None:
    for p in ss.critical_points_potential:
        ax.plot(*p.location, "o", mfc="none", mec="tab:red", ms=9, mew=1.5)
        ax.annotate(f"Φ {p.kind.value}", p.location, textcoords="offset points", xytext=(5, 5))
    for p in ss.critical_points_f:
        ax.plot(*p.location, "x", color="k", ms=8, mew=1.5)
        ax.annotate(
            f"f {p.kind.value}", p.location, textcoords="offset points", xytext=(5, -12), fontsize=8
        )


def plot_toy(
    example: Example,
    ss: SteadyState,
    drift: np.ndarray,
    evolution: Evolution,
    trajectories: np.ndarray,
    path: str | Path,
    loss_values: np.ndarray | None = None,
    known_potential: np.ndarray | None = None,
) -> Path:
    """Save the six-panel summary figure of ``sgdscope toy``.

    Panels: (a) drift streamlines over Φ (Fig. 4); (b) level sets of Φ (solid) and f (dashed)
    with their critical points (Theorem 22); (c) the stationary current J over ρ_ss; (d)
    simulated trajectories over ρ_ss; (e) the free energy F(ρ(t)) = β⁻¹KL(ρ(t)‖ρ_ss), which must
    decrease (Theorem 5); (f) Φ, the known Φ and f along the x₁-line through Φ's lowest point.

    Args:
        example: The example.
        ss: Its steady state.
        drift: Drift at the cell centres, (*grid.shape, 2).
        evolution: A relaxation from some ρ₀ (free energy over time).
        trajectories: Simulated paths, (n_records, n_particles, 2).
        path: Output file.
        loss_values: f at the cell centres, when f exists.
        known_potential: The closed-form Φ at the cell centres, when known.

    Returns:
        The path written.
    """
    fig, axes = new_figure(3, 2, width=4.6, height=4.0)
    axes = axes.ravel()
    x, y = _xy(ss)
    resolved = ss.density > 1e-4 * ss.density.max()

    draw_drift(axes[0], example, ss, drift)
    axes[0].set_title("(a) drift and Φ (Fig. 4)")

    ax = axes[1]
    phi = ss.potential - ss.potential[resolved].min()
    levels = np.unique(np.quantile(phi[resolved], np.linspace(0.02, 0.9, 8)))
    ax.contour(x, y, phi.T, levels=levels, colors="tab:blue", linewidths=1.0)
    if loss_values is not None:
        f = loss_values - loss_values[resolved].min()
        flev = np.unique(np.quantile(f[resolved], np.linspace(0.02, 0.9, 8)))
        ax.contour(x, y, f.T, levels=flev, colors="k", linestyles="--", linewidths=0.8)
    _markers(ax, ss)
    ax.set_title("(b) Φ (solid) vs f (dashed), critical points")

    ax = axes[2]
    ax.pcolormesh(x, y, ss.density.T, cmap="Greys", shading="auto")
    cur = np.where(resolved[..., None], ss.current, 0.0)  # J is ~0 (and noisy) in the tails
    mag = np.linalg.norm(cur, axis=-1).T
    if mag.max() > 0:
        ax.streamplot(
            x, y, cur[..., 0].T, cur[..., 1].T, color=mag, cmap="magma", density=0.8, linewidth=1.0
        )
    ax.set_title(f"(c) current J (|J|/|bρ| = {ss.current_ratio:.2g})")

    ax = axes[3]
    ax.pcolormesh(x, y, ss.density.T, cmap="Blues", shading="auto")
    for k in range(min(4, trajectories.shape[1])):
        ax.plot(trajectories[:, k, 0], trajectories[:, k, 1], lw=0.6, alpha=0.9)
    last = trajectories[-1]
    ax.plot(last[:, 0], last[:, 1], ".", color="tab:red", ms=1.0, alpha=0.4)
    ax.set_xlim(x[0], x[-1])
    ax.set_ylim(y[0], y[-1])
    ax.set_title("(d) SDE paths and final particles over ρ_ss")

    ax = axes[4]
    fe = np.maximum(evolution.free_energy, 1e-16)
    ax.semilogy(evolution.times, fe, "-o", ms=2)
    ax.set_xlabel("t")
    ax.set_ylabel("F(ρ(t)) = β⁻¹ KL(ρ(t) ‖ ρ_ss)")
    drift_mass = np.abs(evolution.mass - 1).max()
    ax.set_title(f"(e) free energy (Thm 5); max|mass − 1| = {drift_mass:.1e}")

    ax = axes[5]
    k0, k1 = np.unravel_index(np.argmin(np.where(resolved, ss.potential, np.inf)), ss.grid.shape)
    line = resolved[:, k1]
    ax.plot(x[line], phi[line, k1], label="Φ (solved)")
    if known_potential is not None:
        kp = known_potential[:, k1] - known_potential[k0, k1] + phi[k0, k1]
        ax.plot(x[line], kp[line], "--", label="Φ (known)")
    if loss_values is not None:
        fl = loss_values[:, k1] - loss_values[line, k1].min()
        ax.plot(x[line], fl[line], ":", label="f")
    ax.set_xlabel(f"$x_1$ (at $x_2$ = {y[k1]:.3g})")
    ax.legend(frameon=False)
    ax.set_title("(f) Φ and f along a line")
    fig.suptitle(example.description, fontsize=9)
    return save_figure(fig, path)
