r"""The eigenspectrum of D(x) and the statistics the paper reads off it (§IV-A, Figs 1–2).

A :class:`Spectrum` holds the computed eigenvalues (descending) and, optionally, eigenvectors. It
is *complete* when every eigenvalue not listed is exactly zero in exact arithmetic (dense and Gram
methods), and *partial* otherwise (randomized top-k): then the unlisted d − k eigenvalues are only
known to lie in [0, λ_k] and to sum to tr D − Σ_{i≤k} λ_i, and every statistic says whether it is
exact or a bound.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["FLOAT32_EPS", "PAPER", "Spectrum"]

FLOAT32_EPS = float(np.finfo(np.float32).eps)
"""ε_float32 = 2⁻²³, in the paper's rank threshold λ_max · d · ε_float32 (§IV-A; numpy's
``matrix_rank`` rule for a float32 matrix)."""

PAPER = "paper"
"""``rtol="paper"``: the paper's threshold λ_max · d · ε_float32. It reaches λ_max at
d = 2²³ ≈ 8.4M, where every rank is 0; use it to compare with the paper, not at scale."""


@dataclass(frozen=True)
class Spectrum:
    """Eigenvalues (and eigenvectors) of the gradient-noise diffusion matrix D(x), eq. (2).

    Attributes:
        eigenvalues: The computed eigenvalues, float64, descending, shape (k,).
        eigenvectors: Matching orthonormal eigenvectors, shape (d, k), or None.
        dim: d, the number of parameters.
        n_samples: N, the number of samples D was averaged over.
        trace: tr D = (1/N) Σ_k ‖g_k − g‖², computed exactly from the data in every method.
        complete: True when every eigenvalue not in ``eigenvalues`` is exactly zero.
        method: The method that computed it: "dense", "gram" or "randomized".
        reason: Why that method was used (the choice of ``method="auto"``, or "requested").
        residuals: For the randomized method, ‖D v_i − λ_i v_i‖ for each pair, shape (k,): there is
            an eigenvalue of D within this distance of λ_i. None for exact methods.
        iterations: Passes over the data made by the eigensolver (0 for exact methods).
        converged: Whether the eigensolver met its convergence test.
        info: Free-form details (timings, block size, ...), JSON-ready.
        noise_floor: Eigenvalues below this are not resolved by the computation: the rounding
            of the per-sample gradients (2ε · mean ‖g_k‖², Weyl's inequality) and, for the
            randomized method, its residual tolerance. The default rank threshold. None for
            spectra built by hand, whose default threshold is then the paper's.
        precision: Arithmetic of the products: "float64", or "mixed" (the model's dtype inside a
            chunk, float64 across chunks).
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray | None
    dim: int
    n_samples: int
    trace: float
    complete: bool
    method: str
    reason: str = "requested"
    residuals: np.ndarray | None = None
    iterations: int = 0
    converged: bool = True
    info: dict = field(default_factory=dict)
    noise_floor: float | None = None
    precision: str = "float64"

    # ----------------------------------------------------------------------------- thresholds
    @property
    def lambda_max(self) -> float:
        """The largest eigenvalue λ_max (0 for D = 0)."""
        return float(self.eigenvalues[0]) if self.eigenvalues.size else 0.0

    @property
    def default_rtol(self) -> float:
        """The paper's relative threshold d · ε_float32 (as numpy's ``matrix_rank``)."""
        return self.dim * FLOAT32_EPS

    def threshold(self, rtol: float | str | None = None) -> float:
        """Absolute rank threshold.

        Args:
            rtol: None for the default, the noise floor of the computation (see ``noise_floor``;
                the paper's threshold for spectra without one); ``"paper"`` for the paper's
                λ_max · d · ε_float32; a number r > 0 for r · λ_max.

        Returns:
            The threshold, in the units of the eigenvalues.

        Raises:
            ValueError: If ``rtol`` is neither None, ``"paper"`` nor a number > 0.
        """
        if rtol is None:
            if self.noise_floor is not None:
                return float(self.noise_floor)
            rtol = PAPER
        if rtol == PAPER:
            return self.default_rtol * self.lambda_max
        if isinstance(rtol, str) or not float(rtol) > 0:
            raise ValueError(
                f"the 'rtol' parameter of Spectrum.threshold must be a number > 0, None (the "
                f"noise floor) or {PAPER!r}, got {rtol!r}."
            )
        return float(rtol) * self.lambda_max

    def threshold_rule(self, rtol: float | str | None = None) -> str:
        """The rule behind :meth:`threshold`, in words, for every printed rank."""
        if rtol is None and self.noise_floor is not None:
            return f"noise floor of the computation ({self.precision})"
        if rtol is None or rtol == PAPER:
            return "lambda_max * d * eps_float32"
        return f"lambda_max * {float(rtol):g}"

    def _tail_bound(self) -> float:
        """Upper bound on every eigenvalue not listed (0 when complete)."""
        if self.complete:
            return 0.0
        return float(self.eigenvalues[-1]) if self.eigenvalues.size else math.inf

    # ---------------------------------------------------------------------------------- rank
    def rank(self, rtol: float | str | None = None) -> int:
        """Numerical rank: #{λ > threshold} (see :meth:`threshold` for ``rtol``).

        Warns when the threshold is at or above λ_max (the rank is then 0 by construction).

        Returns:
            The number of eigenvalues above the threshold.

        Raises:
            ValueError: If the spectrum is partial and its smallest computed eigenvalue is still
                above the threshold, so that the rank is not determined by what was computed.
        """
        thr = self.threshold(rtol)
        if self.lambda_max > 0 and thr >= self.lambda_max:
            warnings.warn(
                f"the rank threshold {thr:.3g} ({self.threshold_rule(rtol)}) is at or above "
                f"λ_max = {self.lambda_max:.3g}, so the rank is 0 by construction and means "
                "nothing; at d ≥ 2²³ the paper's threshold always does this. Use the default "
                "(rtol=None, the noise floor) or a smaller rtol.",
                stacklevel=2,
            )
        if not self.rank_known(rtol):
            raise ValueError(
                f"the rank at threshold {thr:.3g} is not determined: all {self.eigenvalues.size} computed "
                f"eigenvalues lie above it (smallest {self._tail_bound():.3g}). Call "
                "GradientNoise.spectrum(k=None), which grows k until it passes the threshold, or a larger k."
            )
        return int(np.count_nonzero(self.eigenvalues > thr))

    def rank_known(self, rtol: float | str | None = None) -> bool:
        """Whether the computed eigenvalues reach below the threshold, so that :meth:`rank` is defined."""
        return self._tail_bound() <= self.threshold(rtol)

    def rank_fraction(self, rtol: float | str | None = None) -> float:
        """rank / d (the paper reports it in %: 0.3–2 %)."""
        return self.rank(rtol) / self.dim

    def rank_is_certain(self, rtol: float | str | None = None) -> bool:
        """Whether every residual bound keeps its eigenvalue on the same side of the threshold."""
        if self.residuals is None:
            return True
        thr = self.threshold(rtol)
        return bool(np.all(np.abs(self.eigenvalues - thr) > self.residuals))

    # ---------------------------------------------------------------------------- shape stats
    @property
    def tail_mass(self) -> float:
        """tr D minus the sum of the computed eigenvalues (≥ 0 up to round-off)."""
        return max(self.trace - float(self.eigenvalues.sum()), 0.0)

    def top_k_share(self, k: int) -> float:
        """Σ_{i≤k} λ_i / tr D: the share of the total noise power in the top k directions."""
        if k > self.eigenvalues.size:
            raise ValueError(
                f"the 'k' parameter of Spectrum.top_k_share must be an int in [1, {self.eigenvalues.size}] "
                f"(the number of computed eigenvalues), got {k}."
            )
        return float(self.eigenvalues[:k].sum() / self.trace) if self.trace > 0 else 0.0

    def _weights(self) -> np.ndarray:
        lam = np.clip(self.eigenvalues, 0.0, None)
        return lam / lam.sum() if lam.sum() > 0 else lam

    def effective_rank(self) -> float:
        r"""Entropy effective rank exp(−Σ p_i log p_i), p_i = λ_i / Σλ (Roy & Vetterli 2007).

        On a partial spectrum it is computed over the listed eigenvalues (see ``top_k_share``).

        Returns:
            The effective rank (0 when no eigenvalue is listed).
        """
        p = self._weights()
        p = p[p > 0]
        return float(np.exp(-(p * np.log(p)).sum())) if p.size else 0.0

    def participation_ratio(self) -> float:
        r"""(Σλ)² / Σλ²: how many directions carry the noise; over the listed eigenvalues."""
        lam = np.clip(self.eigenvalues, 0.0, None)
        s2 = float((lam**2).sum())
        return float(lam.sum() ** 2 / s2) if s2 > 0 else 0.0

    # ---------------------------------------------------------------- the paper's three readings
    def stats(self, rtol: float | str | None = None) -> dict:
        """Mean ± std of the eigenvalues in three readings (the paper's "±" of §IV-A is ambiguous).

        - ``raw``: all d eigenvalues as they are. The mean is exact (tr D / d); on a partial
          spectrum the std is an interval ``[std_low, std_high]`` from the tail bounds.
        - ``clipped``: all d eigenvalues clipped from below at the threshold (what the authors'
          ``describe()`` printed), exact whenever the rank is.
        - ``above``: only the eigenvalues above the threshold.

        Returns:
            ``{"threshold": thr, "raw": {...}, "clipped": {...}, "above": {...}}``.
        """
        thr = self.threshold(rtol)
        d, lam = self.dim, self.eigenvalues
        n_tail = d - lam.size
        mean_raw = self.trace / d
        s2_top = float((lam**2).sum())
        if self.complete or n_tail == 0:
            var_low = var_high = s2_top / d - mean_raw**2
        else:
            tail, bound = self.tail_mass, self._tail_bound()
            # Σ tail λ² is smallest when the tail mass is spread evenly, largest when it is piled at the bound.
            var_low = (s2_top + tail**2 / n_tail) / d - mean_raw**2
            var_high = (s2_top + bound * tail) / d - mean_raw**2
        above = lam[lam > thr]
        r = self.rank(rtol)
        clipped_sum = float(above.sum()) + (d - r) * thr
        clipped_sq = float((above**2).sum()) + (d - r) * thr**2
        clipped_mean = clipped_sum / d
        return {
            "threshold": thr,
            "raw": {
                "mean": mean_raw,
                "std": math.sqrt(max(var_low, 0.0)) if var_low == var_high else None,
                "std_low": math.sqrt(max(var_low, 0.0)),
                "std_high": math.sqrt(max(var_high, 0.0)),
            },
            "clipped": {
                "mean": clipped_mean,
                "std": math.sqrt(max(clipped_sq / d - clipped_mean**2, 0.0)),
            },
            "above": {
                "count": int(above.size),
                "mean": float(above.mean()) if above.size else 0.0,
                "std": float(above.std()) if above.size else 0.0,
            },
        }

    def histogram(
        self, bins: int | np.ndarray = 30, rtol: float | str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Log-binned histogram of all d eigenvalues clipped at the threshold (the paper's Fig. 1).

        Args:
            bins: Number of log-spaced bins from the threshold to λ_max, or explicit bin edges
                (the authors used ``np.logspace(-5, 2, 10)``).
            rtol: Relative threshold; None is the paper's.

        Returns:
            ``(counts, edges)``; the d − rank clipped eigenvalues fall in the first bin.
        """
        thr = self.threshold(rtol)
        r = self.rank(rtol)
        values = np.concatenate([self.eigenvalues[:r], np.full(self.dim - r, thr)])
        if np.ndim(bins) == 0:
            hi = max(self.lambda_max, thr) * (1 + 1e-9)
            edges = np.logspace(np.log10(thr) - 1e-9, np.log10(hi), int(bins) + 1)
        else:
            edges = np.asarray(bins, dtype=float)
        counts, edges = np.histogram(values, bins=edges)
        return counts, edges

    # ----------------------------------------------------------------------------- subspaces
    def subspace_overlap(self, other: Spectrum, k: int) -> float:
        r"""Overlap ‖V_kᵀ W_k‖_F² / k ∈ [0, 1] of two spectra's top-k eigenvectors (Remark 13).

        1 means the same top-k subspace (D constant along training), k/d is the chance level.

        Returns:
            The overlap.

        Raises:
            ValueError: If either spectrum has fewer than k eigenvectors, or the dimensions differ.
        """
        tops = []
        for s, name in ((self, "self"), (other, "other")):
            if s.eigenvectors is None or s.eigenvectors.shape[1] < k:
                have = 0 if s.eigenvectors is None else s.eigenvectors.shape[1]
                raise ValueError(
                    f"the 'k' parameter of Spectrum.subspace_overlap must be at most the number of "
                    f"eigenvectors of {name} ({have}), got {k}. Compute the spectra with k ≥ {k}."
                )
            tops.append(s.eigenvectors[:, :k])
        if self.dim != other.dim:
            raise ValueError(
                f"the 'other' parameter of Spectrum.subspace_overlap must have the same d = {self.dim}, "
                f"got d = {other.dim}."
            )
        m = tops[0].T @ tops[1]
        return float((m**2).sum() / k)

    # ------------------------------------------------------------------------------- summary
    def summary(self, rtol: float | str | None = None, top: int = 10) -> dict:
        """A JSON-ready dict of everything above at the paper's threshold (or ``rtol``).

        When the rank is not determined (a top-k spectrum that stops above the threshold), the
        rank fields and the threshold-dependent statistics are None and ``rank_note`` says why.

        Returns:
            A dict of plain numbers, strings and lists.
        """
        known = self.rank_known(rtol)
        r = self.rank(rtol) if known else None
        return {
            "dim": self.dim,
            "n_samples": self.n_samples,
            "method": self.method,
            "reason": self.reason,
            "complete": self.complete,
            "n_eigenvalues": int(self.eigenvalues.size),
            "converged": bool(self.converged),
            "iterations": int(self.iterations),
            "threshold_rule": self.threshold_rule(rtol),
            "noise_floor": self.noise_floor,
            "precision": self.precision,
            "threshold": self.threshold(rtol),
            "rank": r,
            "rank_percent": None if r is None else 100.0 * r / self.dim,
            "rank_is_certain": self.rank_is_certain(rtol) if known else None,
            "rank_note": None
            if known
            else f"the {self.eigenvalues.size} computed eigenvalues all lie above the threshold; use k=None",
            "ranks_at_rtol": {
                f"{t:g}": self.rank(t) for t in (1e-3, 1e-6, 1e-9) if self.rank_known(t)
            },
            "rank_paper": self.rank(PAPER)
            if self.rank_known(PAPER) and self.threshold(PAPER) < self.lambda_max
            else None,
            "lambda_max": self.lambda_max,
            "trace": self.trace,
            "top_eigenvalues": self.eigenvalues[:top].tolist(),
            "top_10_share": self.top_k_share(min(10, self.eigenvalues.size))
            if self.eigenvalues.size
            else 0.0,
            "effective_rank": self.effective_rank(),
            "participation_ratio": self.participation_ratio(),
            "stats": self.stats(rtol) if known else None,
            "info": self.info,
        }

    # ----------------------------------------------------------------------------- save / load
    def save(
        self,
        path: str | os.PathLike[str],
        *,
        eigenvectors: bool | int = True,
        eigenvector_dtype: np.dtype | type = np.float64,
    ) -> Path:
        """Write the spectrum to an ``.npz`` file, atomically (a temporary file, then a rename).

        Args:
            path: The file to write.
            eigenvectors: Keep all eigenvectors (True), none (False), or the top m (an int).
            eigenvector_dtype: Their dtype on disk (float32 halves the file).

        Returns:
            The path written.

        Raises:
            TypeError: If ``info`` is not JSON-serialisable.
        """
        path = Path(path)
        V = self.eigenvectors
        if V is None or eigenvectors is False:
            V = np.zeros((self.dim, 0))
        elif eigenvectors is not True:
            V = V[:, : int(eigenvectors)]
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(
            tmp,
            format=np.array("sgdscope.Spectrum/1"),
            eigenvalues=self.eigenvalues,
            eigenvectors=np.asarray(V, dtype=eigenvector_dtype),
            has_eigenvectors=np.array(self.eigenvectors is not None and eigenvectors is not False),
            residuals=np.array([]) if self.residuals is None else self.residuals,
            has_residuals=np.array(self.residuals is not None),
            scalars=np.array([self.dim, self.n_samples, self.trace, self.iterations], dtype=float),
            flags=np.array([self.complete, self.converged]),
            text=np.array([self.method, self.reason, self.precision]),
            noise_floor=np.array(np.nan if self.noise_floor is None else self.noise_floor),
            info=np.array(json.dumps(self.info)),
        )
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Spectrum:
        """Read a spectrum written by :meth:`save` (or by the reproduce cache of sgdscope ≤ 0.1).

        Returns:
            The :class:`Spectrum`, eigenvectors included when saved.

        Raises:
            ValueError: If the file is not a saved spectrum (the message names it).
        """
        path = Path(path)
        try:
            z = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: not a saved sgdscope spectrum ({err}).") from None
        with z:
            files = set(z.files)
            try:
                if "format" in files:
                    dim, n, trace, iterations = z["scalars"].tolist()
                    complete, converged = (bool(v) for v in z["flags"])
                    method, reason, precision = (str(t) for t in z["text"])
                    floor = float(z["noise_floor"])
                    has_vectors, has_res = bool(z["has_eigenvectors"]), bool(z["has_residuals"])
                    info = json.loads(str(z["info"]))
                else:  # the reproduce cache before Spectrum.save existed
                    dim, n, trace, complete, iterations = z["scalars"].tolist()
                    method, reason, conv = (str(t) for t in z["text"])
                    converged, precision = (
                        conv == "True",
                        str(z["precision"]) if "precision" in files else "float64",
                    )
                    floor = float(z["noise_floor"]) if "noise_floor" in files else math.nan
                    has_vectors, has_res = True, z["residuals"].size > 0
                    info = {"device": str(z["device"]) if "device" in files else "not recorded"}
                    if "seconds" in files:
                        info["seconds"] = float(z["seconds"])
                return cls(
                    eigenvalues=z["eigenvalues"].astype(np.float64),
                    eigenvectors=z["eigenvectors"].astype(np.float64) if has_vectors else None,
                    dim=int(dim), n_samples=int(n), trace=float(trace), complete=bool(complete),
                    method=method, reason=reason,
                    residuals=z["residuals"] if has_res else None,
                    iterations=int(iterations), converged=bool(converged), info=info,
                    noise_floor=None if not math.isfinite(floor) else floor, precision=precision,
                )  # fmt: skip
            except KeyError as err:
                raise ValueError(
                    f"{path}: not a saved sgdscope spectrum (missing {err}); write it with "
                    "Spectrum.save()."
                ) from None
