"""Figures of trajectory diagnostics: the paper's Fig. 3 panels, MSD, the flux field, the verdict.

Each function renders a result of :mod:`sgdscope.trajectory.analysis` (it never recomputes it)
into the axes ``ax`` it is given, or into a new figure, and returns the matplotlib ``Figure``;
write it with :func:`sgdscope.report.style.save_figure`. ``banner`` puts a heading above the
figure (``sgdscope reproduce`` passes its reduced-run label).

Example:
    >>> import numpy as np
    >>> import sgdscope as sg
    >>> from sgdscope.report.fig_trajectory import plot_msd
    >>> walk = np.cumsum(np.random.default_rng(0).standard_normal((2000, 3)), axis=0)
    >>> fig = plot_msd(sg.analysis.msd(walk))
    >>> [t.get_text() for t in fig.axes[0].get_legend().get_texts()][0]
    'MSD'
"""

from __future__ import annotations

import textwrap

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..trajectory.analysis import (
    MSD,
    Autocorrelation,
    EquilibriumTest,
    GradientNorm,
    PowerSpectrum,
    ProbabilityFlux,
)
from .style import figure_of, heading, legend, new_figure

__all__ = [
    "plot_autocorrelation",
    "plot_equilibrium",
    "plot_flux",
    "plot_gradient_norm",
    "plot_msd",
    "plot_power_spectrum",
]

#: Longest flux arrow, as a fraction of its cell (arrows are centred on their cell).
ARROW_FILL = 0.9


def _axes(ax: Axes | None, *, width: float = 4.5, height: float = 3.5) -> tuple[Figure, Axes]:
    """The figure of ``ax``, or a new figure with one axes."""
    if ax is not None:
        return figure_of(ax), ax
    return new_figure(width=width, height=height)


def plot_power_spectrum(ps: PowerSpectrum, *, ax: Axes | None = None, banner: str = "") -> Figure:
    """Mean spectrum over coordinates with its bootstrap band (Fig. 3a), log-frequency axis.

    Args:
        ps: The power spectrum (:func:`sgdscope.analysis.power_spectrum`).
        ax: Axes to draw into; None draws a new figure.
        banner: A heading above the figure (e.g. a reduced-run label); empty for none.

    Returns:
        The figure drawn into.
    """
    fig, ax = _axes(ax)
    f = ps.frequency[1:]
    ax.plot(f, ps.mean[1:], lw=1, color="C0")
    ax.fill_between(f, ps.lower[1:], ps.upper[1:], color="C0", alpha=0.3, lw=0)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("frequency (cycles per snapshot)")
    what = "increments" if ps.increments else "positions"
    ax.set_ylabel(f"power of {what}")
    ax.set_title(
        f"mean over {ps.n_coordinates} coordinates, {100 * ps.confidence:.0f}% bootstrap band",
        fontsize=9,
    )
    heading(fig, banner=banner)
    return fig


def plot_autocorrelation(
    ac: Autocorrelation, *, ax: Axes | None = None, banner: str = ""
) -> Figure:
    """Mean autocorrelation with the ±1.96/√n and ±2.576/√n bands (Fig. 3b).

    Args:
        ac: The autocorrelation (:func:`sgdscope.analysis.autocorrelation`).
        ax: Axes to draw into; None draws a new figure.
        banner: A heading above the figure (e.g. a reduced-run label); empty for none.

    Returns:
        The figure drawn into.
    """
    fig, ax = _axes(ax)
    lo, hi = np.percentile(ac.per_coordinate, [16, 84], axis=0)
    ax.plot(ac.lags, ac.mean, color="C0", lw=1.2, label="mean over coordinates")
    ax.fill_between(ac.lags, lo, hi, color="C0", alpha=0.25, lw=0, label="16–84 % of coordinates")
    for band, style in ((ac.band95, "--"), (ac.band99, ":")):
        ax.axhline(band, color="C3", ls=style, lw=0.8)
        ax.axhline(-band, color="C3", ls=style, lw=0.8)
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlim(left=0)
    ax.set_xlabel("lag (snapshots)")
    ax.set_ylabel("autocorrelation")
    ax.set_title("bands: ±1.96/√n (dashed), ±2.576/√n (dotted)", fontsize=9)
    legend(ax, fontsize=8)
    heading(fig, banner=banner)
    return fig


