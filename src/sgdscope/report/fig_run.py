"""Figures of a monitored training run: D along training, the training curves, windowed verdicts.

Each function renders part of a :class:`~sgdscope.monitor.RunDiagnosis` or of the
:class:`~sgdscope.MonitorRecord` inside it (it never recomputes an analysis) into a new figure,
or into the axes ``ax`` it is given, and returns the matplotlib ``Figure``. The trajectory
panels (spectrum, autocorrelation, MSD, gradient norm, the equilibrium test) are drawn by
:mod:`sgdscope.report.fig_trajectory`.

- :func:`plot_noise_spectra`: D's top-k eigenvalues against their index, one line per
  measurement, coloured by step (Chaudhari & Soatto 2018, Figs 1–2 show one such spectrum; Remark
  13 asks how it evolves along training);
- :func:`plot_overlap`: the overlap ‖V_aᵀV_b‖²_F / k of D's top-k eigenvectors between
  measurements (Remark 13);
- :func:`plot_noise_scale`: B_simple = tr D / ‖g‖² (McCandlish et al. 2018), tr D, and the
  temperature η/(2b(1 − μ)) of eq. 3 that the optimizer ran at, against steps;
- :func:`plot_training`: the mini-batch loss and ‖∇f‖/√d (Fig. 3c) against steps;
- :func:`plot_windows`: the equilibrium test's p-value on each sliding window, coloured by its
  conclusion.

Example:
    >>> import numpy as np
    >>> from sgdscope.report.fig_run import plot_overlap
    >>> fig = plot_overlap(np.eye(3), np.array([10, 20, 30]), k=2, dim=50)
    >>> fig.axes[0].get_title()
    'top-2 eigenvectors (random: k/d = 0.04)'
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..monitor import MonitorRecord, WindowVerdict
from ..trajectory import Trajectory
from ..trajectory.analysis import EquilibriumStatus, GradientNorm, ewma
from .fig_trajectory import plot_gradient_norm
from .style import figure_of, legend, new_figure

__all__ = [
    "STATUS_COLOUR",
    "plot_noise_scale",
    "plot_noise_spectra",
    "plot_overlap",
    "plot_training",
    "plot_windows",
]

#: Colour of each conclusion of the equilibrium test (and of a window that was not tested).
STATUS_COLOUR = {
    EquilibriumStatus.OUT_OF_EQUILIBRIUM.value: "#cf222e",
    EquilibriumStatus.NO_EVIDENCE.value: "#1a7f37",
    EquilibriumStatus.NOT_STATIONARY.value: "#8c959f",
    "not tested": "#d0d7de",
}


def _axes(ax: Axes | None, *, width: float = 4.5, height: float = 3.5) -> tuple[Figure, Axes]:
    if ax is not None:
        return figure_of(ax), ax
    return new_figure(width=width, height=height)


def plot_noise_spectra(record: MonitorRecord, *, ax: Axes | None = None) -> Figure:
    """D's top-k eigenvalues against their index, one line per measurement, coloured by step.

    Args:
        record: The monitor's record (at least one measurement).
        ax: Axes to draw into; None draws a new figure.

    Returns:
        The figure drawn into.
    """
    fig, ax = _axes(ax, width=5.0)
    steps = record.steps
    norm = mpl.colors.Normalize(
        vmin=float(steps.min()), vmax=float(max(steps.max(), steps.min() + 1))
    )
    cmap = mpl.colormaps["viridis"]
    index = np.arange(1, record.eigenvalues.shape[1] + 1)
    for step, values in zip(steps, record.eigenvalues, strict=True):
        shown = np.where(values > 0, values, np.nan)  # a log axis: zeros and unconverged are gaps
        ax.plot(index, shown, marker="o", ms=2.5, lw=1, color=cmap(norm(step)))
    ax.set_yscale("log")
    ax.set_xlabel("index i of the eigenvalue")
    ax.set_ylabel("λ_i(D)")
    ax.set_title(f"top-{index.size} eigenvalues of D, {len(steps)} measurements", fontsize=9)
    fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="step")
    return fig


def plot_overlap(
    overlap: np.ndarray, steps: np.ndarray, *, k: int, dim: int, ax: Axes | None = None
) -> Figure:
    """The overlap matrix of D's top-k eigenvectors between measurements, as a heat map.

    Args:
        overlap: (m, m) overlaps in [0, 1] (:meth:`MonitorRecord.overlaps`).
        steps: (m,) the step of each measurement.
        k: Number of eigenvectors compared.
        dim: d, for the level of two random k-dimensional subspaces (k/d).
        ax: Axes to draw into; None draws a new figure.

    Returns:
        The figure drawn into.
    """
    fig, ax = _axes(ax, width=5.0, height=4.3)
    image = ax.imshow(overlap, vmin=0.0, vmax=1.0, cmap="magma", origin="lower")
    fig.colorbar(image, ax=ax, label="‖V_aᵀ V_b‖²_F / k")
    m = len(steps)
    ticks = np.unique(np.linspace(0, m - 1, min(m, 6)).round().astype(int))
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_ticks(ticks, labels=[str(int(steps[t])) for t in ticks])
    ax.set_xlabel("step of measurement b")
    ax.set_ylabel("step of measurement a")
    ax.grid(False)
    ax.set_title(f"top-{k} eigenvectors (random: k/d = {k / dim:.2g})", fontsize=9)
    return fig


def plot_noise_scale(record: MonitorRecord) -> Figure:
    """B_simple, tr D and the temperature η/(2b(1 − μ)) against steps (three axes, one x).

    Args:
        record: The monitor's record (its measurements, and the per-step temperature).

    Returns:
        The figure.
    """
    fig, axes = new_figure(3, width=3.6, height=3.0)
    for ax, values, label in (
        (axes[0], record.noise_scale, "B_simple = tr D / ‖g‖²"),
        (axes[1], record.trace, "tr D"),
    ):
        ax.plot(record.steps, values, marker="o", ms=3, lw=1, color="C0")
        if np.all(values[np.isfinite(values)] > 0):
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(label, fontsize=9)
    traj = record.trajectory
    temperature = traj.scalars.get("temperature")
    ax = axes[2]
    if temperature is not None and np.isfinite(temperature).any():
        ax.plot(traj.steps, temperature, lw=1, color="C1")
        ax.set_ylim(bottom=0)
    else:
        ax.text(0.5, 0.5, "not defined\n(not SGD, or no batch size)", ha="center",
                va="center", transform=ax.transAxes, fontsize=8, color="0.4")  # fmt: skip
    ax.set_xlabel("step")
    ax.set_title("temperature η/(2b(1 − μ))", fontsize=9)
    return fig


def plot_training(traj: Trajectory, gradient_norm: GradientNorm | None) -> Figure:
    """The mini-batch loss (with its EWMA) and ‖∇f‖/√d against steps, side by side.

    Args:
        traj: The trajectory (its ``loss`` scalar, when recorded).
        gradient_norm: The gradient norms (:func:`sgdscope.analysis.gradient_norm`), or None.

    Returns:
        The figure (an axes without data says so).
    """
    fig, (left, right) = new_figure(2, width=4.5, height=3.2)
    loss = traj.scalars.get("loss")
    if loss is not None and np.isfinite(loss).any():
        keep = np.isfinite(loss)
        left.plot(traj.steps[keep], loss[keep], color="0.7", lw=0.6, label="loss")
        left.plot(traj.steps[keep], ewma(loss[keep], com=100.0), color="C0", lw=1.5,
                  label="EWMA, com = 100")  # fmt: skip
        if np.all(loss[keep] > 0):
            left.set_yscale("log")
        legend(left, fontsize=8)
    else:
        _empty(left, "no loss recorded")
    left.set_xlabel("step")
    left.set_ylabel("mini-batch loss")
    if gradient_norm is not None:
        plot_gradient_norm(gradient_norm, ax=right)
    else:
        _empty(right, "no gradient norm recorded")
        right.set_xlabel("step")
    return fig


def plot_windows(
    windows: Sequence[WindowVerdict], alpha: float, *, ax: Axes | None = None
) -> Figure:
    """The equilibrium test's p-value on each window (a bar over its steps), by conclusion.

    Args:
        windows: The windows' verdicts (:attr:`RunDiagnosis.windows`).
        alpha: The tests' level (drawn as a line).
        ax: Axes to draw into; None draws a new figure.

    Returns:
        The figure drawn into.
    """
    fig, ax = _axes(ax, width=7.0, height=3.2)
    tested = [w for w in windows if w.test is not None]
    floor = min([w.test.p_value for w in tested if w.test is not None] + [alpha]) / 2
    labelled: set[str] = set()
    for w in windows:
        p = w.test.p_value if w.test is not None else floor
        status = w.status
        ax.hlines(p, w.first_step, w.last_step, color=STATUS_COLOUR[status], lw=5,
                  label="_nolegend_" if status in labelled else status)  # fmt: skip
        labelled.add(status)
    ax.axhline(alpha, color="k", ls="--", lw=0.8, label=f"α = {alpha:g}")
    ax.set_yscale("log")
    ax.set_ylim(floor / 2, 1.5)
    ax.set_xlabel("steps of the window")
    ax.set_ylabel("p-value (irreversibility)")
    legend(ax, fontsize=8, loc="lower left")
    return fig


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=8,
            color="0.4")  # fmt: skip
