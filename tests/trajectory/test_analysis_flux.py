"""Probability flux (Battle et al. 2016): identities, the sign of Q, and Brownian motion."""

import numpy as np
import pytest
import scipy.linalg
from scipy import stats

from sgdscope.trajectory.analysis import probability_flux
from sgdscope.trajectory.analysis.flux import _circulation_of_field, _flux_field

from ._analysis_processes import brownian, rotated_ou


def test_circulation_equals_angular_momentum_of_field():
    y = np.random.default_rng(0).standard_normal((3000, 2)).cumsum(0)
    xe, ye, occ, flux, area, c = _flux_field(y, 15)
    assert _circulation_of_field(xe, ye, flux, c.mean(0)) == pytest.approx(area.sum(), rel=1e-10)
    assert occ.sum() == pytest.approx(1.0)
    # flux conservation: the net flux is the mean displacement per step of the cell centres
    np.testing.assert_allclose(flux.sum(axis=(0, 1)), (c[-1] - c[0]) / (len(y) - 1), atol=1e-12)


def test_fine_grid_circulation_matches_ou_closed_form():
    # E[x_t × x_{t+1}] = C(1)_{10} − C(1)_{01} with C(1) = e^{−FΔ} S (exact, discrete time)
    x, F, D, _Q = rotated_ou(1.0, 40000, seed=1)
    S = scipy.linalg.solve_continuous_lyapunov(F, 2 * D)
    C1 = scipy.linalg.expm(-F * 0.2) @ S
    exact = C1[1, 0] - C1[0, 1]
    r = probability_flux(x, bins=200, n_surrogates=99)
    assert r.circulation == pytest.approx(exact, rel=0.1)
    assert r.p_value <= 0.01


@pytest.mark.parametrize("q", [0.6, -0.6])
def test_sign_of_circulation_is_sign_of_q(q):
    x, _, _, Q = rotated_ou(q, 4000, seed=2)
    r = probability_flux(x, n_surrogates=199)
    assert np.sign(r.circulation) == np.sign(Q[0, 1])
    assert r.p_value < 0.01
    assert r.plane == "the 2 original coordinates"


def test_brownian_motion_has_no_significant_flux():
    r = probability_flux(brownian(5000, 2, seed=0))
    assert r.p_value > 0.05
    # and the p-values are roughly uniform over seeds (block time-reversal null)
    ps = [
        probability_flux(brownian(2000, 2, seed=s), seed=s, n_surrogates=199).p_value
        for s in range(40)
    ]
    assert stats.kstest(ps, "uniform").pvalue > 0.01


def test_flux_in_pca_plane_of_wide_trajectory():
    x, _, _, _Q = rotated_ou(0.8, 4000, seed=3)
    rng = np.random.default_rng(4)
    embed = np.linalg.qr(rng.standard_normal((6, 6)))[0][:, :2]
    wide = x @ embed.T + 0.01 * rng.standard_normal((4000, 6))
    r = probability_flux(wide)
    assert r.projection is not None and r.plane.startswith("the top-2 PCA plane")
    assert r.p_value < 0.01


def test_errors():
    x = brownian(300, 2, seed=0)
    with pytest.raises(ValueError, match="at least 400 are needed for 40 blocks"):
        probability_flux(x, n_blocks=40)
    with pytest.raises(ValueError, match="at least 2 coordinates"):
        probability_flux(x[:, :1])
    with pytest.raises(
        ValueError,
        match="'n_components' parameter of probability_flux must be an int in \\[2, 2\\]",
    ):
        probability_flux(x, n_components=3)
    with pytest.raises(ValueError, match="'bins' parameter of probability_flux"):
        probability_flux(x, bins=1)
    with pytest.raises(ValueError, match="'n_surrogates' parameter of probability_flux"):
        probability_flux(x, n_surrogates=5)
    with pytest.raises(ValueError, match="'n_blocks' parameter of probability_flux"):
        probability_flux(x, n_blocks=2)