def plot_gradient_norm(gn: GradientNorm, *, ax: Axes | None = None, banner: str = "") -> Figure:
    """‖∇f‖/√d and its EWMA (Fig. 3c).

    Args:
        gn: The gradient norms (:func:`sgdscope.analysis.gradient_norm`).
        ax: Axes to draw into; None draws a new figure.
        banner: A heading above the figure (e.g. a reduced-run label); empty for none.

    Returns:
        The figure drawn into.
    """
    fig, ax = _axes(ax)
    ax.plot(gn.steps, gn.value, color="0.7", lw=0.6, label="‖∇f‖/√d")
    ax.plot(gn.steps, gn.smoothed, color="C0", lw=1.5, label=f"EWMA, com = {gn.com:g}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("‖∇f‖/√d")
    legend(ax, fontsize=8)
    heading(fig, banner=banner)
    return fig


def plot_msd(m: MSD, *, ax: Axes | None = None, banner: str = "") -> Figure:
    """MSD against lag on log-log axes, with the fitted power law and a τ¹ guide.

    Args:
        m: The mean squared displacement (:func:`sgdscope.analysis.msd`).
        ax: Axes to draw into; None draws a new figure.
        banner: A heading above the figure (e.g. a reduced-run label); empty for none.

    Returns:
        The figure drawn into.
    """
    fig, ax = _axes(ax)
    ax.loglog(m.lags, m.msd, "o", ms=3, color="C0", label="MSD")
    fit = m.prefactor * m.lags.astype(float) ** m.exponent
    lo, hi = m.interval
    ax.loglog(m.lags, fit, color="C1", label=f"c = {m.exponent:.3f} [{lo:.3f}, {hi:.3f}]")
    guide = m.msd[0] * m.lags / m.lags[0]
    ax.loglog(m.lags, guide, color="0.5", ls="--", lw=0.8, label="Brownian (c = 1)")
    ax.set_xlabel("lag τ (snapshots)")
    ax.set_ylabel("mean squared displacement")
    legend(ax, fontsize=8)
    heading(fig, banner=banner)
    return fig


def plot_flux(flux: ProbabilityFlux, *, ax: Axes | None = None, banner: str = "") -> Figure:
    """Occupancy of the plane's cells with the coarse-grained flux arrows (Battle et al. 2016).

    Each arrow is centred on its cell and drawn in the plane's coordinates, the longest at
    :data:`ARROW_FILL` of its cell, so every arrow stays inside its cell and inside the axes.

    Args:
        flux: The probability flux (:func:`sgdscope.analysis.probability_flux`).
        ax: Axes to draw into; None draws a new figure.
        banner: A heading above the figure (e.g. a reduced-run label); empty for none.

    Returns:
        The figure drawn into.
    """
    fig, ax = _axes(ax, width=5.0, height=4.5)
    xe, ye = flux.x_edges, flux.y_edges
    occ = np.ma.masked_equal(flux.occupancy, 0.0)
    mesh = ax.pcolormesh(xe, ye, occ.T, cmap="Greys", shading="flat")
    fig.colorbar(mesh, ax=ax, label="fraction of time")
    cx, cy = np.meshgrid(0.5 * (xe[1:] + xe[:-1]), 0.5 * (ye[1:] + ye[:-1]), indexing="ij")
    seen = flux.occupancy > 0
    u, v = flux.flux[..., 0][seen], flux.flux[..., 1][seen]
    # data units per unit of flux such that the longest |u| fits its cell's width and the
    # longest |v| its height: arrows never leave their cell
    dx, dy = np.meshgrid(np.diff(xe), np.diff(ye), indexing="ij")
    reach = max(np.max(np.abs(u) / dx[seen], initial=0), np.max(np.abs(v) / dy[seen], initial=0))
    if reach > 0:
        ax.quiver(
            cx[seen], cy[seen], u, v, color="C3", pivot="middle", angles="xy",
            scale_units="xy", scale=reach / ARROW_FILL, width=0.006,
        )  # fmt: skip
    ax.set_xlim(xe[0], xe[-1])
    ax.set_ylim(ye[0], ye[-1])
    turn = "counter-clockwise" if flux.circulation > 0 else "clockwise"
    ax.set_title(f"circulation {flux.circulation:.3g} ({turn}), p = {flux.p_value:.3g}", fontsize=9)
    ax.set_xlabel("coordinate 1")
    ax.set_ylabel("coordinate 2")
    ax.grid(False)
    heading(fig, banner=banner)
    return fig


def plot_equilibrium(res: EquilibriumTest, *, ax: Axes | None = None, banner: str = "") -> Figure:
    """The irreversibility statistic against its surrogate distribution, with the verdict.

    Args:
        res: The test's result (:func:`sgdscope.analysis.equilibrium_test`).
        ax: Axes to draw into; None draws a new figure.
        banner: A heading above the figure (e.g. a reduced-run label); empty for none.

    Returns:
        The figure drawn into.
    """
    fig, ax = _axes(ax, width=6.0, height=4.5)
    null = res.irreversibility.null
    ax.hist(null, bins=30, color="0.6", label=f"{res.n_surrogates} reversible surrogates")
    ax.axvline(res.statistic, color="C3", lw=2, label="trajectory")
    ax.set_xlabel("irreversibility ‖S^-1/2 Σ_τ (C(τ) − C(τ)ᵀ) S^-1/2‖²")
    ax.set_ylabel("count")
    legend(ax, fontsize=8)
    ax.set_title("\n".join(textwrap.wrap(res.verdict, 90)), fontsize=7, loc="left")
    heading(fig, banner=banner)
    return fig
