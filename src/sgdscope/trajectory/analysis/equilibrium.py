r"""``equilibrium_test``: is a trajectory in detailed balance, and how sure can one be?

It implements an equilibrium null model against the paper's reading of Fig. 3 (§IV-B, Remarks
17–18), since an equilibrium OU process with slow directions also has coloured increments and
long-lag autocorrelation: fit a linear (OU) model, force Q = 0 (Lemma 20), simulate surrogates from
it, and compare the real trajectory's irreversibility, flux, spectrum and autocorrelation with
theirs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
import scipy.signal

from ..._validation import check_int, check_real
from ..projection import Projection
from ._input import as_generator, project_velocities
from ._surrogates import surrogate_statistics, worker_threads
from .flux import ProbabilityFlux, _flux_field, probability_flux
from .irreversibility import (
    EntropyProduction,
    Irreversibility,
    _refuse_collinear,
    antisymmetric_covariance,
    check_lags,
    default_lags,
    irreversibility_statistic,
    p_value_upper,
    parity_signs,
    prepare,
)
from .ou import OUFit, _fit_from_moments, fit_ou, pair_entropy_rate, parity_null
from .spectral import _acf, _density
from .stationarity import Stationarity, diagnose

__all__ = ["COMPONENTS", "EquilibriumStatus", "EquilibriumTest", "equilibrium_test"]

# Snapshots needed: the flux component splits the path into 20 blocks of ≥ 10 steps.
_MIN_LENGTH = 200

#: The component statistics, in the order of ``EquilibriumTest.components``.
COMPONENTS = ("irreversibility", "circulation", "spectrum", "autocorrelation")


class EquilibriumStatus(str, Enum):
    """What a test of detailed balance concluded."""

    OUT_OF_EQUILIBRIUM = "out of equilibrium"
    """Detailed balance is rejected at the level α."""
    NO_EVIDENCE = "no evidence against equilibrium"
    """Detailed balance is not rejected (which does not prove it)."""
    NOT_STATIONARY = "not testable: not stationary"
    """The record is not stationary, so neither conclusion is drawn."""

    @classmethod
    def of(cls, stationary: bool, p_value: float, alpha: float) -> EquilibriumStatus:
        """The conclusion: none on a non-stationary record, else by ``p_value < alpha``."""
        if not stationary:
            return cls.NOT_STATIONARY
        return cls.OUT_OF_EQUILIBRIUM if p_value < alpha else cls.NO_EVIDENCE


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
            :math:`\|S^{-1/2}\sum_\tau(\hat C(\tau)-\varepsilon\hat C(\tau)^\top\varepsilon)
            S^{-1/2}\|_F^2` (dimensionless; 0 in expectation up to noise at detailed balance;
            ε = I without velocities).
        p_value: Its Monte Carlo p-value against the reversible surrogates (computed, and
            reported, also when the record is not stationary; then it decides nothing).
        out_of_equilibrium: True only when ``status`` is ``OUT_OF_EQUILIBRIUM``: the record is
            stationary and ``p_value < alpha``.
        alpha: The level of the test.
        verdict: A plain-language sentence.
        effect_size: :math:`\|\hat Q\hat U\|_F/\|\hat D\hat U\|_F` of the fitted linear model
            (0 at detailed balance; rotation over relaxation). With velocities only the part of
            Q that breaks detailed balance with parity, :math:`(Q + \varepsilon Q\varepsilon)/2`,
            counts.
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
        status: The conclusion: out of equilibrium, no evidence against it, or not testable
            because the record is not stationary.
        stationary: Whether the record passed the stationarity diagnosis.
        stationarity: The diagnosis (unit root, trend, relaxation times against the length).
        odd: (k,) bool, True for the coordinates that are odd under time reversal (the projected
            velocities, after the positions), or None without velocities.
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
    status: EquilibriumStatus
    stationary: bool
    stationarity: Stationarity
    odd: np.ndarray | None

    @property
    def testable(self) -> bool:
        """False when the record is not stationary (then the test draws no conclusion)."""
        return self.status is not EquilibriumStatus.NOT_STATIONARY

    def summary(self) -> dict:
        """A JSON-ready dict of the scalars (no arrays)."""
        return {
            "statistic": self.statistic,
            "p_value": self.p_value,
            "out_of_equilibrium": self.out_of_equilibrium,
            "status": self.status.value,
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
            "stationary": self.stationary,
            "stationarity": self.stationarity.summary(),
            "velocities": self.odd is not None,
            "n_surrogates": self.n_surrogates,
        }


def _statistics(
    y: np.ndarray,
    lags: np.ndarray,
    ac_lags: np.ndarray,
    bins: int,
    seg: int,
    fit: OUFit | None = None,
    odd: np.ndarray | None = None,
) -> tuple[np.ndarray, OUFit]:
    """The four component statistics of a projected path y (T, k), and its linear fit.

    ``odd`` marks the velocity coordinates (then the null is :func:`~.ou.parity_null`).

    Returns:
        ``(statistics, fit)``: the irreversibility, |Lévy area|, spectrum and
        autocorrelation distances (4,), and the linear model fitted to y.
    """
    fit = fit_ou(y) if fit is None else fit
    null = fit if odd is None else _ParityModel(parity_null(fit, odd, y.shape[0]))
    irr = irreversibility_statistic(y, lags, odd)
    yc = y[:, :2] - fit.mean[:2]
    wh = np.linalg.inv(np.linalg.cholesky(fit.S[:2, :2]))  # scale-free circulation
    area = _flux_field(yc @ wh.T, bins)[4]
    freq, p = _density(y, seg)
    model = null.null_spectrum(freq[1:])
    spec = float(np.mean(np.log(p[1:] / model) ** 2))
    ac = _acf(y, ac_lags).T
    acd = float(np.sum((ac - null.null_autocorrelation(ac_lags)) ** 2) / y.shape[1])
    return np.array([irr, abs(area.sum()), spec, acd]), fit


class _ParityModel:
    """The exact spectrum and autocorrelation of a parity null under OUFit's method names."""

    def __init__(self, chain: Any) -> None:
        self.null_spectrum = chain.spectrum
        self.null_autocorrelation = chain.autocorrelation


