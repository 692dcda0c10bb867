r"""Mean squared displacement and the anomalous-diffusion exponent (Kunin et al. 2021).

Long after the loss stops improving, Kunin et al. ("(Rethinking) the limiting dynamics of SGD",
arXiv 2107.09133) find that weights keep moving with :math:`\mathrm{MSD}(\tau)\propto\tau^{c}`
and c ≠ 1 (anomalous diffusion). Brownian motion has c = 1; a confined (stationary) process has
c → 0 at lags beyond its relaxation time; ballistic drift has c = 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..._validation import check_int, check_real
from ._input import as_generator, positions

__all__ = ["MSD", "msd"]

# The bootstrap needs at least this many blocks of origins.
_MIN_BLOCKS = 10
_COLS = 64


@dataclass(frozen=True)
class MSD:
    r"""Mean squared displacement against lag, with the fitted power law.

    Attributes:
        lags: (L,) lags τ in snapshots (≥ 1).
        msd: (L,) :math:`\frac{1}{T-\tau}\sum_t\|x_{t+\tau}-x_t\|^2` (summed over coordinates).
        exponent: c of the least-squares fit :math:`\log\mathrm{MSD} = \log a + c\log\tau`.
        prefactor: a of that fit.
        interval: (low, high) percentile moving-block bootstrap interval for c.
        confidence: Level of ``interval``.
        block_length: Length, in snapshots, of the blocks of time origins resampled.
        boot_exponents: (n_boot,) bootstrap replicates of c.
    """

    lags: np.ndarray
    msd: np.ndarray
    exponent: float
    prefactor: float
    interval: tuple[float, float]
    confidence: float
    block_length: int
    boot_exponents: np.ndarray

    def summary(self) -> dict:
        """Scalars for reports."""
        return {
            "exponent": self.exponent,
            "interval": list(self.interval),
            "confidence": self.confidence,
            "prefactor": self.prefactor,
            "lags": [int(self.lags[0]), int(self.lags[-1])],
        }


def _slope(log_lag: np.ndarray, log_msd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OLS slope and intercept of each row of log_msd (..., L) against log_lag (L,)."""
    xm = log_lag - log_lag.mean()
    slope = (log_msd - log_msd.mean(axis=-1, keepdims=True)) @ xm / (xm @ xm)
    return slope, log_msd.mean(axis=-1) - slope * log_lag.mean()


def msd(
    traj: Any,
    *,
    lags: Any = None,
    n_boot: int = 500,
    confidence: float = 0.95,
    block_length: int | None = None,
    seed: int | np.random.Generator | None = 0,
) -> MSD:
    r"""Mean squared displacement, its power-law exponent and a bootstrap interval.

    :math:`\mathrm{MSD}(\tau)=\frac{1}{T-\tau}\sum_{t=0}^{T-\tau-1}\|x_{t+\tau}-x_t\|^2`; the
    exponent c is the slope of log MSD on log τ. Its interval resamples, with replacement,
    blocks of consecutive time origins (moving-block bootstrap over non-overlapping blocks of
    length L, default L = max τ, so that displacements that share increments stay together),
    recomputes MSD at every lag from the same blocks, and refits c. For Brownian motion
    E MSD(τ) = τ tr Σ exactly, so c = 1.

    Args:
        traj: A Trajectory or an array of shape (T, d).
        lags: Integer lags ≥ 1 (at least two distinct); default 20 log-spaced lags from 1 to T // 20.
        n_boot: Bootstrap resamples (≥ 50).
        confidence: Level of the interval, in (0, 1).
        block_length: L; default the largest lag.
        seed: Seed or Generator for the bootstrap.

    Returns:
        An :class:`MSD`.

    Raises:
        ValueError: If lags are not ints ≥ 1, or the trajectory has fewer than
            max τ + 10 L snapshots (10 blocks of origins are needed for the bootstrap).

    Example:
        >>> x = np.random.default_rng(0).standard_normal((20000, 2)).cumsum(axis=0)
        >>> r = msd(x)
        >>> bool(r.interval[0] < 1.0 < r.interval[1])
        True
    """
    where = "msd"
    n_boot = check_int("n_boot", n_boot, where=where, low=50)
    confidence = check_real(
        "confidence", confidence, where=where, low=0.0, high=1.0, low_open=True, high_open=True
    )
    if lags is None:
        x = positions(traj, where=where, min_length=11 * 2, why="the default lags (T // 20 ≥ 2)")
        n = x.shape[0]
        lag_arr = np.unique(np.round(np.geomspace(1, max(2, n // 20), 20)).astype(np.int64))
    else:
        lag_arr = np.unique(np.atleast_1d(np.asarray(lags)))
        if lag_arr.dtype.kind not in "iu" or lag_arr.ndim != 1 or lag_arr.size < 2:
            raise ValueError(
                f"the 'lags' parameter of {where} must hold at least two distinct ints, "
                f"got {lags!r}."
            )
        if lag_arr.min() < 1:
            raise ValueError(
                f"the 'lags' parameter of {where} must hold lags ≥ 1, got {int(lag_arr.min())}."
            )
        x = None
    tmax = int(lag_arr.max())
    if block_length is not None:
        block_length = check_int("block_length", block_length, where=where, low=1)
    blen = tmax if block_length is None else block_length
    need = tmax + _MIN_BLOCKS * blen
    if x is None:
        x = positions(
            traj,
            where=where,
            min_length=need,
            why=f"lags up to {tmax} with {_MIN_BLOCKS} bootstrap blocks of {blen} origins",
        )
    n = x.shape[0]
    if n < need:
        raise ValueError(
            f"the 'traj' parameter of {where} has {n} snapshots, but at least {need} are needed "
            f"for lags up to {tmax} with {_MIN_BLOCKS} bootstrap blocks of {blen} origins. "
            "Record a longer trajectory or pass smaller lags / block_length."
        )
    sq = [np.zeros(n - int(t)) for t in lag_arr]
    for c0 in range(0, x.shape[1], _COLS):
        y = np.asarray(x[:, c0 : c0 + _COLS], dtype=np.float64)
        for i, t in enumerate(lag_arr):
            sq[i] += ((y[t:] - y[:-t]) ** 2).sum(axis=1)
    values = np.array([s.mean() for s in sq])
    log_lag = np.log(lag_arr.astype(float))
    c, loga = _slope(log_lag, np.log(values))
    nb = (n - tmax) // blen
    blocks = np.stack([s[: nb * blen].reshape(nb, blen).sum(axis=1) for s in sq])  # (L, nb)
    rng = as_generator(seed)
    pick = rng.integers(0, nb, size=(n_boot, nb))
    boot = blocks[:, pick].sum(axis=2).T / (nb * blen)  # (n_boot, L)
    boot_c, _ = _slope(log_lag, np.log(boot))
    tail = 50.0 * (1.0 - confidence)
    lo, hi = np.percentile(boot_c, [tail, 100.0 - tail])
    return MSD(
        lags=lag_arr,
        msd=values,
        exponent=float(c),
        prefactor=float(np.exp(loga)),
        interval=(float(lo), float(hi)),
        confidence=confidence,
        block_length=blen,
        boot_exponents=boot_c,
    )
