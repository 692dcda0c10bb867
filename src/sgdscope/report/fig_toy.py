"""Figures for ``sgdscope toy``: the paper's Fig. 4 and the Fokker–Planck diagnostics.

Renders result objects (an :class:`~sgdscope.dynamics.examples.Example`, a
:class:`~sgdscope.SteadyState`, an :class:`~sgdscope.dynamics.fokker_planck.Evolution` and
simulated trajectories); computes nothing but the plotted slices. Each function draws into the
axes it is given, or into a new figure, and returns the matplotlib ``Figure``; write it with
:func:`sgdscope.report.style.save_figure`.

Streamline arrows stay inside their axes: the view of a streamline panel is padded so that an
arrow drawn at the edge of the field is not cut by the frame.

Example:
    >>> import sgdscope as sg
    >>> ex = sg.examples.double_well(lam=1.5)
    >>> grid = sg.Grid(ex.bounds, (48, 48))
    >>> fp = sg.FokkerPlanck(grid, drift=ex.drift, diffusion=ex.diffusion, beta=ex.beta)
    >>> fig = plot_drift(ex, fp.steady_state(), fp.drift_cells, title="λ = 1.5")
    >>> fig.axes[0].get_title()
    'λ = 1.5'
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..dynamics.examples import Example
from ..dynamics.fokker_planck import CriticalKind, Evolution, SteadyState
from .style import figure_of, heading, legend, new_figure

#: Room left between a streamline panel's field and its frame, in points: more than half an
#: arrow head plus half the widest line, so no arrow drawn at the field's edge is cut.
ARROW_ROOM_PT = 8.0

__all__ = ["plot_drift", "plot_toy"]


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


def _drift_panel(ax: Axes, ss: SteadyState, drift: np.ndarray) -> None:
    """Streamlines of the drift (width ∝ speed) over filled contours of Φ: the paper's Fig. 4.

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
    _frame_streamlines(ax, x, y)
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")


def _frame_streamlines(ax: Axes, x: np.ndarray, y: np.ndarray, pad: float = 0.0) -> None:
    """Set the view to the field's extent plus ``pad`` and room for arrows at its edge."""
    box = ax.get_window_extent()
    dpi = figure_of(ax).dpi
    for set_lim, c, size_px in ((ax.set_xlim, x, box.width), (ax.set_ylim, y, box.height)):
        span = float(c[-1] - c[0])
        room = span * ARROW_ROOM_PT * dpi / 72 / max(size_px, 1.0) * 1.25  # layout may shrink
        margin = max(pad, room, 0.02 * span)
        set_lim(c[0] - margin, c[-1] + margin)


def plot_drift(
    example: Example,
    ss: SteadyState,
    drift: np.ndarray,
    *,
    ax: Axes | None = None,
    title: str | None = None,
    banner: str = "",
) -> Figure:
    """Draw the paper's Fig. 4 panel for ``example``: drift streamlines over Φ.

    Args:
        example: The example (its description names the panel).
        ss: Its steady state (Φ and its minima, red dots as in the paper).
        drift: The drift at the cell centres, shape (*grid.shape, 2).
        ax: Axes to draw into; None draws a new figure.
        title: Title of the panel; None takes the example's name (its description up to the
            first colon).
        banner: A heading above the figure (e.g. a reduced-run label); empty for none.

    Returns:
        The figure drawn into.
    """
    if ax is None:
        fig, ax = new_figure(1, 1, width=5.0, height=4.5)
    else:
        fig = figure_of(ax)
    _drift_panel(ax, ss, drift)
    ax.set_title(example.description.split(":")[0] if title is None else title)
    heading(fig, banner=banner)
    return fig


