"""Figures of ``reproduce scaling``: Remark 11's test error against b, Remark 12's loss curves.

Each function draws from the measured records and takes the reduced-run ``label`` (the reduction
in words, empty for the paper's protocol) as an argument.
"""

from __future__ import annotations

import math
from pathlib import Path

from ...report.results import FigureRef
from ...report.style import new_figure, save_figure
from .measure import Remark11, Remark12
from .settings import Settings

__all__ = ["draw", "remark11", "remark12"]


def _suffix(label: str) -> str:
    return f"\n(reduced: {label})" if label else ""


def remark11(r: Remark11, path: Path, s: Settings, label: str) -> Path:
    """Final test error (± binomial s.e.) and generalisation gap against b, both rules."""
    fig, (ax1, ax2) = new_figure(2, width=4.8, height=3.8)
    se = r.test_error_se
    for runs, name, marker in (
        (r.scaled, f"η = {s.base_lr:g}·b/{s.base_batch} (fixed η/b)", "o"),
        (r.fixed, f"η = {s.base_lr:g} (fixed η)", "s"),
    ):
        b = [x.batch_size for x in runs]
        ax1.errorbar(
            b, [100 * x.test_error for x in runs], yerr=100 * se, marker=marker, label=name,
            capsize=3,
        )  # fmt: skip
        ax2.plot(b, [x.gap_loss for x in runs], marker=marker, label=name)
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size b")
    ax1.set_ylabel("test error (%)")
    ax1.set_title("final test error", fontsize=9)
    fig.suptitle(
        f"Remark 11: small-lenet, N = {r.n_train}, {s.epochs} epoch(s) per b{_suffix(label)}",
        fontsize=9,
    )
    ax2.set_ylabel("test loss − train loss")
    ax2.set_title("generalisation gap", fontsize=9)
    ax1.legend(fontsize=8)
    return save_figure(fig, path)


def remark12(r: Remark12, path: Path, s: Settings, label: str) -> Path:
    """Running train loss per epoch with and without replacement, small and large b/N."""
    fig, axes = new_figure(2, width=4.8, height=3.8)
    for ax, b in zip(axes, sorted(r.pairs), strict=True):
        for sampling, style in (("with", "-"), ("without", "--")):
            run = r.pairs[b][sampling]
            per_epoch = run.steps / run.epochs
            x = [(e + 1) * per_epoch for e in range(len(run.curve))]
            ax.plot(x, run.curve, style, marker=".", label=f"{sampling} replacement")
        start = run.epochs - max(min(2, run.epochs), math.ceil(s.steady_fraction * run.epochs))
        ax.axvspan(start * per_epoch, run.steps, alpha=0.1, color="grey", label="steady window")
        ax.set_yscale("log")
        ax.set_xlabel("SGD step")
        ax.set_ylabel("running train loss per epoch")
        ax.set_title(
            f"b = {b}, N = {run.n_train} (b/N = {b / run.n_train:.3g}), η = {run.lr:g}",
            fontsize=9,
        )
        ax.legend(fontsize=8)
    fig.suptitle(f"Remark 12: with vs without replacement{_suffix(label)}", fontsize=9)
    return save_figure(fig, path)


def draw(folder: Path, r11: Remark11, r12: Remark12, s: Settings, label: str) -> list[FigureRef]:
    """Draw both figures into ``folder`` and return them with their captions."""
    return [
        FigureRef(
            remark11(r11, folder / "remark11_test_error.png", s, label).name,
            "Remark 11: final test error (± binomial s.e.) and generalisation gap against b, at "
            "fixed η/b and at fixed η.",
        ),
        FigureRef(
            remark12(r12, folder / "remark12_train_loss.png", s, label).name,
            "Remark 12: running train loss per epoch with and without replacement, at a small "
            "and a large b/N; the shaded window is averaged as the steady state.",
        ),
    ]
