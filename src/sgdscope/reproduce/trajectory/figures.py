"""Figures of ``reproduce trajectory``: Fig. 3a–c, the MSD, the flux and the equilibrium test.

Each figure is drawn once from the analysis results, with the reduced-run ``label`` as a heading.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from ...report.fig_trajectory import (
    plot_autocorrelation,
    plot_equilibrium,
    plot_flux,
    plot_msd,
    plot_power_spectrum,
)
from ...report.results import FigureRef
from ...report.style import heading, legend, new_figure, save_figure
from .measure import PAPER_GRAD_RANGE, Analysis

__all__ = ["draw", "gradient_norms"]


def gradient_norms(an: Analysis, burnin: int, banner: str = "") -> Figure:
    """Fig. 3c: ‖∇f‖/√d per epoch (train and eval mode) and its EWMA, log-x, paper's range.

    ``banner`` (the reduced-run label) is drawn above the figure as on the other figures.

    Returns:
        The figure.
    """
    fig, ax = new_figure(width=5.5, height=3.8)
    for g, colour, what in ((an.grad_train, "C0", "train mode"), (an.grad_eval, "C1", "eval mode")):
        assert g is not None  # drawn only when the series exist
        ax.plot(an.epochs, g.value, color=colour, lw=0.4, alpha=0.3)
        ax.plot(an.epochs, g.smoothed, color=colour, lw=1.6, label=f"{what}, EWMA com {g.com:g}")
    ax.axhspan(*PAPER_GRAD_RANGE, color="0.85", zorder=0, label="paper's range (Fig. 3c)")
    if burnin:
        ax.axvline(burnin, color="0.4", ls="--", lw=0.8, label="end of burn-in")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("‖∇f‖/√d")
    legend(ax, fontsize=7)
    heading(fig, banner=banner)
    return fig


def draw(an: Analysis, folder: Path, burnin: int, label: str) -> list[FigureRef]:
    """Draw every figure the analyses allow into ``folder``; ``label`` heads each one."""
    eq = an.equilibrium
    banner = f"(reduced: {label})" if label else ""
    # (result needed, file, draw(result) -> Figure, caption): drawn when the analysis produced it
    plan: list[tuple[Any, str, Callable[[Any], Figure], str]] = [
        (an.spectrum, "fig3a_spectrum.png",
         lambda spectrum: plot_power_spectrum(spectrum, banner=banner),
         "Fig. 3a: power spectrum of the per-epoch increments, mean over weights with the 68 % "
         "bootstrap band (seaborn tsplot's, as the paper drew)."),
        (an.autocorrelation, "fig3b_autocorrelation.png",
         lambda acf: plot_autocorrelation(acf, banner=banner),
         "Fig. 3b: autocorrelation of the weights against lag (epochs), with the paper's "
         "white-noise bands ±1.96/√n and ±2.576/√n."),
        (an.grad_train, "fig3c_gradient_norm.png",
         lambda _grad: gradient_norms(an, burnin, banner),
         "Fig. 3c: ‖∇f‖/√d per epoch, train mode (the authors' full_dw) and eval mode, EWMA "
         "com = 100, with the paper's 1e-3–3e-3 range."),
        (an.msd, "msd.png", lambda msd: plot_msd(msd, banner=banner),
         "MSD of the weights against lag with the fitted power law (Kunin et al.: anomalous "
         "diffusion, c ≠ 1)."),
        (eq, "flux.png", lambda test: plot_flux(test.flux, banner=banner),
         f"Probability flux in {eq.plane if eq else ''} (Battle et al. 2016)."),
        (eq, "equilibrium.png", lambda test: plot_equilibrium(test, banner=banner),
         "Equilibrium test: irreversibility of the lagged covariance against reversible (Q = 0) "
         "OU surrogates."),
    ]  # fmt: skip
    return [
        FigureRef(save_figure(draw_one(need), folder / name).name, caption)
        for need, name, draw_one, caption in plan
        if need is not None
    ]
