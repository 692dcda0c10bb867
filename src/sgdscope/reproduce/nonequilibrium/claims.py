"""The rows of ``reproduce nonequilibrium``: is SGD out of equilibrium where the test is valid?

Chaudhari & Soatto (2018) claim in their title and §V that SGD on deep networks runs out of
equilibrium (Thm 22: j ≠ 0 unless D is isotropic; Lemma 20: for a linear drift F and constant
D, Q = 0 exactly when F and D commute). Each trained setting gets two rows:

- **detailed balance**: the equilibrium test in the top-2 PCA plane (in phase space for
  momentum runs) and the subspace-current tests in the top-k PCA subspace and in D's top-k
  subspace. A test whose subspace is not stationary gives no verdict; when none is testable the
  row reads "not testable here" (never "not reproduced"). Among the testable ones the family
  is controlled by Bonferroni: "reproduced" (out of equilibrium) when one p-value is below
  α / m, m the number of testable tests.
- **linear theory**: the predicted entropy production of Lemma 20 (F from Hessian-vector
  products, D from per-sample gradients at the last record) against the run's measured rate,
  in each stationary subspace; "reproduced" when the prediction lies in the measured interval
  in every such subspace, "partly" in some.

One more row counts the verdicts over the settings: the title claim where it can be tested.
"""

from __future__ import annotations

from ...report.results import Comparison, Verdict
from ...trajectory.analysis import EquilibriumStatus
from .._experiment import Claim, grade
from .measure import RESOLVED_RATE, Tested, Theory
from .settings import Settings

__all__ = ["ALPHA", "TITLE_CLAIM", "balance_claim", "comparisons", "notes", "theory_claim"]

ALPHA = 0.05  #: family-wise level of each setting's detailed-balance row

TITLE_CLAIM = Claim(
    "title.out_of_equilibrium",
    "Title / §V: SGD on deep networks runs out of equilibrium, in every setting where a test is "
    "valid (stationary record)",
    "out of equilibrium (limit cycles); inferred from Fig. 3, not tested directly",
)
_NAMES = {"pca": "top-{k} PCA", "noise": "D's top-{k}"}


def balance_claim(t: Tested) -> Claim:
    """The detailed-balance row of setting ``t``."""
    return Claim(
        f"{t.key}.detailed_balance",
        f"Thm 22 / §V: SGD runs out of equilibrium (j ≠ 0); {t.label}",
        "out of equilibrium",
    )


def theory_claim(t: Tested) -> Claim:
    """The linear-theory row of setting ``t``."""
    return Claim(
        f"{t.key}.linear_theory",
        f"Lemma 20: the linear theory (F = Hessian + weight decay, D) predicts the run's entropy "
        f"production; {t.label}",
        "Q = 0 iff F and D commute; σ = tr(QᵀD⁻¹QU) (not computed in the paper)",
    )


def _tests(t: Tested, k: int) -> list[tuple[str, EquilibriumStatus, float]]:
    """(where, status, p) of every test that ran on the setting."""
    out = []
    if t.equilibrium is not None:
        where = "top-2 PCA, phase space" if t.equilibrium.odd is not None else "top-2 PCA"
        out.append((where, t.equilibrium.status, t.equilibrium.p_value))
    for name, c in t.currents.items():
        out.append((_NAMES[name].format(k=k), c.status, c.p_value))
    return out


def _balance_row(t: Tested, k: int) -> Comparison:
    claim = balance_claim(t)
    tests = _tests(t, k)
    if not tests:
        return claim.skipped(t.skipped.get("all", "no test ran"))
    testable = [x for x in tests if x[1] is not EquilibriumStatus.NOT_STATIONARY]
    measured = "; ".join(f"{w}: p = {p:.3g} ({st.value})" for w, st, p in tests)
    measured += f" — T = {t.records:,} records"
    if not testable:
        reasons = t.stationarity.message if t.stationarity is not None else ""
        return claim.skipped("not testable: not stationary. " + reasons, measured=measured)
    level = ALPHA / len(testable)
    hit = [w for w, _, p in testable if p < level]
    note = f"Bonferroni over the {len(testable)} testable test(s): level {level:.3g}. " + (
        f"Detailed balance rejected in {', '.join(hit)}."
        if hit
        else "No evidence against equilibrium (which does not prove it)."
    )
    return claim.judge(measured, grade(bool(hit)), note)


