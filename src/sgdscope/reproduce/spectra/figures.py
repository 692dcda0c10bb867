"""Figures of ``reproduce spectra``: one figure per panel, its spectra at every checkpoint.

Drawn with :func:`sgdscope.report.fig_spectrum.plot_spectrum`; the reduced-run ``label`` is an
argument, drawn as the figure's banner.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from ...noise.spectrum import PAPER
from ...report.fig_spectrum import plot_spectrum
from ...report.results import FigureRef
from ...report.style import save_figure
from .measure import PanelRun

__all__ = ["panel"]


def panel(run: PanelRun, folder: Path, label: str) -> FigureRef:
    """Draw ``run``'s spectra (left: clipped histogram; right: λ_i against i) into ``folder``.

    Args:
        run: The measured panel.
        folder: The experiment's folder.
        label: What was reduced, in words (empty for the paper's protocol).

    Returns:
        The figure's :class:`FigureRef` (file name and caption).
    """
    spec, spectra = run.spec, run.spectra
    last = max(spectra)
    png = f"{spec.key}_{spec.run}.png"
    figure = plot_spectrum(
        [spectra[e] for e in sorted(spectra)],
        labels=[f"epoch {e} ({round(100 * e / last)} %)" for e in sorted(spectra)],
        rtol=PAPER,
        title=f"{spec.figure}: D(x) of {spec.model}, {spec.data_label}",
        banner="\n".join(textwrap.wrap(f"(reduced: {label})" if label else "", 90)),
    )
    save_figure(figure, folder / png)
    return FigureRef(
        png,
        f"{spec.figure}: {spec.model} on {spec.data_label}, N = {spectra[last].n_samples:,}; "
        "left, eigenvalues clipped at the threshold (darker is later); right, λ_i against i "
        "with the threshold.",
    )
