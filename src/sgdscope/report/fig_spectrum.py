"""Figures of D(x)'s eigenspectrum: the paper's Fig. 1 histogram and the rank-ordered eigenvalues."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..noise.spectrum import Spectrum
from .style import figure_of, heading, legend, new_figure

__all__ = ["plot_spectrum"]


def plot_spectrum(
    spectra: Spectrum | Sequence[Spectrum],
    *,
    labels: Sequence[str] | None = None,
    title: str = "",
    bins: int = 30,
    rtol: float | str | None = None,
    axes: tuple[Axes, Axes] | None = None,
    banner: str = "",
) -> Figure:
    """Plot D's eigenspectrum in two panels.

    Left, a log-log histogram of the eigenvalues clipped at the rank threshold, in the style
    of Chaudhari & Soatto's Fig. 1 (later spectra drawn darker), and right, λ_i against i on
    log-log axes with the threshold dashed, which shows whether the spectrum is low-rank or a power
    law cut off by the threshold (Xie et al., NeurIPS 2023, report a power-law covariance
    spectrum). A spectrum whose rank is not determined at the threshold (a top-k spectrum that
    stops above it) is left out of both panels.

    Args:
        spectra: One spectrum or several (e.g. checkpoints at 20 %, 40 %, 100 % of training).
        labels: A legend label per spectrum; None labels each by its method and N.
        title: Figure title.
        bins: Number of log-spaced bins shared by all spectra.
        rtol: The rank threshold (see :meth:`~sgdscope.Spectrum.threshold`): None for each
            spectrum's default, ``"paper"`` for the paper's.
        axes: The two axes to draw into (histogram, rank-ordered); None draws a new figure.
        banner: A heading below the title (e.g. a reduced-run label); empty for none.

    Returns:
        The figure drawn into.

    Example:
        >>> import numpy as np
        >>> from sgdscope import Spectrum
        >>> lam = np.r_[1.0, 0.5, 0.1, np.zeros(7)]
        >>> spec = Spectrum(lam, None, 10, 20, lam.sum(), complete=True, method="dense")
        >>> fig = plot_spectrum(spec, labels=["D"])
        >>> [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        ['D: rank 3 (30.00 %)']
    """
    spectra = [spectra] if isinstance(spectra, Spectrum) else list(spectra)
    labels = (
        list(labels) if labels is not None else [f"{s.method}, N={s.n_samples}" for s in spectra]
    )
    if axes is None:
        fig, (ax_h, ax_r) = new_figure(ncols=2)
    else:
        ax_h, ax_r = axes
        fig = figure_of(ax_h)
    lo = min(s.threshold(rtol) for s in spectra)
    hi = max(s.lambda_max for s in spectra) * 1.0001
    edges = np.logspace(np.log10(lo) - 0.05, np.log10(hi) + 0.05, bins + 1)
    n = len(spectra)
    rules = []
    for i, (s, label) in enumerate(zip(spectra, labels, strict=True)):
        alpha = 0.35 + 0.65 * (i + 1) / n  # darker is later, as in the paper
        if not s.rank_known(rtol):  # a top-k spectrum above the threshold has no histogram of all d
            continue
        counts, _ = s.histogram(bins=edges, rtol=rtol)
        ax_h.stairs(
            np.maximum(counts, 0.1),
            edges,
            fill=True,
            alpha=alpha * 0.6,
            label=f"{label}: rank {s.rank(rtol)} ({100 * s.rank_fraction(rtol):.2f} %)",
        )
        lam = s.eigenvalues[s.eigenvalues > 0]
        ax_r.loglog(np.arange(1, lam.size + 1), lam, lw=1.5, alpha=alpha)  # legend: left
        ax_r.axhline(s.threshold(rtol), ls="--", lw=0.8, color="k", alpha=alpha)
        rules.append(_readable(s.threshold_rule(rtol)))
    ax_h.set(
        xscale="log",
        yscale="log",
        xlabel="eigenvalue of D (clipped at the threshold)",
        ylabel="count",
        ylim=(0.5, None),
    )
    if legend(ax_h, fontsize=7) is None:
        ax_h.text(
            0.5,
            0.5,
            "rank not determined:\ncompute with k=None",
            transform=ax_h.transAxes,
            ha="center",
        )
    ax_r.set(xlabel="index i", ylabel="λ_i")
    if rules:  # the threshold drawn dashed, named by its rule (one per distinct rule)
        ax_r.set_title("dashed: " + "; ".join(dict.fromkeys(rules)))
    heading(fig, title, banner, fontsize=plt.rcParams["figure.titlesize"])
    return fig


def _readable(rule: str) -> str:
    """A threshold rule of :meth:`~sgdscope.Spectrum.threshold_rule` in the figures' notation."""
    return (
        rule.replace("lambda_max", "λ_max")
        .replace(" * ", " · ")
        .replace("eps_float32", "ε_float32")
    )
