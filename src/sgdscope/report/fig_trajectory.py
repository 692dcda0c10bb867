"""Figures of trajectory diagnostics: the paper's Fig. 3 panels, MSD, the flux field, the verdict.

Each function renders a result of :mod:`sgdscope.trajectory.analysis` (it never recomputes it),
writes one PNG and returns its path; ``banner`` puts a red heading above the figure (e.g. the
label of a reduced run).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from ..trajectory.analysis import (
    MSD,
    Autocorrelation,
    EquilibriumTest,
    GradientNorm,
    PowerSpectrum,
    ProbabilityFlux,
)
from ._style import new_figure, save_figure

__all__ = [
    "plot_autocorrelation",
    "plot_equilibrium",
    "plot_flux",
    "plot_gradient_norm",
    "plot_msd",
    "plot_power_spectrum",
]


def plot_power_spectrum(ps: PowerSpectrum, path: str | Path, *, banner: str = "") -> Path:
    """Mean spectrum over coordinates with its bootstrap band (Fig. 3a), log-frequency axis."""
    fig, ax = new_figure()
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
    return save_figure(fig, path, banner=banner)


def plot_autocorrelation(ac: Autocorrelation, path: str | Path, *, banner: str = "") -> Path:
    """Mean autocorrelation with the ±1.96/√n and ±2.576/√n bands (Fig. 3b)."""
    fig, ax = new_figure()
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
    ax.legend(fontsize=8)
    return save_figure(fig, path, banner=banner)


def plot_gradient_norm(gn: GradientNorm, path: str | Path, *, banner: str = "") -> Path:
    """‖∇f‖/√d and its EWMA (Fig. 3c)."""
    fig, ax = new_figure()
    ax.plot(gn.steps, gn.value, color="0.7", lw=0.6, label="‖∇f‖/√d")
    ax.plot(gn.steps, gn.smoothed, color="C0", lw=1.5, label=f"EWMA, com = {gn.com:g}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("‖∇f‖/√d")
    ax.legend(fontsize=8)
    return save_figure(fig, path, banner=banner)


def plot_msd(m: MSD, path: str | Path, *, banner: str = "") -> Path:
    """MSD against lag on log-log axes, with the fitted power law and a τ¹ guide."""
    fig, ax = new_figure()
    ax.loglog(m.lags, m.msd, "o", ms=3, color="C0", label="MSD")
    fit = m.prefactor * m.lags.astype(float) ** m.exponent
    lo, hi = m.interval
    ax.loglog(m.lags, fit, color="C1", label=f"c = {m.exponent:.3f} [{lo:.3f}, {hi:.3f}]")
    guide = m.msd[0] * m.lags / m.lags[0]
    ax.loglog(m.lags, guide, color="0.5", ls="--", lw=0.8, label="Brownian (c = 1)")
    ax.set_xlabel("lag τ (snapshots)")
    ax.set_ylabel("mean squared displacement")
    ax.legend(fontsize=8)
    return save_figure(fig, path, banner=banner)


def plot_flux(flux: ProbabilityFlux, path: str | Path, *, banner: str = "") -> Path:
    """Occupancy of the plane's cells with the coarse-grained flux arrows (Battle et al. 2016)."""
    fig, ax = new_figure(width=5.0, height=4.5)
    xe, ye = flux.x_edges, flux.y_edges
    occ = np.ma.masked_equal(flux.occupancy, 0.0)
    mesh = ax.pcolormesh(xe, ye, occ.T, cmap="Greys", shading="flat")
    fig.colorbar(mesh, ax=ax, label="fraction of time")
    cx, cy = np.meshgrid(0.5 * (xe[1:] + xe[:-1]), 0.5 * (ye[1:] + ye[:-1]), indexing="ij")
    seen = flux.occupancy > 0
    ax.quiver(cx[seen], cy[seen], flux.flux[..., 0][seen], flux.flux[..., 1][seen], color="C3")
    turn = "counter-clockwise" if flux.circulation > 0 else "clockwise"
    ax.set_title(f"circulation {flux.circulation:.3g} ({turn}), p = {flux.p_value:.3g}", fontsize=9)
    ax.set_xlabel("coordinate 1")
    ax.set_ylabel("coordinate 2")
    ax.grid(False)
    return save_figure(fig, path, banner=banner)


def plot_equilibrium(res: EquilibriumTest, path: str | Path, *, banner: str = "") -> Path:
    """The irreversibility statistic against its surrogate distribution, with the verdict."""
    fig, ax = new_figure(width=6.0, height=4.5)
    null = res.irreversibility.null
    ax.hist(null, bins=30, color="0.6", label=f"{res.n_surrogates} reversible surrogates")
    ax.axvline(res.statistic, color="C3", lw=2, label="trajectory")
    ax.set_xlabel("irreversibility ‖S^-1/2 Σ_τ (C(τ) − C(τ)ᵀ) S^-1/2‖²")
    ax.set_ylabel("count")
    ax.legend(fontsize=8)
    ax.set_title("\n".join(textwrap.wrap(res.verdict, 90)), fontsize=7, loc="left")
    return save_figure(fig, path, banner=banner)
