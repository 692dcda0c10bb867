r"""Spectra, autocorrelations and the smoothed gradient norm: the paper's Fig. 3 (§IV-B).

For Brownian motion the increments :math:`x_{k+1}-x_k` are white, so their spectrum is flat, and
the autocorrelation of a stationary reversible process decays without oscillating. Chaudhari &
Soatto (2018, §IV-B, Remarks 17–18) read low-frequency modes in the increment spectrum, and
autocorrelations outside the ±2.576/√n band at lags of 10³–10⁵ epochs, as signs of limit cycles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.fft
import scipy.signal

from ..._validation import check_int, check_real
from ._input import as_generator, positions

__all__ = [
    "Autocorrelation",
    "GradientNorm",
    "PowerSpectrum",
    "autocorrelation",
    "ewma",
    "gradient_norm",
    "power_spectrum",
]

# Coordinates per chunk in the per-coordinate loops (bounds the float64 copy at T × 64).
_COLS = 64


def _density(x: np.ndarray, segment_length: int | None) -> tuple[np.ndarray, np.ndarray]:
    r"""Two-sided spectral density of each column of x (T, c) at the rfft frequencies.

    ``None``: the periodogram :math:`|\sum_t x_t e^{-2\pi i f t}|^2/T` of the mean-removed
    series. An int L: Welch's average of Hann-windowed periodograms of length L with 50 %
    overlap, normalised by :math:`\sum w^2` (Welch 1967). Both have expectation ≈ the density
    whose integral over f ∈ [−½, ½] is the variance.

    Returns:
        ``(frequency, density)``: the rfft frequencies (F,) in cycles per sample and the
        densities (F, c).
    """
    if segment_length is None:
        xc = x - x.mean(axis=0)
        p = np.abs(np.fft.rfft(xc, axis=0)) ** 2 / x.shape[0]
        return np.fft.rfftfreq(x.shape[0]), p
    n, L = x.shape[0], segment_length
    step = L // 2
    starts = np.arange(0, n - L + 1, step)
    w = scipy.signal.get_window("hann", L)
    segs = np.lib.stride_tricks.sliding_window_view(x, L, axis=0)[starts]  # (S, c, L)
    segs = (segs - segs.mean(axis=-1, keepdims=True)) * w
    p = (np.abs(np.fft.rfft(segs, axis=-1)) ** 2).sum(axis=0).T
    return np.fft.rfftfreq(L), p / (starts.size * np.sum(w**2))


@dataclass(frozen=True)
class PowerSpectrum:
    r"""Mean power spectrum over coordinates, with a bootstrap band (the paper's Fig. 3a).

    Attributes:
        frequency: (F,) in cycles per snapshot, from 0 to ½.
        mean: (F,) mean over coordinates of the two-sided spectral density (units of x² per
            cycle/snapshot).
        lower: (F,) lower end of the bootstrap band of the mean over coordinates.
        upper: (F,) upper end of that band.
        confidence: Level of the band (0.68 by default, seaborn ``tsplot``'s default that the
            paper's figure used: ``sns.tsplot`` in the authors' ``plot_current.py``,
            github.com/pratikac/grad-info, commit 4e1bd82).
        increments: Whether the spectrum is of the increments :math:`x_{k+1}-x_k` (else of the
            positions).
        segment_length: Welch segment length, or None for one periodogram of the whole series.
        n_coordinates: Number of coordinates averaged.
    """

    frequency: np.ndarray
    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    confidence: float
    increments: bool
    segment_length: int | None
    n_coordinates: int

    @property
    def peak_frequency(self) -> float:
        """Frequency (cycles per snapshot) of the largest mean power, excluding f = 0."""
        return float(self.frequency[1:][np.argmax(self.mean[1:])])

    def summary(self) -> dict:
        """Scalars for reports."""
        return {
            "peak_frequency": self.peak_frequency,
            "increments": self.increments,
            "segment_length": self.segment_length,
            "n_coordinates": self.n_coordinates,
            "n_frequencies": int(self.frequency.size),
        }


def power_spectrum(
    traj: Any,
    *,
    increments: bool = True,
    segment_length: int | None = None,
    n_boot: int = 200,
    confidence: float = 0.68,
    seed: int | np.random.Generator | None = 0,
) -> PowerSpectrum:
    r"""Spectrum of the increments (or positions) of each coordinate, averaged over coordinates.

    For each coordinate i, the two-sided spectral density of :math:`y^i_k = x^i_{k+1}-x^i_k`
    (increments) or of :math:`x^i_k`, either as one periodogram
    :math:`|\mathrm{rfft}(y^i - \bar y^i)|^2/T` (the paper's FFT, ``plot_current.py`` in the
    authors' code, squared and normalised) or Welch-averaged. The band is a percentile bootstrap of
    the mean over coordinates (coordinates resampled with replacement), as in the paper's Fig. 3a.
    White increments (Brownian motion with step variance σ²) give a flat spectrum at level σ².

    Args:
        traj: A Trajectory or an array of shape (T, d).
        increments: Spectrum of increments (True, the paper's Fig. 3a) or of positions.
        segment_length: None for the full-length periodogram, or Welch's segment length
            (in [8, T]).
        n_boot: Bootstrap resamples for the band (≥ 10).
        confidence: Level of the band, in (0, 1).
        seed: Seed or Generator for the bootstrap.

    Returns:
        A :class:`PowerSpectrum`.

    Raises:
        ValueError: If an argument is out of range or the trajectory is invalid (see
            :func:`~sgdscope.trajectory.analysis._input.positions`).

    Example:
        >>> x = np.random.default_rng(0).standard_normal((4096, 3)).cumsum(axis=0)
        >>> ps = power_spectrum(x, segment_length=256)
        >>> bool(abs(ps.mean[1:].mean() - 1.0) < 0.1)  # white unit increments: flat at 1
        True
    """
    where = "power_spectrum"
    n_boot = check_int("n_boot", n_boot, where=where, low=10)
    confidence = check_real(
        "confidence", confidence, where=where, low=0.0, high=1.0, low_open=True, high_open=True
    )
    x = positions(traj, where=where, min_length=9 if increments else 8, why="a spectrum")
    n = x.shape[0] - int(increments)
    if segment_length is not None:
        segment_length = check_int(
            "segment_length",
            segment_length,
            where=where,
            low=8,
            high=n,
            hint="Use None for one periodogram of the whole series.",
        )
    rng = as_generator(seed)
    d = x.shape[1]
    weights = rng.multinomial(d, np.full(d, 1.0 / d), size=n_boot).astype(float)
    total = None
    boot = None
    freq = None
    for c0 in range(0, d, _COLS):
        y = np.asarray(x[:, c0 : c0 + _COLS], dtype=np.float64)
        if increments:
            y = np.diff(y, axis=0)
        freq, p = _density(y, segment_length)
        if total is None:
            total = np.zeros(freq.size)
            boot = np.zeros((n_boot, freq.size))
        total += p.sum(axis=1)
        boot += weights[:, c0 : c0 + _COLS] @ p.T
    assert freq is not None and total is not None and boot is not None  # d ≥ 1 columns
    boot /= d
    tail = 50.0 * (1.0 - confidence)
    lower, upper = np.percentile(boot, [tail, 100.0 - tail], axis=0)
    return PowerSpectrum(
        frequency=freq,
        mean=total / d,
        lower=lower,
        upper=upper,
        confidence=confidence,
        increments=increments,
        segment_length=segment_length,
        n_coordinates=d,
    )


@dataclass(frozen=True)
class Autocorrelation:
    r"""Autocorrelation of each coordinate against lag (the paper's Fig. 3b).

    Attributes:
        lags: (L,) lags in snapshots.
        per_coordinate: (d, L) autocorrelation :math:`\hat\rho_i(\tau)` of each coordinate.
        mean: (L,) mean over coordinates.
        band95: 1.96/√n, the two-sided 95 % band of a white-noise autocorrelation.
        band99: 2.576/√n, the 99 % band (both drawn in the paper's figure).
        n_samples: n, the number of snapshots.
    """

    lags: np.ndarray
    per_coordinate: np.ndarray
    mean: np.ndarray
    band95: float
    band99: float
    n_samples: int

    @property
    def fraction_outside_99(self) -> np.ndarray:
        """(L,) fraction of coordinates whose autocorrelation lies outside ±``band99``."""
        return (np.abs(self.per_coordinate) > self.band99).mean(axis=0)

    def summary(self) -> dict:
        """Scalars for reports."""
        last = int(np.flatnonzero(np.abs(self.mean) > self.band99).max(initial=0))
        return {
            "n_samples": self.n_samples,
            "band99": self.band99,
            "last_lag_outside_band99": int(self.lags[last]),
        }


def _acf(y: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """(c, L) biased autocorrelation (statsmodels' ``acf``) of each column of y (T, c), by FFT."""
    n = y.shape[0]
    yc = y - y.mean(axis=0)
    m = scipy.fft.next_fast_len(2 * n)
    spec = np.fft.rfft(yc, n=m, axis=0)
    acov = np.fft.irfft(np.abs(spec) ** 2, n=m, axis=0)[: lags.max() + 1] / n
    return (acov[lags] / acov[0]).T


def autocorrelation(traj: Any, *, lags: Any = None) -> Autocorrelation:
    r"""Autocorrelation :math:`\hat\rho_i(\tau)=\hat c_i(\tau)/\hat c_i(0)` of every coordinate.

    :math:`\hat c_i(\tau) = \frac1n\sum_{t<n-\tau}(x^i_{t+\tau}-\bar x^i)(x^i_t-\bar x^i)` (the
    usual biased estimator, computed by FFT). Under white noise, √n ρ̂(τ) → N(0, 1), which gives the
    paper's ±1.96/√n and ±2.576/√n bands (Fig. 3b); for a correlated but reversible process these
    bands are too narrow, so they show memory, not non-equilibrium.

    Args:
        traj: A Trajectory or an array of shape (T, d).
        lags: Integer lags in [0, T − 1]; default the paper's ``arange(0, T, T // 100)``.

    Returns:
        An :class:`Autocorrelation`.

    Raises:
        ValueError: If a lag is not an integer in [0, T − 1], or the trajectory is invalid.

    Example:
        >>> x = np.random.default_rng(0).standard_normal((1000, 2))
        >>> ac = autocorrelation(x, lags=[0, 1, 5])
        >>> bool(abs(ac.mean[1]) < ac.band99)
        True
    """
    where = "autocorrelation"
    if lags is None:
        x = positions(traj, where=where, min_length=3)
        n = x.shape[0]
        lag_arr = np.arange(0, n, max(1, n // 100))
    else:
        lag_arr = np.atleast_1d(np.asarray(lags))
        if lag_arr.ndim != 1 or lag_arr.size == 0 or lag_arr.dtype.kind not in "iu":
            raise ValueError(
                f"the 'lags' parameter of {where} must be a non-empty 1-D sequence of ints, "
                f"got {lags!r}."
            )
        if lag_arr.min() < 0:
            raise ValueError(
                f"the 'lags' parameter of {where} must be ≥ 0, got {int(lag_arr.min())}."
            )
        need = int(lag_arr.max()) + 2
        x = positions(traj, where=where, min_length=need, why=f"lags up to {lag_arr.max()}")
        n = x.shape[0]
    lag_arr = lag_arr.astype(np.int64)
    per = np.concatenate(
        [
            _acf(np.asarray(x[:, c0 : c0 + _COLS], dtype=np.float64), lag_arr)
            for c0 in range(0, x.shape[1], _COLS)
        ]
    )
    return Autocorrelation(
        lags=lag_arr,
        per_coordinate=per,
        mean=per.mean(axis=0),
        band95=1.96 / np.sqrt(n),
        band99=2.576 / np.sqrt(n),
        n_samples=n,
    )


def ewma(x: Any, *, com: float = 100.0) -> np.ndarray:
    r"""Exponentially weighted moving average with centre of mass ``com`` (pandas ``adjust=True``).

    :math:`y_t = \sum_{s\le t}(1-\alpha)^{t-s}x_s \big/ \sum_{s\le t}(1-\alpha)^{t-s}` with
    :math:`\alpha = 1/(1+\mathrm{com})`; the paper smoothed ‖∇f‖/√d with ``pd.ewma(com=100)``
    (Fig. 3c; ``plot_current.py`` in the authors' code, github.com/pratikac/grad-info, commit
    4e1bd82).

    Args:
        x: 1-D series.
        com: Centre of mass, ≥ 0 (0 returns the series itself).

    Returns:
        The smoothed series, same length as x.

    Raises:
        ValueError: If x is not 1-D and finite, or com < 0.
    """
    com = check_real("com", com, where="ewma", low=0.0)
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1 or not np.isfinite(arr).all():
        raise ValueError(
            f"the 'x' parameter of ewma must be a finite 1-D series, got shape {arr.shape}"
            f"{'' if arr.ndim != 1 else ' with non-finite values'}."
        )
    r = 1.0 - 1.0 / (1.0 + com)
    num = scipy.signal.lfilter([1.0], [1.0, -r], arr)
    den = scipy.signal.lfilter([1.0], [1.0, -r], np.ones_like(arr))
    return num / den


@dataclass(frozen=True)
class GradientNorm:
    r"""The series :math:`\|\nabla f(x_k)\|/\sqrt d` and its EWMA (the paper's Fig. 3c).

    Attributes:
        steps: (T,) step (or snapshot) index of each value.
        value: (T,) ‖∇f‖/√d.
        smoothed: (T,) EWMA of ``value`` with centre of mass ``com``.
        com: Centre of mass of the EWMA (100 in the paper).
        dim: d used in the normalisation.
    """

    steps: np.ndarray
    value: np.ndarray
    smoothed: np.ndarray
    com: float
    dim: int

    def summary(self) -> dict:
        """Scalars for reports: first and last smoothed values and their ratio."""
        return {
            "first_smoothed": float(self.smoothed[0]),
            "last_smoothed": float(self.smoothed[-1]),
            "ratio_first_last": float(self.smoothed[0] / self.smoothed[-1])
            if self.smoothed[-1] > 0
            else float("inf"),
            "dim": self.dim,
        }


def gradient_norm(source: Any, *, dim: int | None = None, com: float = 100.0) -> GradientNorm:
    r"""Gradient norm per √d, raw and EWMA-smoothed, from a Trajectory or a series of norms.

    The norm is taken from, in order: a 1-D array of ‖∇f‖ (then ``dim`` is required); a
    Trajectory's ``scalars["grad_norm"]``; its recorded ``gradients`` (norm of each row).

    Args:
        source: A Trajectory, or a 1-D array of gradient norms ‖∇f(x_k)‖.
        dim: d for the normalisation; default the trajectory's ``dim``.
        com: EWMA centre of mass (the paper's 100).

    Returns:
        A :class:`GradientNorm`.

    Raises:
        ValueError: If no gradient norm is available, or ``dim`` is missing or not ≥ 1.
    """
    where = "gradient_norm"
    steps = None
    if hasattr(source, "weights") and not isinstance(source, np.ndarray):
        scalars = getattr(source, "scalars", None) or {}
        dim = source.dim if dim is None else dim
        steps = getattr(source, "steps", None)
        if "grad_norm" in scalars:
            norms = np.asarray(scalars["grad_norm"], dtype=np.float64)
        elif getattr(source, "gradients", None) is not None:
            g = source.gradients
            n_rows = g.shape[0]
            norms = np.concatenate(
                [
                    np.linalg.norm(np.asarray(g[t : t + 4096], dtype=np.float64), axis=1)
                    for t in range(0, n_rows, 4096)
                ]
            )
            steps = getattr(source, "gradient_steps", None)
        else:
            raise ValueError(
                f"the 'source' parameter of {where} has neither scalars['grad_norm'] nor "
                "recorded gradients. Record them (e.g. TrajectoryRecorder(..., gradients=...)) "
                "or pass a 1-D array of gradient norms with dim=."
            )
    else:
        norms = np.asarray(source, dtype=np.float64)
        if dim is None:
            raise ValueError(
                f"the 'dim' parameter of {where} is required when 'source' is an array of "
                "gradient norms, got None. Pass the number of parameters d."
            )
    dim = check_int("dim", dim, where=where, low=1)
    value = norms / np.sqrt(dim)
    steps = np.arange(value.size) if steps is None or len(steps) != value.size else steps
    return GradientNorm(
        steps=np.asarray(steps),
        value=value,
        smoothed=ewma(value, com=com),
        com=float(com),
        dim=dim,
    )
