"""OU fit (Lemma 20), irreversibility, entropy production and equilibrium_test: calibration and power."""

import numpy as np
import pytest
from scipy import stats

import sgdscope as sg
from sgdscope.trajectory.analysis import (
    EquilibriumStatus,
    entropy_production,
    equilibrium_test,
    fit_ou,
    irreversibility,
)

from ._analysis_processes import (
    J,
    brownian,
    heavy_ball,
    ou,
    rotated_ou,
    stuart_landau,
    underdamped,
)


def test_fit_recovers_lemma20_decomposition():
    x, F, D, _Q = rotated_ou(0.8, 100000, seed=0, dt=0.2)
    fit = fit_ou(x, dt=0.2)
    _U, Q0, S0 = sg.linear_decomposition(F, D)
    np.testing.assert_allclose(fit.F, F, atol=0.08)
    np.testing.assert_allclose(fit.Q, Q0, atol=0.05)
    np.testing.assert_allclose(fit.S, S0, rtol=0.05, atol=0.02)
    # internally consistent: F S + S Fᵀ = 2D and Q = F S − D (Lemma 20 with the sample S)
    np.testing.assert_allclose(fit.F @ fit.S + fit.S @ fit.F.T, 2 * fit.D, atol=1e-10)
    np.testing.assert_allclose(fit.F @ fit.S - fit.D, fit.Q, atol=1e-10)
    # and agrees with linear_decomposition applied to the fitted F, D
    dec = sg.linear_decomposition(fit.F, fit.D)
    np.testing.assert_allclose(dec.Q, fit.Q, atol=1e-8)
    np.testing.assert_allclose(dec.U, fit.U, rtol=1e-6)
    assert fit.method == "continuous"


def test_null_model_is_reversible_with_same_covariance():
    x, *_ = rotated_ou(1.0, 5000, seed=1)
    fit = fit_ou(x)
    a0 = fit.null_A
    np.testing.assert_allclose(a0 @ fit.S, (a0 @ fit.S).T, atol=1e-12)  # C₀(1) symmetric
    np.testing.assert_allclose(a0 @ fit.S @ a0.T + fit.null_noise, fit.S, atol=1e-12)
    # its exact autocorrelation matches long surrogates
    sur = fit.simulate_null(200000, seed=2)
    np.testing.assert_allclose(np.cov(sur.T, bias=True), fit.S, rtol=0.05, atol=0.01)
    lags = np.array([1, 3, 8])
    emp = np.array([[np.corrcoef(sur[t:, i], sur[:-t, i])[0, 1] for i in range(2)] for t in lags])
    np.testing.assert_allclose(emp, fit.null_autocorrelation(lags), atol=0.02)


def test_coarse_sampling_uses_discrete_null():
    # A with a negative eigenvalue: x_{t+1} = −0.5 x_t + noise has no continuous-time OU
    rng = np.random.default_rng(3)
    x = np.zeros((5000, 2))
    for t in range(1, 5000):
        x[t] = -0.5 * x[t - 1] + rng.standard_normal(2)
    fit = fit_ou(x)
    assert fit.method == "discrete"
    np.testing.assert_allclose(np.sort(fit.null_coefficients), [-0.5, -0.5], atol=0.05)


def test_entropy_production_of_rotated_ou():
    # D = U = I, Q = qJ: σ = tr(Qᵀ D⁻¹ Q U) = 2q² per unit time
    q, dt = 0.7, 0.1
    x = ou(np.eye(2) + q * J, np.eye(2), dt, 60000, seed=4)
    ep = entropy_production(x, dt=dt, n_surrogates=49)
    assert ep.rate == pytest.approx(2 * q**2, rel=0.1)
    assert ep.corrected <= ep.rate and ep.p_value <= 0.05
    null = entropy_production(
        ou(np.eye(2) * 1.5, np.eye(2), dt, 60000, seed=5), dt=dt, n_surrogates=49
    )
    assert null.corrected < 0.1 * 2 * q**2  # bias removed: near 0 at equilibrium


def test_irreversibility_sign_and_rejection():
    x, _, _, Q = rotated_ou(0.8, 3000, seed=6)
    r = irreversibility(x, n_surrogates=99)
    assert r.p_value <= 0.02
    a = r.antisymmetric[0]
    assert np.sign(a[1, 0]) == np.sign(Q[0, 1])  # C(1)_{10} − C(1)_{01} ≈ 2Δ Q_{01}
    assert irreversibility(rotated_ou(0.0, 3000, seed=6)[0], n_surrogates=99).p_value > 0.05


