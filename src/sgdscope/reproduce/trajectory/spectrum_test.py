r"""Fig. 3a as a test: the whole increment spectrum's shape against flat and against the linear model.

Remark 17 reads Fig. 3a as "low-frequency modes, not flat" (Brownian motion has white
increments). One band ratio cannot tell a real shape from the estimator's noise, so
:func:`spectrum_shape_test` tests the whole spectrum, in the top-k PCA subspace of the positions
where the slow modes live: the trace of the Welch spectral density matrix of the increments,
:math:`P(f) = \sum_i P_{ii}(f)` (invariant to rotations within the subspace, the analogue of
the paper's mean over weights), against two models fitted to the same coordinates:

- **flat**: a random walk, white increments (the paper's "Brownian motion would be flat");
- **linear**: the VAR(1)/OU model of :func:`~sgdscope.trajectory.analysis.ou.fit_ou` with its
  current Q kept, whose increments have the exact spectrum
  :math:`\operatorname{tr}\big[(I - Az)^{-1}\Sigma(I - Az)^{-H}\big]\,|1 - z|^2`,
  :math:`z = e^{-2\pi i f}`, :math:`\Sigma = S - ASA^\top` (Lütkepohl 2005, §2.1).

The statistic is the variance over frequencies of :math:`\log\hat P(f) - \log P_\text{model}(f)`
(the shape only: a level is free). Its null law comes from a parametric bootstrap: surrogates
drawn from the fitted model, refitted like the data, and run through the same estimator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.signal

from ...trajectory import pca_projection
from ...trajectory.analysis.ou import OUFit, fit_ou, fitted_chain

__all__ = ["SpectrumShapeTest", "increment_spectrum", "linear_spectrum", "spectrum_shape_test"]


@dataclass(frozen=True)
class SpectrumShapeTest:
    """Result of :func:`spectrum_shape_test`.

    Attributes:
        frequency: (F,) frequencies (cycles per record, 0 excluded).
        observed: (F,) Welch trace spectrum of the increments in the subspace.
        linear: (F,) the fitted linear model's exact increment spectrum.
        statistic_flat: Shape distance of ``observed`` to a flat spectrum.
        p_flat: Its bootstrap p-value (white increments).
        statistic_linear: Shape distance of ``observed`` to ``linear``.
        p_linear: Its bootstrap p-value (the fitted model, refitted on each surrogate).
        tilt: Mean log power at the lowest tenth of frequencies minus that at the highest
            half (> 0: a low-frequency excess over flat).
        n_components: k.
        n_surrogates: Surrogates per model.
    """

    frequency: np.ndarray
    observed: np.ndarray
    linear: np.ndarray
    statistic_flat: float
    p_flat: float
    statistic_linear: float
    p_linear: float
    tilt: float
    n_components: int
    n_surrogates: int

    def summary(self) -> dict:
        """The scalars, JSON-ready."""
        return {
            k: getattr(self, k)
            for k in ("statistic_flat", "p_flat", "statistic_linear", "p_linear", "tilt")
        } | {"n_components": self.n_components, "n_surrogates": self.n_surrogates}


def increment_spectrum(y: np.ndarray, segment: int) -> tuple[np.ndarray, np.ndarray]:
    """Welch trace spectrum of the increments of y (T, k); frequencies > 0 only.

    Returns:
        ``(frequency, power)``.
    """
    f, p = scipy.signal.welch(np.diff(y, axis=0), nperseg=segment, axis=0)
    return f[1:], p[1:].sum(axis=1)


def linear_spectrum(fit: OUFit, frequency: np.ndarray) -> np.ndarray:
    """The exact increment trace spectrum of a fitted VAR(1) (see the module docstring).

    Returns:
        (F,) spectral density, up to Welch's constant factor.
    """
    k = fit.A.shape[0]
    sigma = fit.S - fit.A @ fit.S @ fit.A.T
    z = np.exp(-2j * np.pi * np.asarray(frequency))
    m = np.eye(k)[None] - fit.A[None] * z[:, None, None]  # (F, k, k)
    h = np.linalg.inv(m)
    p = np.einsum("fij,jk,fik->f", h, sigma, h.conj()).real
    return p * np.abs(1.0 - z) ** 2


def _distance(observed: np.ndarray, model: np.ndarray) -> float:
    """Variance over f of log(observed/model), over the frequencies where both are positive."""
    ok = (observed > 0) & (model > 0) & np.isfinite(model)
    if ok.sum() < 2:  # no positive spectrum: the model is not a stationary process
        return float("inf")
    d = np.log(observed[ok]) - np.log(model[ok])
    return float(np.mean((d - d.mean()) ** 2))


def _tilt(f: np.ndarray, p: np.ndarray) -> float:
    lp = np.log(p)
    return float(lp[: max(1, f.size // 10)].mean() - lp[f.size // 2 :].mean())


def spectrum_shape_test(
    x: np.ndarray, *, n_components: int = 10, n_surrogates: int = 99, seed: int = 0
) -> SpectrumShapeTest:
    """Test the increment spectrum's shape against flat and against the fitted linear model.

    Args:
        x: (T, d) positions (moving coordinates only), T ≥ 200.
        n_components: Dimension k of the subspace of the increments' top-k principal
            components (at most d).
        n_surrogates: Surrogates of each model.
        seed: Seed of the surrogates.

    Returns:
        The :class:`SpectrumShapeTest`.

    Raises:
        ValueError: If the record is shorter than 200.
    """
    n, d = x.shape
    if n < 200:
        raise ValueError(f"the spectrum-shape test needs ≥ 200 records, got {n}")
    k = min(n_components, d)
    y = pca_projection(x, k, increments=True).apply(x)
    segment = int(min(1024, max(16, n // 8)))
    fit = fit_ou(y)
    f, p = increment_spectrum(y, segment)
    lin = linear_spectrum(fit, f)
    obs_flat, obs_lin = _distance(p, np.ones_like(p)), _distance(p, lin)
    rng = np.random.default_rng(seed)
    chol = np.linalg.cholesky(np.cov(np.diff(y, axis=0), rowvar=False).reshape(k, k))
    chain = fitted_chain(fit, n)
    null_flat, null_lin = np.empty(n_surrogates), np.empty(n_surrogates)
    for i in range(n_surrogates):
        white = rng.standard_normal((n, k)) @ chol.T
        null_flat[i] = _distance(*_pair(increment_spectrum(np.cumsum(white, axis=0), segment)))
        path = chain.paths(rng.standard_normal((1, n, k)))[0].T
        fs, ps = increment_spectrum(path, segment)
        null_lin[i] = _distance(ps, linear_spectrum(fit_ou(path), fs))
    return SpectrumShapeTest(
        frequency=f,
        observed=p,
        linear=lin,
        statistic_flat=obs_flat,
        p_flat=float((1 + np.sum(null_flat >= obs_flat)) / (n_surrogates + 1)),
        statistic_linear=obs_lin,
        p_linear=float((1 + np.sum(null_lin >= obs_lin)) / (n_surrogates + 1)),
        tilt=_tilt(f, p),
        n_components=k,
        n_surrogates=n_surrogates,
    )


def _pair(fp: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(power, flat)`` of a ``(frequency, power)`` pair, for the flat model's distance."""
    return fp[1], np.ones_like(fp[1])
