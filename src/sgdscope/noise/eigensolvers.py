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

from .._validation import check_int

__all__ = [
    "ConvergenceError",
    "EigenResult",
    "block_krylov",
    "eigenpairs_above",
    "eigh_descending",
    "subspace_iteration",
]

MatMat = Callable[[torch.Tensor], torch.Tensor]


class ConvergenceError(RuntimeError):
    """An iterative eigensolver stopped before its convergence test was met.

    The message names the worst residual and what to change (``max_iter``, ``tol``, the method);
    ``spectrum(..., throw=False)`` returns the result instead, flagged ``converged=False``.
    """


@dataclass(frozen=True)
class EigenResult:
    """Top eigenpairs from an iterative solver.

    Attributes:
        values: Eigenvalues, descending, numpy float64 (k,).
        vectors: Orthonormal eigenvectors, torch (d, k).
        residuals: ‖A v_i − λ_i v_i‖, numpy (k,).
        iterations: Number of products A @ Q made (passes over the data).
        converged: Whether the convergence test was met.
        exceeded: With a threshold: the k-th Ritz value is above it, so (Ritz values being lower
            bounds of the eigenvalues, by Cauchy interlacing) at least k eigenvalues are.
    """

    values: np.ndarray
    vectors: torch.Tensor
    residuals: np.ndarray
    iterations: int
    converged: bool
    exceeded: bool = False


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
    rtol: float | None = None,
) -> EigenResult:
    """Top-k eigenpairs of a symmetric PSD operator by block subspace iteration with Rayleigh–Ritz.

    With ``rtol`` (threshold mode, used by :func:`eigenpairs_above`) the test changes: the
    iteration returns at once with ``exceeded=True`` when the k-th Ritz value lies above
    rtol · λ̃_1 (Ritz values are lower bounds, so k is too small and more iterations would not
    help), and it has converged when every pair above half the threshold meets the residual test
    and the k-th pair lies below the threshold by more than its residual.

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
        rtol: Relative threshold for the threshold mode above; None for the plain top-k test.

    Returns:
        An :class:`EigenResult`.

    Raises:
        ValueError: If ``max_iter`` is not a positive int.
    """
    max_iter = check_int("max_iter", max_iter, where="subspace_iteration", low=1)
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
        values, residuals, vectors = w[:k], res[:k], V[:, :k]
        if rtol is None:
            worst = float(res[:k].max() / scale)
            converged = worst <= tol or w[0] == 0.0
        else:
            thr = rtol * w[0]
            if w[k - 1] > thr:
                if on_iteration is not None:
                    on_iteration(it, float("nan"))
                return EigenResult(values, vectors, residuals, it, False, exceeded=True)
            wanted = w[:k] > 0.5 * thr
            worst = float(res[:k][wanted].max() / scale) if wanted.any() else 0.0
            converged = (worst <= tol and w[k - 1] + res[k - 1] <= thr) or w[0] == 0.0
        if on_iteration is not None:
            on_iteration(it, worst)
        if converged:
            break
        Q = _orthonormal(AV)
    assert values is not None and vectors is not None and residuals is not None  # max_iter ≥ 1
    return EigenResult(values, vectors, residuals, it, converged)


