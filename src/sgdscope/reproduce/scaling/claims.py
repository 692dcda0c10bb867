"""The paper's claims tested by ``reproduce scaling`` (Remarks 11 and 12, App. A).

Each claim is data (:class:`~sgdscope.reproduce._experiment.Claim`); each verdict function states
its thresholds in its docstring and is tested on known cases.
"""

from __future__ import annotations

from ...report.results import Comparison, Verdict
from .._experiment import Claim, grade
from .measure import Remark11, Remark12, SamplerNoise, WithMinusWithout
from .settings import Settings

__all__ = [
    "NOISE_FACTOR",
    "REMARK11",
    "REMARK12",
    "compare",
    "notes",
    "remark11_verdict",
    "remark12_verdict",
    "sampler_verdict",
]

REMARK11 = Claim(
    "remark11.fixed_ratio_spread",
    "Remark 11: at fixed η/b (η ∝ b) test error is similar across batch sizes",
    "η should scale linearly with b to keep β⁻¹ = η/(2b) (no number given)",
)
REMARK12 = Claim(
    "remark12.with_vs_without",
    "Remark 12: sampling with replacement regularises more than without "
    "(β'⁻¹ = η/(2b)(1 − b/N) < β⁻¹), most at large b/N",
    "qualitative; the factor (1 − b/N) (App. A)",
)
NOISE_FACTOR = Claim(
    "remark12.noise_factor",
    "Remark 12 / App. A: without replacement the mini-batch noise is that of with replacement "
    "times (1 − b/N)",
    "(1 − b/N)",
)


def remark11_verdict(r: Remark11) -> tuple[Verdict, str]:
    """Verdict of "at fixed η/b the test error is similar across b" (Remark 11), and why.

    Not testable when the control (fixed η) varies by no more than two standard errors of a
    difference of two test errors; reproduced when the range over b at fixed η/b is at most half
    the range at fixed η; partly when it is smaller; not reproduced otherwise.

    Returns:
        ``(verdict, why)``, why in words for the report.
    """
    if r.spread_fixed_lr <= r.noise_floor:
        return Verdict.NOT_TESTABLE, (
            "the control (fixed η) varies by no more than sampling noise at these sizes, so the "
            "comparison cannot separate the two rules"
        )
    ratio = r.spread_ratio
    verdict = grade(ratio <= 0.5, partly=ratio < 1)
    return verdict, {
        Verdict.REPRODUCED: "fixed η/b varies at most half as much as fixed η",
        Verdict.PARTLY: "fixed η/b varies less than fixed η, but not by half",
        Verdict.NOT_REPRODUCED: "fixed η/b varies as much as fixed η or more",
    }[verdict]


def remark12_verdict(d: WithMinusWithout) -> Verdict:
    """Verdict of "with replacement regularises more than without, most at large b/N".

    Reproduced when, with replacement, the steady-state train loss is higher at the large b/N
    (by more than 2 s.e.), that difference grows from the small to the large b/N, and the
    generalisation gap is smaller at the large b/N; partly when the first two hold, or the gap
    is smaller and its difference grows with b/N; not reproduced otherwise.

    Returns:
        The :class:`Verdict`.
    """
    hotter = d.steady_loss_diff_large > 2 * d.steady_loss_diff_large_se
    grows = abs(d.steady_loss_diff_large) > abs(d.steady_loss_diff_small)
    smaller_gap = d.gap_diff_large < 0
    gap_grows = abs(d.gap_diff_large) > abs(d.gap_diff_small)
    return grade(
        hotter, grows, smaller_gap, partly=(hotter and grows) or (smaller_gap and gap_grows)
    )


def sampler_verdict(m: SamplerNoise) -> Verdict:
    """Verdict of "without replacement the noise is (1 − b/N) times that with replacement".

    Partly reproduced when the one-batch variance ratio is within 10 % of App. A's exact
    (N − b)/(N − 1); never fully, since over an epoch the batches' noise cancels (per-epoch
    reshuffling), which the per-step model of Remark 12 ignores; not reproduced otherwise.

    Returns:
        The :class:`Verdict`.
    """
    step_ok = abs(m.ratio_one_batch - m.exact_one_batch) <= 0.1 * m.exact_one_batch
    return Verdict.PARTLY if step_ok else Verdict.NOT_REPRODUCED


def _remark11_row(r: Remark11, s: Settings) -> Comparison:
    verdict, why = remark11_verdict(r)
    errs = ", ".join(f"b={x.batch_size}: {100 * x.test_error:.2f} %" for x in r.scaled)
    return REMARK11.judge(
        f"test-error range over b ∈ {{{', '.join(str(x.batch_size) for x in r.scaled)}}}: "
        f"{100 * r.spread_fixed_ratio:.2f} points at fixed η/b vs "
        f"{100 * r.spread_fixed_lr:.2f} at fixed η = {s.base_lr:g} (ratio {r.spread_ratio:.2f})",
        verdict,
        f"{why}. Test errors at fixed η/b: {errs}. Binomial s.e. of one test error ≈ "
        f"{100 * r.test_error_se:.2f} points ({r.n_test} test images); one seed per run, the "
        f"same initial weights for all. Momentum 0.9, {s.epochs} epoch(s) for every b, "
        "step schedule (÷10 at 50 % and 75 %), no warm-up and no ghost BatchNorm (the authors' "
        "train_dual_batch.py used both).",
    )