def _theory_text(th: Theory, k: int) -> str:
    where = _NAMES[th.basis].format(k=k)
    if not th.stable:
        return f"{where}: F has a direction of negative curvature, no prediction"
    if not th.resolved:
        return (
            f"{where}: σ predicted {th.predicted_entropy:.3g} per epoch, but F's fastest rate "
            f"exceeds {RESOLVED_RATE:g} per record: not resolved by one record per epoch"
        )
    lo, hi = th.interval
    w_pred = th.predicted_rates[0] if th.predicted_rates.size else float("nan")
    w_meas = th.measured_rates[0] if th.measured_rates.size else float("nan")
    return (
        f"{where}: σ predicted {th.predicted_entropy:.3g} vs measured {th.measured_entropy:.3g} "
        f"[{lo:.3g}, {hi:.3g}] per epoch; fastest rotation ω predicted {w_pred:.3g} vs "
        f"{w_meas:.3g}; predicted/measured variance {th.variance_ratio:.3g}"
    )


def _theory_row(t: Tested, k: int) -> Comparison:
    claim = theory_claim(t)
    measured = "; ".join(_theory_text(th, k) for th in t.theory.values()) or "—"
    stable = [th for th in t.theory.values() if th.stable and th.resolved]
    if not stable:
        why = (
            "in every stationary subspace F is not positive-stable or is faster than the "
            "records resolve"
            if t.theory
            else "no stationary subspace to compare in"
        )
        return claim.skipped(why, measured=measured)
    return claim.judge(
        measured,
        grade(*(th.agrees for th in stable)),
        "Agreement: the predicted rate lies in the measured interval (bias-carrying basic "
        "bootstrap). The variance ratio checks the scale of F and D (1 when the restricted "
        "linear model is the run's).",
    )


def _title_row(tested: list[Tested], k: int) -> Comparison:
    rows = [_balance_row(t, k) for t in tested]
    judged = [r for r in rows if r.verdict is not Verdict.NOT_TESTABLE]
    out = [r for r in judged if r.verdict is Verdict.REPRODUCED]
    measured = (
        f"{len(out)} of {len(judged)} testable settings out of equilibrium; "
        f"{len(rows) - len(judged)} of {len(rows)} not testable (not stationary)"
    )
    if not judged:
        return TITLE_CLAIM.skipped("no setting produced a stationary record", measured=measured)
    return TITLE_CLAIM.judge(
        measured,
        grade(len(out) == len(judged), partly=bool(out)),
        "Reproduced when every testable setting rejects detailed balance, partly when some do.",
    )


def comparisons(tested: list[Tested], s: Settings) -> list[Comparison]:
    """The title row, then per setting its detailed-balance and linear-theory rows."""
    k = s.n_components
    rows = [_title_row(tested, k)]
    for t in tested:
        rows.append(_balance_row(t, k))
        if t.key.startswith(("a.", "b.", "d.")):
            rows.append(_theory_row(t, k))
    return rows


def notes(s: Settings) -> list[str]:
    """How the settings were run and what the tests assume."""
    return [
        f"Training: heavy-ball SGD (momentum {s.momentum:g}, batch {s.batch_size}, lr {s.lr:g}, "
        f"sampling {s.sampling} replacement) on MNIST digits 0–3, pixels in [0, 1] "
        f"({s.n:,} 7×7 images for tiny-fc, {s.lenet_n:,} 28×28 for small-lenet); one record per "
        f"epoch after a burn-in of {s.burnin:,} epochs; weight decay in the optimiser.",
        "Momentum runs are tested in phase space by the top-2 test: positions x_t + ηb_t/2 and "
        "velocities b_t (odd under time reversal), the pair for which heavy-ball SGD at "
        "equilibrium is reversible with parity. The subspace tests use the positions x_t: a "
        "record per epoch of 4–16 steps is long against the momentum's memory of 1/(1 − μ) = "
        f"{1 / (1 - s.momentum):.0f} steps.",
        "Linear theory: the Hessian and D are those of the eval-mode loss (BatchNorm running "
        "statistics, dropout off), at the last record; SGD follows the train-mode one. Time "
        "unit: one record = steps × η/(1 − μ) of the SDE (3), temperature η/(2b(1 − μ)). σ "
        "and the rotation rates do not depend on the scale of D, only on its shape and on F.",
        "Stationarity (unit root, trend, 20 relaxation times) is diagnosed in each tested "
        "subspace; SGD's slowest modes relax over hundreds to thousands of epochs, so records "
        "shorter than that are not testable, whatever their p-values.",
    ]
