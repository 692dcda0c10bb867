"""MSD and the anomalous-diffusion exponent: Brownian motion (c = 1), ballistic (c = 2), OU."""

import numpy as np
import pytest

from sgdscope.trajectory.analysis import msd

from ._analysis_processes import brownian, ou


def test_brownian_exponent_is_one_within_interval():
    x = brownian(20000, 3, seed=0, sigma=0.5)
    r = msd(x, seed=1)
    assert r.interval[0] < 1.0 < r.interval[1]
    assert abs(r.exponent - 1.0) < 0.05
    # E MSD(τ) = τ tr Σ exactly: prefactor = d σ² = 0.75
    assert r.prefactor == pytest.approx(0.75, rel=0.1)


def test_brownian_interval_coverage_over_seeds():
    # the 90 % interval should contain c = 1 in most of 30 independent runs
    hits = [
        msd(brownian(4000, 2, seed=s), n_boot=200, confidence=0.9, seed=s).interval
        for s in range(30)
    ]
    cover = np.mean([lo < 1.0 < hi for lo, hi in hits])
    assert cover >= 0.7


def test_ballistic_exponent_is_two():
    t = np.arange(5000.0)[:, None]
    x = t * np.array([1.0, -2.0]) + 0.01 * brownian(5000, 2, seed=2)
    r = msd(x)
    assert r.exponent == pytest.approx(2.0, abs=0.01)


def test_msd_matches_direct_sum_and_ou_plateau():
    x = ou([[1.0]], [[1.0]], 0.5, 20000, seed=3)
    r = msd(x, lags=[1, 5, 200])
    direct = [np.mean((x[t:] - x[:-t]) ** 2) for t in (1, 5, 200)]
    np.testing.assert_allclose(r.msd, direct, rtol=1e-12)
    # stationary OU: MSD(τ) = 2 s² (1 − e^{−κτΔ}) with s² = D/κ = 1
    np.testing.assert_allclose(r.msd, 2 * (1 - np.exp(-0.5 * np.array([1, 5, 200]))), rtol=0.1)


def test_errors():
    x = brownian(500, 2, seed=0)
    with pytest.raises(ValueError, match="at least 1100 are needed for lags up to 100"):
        msd(x, lags=[1, 100])
    with pytest.raises(ValueError, match="at least 22 are needed"):
        msd(x[:10])
    with pytest.raises(ValueError, match="'lags' parameter of msd must hold lags ≥ 1"):
        msd(x, lags=[0, 2])
    with pytest.raises(ValueError, match="'lags' parameter of msd must hold at least two"):
        msd(x, lags=[3])
    with pytest.raises(ValueError, match="'n_boot' parameter of msd"):
        msd(x, n_boot=3)
    with pytest.raises(ValueError, match="'block_length' parameter of msd"):
        msd(x, block_length=0)
    with pytest.raises(ValueError, match="'confidence' parameter of msd"):
        msd(x, confidence=1.5)
    with pytest.raises(ValueError, match=r"at least 1025 are needed .* 10 bootstrap blocks of 100"):
        msd(x, block_length=100)
