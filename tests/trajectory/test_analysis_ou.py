"""GaussianChain (exact VAR(1) laws), its entropy rate with parity, and the parity null."""

import numpy as np
import pytest
import scipy.linalg

from sgdscope.trajectory.analysis import GaussianChain, fit_ou
from sgdscope.trajectory.analysis.ou import fitted_chain, parity_null

from ._analysis_processes import J, ou, underdamped


def _chain(F, D, dt):
    S = scipy.linalg.solve_continuous_lyapunov(F, 2.0 * D)
    A = scipy.linalg.expm(-F * dt)
    return GaussianChain(mean=np.zeros(len(F)), A=A, noise=S - A @ S @ A.T, S=S, dt=dt)


def _oscillator(dt=0.3):
    K, g = np.array([[1.0, 0.3], [0.3, 0.5]]), 0.4
    F = np.block([[np.zeros((2, 2)), -np.eye(2)], [K, g * np.eye(2)]])
    D = np.block([[np.zeros((2, 2)), np.zeros((2, 2))], [np.zeros((2, 2)), g * np.eye(2)]])
    return F, D


def test_chain_moments_are_exact():
    F = np.eye(2) + 0.7 * J
    c = _chain(F, np.diag([1.0, 0.3]), 0.2)
    x = c.simulate(200_000, seed=0)
    np.testing.assert_allclose(np.cov(x.T, bias=True), c.S, atol=0.03)
    for t in (1, 4):
        emp = [np.mean(x[t:, i] * x[:-t, i]) / x[:, i].var() for i in range(2)]
        np.testing.assert_allclose(emp, c.autocorrelation([t])[0], atol=0.02)
    # the spectrum integrates to the variance, and the lag-1 autocovariance is its cosine moment
    f = np.linspace(-0.5, 0.5, 40_001)
    p = c.spectrum(f)
    np.testing.assert_allclose(np.trapezoid(p, f, axis=0), np.diag(c.S), rtol=1e-6)
    c1 = np.trapezoid(p * np.cos(2 * np.pi * f)[:, None], f, axis=0)
    np.testing.assert_allclose(c1, np.diag(c.A @ c.S), rtol=1e-5)


def test_batched_paths_equal_one_path_per_draw():
    c = _chain(np.eye(3) + 0.5 * np.pad(J, ((0, 1), (0, 1))), np.eye(3), 0.3)
    eps = np.random.default_rng(1).standard_normal((3, 50, 3))
    batch = c.paths(eps)

    def factor(c):  # L Lᵀ = c from the eigendecomposition
        w, v = np.linalg.eigh(c)
        return v * np.sqrt(np.maximum(w, 0))

    for b in range(3):
        x = np.empty((50, 3))
        x[0] = factor(c.S) @ eps[b, 0]
        for t in range(1, 50):  # the recursion by a plain loop
            x[t] = c.A @ x[t - 1] + factor(c.noise) @ eps[b, t]
        np.testing.assert_allclose(batch[b].T, x, atol=1e-10)


def test_entropy_rate_tends_to_the_ou_formula_and_vanishes_at_detailed_balance():
    q = 0.7  # D = U = I, Q = qJ: σ = tr(Qᵀ D⁻¹ Q U) = 2q²
    rates = [_chain(np.eye(2) + q * J, np.eye(2), dt).entropy_rate() for dt in (0.1, 0.01, 0.001)]
    errors = np.abs(np.array(rates) - 2 * q**2)
    assert errors[-1] < 2e-3 and errors[0] > errors[1] > errors[2]
    assert _chain(np.diag([1.0, 2.0]), np.eye(2), 0.1).entropy_rate() == pytest.approx(0, abs=1e-12)
    # an underdamped oscillator at equilibrium: no entropy production with the velocities odd,
    # but a parity-blind rate that is large (it mistakes the rotation for a current)
    F, D = _oscillator()
    c = _chain(F, D, 0.3)
    odd = np.array([False, False, True, True])
    assert c.entropy_rate(odd) == pytest.approx(0, abs=1e-9)
    assert c.entropy_rate() > 10


def test_parity_null_is_reversible_with_parity_and_keeps_the_oscillation():
    F, D = _oscillator()
    odd = np.array([False, False, True, True])
    x = _chain(F, D, 0.3).simulate(100_000, seed=2)
    fit = fit_ou(x, dt=0.3)
    null = parity_null(fit, odd, 100_000)
    eps = np.where(odd, -1.0, 1.0)
    m = null.A @ null.S
    np.testing.assert_allclose(m, eps[:, None] * m.T * eps[None, :], atol=1e-10)
    np.testing.assert_allclose(null.S, eps[:, None] * null.S * eps[None, :], atol=1e-12)
    np.testing.assert_allclose(null.A @ null.S @ null.A.T + null.noise, null.S, atol=1e-10)
    # the data are reversible with parity, so the null is close to the true chain
    np.testing.assert_allclose(null.A, scipy.linalg.expm(-F * 0.3), atol=0.02)


def test_parity_null_without_odd_coordinates_is_the_q0_null():
    fit = fit_ou(ou(np.eye(2) + 0.8 * J, np.eye(2), 0.2, 5000, seed=3))
    null = parity_null(fit, np.zeros(2, bool), 5000)
    np.testing.assert_allclose(null.A, fit.null_A, atol=1e-10)
    np.testing.assert_allclose(null.noise, fit.null_noise, atol=1e-10)


def test_fitted_chain_keeps_q_and_clips_unit_roots():
    x = ou(np.eye(2) + 0.8 * J, np.eye(2), 0.2, 20_000, seed=4)
    fit = fit_ou(x, dt=0.2)
    c = fitted_chain(fit, 20_000)
    np.testing.assert_allclose(c.A, fit.A)
    assert c.entropy_rate() == pytest.approx(2 * 0.8**2, rel=0.2)
    walk = np.random.default_rng(0).standard_normal((500, 2)).cumsum(axis=0)
    c = fitted_chain(fit_ou(walk), 500)
    assert np.abs(np.linalg.eigvals(c.A)).max() <= 1 - 1 / 500 + 1e-12


def test_underdamped_simulator_matches_its_lyapunov_covariance():
    # the test processes themselves: equipartition, ⟨v vᵀ⟩ = temperature, ⟨x vᵀ⟩ = 0
    x, v = underdamped(np.diag([1.0, 0.5]), 0.4 * np.eye(2), 0.5 * np.eye(2), 0.3, 100_000, 5)
    np.testing.assert_allclose(np.cov(v.T), 0.5 * np.eye(2), atol=0.03)
    np.testing.assert_allclose(np.cov(x.T), np.diag([0.5, 1.0]), atol=0.08)
    assert abs(np.mean(x * v)) < 0.02