def _statistics_fast(
    yt: np.ndarray,
    lags: np.ndarray,
    ac_lags: np.ndarray,
    bins: int,
    seg: int,
    fit: OUFit | None = None,
    odd: np.ndarray | None = None,
) -> tuple[np.ndarray, OUFit]:
    """:func:`_statistics` of ``yt`` = yᵀ (k, T), with the passes over y shared.

    Equal to :func:`_statistics` up to round-off (tested). The path is held as (k, T) rows so
    that every reduction and lagged product is contiguous: one centring, then S, C(0), C(1) for
    the fit, C(τ) at the irreversibility lags and the autocorrelation lags (direct products
    instead of a length-2T FFT), the flux cells by arithmetic on the uniform edges instead of a
    search, and the Welch spectrum of the rows by one batched FFT.

    Returns:
        ``(statistics, fit)``, as :func:`_statistics`.
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
    # irreversibility: ‖W Σ_τ (C(τ) − ε C(τ)ᵀ ε) W‖², C(τ) over T with 1/T, W = S_ε^{-1/2}
    if odd is None:
        w, v = np.linalg.eigh(g0 / n)
        null: OUFit | _ParityModel = fit
    else:
        flip = parity_signs(odd, k)
        w, v = np.linalg.eigh(0.5 * (g0 + g0 * flip) / n)
        null = _ParityModel(parity_null(fit, odd, n))
    wh = (v / np.sqrt(np.maximum(w, w.max() * 1e-15))) @ v.T
    a = np.zeros((k, k))
    for t in lags:
        c = lagged(int(t)) / n
        a += c - c.T if odd is None else c - c.T * flip
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
    spec = float(np.mean(np.log(p[1:] / null.null_spectrum(freq[1:])) ** 2))
    # autocorrelation at the log-spaced lags, biased (1/T) estimator as in _acf
    ac = np.stack([np.diag(lagged(int(t))) for t in ac_lags]) / np.diag(g0)
    acd = float(np.sum((ac - null.null_autocorrelation(ac_lags)) ** 2) / k)
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
    paths: Any,
    k: int,
    n: int,
    n_surrogates: int,
    rng: np.random.Generator,
    stats: Any,
    threads: int,
    entropy: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Statistics and entropy-production rates of ``n_surrogates`` surrogates of the null.

    ``paths`` maps standard normals (B, T, k) to surrogates (B, k, T) (``OUFit.null_paths``, or a
    parity null's ``GaussianChain.paths``); ``stats`` takes a surrogate yᵀ (k, T) and returns its
    statistics and its refitted model, and ``entropy(yt, fit)`` gives its entropy-production rate
    (default the refitted model's ``entropy_production``). The normals are drawn in order from ``rng``
    (:func:`~._surrogates.surrogate_statistics`), so the values equal those of drawing one
    surrogate at a time with ``simulate_null`` and do not depend on ``threads``.

    Returns:
        ``(statistics, rates)``: (n_surrogates, 4) and (n_surrogates,).
    """
    rate = (lambda yt, f: f.entropy_production) if entropy is None else entropy

    def both(yt: np.ndarray) -> np.ndarray:
        values, fit_j = stats(yt)
        return np.append(values, rate(yt, fit_j))

    out = surrogate_statistics(paths, k, n, n_surrogates, rng, both, len(COMPONENTS) + 1, threads)
    return out[:, :-1], out[:, -1]