def test_calibration_under_q0_null():
    # OU with Q = 0: p-values of equilibrium_test are uniform (KS), false-positive rate ≈ α
    ps = np.array(
        [
            equilibrium_test(rotated_ou(0.0, 1000, seed=s)[0], n_surrogates=49, seed=s).p_value
            for s in range(40)
        ]
    )
    assert stats.kstest(ps, "uniform").pvalue > 0.01
    assert np.mean(ps < 0.05) <= 0.15


@pytest.mark.slow
def test_calibration_under_q0_null_large():
    ps = np.array(
        [
            equilibrium_test(rotated_ou(0.0, 3000, seed=s)[0], n_surrogates=99, seed=s).p_value
            for s in range(120)
        ]
    )
    assert stats.kstest(ps, "uniform").pvalue > 0.01
    assert abs(np.mean(ps < 0.05) - 0.05) < 0.05


@pytest.mark.slow
def test_sgd_on_non_commuting_least_squares_circulates_as_lemma20_predicts():
    # real mini-batch SGD (b = 1) on least squares whose noise D does not commute with the
    # Hessian H: Lemma 20 on (H, D) predicts Q ≠ 0; the test must reject and find its sign
    import torch

    g = torch.Generator().manual_seed(0)
    n = 2000
    a = torch.randn(n, 2, generator=g, dtype=torch.float64) * torch.tensor([1.0, 0.4]).double()
    u = torch.tensor([1.0, 1.0], dtype=torch.float64) / 2**0.5
    noise = torch.randn(n, generator=g, dtype=torch.float64) * (0.2 + 2.0 * (a @ u).abs())
    y = a @ torch.tensor([0.5, -0.3], dtype=torch.float64) + noise
    a_np, y_np = a.numpy(), y.numpy()
    r = a_np @ np.linalg.lstsq(a_np, y_np, rcond=None)[0] - y_np
    grads = a_np * r[:, None]
    D = np.cov(grads.T, bias=True)
    dec = sg.linear_decomposition(a_np.T @ a_np / n, D)
    assert not dec.commute and dec.Q[0, 1] > 0
    path = sg.simulate_sgd(
        sg.LeastSquares(a, y), lr=0.05, batch_size=1, n_steps=40000, seed=1, record_every=2
    )
    res = equilibrium_test(path[2000:, 0, :].numpy(), seed=0)
    assert res.out_of_equilibrium and np.sign(res.circulation) == np.sign(dec.Q[0, 1])
    theory = np.linalg.norm(dec.Q @ dec.U) / np.linalg.norm(D @ dec.U)  # 0.10
    assert 0.3 * theory < res.effect_size < 3 * theory


@pytest.mark.parametrize("q", [0.8, -0.8])
def test_rotated_ou_is_rejected_with_the_sign_of_q(q):
    x, _, _, Q = rotated_ou(q, 2000, seed=7)
    r = equilibrium_test(x, n_surrogates=99)
    assert r.out_of_equilibrium and r.p_value <= 0.02
    assert np.sign(r.circulation) == np.sign(Q[0, 1])
    assert r.verdict.startswith("Out of equilibrium")
    assert ("counter-clockwise" in r.verdict) == (Q[0, 1] > 0)
    assert r.effect_size > 0.3


def test_stuart_landau_is_rejected():
    x, _f0 = stuart_landau(1500, seed=1)
    r = equilibrium_test(x, n_surrogates=99)
    assert r.out_of_equilibrium
    assert r.circulation > 0  # ω > 0 turns counter-clockwise


def test_wide_trajectory_is_projected_and_summary_is_json_ready():
    import json

    x, *_ = rotated_ou(0.8, 2000, seed=8)
    rng = np.random.default_rng(9)
    wide = x @ np.linalg.qr(rng.standard_normal((20, 20)))[0][:2] + 0.01 * rng.standard_normal(
        (2000, 20)
    )
    r = equilibrium_test(wide, n_surrogates=49)
    assert r.plane.startswith("the top-2 PCA plane") and r.out_of_equilibrium
    json.dumps(r.summary())
    assert set(r.components) == {"irreversibility", "circulation", "spectrum", "autocorrelation"}


def test_random_walk_is_flagged_non_stationary():
    r = equilibrium_test(brownian(2000, 3, seed=1), n_surrogates=19)
    assert not r.null_model.stationary and "unit root" in r.verdict
    # no verdict either way: neither "out of" nor "no evidence against" equilibrium
    assert r.status is EquilibriumStatus.NOT_STATIONARY and not r.testable
    assert not r.stationary and not r.out_of_equilibrium
    assert r.verdict.startswith("Not testable") and "No evidence" not in r.verdict
    assert r.summary()["status"] == "not testable: not stationary"
    # Dickey–Fuller: random walks are flagged in nearly every seed
    assert sum(not fit_ou(brownian(2000, 2, seed=s)).stationary for s in range(20)) >= 19
    assert fit_ou(rotated_ou(0.5, 2000, seed=1)[0]).stationary


