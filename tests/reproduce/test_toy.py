"""``reproduce toy``: end to end at tiny sizes, the verdict logic on known cases, and the
oracles it relies on (χ² against exact samples, divergence ratios of known fields)."""

import json
import math

import numpy as np
import pytest
import torch

from sgdscope.report.results import ExperimentResult, Verdict
from sgdscope.reproduce import toy
from sgdscope.reproduce.context import RunContext
from sgdscope.reproduce.toy.claims import (
    assumption4_verdict,
    example19_verdict,
    linear_verdict,
    shift_verdict,
)
from sgdscope.reproduce.toy.measure import chi2_test, divergence_ratio

TINY = toy.Settings(
    lams=(0.0, 1.5),
    grid=48,
    particles=400,
    t_max=3.0,
    dt=0.01,
    bins=4,
    shift_betas=(1.0, 2.0),
    linear_grid=64,
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    return out, toy.run(RunContext(out=out, progress=False, seed=3), TINY)


def test_end_to_end_writes_result_and_figures(tiny_run):
    out, _ = tiny_run
    folder = out / toy.NAME
    saved = ExperimentResult.load(folder / "result.json")
    assert saved.name == "toy" and saved.reduced and "grid 48² (full 256²)" in saved.reduced_note
    assert [c.key for c in saved.comparisons] == [
        "fig4.example19",
        "thm22.shift",
        "assumption4.example19",
        "lemma20.linear_q",
    ]
    assert all(isinstance(c.verdict, Verdict) for c in saved.comparisons)
    assert len(saved.figures) == 3
    for fig in saved.figures:
        assert (folder / fig.path).stat().st_size > 10_000
    assert json.loads((folder / "result.json").read_text())["config"]["grid"] == 48
    assert saved.seconds > 0


def test_end_to_end_numbers_match_the_closed_forms(tiny_run):
    _, res = tiny_run
    wells = res.numbers["wells"]
    for w in wells:
        assert w["phi_max_error"] < 1e-2  # ρ_ss = e^{−Φ} for every λ (Example 19)
        assert 0.0 <= w["chi2_p"] <= 1.0
    zero, rot = wells
    assert zero["current_ratio"] < 0.05 < rot["current_ratio"]
    # Assumption 4: the grid solve agrees with the autograd oracle; ∇·(jρ) = 0 to round-off
    assert rot["div_force"] == pytest.approx(rot["div_force_exact"], abs=0.05)
    assert rot["div_force_exact"] > 0.3 and rot["div_current_exact"] < 1e-12
    res_by_key = {c.key: c for c in res.comparisons}
    assert res_by_key["assumption4.example19"].verdict is Verdict.NOT_REPRODUCED
    lin = res.numbers["linear"]
    assert lin["q_norm_rel"] > 1e-2 and lin["q_norm_rel_commuting"] < 1e-12
    assert lin["q_antisymmetry"] < 1e-12 and lin["lyapunov_residual"] < 1e-10


def test_example19_verdict_known_cases():
    lams = [0.0, 0.5, 1.5]
    good = ([1e-4] * 3, [0.001, 0.26, 0.57], [0.5, 0.3, 0.8])
    assert example19_verdict(lams, *good, alpha=0.01)[0] is Verdict.REPRODUCED
    bad_sde = (good[0], good[1], [0.5, 1e-6, 0.8])
    v, why = example19_verdict(lams, *bad_sde, alpha=0.01)
    assert v is Verdict.PARTLY and "fails the χ² test" in why
    bad_phi = ([1e-4, 0.3, 1e-4], good[1], good[2])
    assert example19_verdict(lams, *bad_phi, alpha=0.01)[0] is Verdict.PARTLY
    no_current = (good[0], [0.001, 0.001, 0.57], good[2])
    assert example19_verdict(lams, *no_current, alpha=0.01)[0] is Verdict.NOT_REPRODUCED
    both_bad = ([1, 1, 1], good[1], [0, 0, 0])
    assert example19_verdict(lams, *both_bad, alpha=0.01)[0] is Verdict.NOT_REPRODUCED


def test_shift_verdict_known_cases():
    b = [1.0, 0.5, 0.25, 0.125]
    v, p = shift_verdict(b, [0.3 * x for x in b])  # exactly ∝ β⁻¹
    assert v is Verdict.REPRODUCED and p == pytest.approx(1.0)
    v, p = shift_verdict(b, [math.sqrt(x) for x in b])  # grows, but as β^{-1/2}
    assert v is Verdict.PARTLY and p == pytest.approx(0.5)
    assert shift_verdict(b, [0.2] * 4)[0] is Verdict.NOT_REPRODUCED  # no dependence
    assert shift_verdict(b, [0.4, 0.3, math.nan, 0.1])[0] is Verdict.NOT_REPRODUCED
    assert shift_verdict(b, [0.0] * 4)[0] is Verdict.NOT_REPRODUCED


def test_assumption4_verdict_known_cases():
    lams = [0.0, 0.5]
    assert assumption4_verdict(lams, [1.0, 0.43], [1e-3, 1e-3]) is Verdict.NOT_REPRODUCED
    assert assumption4_verdict(lams, [1.0, 1e-3], [1e-3, 1e-3]) is Verdict.REPRODUCED
    assert assumption4_verdict(lams, [1.0, 0.43], [1e-3, 0.2]) is Verdict.NOT_TESTABLE
    assert assumption4_verdict([0.0], [1.0], [1e-3]) is Verdict.NOT_TESTABLE


def test_linear_verdict_known_cases():
    assert linear_verdict(0.1, 1e-17, (False, True), 0.01) is Verdict.REPRODUCED
    assert linear_verdict(0.1, 1e-17, (False, True), 0.2) is Verdict.PARTLY
    assert linear_verdict(0.1, 1e-3, (False, False), 0.01) is Verdict.NOT_REPRODUCED


def _exact_samples(n: int, seed: int) -> np.ndarray:
    """Rejection sampling of e^{−Φ}: x₁ from N(0, 1.5²) accepted ∝ e^{−Φ₁}/proposal, x₂ ~ N(0, 1)."""

    def ratio(x):
        return np.exp(-0.25 * (x * x - 1) ** 2 + x * x / (2 * 1.5**2))

    bound = ratio(np.linspace(-5, 5, 100_001)).max() * 1.001
    rng = np.random.default_rng(seed)
    out = []
    while sum(len(o) for o in out) < n:
        x = rng.normal(0.0, 1.5, 4 * n)
        out.append(x[rng.uniform(0, 1, x.size) * bound < ratio(x)])
    x1 = np.concatenate(out)[:n]
    return np.stack([x1, rng.normal(size=n)], axis=1)


def test_chi2_accepts_exact_samples_and_rejects_wrong_ones():
    def phi1(t):
        return 0.25 * (t * t - 1) ** 2

    pvals = [chi2_test(_exact_samples(5000, s), 8, phi1)[2] for s in range(5)]
    assert min(pvals) > 1e-3 and np.mean(pvals) > 0.2
    shifted = _exact_samples(5000, 9) + np.array([0.2, 0.0])
    assert chi2_test(shifted, 8, phi1)[2] < 1e-6
    stat, dof, _ = chi2_test(_exact_samples(100, 1), 8, phi1)
    assert dof < 63 and stat >= 0  # small expected counts pooled


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        (lambda x: x.clone(), 1.0),  # ∇·x = 2 = Σ|∂ᵢxᵢ|
        (lambda x: torch.stack([-x[:, 1], x[:, 0]], -1), 0.0),  # rotation: no divergence
        (lambda x: torch.stack([x[:, 0], -x[:, 1]], -1), 0.0),  # ∂₁v₁ + ∂₂v₂ = 1 − 1
        (lambda x: torch.stack([x[:, 0] ** 2, torch.zeros_like(x[:, 1])], -1), 1.0),
    ],
)
def test_divergence_ratio_on_known_fields(field, expected):
    pts = np.random.default_rng(0).normal(size=(50, 2))
    assert divergence_ratio(field, pts, np.ones(50)) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"grid": 8}, r"'grid' parameter of sgdscope.reproduce.toy.Settings must be an int in "
                      r"\[32, inf\], got 8"),
        ({"particles": 10}, r"'particles' parameter .* got 10"),
        ({"dt": 0.0}, r"'dt' parameter .* got 0.0"),
        ({"alpha": 0.0}, r"'alpha' parameter .* got 0.0"),
        ({"lams": ()}, r"'lams' parameter .* at least one λ"),
        ({"lams": (-1.0,)}, r"'lams' parameter .* got -1.0"),
        ({"shift_betas": (0.5, 1.0)}, r"'shift_betas' parameter .* β ≥ 1"),
        ({"shift_betas": (1.0,)}, r"'shift_betas' parameter .* at least two"),
    ],
)  # fmt: skip
def test_settings_are_validated(kwargs, match):
    with pytest.raises(ValueError, match=match):
        toy.Settings(**kwargs)


def test_quick_and_full_settings():
    q, f = toy.Settings.quick(), toy.Settings.full()
    assert q.lams == f.lams == (0.0, 0.5, 1.5)
    assert q.grid < f.grid == 256 and q.particles < f.particles
    assert toy.Settings() == f