def _markers(ax: Axes, ss: SteadyState, has_loss: bool) -> None:
    for p in ss.critical_points_potential:
        ax.plot(*p.location, "o", mfc="none", mec="tab:red", ms=9, mew=1.5)
        where = (float(p.location[0]), float(p.location[1]))
        ax.annotate(f"Φ {p.kind.value}", where, textcoords="offset points", xytext=(5, 5))
    for p in ss.critical_points_f:  # zeros of the drift: critical points of f when b = −∇f
        ax.plot(*p.location, "x", color="k", ms=8, mew=1.5)
        name = f"f {p.kind.value}" if has_loss else f"b = 0 ({p.kind.value})"
        where = (float(p.location[0]), float(p.location[1]))
        ax.annotate(name, where, textcoords="offset points", xytext=(5, -12), fontsize=8)


def plot_toy(
    example: Example,
    ss: SteadyState,
    drift: np.ndarray,
    evolution: Evolution,
    trajectories: np.ndarray,
    *,
    loss_values: np.ndarray | None = None,
    known_potential: np.ndarray | None = None,
    axes: np.ndarray | None = None,
    banner: str = "",
) -> Figure:
    """Draw the six-panel summary figure of ``sgdscope toy``.

    Panels: (a) drift streamlines over Φ (Fig. 4); (b) level sets of Φ (solid) and, when the
    drift is −∇f, of f (dashed) with the critical points of Φ and the zeros of the drift
    (Theorem 22); (c) the stationary current J over ρ_ss; (d) simulated trajectories over
    ρ_ss; (e) the free energy F(ρ(t)) = β⁻¹KL(ρ(t)‖ρ_ss), which must decrease (Theorem 5);
    (f) Φ, the known Φ and f along the x₁-line through Φ's lowest point. Legends and titles
    name only what is drawn: without ``loss_values`` there is no f to show.

    Args:
        example: The example.
        ss: Its steady state.
        drift: Drift at the cell centres, (*grid.shape, 2).
        evolution: A relaxation from some ρ₀ (free energy over time).
        trajectories: Simulated paths, (n_records, n_particles, 2).
        loss_values: f at the cell centres, when f exists.
        known_potential: The closed-form Φ at the cell centres, when known.
        axes: Six axes to draw into, in the order (a)–(f); None draws a new 3 × 2 figure.
        banner: A line below the figure's title (e.g. a reduced-run label); empty for none.

    Returns:
        The figure drawn into.
    """
    if axes is None:
        fig, axes = new_figure(3, 2, width=4.6, height=4.0)
    axes = np.asarray(axes).ravel()
    fig = figure_of(axes[0])
    x, y = _xy(ss)
    resolved = ss.density > 1e-4 * ss.density.max()
    has_loss = loss_values is not None

    _drift_panel(axes[0], ss, drift)
    axes[0].set_title("(a) drift and Φ (Fig. 4)")

    ax = axes[1]
    phi = ss.potential - ss.potential[resolved].min()
    levels = np.unique(np.quantile(phi[resolved], np.linspace(0.02, 0.9, 8)))
    ax.contour(x, y, phi.T, levels=levels, colors="tab:blue", linewidths=1.0).set_label("Φ")
    if loss_values is not None:
        f = loss_values - loss_values[resolved].min()
        flev = np.unique(np.quantile(f[resolved], np.linspace(0.02, 0.9, 8)))
        ax.contour(x, y, f.T, levels=flev, colors="k", linestyles="--", linewidths=0.8).set_label(
            "f"
        )
    _markers(ax, ss, has_loss)
    legend(ax, fontsize=8, loc="upper right")
    ax.set_title("(b) level sets and critical points")

    ax = axes[2]
    ax.pcolormesh(x, y, ss.density.T, cmap="Greys", shading="auto")
    cur = np.where(resolved[..., None], ss.current, 0.0)  # J is ~0 (and noisy) in the tails
    mag = np.linalg.norm(cur, axis=-1).T
    if mag.max() > 0:
        ax.streamplot(
            x, y, cur[..., 0].T, cur[..., 1].T, color=mag, cmap="magma", density=0.8, linewidth=1.0
        )
    half_cell = 0.5 * float(np.min(ss.grid.spacing))
    _frame_streamlines(ax, x, y, pad=half_cell)
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
    legend(ax, frameon=False)
    ax.set_title("(f) Φ and f along a line" if has_loss else "(f) Φ along a line")
    heading(fig, example.description, banner)
    return fig