def _remark12_row(r: Remark12) -> Comparison:
    d, n, small, large = r.differences(), r.n, r.small, r.large
    return REMARK12.judge(
        f"steady train loss with − without: {d.steady_loss_diff_large:+.4f} ± "
        f"{d.steady_loss_diff_large_se:.4f} at b/N = {large}/{n}, "
        f"{d.steady_loss_diff_small:+.4f} ± {d.steady_loss_diff_small_se:.4f} at b/N = "
        f"{small}/{n}; gap (test − train loss) with − without: {d.gap_diff_large:+.4f} / "
        f"{d.gap_diff_small:+.4f}; test error with − without at b/N = {large}/{n}: "
        f"{100 * d.test_error_diff_large:+.2f} points",
        remark12_verdict(d),
        "Equal η and b and the same number of steps for both samplers; η = 0.1·b/128 so β⁻¹ is "
        "the same at both b/N. Reproduced means: with replacement has a higher steady-state "
        "train loss (by more than 2 s.e. of the epoch means; epochs are autocorrelated, so the "
        "s.e. is optimistic), the difference grows with b/N, and its generalisation gap is "
        "smaller. One seed per run.",
    )


def _sampler_row(m: SamplerNoise) -> Comparison:
    return NOISE_FACTOR.judge(
        f"variance ratio without/with: one batch {m.ratio_one_batch:.3f} (exact (N−b)/(N−1) = "
        f"{m.exact_one_batch:.3f}); sum over one epoch {m.ratio_one_epoch:.3f}",
        sampler_verdict(m),
        "Measured on the network's per-sample gradients at the end of the large-b/N run, with "
        f"the sampler train() uses (random projection on {m.projections} directions). The "
        "per-step factor holds, but per-epoch reshuffling makes successive batches dependent: "
        "their sum over an epoch is the full gradient, with no noise at all, so the noise "
        "accumulated over an epoch is far below the (1 − b/N) model, which treats steps as "
        "independent.",
        paper=f"(1 − b/N) = {m.model_factor:.3f} at b/N = {m.batch_size}/{m.n}",
    )


def compare(r11: Remark11, r12: Remark12, sampler: SamplerNoise, s: Settings) -> list[Comparison]:
    """The rows of the paper-against-measured table, one per claim."""
    return [_remark11_row(r11, s), _remark12_row(r12), _sampler_row(sampler)]


def notes(r11: Remark11, sampler: SamplerNoise, s: Settings) -> list[str]:
    """Findings beside the table: the noise actually present, the epoch effect, momentum."""
    noise_line = ""
    if r11.noise_samples:
        scales = ", ".join(f"b={r.batch_size}: {r.noise_scale:.3g}" for r in r11.scaled)
        noise_line = (
            f" Measured noise scale η/(2b)·tr D/d (Remark 15, eq. 14; D at 40 % of training, "
            f"eval mode, {r11.noise_samples} samples) at fixed η/b: {scales}. It is not constant "
            "even at fixed η/b, because tr D depends on where each run is at that point."
        )
    shared = (
        f" The b = {s.base_batch} run is shared by both sets (η = {s.base_lr:g} in both)."
        if s.base_batch in s.batch_sizes
        else ""
    )
    return [
        f"Remark 11: {r11.distinct_runs} runs of small-lenet on {r11.n_train} MNIST images "
        f"({s.scale!r} inputs), {s.epochs} epoch(s) each, test on {r11.n_test}."
        + shared
        + noise_line,
        "Remark 12: the paper's wording 'with replacement ... close to (2)' is a typo for "
        "'without' (App. A); the (1 − b/N) factor belongs to sampling without replacement. The "
        "factor describes one step only: with per-epoch reshuffling the batches of an epoch "
        "partition the data, so their noise cancels over the epoch (measured variance ratio "
        f"without/with over one epoch: {sampler.ratio_one_epoch:.3g}, against "
        f"{sampler.ratio_one_batch:.3f} for one batch). The spread of without-replacement SGD is "
        "therefore far below what Remark 12's model predicts at large b/N.",
        "Temperatures are quoted for plain SGD; all runs use heavy-ball momentum 0.9 (as the "
        "authors), which multiplies β⁻¹ by 1/(1 − μ) = 10 in the SDE limit for every run alike. "
        "D is measured in eval mode while training noise comes from train-mode BatchNorm and "
        "dropout (§IV-A).",
    ]
