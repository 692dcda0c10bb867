r"""Is a trajectory stationary? Unit-root, level-stationarity and relaxation-time diagnostics.

Every test of detailed balance here (:func:`~sgdscope.trajectory.analysis.equilibrium_test`,
:func:`~sgdscope.trajectory.analysis.subspace_currents`) compares the record with a *stationary*
reversible model. A run that still drifts (a descending loss, a weight norm that keeps growing
under BatchNorm without weight decay, a random walk along a flat direction) has no stationary
state to compare with, and neither "out of equilibrium" nor "no evidence against equilibrium"
means anything there. Three checks, on each projected coordinate :math:`y_i`:

1. **Unit root** (augmented Dickey–Fuller; Dickey & Fuller 1979, Said & Dickey 1984): the
   regression :math:`\Delta y_t = a + \gamma y_{t-1} + \sum_{j=1}^{p}\phi_j\Delta y_{t-j} + e_t`
   and the t-statistic of γ; the null is a unit root (γ = 0). The p-value is MacKinnon's (1994,
   Table 3, constant, N = 1) response-surface approximation of the asymptotic law. The default
   p is Schwert's (1989) :math:`\lfloor 4(T/100)^{1/4}\rfloor`.
2. **Trend or level shift** (KPSS; Kwiatkowski, Phillips, Schmidt & Shin 1992): the statistic
   :math:`\eta = \sum_t S_t^2 / (T^2\hat\lambda^2)`, :math:`S_t` the partial sums of
   :math:`y - \bar y`; the null is level-stationarity. Its limit law is that of
   :math:`\int_0^1 V(r)^2\,dr`, V a Brownian bridge, which is the Cramér–von Mises ω² law,
   computed here exactly (Anderson & Darling 1952). The long-run variance is parametric,
   :math:`\hat\lambda^2 = \hat\sigma_e^2/\hat\gamma^2`, that of the autoregression fitted by the
   ADF regression (its lag polynomial at 1 is −γ): a kernel estimate with the usual bandwidths
   underestimates it badly for the slowly relaxing coordinates of a training run, and then
   rejects stationary records (an AR-based long-run variance, as in Sul, Phillips & Choi 2005).
3. **Relaxation times** of the linear (OU) model fitted to all coordinates together
   (:func:`~sgdscope.trajectory.analysis.ou.fit_ou`), :math:`1/(1-|\lambda_i|)` snapshots for
   the eigenvalues λ of its transition matrix :math:`A = e^{-F\Delta}` (so a rotation, or an
   underdamped oscillation whose D vanishes on the positions, relaxes at the rate of F, not of
   D), against the record length: a record that spans fewer than 20 of the slowest is too short
   for lagged covariances (this includes unit roots: a random walk's least-squares λ̂ is biased
   below 1, but :math:`T(1-\hat\lambda) > 20` in under 1 % of walks).

The record is called stationary when every coordinate rejects a unit root at level α (ADF; all
must, so no correction is needed), no coordinate rejects level-stationarity at α_trend/k (KPSS,
with a Bonferroni correction over the k coordinates), and the record spans at least 20
relaxation times. The two levels guard against different errors: α bounds the chance that a
unit root passes as stationary, α_trend the chance that a stationary record loses its verdict
to a trend that is not there, hence the defaults 0.05 and 0.01. Calibration (false "not stationary" rate on stationary OU processes, detection rate on
random walks and on trends) is in ``docs/benchmarks/equilibrium_test.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
import scipy.special
import scipy.stats

from ..._validation import check_int, check_real
from ..projection import Projection
from .irreversibility import prepare
from .ou import OUFit, fit_ou

__all__ = ["Stationarity", "stationarity"]

#: The record must span at least this many of the slowest relaxation times (as OUFit.stationary).
MIN_RELAXATIONS = 20

# MacKinnon (1994), Table 3, "c" (constant, no trend), N = 1: p = Φ(Σ_j c_j τ^j) with the
# small-p polynomial for τ ≤ τ*, the large-p one above, 0 below τ_min and 1 above τ_max.
_ADF_SMALL_P = (2.1659, 1.4412, 0.038269)
_ADF_LARGE_P = (1.7339, 0.93202, -0.12745, -0.010368)
_ADF_TAU_STAR, _ADF_TAU_MIN, _ADF_TAU_MAX = -1.61, -18.83, 2.74


def adf_p_value(tau: float) -> float:
    """MacKinnon's (1994) approximate asymptotic p-value of the ADF t-statistic (constant, N = 1)."""
    if tau > _ADF_TAU_MAX:
        return 1.0
    if tau < _ADF_TAU_MIN:
        return 0.0
    coef = _ADF_SMALL_P if tau <= _ADF_TAU_STAR else _ADF_LARGE_P
    return float(scipy.stats.norm.cdf(sum(c * tau**j for j, c in enumerate(coef))))


