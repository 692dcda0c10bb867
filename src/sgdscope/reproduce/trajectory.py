r"""``sgdscope reproduce trajectory``: Fig. 3 of Chaudhari & Soatto (2018), and what it lacked.

The authors' Oct-12 run (the run their ``plot_current.py`` plots, github.com/pratikac/grad-info,
commit 4e1bd82): tiny-fc (49–16–BN–ReLU–4, d = 900) on 7 × 7 MNIST, digits 0–3, the first 512
training images of each (N = 2,048), heavy-ball SGD (momentum 0.9, batch 128, 16 steps per epoch,
per-epoch reshuffle), constant lr 0.1 (the code's; ``recording_lr=1e-3`` gives the paper's text),
10⁵ epochs of which the first 10³ are burn-in, weights recorded every epoch.

Measured: the spectrum of the increments (Fig. 3a, Remark 17), the autocorrelation of the weights
with the ±1.96/√n and ±2.576/√n bands (Fig. 3b, Remark 18), the EWMA of ‖∇f‖/√d (Fig. 3c), and
what the paper lacked: :func:`~sgdscope.trajectory.analysis.equilibrium_test` (the
asymmetry of the lagged covariance against a reversible OU null), the probability flux of the
top-2 PCA plane with its circulation, and the MSD exponent (Kunin et al.).

The run is resumable (:mod:`sgdscope.reproduce._trajectory_run`): calling :func:`run` again on
the same output folder continues after the last checkpoint, so the full 10⁵-epoch run can be
launched, interrupted and continued.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from matplotlib.figure import Figure

from .._validation import check_int, check_option, check_real
from ..paper.data import mnist
from ..paper.models import build
from ..paper.training import TrainConfig
from ..report.fig_trajectory import (
    plot_autocorrelation,
    plot_equilibrium,
    plot_flux,
    plot_msd,
    plot_power_spectrum,
)
from ..report.results import ExperimentResult, FigureRef
from ..report.style import legend, new_figure, save_figure
from ..trajectory import load_trajectory
from ._trajectory_analysis import PAPER_GRAD_RANGE, Analysis, analyse
from ._trajectory_compare import comparisons, notes
from ._trajectory_run import record_run
from .context import RunContext

__all__ = ["NAME", "Settings", "run"]

NAME = "trajectory"
_WHERE = "trajectory.Settings"


@dataclass(frozen=True)
class Settings:
    """Sizes of the trajectory run (defaults: the authors' Oct-12 run).

    Attributes:
        epochs: Total epochs, burn-in included (10⁵).
        burnin: Epochs before the first record (10³).
        lr: Learning rate of the burn-in (0.1, the code's default).
        recording_lr: Learning rate after burn-in; None keeps ``lr`` (the code's constant 0.1);
            1e-3 is the paper's text ("fixed to 10⁻³ after this").
        n: Training images, class-balanced, first in file order (2,048 = 512 × 4).
        classes: Digits kept (0–3).
        scale: Input scaling of :func:`sgdscope.paper.data.mnist`: ``"unit"`` (pixels / 255,
            default) or ``"paper"`` (raw 0–255; the authors' 7 × 7 inputs also went through a
            byte overflow that is not reproduced).
        batch_size: Mini-batch size b (128).
        momentum: Heavy-ball momentum (0.9).
        checkpoint_every: Epochs between resume points.
        n_surrogates: Surrogates of the equilibrium test's reversible null.
        embedded: Use the embedded MNIST subset even when ``ctx.mnist_dir`` is given.
    """

    epochs: int = 100_000
    burnin: int = 1_000
    lr: float = 0.1
    recording_lr: float | None = None
    n: int = 2_048
    classes: tuple[int, ...] = (0, 1, 2, 3)
    scale: str = "unit"
    batch_size: int = 128
    momentum: float = 0.9
    checkpoint_every: int = 1_000
    n_surrogates: int = 199
    embedded: bool = False

    def __post_init__(self) -> None:
        check_int("burnin", self.burnin, where=_WHERE, low=0)
        check_int(
            "epochs",
            self.epochs,
            where=_WHERE,
            low=self.burnin + 3,
            hint="At least 3 epochs must be recorded after the burn-in.",
        )
        check_real("lr", self.lr, where=_WHERE, low=0, low_open=True)
        if self.recording_lr is not None:
            check_real("recording_lr", self.recording_lr, where=_WHERE, low=0, low_open=True)
        check_int("n", self.n, where=_WHERE, low=len(self.classes))
        check_option("scale", self.scale, ["unit", "raw", "paper", "standard"], where=_WHERE)
        check_int("batch_size", self.batch_size, where=_WHERE, low=1)
        check_real("momentum", self.momentum, where=_WHERE, low=0, high=1, high_open=True)
        check_int("checkpoint_every", self.checkpoint_every, where=_WHERE, low=1)
        check_int("n_surrogates", self.n_surrogates, where=_WHERE, low=19)
        object.__setattr__(self, "classes", tuple(int(c) for c in self.classes))

    @classmethod
    def quick(cls) -> Settings:
        """2,000 epochs with a 200-epoch burn-in on the embedded data (≈2 min on 2 busy cores).

        3,000 epochs took 186 s under shared load (17.5 epochs/s), over this experiment's share
        of the 10-minute quick budget; 2,000 reach lags of 900 epochs in Fig. 3b (T/2).
        """
        return cls(epochs=2_000, burnin=200, checkpoint_every=200, n_surrogates=99, embedded=True)

    @classmethod
    def full(cls) -> Settings:
        """The authors' protocol: 10⁵ epochs, 10³ burn-in, lr 0.1 throughout (the code's lr)."""
        return cls()

    @property
    def lr_after_burnin(self) -> float:
        """The learning rate in force while recording."""
        return self.lr if self.recording_lr is None else self.recording_lr


def _plot_gradient_norms(an: Analysis, burnin: int, title: str) -> Figure:
    """Fig. 3c: ‖∇f‖/√d per epoch (train and eval mode) and its EWMA, log-x, paper's range."""
    fig, ax = new_figure(width=5.5, height=3.8)
    e = an.epochs
    for g, colour, what in ((an.grad_train, "C0", "train mode"), (an.grad_eval, "C1", "eval mode")):
        ax.plot(e, g.value, color=colour, lw=0.4, alpha=0.3)
        ax.plot(e, g.smoothed, color=colour, lw=1.6, label=f"{what}, EWMA com {g.com:g}")
    ax.axhspan(*PAPER_GRAD_RANGE, color="0.85", zorder=0, label="paper's range (Fig. 3c)")
    if burnin:
        ax.axvline(burnin, color="0.4", ls="--", lw=0.8, label="end of burn-in")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("‖∇f‖/√d")
    ax.set_title(title, fontsize=8)
    legend(ax, fontsize=7)
    return fig


def _figures(an: Analysis, folder: Path, burnin: int, label: str) -> list[FigureRef]:
    """Draw every figure the analyses allow; label them when the run is reduced."""
    eq = an.equilibrium
    # (result needed, file, draw() -> Figure, caption): drawn only when the analysis produced it
    plan = [
        (an.spectrum, "fig3a_spectrum.png",
         lambda: plot_power_spectrum(an.spectrum, banner=label),
         "Fig. 3a: power spectrum of the per-epoch increments, mean over weights with the 68 % "
         "bootstrap band (seaborn tsplot's, as the paper drew)."),
        (an.autocorrelation, "fig3b_autocorrelation.png",
         lambda: plot_autocorrelation(an.autocorrelation, banner=label),
         "Fig. 3b: autocorrelation of the weights against lag (epochs), with the paper's "
         "white-noise bands ±1.96/√n and ±2.576/√n."),
        (an.grad_train, "fig3c_gradient_norm.png",
         lambda: _plot_gradient_norms(an, burnin, label),
         "Fig. 3c: ‖∇f‖/√d per epoch, train mode (the authors' full_dw) and eval mode, EWMA "
         "com = 100, with the paper's 1e-3–3e-3 range."),
        (an.msd, "msd.png", lambda: plot_msd(an.msd, banner=label),
         "MSD of the weights against lag with the fitted power law (Kunin et al.: anomalous "
         "diffusion, c ≠ 1)."),
        (eq, "flux.png", lambda: plot_flux(eq.flux, banner=label),
         f"Probability flux in {eq.plane if eq else ''} (Battle et al. 2016)."),
        (eq, "equilibrium.png", lambda: plot_equilibrium(eq, banner=label),
         "Equilibrium test: irreversibility of the lagged covariance against reversible (Q = 0) "
         "OU surrogates."),
    ]  # fmt: skip
    return [
        FigureRef(save_figure(draw(), folder / name).name, caption)
        for need, name, draw, caption in plan
        if need is not None
    ]


def run(ctx: RunContext, settings: Settings | None = None) -> ExperimentResult:
    """Train, record and analyse the long tiny-fc run of Fig. 3 (resumable).

    Args:
        ctx: Output folder, device, data folders, seed, progress bars.
        settings: Sizes; None takes :meth:`Settings.quick` when ``ctx.quick`` else
            :meth:`Settings.full`.

    Returns:
        The :class:`~sgdscope.reproduce.results.ExperimentResult`, also saved as
        ``ctx.out/trajectory/result.json``.
    """
    t0 = time.perf_counter()
    if settings is None:
        settings = Settings.quick() if ctx.quick else Settings.full()
    full = Settings.full()
    folder = ctx.folder(NAME)
    data_dir = None if settings.embedded else ctx.mnist_dir
    source = "embedded subset" if data_dir is None else str(data_dir)
    reduced = (settings.epochs, settings.burnin) != (full.epochs, full.burnin) or data_dir is None
    label = (
        f"(reduced: {settings.epochs:,} epochs, burn-in {settings.burnin:,}, {source})"
        if reduced
        else ""
    )
    x, y = mnist(
        data_dir,
        n=settings.n,
        classes=settings.classes,
        size=7,
        scale=settings.scale,
        resize=ctx.mnist_resize,
    ).tensors()
    x = x.reshape(len(x), -1)
    model = build("tiny-fc", len(settings.classes), seed=ctx.seed)
    schedule = ((settings.burnin, settings.lr), (settings.epochs, settings.lr_after_burnin))
    config = TrainConfig(
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        lr=settings.lr,
        momentum=settings.momentum,
        schedule=schedule,
        seed=ctx.seed,
    )
    run_settings = {
        **{k: v for k, v in asdict(settings).items() if k != "n_surrogates"},
        "classes": list(settings.classes),
        "seed": ctx.seed,
        "data": source,
        # only when not the default, so runs recorded before this option still resume
        **({"resize": ctx.mnist_resize} if ctx.mnist_resize != "area" else {}),
    }
    threads = torch.get_num_threads()
    if torch.device(ctx.device).type == "cpu":
        torch.set_num_threads(1)  # a 900-parameter net: one thread is fastest on 2 cores
    try:
        info = record_run(
            folder / "run",
            model,
            (x, y),
            config,
            burnin=settings.burnin,
            checkpoint_every=settings.checkpoint_every,
            run_settings=run_settings,
            device=ctx.device,
            progress=ctx.progress,
        )
        t_train = time.perf_counter() - t0
        traj = load_trajectory(info.store)
        an = analyse(
            traj,
            info.history,
            burnin=settings.burnin,
            n_surrogates=settings.n_surrogates,
            seed=ctx.seed,
        )
        figures = _figures(an, folder, settings.burnin, label)
    finally:
        torch.set_num_threads(threads)
    projected = full.epochs / info.rate if info.rate > 0 else None
    numbers = {
        **an.numbers,
        "timing": {
            "epochs_done": info.epochs_done,
            "epochs_this_session": info.epochs_this_session,
            "resumed_from_epoch": info.resumed_from,
            "replayed_epochs": info.replayed,
            "training_seconds_all_sessions": info.seconds,
            "epochs_per_second": info.rate,
            "projected_full_run_hours": None if projected is None else projected / 3600,
            "analysis_seconds": time.perf_counter() - t0 - t_train,
            "device": ctx.device,
        },
        "final_train_loss": float(traj.scalars["loss"][-1]),
        "final_train_error": float(traj.scalars["error"][-1]),
        "data": {
            "source": source,
            "n": len(y),
            "classes": list(settings.classes),
            "scale": settings.scale,
            "size": 7,
        },
    }
    result = ExperimentResult(
        seconds=time.perf_counter() - t0,
        name=NAME,
        title="Fig. 3: long SGD trajectories of tiny-fc (FFT, autocorrelation, gradient norm) "
        "and the equilibrium test",
        reduced=reduced,
        reduced_note=label.strip("()") if reduced else "",
        config={
            **run_settings,
            "n_surrogates": settings.n_surrogates,
            "device": ctx.device,
            "lr_after_burnin": settings.lr_after_burnin,
        },
        comparisons=comparisons(an, settings_epochs=settings.epochs, reduced=reduced),
        figures=figures,
        numbers=numbers,
        notes=notes(an, settings, numbers),
    )
    result.save(folder)
    return result