def test_errors():
    x = brownian(200, 3, seed=0)
    with pytest.raises(ValueError, match="at least 500 are needed for lags up to 50"):
        equilibrium_test(x, lags=[1, 50])
    with pytest.raises(ValueError, match=r"at least 200 are needed for the flux test"):
        equilibrium_test(x[:199])  # the documented minimum (T = 120 used to fail inside the flux)
    with pytest.raises(
        ValueError, match="'lags' parameter of equilibrium_test must be a non-empty"
    ):
        equilibrium_test(x, lags=[0])
    with pytest.raises(ValueError, match="'alpha' parameter of equilibrium_test"):
        equilibrium_test(x, alpha=0)
    with pytest.raises(ValueError, match="'n_components' parameter of equilibrium_test"):
        equilibrium_test(x, n_components=1)
    with pytest.raises(ValueError, match="'segment_length' parameter of equilibrium_test"):
        equilibrium_test(x, segment_length=4)
    with pytest.raises(ValueError, match="detailed balance cannot be broken in one dimension"):
        equilibrium_test(x[:, :1])
    with pytest.raises(ValueError, match="'bins' parameter of equilibrium_test"):
        equilibrium_test(x, bins=1)
    with pytest.raises(ValueError, match="'n_surrogates' parameter of equilibrium_test"):
        equilibrium_test(x, n_surrogates=10)
    with pytest.raises(ValueError, match="'dt' parameter of entropy_production"):
        entropy_production(x, dt=0)
    with pytest.raises(ValueError, match="'n_surrogates' parameter of irreversibility"):
        irreversibility(x, n_surrogates=3)


# --- the fast paths against the slow exact ones --------------------------------------------


def _slow_null(fit, n, n_surrogates, seed, lags, ac_lags, bins, seg):
    """The sequential loop: one surrogate after another, the reference _statistics."""
    from sgdscope.trajectory.analysis import equilibrium as eq

    rng = np.random.default_rng(seed)
    out = [
        eq._statistics(fit.simulate_null(n, rng), lags, ac_lags, bins, seg)
        for _ in range(n_surrogates)
    ]
    return np.array([o[0] for o in out]), np.array([o[1].entropy_production for o in out])


@pytest.mark.parametrize("q", [0.0, 0.8])
def test_fast_statistics_and_vectorised_surrogates_match_the_loop(q):
    from sgdscope.trajectory.analysis import equilibrium as eq

    x, *_ = rotated_ou(q, 1500, seed=4)
    x = np.c_[x, 0.3 * x[:, :1] + np.random.default_rng(0).standard_normal((1500, 1))]
    lags, ac_lags, bins, seg = np.array([1, 3]), np.array([1, 2, 5, 20, 150]), 12, 187
    slow, fit = eq._statistics(x, lags, ac_lags, bins, seg)
    fast, _ = eq._statistics_fast(np.ascontiguousarray(x.T), lags, ac_lags, bins, seg)
    np.testing.assert_allclose(fast, slow, rtol=1e-9)
    ref_null, ref_sigma = _slow_null(fit, 1500, 23, 5, lags, ac_lags, bins, seg)
    for threads in (1, 2):
        null, sigma = eq._null_statistics(
            fit.null_paths,
            x.shape[1],
            1500,
            23,
            np.random.default_rng(5),
            lambda s: eq._statistics_fast(s, lags, ac_lags, bins, seg),
            threads,
        )
        np.testing.assert_allclose(null, ref_null, rtol=1e-8)
        np.testing.assert_allclose(sigma, ref_sigma, rtol=1e-8)


def test_p_values_equal_the_sequential_reference():
    """Same seed: equilibrium_test's p-values are those of the one-surrogate-at-a-time loop."""
    from sgdscope.trajectory.analysis import equilibrium as eq
    from sgdscope.trajectory.analysis.irreversibility import default_lags

    x, *_ = rotated_ou(0.0, 2000, seed=6)
    res = equilibrium_test(x, n_surrogates=49, seed=7)
    y = x - x.mean(axis=0)
    fit = fit_ou(y)
    lags = default_lags(2000, fit)
    ac_lags = np.unique(np.round(np.geomspace(1, 200, 16)).astype(np.int64))
    obs, _ = eq._statistics(y, lags, ac_lags, 12, 250, fit)
    null, _ = _slow_null(fit, 2000, 49, 7, lags, ac_lags, 12, 250)
    for j, name in enumerate(eq.COMPONENTS):
        p = (1 + np.count_nonzero(null[:, j] >= obs[j])) / 50
        assert res.components[name].p_value == p, name
    assert 0.05 < res.p_value < 1  # a null case: the p-value is not at its floor