def bridge_cvm_sf(x: Any) -> np.ndarray:
    r""":math:`P(\int_0^1 V(r)^2 dr > x)` for a Brownian bridge V: the KPSS level test's limit law.

    This is the limiting Cramér–von Mises ω² law. Anderson & Darling (1952, eq. 4.35) give its
    distribution function as

    .. math:: F(x) = \frac{1}{\pi\sqrt x}\sum_{j\ge0}\binom{2j}{j}4^{-j}\sqrt{4j+1}\,
              e^{-u_j}K_{1/4}(u_j),\quad u_j = \frac{(4j+1)^2}{16x},

    evaluated with the exponentially scaled Bessel function (no underflow) until the terms are
    below 1e-17 of the sum.

    Returns:
        The tail probabilities, one per entry of ``x``.
    """
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    out = np.ones_like(x)
    pos = x > 0
    xp = x[pos]
    j = np.arange(200, dtype=np.float64)[:, None]
    u = (4 * j + 1) ** 2 / (16 * xp[None, :])
    log_w = scipy.special.gammaln(2 * j + 1) - 2 * scipy.special.gammaln(j + 1) - j * np.log(4.0)
    terms = np.exp(log_w - 2 * u) * np.sqrt(4 * j + 1) * scipy.special.kve(0.25, u)
    cdf = terms.sum(axis=0) / (np.pi * np.sqrt(xp))
    out[pos] = np.clip(1.0 - cdf, 0.0, 1.0)
    return out


