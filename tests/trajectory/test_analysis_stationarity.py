"""Stationarity diagnosis: ADF against a least-squares loop and statsmodels, the KPSS limit law,
calibration on stationary, unit-root and trending processes."""

import numpy as np
import pytest
from scipy import stats

from sgdscope.trajectory.analysis import fit_ou, stationarity
from sgdscope.trajectory.analysis.stationarity import (
    _adf_kpss,
    adf_p_value,
    bridge_cvm_sf,
    diagnose,
)

from ._analysis_processes import brownian, ou, rotated_ou, underdamped


def _adf_loop(y, p):
    """ADF t-statistic by a plain loop over the regression rows and numpy's lstsq."""
    rows, target = [], []
    for t in range(p + 1, len(y)):
        rows.append([y[t - 1]] + [y[t - j] - y[t - j - 1] for j in range(1, p + 1)] + [1.0])
        target.append(y[t] - y[t - 1])
    x, target = np.array(rows), np.array(target)
    coef, *_ = np.linalg.lstsq(x, target, rcond=None)
    resid = target - x @ coef
    s2 = resid @ resid / (len(target) - x.shape[1])
    return coef[0] / np.sqrt(s2 * np.linalg.inv(x.T @ x)[0, 0])


def test_adf_statistic_matches_the_regression_loop_and_statsmodels():
    y = np.random.default_rng(1).standard_normal(3000).cumsum()
    tau, _, _ = _adf_kpss(y, 8)
    assert tau == pytest.approx(_adf_loop(y, 8), rel=1e-10)
    # statsmodels 0.15.0, adfuller(y, maxlag=8, autolag=None, regression="c") on the same y
    # (checked once outside the test suite; statsmodels is not a dependency)
    assert tau == pytest.approx(-1.7585734826322796, rel=1e-9)
    assert adf_p_value(tau) == pytest.approx(0.40121397146786975, rel=1e-9)


def test_adf_p_values_are_uniform_on_random_walks():
    # MacKinnon's asymptotic p-values against the finite-sample law, by Monte Carlo
    ps = np.array(
        [adf_p_value(_adf_kpss(brownian(500, 1, seed=s)[:, 0], 4)[0]) for s in range(400)]
    )
    assert stats.kstest(ps, "uniform").pvalue > 0.01
    assert 0.02 <= np.mean(ps < 0.05) <= 0.09
    # and the published 5 % asymptotic critical value
    assert adf_p_value(-2.86154) == pytest.approx(0.05, abs=0.002)


def test_kpss_limit_law_matches_the_published_critical_values_and_monte_carlo():
    # Kwiatkowski et al. (1992), Table 1, level stationarity: 10 %, 5 %, 2.5 %, 1 %
    np.testing.assert_allclose(
        bridge_cvm_sf([0.347, 0.463, 0.574, 0.739]), [0.10, 0.05, 0.025, 0.01], atol=0.002
    )
    # ∫V² = Σ_k Z_k² / (kπ)² for a Brownian bridge (Karhunen–Loève), 20 000 draws
    rng = np.random.default_rng(0)
    w = 1.0 / (np.pi * np.arange(1, 2001)) ** 2
    draws = (rng.standard_normal((20000, 2000)) ** 2) @ w
    for x in (0.05, 0.2, 0.5, 1.0):
        assert bridge_cvm_sf(x)[0] == pytest.approx(np.mean(draws > x), abs=0.01)
    assert bridge_cvm_sf(0.0)[0] == 1.0


def test_kpss_with_ar_long_run_variance_is_calibrated_on_slow_ar1():
    # a kernel long-run variance with the usual bandwidth rejects nearly every such record
    rng = np.random.default_rng(3)
    ps = []
    for _ in range(100):
        e = rng.standard_normal(3000)
        y = np.empty(3000)
        y[0] = e[0] / np.sqrt(1 - 0.95**2)
        for t in range(1, 3000):
            y[t] = 0.95 * y[t - 1] + e[t]
        ps.append(bridge_cvm_sf(_adf_kpss(y, 7)[1])[0])
    assert np.mean(np.array(ps) < 0.05) <= 0.12


def _not_stationary(paths):
    out = {"any": 0, "unit root": 0, "trend": 0, "relaxation": 0}
    for y in paths:
        d = diagnose(y - y.mean(axis=0), fit_ou(y), plane="p")
        out["any"] += not d.stationary
        for key, word in (("unit root", "unit root"), ("trend", "trend"), ("relaxation", "span")):
            out[key] += any(word in r for r in d.reasons)
    return {k: v / len(paths) for k, v in out.items()}


def test_stationary_processes_pass_and_drifting_ones_fail():
    stat = _not_stationary([rotated_ou(q, 1000, seed=s)[0] for s in range(15) for q in (0, 0.8)])
    assert stat["any"] <= 0.1
    walks = _not_stationary([brownian(1000, 2, seed=s) for s in range(20)])
    assert walks["any"] == 1.0 and walks["unit root"] >= 0.9
    ramp = np.outer(np.linspace(0, 1, 2000), [1.5, 0.0])  # 2 stationary sd over the record
    trends = _not_stationary([rotated_ou(0, 2000, seed=s)[0] + ramp for s in range(20)])
    assert trends["trend"] >= 0.8 and trends["unit root"] == 0.0


def test_underdamped_equilibrium_relaxes_at_the_rate_of_f_not_of_d():
    # D vanishes on the positions, so the Q = 0 model never relaxes there; A's eigenvalues do
    x, v = underdamped(np.diag([1.0, 0.5]), 0.4 * np.eye(2), np.eye(2), 0.3, 3000, seed=0)
    d = stationarity(np.c_[x, v], n_components=4)
    assert d.stationary, d.reasons
    assert 3000 / d.relaxations == pytest.approx(d.relaxation_times[0])
    assert d.relaxation_times[0] < 3000 / 20


def test_summary_message_and_errors():
    d = stationarity(brownian(500, 3, seed=0))
    assert not d.stationary and d.message.startswith("Not stationary in the top-2 PCA plane")
    assert d.summary()["stationary"] is False and len(d.summary()["adf_p_value"]) == 2
    ok = stationarity(ou(np.eye(2), np.eye(2), 0.5, 2000, seed=1))
    assert ok.stationary and ok.message.startswith("Stationary") and ok.reasons == ()
    x = brownian(300, 2, seed=0)
    with pytest.raises(ValueError, match="'alpha' parameter of stationarity"):
        stationarity(x, alpha=0)
    with pytest.raises(ValueError, match="'trend_alpha' parameter of stationarity"):
        stationarity(x, trend_alpha=1.5)
    with pytest.raises(ValueError, match=r"'adf_lags' parameter of stationarity .* 10 snapshots"):
        stationarity(x, adf_lags=31)
    with pytest.raises(ValueError, match="'dt' parameter of stationarity"):
        stationarity(x, dt=0)


@pytest.mark.slow
def test_stationarity_calibration_large():
    stat = _not_stationary([rotated_ou(0, 1000, seed=s)[0] for s in range(200)])
    assert stat["any"] <= 0.03
    walks = _not_stationary([brownian(1000, 2, seed=s) for s in range(200)])
    assert walks["any"] == 1.0
