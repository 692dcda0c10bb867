r"""What ``reproduce trajectory`` measures on the recorded tiny-fc run: Fig. 3 and what it lacked.

:func:`analyse` chains the library's analyses on the recorded weights (it computes nothing the
library already offers): the increment spectrum (Fig. 3a, Remark 17), the autocorrelation with
its white-noise bands (Fig. 3b, Remark 18), the EWMA of ‖∇f‖/√d (Fig. 3c), the MSD exponent
(Kunin et al.), and :func:`~sgdscope.trajectory.analysis.equilibrium_test` (the lagged-covariance
test of detailed balance with the probability flux of the top-2 PCA plane). Its few own numbers
are summaries of those results, each documented where it is computed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.signal

from ...trajectory import Trajectory
from ...trajectory.analysis import (
    MSD,
    Autocorrelation,
    EquilibriumTest,
    GradientNorm,
    PowerSpectrum,
    autocorrelation,
    equilibrium_test,
    gradient_norm,
    msd,
    power_spectrum,
)
from .spectrum_test import SpectrumShapeTest, spectrum_shape_test

#: Bartlett's 99 % two-sided quantile, the level of the paper's outer band (2.576/√n).
Z99 = 2.576
#: The paper's Fig. 3c range of ‖∇f‖/√d and its "about 3×" drop (§IV-B).
PAPER_GRAD_RANGE = (1e-3, 3e-3)
PAPER_GRAD_DROP = 3.0


@dataclass(frozen=True)
class SpectrumShape:
    """Fig. 3a in numbers: the mean increment periodogram and the spread across weights.

    Attributes:
        low_high_ratio: Mean power at f ≤ 10⁻² over the mean at f ≥ ¼ (see
            :func:`spectrum_numbers`).
        slope: Least-squares slope of log power on log f.
        band_relative_width: Median relative width of the 68 % bootstrap band of the mean.
        shape_cv: Spread of the weights' spectral shapes (see :func:`spectral_shape`).
        shape_cv_noise_floor: What the estimator's own noise gives for identical spectra.
        shape_cv_excess: √(shape_cv² − floor²).
        scale_ratio: 90th/10th percentile of the weights' increment variances.
    """

    low_high_ratio: float
    slope: float
    band_relative_width: float
    shape_cv: float
    shape_cv_noise_floor: float
    shape_cv_excess: float
    scale_ratio: float


@dataclass(frozen=True)
class LongLags:
    """Fig. 3b at the lags of Remark 18 (see :func:`target_lags`).

    Attributes:
        target_lags: The lags.
        mean_at_target_lags: Mean autocorrelation over weights at each.
        fraction_outside_99_white: Share of weights outside ±2.576/√n at each.
        fraction_outside_99_bartlett: Share outside Bartlett's 99 % band at each.
        band99: 2.576/√n.
    """

    target_lags: list[int]
    mean_at_target_lags: list[float]
    fraction_outside_99_white: list[float]
    fraction_outside_99_bartlett: list[float]
    band99: float


@dataclass(frozen=True)
class GradientLevels:
    """Fig. 3c in numbers: the EWMA of ‖∇f‖/√d at the paper's first epoch and at the end.

    Attributes:
        smoothed_at_epoch_10: EWMA at epoch 10 (where the paper's x-axis starts).
        smoothed_final: EWMA at the last epoch.
        drop_from_epoch_10: Their ratio.
        smoothed_range_recorded: [min, max] of the EWMA over the recorded epochs.
        drop_over_recording: EWMA at the first recorded epoch over the last.
        dim: d.
    """

    smoothed_at_epoch_10: float
    smoothed_final: float
    drop_from_epoch_10: float
    smoothed_range_recorded: list[float]
    drop_over_recording: float
    dim: int


@dataclass(frozen=True)
class WeightNorm:
    """‖W₁‖ of the first (pre-BN) layer at the first and last record.

    Attributes:
        parameter: Its name.
        first: ‖W₁‖ at the first record.
        last: At the last.
        ratio: last / first.
    """

    parameter: str
    first: float
    last: float
    ratio: float


@dataclass(frozen=True)
class Analysis:
    """Every analysis result of one run (None when the run was too short for it).

    Attributes:
        records: T, the records analysed.
        dim: d, the recorded coordinates.
        moving: Indices of the coordinates analysed (those that move; see :func:`moving`).
        excluded: ``{parameter: coordinates left out}`` (those that do not move).
        spectrum: Fig. 3a, increments, mean over moving coordinates with a 68 % bootstrap band.
        shape: Its numbers.
        shape_test: The whole increment spectrum's shape tested against flat and against the
            fitted linear model (:mod:`.spectrum_test`).
        autocorrelation: Fig. 3b on the log/paper lag grid up to T/2.
        long_lags: Its numbers at the lags of Remark 18.
        msd: The MSD power law.
        equilibrium: The equilibrium test (its ``flux`` is the top-2 PCA flux).
        epochs: (E,) epoch of each value of ``grad_eval``/``grad_train`` (1-based).
        grad_eval: ‖∇f‖/√d in eval mode over burn-in + recording (EWMA com = 100).
        grad_train: The same for the train-mode gradient (the authors' ``full_dw``).
        levels: ``{"eval" | "train": GradientLevels}``.
        weight_norm: The pre-BN weight's norm (see :class:`WeightNorm`).
        skipped: ``{analysis: reason}`` for the analyses the run was too short for.
    """

    records: int
    dim: int
    moving: np.ndarray
    excluded: dict[str, int]
    spectrum: PowerSpectrum | None
    shape: SpectrumShape | None
    shape_test: SpectrumShapeTest | None
    autocorrelation: Autocorrelation | None
    long_lags: LongLags | None
    msd: MSD | None
    equilibrium: EquilibriumTest | None
    epochs: np.ndarray | None
    grad_eval: GradientNorm | None
    grad_train: GradientNorm | None
    levels: dict[str, GradientLevels]
    weight_norm: WeightNorm
    skipped: dict[str, str]

    def numbers(self) -> dict[str, Any]:
        """Every number, JSON-ready, for ``result.json``."""
        nums: dict[str, Any] = {
            "records": self.records,
            "dim": self.dim,
            "coordinates_analysed": int(self.moving.size),
            "coordinates_excluded": self.excluded,
        }
        if self.spectrum is not None and self.shape is not None:
            nums["spectrum"] = {**self.spectrum.summary(), **asdict(self.shape)}
        if self.shape_test is not None:
            nums["spectrum_shape_test"] = self.shape_test.summary()
        if self.autocorrelation is not None and self.long_lags is not None:
            ll = asdict(self.long_lags)
            ll.pop("band99")
            nums["autocorrelation"] = {
                **self.autocorrelation.summary(),
                "band95": self.autocorrelation.band95,
                **ll,
            }
        if self.msd is not None:
            nums["msd"] = self.msd.summary()
        if self.equilibrium is not None:
            eq = self.equilibrium
            nums["equilibrium"] = {
                **eq.summary(),
                "relaxation_coefficients": eq.null_model.null_coefficients.tolist(),
            }
        for key, levels in self.levels.items():
            nums[f"grad_norm_{key}"] = asdict(levels)
        nums["pre_bn_weight_norm"] = asdict(self.weight_norm)
        nums["skipped"] = dict(self.skipped)
        return nums


def moving(x: np.ndarray, rtol: float = 1e-4) -> np.ndarray:
    """Indices of coordinates whose increment RMS exceeds ``rtol`` × the median RMS.

    The bias of the linear layer before BatchNorm has an exactly zero train-mode gradient (the
    batch mean removes it), so it moves only by round-off; its normalised statistics are noise.

    Returns:
        The indices, ascending.
    """
    rms = np.concatenate(
        [
            np.sqrt(np.mean(np.diff(np.asarray(x[:, c0 : c0 + 64], np.float64), axis=0) ** 2, 0))
            for c0 in range(0, x.shape[1], 64)
        ]
    )
    return np.flatnonzero(rms > rtol * np.median(rms))


def ac_lags(n: int) -> np.ndarray:
    """Log-spaced lags 1 … T/2 joined with the paper's grid ``arange(0, T, T // 100)`` ≤ T/2."""
    half = max(1, n // 2)
    grid = np.arange(0, half + 1, max(1, n // 100))
    logs = np.round(np.geomspace(1, half, 60)).astype(np.int64)
    return np.unique(np.concatenate([[0], grid, logs]))


def target_lags(lags: np.ndarray, n: int) -> np.ndarray:
    """Lags of the Remark 18 check: ≥ 10³ (the paper's) or, when T/2 < 4·10³, ≥ T/4."""
    low = 1000 if n // 2 >= 4000 else max(1, n // 4)
    return lags[(lags >= low) & (lags <= n // 2)]


def bartlett_outside(x: np.ndarray, lags: np.ndarray) -> dict[int, float]:
    r"""Fraction of coordinates with :math:`|\hat\rho(k)|` outside Bartlett's 99 % band.

    Bartlett: :math:`\operatorname{var}\hat\rho(k)\approx\frac1n\big(1+2\sum_{j<k}\rho(j)^2\big)`,
    with ρ the coordinate's own autocorrelation (computed densely, 64 coordinates at a time by
    :func:`~sgdscope.trajectory.analysis.autocorrelation`). Unlike ±2.576/√n, which holds for
    white noise only, it is the band of a correlated but otherwise unremarkable series.

    Returns:
        ``{lag: fraction}`` for each lag.
    """
    if lags.size == 0:
        return {}
    n, d = x.shape
    dense = np.arange(int(lags.max()) + 1)
    hits = np.zeros(lags.size)
    for c0 in range(0, d, 64):
        rho = autocorrelation(x[:, c0 : c0 + 64], lags=dense).per_coordinate  # (c, L)
        cum = np.concatenate([np.zeros((rho.shape[0], 1)), np.cumsum(rho[:, 1:] ** 2, axis=1)], 1)
        se = np.sqrt((1.0 + 2.0 * cum[:, lags - 1]) / n)  # sum over 1 <= j < k
        hits += (np.abs(rho[:, lags]) > Z99 * se).sum(axis=0)
    return {int(k): float(h / d) for k, h in zip(lags, hits, strict=True)}


def _shape_cv(x: np.ndarray, *, increments: bool) -> float:
    """Median over f of the CV across columns of Welch spectra divided by their own mean.

    Columns are processed 64 at a time (a 10⁵-epoch record does not fit in memory as float64
    Welch segments).

    Returns:
        The median coefficient of variation.
    """
    n = x.shape[0] - int(increments)
    seg = int(min(n, max(16, n // 8)))
    shapes = []
    for c0 in range(0, x.shape[1], 64):
        y = np.asarray(x[:, c0 : c0 + 64], dtype=np.float64)
        y = np.diff(y, axis=0) if increments else y
        p = scipy.signal.welch(y, nperseg=seg, axis=0)[1][1:]  # (F, c)
        shapes.append(p / p.mean(axis=0))
    shape = np.concatenate(shapes, axis=1)
    return float(np.median(shape.std(axis=1) / shape.mean(axis=1)))


def spectral_shape(x: np.ndarray, seed: int = 0) -> dict[str, float]:
    r"""Spread across weights of the increment spectra (Fig. 3a: "all weights are similar").

    - ``shape_cv``: median over f of the coefficient of variation across weights of each weight's
      Welch spectrum divided by its own mean power (the spread of the spectral *shapes*).
    - ``shape_cv_noise_floor``: the same statistic for white Gaussian increments of the same
      length (64 columns, ``seed``): what the estimator's own noise gives when every weight has
      the same (flat) spectrum. ``shape_cv_excess`` = √(cv² − floor²), the spread beyond it.
    - ``scale_ratio``: 90th/10th percentile of the weights' increment variances (the *levels*).

    Returns:
        The numbers above, by name.
    """
    cv = _shape_cv(x, increments=True)
    white = np.random.default_rng(seed).standard_normal((x.shape[0] - 1, 64))
    floor = _shape_cv(white, increments=False)
    var = np.concatenate(
        [
            np.diff(np.asarray(x[:, c0 : c0 + 64], np.float64), axis=0).var(axis=0)
            for c0 in range(0, x.shape[1], 64)
        ]
    )
    return {
        "shape_cv": cv,
        "shape_cv_noise_floor": floor,
        "shape_cv_excess": float(np.sqrt(max(cv**2 - floor**2, 0.0))),
        "scale_ratio": float(np.percentile(var, 90) / np.percentile(var, 10)),
    }


def spectrum_numbers(ps: PowerSpectrum) -> dict[str, float]:
    """Low/high power ratio, log–log slope and band width of the mean increment periodogram.

    - ``low_high_ratio``: mean power at f ≤ 10⁻² cycle/epoch (the paper's plotted range; the
      lowest 5 % of frequencies if fewer than 5 lie there) over the mean at f ≥ ¼. White
      increments (Brownian motion) give 1; increments of a confined process give < 1.
    - ``slope``: least-squares slope of log power on log f over f > 0 (0 when white).
    - ``band_relative_width``: median over f of (upper − lower)/mean of the 68 % bootstrap band
      of the mean over weights, the band the paper drew.

    Returns:
        The three numbers above, by name.
    """
    f, p = ps.frequency[1:], ps.mean[1:]
    low = f <= 1e-2
    if low.sum() < 5:
        low = np.arange(f.size) < max(5, f.size // 20)
    high = f >= 0.25
    ratio = float(p[low].mean() / p[high].mean())
    slope = float(np.polyfit(np.log(f), np.log(p), 1)[0])
    width = float(np.median((ps.upper[1:] - ps.lower[1:]) / p))
    return {"low_high_ratio": ratio, "slope": slope, "band_relative_width": width}


def _attempt(skipped: dict[str, str], name: str, fn: Callable[[], Any]) -> Any:
    """``fn()``, or None with the reason in ``skipped`` when the run is too short for it."""
    try:
        return fn()
    except ValueError as err:
        skipped[name] = str(err)
        return None


def _long_lags(ac: Autocorrelation, x: np.ndarray, n: int) -> LongLags:
    tl = target_lags(ac.lags, n)
    sel = np.isin(ac.lags, tl)
    bartlett = bartlett_outside(x, tl)
    return LongLags(
        target_lags=tl.tolist(),
        mean_at_target_lags=ac.mean[sel].tolist(),
        fraction_outside_99_white=ac.fraction_outside_99[sel].tolist(),
        fraction_outside_99_bartlett=[bartlett[int(k)] for k in tl],
        band99=ac.band99,
    )


def analyse(
    traj: Trajectory,
    history: dict[str, list[float]],
    *,
    burnin: int,
    n_surrogates: int,
    seed: int,
) -> Analysis:
    """Run every Fig. 3 analysis and the equilibrium diagnostics on a recorded run.

    Args:
        traj: The recorded trajectory (one record per epoch after burn-in).
        history: Burn-in series from :class:`~sgdscope.reproduce.trajectory.record.RunInfo`.
        burnin: Epochs before the first record.
        n_surrogates: Surrogates of the equilibrium test's reversible null.
        seed: Seed of the bootstrap bands and surrogates.

    Returns:
        An :class:`Analysis`; an analysis the run is too short for is listed in ``skipped``.
    """
    skipped: dict[str, str] = {}
    x_all = np.asarray(traj.weights[0 : len(traj)])
    keep = moving(x_all) if len(x_all) > 2 else np.arange(x_all.shape[1])
    x = x_all[:, keep]
    n = x.shape[0]
    excluded = _names(traj, np.setdiff1d(np.arange(x_all.shape[1]), keep))
    ps = _attempt(skipped, "spectrum", lambda: power_spectrum(x, increments=True, seed=seed))
    shape = (
        SpectrumShape(**spectrum_numbers(ps), **spectral_shape(x, seed)) if ps is not None else None
    )
    shape_test = _attempt(
        skipped,
        "spectrum_shape_test",
        lambda: spectrum_shape_test(x, n_surrogates=n_surrogates, seed=seed),
    )
    lags = ac_lags(n)
    ac = _attempt(skipped, "autocorrelation", lambda: autocorrelation(x, lags=lags))
    long_lags = _long_lags(ac, x, n) if ac is not None else None
    m = _attempt(skipped, "msd", lambda: msd(x, seed=seed))
    eq = _attempt(
        skipped,
        "equilibrium_test",
        lambda: equilibrium_test(x, n_surrogates=n_surrogates, seed=seed),
    )
    grads = _gradients(traj, history, burnin, skipped)
    return Analysis(
        records=n,
        dim=int(x_all.shape[1]),
        moving=keep,
        excluded=excluded,
        spectrum=ps,
        shape=shape,
        shape_test=shape_test,
        autocorrelation=ac,
        long_lags=long_lags,
        msd=m,
        equilibrium=eq,
        **grads,
        weight_norm=_weight_norm(traj, x_all),
        skipped=skipped,
    )


def _levels(g: GradientNorm, epochs: np.ndarray, burnin: int, d: int) -> GradientLevels:
    s = g.smoothed
    first = int(np.searchsorted(epochs, 10))  # the paper's x-axis starts at epoch 10
    after = s[burnin - int(epochs[0]) + 1 :] if epochs[-1] > burnin else s[-1:]
    return GradientLevels(
        smoothed_at_epoch_10=float(s[min(first, s.size - 1)]),
        smoothed_final=float(s[-1]),
        drop_from_epoch_10=float(s[min(first, s.size - 1)] / s[-1]),
        smoothed_range_recorded=[float(after.min()), float(after.max())],
        drop_over_recording=float(after[0] / after[-1]),
        dim=d,
    )


def _gradients(
    traj: Trajectory, history: dict[str, list[float]], burnin: int, skipped: dict[str, str]
) -> dict[str, Any]:
    """Fig. 3c series over burn-in and recording, eval and train mode, EWMA com = 100."""
    d = int(traj.meta["full_dim"])
    rec = gradient_norm(traj) if traj.gradients is not None and len(traj.gradients) else None
    eval_norms = np.asarray(history["grad_norm_eval"], dtype=np.float64)
    train_norms = np.asarray(history["grad_norm_train"], dtype=np.float64)
    epochs = np.asarray(history["epoch"], dtype=np.int64)
    if rec is not None:
        eval_norms = np.concatenate([eval_norms, rec.value * np.sqrt(rec.dim)])
        epochs = np.concatenate([epochs, burnin + np.asarray(traj.gradient_steps)])
    if "grad_norm_train" in traj.scalars:
        train_norms = np.concatenate([train_norms, traj.scalars["grad_norm_train"]])
    if epochs.size == 0:
        skipped["gradient_norm"] = "no epoch was trained"
        return {"epochs": None, "grad_eval": None, "grad_train": None, "levels": {}}
    g_eval = gradient_norm(eval_norms, dim=d)
    g_train = gradient_norm(train_norms[: epochs.size], dim=d)
    return {
        "epochs": epochs,
        "grad_eval": g_eval,
        "grad_train": g_train,
        "levels": {
            k: _levels(g, epochs, burnin, d) for k, g in (("eval", g_eval), ("train", g_train))
        },
    }


def _names(traj: Trajectory, idx: np.ndarray) -> dict[str, int]:
    """``{parameter name: number of its coordinates among idx}``."""
    lay = traj.meta["layout"]
    owner = np.searchsorted(np.asarray(lay["offsets"]), idx, side="right") - 1
    names, counts = np.unique(owner, return_counts=True)
    return {lay["names"][int(i)]: int(c) for i, c in zip(names, counts, strict=True)}


def _weight_norm(traj: Trajectory, x: np.ndarray) -> WeightNorm:
    """‖W₁‖ of the first (pre-BN) layer at the first and last record.

    BN makes f invariant to its scale, and without weight decay SGD only grows it: a slow drift
    that alone gives long-lag autocorrelation and low-frequency power.

    Returns:
        The :class:`WeightNorm`.
    """
    lay = traj.meta["layout"]
    size = int(np.prod(lay["shapes"][0]))
    w = x[:, lay["offsets"][0] : lay["offsets"][0] + size].astype(np.float64)
    first, last = float(np.linalg.norm(w[0])), float(np.linalg.norm(w[-1]))
    return WeightNorm(lay["names"][0], first, last, last / first)
