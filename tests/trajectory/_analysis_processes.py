"""Simulated processes with known answers, for the trajectory-analysis tests.

Each simulator is written independently of the library (plain loops, exact discretisations from
scipy.linalg), so the tests compare the analyses with an oracle, not with themselves.
"""

import numpy as np
import scipy.linalg

J = np.array([[0.0, 1.0], [-1.0, 0.0]])


def brownian(T, d, seed, sigma=1.0):
    """Brownian motion sampled at unit steps: cumulative sums of N(0, σ²) increments."""
    return np.random.default_rng(seed).normal(scale=sigma, size=(T, d)).cumsum(axis=0)


def ou(F, D, dt, T, seed):
    """Exact sampling of dx = −F x dt + √(2D) dW every dt, started in the stationary law."""
    F, D = np.asarray(F, float), np.asarray(D, float)
    k = F.shape[0]
    S = scipy.linalg.solve_continuous_lyapunov(F, 2.0 * D)
    A = scipy.linalg.expm(-F * dt)
    L = np.linalg.cholesky(S - A @ S @ A.T)
    rng = np.random.default_rng(seed)
    x = np.empty((T, k))
    x[0] = np.linalg.cholesky(S) @ rng.standard_normal(k)
    z = rng.standard_normal((T, k)) @ L.T
    for t in range(1, T):
        x[t] = A @ x[t - 1] + z[t]
    return x


def rotated_ou(q, T, seed, dt=0.2):
    """OU with D = ½I, U = [[2, .5], [.5, 1]] and Q = (q/2) J: F = (D + Q) U (Lemma 20)."""
    D = 0.5 * np.eye(2)
    U = np.array([[2.0, 0.5], [0.5, 1.0]])
    Q = 0.5 * q * J
    return ou((D + Q) @ U, D, dt, T, seed), (D + Q) @ U, D, Q


def stuart_landau(T, seed, omega=2.0, mu=1.0, sigma=0.3, dt=0.01, every=20):
    """Noisy limit cycle dz = ((μ + iω)z − |z|²z)dt + σ dW, Euler–Maruyama, recorded every k.

    Returns the (T, 2) path and its rotation frequency ω·dt·every/(2π) in cycles per snapshot.
    """
    rng = np.random.default_rng(seed)
    z = np.sqrt(mu) + 0j
    out = np.empty((T, 2))
    noise = rng.normal(scale=sigma * np.sqrt(dt), size=(T, every, 2))
    for t in range(T):
        for s in range(every):
            z = z + ((mu + 1j * omega) * z - abs(z) ** 2 * z) * dt + complex(*noise[t, s])
        out[t] = z.real, z.imag
    return out, omega * dt * every / (2 * np.pi)
