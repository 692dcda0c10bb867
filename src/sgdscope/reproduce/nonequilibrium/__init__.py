"""``sgdscope reproduce nonequilibrium``: the paper's central claim, tested where the test is valid.

The Fig. 3 run found no evidence of currents, but its record was not stationary (BatchNorm
without weight decay lets the pre-BN weight norm grow), so the equilibrium test could not decide.
This experiment trains settings in which the weights can reach a stationary state (tiny-fc and
small-lenet with weight decay, the same without BatchNorm, the paper's text protocol) and reads
the Fig. 3 record in scale-invariant coordinates. Each is diagnosed for stationarity, then tested
for detailed balance in the top-2 PCA plane (phase space with momentum), in the top-k PCA
subspace and in the span of D's top eigenvectors, and compared with the linear theory of
Lemma 20 (F from Hessian-vector products, D from per-sample gradients). See :mod:`.measure` and
:mod:`.claims`.

Each setting's trained record is saved in ``OUT/nonequilibrium/records/`` as soon as it ends and
read back by a later call with the same settings and seed, so an interrupted run (a full run is
about 40 min on one CPU thread) resumes with the settings it had not finished.
"""

from __future__ import annotations

import time
from dataclasses import asdict

from ...report.results import ExperimentResult
from .._experiment import Experiment
from ..context import RunContext
from . import claims, figures
from .measure import measure
from .settings import Settings

__all__ = ["EXPERIMENT", "NAME", "TITLE", "Settings", "run"]

NAME = "nonequilibrium"
TITLE = (
    "Beyond the paper: is SGD out of equilibrium where the test is valid? Stationary settings, "
    "currents in subspaces and the linear theory (Thm 22, Lemma 20)"
)


def run(ctx: RunContext, settings: Settings | None = None) -> ExperimentResult:
    """Train, record and test every setting; save ``OUT/nonequilibrium/result.json``.

    Args:
        ctx: Output folder, data folder, seed, progress. The networks (d ≤ 12,564) train on
            the CPU whatever ``ctx.device`` says: at batch 128 a GPU would not be faster.
        settings: Sizes; None takes :meth:`Settings.quick` when ``ctx.quick`` else
            :meth:`Settings.full`.

    Returns:
        The :class:`~sgdscope.report.results.ExperimentResult`.
    """
    t0 = time.perf_counter()
    s = settings or Settings.for_run(ctx)
    folder = ctx.folder(NAME)
    tested = measure(ctx, s)
    note = s.reduction(embedded_data=ctx.mnist_dir is None)
    result = ExperimentResult(
        name=NAME,
        title=TITLE,
        reduced=bool(note),
        reduced_note=note,
        config={**asdict(s), "seed": ctx.seed, "device": "cpu"},
        comparisons=claims.comparisons(tested, s),
        figures=figures.draw(tested, folder, note),
        numbers={"settings": {t.key: t.numbers() for t in tested}},
        notes=claims.notes(s),
        seconds=time.perf_counter() - t0,
    )
    result.save(folder)
    return result


def this_call(result: ExperimentResult) -> tuple[float | None, str | None]:
    """Wall time of this call (records trained by an earlier call are read back, not retrained)."""
    return result.seconds, None


EXPERIMENT = Experiment(NAME, TITLE, Settings, run, this_call)
