"""The figure of ``reproduce nonequilibrium``: entropy production per setting, measured and predicted."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...report.results import FigureRef
from ...report.style import heading, legend, new_figure, save_figure
from .measure import Tested

__all__ = ["draw"]

_STYLE = {"pca": ("C0", "top-k PCA"), "noise": ("C1", "D's top-k")}


def draw(tested: list[Tested], folder: Path, label: str) -> list[FigureRef]:
    """Measured σ with its interval (filled: stationary subspace) and the predicted σ, per setting.

    Returns:
        The figure's reference (none when no subspace test ran).
    """
    rows = [t for t in tested if t.currents]
    if not rows:
        return []
    fig, ax = new_figure(width=7.0, height=3.6)
    floor = (
        min(
            [max(c.entropy.rate, 1e-9) for t in rows for c in t.currents.values()]
            + [th.predicted_entropy for t in rows for th in t.theory.values() if th.stable]
        )
        / 10
    )
    labelled: set[str] = set()
    for j, (name, (colour, what)) in enumerate(_STYLE.items()):
        for i, t in enumerate(rows):
            c = t.currents.get(name)
            if c is None:
                continue
            x = i + 0.15 * (2 * j - 1)
            lo, hi = c.entropy.interval or (0.0, 0.0)
            rate = max(c.entropy.rate, floor)
            ok = c.stationarity.stationary
            first = f"m{name}" not in labelled
            labelled.add(f"m{name}")
            # the interval is drawn as it is: the bias-corrected basic interval may leave the
            # point estimate just outside it, so it is a line from lo to hi, not error bars
            ax.vlines(x, max(lo, floor), max(hi, floor), color=colour, lw=1.2)
            ax.plot(x, rate, "o", color=colour, mfc=colour if ok else "white",
                    label=f"measured, {what}" if first else None)  # fmt: skip
            th = t.theory.get(name)
            if th is not None and th.stable:
                first = f"t{name}" not in labelled
                labelled.add(f"t{name}")
                ax.plot(x, max(th.predicted_entropy, floor), "x", color=colour, ms=8,
                        label=f"linear theory, {what}" if first else None)  # fmt: skip
    ax.set_ylim(bottom=floor)
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(rows)), [t.key for t in rows], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("entropy production σ per epoch")
    legend(ax, fontsize=7)
    heading(fig, banner=f"(reduced: {label})" if label else "")
    path = save_figure(fig, folder / "entropy_production.png")
    return [
        FigureRef(
            path.name,
            "Entropy production per setting in the top-k PCA and D's top-k subspaces: measured "
            "(dots, with the bootstrap interval, drawn to the bottom when it reaches 0; open: "
            "the subspace is not stationary, no verdict) and predicted by the linear theory of "
            "Lemma 20 (crosses).",
        )
    ]
