r"""Irreversibility of the lagged covariance and the Gaussian entropy-production rate.

A stationary process in detailed balance is statistically invariant under time reversal, so its
lagged covariance :math:`C(\tau) = E[(x_{t+\tau}-m)(x_t-m)^\top]` is symmetric at every lag.
For the OU process of §V-A (eq. 15, Lemma 20), :math:`C(\tau) = e^{-F\tau}S` and
:math:`C(\tau)-C(\tau)^\top = 0` for all τ exactly when Q = 0 (Adhikari et al. 2023, arXiv
2306.03521). The null distribution of the statistic comes from surrogates of the reversible linear
model (:mod:`~sgdscope.trajectory.analysis.ou`), refitted like the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..._validation import check_int, check_real
from ..projection import Projection
from ._input import positions, project
from .ou import OUFit, fit_ou, null_distribution

__all__ = [
    "EntropyProduction",
    "Irreversibility",
    "entropy_production",
    "irreversibility",
]

# Snapshots needed per unit of the largest lag (C(τ) is averaged over ≥ 10 τ origins).
_PER_LAG = 10


def default_lags(n: int, fit: OUFit | None = None, slowest: float | None = None) -> np.ndarray:
    """Up to four log-spaced integer lags from 1 to min(T // 50, τ/4), τ the slowest relaxation.

    τ = −1/log μ_max in snapshots, from the fitted reversible model (μ_max = ``slowest`` when
    given: with velocities, the largest eigenvalue modulus of the parity null's transition
    matrix, since D, and hence the Q = 0 model, nearly vanishes on the positions). The
    antisymmetry of C(τ) peaks near τ, but the noise of Ĉ(τ) grows faster with the lag, so short
    lags have the most power (measured on the rotated OU of the tests: lag 1 alone beats lags up
    to τ).

    Returns:
        The lags, ascending int64 (at least the lag 1).
    """
    hi = max(1, n // 50)
    if slowest is None and fit is not None:
        slowest = float(np.abs(fit.null_coefficients).max())
    if slowest is not None:
        hi = min(hi, max(1, round(-0.25 / np.log(slowest))))
    return np.unique(np.round(np.geomspace(1, hi, 4)).astype(np.int64))


def check_lags(lags: Any, *, where: str) -> np.ndarray | None:
    """Validate user lags (ints ≥ 1) or pass None through."""
    if lags is None:
        return None
    arr = np.unique(np.atleast_1d(np.asarray(lags)))
    if arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in "iu" or arr.min() < 1:
        raise ValueError(
            f"the 'lags' parameter of {where} must be a non-empty sequence of ints ≥ 1, "
            f"got {lags!r}."
        )
    return arr.astype(np.int64)


def prepare(
    traj: Any,
    *,
    where: str,
    lags: np.ndarray | None,
    n_components: int,
    basis: np.ndarray | None,
    min_length: int = 50,
    min_why: str = "a linear model",
) -> tuple[np.ndarray, Projection | None, str, np.ndarray | None]:
    """Validate and project to (T, k); shared by the irreversibility tests."""
    n_components = check_int("n_components", n_components, where=where, low=1)
    need = max(min_length, _PER_LAG * int(lags.max())) if lags is not None else min_length
    why = f"lags up to {int(lags.max())} ({_PER_LAG}× the largest lag)" if lags is not None else ""
    x = positions(traj, where=where, min_length=need, why=why or min_why, check_values=False)
    y, proj, plane = project(x, n_components, basis, where=where)
    _refuse_collinear(y, plane, where)
    return y, proj, plane, lags


def _refuse_collinear(y: np.ndarray, plane: str, where: str) -> None:
    """A linear model needs a non-singular covariance of the k coordinates (S⁻¹ = U)."""
    k = y.shape[1]
    if k < 2:
        return
    w = np.linalg.eigvalsh(y.T @ y / y.shape[0])
    rank = int(np.count_nonzero(w > 1e-10 * w[-1]))
    if rank < k:
        raise ValueError(
            f"the 'traj' parameter of {where} has collinear coordinates in {plane}: their "
            f"covariance has rank {rank} < k = {k} (smallest/largest eigenvalue "
            f"{w[0] / w[-1]:.2g}), so no linear model can be fitted. Drop the redundant "
            f"coordinates, or pass a basis of {rank} independent directions (a current needs at "
            "least 2)."
        )


def parity_signs(odd: np.ndarray | None, k: int) -> np.ndarray:
    """(k, k) matrix of ε_i ε_j (ε = −1 on the coordinates that are odd under time reversal)."""
    eps = np.where(np.zeros(k, bool) if odd is None else odd, -1.0, 1.0)
    return eps[:, None] * eps[None, :]


def antisymmetric_covariance(
    y: np.ndarray, lags: np.ndarray, odd: np.ndarray | None = None
) -> np.ndarray:
    r"""Lagged-covariance asymmetry under time reversal, (L, k, k).

    :math:`\hat C(\tau)-\varepsilon\hat C(\tau)^\top\varepsilon` with
    :math:`\hat C(\tau)=\frac1T\sum_t(y_{t+\tau}-\bar y)(y_t-\bar y)^\top` and
    ε = diag(±1), −1 on the ``odd`` coordinates (velocities); ε = I by default.

    Returns:
        The asymmetries, one (k, k) matrix per lag.
    """
    yc = y - y.mean(axis=0)
    n = y.shape[0]
    flip = parity_signs(odd, y.shape[1])
    out = np.empty((lags.size, y.shape[1], y.shape[1]))
    for i, t in enumerate(lags):
        c = yc[t:].T @ yc[: n - t] / n
        out[i] = c - c.T * flip
    return out


def irreversibility_statistic(
    y: np.ndarray, lags: np.ndarray, odd: np.ndarray | None = None
) -> float:
    r""":math:`\|W\sum_\tau(\hat C(\tau)-\varepsilon\hat C(\tau)^\top\varepsilon)W\|_F^2` (scale-free).

    W = S_ε^{-1/2} with :math:`S_\varepsilon = (S + \varepsilon S\varepsilon)/2` (S itself
    without odd coordinates). The antisymmetric parts are summed before squaring: for a rotation
    they share a sign at lags below the relaxation time, so the signal adds coherently while the
    noise adds in quadrature.

    Returns:
        The statistic, ≥ 0 (0 for a path that looks the same reversed).
    """
    yc = y - y.mean(axis=0)
    s = yc.T @ yc / y.shape[0]
    if odd is not None:
        s = 0.5 * (s + s * parity_signs(odd, s.shape[0]))
    w, v = np.linalg.eigh(s)
    wh = (v / np.sqrt(np.maximum(w, w.max() * 1e-15))) @ v.T
    a = antisymmetric_covariance(y, lags, odd).sum(axis=0)
    return float(np.sum((wh @ a @ wh) ** 2))


def p_value_upper(observed: float, null: np.ndarray) -> float:
    """(1 + #{null ≥ observed}) / (n + 1): the Monte Carlo p-value (Davison & Hinkley 1997)."""
    return float((1.0 + np.count_nonzero(null >= observed)) / (null.size + 1.0))


@dataclass(frozen=True)
class Irreversibility:
    r"""Antisymmetric part of the lagged covariance and its test against the reversible null.

    Attributes:
        lags: (L,) lags τ in snapshots.
        antisymmetric: (L, k, k) :math:`\hat C(\tau)-\hat C(\tau)^\top` in the projected
            coordinates (entry [1, 0] − [0, 1] of a 2-D plane is positive for counter-clockwise
            rotation).
        statistic: :math:`\|S^{-1/2}\sum_\tau(\hat C(\tau)-\hat C(\tau)^\top)S^{-1/2}\|_F^2`,
            dimensionless.
        null: (n_surrogates,) the statistic on surrogates of the fitted Q = 0 model.
        p_value: Monte Carlo p-value, (1 + #{null ≥ statistic}) / (n_surrogates + 1).
        fit: The linear model fitted to the (projected) trajectory.
        projection: The projection used (None when the coordinates were kept).
        plane: Where the test was done, in words.
    """

    lags: np.ndarray
    antisymmetric: np.ndarray
    statistic: float
    null: np.ndarray
    p_value: float
    fit: OUFit
    projection: Projection | None
    plane: str

    def summary(self) -> dict:
        """Scalars for reports."""
        return {
            "statistic": self.statistic,
            "p_value": self.p_value,
            "null_mean": float(self.null.mean()),
            "lags": [int(t) for t in self.lags],
        }


def irreversibility(
    traj: Any,
    *,
    lags: Any = None,
    n_components: int = 2,
    basis: np.ndarray | None = None,
    n_surrogates: int = 199,
    seed: int | np.random.Generator | None = 0,
) -> Irreversibility:
    r"""Test :math:`C(\tau) = C(\tau)^\top` (detailed balance) on a trajectory.

    The trajectory is projected onto its top ``n_components`` principal components (or a given
    basis), the statistic of :class:`Irreversibility` is computed, and its null distribution is
    drawn from surrogates of the fitted reversible OU model (Q forced to 0, same D and stationary
    covariance; :func:`~sgdscope.trajectory.analysis.ou.fit_ou`), each refitted and whitened like
    the data.

    Args:
        traj: A Trajectory or an array of shape (T, d).
        lags: Integer lags ≥ 1; default up to 4 log-spaced lags from 1 to min(T // 50, τ/4), τ
            the slowest relaxation time of the fitted model. T must be at least 10× the largest
            lag.
        n_components: Dimension k of the projection (d ≤ k: no projection).
        basis: Optional (k, d) basis (one direction per row) instead of PCA.
        n_surrogates: Surrogates for the null (≥ 19).
        seed: Seed or Generator for the surrogates.

    Returns:
        An :class:`Irreversibility`.

    Raises:
        ValueError: If an argument is out of range or the trajectory is too short, constant or
            not finite.
    """
    where = "irreversibility"
    n_surrogates = check_int("n_surrogates", n_surrogates, where=where, low=19)
    lag_arr = check_lags(lags, where=where)
    y, proj, plane, lag_arr = prepare(
        traj, where=where, lags=lag_arr, n_components=n_components, basis=basis
    )
    fit = fit_ou(y)
    lag_arr = default_lags(y.shape[0], fit) if lag_arr is None else lag_arr
    stat = irreversibility_statistic(y, lag_arr)
    null = null_distribution(
        fit, y.shape[0], n_surrogates, lambda s: irreversibility_statistic(s, lag_arr), seed
    )[:, 0]
    return Irreversibility(
        lags=lag_arr,
        antisymmetric=antisymmetric_covariance(y, lag_arr),
        statistic=stat,
        null=null,
        p_value=p_value_upper(stat, null),
        fit=fit,
        projection=proj,
        plane=plane,
    )


@dataclass(frozen=True)
class EntropyProduction:
    r"""Gaussian (linear-model) entropy-production rate, with its bias under the null.

    Attributes:
        rate: Plug-in :math:`\hat\sigma = \operatorname{tr}(\hat Q^\top\hat D^{-1}\hat Q\hat U)`
            per unit time (k_B = 1), of the fitted OU model in the projected coordinates.
        bias: Mean of the same estimator on reversible surrogates (true σ = 0): the estimator's
            upward bias at this T, k and D.
        corrected: max(rate − bias, 0).
        null_std: Standard deviation of the estimator on the surrogates.
        p_value: Monte Carlo p-value of ``rate`` against the surrogates.
        dt: Time between snapshots.
        fit: The fitted linear model.
        interval: (low, high) confidence interval for the rate, from a parametric bootstrap
            of the fitted model (:func:`~sgdscope.trajectory.analysis.subspace_currents`); None
            where it was not computed.
        confidence: Its confidence level (None with no interval).
        definition: ``"ou"`` for tr(Qᵀ D⁻¹ Q U) of the fitted OU process, or ``"parity-kl"``
            for the Gaussian Kullback–Leibler rate between the one-step law of the path and
            its time reverse with the velocities flipped
            (:func:`~sgdscope.trajectory.analysis.ou.pair_entropy_rate`; per snapshot), used
            with velocities, where D nearly vanishes on the positions.
    """

    rate: float
    bias: float
    corrected: float
    null_std: float
    p_value: float
    dt: float
    fit: OUFit
    interval: tuple[float, float] | None = None
    confidence: float | None = None
    definition: str = "ou"

    @classmethod
    def against_null(
        cls, rate: float, null: np.ndarray, *, dt: float, fit: OUFit, **extra: Any
    ) -> EntropyProduction:
        """The rate with its bias, spread and p-value from the same estimator on ``null``.

        Args:
            rate: The estimate on the data.
            null: The same estimator on reversible surrogates (true σ = 0).
            dt: Time between snapshots.
            fit: The fitted linear model.
            **extra: ``interval``, ``confidence``, ``definition``.

        Returns:
            The :class:`EntropyProduction`.
        """
        bias = float(null.mean())
        return cls(
            rate=rate, bias=bias, corrected=max(rate - bias, 0.0), null_std=float(null.std()),
            p_value=p_value_upper(rate, null), dt=dt, fit=fit, **extra,
        )  # fmt: skip

    def summary(self) -> dict:
        """Scalars for reports."""
        out = {
            "rate": self.rate,
            "bias": self.bias,
            "corrected": self.corrected,
            "p_value": self.p_value,
            "dt": self.dt,
            "definition": self.definition,
        }
        if self.interval is not None:
            out["interval"] = [float(v) for v in self.interval]
            out["confidence"] = self.confidence
        return out


def entropy_production(
    traj: Any,
    *,
    dt: float = 1.0,
    n_components: int = 2,
    basis: np.ndarray | None = None,
    n_surrogates: int = 199,
    seed: int | np.random.Generator | None = 0,
) -> EntropyProduction:
    r"""Entropy-production rate of the linear model fitted to a trajectory.

    For :math:`dx = -F(x-m)dt + \sqrt{2D}dW` with F = (D + Q)U (Lemma 20), the steady-state
    entropy production is :math:`\sigma = \operatorname{tr}(Q^\top D^{-1} Q U)`; for D = U = I
    and Q = q [[0, 1], [−1, 0]] it is 2q². It only sees the part of the irreversibility that a
    linear model can represent in the k projected coordinates, so it is a lower bound on the
    coarse-grained rate when the model is right, and it ignores non-Gaussian currents.

    Bias: σ̂ ≥ 0, so sampling noise in Q̂ biases it upwards, by roughly O(k²/(T κ)) with κ the
    relaxation rate; the bias is measured on surrogates of the reversible (σ = 0) fit and
    subtracted in ``corrected``.

    Args:
        traj: A Trajectory or an array of shape (T, d).
        dt: Time between snapshots (> 0); the rate is per unit of this time.
        n_components: Dimension k of the projection.
        basis: Optional (k, d) basis (one direction per row) instead of PCA.
        n_surrogates: Surrogates for the bias (≥ 19).
        seed: Seed or Generator for the surrogates.

    Returns:
        An :class:`EntropyProduction`.

    Raises:
        ValueError: If an argument is out of range or the trajectory is invalid.
    """
    where = "entropy_production"
    dt = check_real("dt", dt, where=where, low=0.0, low_open=True)
    n_surrogates = check_int("n_surrogates", n_surrogates, where=where, low=19)
    y, _, _, _ = prepare(traj, where=where, lags=None, n_components=n_components, basis=basis)
    fit = fit_ou(y, dt=dt)
    null = null_distribution(
        fit, y.shape[0], n_surrogates, lambda s: fit_ou(s, dt=dt).entropy_production, seed
    )[:, 0]
    return EntropyProduction.against_null(fit.entropy_production, null, dt=dt, fit=fit)
