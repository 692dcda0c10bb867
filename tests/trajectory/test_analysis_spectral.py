"""Spectra, autocorrelation, EWMA and gradient norm against closed forms."""

from typing import ClassVar

import numpy as np
import pytest
import scipy.signal

import sgdscope as sg
from sgdscope.trajectory.analysis import autocorrelation, ewma, gradient_norm, power_spectrum

from ._analysis_processes import brownian, ou, stuart_landau


def test_public_namespace():
    assert sg.analysis.power_spectrum is power_spectrum
    for name in sg.analysis.__all__:
        assert hasattr(sg.analysis, name)


def test_brownian_increments_have_flat_spectrum_at_step_variance():
    x = brownian(8192, 20, seed=0, sigma=0.5)
    ps = power_spectrum(x, segment_length=256, seed=1)
    # white increments of variance σ² have two-sided density σ² at every frequency (the first
    # Welch bin is depressed by removing each segment's mean)
    np.testing.assert_allclose(ps.mean[2:-1], 0.25, rtol=0.1)
    assert np.all(ps.lower <= ps.mean) and np.all(ps.mean <= ps.upper)


def test_ou_position_spectrum_matches_lorentzian():
    # AR(1) with coefficient a = e^{-κΔ}: density (1 − a²)·s²/|1 − a e^{−2πif}|²
    kappa, dt = 1.0, 0.5
    x = ou([[kappa]], [[1.0]], dt, 2**15, seed=3)
    a = np.exp(-kappa * dt)
    ps = power_spectrum(x, increments=False, segment_length=512)
    f = ps.frequency[1:]
    theory = (1 - a**2) * 1.0 / np.abs(1 - a * np.exp(-2j * np.pi * f)) ** 2
    ratio = ps.mean[1:] / theory
    assert abs(np.median(ratio) - 1) < 0.05


def test_periodogram_normalisation_is_parseval():
    x = np.random.default_rng(0).standard_normal((1000, 3))
    ps = power_spectrum(x, increments=False)
    # two-sided density on the rfft grid: Σ over all 1000 frequencies / T = variance
    full = np.abs(np.fft.fft(x - x.mean(0), axis=0)) ** 2 / 1000
    np.testing.assert_allclose(ps.mean, full.mean(axis=1)[: ps.frequency.size], atol=1e-12)
    np.testing.assert_allclose(full.sum(axis=0) / 1000, x.var(axis=0), rtol=1e-12)


def test_welch_matches_scipy():
    x = np.random.default_rng(2).standard_normal((3000, 2))
    ps = power_spectrum(x, increments=False, segment_length=200)
    f, p = scipy.signal.welch(x, nperseg=200, axis=0)
    p[1:-1] /= 2  # scipy's one-sided density
    np.testing.assert_allclose(ps.frequency, f)
    np.testing.assert_allclose(ps.mean, p.mean(axis=1), rtol=1e-10)


def test_stuart_landau_spectrum_peaks_at_rotation_frequency():
    x, f0 = stuart_landau(2000, seed=0)
    ps = power_spectrum(x, increments=False, segment_length=500)
    assert abs(ps.peak_frequency - f0) <= 2 * (ps.frequency[1] - ps.frequency[0])


def test_autocorrelation_of_ar1_is_geometric():
    a = np.exp(-0.25)
    x = ou([[1.0]], [[1.0]], 0.25, 50000, seed=4)
    ac = autocorrelation(x, lags=[0, 1, 2, 5, 10])
    np.testing.assert_allclose(ac.mean, a ** np.array([0, 1, 2, 5, 10]), atol=0.03)


def test_autocorrelation_matches_direct_sum_and_bands():
    x = np.random.default_rng(5).standard_normal((400, 3))
    ac = autocorrelation(x, lags=[0, 3, 7])
    xc = x - x.mean(0)
    direct = np.array([[np.sum(xc[t:, i] * xc[: 400 - t, i]) for t in (0, 3, 7)] for i in range(3)])
    np.testing.assert_allclose(ac.per_coordinate, direct / direct[:, :1], rtol=1e-10)
    assert ac.band95 == pytest.approx(1.96 / 20) and ac.band99 == pytest.approx(2.576 / 20)


def test_autocorrelation_default_lags_are_the_papers():
    ac = autocorrelation(np.random.default_rng(0).standard_normal((1000, 2)))
    np.testing.assert_array_equal(ac.lags, np.arange(0, 1000, 10))
    # white noise: about 1 % of the coordinates×lags fall outside the 99 % band
    assert ac.fraction_outside_99[1:].mean() < 0.03


