r"""``reproduce toy``: Fig. 4 (Example 19), Theorem 22, Assumption 4 and Lemma 20 on toy problems.

**Example 19 / Fig. 4** (§V). The double well
:math:`\Phi = \tfrac14(x_1^2-1)^2 + \tfrac12x_2^2` with D = I, β = 1 and the drift
:math:`b = -\nabla\Phi + j`, :math:`j = \lambda e^{\Phi - r^4/4}(-x_2, x_1)`
(:func:`sgdscope.examples.double_well`). For every λ the stationary density is :math:`e^{-\Phi}`
(because :math:`j e^{-\Phi}` is divergence-free) while the current is not zero for λ > 0. For
λ ∈ {0, 0.5, 1.5} this experiment solves the Fokker–Planck equation on a grid
(:class:`sgdscope.FokkerPlanck`), compares the recovered Φ (eq. 5) and force j (eq. 8) with the
closed forms, simulates the SDE (:func:`sgdscope.simulate_sde`, Euler–Maruyama) from a Gaussian
at the origin and compares the particles' histogram with :math:`e^{-\Phi}` by a χ² test (bin
probabilities from the closed form, independent of the solver), and draws the paper's Fig. 4
(drift streamlines over Φ, with :func:`sgdscope.report.plot_drift`).

**Theorem 22** (eq. 19). The critical points of Φ are not those of f: at ∇Φ = 0,
∇f = −β⁻¹∇·(D + Q), "linear in β⁻¹". Test: keep the drift of Example 19 at λ = 0.5 fixed (the
loss f and D do not change) and solve the Fokker–Planck equation at several β; measure the
distance from each minimum of Φ to the nearest zero of the drift of the same type, and the local
exponent of that shift against β⁻¹ at the smallest β⁻¹.

**Assumption 4** (eq. 9, ∇·j = 0). Example 19 satisfies ∇·(jρ^{ss}) = 0 but not ∇·j = 0 for
λ ≠ 0 (by direct computation): ∇·j = λe^{Φ−r⁴/4}x₁x₂(2 − x₁²). Both are measured on the solved
steady state and, as an oracle, by autograd on the closed-form j and ρ = e^{−Φ}.

**Lemma 20** (eqs. 15–16). For a random 2-D Hessian F and diffusion D,
:func:`sgdscope.linear_decomposition` gives F = (D + Q)U with Q antisymmetric and j = −QUx; the
Fokker–Planck solve of the same Ornstein–Uhlenbeck process gives j independently. Q = 0 exactly
when FD = DFᵀ (checked on a commuting pair with the same eigenvectors).
"""

from __future__ import annotations

import time
from dataclasses import asdict

from ..._progress import progress_bar
from ...report.results import ExperimentResult
from .._experiment import Experiment
from ..context import RunContext
from . import claims, figures
from .measure import WellRun, linear_case, measure_shift, measure_well
from .settings import Settings

__all__ = ["EXPERIMENT", "NAME", "TITLE", "Settings", "run"]

NAME = "toy"
TITLE = "Fig. 4 and §V: Example 19 (limit cycles), Theorem 22, Assumption 4, Lemma 20"


def run(ctx: RunContext, settings: Settings | None = None) -> ExperimentResult:
    """Run the toy experiment (Fig. 4, Theorem 22, Assumption 4, Lemma 20) and save its result.

    Args:
        ctx: Where and how to run (``ctx.quick`` picks :meth:`Settings.quick` when ``settings``
            is None; ``ctx.seed`` seeds the particles and the random F, D; ``ctx.device`` runs
            the SDE simulation).
        settings: Sizes; None picks quick or full from ``ctx``.

    Returns:
        The :class:`ExperimentResult`, also written to ``ctx.folder("toy")/result.json``.
    """
    start = time.perf_counter()
    s = settings or Settings.for_run(ctx)
    folder = ctx.folder(NAME)
    total = len(s.lams) + len(s.shift_betas) + 1
    with progress_bar("reproduce toy", total, enabled=ctx.progress) as advance:
        wells: list[WellRun] = []
        for k, lam in enumerate(s.lams):
            wells.append(measure_well(lam, s, ctx.seed + k, ctx.device))
            advance()
        # the β = 1 solve of the Theorem 22 ladder is the λ = shift_lam well's, when it ran
        same = [w.steady for w in wells if w.measurement.lam == s.shift_lam]
        shift = measure_shift(s, {1.0: same[-1]} if same and 1.0 in s.shift_betas else {}, advance)
        linear = linear_case(ctx.seed, s.linear_grid)
        advance()
    note = s.reduction()
    drawn = figures.draw(folder, wells, shift, figures.label(s, bool(note)))
    measured = [w.measurement for w in wells]
    result = ExperimentResult(
        seconds=time.perf_counter() - start,
        name=NAME,
        title=TITLE,
        reduced=bool(note),
        reduced_note=note,
        config=asdict(s),
        comparisons=claims.compare(measured, shift, linear, s),
        figures=drawn,
        numbers={
            "wells": [asdict(m) for m in measured],
            "theorem22": shift.to_dict(),
            "linear": asdict(linear),
        },
        notes=claims.notes(measured),
    )
    result.save(folder)
    return result


def this_call(result: ExperimentResult) -> tuple[float | None, str | None]:
    """Wall time of this call; nothing is reused between calls (every run is a few seconds)."""
    return result.seconds, None


EXPERIMENT = Experiment(NAME, TITLE, Settings, run, this_call)