def test_float32_memmap_gives_the_float64_p_values(tmp_path):
    x, *_ = rotated_ou(0.3, 3000, seed=2)
    rng = np.random.default_rng(1)
    wide = (
        x @ np.linalg.qr(rng.standard_normal((30, 30)))[0][:2] * 4
        + 0.3 * rng.standard_normal((3000, 30))
        + 100.0
    )
    np.save(tmp_path / "w.npy", wide.astype(np.float32))
    x32 = np.load(tmp_path / "w.npy", mmap_mode="r")
    a = equilibrium_test(x32, n_surrogates=39, seed=3)
    b = equilibrium_test(np.asarray(x32, dtype=np.float64), n_surrogates=39, seed=3)
    assert a.p_value == b.p_value
    assert {k: c.p_value for k, c in a.components.items()} == {
        k: c.p_value for k, c in b.components.items()
    }
    assert a.statistic == pytest.approx(b.statistic, rel=1e-6)


# --- minimum length, collinear coordinates, extreme scales -----------------------------------


def test_minimum_length_is_checked_up_front():
    x, *_ = rotated_ou(0.0, 200, seed=0)
    equilibrium_test(x, n_surrogates=19)  # the documented minimum works end to end
    with pytest.raises(ValueError, match="has 199 snapshots, but at least 200 are needed"):
        equilibrium_test(x[:199], n_surrogates=19)


@pytest.mark.parametrize("d", [2, 5])
def test_collinear_coordinates_are_refused_by_name(d):
    z = np.random.default_rng(0).standard_normal((3000, 1))
    x = z * np.arange(1.0, d + 1.0)  # rank 1
    with pytest.raises(ValueError, match=r"collinear coordinates .* rank 1 < k = 2 .* Drop"):
        equilibrium_test(x, seed=0, n_surrogates=19)


@pytest.mark.parametrize("exponent", [1000, -1000])
def test_extreme_scales_give_the_unscaled_p_values(exponent):
    """x·2^±1000 (≈ 1e±301): rescaled by the same power of two, so the result is x's exactly."""
    x, *_ = rotated_ou(0.5, 2000, seed=1)
    ref = equilibrium_test(x, n_surrogates=19, seed=0)
    res = equilibrium_test(np.ldexp(x, exponent), n_surrogates=19, seed=0)
    assert res.p_value == ref.p_value and res.statistic == ref.statistic
    assert "rescaled by this power of two" in res.plane


def test_a_trending_record_gets_no_verdict_even_when_it_circulates():
    x, *_ = rotated_ou(0.8, 2000, seed=3)
    r = equilibrium_test(x, n_surrogates=49)
    assert r.status is EquilibriumStatus.OUT_OF_EQUILIBRIUM and r.stationary
    drift = x + np.outer(np.linspace(0.0, 3.0, 2000), [1.0, 0.5])  # ~4 sd over the record
    d = equilibrium_test(drift, n_surrogates=49)
    assert d.status is EquilibriumStatus.NOT_STATIONARY and not d.out_of_equilibrium
    assert "trend" in d.verdict and d.p_value <= 0.05  # the p-value is still reported


# --- velocities: the state is (x, v), v odd under time reversal -------------------------------

_K = np.array([[1.0, 0.3], [0.3, 0.5]])


def _oscillator(T, seed, drive=0.0):
    f = np.zeros((4, 4))
    f[2:, :2] = drive * J  # a rotational, non-conservative force on the positions
    return underdamped(_K, 0.4 * np.eye(2), np.eye(2), 0.3, T, seed, drive=f)


def test_underdamped_equilibrium_is_not_rejected_with_parity_but_is_without():
    ps, blind = [], []
    for s in range(24):
        x, v = _oscillator(2000, s)
        r = equilibrium_test(x, v, n_surrogates=49, seed=s)
        assert r.stationary and r.odd.tolist() == [False, False, True, True]
        ps.append(r.p_value)
        blind.append(equilibrium_test(np.c_[x, v], n_components=4, n_surrogates=49, seed=s))
    ps = np.array(ps)
    assert stats.kstest(ps, "uniform").pvalue > 0.01 and np.mean(ps < 0.05) <= 0.15
    assert all(b.out_of_equilibrium for b in blind)  # it mistakes the rotation for a current
    assert "odd velocities" in r.verdict or r.out_of_equilibrium


