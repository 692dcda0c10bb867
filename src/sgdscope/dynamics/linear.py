"""The linearised (Ornstein–Uhlenbeck) case: Lemma 20 of Chaudhari & Soatto (2018)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

__all__ = ["LinearDecomposition", "linear_decomposition"]


@dataclass(frozen=True)
class LinearDecomposition:
    r"""Result of :func:`linear_decomposition` for dx = −F x dt + √(2β⁻¹D) dW.

    Attributes:
        U: (dim, dim) symmetric; the potential is Φ(x) = ½ xᵀ U x. ``U = S⁻¹``.
        Q: (dim, dim) antisymmetric; the force is j(x) = −Q U x.
        S: (dim, dim) symmetric; solves F S + S Fᵀ = 2D. The stationary covariance is β⁻¹ S.
        commute: Whether F and D commute (then Q = 0 and the process is at equilibrium).
        residual: Relative residual ‖F − (D + Q) U‖ / ‖F‖ of the decomposition (eq. 16).
    """

    U: np.ndarray
    Q: np.ndarray
    S: np.ndarray
    commute: bool
    residual: float

    def __iter__(self):
        """Unpack as ``U, Q, S``."""
        return iter((self.U, self.Q, self.S))

    def potential(self, x: np.ndarray) -> np.ndarray:
        """Φ(x) = ½ xᵀ U x for points of shape (..., dim)."""
        x = np.asarray(x, dtype=float)
        return 0.5 * np.einsum("...i,ij,...j->...", x, self.U, x)

    def force(self, x: np.ndarray) -> np.ndarray:
        """j(x) = −Q U x for points of shape (..., dim); returns (..., dim)."""
        x = np.asarray(x, dtype=float)
        return -np.einsum("ij,...j->...i", self.Q @ self.U, x)

    def stationary_covariance(self, beta: float) -> np.ndarray:
        """β⁻¹ S, the covariance of the stationary Gaussian (valid when F is stable)."""
        return self.S / beta


def linear_decomposition(
    F: np.ndarray, D: np.ndarray, *, atol: float = 1e-10
) -> LinearDecomposition:
    r"""Decompose the linear drift −F x with constant diffusion D (Lemma 20; Kwon, Ao & Thouless 2005).

    Near a critical point, ∇f = F x and D = D(0); then uniquely F = (D + Q) U (eq. 16) with
    Q antisymmetric and U symmetric, Φ(x) = ½ xᵀ U x and j(x) = −Q U x. Computed as

    .. math:: F S + S F^\top = 2D,\qquad U = S^{-1},\qquad Q = F S - D.

    Q = 0 exactly when F and D commute (the equilibrium, detailed-balance case).

    Args:
        F: (dim, dim) Hessian of f at the critical point (need not be symmetric).
        D: (dim, dim) symmetric positive semi-definite diffusion matrix.
        atol: Absolute tolerance, relative to ‖F‖‖D‖, for declaring that F and D commute.

    Returns:
        A :class:`LinearDecomposition` (unpacks as ``U, Q, S``).

    Raises:
        ValueError: If shapes disagree, D is not symmetric, or the Lyapunov equation is singular
            (F has two eigenvalues summing to zero).

    Example:
        >>> U, Q, S = linear_decomposition(np.diag([1.0, 2.0]), np.eye(2))
        >>> bool(np.allclose(Q, 0))
        True
    """
    F = np.asarray(F, dtype=float)
    D = np.asarray(D, dtype=float)
    if F.ndim != 2 or F.shape[0] != F.shape[1]:
        raise ValueError(
            f"the 'F' parameter of linear_decomposition must be a square matrix, got shape {F.shape}."
        )
    if D.shape != F.shape:
        raise ValueError(
            f"the 'D' parameter of linear_decomposition must have the shape of F {F.shape}, got {D.shape}."
        )
    scale_d = max(np.abs(D).max(), 1e-300)
    if np.abs(D - D.T).max() > 1e-10 * scale_d:
        raise ValueError(
            "the 'D' parameter of linear_decomposition must be symmetric, got max |D − Dᵀ| = "
            f"{np.abs(D - D.T).max():.3g}. Pass (D + D.T) / 2 if the asymmetry is round-off."
        )
    eig = np.linalg.eigvals(F)
    gap = np.abs(eig[:, None] + eig[None, :]).min()
    if gap < 1e-12 * max(np.abs(eig).max(), 1e-300):
        raise ValueError(
            "the 'F' parameter of linear_decomposition has two eigenvalues that sum to zero "
            f"(min |λ_i + λ_j| = {gap:.3g}), so F S + S Fᵀ = 2D has no unique solution."
        )
    S = scipy.linalg.solve_continuous_lyapunov(F, 2.0 * D)
    S = 0.5 * (S + S.T)
    U = np.linalg.inv(S)
    U = 0.5 * (U + U.T)
    Q = F @ S - D
    Q = 0.5 * (Q - Q.T)
    scale = max(np.linalg.norm(F) * np.linalg.norm(D), 1e-300)
    commute = bool(np.linalg.norm(F @ D - D @ F) <= atol * scale)
    residual = float(np.linalg.norm(F - (D + Q) @ U) / max(np.linalg.norm(F), 1e-300))
    return LinearDecomposition(U=U, Q=Q, S=S, commute=commute, residual=residual)