def _shifted(
    on_iteration: Callable[[int, float], None], offset: int
) -> Callable[[int, float], None]:
    """``on_iteration`` with the iterations counted from ``offset`` on."""
    return lambda it, residual: on_iteration(offset + it, residual)


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
) -> EigenResult:
    """All eigenpairs above rtol · λ_1, growing k until the smallest one computed is below it.

    Starting from k0, each round runs :func:`subspace_iteration` in threshold mode from the
    previous round's vectors. A round whose k-th Ritz value is still above the threshold stops
    after one product (at least k eigenvalues exceed it, by interlacing) and k doubles; the last
    round iterates until the pairs above the threshold converge and the k-th lies below it. When
    k reaches ``max_rank`` every non-zero eigenvalue is computed and the plain top-k test is used.

    Args:
        matmat: ``X (d, b) -> A @ X``.
        dim: d.
        rtol: Relative threshold (the paper's is d · ε_float32).
        max_rank: Upper bound on the rank of A (min(N − 1, d) for a centred covariance).
        k0: First k.
        tol: Residual tolerance relative to λ_1; tightened to 0.01 · rtol so that every pair's
            side of the threshold is decided by its residual bound.
        max_iter: Maximum products per round.
        generator: Random generator.
        dtype: Dtype of the iteration.
        device: Device of the iteration.
        on_iteration: Progress callback ``(total_products, relative_residual)``.

    Returns:
        The last round's :class:`EigenResult`, with ``iterations`` counting every round's products.
    """
    tol = min(tol, 0.01 * rtol)
    k = min(k0, max_rank)
    init, total = None, 0
    while True:
        full = k >= max_rank
        res = subspace_iteration(
            matmat, dim, k, oversample=max(10, k // 4), tol=tol, max_iter=max_iter,
            generator=generator, dtype=dtype, device=device, init=init,
            on_iteration=None if on_iteration is None else _shifted(on_iteration, total),
            rtol=None if full else rtol,
        )  # fmt: skip
        total += res.iterations
        if not res.exceeded or full:
            return EigenResult(res.values, res.vectors, res.residuals, total, res.converged)
        init, k = res.vectors, min(2 * k, max_rank)


def block_krylov(
    matmat: MatMat,
    dim: int,
    k: int,
    *,
    block: int | None = None,
    max_basis: int | None = None,
    tol: float = 1e-5,
    max_iter: int = 300,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    on_iteration: Callable[[int, float], None] | None = None,
) -> EigenResult:
    """Top-k eigenpairs by block Lanczos (Krylov) with Rayleigh–Ritz and thick restarts.

    Subspace iteration keeps only the last block A^j Q; a block Krylov method keeps the whole
    basis [Q, AQ, A²Q, …] (fully reorthogonalised) and extracts Ritz pairs from all of it, which
    for the same number of products converges much faster (its error falls like a Chebyshev
    polynomial of the gap instead of a power: Musco & Musco, NeurIPS 2015). Each iteration makes
    exactly one product, with the newest block. When the basis reaches ``max_basis`` columns it
    restarts from the current top Ritz vectors (whose images A V are already known, so the
    restart costs no product) and their residual block. The convergence test is
    :func:`subspace_iteration`'s: every residual of the top k ≤ tol · λ_1.

    Args:
        matmat: ``X (d, b) -> A @ X``.
        dim: d.
        k: Number of eigenpairs wanted.
        block: Block size b (default max(k, 4), at most d); a restart extends the basis with
            the residuals of the top b Ritz pairs, so b ≥ k.
        max_basis: Basis size that triggers a restart (default 4b, at most d).
        tol: Relative residual tolerance.
        max_iter: Maximum number of products.
        generator: Random generator of the starting block.
        dtype: Dtype of the iteration.
        device: Device of the iteration.
        on_iteration: Called as ``on_iteration(it, max_relative_residual)`` after each product.

    Returns:
        An :class:`EigenResult`; ``iterations`` counts products (passes over the data).

    Raises:
        ValueError: If ``max_iter`` is not a positive int.
    """
    max_iter = check_int("max_iter", max_iter, where="block_krylov", low=1)
    b = min(dim, max(block or 4, k))
    cap = min(dim, max_basis or 4 * b)
    Q = _orthonormal(torch.randn(dim, b, generator=generator, dtype=dtype).to(device))
    basis, images = Q, None
    values = residuals = vectors = None
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        Y = matmat(Q)
        images = Y if images is None else torch.cat([images, Y], 1)
        T = basis.T @ images
        w, W = eigh_descending(0.5 * (T + T.T))
        W = W.to(dtype)
        top = min(k, w.size)
        V, AV = basis @ W, images @ W
        R = AV[:, :top] - V[:, :top] * torch.as_tensor(w[:top], dtype=dtype, device=V.device)
        res = torch.linalg.vector_norm(R, dim=0).cpu().numpy()
        scale = max(abs(w[0]), np.finfo(np.float64).tiny)
        values, residuals, vectors = w[:top], res, V[:, :top]
        worst = float(res.max() / scale)
        converged = top == k and (worst <= tol or w[0] == 0.0)
        if on_iteration is not None:
            on_iteration(it, worst)
        if converged or basis.shape[1] >= dim:
            converged = converged or basis.shape[1] >= dim
            break
        if basis.shape[1] + b > cap:  # thick restart: keep the top Ritz pairs and their images
            keep = max(min(cap - b, w.size), k)
            basis, images = V[:, :keep], AV[:, :keep]
            new = AV[:, :b] - V[:, :b] * torch.as_tensor(w[:b], dtype=dtype, device=V.device)
        else:
            new = Y
        for _ in range(2):  # reorthogonalise twice against the basis (Parlett: twice is enough)
            new = new - basis @ (basis.T @ new)
        Q = _orthonormal(new)
        # Directions already in the basis (A's range exhausted: D has rank ≤ N − 1) come out of
        # QR as arbitrary unit columns; project them out once more so that the basis stays
        # orthonormal.
        Q = _orthonormal(Q - basis @ (basis.T @ Q))
        basis = torch.cat([basis, Q], 1)
    assert values is not None and vectors is not None and residuals is not None  # max_iter ≥ 1
    return EigenResult(values, vectors, residuals, it, converged)
