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

The run is resumable (:mod:`sgdscope.reproduce.trajectory.record`): calling :func:`run` again on
the same output folder continues after the last checkpoint, so the full 10⁵-epoch run can be
launched, interrupted and continued.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

import torch
from torch import Tensor

from ...paper.data import mnist
from ...paper.models import build
from ...paper.training import TrainConfig
from ...report.results import ExperimentResult
from ...trajectory import Trajectory, load_trajectory
from .._experiment import Experiment
from ..context import RunContext
from . import claims, figures
from .measure import Analysis, analyse
from .record import RunInfo, record_run
from .settings import Settings

__all__ = ["EXPERIMENT", "NAME", "TITLE", "Settings", "run"]

NAME = "trajectory"
TITLE = (
    "Fig. 3: long SGD trajectories of tiny-fc (FFT, autocorrelation, gradient norm) and the "
    "equilibrium test"
)


def _data(s: Settings, ctx: RunContext) -> tuple[Tensor, Tensor, str]:
    """The 7 × 7 MNIST inputs (flattened), targets, and where they come from."""
    data_dir = None if s.embedded else ctx.mnist_dir
    x, y = mnist(
        data_dir, n=s.n, classes=s.classes, size=7, scale=s.scale, resize=ctx.mnist_resize
    ).tensors()
    return x.reshape(len(x), -1), y, "embedded subset" if data_dir is None else str(data_dir)


def _run_settings(s: Settings, ctx: RunContext, source: str) -> dict[str, Any]:
    """The settings a resumed run must match (``state.pt`` stores them)."""
    return {
        **{k: v for k, v in asdict(s).items() if k != "n_surrogates"},
        "classes": list(s.classes),
        "seed": ctx.seed,
        "data": source,
        # only when not the default, so runs recorded before this option still resume
        **({"resize": ctx.mnist_resize} if ctx.mnist_resize != "area" else {}),
    }


@contextmanager
def _one_thread_on_cpu(device: str) -> Iterator[None]:
    """One torch thread on the CPU: a 900-parameter net is fastest that way on 2 cores."""
    threads = torch.get_num_threads()
    if torch.device(device).type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _record(s: Settings, ctx: RunContext, x: Tensor, y: Tensor, run_settings: dict) -> RunInfo:
    """Train and record tiny-fc (resumable; see :func:`~.record.record_run`)."""
    config = TrainConfig(
        epochs=s.epochs,
        batch_size=s.batch_size,
        lr=s.lr,
        momentum=s.momentum,
        schedule=((s.burnin, s.lr), (s.epochs, s.lr_after_burnin)),
        seed=ctx.seed,
    )
    return record_run(
        ctx.folder(NAME) / "run",
        build("tiny-fc", len(s.classes), seed=ctx.seed),
        (x, y),
        config,
        burnin=s.burnin,
        checkpoint_every=s.checkpoint_every,
        run_settings=run_settings,
        device=ctx.device,
        progress=ctx.progress,
    )


def _numbers(
    an: Analysis, info: RunInfo, traj: Trajectory, s: Settings, ctx: RunContext, **data: Any
) -> dict[str, Any]:
    """Every number of the experiment, JSON-ready: the analyses, the timing and the data."""
    projected = Settings.full().epochs / info.rate if info.rate > 0 else None
    return {
        **an.numbers(),
        "timing": {
            "epochs_done": info.epochs_done,
            "epochs_this_session": info.epochs_this_session,
            "resumed_from_epoch": info.resumed_from,
            "replayed_epochs": info.replayed,
            "training_seconds_all_sessions": info.seconds,
            "epochs_per_second": info.rate,
            "projected_full_run_hours": None if projected is None else projected / 3600,
            "analysis_seconds": data.pop("analysis_seconds"),
            "device": ctx.device,
        },
        "final_train_loss": float(traj.scalars["loss"][-1]),
        "final_train_error": float(traj.scalars["error"][-1]),
        "data": {**data, "classes": list(s.classes), "scale": s.scale, "size": 7},
    }


def run(ctx: RunContext, settings: Settings | None = None) -> ExperimentResult:
    """Train, record and analyse the long tiny-fc run of Fig. 3 (resumable).

    Args:
        ctx: Output folder, device, data folders, seed, progress bars.
        settings: Sizes; None takes :meth:`Settings.quick` when ``ctx.quick`` else
            :meth:`Settings.full`.

    Returns:
        The :class:`~sgdscope.report.results.ExperimentResult`, also saved as
        ``ctx.out/trajectory/result.json``.
    """
    t0 = time.perf_counter()
    s = settings or Settings.for_run(ctx)
    folder = ctx.folder(NAME)
    x, y, source = _data(s, ctx)
    note = s.reduction(embedded_data=source == "embedded subset")
    run_settings = _run_settings(s, ctx, source)
    with _one_thread_on_cpu(ctx.device):
        info = _record(s, ctx, x, y, run_settings)
        t_train = time.perf_counter() - t0
        traj = load_trajectory(info.store)
        an = analyse(
            traj, info.history, burnin=s.burnin, n_surrogates=s.n_surrogates, seed=ctx.seed
        )
        drawn = figures.draw(an, folder, s.burnin, note)
    numbers = _numbers(
        an, info, traj, s, ctx,
        analysis_seconds=time.perf_counter() - t0 - t_train, source=source, n=len(y),
    )  # fmt: skip
    result = ExperimentResult(
        name=NAME,
        title=TITLE,
        reduced=bool(note),
        reduced_note=note,
        config={
            **run_settings,
            "n_surrogates": s.n_surrogates,
            "device": ctx.device,
            "lr_after_burnin": s.lr_after_burnin,
        },
        comparisons=claims.comparisons(an, settings_epochs=s.epochs, reduced=bool(note)),
        figures=drawn,
        numbers=numbers,
        notes=claims.notes(an, s, numbers),
        seconds=time.perf_counter() - t0,
    )
    result.save(folder)
    return result


def this_call(result: ExperimentResult) -> tuple[float | None, str | None]:
    """Wall time of this call, and the epochs an earlier call had trained and recorded."""
    t = result.numbers.get("timing", {})
    start = t.get("resumed_from_epoch") or 0
    if not start:
        return result.seconds, None
    return result.seconds, (
        f"epochs 1–{start} from state.pt and the trajectory store "
        f"({t.get('replayed_epochs', 0)} recorded epochs replayed to restore the state)"
    )


EXPERIMENT = Experiment(NAME, TITLE, Settings, run, this_call)