def _verdict(
    status: EquilibriumStatus,
    p: float,
    alpha: float,
    plane: str,
    flux: ProbabilityFlux,
    components: dict[str, Component],
    eff: float,
    stationarity: Stationarity,
    parity: bool,
) -> str:
    if status is EquilibriumStatus.NOT_STATIONARY:
        return (
            f"Not testable: the trajectory is not stationary in {plane}: "
            + "; ".join(stationarity.reasons)
            + ". It has no stationary state whose detailed balance could be tested, so no "
            f"verdict is given either way (irreversibility p = {p:.3g}, for reference only). "
            "Analyse a later window in which the run has relaxed, or coordinates in which it is "
            "stationary (for BatchNorm weights without weight decay, their directions)."
        )
    turn = "counter-clockwise" if flux.circulation > 0 else "clockwise"
    symmetric = (
        "symmetric under time reversal with the velocities flipped" if parity else ("symmetric")
    )
    misfit = [n for n in ("spectrum", "autocorrelation") if components[n].p_value < alpha]
    notes = (
        f" The reversible linear model also misses the {' and '.join(misfit)} (p < {alpha:g}), "
        "so the dynamics are not well described by an OU process there."
        if misfit
        else ""
    )
    if status is EquilibriumStatus.OUT_OF_EQUILIBRIUM:
        return (
            f"Out of equilibrium: p = {p:.3g} < α = {alpha:g}. The lagged covariance in {plane} "
            f"is not {symmetric}, so detailed balance is rejected; the probability current turns "
            f"{turn} (flux test p = {flux.p_value:.3g}) and the fitted rotation-to-relaxation "
            f"ratio ‖QU‖/‖DU‖ is {eff:.2g}"
            + (" (Q's part that breaks detailed balance with the velocities odd)" if parity else "")
            + f".{notes}"
        )
    kind = (
        "a reversible Ornstein–Uhlenbeck process with odd velocities (it may rotate in phase "
        "space, but carries no current)"
        if parity
        else "a reversible (Q = 0) Ornstein–Uhlenbeck process"
    )
    return (
        f"No evidence against equilibrium: p = {p:.3g} ≥ α = {alpha:g}. In {plane} the lagged "
        f"covariance is as {symmetric} as in {kind} "
        f"(flux test p = {flux.p_value:.3g}). This does not prove equilibrium: a longer "
        f"trajectory or other directions may still reveal currents.{notes}"
    )


