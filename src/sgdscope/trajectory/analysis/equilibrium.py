r"""``equilibrium_test``: is a trajectory in detailed balance, and how sure can one be?

It implements an equilibrium null model against the paper's reading of Fig. 3 (§IV-B, Remarks
17–18), since an equilibrium OU process with slow directions also has coloured increments and
long-lag autocorrelation: fit a linear (OU) model, force Q = 0 (Lemma 20), simulate surrogates from
it, and compare the real trajectory's irreversibility, flux, spectrum and autocorrelation with
theirs.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.fft
import scipy.signal

from ..._validation import check_int, check_real
from ..projection import Projection
from ._input import as_generator
from .flux import ProbabilityFlux, _flux_field, probability_flux
from .irreversibility import (
    EntropyProduction,
    Irreversibility,
    antisymmetric_covariance,
    check_lags,
    default_lags,
    irreversibility_statistic,
    p_value_upper,
    prepare,
)
from .ou import OUFit, _fit_from_moments, fit_ou
from .spectral import _acf, _density

__all__ = ["COMPONENTS", "EquilibriumTest", "equilibrium_test"]

# Snapshots needed: the flux component splits the path into 20 blocks of ≥ 10 steps.
_MIN_LENGTH = 200

#: The component statistics, in the order of ``EquilibriumTest.components``.
COMPONENTS = ("irreversibility", "circulation", "spectrum", "autocorrelation")


@dataclass(frozen=True)
class Component:
    """One component of the equilibrium test.

    Attributes:
        name: One of ``COMPONENTS``.
        statistic: Its value on the trajectory (larger = further from the reversible null).
        p_value: Its own Monte Carlo p-value against the surrogates.
        null: (n_surrogates,) its values on the surrogates.
        z_score: (statistic − mean(null)) / std(null).
    """

    name: str
    statistic: float
    p_value: float
    null: np.ndarray
    z_score: float


@dataclass(frozen=True)
class EquilibriumTest:
    r"""Result of :func:`equilibrium_test`.

    Attributes:
        statistic: The irreversibility statistic
            :math:`\|S^{-1/2}\sum_\tau(\hat C(\tau)-\hat C(\tau)^\top)S^{-1/2}\|_F^2`
            (dimensionless; 0 in expectation up to noise at detailed balance).
        p_value: Its Monte Carlo p-value against the reversible surrogates.
        out_of_equilibrium: ``p_value < alpha``.
        alpha: The level of the test.
        verdict: A plain-language sentence.
        effect_size: :math:`\|\hat Q\hat U\|_F/\|\hat D\hat U\|_F` of the fitted linear model
            (0 at detailed balance; rotation over relaxation).
        circulation: Signed circulation of the flux in the first two projected coordinates
            (> 0: counter-clockwise), from ``flux``.
        components: The component results, keyed by name (``COMPONENTS``).
        irreversibility: The lagged-covariance test on the same surrogates.
        flux: The coarse-grained flux field, with its own block time-reversal test.
        entropy: The Gaussian entropy-production rate and its bias on the same surrogates.
        null_model: The fitted linear model whose Q = 0 version generated the surrogates.
        projection: The projection used (None when the coordinates were kept).
        plane: Where the test was done, in words.
        n_surrogates: Number of surrogates.
    """

    statistic: float
    p_value: float
    out_of_equilibrium: bool
    alpha: float
    verdict: str
    effect_size: float
    circulation: float
    components: dict[str, Component]
    irreversibility: Irreversibility
    flux: ProbabilityFlux
    entropy: EntropyProduction
    null_model: OUFit
    projection: Projection | None
    plane: str
    n_surrogates: int

    def summary(self) -> dict:
        """A JSON-ready dict of the scalars (no arrays)."""
        return {
            "statistic": self.statistic,
            "p_value": self.p_value,
            "out_of_equilibrium": self.out_of_equilibrium,
            "alpha": self.alpha,
            "verdict": self.verdict,
            "effect_size": self.effect_size,
            "circulation": self.circulation,
            "components": {
                c.name: {"statistic": c.statistic, "p_value": c.p_value, "z_score": c.z_score}
                for c in self.components.values()
            },
            "entropy_production": self.entropy.summary(),
            "flux": self.flux.summary(),
            "plane": self.plane,
            "null_model": self.null_model.method,
            "stationary": self.null_model.stationary,
            "n_surrogates": self.n_surrogates,
        }


def _statistics(
    y: np.ndarray,
    lags: np.ndarray,
    ac_lags: np.ndarray,
    bins: int,
    seg: int,
    fit: OUFit | None = None,
) -> tuple[np.ndarray, OUFit]:
    """The four component statistics of a projected path y (T, k), and its linear fit."""
    fit = fit_ou(y) if fit is None else fit
    irr = irreversibility_statistic(y, lags)
    yc = y[:, :2] - fit.mean[:2]
    wh = np.linalg.inv(np.linalg.cholesky(fit.S[:2, :2]))  # scale-free circulation
    area = _flux_field(yc @ wh.T, bins)[4]
    freq, p = _density(y, seg)
    model = fit.null_spectrum(freq[1:])
    spec = float(np.mean(np.log(p[1:] / model) ** 2))
    ac = _acf(y, ac_lags).T
    acd = float(np.sum((ac - fit.null_autocorrelation(ac_lags)) ** 2) / y.shape[1])
    return np.array([irr, abs(area.sum()), spec, acd]), fit


def _statistics_fast(
    yt: np.ndarray,
    lags: np.ndarray,
    ac_lags: np.ndarray,
    bins: int,
    seg: int,
    fit: OUFit | None = None,
) -> tuple[np.ndarray, OUFit]:
    """:func:`_statistics` of ``yt`` = yᵀ (k, T), with the passes over y shared.

    Equal to :func:`_statistics` up to round-off (tested). The path is held as (k, T) rows so
    that every reduction and lagged product is contiguous: one centring, then S, C(0), C(1) for
    the fit, C(τ) at the irreversibility lags and the autocorrelation lags (direct products
    instead of a length-2T FFT), the flux cells by arithmetic on the uniform edges instead of a
    search, and the Welch spectrum of the rows by one batched FFT.
    """
    k, n = yt.shape
    mean = yt.mean(axis=1)
    yc = yt - mean[:, None]

    def lagged(t: int) -> np.ndarray:  # Σ_t yc_{t+τ} yc_tᵀ (unnormalised)
        return yc[:, t:] @ yc[:, : n - t].T if t else yc @ yc.T

    g0 = lagged(0)
    if fit is None:
        last = yc[:, -1]
        c0 = (g0 - np.outer(last, last)) / (n - 1)
        fit = _fit_from_moments(mean, g0 / n, c0, lagged(1) / (n - 1), n)
    # irreversibility: ‖S^{-1/2} Σ_τ (C(τ) − C(τ)ᵀ) S^{-1/2}‖², C(τ) over T with 1/T
    w, v = np.linalg.eigh(g0 / n)
    wh = (v / np.sqrt(np.maximum(w, w.max() * 1e-15))) @ v.T
    a = np.zeros((k, k))
    for t in lags:
        c = lagged(int(t)) / n
        a += c - c.T
    irr = float(np.sum((wh @ a @ wh) ** 2))
    # circulation: Lévy area per step of the coarse-grained whitened path in the first plane
    u = np.linalg.inv(np.linalg.cholesky(fit.S[:2, :2])) @ yc[:2]
    steps = np.empty(2)
    for ax in range(2):
        lo, hi = float(u[ax].min()), float(u[ax].max())
        pad = 1e-9 * max(hi - lo, 1e-300)
        steps[ax] = (hi - lo + 2 * pad) / bins
        u[ax] -= lo - pad
        u[ax] /= steps[ax]
        np.floor(u[ax], out=u[ax])
        np.clip(u[ax], 0, bins - 1, out=u[ax])
        u[ax] -= u[ax].mean()
    m = u[:, :-1] @ u[:, 1:].T  # a (2, T)·(T, 2) product: 1-D BLAS dots thread badly
    area = steps[0] * steps[1] * (m[0, 1] - m[1, 0]) / (n - 1)
    # spectrum: Welch against the null's exact spectrum
    freq, p = _density_rows(yc, seg)
    spec = float(np.mean(np.log(p[1:] / fit.null_spectrum(freq[1:])) ** 2))
    # autocorrelation at the log-spaced lags, biased (1/T) estimator as in _acf
    ac = np.stack([np.diag(lagged(int(t))) for t in ac_lags]) / np.diag(g0)
    acd = float(np.sum((ac - fit.null_autocorrelation(ac_lags)) ** 2) / k)
    return np.array([irr, abs(area), spec, acd]), fit


def _density_rows(xt: np.ndarray, segment_length: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`~sgdscope.trajectory.analysis.spectral._density` of the rows of xt (c, T): (F, c)."""
    n, L = xt.shape[1], segment_length
    starts = np.arange(0, n - L + 1, L // 2)
    w = scipy.signal.get_window("hann", L)
    segs = np.lib.stride_tricks.sliding_window_view(xt, L, axis=1)[:, starts]  # (c, S, L)
    # FFT is linear: rfft((s − s̄) w) = rfft(s w) − s̄ rfft(w), one pass fewer
    f = np.fft.rfft(segs * w, axis=-1)
    f -= segs.mean(axis=-1, keepdims=True) * np.fft.rfft(w)
    p = (f.real**2 + f.imag**2).sum(axis=1).T
    return np.fft.rfftfreq(L), p / (starts.size * np.sum(w**2))


def _null_statistics(
    fit: OUFit,
    n: int,
    n_surrogates: int,
    rng: np.random.Generator,
    stats: Any,
    threads: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Statistics and entropy-production rates of ``n_surrogates`` surrogates of the null.

    The normals are drawn in the calling thread, in surrogate order, exactly as
    ``fit.simulate_null(n, rng)`` draws them one surrogate after another (a batch
    ``rng.standard_normal((B, n, k))`` is the same stream), so the surrogates, and hence the
    p-values, do not depend on ``threads`` or the batch size; the filtering and the statistics
    of a batch run on a worker thread (numpy and scipy release the GIL in their loops).
    ``stats`` takes a surrogate as yᵀ (k, T).
    """
    k = fit.null_coefficients.size
    batch = max(1, min(n_surrogates, (1 << 20) // max(n * k, 1)))
    null = np.empty((n_surrogates, len(COMPONENTS)))
    sigma = np.empty(n_surrogates)
    mu = fit.null_coefficients
    gain = np.sqrt(np.maximum(1.0 - mu**2, 0.0))

    def work(i0: int, eps: np.ndarray) -> None:
        e = np.ascontiguousarray(eps.transpose(0, 2, 1))  # (B, k, T)
        e[:, :, 1:] *= gain[:, None]
        for i in range(k):
            e[:, i] = scipy.signal.lfilter([1.0], [1.0, -mu[i]], e[:, i], axis=-1)
        for j in range(e.shape[0]):
            yt = fit.mixing @ e[j]
            yt += fit.mean[:, None]
            null[i0 + j], fit_j = stats(yt)
            sigma[i0 + j] = fit_j.entropy_production

    starts = range(0, n_surrogates, batch)
    if threads <= 1:
        for i0 in starts:
            work(i0, rng.standard_normal((min(batch, n_surrogates - i0), n, k)))
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            futures = [
                pool.submit(work, i0, rng.standard_normal((min(batch, n_surrogates - i0), n, k)))
                for i0 in starts
            ]
            for f in futures:
                f.result()
    return null, sigma


def _threads(n: int, n_surrogates: int) -> int:
    """Worker threads for the surrogates: up to 2 (the CPUs this process may use), 1 when small."""
    if n * n_surrogates < 1_000_000:
        return 1
    return max(1, min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1))


def _verdict(
    p: float,
    alpha: float,
    plane: str,
    flux: ProbabilityFlux,
    components: dict[str, Component],
    eff: float,
    stationary: bool,
) -> str:
    turn = "counter-clockwise" if flux.circulation > 0 else "clockwise"
    if not stationary:
        notes = (
            " Caution: the trajectory spans fewer than 20 relaxation times of the fitted model, "
            "or has a unit root (it drifts rather than fluctuates about a stationary state in "
            "this plane), so the reversible null is not reliable; analyse a longer or later "
            "window of the run."
        )
    else:
        notes = ""
    misfit = [n for n in ("spectrum", "autocorrelation") if components[n].p_value < alpha]
    notes += (
        f" The reversible linear model also misses the {' and '.join(misfit)} (p < {alpha:g}), "
        "so the dynamics are not well described by an OU process there."
        if misfit
        else ""
    )
    if p < alpha:
        return (
            f"Out of equilibrium: p = {p:.3g} < α = {alpha:g}. The lagged covariance in {plane} "
            f"is not symmetric, so detailed balance is rejected; the probability current turns "
            f"{turn} (flux test p = {flux.p_value:.3g}) and the fitted rotation-to-relaxation "
            f"ratio ‖QU‖/‖DU‖ is {eff:.2g}.{notes}"
        )
    return (
        f"No evidence against equilibrium: p = {p:.3g} ≥ α = {alpha:g}. In {plane} the lagged "
        f"covariance is as symmetric as in a reversible (Q = 0) Ornstein–Uhlenbeck process "
        f"(flux test p = {flux.p_value:.3g}). This does not prove equilibrium: a longer "
        f"trajectory or other directions may still reveal currents.{notes}"
    )


def equilibrium_test(
    traj: Any,
    *,
    n_components: int = 2,
    basis: np.ndarray | None = None,
    lags: Any = None,
    bins: int = 12,
    segment_length: int | None = None,
    n_surrogates: int = 199,
    alpha: float = 0.05,
    seed: int | np.random.Generator | None = 0,
) -> EquilibriumTest:
    r"""Test a trajectory for detailed balance against a fitted reversible linear model.

    1. Project the positions onto the top ``n_components`` principal components (or a given
       basis), as :func:`sgdscope.pca_projection` does, from one streamed pass over the data in
       their own dtype (a float32 memory map stays float32; float64 accumulation per block) that
       also validates them, then a light pass that applies the projection.
    2. Fit the linear model of :func:`~sgdscope.trajectory.analysis.ou.fit_ou`, i.e. F, D and
       (Lemma 20) Q, U = S⁻¹, and build its null: Q forced to 0, F₀ = DU, same stationary
       covariance S.
    3. Compute four statistics, each larger when the data are further from that null:
       *irreversibility* :math:`\|S^{-1/2}\sum_\tau(C(\tau)-C(\tau)^\top)S^{-1/2}\|_F^2`;
       *circulation*, the |Lévy area| per step of the coarse-grained path (Battle et al. 2016)
       in the whitened first two coordinates; *spectrum*, the mean squared log-ratio of the
       Welch spectrum to the null's exact spectrum; *autocorrelation*, the squared distance of
       the autocorrelations to the null's exact ones.
    4. Draw ``n_surrogates`` exact discrete-time surrogates from the null and compute the same
       statistics on each, refitting the model to each surrogate (a parametric bootstrap). Their
       normals are drawn in order from the seeded generator, in batches, and the rest runs on up
       to two worker threads; the p-values equal those of drawing one surrogate at a time.
    5. Decide with the irreversibility component: ``p_value`` is its Monte Carlo p-value. It is
       the direct test of detailed balance (C(τ) = C(τ)ᵀ) and its statistic is pivotal
       (whitened), so the p-value is calibrated. The other components are reported with their
       own p-values and z-scores: the spectrum and autocorrelation ones test the *linear* model
       (a non-linear reversible process can fail them), and combining all four by their
       maximum z was measured to be conservative (docs/analysis.md).

    Under the Q = 0 null the p-value is approximately uniform (false-positive rate 0.03 at
    α = 0.05 over 200 seeds, KS p = 0.80; docs/benchmarks/equilibrium_test.md); the
    approximation is the parametric bootstrap's (the model is refitted, not known). The
    verdict warns when the trajectory spans fewer than 20 relaxation times (``stationary``).

    Args:
        traj: A Trajectory or an array of shape (T, d), T ≥ 200 (the flux component's 20
            blocks of ≥ 10 steps).
        n_components: Dimension k of the projection (≥ 2; d ≤ k: no projection).
        basis: Optional (k, d) basis, one direction per row, instead of PCA (e.g. D's top
            eigenvectors as rows).
        lags: Lags of the irreversibility statistic (ints ≥ 1, T ≥ 10× the largest); default
            up to 4 log-spaced lags from 1 to min(T // 50, τ/4), τ the slowest relaxation time.
        bins: Cells per axis of the flux grid.
        segment_length: Welch segment length for the spectrum; default max(16, T // 8).
        n_surrogates: Number of surrogates (≥ 19; the smallest p-value is 1/(n + 1)).
        alpha: Level of the test, in (0, 1).
        seed: Seed or Generator for the surrogates.

    Returns:
        An :class:`EquilibriumTest`.

    Raises:
        ValueError: If an argument is out of range, or the trajectory is shorter than 200 or too
            short for the lags, has a constant coordinate, a non-finite value, or coordinates
            that are collinear in the tested plane (the message says which n_components fits).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = np.zeros((3000, 2))
        >>> for t in range(1, 3000):
        ...     x[t] = 0.9 * x[t - 1] + rng.standard_normal(2)
        >>> res = equilibrium_test(x, n_surrogates=49)
        >>> res.out_of_equilibrium
        False
    """
    where = "equilibrium_test"
    n_components = check_int("n_components", n_components, where=where, low=2)
    bins = check_int("bins", bins, where=where, low=2)
    n_surrogates = check_int("n_surrogates", n_surrogates, where=where, low=19)
    alpha = check_real("alpha", alpha, where=where, low=0.0, high=1.0, low_open=True)
    lag_arr = check_lags(lags, where=where)
    y, proj, plane, lag_arr = prepare(
        traj,
        where=where,
        lags=lag_arr,
        n_components=n_components,
        basis=basis,
        min_length=_MIN_LENGTH,
        min_why="the flux test (20 blocks of ≥ 10 steps)",
    )
    if y.shape[1] < 2:
        raise ValueError(
            f"the 'traj' parameter of {where} must have at least 2 coordinates, got d = 1; "
            "detailed balance cannot be broken in one dimension."
        )
    n = y.shape[0]
    if segment_length is None:
        seg = max(16, n // 8)
    else:
        seg = check_int("segment_length", segment_length, where=where, low=16, high=n)
    ac_lags = np.unique(np.round(np.geomspace(1, max(2, n // 10), 16)).astype(np.int64))
    rng = as_generator(seed)

    fit = fit_ou(y)
    lag_arr = default_lags(n, fit) if lag_arr is None else lag_arr
    obs, _ = _statistics_fast(np.ascontiguousarray(y.T), lag_arr, ac_lags, bins, seg, fit)
    null, null_sigma = _null_statistics(
        fit,
        n,
        n_surrogates,
        rng,
        lambda s: _statistics_fast(s, lag_arr, ac_lags, bins, seg),
        _threads(n, n_surrogates),
    )

    mu, sd = null.mean(axis=0), null.std(axis=0)
    z_obs = (obs - mu) / np.where(sd > 0, sd, 1.0)
    components = {
        name: Component(
            name=name,
            statistic=float(obs[j]),
            p_value=p_value_upper(obs[j], null[:, j]),
            null=null[:, j],
            z_score=float(z_obs[j]),
        )
        for j, name in enumerate(COMPONENTS)
    }
    irr = Irreversibility(
        lags=lag_arr,
        antisymmetric=antisymmetric_covariance(y, lag_arr),
        statistic=float(obs[0]),
        null=null[:, 0],
        p_value=components["irreversibility"].p_value,
        fit=fit,
        projection=proj,
        plane=plane,
    )
    flux = probability_flux(y[:, :2], bins=bins, seed=rng)
    # the flux was computed in y's own coordinates; report the plane of the original projection
    flux = ProbabilityFlux(**{**flux.__dict__, "projection": proj, "plane": plane})
    sigma = fit.entropy_production
    bias = float(null_sigma.mean())
    entropy = EntropyProduction(
        rate=sigma,
        bias=bias,
        corrected=max(sigma - bias, 0.0),
        null_std=float(null_sigma.std()),
        p_value=p_value_upper(sigma, null_sigma),
        dt=1.0,
        fit=fit,
    )
    stat, p = float(obs[0]), components["irreversibility"].p_value
    verdict = _verdict(p, alpha, plane, flux, components, fit.effect_size, fit.stationary)
    return EquilibriumTest(
        statistic=stat,
        p_value=p,
        out_of_equilibrium=bool(p < alpha),
        alpha=alpha,
        verdict=verdict,
        effect_size=fit.effect_size,
        circulation=flux.circulation,
        components=components,
        irreversibility=irr,
        flux=flux,
        entropy=entropy,
        null_model=fit,
        projection=proj,
        plane=plane,
        n_surrogates=n_surrogates,
    )
