"""subspace_currents: per-plane statistics against the 2-D test, max-T against a brute-force loop,
calibration (omnibus and family-wise) and power, the entropy-production interval."""

import numpy as np
import pytest

from sgdscope.trajectory.analysis import (
    EquilibriumStatus,
    irreversibility,
    subspace_currents,
)
from sgdscope.trajectory.analysis.currents import step_down_max_t
from sgdscope.trajectory.analysis.irreversibility import irreversibility_statistic

from ._analysis_processes import brownian, ou


def plane_ou(q, T, seed, m=6, plane=(1, 4), dt=0.2):
    """OU in m dimensions, D = ½I, U = diag(1..3), current Q = ±q/2 in one plane only."""
    D = 0.5 * np.eye(m)
    U = np.diag(np.linspace(1.0, 3.0, m))
    Q = np.zeros((m, m))
    Q[plane] = q / 2
    Q[plane[::-1]] = -q / 2
    return ou((D + Q) @ U, D, dt, T, seed), D, Q, U


def test_plane_statistics_are_the_2d_tests_and_the_omnibus_the_kd_one():
    x, *_ = plane_ou(0.8, 3000, seed=0)
    r = subspace_currents(x, n_components=6, n_surrogates=19, n_bootstrap=19, dt=0.2)
    assert r.planes.shape == (15, 2)
    y = x - x.mean(axis=0)
    assert r.statistic == pytest.approx(irreversibility_statistic(y, r.lags), rel=1e-10)
    for (i, j), stat in zip(r.planes, r.plane_statistic, strict=True):
        two_d = irreversibility(x[:, [i, j]], lags=r.lags, n_surrogates=19).statistic
        assert 2 * stat**2 == pytest.approx(two_d, rel=1e-9)


def _max_t_loop(obs, null):
    """Westfall & Young's step-down max-T by explicit loops over the ordered hypotheses."""
    order = sorted(range(len(obs)), key=lambda i: -obs[i])
    out, prev = {}, 0.0
    for pos, i in enumerate(order):
        rest = order[pos:]
        count = sum(max(null[b, j] for j in rest) >= obs[i] for b in range(null.shape[0]))
        prev = max(prev, (1 + count) / (null.shape[0] + 1))
        out[i] = prev
    return np.array([out[i] for i in range(len(obs))])


def test_step_down_max_t_matches_the_loop_and_bounds():
    rng = np.random.default_rng(0)
    null = np.abs(rng.standard_normal((99, 7)))
    obs = np.abs(rng.standard_normal(7)) * np.array([1, 1, 4, 1, 1, 2.5, 1])
    adj = step_down_max_t(obs, null)
    np.testing.assert_allclose(adj, _max_t_loop(obs, null))
    raw = (1 + (null >= obs).sum(axis=0)) / 100
    single = (1 + (null.max(axis=1)[:, None] >= obs).sum(axis=0)) / 100
    assert np.all(adj >= raw - 1e-12) and np.all(adj <= single + 1e-12)


def test_a_current_in_one_plane_is_found_there_with_its_sign_and_rate():
    x, D, Q, U = plane_ou(1.0, 4000, seed=1)
    r = subspace_currents(
        x, n_components=6, n_surrogates=99, n_bootstrap=99, dt=0.2, confidence=0.98
    )
    assert r.status is EquilibriumStatus.OUT_OF_EQUILIBRIUM and r.p_value <= 0.02
    assert r.significant_planes == [(1, 4)]
    k = [tuple(p) for p in r.planes].index((1, 4))
    # the sign convention of the flux circulation: counter-clockwise in (i, j) when Q[i, j] > 0
    assert np.sign(r.plane_statistic[k]) == np.sign(Q[1, 4])
    sigma = np.trace(Q.T @ np.linalg.inv(D) @ Q @ U)
    lo, hi = r.entropy.interval
    assert lo <= sigma <= hi and lo > 0
    wt = np.sqrt(U)  # U is diagonal: whitened Q̃ = U^{1/2} Q U^{1/2}
    assert r.rotation_rates[0] == pytest.approx(abs((wt @ Q @ wt)[1, 4]), rel=0.15)
    assert "1 of 15 planes carry a current" in r.verdict


def test_null_calibration_small():
    ps, fwer, cover = [], [], []
    for s in range(24):
        x, *_ = plane_ou(0.0, 1500, seed=100 + s)
        r = subspace_currents(x, n_components=6, n_surrogates=49, n_bootstrap=49, dt=0.2, seed=s)
        ps.append(r.p_value)
        fwer.append(bool(r.significant_planes))
        cover.append(r.entropy.interval[0] == 0.0)
    assert np.mean(np.array(ps) < 0.05) <= 0.15
    assert np.mean(fwer) <= 0.15
    assert np.mean(cover) >= 0.8  # σ = 0 inside the 90 % interval


def test_projection_basis_and_non_stationary_record():
    x, *_ = plane_ou(1.0, 3000, seed=2)
    rng = np.random.default_rng(3)
    embed = np.linalg.qr(rng.standard_normal((30, 6)))[0].T  # (6, 30) orthonormal rows
    wide = x @ embed + 0.01 * rng.standard_normal((3000, 30))
    r = subspace_currents(wide, basis=embed, n_surrogates=49, n_bootstrap=19, dt=0.2)
    assert r.plane.startswith("the given 6-D basis") and r.significant_planes[0] == (1, 4)
    walk = subspace_currents(
        brownian(2000, 4, seed=0), n_components=4, n_surrogates=19, n_bootstrap=19
    )
    assert walk.status is EquilibriumStatus.NOT_STATIONARY and not walk.out_of_equilibrium
    assert walk.verdict.startswith("Not testable")
    import json

    json.dumps(r.summary())


def test_errors():
    x = brownian(400, 3, seed=0)
    with pytest.raises(ValueError, match="at least 400 are needed for a linear model in 20"):
        subspace_currents(x[:399], n_components=20)
    with pytest.raises(ValueError, match="'n_components' parameter of subspace_currents"):
        subspace_currents(x, n_components=1)
    with pytest.raises(ValueError, match="'confidence' parameter of subspace_currents"):
        subspace_currents(x, confidence=1.0)
    with pytest.raises(ValueError, match="'n_bootstrap' parameter of subspace_currents"):
        subspace_currents(x, n_bootstrap=5)
    with pytest.raises(ValueError, match="'dt' parameter of subspace_currents"):
        subspace_currents(x, dt=-1)
    with pytest.raises(ValueError, match="a current needs a plane"):
        subspace_currents(x[:, :1])


@pytest.mark.slow
def test_null_calibration_large_m10():
    ps, fwer = [], []
    for s in range(200):
        x, *_ = plane_ou(0.0, 2000, seed=1000 + s, m=10, plane=(2, 7))
        r = subspace_currents(x, n_components=10, n_surrogates=99, n_bootstrap=19, seed=s)
        ps.append(r.p_value)
        fwer.append(bool(r.significant_planes))
    assert np.mean(np.array(ps) < 0.05) <= 0.08
    assert np.mean(fwer) <= 0.08