def test_ewma_matches_pandas_adjust_formula():
    x = np.random.default_rng(0).standard_normal(300)
    com = 10.0
    r = 1 - 1 / (1 + com)
    direct = np.array(
        [
            np.sum(r ** np.arange(t, -1, -1) * x[: t + 1]) / np.sum(r ** np.arange(t + 1))
            for t in range(300)
        ]
    )
    np.testing.assert_allclose(ewma(x, com=com), direct, rtol=1e-12)
    np.testing.assert_allclose(ewma(np.full(50, 3.0)), 3.0)


def test_gradient_norm_from_array_and_trajectory_like():
    g = gradient_norm(np.full(10, 4.0), dim=16)
    np.testing.assert_allclose(g.value, 1.0)

    class Traj:
        weights = np.zeros((5, 4))
        scalars: ClassVar[dict] = {"grad_norm": np.array([2.0, 2.0, 2.0, 2.0, 2.0])}
        steps = np.arange(0, 50, 10)
        gradients = None
        dim = 4

        def __len__(self):
            return 5

    g = gradient_norm(Traj())
    np.testing.assert_allclose(g.smoothed, 1.0)
    np.testing.assert_array_equal(g.steps, Traj.steps)

    class WithGrads(Traj):
        scalars: ClassVar[dict] = {}
        gradients = np.full((5, 4), 0.5)

    np.testing.assert_allclose(gradient_norm(WithGrads()).value, 0.5)


def test_errors():
    x = brownian(100, 2, seed=0)
    with pytest.raises(ValueError, match="'n_boot' parameter of power_spectrum"):
        power_spectrum(x, n_boot=1)
    with pytest.raises(ValueError, match="'confidence' parameter of power_spectrum"):
        power_spectrum(x, confidence=1.0)
    with pytest.raises(
        ValueError, match=r"'segment_length' parameter of power_spectrum .* \[8, 99\]"
    ):
        power_spectrum(x, segment_length=500)
    with pytest.raises(ValueError, match="at least 52 are needed for lags up to 50"):
        autocorrelation(x[:40], lags=[0, 50])
    with pytest.raises(ValueError, match="'lags' parameter of autocorrelation must be ≥ 0"):
        autocorrelation(x, lags=[-1, 2])
    with pytest.raises(ValueError, match="'lags' parameter of autocorrelation must be a non-empty"):
        autocorrelation(x, lags=[0.5])
    with pytest.raises(ValueError, match="'x' parameter of ewma must be a finite 1-D"):
        ewma(np.ones((3, 2)))
    with pytest.raises(ValueError, match="'com' parameter of ewma"):
        ewma(np.ones(3), com=-1)
    with pytest.raises(ValueError, match="'dim' parameter of gradient_norm is required"):
        gradient_norm(np.ones(3))
    with pytest.raises(
        ValueError, match=r"'dim' parameter of gradient_norm must be an int in \[1, inf\]"
    ):
        gradient_norm(np.ones(3), dim=0)

    class NoGrad:
        weights = np.zeros((3, 2))
        scalars: ClassVar[dict] = {}
        gradients = None
        dim = 2

    with pytest.raises(ValueError, match="neither scalars\\['grad_norm'\\] nor recorded gradients"):
        gradient_norm(NoGrad())


def test_gradient_norm_from_recorded_full_gradients(tmp_path):
    # oracle: the full-data gradient of a linear least-squares model, computed by hand
    import torch

    from sgdscope import TrajectoryRecorder, load_trajectory

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1, bias=False)
    xs, ys = torch.randn(32, 3), torch.randn(32, 1)

    def loss_fn(out, target):
        return ((out - target) ** 2).sum(dim=1)

    path = tmp_path / "run"
    with TrajectoryRecorder(
        path, model, lr=0.1, batch_size=4, gradient_data=(xs, ys), loss_fn=loss_fn, gradient_every=2
    ) as rec:
        for _ in range(6):
            with torch.no_grad():
                model.weight -= 0.01
            rec.step()
    g = gradient_norm(load_trajectory(path), com=0)
    w = torch.tensor(load_trajectory(path).weights[:], dtype=torch.float64)[1::2]
    X, Y = xs.double(), ys.double()
    expected = [(2 * X.T @ (X @ wi[:, None] - Y) / 32).norm().item() / np.sqrt(3) for wi in w]
    np.testing.assert_allclose(g.value, expected, rtol=1e-4)
    np.testing.assert_array_equal(g.steps, [2, 4, 6])
