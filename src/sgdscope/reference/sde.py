"""A plain, obviously correct Euler–Maruyama loop, one particle at a time (STYLE pattern 3).

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


def brownian_normals(seed: int, n_steps: int, n_particles: int, noise_dim: int) -> np.ndarray:
    """The standard normals that :func:`sgdscope.simulate_sde` draws on CPU in float64.

    One ``torch.randn((n_particles, noise_dim))`` per step from a generator seeded with ``seed``.

    Args:
        seed: The seed given to ``simulate_sde``.
        n_steps: Number of steps.
        n_particles: Number of particles.
        noise_dim: Normals per particle and step (dim, or r for a low-rank D).

    Returns:
        An array (n_steps, n_particles, noise_dim).
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    return (
        np.stack(
            [
                torch.randn((n_particles, noise_dim), generator=gen, dtype=torch.float64).numpy()
                for _ in range(n_steps)
            ]
        )
        if n_steps
        else np.zeros((0, n_particles, noise_dim))
    )


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
