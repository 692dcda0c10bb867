"""Figures of D(x)'s eigenspectrum: the paper's Fig. 1 histogram and the rank-ordered eigenvalues."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..noise.spectrum import Spectrum
from ._style import new_figure, save_figure

__all__ = ["plot_spectrum"]


def plot_spectrum(
    spectra: Spectrum | Sequence[Spectrum],
    path: str | Path,
    *,
    labels: Sequence[str] | None = None,
    title: str = "",
    bins: int = 30,
    rtol: float | str | None = None,
) -> Path:
    """Plot D's eigenspectrum in two panels.

    Left, a log-log histogram of the eigenvalues clipped at the rank threshold, in the style
    of Chaudhari & Soatto's Fig. 1 (later spectra drawn darker), and λ_i against i on log-log axes
    with the threshold, which shows whether the spectrum is low-rank or a power law cut off by the
    threshold (Xie et al., NeurIPS 2023, report a power-law covariance spectrum).

    Args:
        spectra: One spectrum or several (e.g. checkpoints at 20 %, 40 %, 100 % of training).
        path: Where to write the PNG.
        labels: A legend label per spectrum.
        title: Figure title.
        bins: Number of log-spaced bins shared by all spectra.
        rtol: The rank threshold (see :meth:`~sgdscope.Spectrum.threshold`): None for each
            spectrum's default, ``"paper"`` for the paper's.

    Returns:
        The path written.
    """
    spectra = [spectra] if isinstance(spectra, Spectrum) else list(spectra)
    labels = (
        list(labels) if labels is not None else [f"{s.method}, N={s.n_samples}" for s in spectra]
    )
    fig, (ax_h, ax_r) = new_figure(ncols=2)
    lo = min(s.threshold(rtol) for s in spectra)
    hi = max(s.lambda_max for s in spectra) * 1.0001
    edges = np.logspace(np.log10(lo) - 0.05, np.log10(hi) + 0.05, bins + 1)
    n = len(spectra)
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
        ax_r.loglog(np.arange(1, lam.size + 1), lam, lw=1.5, alpha=alpha, label=label)
        ax_r.axhline(s.threshold(rtol), ls="--", lw=0.8, color="k", alpha=alpha)
    ax_h.set(
        xscale="log",
        yscale="log",
        xlabel="eigenvalue of D (clipped at the threshold)",
        ylabel="count",
        ylim=(0.5, None),
    )
    if ax_h.get_legend_handles_labels()[0]:
        ax_h.legend(fontsize=7)
    else:
        ax_h.text(
            0.5,
            0.5,
            "rank not determined:\ncompute with k=None",
            transform=ax_h.transAxes,
            ha="center",
        )
    ax_r.set(xlabel="index i", ylabel="λ_i", title="dashed: λ_max · d · ε_float32")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
