r"""The eigenvalue density of D by stochastic Lanczos quadrature (SLQ).

When the rank of D is beyond any affordable k, its spectrum can still be *described*: SLQ
(Golub & Meurant 2010; Ubaru, Chen & Saad 2017; used for Hessians of deep networks by Ghorbani,
Krishnan & Xiao 2019 and PyHessian) runs m Lanczos steps from each of n_v random probes v. The
tridiagonal T_m of each run has eigenvalues θ_i (nodes) and eigenvectors whose squared first
components τ_i (weights, Σ_i τ_i = 1) form the m-point Gauss quadrature of the measure
μ_v = Σ_j (q_jᵀ v)² / ‖v‖² δ_{λ_j}: for every polynomial p of degree ≤ 2m − 1,

.. math::

    \sum_i \tau_i\, p(\theta_i) = \frac{v^\top p(D)\, v}{v^\top v}.

With Rademacher probes E[μ_v] is the spectral measure (1/d) Σ_j δ_{λ_j}, so averages over probes
estimate (1/d) tr p(D) and, smoothed, the density. All probes go through the operator together:
m passes over the data in all, each applying D to a d × n_v block.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["SpectralDensity", "rademacher_probes", "stochastic_lanczos_quadrature"]


@dataclass(frozen=True)
class SpectralDensity:
    """Gauss-quadrature nodes and weights of D's eigenvalue measure, one row per probe.

    Attributes:
        nodes: Ritz values θ, shape (n_probes, m), each row ascending.
        weights: Quadrature weights τ ≥ 0, shape (n_probes, m); each row sums to 1.
        dim: d; the measure is the distribution of D's d eigenvalues.
        trace: The exact tr D (from the data), for comparison with :meth:`moment` · d.
        reorthogonalized: Whether the Lanczos vectors were fully reorthogonalised.
        info: Seconds, passes, probes, steps.
    """

    nodes: np.ndarray
    weights: np.ndarray
    dim: int
    trace: float
    reorthogonalized: bool
    info: dict = field(default_factory=dict)

    def moment(self, j: int) -> float:
        """Estimate of (1/d) tr D^j (exact per probe for j ≤ 2m − 1)."""
        return float(np.mean(np.sum(self.weights * self.nodes**j, axis=1)))

    def cdf(self, x: float | np.ndarray) -> np.ndarray:
        """Estimated fraction of the d eigenvalues that are ≤ x."""
        x = np.atleast_1d(np.asarray(x, dtype=float))
        below = self.nodes[None, :, :] <= x[:, None, None]
        return np.mean(np.sum(self.weights[None] * below, axis=2), axis=1)

    def count_above(self, threshold: float) -> float:
        """Estimated number of eigenvalues above ``threshold`` (a rank estimate when k is out of reach)."""
        return float(self.dim * (1.0 - self.cdf(threshold)[0]))

    def density(
        self, grid: np.ndarray, sigma: float | None = None, *, log: bool = True
    ) -> np.ndarray:
        """Smoothed density of the eigenvalues on ``grid`` (each node a Gaussian of width σ).

        Args:
            grid: Points at which to evaluate; positive when ``log``.
            sigma: Kernel width (in log10 units when ``log``); None is 1/50 of the grid's span.
            log: Smooth in log10(λ) (the paper's Fig. 1 has a log axis): the density of
                log10 λ; nodes ≤ 0 (the null space) are left out and their weight reported by
                :meth:`cdf` at 0.

        Returns:
            Values on ``grid``; they integrate to the weight of the nodes included.
        """
        grid = np.asarray(grid, dtype=float)
        nodes, weights = self.nodes.ravel(), self.weights.ravel() / self.nodes.shape[0]
        if log:
            keep = nodes > 0
            nodes, weights, axis = np.log10(nodes[keep]), weights[keep], np.log10(grid)
        else:
            axis = grid
        sigma = (axis.max() - axis.min()) / 50 if sigma is None else float(sigma)
        z = (axis[:, None] - nodes[None, :]) / sigma
        return (np.exp(-0.5 * z**2) / (sigma * np.sqrt(2 * np.pi))) @ weights


def rademacher_probes(dim: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """n Rademacher vectors (±1) of length d, float64, from ``generator`` (d × n)."""
    return (
        torch.randint(0, 2, (dim, n), generator=generator, dtype=torch.int8)
        .double()
        .mul_(2)
        .sub_(1)
    )


def stochastic_lanczos_quadrature(
    matmat, probes: torch.Tensor, steps: int, *, reorthogonalize: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights (n_probes, m) from m block-synchronous Lanczos runs (one product a step).

    A run that breaks down early (an invariant subspace: β ≈ 0) keeps its shorter quadrature;
    its missing nodes get weight 0.

    Returns:
        ``(nodes, weights)``, float64 arrays of shape (n_probes, m).
    """
    nv = probes.shape[1]
    V = probes / torch.linalg.vector_norm(probes, dim=0)
    prev = torch.zeros_like(V)
    beta = torch.zeros(nv, dtype=torch.float64, device=V.device)
    alphas, betas = [], []
    basis = [V] if reorthogonalize else None
    active = torch.ones(nv, dtype=torch.bool, device=V.device)
    length = np.full(nv, steps)
    for j in range(steps):
        W = matmat(V)
        alpha = (V * W).sum(0)
        W = W - V * alpha - prev * beta
        if basis is not None:
            for Q in basis:  # full reorthogonalisation, twice is enough (Parlett)
                W -= Q * (Q * W).sum(0)
            for Q in basis:
                W -= Q * (Q * W).sum(0)
        alphas.append(alpha)
        beta = torch.linalg.vector_norm(W, dim=0)
        scale = torch.clamp(alphas[0].abs().max(), min=1e-300)
        broke = active & (beta <= 1e-12 * scale)
        for i in torch.nonzero(broke).flatten().tolist():
            length[i] = j + 1
        active &= ~broke
        if j == steps - 1 or not active.any():
            break
        betas.append(beta)
        prev, V = V, torch.where(active, W / torch.where(beta > 0, beta, 1.0), torch.zeros_like(W))
        if basis is not None:
            basis.append(V)
    A = torch.stack(alphas, 1).cpu().numpy()
    B = torch.stack(betas, 1).cpu().numpy() if betas else np.zeros((nv, 0))
    m = A.shape[1]
    nodes, weights = np.zeros((nv, m)), np.zeros((nv, m))
    for i in range(nv):
        L = int(min(length[i], m))
        T = np.diag(A[i, :L]) + np.diag(B[i, : L - 1], 1) + np.diag(B[i, : L - 1], -1)
        theta, S = np.linalg.eigh(T)
        nodes[i, :L], weights[i, :L] = theta, S[0] ** 2
    return nodes, weights
