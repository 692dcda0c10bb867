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


def underdamped(K, gamma, temperature, dt, T, seed, drive=None):
    """Exact sampling of dx = v dt, dv = −(Kx + γv) dt + drive(x, v) dt + √(2γ·temp) dW.

    An underdamped Langevin process in phase space (x, v) of dimension 2k. With ``drive`` None
    and the noise γ·temperature proportional to γ with one temperature (a scalar times γ), it is
    in equilibrium with velocities odd under time reversal: it rotates in phase space without any
    current. ``drive`` is a (2k, 2k) matrix subtracted from −F (a non-conservative force, e.g. a
    rotation of the positions). Returns positions (T, k) and velocities (T, k).
    """
    K, gamma, temperature = (np.atleast_2d(np.asarray(m, float)) for m in (K, gamma, temperature))
    k = K.shape[0]
    z = np.zeros((k, k))
    F = np.block([[z, -np.eye(k)], [K, gamma]])
    if drive is not None:
        F = F - np.asarray(drive, float)
    D = np.block([[z, z], [z, 0.5 * (gamma @ temperature + temperature @ gamma)]])
    path = ou(F, D, dt, T, seed)
    return path[:, :k], path[:, k:]


def heavy_ball(H, noise_cov, lr, momentum, T, seed, burn_in=2000):
    """Heavy-ball SGD on f = ½ xᵀHx with Gaussian gradient noise of covariance ``noise_cov``.

    PyTorch's convention, one snapshot per step: b ← μ b + (H x + ξ), x ← x − η b, by a loop
    over steps after ``burn_in`` steps. Returns the snapshots x_t (T + 1, k) and the buffers b_t
    (T + 1, k) of the step that produced them (x_t = x_{t−1} − η b_t).
    """
    H, C = np.asarray(H, float), np.asarray(noise_cov, float)
    k = H.shape[0]
    rng = np.random.default_rng(seed)
    L = np.linalg.cholesky(C)
    x, b = np.zeros(k), np.zeros(k)
    xs, bs = np.empty((T + 1, k)), np.empty((T + 1, k))
    for t in range(burn_in + T + 1):
        b = momentum * b + H @ x + L @ rng.standard_normal(k)
        x = x - lr * b
        if t >= burn_in:
            xs[t - burn_in], bs[t - burn_in] = x, b
    return xs, bs
