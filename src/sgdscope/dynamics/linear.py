"""The linearised (Ornstein–Uhlenbeck) case: Lemma 20 of Chaudhari & Soatto (2018)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.linalg

__all__ = ["LinearDecomposition", "linear_decomposition"]

_WHERE = "linear_decomposition"


@dataclass(frozen=True)
class LinearDecomposition:
    r"""Result of :func:`linear_decomposition` for :math:`dx = -F x\,dt + \sqrt{2\beta^{-1}D}\,dW`.

    Attributes:
        U: (dim, dim) symmetric; the potential is Φ(x) = ½ xᵀ U x. ``U = S⁻¹``.
        Q: (dim, dim) antisymmetric; the force is j(x) = −Q U x.
        S: (dim, dim) symmetric; solves F S + S Fᵀ = 2D. The stationary covariance is β⁻¹ S.
        commute: Whether F D = D Fᵀ (for a symmetric Hessian F: whether F and D commute); exactly
            then Q = 0 and the process satisfies detailed balance.
        stable: Whether every eigenvalue of F has a positive real part (a minimum of f), so that a
            stationary Gaussian exists.
        residual: Relative residual ‖F − (D + Q) U‖ / ‖F‖ of the decomposition (eq. 16).
    """

    U: np.ndarray
    Q: np.ndarray
    S: np.ndarray
    commute: bool
    stable: bool
    residual: float

    def __iter__(self) -> Iterator[np.ndarray]:
        """Unpack as ``U, Q, S``."""
        return iter((self.U, self.Q, self.S))

    def potential(self, x: np.ndarray) -> np.ndarray:
        """Φ(x) = ½ xᵀ U x for points of shape (..., dim); returns (...)."""
        x = np.asarray(x, dtype=float)
        return 0.5 * np.einsum("...i,ij,...j->...", x, self.U, x)

    def force(self, x: np.ndarray) -> np.ndarray:
        """j(x) = −Q U x for points of shape (..., dim); returns (..., dim)."""
        x = np.asarray(x, dtype=float)
        return -np.einsum("ij,...j->...i", self.Q @ self.U, x)

    def stationary_covariance(self, beta: float) -> np.ndarray:
        """β⁻¹ S, the covariance of the stationary Gaussian ρ_ss ∝ exp(−β Φ).

        Args:
            beta: Inverse temperature β > 0.

        Returns:
            The (dim, dim) covariance matrix.

        Raises:
            ValueError: If F is not stable (then no stationary density exists) or β ≤ 0.
        """
        if not self.stable:
            raise ValueError(
                "the stationary covariance exists only when every eigenvalue of F has a positive "
                "real part (a minimum of f); this F has an eigenvalue with real part ≤ 0, so the "
                "process dx = −F x dt + √(2β⁻¹D) dW has no stationary density."
            )
        if not np.isfinite(beta) or beta <= 0:
            raise ValueError(
                "the 'beta' parameter of LinearDecomposition.stationary_covariance must be a "
                f"real number in (0, inf], got {beta!r}."
            )
        return self.S / beta


def _square(name: str, value: np.ndarray, dim: int | None) -> np.ndarray:
    a = np.asarray(value, dtype=float)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or (dim is not None and a.shape[0] != dim):
        want = "a square matrix" if dim is None else f"a ({dim}, {dim}) matrix like F"
        raise ValueError(f"the '{name}' parameter of {_WHERE} must be {want}, got shape {a.shape}.")
    if not np.all(np.isfinite(a)):
        raise ValueError(
            f"the '{name}' parameter of {_WHERE} must be finite, got {int((~np.isfinite(a)).sum())} "
            "NaN or infinite entries."
        )
    return a


def linear_decomposition(
    F: np.ndarray, D: np.ndarray, *, atol: float = 1e-10
) -> LinearDecomposition:
    r"""Decompose the linear drift −F x with constant diffusion D (Lemma 20; Kwon, Ao & Thouless 2005).

    Near a critical point, ∇f = F x and D = D(0) (Chaudhari & Soatto, eq. 15); then uniquely
    F = (D + Q) U (eq. 16) with Q antisymmetric and U symmetric, Φ(x) = ½ xᵀ U x and
    j(x) = −Q U x (eq. 8 in the linear case). Computed as

    .. math:: F S + S F^\top = 2D,\qquad U = S^{-1},\qquad Q = F S - D,

    so that (D + Q) U = F S S⁻¹ = F. Q is antisymmetric because the Lyapunov equation makes
    F S − D = −(F S − D)ᵀ. Q = 0 exactly when F D = D Fᵀ (F = D U with U symmetric); for a
    symmetric Hessian F that is "F and D commute", the equilibrium (detailed-balance) case.
    When F is stable, ρ_ss is the Gaussian with covariance β⁻¹ S ∝ exp(−β Φ).

    Args:
        F: (dim, dim) Jacobian of ∇f at the critical point (the Hessian; need not be symmetric,
            which covers any linear drift −F x).
        D: (dim, dim) symmetric positive semi-definite diffusion matrix.
        atol: Tolerance, relative to ‖F‖‖D‖, for declaring that F D = D Fᵀ.

    Returns:
        A :class:`LinearDecomposition` (unpacks as ``U, Q, S``).

    Raises:
        ValueError: If shapes disagree, entries are not finite, D is not symmetric or not positive
            semi-definite, the Lyapunov equation is singular (two eigenvalues of F sum to zero),
            or S is singular (D is degenerate in a direction that F never mixes noise into, so
            U = S⁻¹ and Φ do not exist).

    Example:
        >>> U, Q, S = linear_decomposition(np.diag([1.0, 2.0]), np.eye(2))
        >>> bool(np.allclose(Q, 0))
        True
        >>> res = linear_decomposition(np.diag([1.0, 3.0]), [[1.0, 0.5], [0.5, 1.0]])
        >>> round(float(res.Q[0, 1]), 6)  # r (a − b) / (a + b) = 0.5 · (−2) / 4
        -0.25
    """
    F = _square("F", F, None)
    D = _square("D", D, F.shape[0])
    scale_d = max(np.abs(D).max(), 1e-300)
    asym = np.abs(D - D.T).max()
    if asym > 1e-10 * scale_d:
        raise ValueError(
            f"the 'D' parameter of {_WHERE} must be symmetric, got max |D − Dᵀ| = {asym:.3g}. "
            "Pass (D + D.T) / 2 if the asymmetry is round-off."
        )
    lam_min = float(np.linalg.eigvalsh(D).min())
    if lam_min < -1e-10 * scale_d:
        raise ValueError(
            f"the 'D' parameter of {_WHERE} must be positive semi-definite, got smallest "
            f"eigenvalue {lam_min:.3g}. A diffusion matrix is a covariance (eq. 2)."
        )
    eig = np.linalg.eigvals(F)
    gap = np.abs(eig[:, None] + eig[None, :]).min()
    if gap < 1e-12 * max(np.abs(eig).max(), 1e-300):
        raise ValueError(
            f"the 'F' parameter of {_WHERE} has two eigenvalues that sum to zero "
            f"(min |λ_i + λ_j| = {gap:.3g}), so F S + S Fᵀ = 2D has no unique solution."
        )
    S = scipy.linalg.solve_continuous_lyapunov(F, 2.0 * D)
    S = 0.5 * (S + S.T)
    s_abs = np.abs(np.linalg.eigvalsh(S))
    if s_abs.min() <= 1e-12 * max(s_abs.max(), 1e-300):
        raise ValueError(
            f"the Lyapunov solution S of {_WHERE} is singular (|eigenvalues| from "
            f"{s_abs.min():.3g} to {s_abs.max():.3g}): D is degenerate in a direction that F never "
            "mixes noise into, so U = S⁻¹ and Φ do not exist. Add a small isotropic part to D."
        )
    U = np.linalg.inv(S)
    U = 0.5 * (U + U.T)
    Q = F @ S - D
    Q = 0.5 * (Q - Q.T)
    scale = max(np.linalg.norm(F) * np.linalg.norm(D), 1e-300)
    commute = bool(np.linalg.norm(F @ D - D @ F.T) <= atol * scale)
    stable = bool(np.all(eig.real > 0))
    residual = float(np.linalg.norm(F - (D + Q) @ U) / max(np.linalg.norm(F), 1e-300))
    return LinearDecomposition(U=U, Q=Q, S=S, commute=commute, stable=stable, residual=residual)