def default_adf_lags(n: int) -> int:
    """Schwert's (1989) lag order ⌊4 (T/100)^¼⌋, at least 1 and at most T/10."""
    return int(max(1, min(np.floor(4.0 * (n / 100.0) ** 0.25), n // 10)))


def _adf_kpss(y: np.ndarray, p: int) -> tuple[float, float, float]:
    """ADF t-statistic, KPSS η and the AR long-run variance of one coordinate y (T,)."""
    n = y.size
    s = y.std()
    y = (y - y.mean()) / s
    dy = np.diff(y)
    rows = n - 1 - p  # targets Δy_t for t = p+1 .. T−1
    x = np.empty((p + 2, rows))  # one regressor per row (contiguous): y_{t−1}, Δy_{t−j}, 1
    x[0] = y[p : n - 1]
    for j in range(1, p + 1):
        x[j] = dy[p - j : n - 1 - j]
    x[p + 1] = 1.0
    target = dy[p:]
    # normal equations: the regressors are standardised and nearly orthogonal, and a QR of the
    # (T, p + 2) design costs 200× more (1.6 s against 8 ms at T = 10⁵, p = 22)
    factor = scipy.linalg.cho_factor(x @ x.T)
    coef = scipy.linalg.cho_solve(factor, x @ target)
    resid = target - coef @ x
    sigma2 = float(np.sum(resid * resid)) / (rows - p - 2)
    e0 = np.zeros(p + 2)
    e0[0] = 1.0
    se = np.sqrt(sigma2 * float(scipy.linalg.cho_solve(factor, e0)[0]))
    gamma = float(coef[0])
    tau = gamma / se
    lrv = sigma2 / gamma**2 if gamma < 0 else np.inf
    partial = np.cumsum(y)  # y has mean 0
    eta = float(np.sum(partial * partial)) / (n**2 * lrv) if np.isfinite(lrv) else 0.0
    return tau, eta, lrv * s**2


@dataclass(frozen=True)
class Stationarity:
    """Result of :func:`stationarity`: is the record stationary, and why not.

    Attributes:
        stationary: True when every check passed (see the module docstring).
        alpha: Level of the unit-root check (ADF).
        trend_alpha: Family-wise level of the trend check (KPSS) over the k coordinates.
        adf_statistic: (k,) ADF t-statistic per coordinate (more negative: stronger mean
            reversion).
        adf_p_value: (k,) its p-value against a unit root (MacKinnon 1994).
        adf_lags: Lagged differences p in the ADF regression.
        kpss_statistic: (k,) KPSS η per coordinate.
        kpss_p_value: (k,) its p-value against level-stationarity (Cramér–von Mises limit),
            before the Bonferroni correction (the check compares it with trend_alpha/k).
        relaxation_times: (k,) relaxation times 1/(1 − |λ|) of the fitted linear model's modes
            (λ the eigenvalues of its transition matrix A), slowest first, in units of ``dt``
            and at most the record length.
        record_length: T·dt.
        relaxations: record_length / the slowest relaxation time (at least 20 to pass).
        reasons: Why the record is not stationary, one sentence per failed check (empty when
            stationary).
        plane: Where the checks were done, in words.
        projection: The projection used (None when the coordinates were kept).
    """

    stationary: bool
    alpha: float
    trend_alpha: float
    adf_statistic: np.ndarray
    adf_p_value: np.ndarray
    adf_lags: int
    kpss_statistic: np.ndarray
    kpss_p_value: np.ndarray
    relaxation_times: np.ndarray
    record_length: float
    relaxations: float
    reasons: tuple[str, ...]
    plane: str
    projection: Projection | None = None

    @property
    def message(self) -> str:
        """One sentence: stationary, or the reasons it is not."""
        if self.stationary:
            return (
                f"Stationary in {self.plane}: a unit root is rejected in every coordinate, no "
                f"trend is detected, and the record spans {self.relaxations:.0f} relaxation times."
            )
        return f"Not stationary in {self.plane}: " + "; ".join(self.reasons) + "."

    def summary(self) -> dict:
        """A JSON-ready dict of the scalars and per-coordinate p-values."""
        return {
            "stationary": self.stationary,
            "alpha": self.alpha,
            "trend_alpha": self.trend_alpha,
            "adf_p_value": [float(v) for v in self.adf_p_value],
            "adf_lags": self.adf_lags,
            "kpss_p_value": [float(v) for v in self.kpss_p_value],
            "slowest_relaxation_time": float(self.relaxation_times[0]),
            "record_length": self.record_length,
            "relaxations": self.relaxations,
            "reasons": list(self.reasons),
        }


def diagnose(
    y: np.ndarray,
    fit: OUFit,
    *,
    alpha: float = 0.05,
    trend_alpha: float = 0.01,
    plane: str,
    adf_lags: int | None = None,
    projection: Projection | None = None,
    names: list[str] | None = None,
) -> Stationarity:
    """The checks of :func:`stationarity` on projected, validated coordinates y (T, k)."""
    n, k = y.shape
    p = default_adf_lags(n) if adf_lags is None else adf_lags
    adf = np.empty(k)
    eta = np.empty(k)
    for i in range(k):
        adf[i], eta[i], _ = _adf_kpss(y[:, i], p)
    adf_p = np.array([adf_p_value(t) for t in adf])
    kpss_p = bridge_cvm_sf(eta)
    lam = np.sort(np.abs(np.linalg.eigvals(fit.A)))[::-1]
    relax = fit.dt / np.maximum(1.0 - lam, 1.0 / n)
    length = n * fit.dt
    names = names or [f"coordinate {i}" for i in range(k)]
    reasons = []
    for j in np.flatnonzero(adf_p >= alpha):
        reasons.append(
            f"{names[j]} has a unit root (ADF p = {adf_p[j]:.3g} ≥ {alpha:g}: it drifts rather "
            "than fluctuates about a level)"
        )
    for j in np.flatnonzero(kpss_p < trend_alpha / k):
        reasons.append(
            f"{names[j]} has a trend or level shift (KPSS p = {kpss_p[j]:.2g} < "
            f"{trend_alpha:g}/{k})"
        )
    if n * (1.0 - lam[0]) <= MIN_RELAXATIONS:
        reasons.append(
            f"the record spans only {length / relax[0]:.1f} relaxation times of the fitted linear "
            f"model (fewer than {MIN_RELAXATIONS}; slowest {relax[0]:.3g})"
        )
    return Stationarity(
        stationary=not reasons,
        alpha=alpha,
        trend_alpha=trend_alpha,
        adf_statistic=adf,
        adf_p_value=adf_p,
        adf_lags=p,
        kpss_statistic=eta,
        kpss_p_value=kpss_p,
        relaxation_times=relax,
        record_length=float(length),
        relaxations=float(length / relax[0]),
        reasons=tuple(reasons),
        plane=plane,
        projection=projection,
    )


def stationarity(
    traj: Any,
    *,
    n_components: int = 2,
    basis: np.ndarray | None = None,
    alpha: float = 0.05,
    trend_alpha: float = 0.01,
    adf_lags: int | None = None,
    dt: float = 1.0,
) -> Stationarity:
    r"""Diagnose whether a trajectory is stationary, before testing it for detailed balance.

    The positions are projected as in :func:`~sgdscope.trajectory.analysis.equilibrium_test`
    (top ``n_components`` principal components, or a given basis) and each coordinate is checked
    for a unit root (ADF), for a trend or level shift (KPSS), and the fitted linear model's
    relaxation times are compared with the record length; see the module docstring for the
    statistics and the decision rule.

    Args:
        traj: A Trajectory or an array of shape (T, d), T ≥ 50.
        n_components: Dimension k of the projection (d ≤ k: no projection).
        basis: Optional (k, d) basis, one direction per row, instead of PCA.
        alpha: Level of the unit-root check, in (0, 1): the chance that a coordinate with a
            unit root passes it.
        trend_alpha: Family-wise level of the trend check over the k coordinates, in (0, 1):
            the chance that a stationary record is called trending. Small by default, since
            such a record loses its equilibrium verdict.
        adf_lags: Lagged differences in the ADF regression; default ⌊4 (T/100)^¼⌋ (Schwert 1989).
        dt: Time between snapshots (> 0), for the relaxation times.

    Returns:
        A :class:`Stationarity`.

    Raises:
        ValueError: If an argument is out of range or the trajectory is too short, constant or
            not finite.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> walk = rng.standard_normal((2000, 2)).cumsum(axis=0)
        >>> stationarity(walk).stationary
        False
    """
    where = "stationarity"
    alpha = check_real("alpha", alpha, where=where, low=0.0, high=1.0, low_open=True)
    trend_alpha = check_real(
        "trend_alpha", trend_alpha, where=where, low=0.0, high=1.0, low_open=True
    )
    dt = check_real("dt", dt, where=where, low=0.0, low_open=True)
    y, proj, plane, _ = prepare(
        traj, where=where, lags=None, n_components=n_components, basis=basis
    )
    if adf_lags is not None:
        adf_lags = check_int(
            "adf_lags",
            adf_lags,
            where=where,
            low=1,
            high=max(1, y.shape[0] // 10),
            hint="The ADF regression needs at least 10 snapshots per lag.",
        )
    fit = fit_ou(y, dt=dt)
    return diagnose(
        y,
        fit,
        alpha=alpha,
        trend_alpha=trend_alpha,
        plane=plane,
        adf_lags=adf_lags,
        projection=proj,
    )
