"""``reproduce spectra``: Figs 1–2 of the paper, D(x)'s eigenspectrum at 20 %, 40 % and 100 % of training.

For each panel of §IV-A (Figs 1–2) the network is trained as the paper did
(:func:`sgdscope.paper.training.train`: momentum 0.9, batch 128, lr 0.1 with a step schedule,
checkpoints at 20/40/100 %), and at each checkpoint D(x) of eq. (2) is measured in eval mode from
per-sample gradients over the training set (:class:`sgdscope.GradientNoise`, exact rank without a
dense matrix). Reported per checkpoint: rank at the paper's threshold λ_max·d·ε_float32 and at
stricter ones (is D low-rank, or a power law cut off by the threshold?), mean ± std in three
readings (the paper's "±" is ambiguous), the overlap of
the top-k eigenvector subspaces between checkpoints (Remark 13), and the rank-ordered spectrum
(power law or low rank?).

Panels: ``fig1a`` small-lenet on MNIST; ``fig1b`` small-fc on 7×7 MNIST, digits 0 and 1, 10
outputs (the code's ``halfmnist`` defaults); ``fig2a`` / ``fig2b`` small-allcnn on CIFAR-10 /
CIFAR-100 (GCN + ZCA, no augmentation in training); ``fig2c`` the fig2a checkpoints re-evaluated
with one random flip + pad-4 + crop per sample. The CIFAR panels need ``--cifar-dir`` /
``--cifar100-dir``; without them they are reported as not testable here.

Everything measured is cached next to its checkpoint (``*.spectrum.npz``), and training resumes
from ``last.pt``, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import time
from dataclasses import asdict

from ...report.results import ExperimentResult
from .._experiment import Experiment
from ..context import RunContext
from . import claims, figures
from .measure import RTOLS, measure_panels
from .settings import PANELS, Settings

__all__ = ["EXPERIMENT", "NAME", "PANELS", "TITLE", "Settings", "run"]

NAME = "spectra"
TITLE = "Figs 1–2: the eigenspectrum of D(x) at 20 %, 40 % and 100 % of training"


def _reduction(s: Settings, ctx: RunContext, *, cifar: bool, mnist: bool) -> str:
    """What was reduced, for panels of these kinds (the one rule of the protocol)."""
    return s.reduction(embedded_data=mnist and ctx.mnist_dir is None, cifar=cifar)


def run(ctx: RunContext, settings: Settings | None = None) -> ExperimentResult:
    """Run the spectra experiment (Figs 1–2) and save ``OUT/spectra/result.json``.

    Args:
        ctx: Output folder, data folders, device, seed.
        settings: Sizes; None takes :meth:`Settings.quick` or :meth:`Settings.full` from
            ``ctx.quick``.

    Returns:
        The :class:`ExperimentResult` (also written to disk with its figures).
    """
    t0 = time.perf_counter()
    s = settings or Settings.for_run(ctx)
    folder = ctx.folder(NAME)
    m = measure_panels(ctx, s)
    kinds = {r.spec.is_cifar for r in m.runs.values()}
    drawn = [
        figures.panel(
            r, folder, _reduction(s, ctx, cifar=r.spec.is_cifar, mnist=not r.spec.is_cifar)
        )
        for r in m.runs.values()
    ]
    panels = {k: r.panel() for k, r in m.runs.items()}
    this_call = time.perf_counter() - t0
    note = _reduction(s, ctx, cifar=True in kinds, mnist=False in kinds)
    result = ExperimentResult(
        name=NAME,
        title=TITLE,
        reduced=bool(note),
        reduced_note=note,
        config={**asdict(s), "device": ctx.device, "seed": ctx.seed},
        comparisons=claims.compare(panels, m.skipped),
        figures=drawn,
        numbers={
            "panels": {k: r.numbers() for k, r in m.runs.items()},
            "skipped": m.skipped,
            "rtols": list(RTOLS),
            "seconds_this_call": this_call,
            "seconds_reused_from_earlier_calls": m.seconds_reused,
        },
        notes=claims.notes(panels),
        seconds=this_call + m.seconds_reused,  # what the experiment cost, over all its calls
    )
    result.save(folder)
    return result


def this_call(result: ExperimentResult) -> tuple[float | None, str | None]:
    """Wall time of this call, and the training epochs and spectra reused from earlier calls."""
    numbers = result.numbers
    panels = numbers.get("panels", {})
    cached = [
        k for k, p in panels.items() if p["spectrum_seconds_this_call"] < p["spectrum_seconds"]
    ]
    d_reused = sum(p["spectrum_seconds"] - p["spectrum_seconds_this_call"] for p in panels.values())
    earlier = numbers.get("seconds_reused_from_earlier_calls", 0.0)
    parts = []
    if earlier - d_reused > 0.5:
        parts.append(
            f"training resumed from last.pt ({earlier - d_reused:.0f} s of earlier epochs)"
        )
    if cached:
        parts.append(f"D of {', '.join(cached)} from the *.spectrum.npz caches ({d_reused:.0f} s)")
    return numbers.get("seconds_this_call"), "; ".join(parts) or None


EXPERIMENT = Experiment(NAME, TITLE, Settings, run, this_call)