def equilibrium_test(
    traj: Any,
    velocities: Any = None,
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
       also validates them, then a light pass that applies the projection. Velocities, when
       given, are projected onto the same directions (one pass) and appended: the state is
       (x, v), and v is odd under time reversal.
    2. Diagnose stationarity (:func:`~sgdscope.trajectory.analysis.stationarity`: unit root,
       trend, relaxation times against the record length). A record that is not stationary gets
       the status "not testable: not stationary" and no verdict either way; the statistics
       below are still computed and reported.
    3. Fit the linear model of :func:`~sgdscope.trajectory.analysis.ou.fit_ou`, i.e. F, D and
       (Lemma 20) Q, U = S⁻¹, and build its null: Q forced to 0, F₀ = DU, same stationary
       covariance S. With velocities the null is the reversible model *with parity*
       (:func:`~sgdscope.trajectory.analysis.ou.parity_null`): it keeps the part of Q that
       couples positions to velocities, which an underdamped process at equilibrium has (it
       rotates in phase space without any current), and drops the rest.
    4. Compute four statistics, each larger when the data are further from that null:
       *irreversibility* :math:`\|W\sum_\tau(C(\tau)-\varepsilon C(\tau)^\top\varepsilon)
       W\|_F^2`, W the inverse square root of the parity-even part of S (ε = I without
       velocities, ε = diag(1, −1) on (x, v));
       *circulation*, the |Lévy area| per step of the coarse-grained path (Battle et al. 2016)
       in the whitened first two position coordinates; *spectrum*, the mean squared log-ratio
       of the Welch spectrum to the null's exact spectrum; *autocorrelation*, the squared
       distance of the autocorrelations to the null's exact ones.
    5. Draw ``n_surrogates`` exact discrete-time surrogates from the null and compute the same
       statistics on each, refitting the model to each surrogate (a parametric bootstrap). Their
       normals are drawn in order from the seeded generator, in batches, and the rest runs on up
       to two worker threads; the p-values equal those of drawing one surrogate at a time.
    6. Decide with the irreversibility component: ``p_value`` is its Monte Carlo p-value. It is
       the direct test of detailed balance (C(τ) = εC(τ)ᵀε) and its statistic is pivotal
       (whitened), so the p-value is calibrated. The other components are reported with their
       own p-values and z-scores: the spectrum and autocorrelation ones test the *linear* model
       (a non-linear reversible process can fail them), and combining all four by their
       maximum z was measured to be conservative (docs/analysis.md).

    Under the Q = 0 null the p-value is approximately uniform (false-positive rate 0.03 at
    α = 0.05 over 200 seeds, KS p = 0.80; docs/benchmarks/equilibrium_test.md); the
    approximation is the parametric bootstrap's (the model is refitted, not known). The same
    page gives the calibration with velocities (underdamped processes at equilibrium) and of the
    stationarity diagnosis.

    Velocities must be odd at each snapshot: for a trajectory sampled from a continuous process,
    the velocity at the snapshot time. For heavy-ball SGD (b ← μb + ∇f_b, x ← x − ηb) with
    snapshot x_t and the buffer b_t of the step that produced it (x_t = x_{t−1} − η b_t), pass
    positions x_t + η b_t / 2 (the step's midpoint) and velocities b_t: the pair is a linear
    function of the chain's Markov state (x_t, x_{t−1}), and time reversal swaps x_{t−1} and x_t,
    which keeps the midpoint and flips the step exactly (false-positive rate 0.045 at α = 0.05
    over 200 runs). The central difference (x_{t+1} − x_{t−1})/2 with x_t is odd but not Markov
    (0.085); b_t with x_t itself is odd only up to one step.

    Args:
        traj: A Trajectory or an array of shape (T, d) of positions, T ≥ 200 (the flux
            component's 20 blocks of ≥ 10 steps).
        velocities: Optional array (or Trajectory) of shape (T, d), the velocities at the same
            snapshots (odd under time reversal; see above), or None.
        n_components: Dimension k of the projection (≥ 2; d ≤ k: no projection). With
            velocities the test runs in 2k dimensions.
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
            that are collinear in the tested plane (the message says which n_components fits),
            or the velocities do not have the positions' shape.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = np.zeros((3000, 2))
        >>> for t in range(1, 3000):
        ...     x[t] = 0.9 * x[t - 1] + rng.standard_normal(2)
        >>> res = equilibrium_test(x, n_surrogates=49)
        >>> res.status.value, res.stationary
        ('no evidence against equilibrium', True)
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
    n, k = y.shape
    odd = None
    names = [f"coordinate {i}" for i in range(k)]
    if velocities is not None:
        d = proj.dim if proj is not None else k
        yv = project_velocities(velocities, proj, (n, d), where=where)
        y = np.hstack([y, yv])
        odd = np.repeat([False, True], k)
        names = [f"position {i}" for i in range(k)] + [f"velocity {i}" for i in range(k)]
        plane = f"the phase space (positions and velocities) of {plane}"
        _refuse_collinear(y, plane, where)
    if segment_length is None:
        seg = max(16, n // 8)
    else:
        seg = check_int("segment_length", segment_length, where=where, low=16, high=n)
    ac_lags = np.unique(np.round(np.geomspace(1, max(2, n // 10), 16)).astype(np.int64))
    rng = as_generator(seed)

    fit = fit_ou(y)
    stationarity = diagnose(y, fit, plane=plane, projection=proj, names=names)
    if odd is None:
        paths, entropy, sigma, definition = fit.null_paths, None, fit.entropy_production, "ou"
        lag_arr = default_lags(n, fit) if lag_arr is None else lag_arr
    else:
        null_chain = parity_null(fit, odd, n)
        paths = null_chain.paths
        if lag_arr is None:
            slowest = float(np.abs(np.linalg.eigvals(null_chain.A)).max())
            lag_arr = default_lags(n, slowest=slowest)

        def entropy(yt: np.ndarray, f: OUFit) -> float:
            return pair_entropy_rate(yt, odd)

        sigma, definition = pair_entropy_rate(np.ascontiguousarray(y.T), odd), "parity-kl"
    obs, _ = _statistics_fast(np.ascontiguousarray(y.T), lag_arr, ac_lags, bins, seg, fit, odd)
    null, null_sigma = _null_statistics(
        paths,
        y.shape[1],
        n,
        n_surrogates,
        rng,
        lambda s: _statistics_fast(s, lag_arr, ac_lags, bins, seg, None, odd),
        worker_threads(n, n_surrogates),
        entropy,
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
        antisymmetric=antisymmetric_covariance(y, lag_arr, odd),
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
    entropy_result = EntropyProduction.against_null(
        sigma, null_sigma, dt=1.0, fit=fit, definition=definition
    )
    stat, p = float(obs[0]), components["irreversibility"].p_value
    status = EquilibriumStatus.of(stationarity.stationary, p, alpha)
    if odd is None:
        effect = fit.effect_size
    else:  # only the part of Q that breaks detailed balance with parity carries a current
        q_irr = 0.5 * (fit.Q + fit.Q * parity_signs(odd, y.shape[1]))
        den = np.linalg.norm(fit.D @ fit.U)
        effect = float(np.linalg.norm(q_irr @ fit.U) / den) if den > 0 else 0.0
    verdict = _verdict(
        status, p, alpha, plane, flux, components, effect, stationarity, odd is not None
    )
    return EquilibriumTest(
        statistic=stat,
        p_value=p,
        out_of_equilibrium=status is EquilibriumStatus.OUT_OF_EQUILIBRIUM,
        alpha=alpha,
        verdict=verdict,
        effect_size=effect,
        circulation=flux.circulation,
        components=components,
        irreversibility=irr,
        flux=flux,
        entropy=entropy_result,
        null_model=fit,
        projection=proj,
        plane=plane,
        n_surrogates=n_surrogates,
        status=status,
        stationary=stationarity.stationary,
        stationarity=stationarity,
        odd=odd,
    )
