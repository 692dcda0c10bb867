"""``reproduce scaling``: Remarks 11 and 12 of the paper, on small-lenet / MNIST.

**Remark 11**. SGD runs at temperature β⁻¹ = η/(2b) (Lemma 2, eq. 3), so the
entropic term of the free energy (eq. 11) stays the same when the learning rate η scales
linearly with the batch size b. Test: train small-lenet with
:func:`sgdscope.paper.training.train` at every b of :attr:`Settings.batch_sizes` with
η = min(0.1 · b/128, 1) (fixed η/b; the authors' ``train_dual_batch.py`` capped η at 1,
github.com/pratikac/grad-info, commit 4e1bd82), and a control set at fixed η = 0.1 (η/b varying),
the same number of epochs for all. If Remark 11 holds, the final test error varies less across b at
fixed η/b than at fixed η. The noise actually present is measured too: Remark 15's noise scale
(η/2b) · tr D(x)/d (eq. 14) at the 40 % checkpoint, with D(x) from per-sample gradients
(:meth:`sgdscope.GradientNoise.trace`).

**Remark 12**. Without replacement the mini-batch covariance carries a
finite-population factor, β'⁻¹ = η/(2b) · (1 − b/N) < β⁻¹ (App. A), so sampling *with*
replacement should regularise more, the more so the larger b/N. (The ITA text says "with
replacement ... close to (2)"; from App. A that is a typo for "without".) Test: at
equal (η, b), train with ``sampling="with"`` and ``"without"`` on a class-balanced subset of N
images at a small and a large b/N (b = N/4), at constant η = 0.1 · b/128 (so β⁻¹ is the same
for both b and only b/N differs) and for the same number of steps; compare the steady-state
train loss (mean of the per-epoch running loss over the last quarter of the epochs), the test
error and the generalisation gap. The sampler itself is measured on the network's per-sample
gradients at the end of the large-b/N run (:func:`batch_noise`): the variance of one
mini-batch gradient, whose ratio without/with is the (N − b)/(N − 1) of App. A, and of the sum of the
gradients over a whole epoch, which per-epoch reshuffling makes exactly zero without
replacement (successive batches are dependent, which Remark 12's per-step model ignores).

Every run trains into its own folder under ``OUT/scaling/runs`` and resumes from its
``last.pt``, so an interrupted ``reproduce scaling`` continues where it stopped.
"""

from __future__ import annotations

import time
from dataclasses import asdict

from ...report.results import ExperimentResult
from .._experiment import Experiment
from ..context import RunContext
from . import claims, figures
from .measure import batch_noise, load_mnist, measure_remark11, measure_remark12, measure_sampler
from .settings import MODEL, Settings, scaled_lr

__all__ = ["EXPERIMENT", "MODEL", "NAME", "TITLE", "Settings", "batch_noise", "run", "scaled_lr"]

NAME = "scaling"
TITLE = "Remarks 11–12: η ∝ b at fixed temperature; sampling with against without replacement"


def run(ctx: RunContext, settings: Settings | None = None) -> ExperimentResult:
    """Run Remarks 11 and 12 on small-lenet / MNIST, draw the figures, judge the claims.

    Args:
        ctx: Output folder, device, data folders, seed, progress bars.
        settings: Sizes; None takes :meth:`Settings.quick` or :meth:`Settings.full` from
            ``ctx.quick``.

    Returns:
        The :class:`~sgdscope.report.results.ExperimentResult`, also saved as
        ``OUT/scaling/result.json``.
    """
    t0 = time.perf_counter()
    s = settings or Settings.for_run(ctx)
    folder = ctx.folder(NAME)
    root = folder / "runs"
    test_xy = load_mnist(ctx, "test", s.n_test, s)
    r11 = measure_remark11(ctx, s, root, test_xy)
    r12, last_model, sub_xy = measure_remark12(ctx, s, root, test_xy)
    sampler = measure_sampler(last_model, sub_xy, ctx, s)
    note = s.reduction(embedded_data=ctx.mnist_dir is None)
    drawn = figures.draw(folder, r11, r12, s, note)
    result = ExperimentResult(
        name=NAME,
        title=TITLE,
        reduced=bool(note),
        reduced_note=note,
        config={
            **asdict(s),
            "model": MODEL,
            "data": "embedded subset" if ctx.mnist_dir is None else str(ctx.mnist_dir),
            "device": ctx.device,
            "seed": ctx.seed,
            "momentum": 0.9,
        },
        comparisons=claims.compare(r11, r12, sampler, s),
        figures=drawn,
        numbers={
            "remark11": r11.to_dict(),
            "remark12": {
                **asdict(r12.differences()),
                "runs": {
                    str(b): {k: v.to_dict() for k, v in p.items()} for b, p in r12.pairs.items()
                },
                "sampler": asdict(sampler),
            },
            "n_train": r11.n_train,
            "n_test": r11.n_test,
        },
        notes=claims.notes(r11, sampler, s),
        seconds=time.perf_counter() - t0,
    )
    result.save(folder)
    return result


def this_call(result: ExperimentResult) -> tuple[float | None, str | None]:
    """Wall time of this call, and how many training runs an earlier call had finished."""
    numbers = result.numbers
    runs = [
        *numbers.get("remark11", {}).get("fixed_ratio", []),
        *numbers.get("remark11", {}).get("fixed_lr", []),
    ]
    for pair in numbers.get("remark12", {}).get("runs", {}).values():
        runs.extend(pair.values())
    done = [r for r in runs if r.get("resumed_from") and r["resumed_from"] >= r["epochs"]]
    part = [r for r in runs if r.get("resumed_from") and r["resumed_from"] < r["epochs"]]
    if not (done or part):
        return result.seconds, None
    return result.seconds, (
        f"{len(done)} of {len(runs)} training runs finished earlier (from last.pt)"
        + (f", {len(part)} resumed mid-way" if part else "")
    )


EXPERIMENT = Experiment(NAME, TITLE, Settings, run, this_call)
