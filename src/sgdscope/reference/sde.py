"""A plain, obviously correct Euler–Maruyama loop, one particle at a time.

Slow on purpose: numpy, a Python loop over steps and particles, no batching. Tests compare the
batched :func:`sgdscope.simulate_sde` with it on the same Brownian increments.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["brownian_normals", "euler_maruyama_loop", "psd_root"]


def psd_root(D: np.ndarray) -> np.ndarray:
    """σ with σσᵀ = D: the lower Cholesky factor if D is positive definite, else V·√max(Λ, 0).

    This is the rule that :func:`sgdscope.simulate_sde` documents, written independently.

    Args:
        D: A (dim, dim) symmetric positive semi-definite matrix.

    Returns:
        The (dim, dim) root σ.
    """
    try:
        return np.linalg.cholesky(D)
    except np.linalg.LinAlgError:
        lam, V = np.linalg.eigh(D)
        return V * np.sqrt(np.clip(lam, 0.0, None))


def brownian_normals(
    seed: int, n_steps: int, n_particles: int, noise_dim: int, dim: int | None = None
) -> np.ndarray:
    """The standard normals that :func:`sgdscope.simulate_sde` draws on CPU in float64.

    The documented stream, written out: particles in blocks of B = ⌊2¹⁸ / max(dim, r)⌋ clamped to
    [512, 65536]; block j has a ``torch.Generator`` seeded with
    ``SeedSequence([seed, j]).generate_state(1, uint64)[0] >> 1`` and draws one ``torch.randn((n_j, r))`` per step.

    Args:
        seed: The seed given to ``simulate_sde``.
        n_steps: Number of steps.
        n_particles: Number of particles.
        noise_dim: Normals per particle and step (dim, or r for a low-rank D).
        dim: The state dimension (None: ``noise_dim``); it enters the block size.

    Returns:
        An array (n_steps, n_particles, noise_dim).
    """
    import torch

    dim = noise_dim if dim is None else dim
    size = max(min((1 << 18) // max(dim, noise_dim, 1), 1 << 16), 512)
    out = np.zeros((n_steps, n_particles, noise_dim))
    for j, lo in enumerate(range(0, n_particles, size)):
        hi = min(lo + size, n_particles)
        word = np.random.SeedSequence([seed, j]).generate_state(1, dtype=np.uint64)[0]
        gen = torch.Generator().manual_seed(int(word) >> 1)
        for k in range(n_steps):
            out[k, lo:hi] = torch.randn((hi - lo, noise_dim), generator=gen, dtype=torch.float64)
    return out


def euler_maruyama_loop(
    drift: Callable[[np.ndarray], np.ndarray],
    sigma: Callable[[np.ndarray], np.ndarray],
    x0: np.ndarray,
    dt: float,
    normals: np.ndarray,
    beta: float = 1.0,
) -> np.ndarray:
    r"""Euler–Maruyama, one particle at a time: x ← x + b(x) h + √(2β⁻¹h) σ(x) z.

    Args:
        drift: b for ONE point (dim,) → (dim,).
        sigma: σ for ONE point (dim,) → (dim, r), with σσᵀ = D (see :func:`psd_root`).
        x0: (n_particles, dim) initial states.
        dt: Step h.
        normals: (n_steps, n_particles, r) standard normals z.
        beta: Inverse temperature β.

    Returns:
        All states, an array (n_steps + 1, n_particles, dim) with x0 first.
    """
    x0 = np.asarray(x0, dtype=float)
    n_steps, n_particles, _ = normals.shape
    out = np.empty((n_steps + 1, *x0.shape))
    out[0] = x0
    scale = np.sqrt(2.0 * dt / beta)
    for i in range(n_particles):
        x = x0[i].copy()
        for k in range(n_steps):
            x = x + dt * np.asarray(drift(x)) + scale * (np.asarray(sigma(x)) @ normals[k, i])
            out[k + 1, i] = x
    return out
