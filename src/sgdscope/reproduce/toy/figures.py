"""Figures of ``reproduce toy``: the paper's Fig. 4, the SDE histograms and Theorem 22's shift.

Each function draws from the measured records and takes the reduced-run ``label`` as an argument.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.stats

from ...report.fig_toy import plot_drift
from ...report.results import FigureRef
from ...report.style import new_figure, save_figure
from .measure import ShiftMeasurement, WellRun
from .settings import Settings

__all__ = ["draw", "label"]


def label(settings: Settings, reduced: bool) -> str:
    """The reduced-run label the figures' titles end with (empty for the paper's protocol)."""
    if not reduced:
        return ""
    return (
        f" (reduced: grid {settings.grid}², {settings.particles:,} particles, dt {settings.dt:g})"
    )


def fig4(wells: list[WellRun], path: Path, label: str) -> Path:
    """Fig. 4: one panel per λ, the drift's streamlines over Φ with the minima of Φ in red."""
    fig, axes = new_figure(len(wells), 1, width=4.4, height=4.2)
    axes = np.atleast_1d(axes)
    for ax, w, letter in zip(axes, wells, "abcdefgh", strict=False):
        plot_drift(
            w.example, w.steady, w.drift, ax=ax, title=f"({letter}) λ = {w.measurement.lam:g}"
        )
    fig.suptitle(f"Fig. 4: Example 19, drift streamlines over Φ; red: minima of Φ{label}")
    return save_figure(fig, path)


def histograms(wells: list[WellRun], path: Path, label: str) -> Path:
    """The particles' marginals at t_max against those of e^{−Φ}, one column per λ."""
    fig, axes = new_figure(len(wells), 2, width=3.8, height=3.0)
    axes = np.asarray(axes).reshape(2, len(wells))
    t = np.linspace(-2.6, 2.6, 400)
    p1 = np.exp(-0.25 * (t * t - 1) ** 2)
    p1 /= np.trapezoid(p1, t)
    p2 = scipy.stats.norm.pdf(t)
    for k, w in enumerate(wells):
        for row, (dens, name) in enumerate(((p1, "x_1"), (p2, "x_2"))):
            ax = axes[row, k]
            ax.hist(w.particles[:, row], bins=60, range=(-2.6, 2.6), density=True, color="0.7")
            ax.plot(t, dens, "tab:red", lw=1.2, label="exp(−Φ), closed form")
            ax.set_xlabel(f"${name}$")
            if row == 0:
                m = w.measurement
                ax.set_title(f"λ = {m.lam:g}: χ² p = {m.chi2_p:.2g}")
    axes[0, 0].legend(frameon=False, fontsize=8)
    fig.suptitle(f"SDE particles at t_max against the marginals of exp(−Φ){label}")
    return save_figure(fig, path)


def shift(m: ShiftMeasurement, path: Path, label: str) -> Path:
    """Theorem 22: the shift of the minimum against β⁻¹ on log–log axes, with a ∝ β⁻¹ guide."""
    fig, ax = new_figure(1, 1, width=4.8, height=3.8)
    b = np.asarray(m.inv_betas)
    s = np.asarray(m.shifts)
    ax.loglog(b, s, "o-", label="|argmin Φ − argmin f| (measured)")
    k = np.argmin(b)
    ax.loglog(b, s[k] / b[k] * b, "k--", lw=0.8, label="∝ β⁻¹ (through the smallest β⁻¹)")
    ax.set_xlabel("β⁻¹")
    ax.set_ylabel("shift of the minimum")
    ax.legend(frameon=False, fontsize=8)
    title = f"Theorem 22: Example 19, λ = {m.lam:g}, drift fixed"
    ax.set_title(title + ("\n" + label.strip() if label else ""), fontsize=9)
    return save_figure(fig, path)


def draw(
    folder: Path, wells: list[WellRun], shift_m: ShiftMeasurement, label: str
) -> list[FigureRef]:
    """Draw the three figures into ``folder`` and return them with their captions."""
    return [
        FigureRef(
            fig4(wells, folder / "fig4.png", label).name,
            "Fig. 4: drift streamlines (width ∝ speed) over filled contours of the solved Φ, "
            "for each λ; red dots: minima of Φ, at (±1, 0) for every λ.",
        ),
        FigureRef(
            histograms(wells, folder / "sde_histograms.png", label).name,
            "Euler–Maruyama particles at t_max (histograms) against the marginals of e^{−Φ}; "
            "the same law for every λ although the drift rotates.",
        ),
        FigureRef(
            shift(shift_m, folder / "theorem22_shift.png", label).name,
            "Theorem 22: distance between the minimum of Φ and the nearest minimum of f "
            "(zero of the drift) against β⁻¹, for the fixed Example 19 drift.",
        ),
    ]
