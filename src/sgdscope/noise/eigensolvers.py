r"""Eigensolvers for a symmetric positive semi-definite operator given by its products.

- :func:`eigh_descending`: dense ``torch.linalg.eigh``, eigenvalues sorted descending.
- :func:`subspace_iteration`: streaming block subspace iteration with Rayleigh–Ritz for the top
  k eigenpairs. Each iteration makes exactly one product A @ Q (one pass over the data for D) and
  holds O(d · b) numbers, b = k + oversampling. **Convergence test**: stop when every one of the top
  k Ritz pairs has residual ‖A v_i − λ_i v_i‖ ≤ tol · λ_1. For a symmetric A each residual bounds
  the distance from λ_i to the nearest eigenvalue (Parlett, *The Symmetric Eigenvalue Problem*,
  Thm 4.5.1), so the residuals are returned as error bars.
- :func:`eigenpairs_above`: grows k (doubling) until the smallest converged eigenvalue falls
  below a threshold rtol · λ_1, so that the count above the threshold (the numerical rank) is exact
  without ever forming a d × d matrix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["EigenResult", "eigenpairs_above", "eigh_descending", "subspace_iteration"]

MatMat = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class EigenResult:
    """Top eigenpairs from an iterative solver.

    Attributes:
        values: Eigenvalues, descending, numpy float64 (k,).
        vectors: Orthonormal eigenvectors, torch (d, k).
        residuals: ‖A v_i − λ_i v_i‖, numpy (k,).
        iterations: Number of products A @ Q made (passes over the data).
        converged: Whether the convergence test was met.
    """

    values: np.ndarray
    vectors: torch.Tensor
    residuals: np.ndarray
    iterations: int
    converged: bool


def eigh_descending(matrix: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
    """Eigen-decomposition of a symmetric matrix, eigenvalues descending (values as numpy)."""
    w, v = torch.linalg.eigh(matrix)
    return w.flip(0).cpu().numpy().astype(np.float64), v.flip(1)


def _orthonormal(X: torch.Tensor) -> torch.Tensor:
    q, _ = torch.linalg.qr(X)
    return q


def subspace_iteration(
    matmat: MatMat,
    dim: int,
    k: int,
    *,
    oversample: int | None = None,
    tol: float = 1e-5,
    max_iter: int = 300,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    init: torch.Tensor | None = None,
    on_iteration: Callable[[int, float], None] | None = None,
) -> EigenResult:
    """Top-k eigenpairs of a symmetric PSD operator by block subspace iteration with Rayleigh–Ritz.

    Args:
        matmat: ``X (d, b) -> A @ X (d, b)``.
        dim: d.
        k: Number of eigenpairs wanted.
        oversample: Extra block columns (default max(10, k // 2)); they speed convergence, whose rate
            for pair i is λ_{b+1} / λ_i per iteration.
        tol: Convergence test: every residual of the top k ≤ tol · λ_1.
        max_iter: Maximum number of products.
        generator: Random generator for the starting block (never the global RNG).
        dtype: Dtype of the iteration.
        device: Device of the iteration.
        init: Optional (d, m) starting vectors (e.g. a previous solution); random columns fill the rest.
        on_iteration: Called as ``on_iteration(it, max_relative_residual)`` after each product.

    Returns:
        An :class:`EigenResult`.
    """
    b = min(dim, k + (max(10, k // 2) if oversample is None else oversample))
    Q = torch.randn(dim, b, generator=generator, dtype=dtype, device="cpu").to(device)
    if init is not None:
        m = min(init.shape[1], b)
        Q[:, :m] = init[:, :m].to(dtype=dtype, device=device)
    Q = _orthonormal(Q)
    values = residuals = vectors = None
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        Y = matmat(Q)
        T = Q.T @ Y
        w, W = eigh_descending(0.5 * (T + T.T))
        W = W.to(dtype)
        V, AV = Q @ W, Y @ W
        R = AV - V * torch.as_tensor(w, dtype=dtype, device=V.device)
        res = torch.linalg.vector_norm(R, dim=0).cpu().numpy()
        scale = max(abs(w[0]), np.finfo(np.float64).tiny)
        worst = float(res[:k].max() / scale)
        if on_iteration is not None:
            on_iteration(it, worst)
        values, residuals, vectors = w[:k], res[:k], V[:, :k]
        if worst <= tol or w[0] == 0.0:
            converged = True
            break
        Q = _orthonormal(AV)
    return EigenResult(values, vectors, residuals, it, converged)


def eigenpairs_above(
    matmat: MatMat,
    dim: int,
    rtol: float,
    *,
    max_rank: int,
    k0: int = 32,
    tol: float = 1e-5,
    max_iter: int = 300,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    on_iteration: Callable[[int, float], None] | None = None,
    give_up_at: int | None = None,
) -> tuple[EigenResult, int]:
    """All eigenpairs above rtol · λ_1, growing k until the smallest one computed is below it.

    Starting from k0, k doubles (capped at ``max_rank``) and each round starts from the previous
    round's vectors. The round stops when its top k pairs converge and λ_k ≤ rtol · λ_1, or when
    k = ``max_rank`` (then every non-zero eigenvalue has been computed).

    Args:
        matmat: ``X (d, b) -> A @ X``.
        dim: d.
        rtol: Relative threshold (the paper's is d · ε_float32).
        max_rank: Upper bound on the rank of A (min(N − 1, d) for a centred covariance).
        k0: First k.
        tol: Residual tolerance relative to λ_1; tightened to 0.01 · rtol so the threshold
            comparison is decided by the residual bounds.
        max_iter: Maximum products per round.
        generator: Random generator.
        dtype: Dtype of the iteration.
        device: Device of the iteration.
        on_iteration: Progress callback ``(total_products, relative_residual)``.
        give_up_at: Stop growing once k would exceed this (the caller then switches method);
            the second return value is then the k that was wanted.

    Returns:
        ``(result, k_wanted)``: the last round's result and the k the next round would have used
        (equal to the result's size when the threshold was reached).
    """
    tol = min(tol, 0.01 * rtol)
    k = min(k0, max_rank)
    init, total = None, 0
    while True:
        res = subspace_iteration(
            matmat, dim, k, tol=tol, max_iter=max_iter, generator=generator, dtype=dtype,
            device=device, init=init,
            on_iteration=None if on_iteration is None else (lambda i, r, offset=total: on_iteration(offset + i, r)),
        )  # fmt: skip
        total += res.iterations
        res = EigenResult(res.values, res.vectors, res.residuals, total, res.converged)
        reached = res.values[-1] <= rtol * res.values[0] or k >= max_rank
        if reached or not res.converged:
            return res, k
        nxt = min(2 * k, max_rank)
        if give_up_at is not None and nxt > give_up_at:
            return res, nxt
        init, k = res.vectors, nxt