def test_driven_underdamped_process_is_rejected_with_parity():
    x, v = _oscillator(2000, 1, drive=0.4)
    r = equilibrium_test(x, v, n_surrogates=49)
    assert r.out_of_equilibrium and r.entropy.definition == "parity-kl"
    assert "with the velocities flipped" in r.verdict and r.entropy.corrected > 0


def test_heavy_ball_sgd_with_commuting_noise_is_reversible_in_phase_space():
    """Heavy-ball SGD on a quadratic: (midpoint, buffer) is odd exactly; non-commuting noise
    (Kunin et al. 2021; Lemma 20 for plain SGD) gives a phase-space current."""
    H = np.diag([1.0, 0.3])
    ps = []
    for s in range(12):
        x, b = heavy_ball(H, np.diag([1.0, 0.5]), 0.1, 0.9, 3000, seed=s)
        ps.append(equilibrium_test(x + 0.05 * b, b, n_surrogates=49, seed=s).p_value)
    assert np.mean(np.array(ps) < 0.05) <= 0.2
    x, b = heavy_ball(H, np.array([[1.0, 0.28], [0.28, 0.5]]), 0.1, 0.9, 3000, seed=0)
    assert equilibrium_test(x + 0.05 * b, b, n_surrogates=49).out_of_equilibrium


@pytest.mark.parametrize("drive", [0.0, 0.4])
def test_parity_statistics_fast_equal_slow_and_surrogates_equal_the_loop(drive):
    from sgdscope.trajectory.analysis import equilibrium as eq
    from sgdscope.trajectory.analysis.ou import pair_entropy_rate, parity_null

    x, v = _oscillator(1200, 2, drive=drive)
    y = np.c_[x, v]
    odd = np.array([False, False, True, True])
    lags, ac_lags, bins, seg = np.array([1, 3]), np.array([1, 2, 5, 20, 120]), 12, 150
    slow, fit = eq._statistics(y, lags, ac_lags, bins, seg, odd=odd)
    fast, _ = eq._statistics_fast(np.ascontiguousarray(y.T), lags, ac_lags, bins, seg, odd=odd)
    np.testing.assert_allclose(fast, slow, rtol=1e-9)
    null = parity_null(fit, odd, 1200)
    rng = np.random.default_rng(3)
    ref = [
        eq._statistics(null.simulate(1200, rng), lags, ac_lags, bins, seg, odd=odd)[0]
        for _ in range(5)
    ]
    got, sigma = eq._null_statistics(
        null.paths,
        4,
        1200,
        5,
        np.random.default_rng(3),
        lambda s: eq._statistics_fast(s, lags, ac_lags, bins, seg, None, odd),
        1,
        lambda yt, f: pair_entropy_rate(yt, odd),
    )
    np.testing.assert_allclose(got, np.array(ref), rtol=1e-8)
    assert np.all(sigma >= 0)


def test_velocities_are_projected_on_the_positions_directions():
    x, v = _oscillator(2000, 4, drive=0.2)
    rng = np.random.default_rng(5)
    embed = np.linalg.qr(rng.standard_normal((12, 2)))[0].T * 3.0  # (2, 12)
    noise = 0.05 * rng.standard_normal((2000, 12))
    wide = equilibrium_test(x @ embed + noise, v @ embed, n_surrogates=39, seed=1)
    proj = wide.projection
    xp, vp = proj.apply(x @ embed + noise), (v @ embed) @ proj.basis.T
    small = equilibrium_test(xp, vp, n_surrogates=39, seed=1)
    assert wide.p_value == small.p_value
    assert wide.statistic == pytest.approx(small.statistic, rel=1e-9)
    assert wide.plane.startswith("the phase space (positions and velocities) of the top-2 PCA")


def test_velocity_errors():
    x, v = _oscillator(300, 0)
    with pytest.raises(
        ValueError,
        match=r"'velocities' parameter of equilibrium_test must have "
        r"the positions' shape \(T, d\) = \(300, 2\)",
    ):
        equilibrium_test(x, v[:-1])
    bad = v.copy()
    bad[7, 1] = np.nan
    with pytest.raises(ValueError, match=r"'velocities' .* non-finite value .* snapshot 7, coord"):
        equilibrium_test(x, bad)
    with pytest.raises(ValueError, match="'velocities' parameter of equilibrium_test has 1 const"):
        equilibrium_test(x, np.c_[v[:, :1], np.ones(300)])
