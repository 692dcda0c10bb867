r"""The linear (Ornstein–Uhlenbeck) model of a trajectory and its reversible null.

A stationary trajectory is modelled, snapshot to snapshot, as the exact discretisation of

.. math:: dx = -F (x - m)\,dt + \sqrt{2D}\,dW,

whose sampled law is the VAR(1) process :math:`x_{t+1} - m = A (x_t - m) + \varepsilon_t` with
:math:`A = e^{-F\Delta}` and stationary covariance S solving :math:`FS + SF^\top = 2D`
(β⁻¹ is absorbed into D). Lemma 20 of Chaudhari & Soatto (2018) splits
:math:`F = (D + Q)U` with :math:`U = S^{-1}` and Q antisymmetric; the force is
:math:`j(x) = -QUx` and the process is in detailed balance exactly when Q = 0 (§V-A).

The null model (the SDE (3) with the fitted F and D but Q forced to 0, i.e. equilibrium) keeps D and
S and drops Q: :math:`F_0 = DU`. In whitened coordinates :math:`\tilde x = S^{-1/2}x` the fitted
drift is :math:`\tilde F = \tilde D + \tilde Q` (symmetric plus antisymmetric part) and the null's
transition matrix :math:`e^{-\tilde D\Delta}` is symmetric, so the null splits into independent
AR(1) processes along the eigenvectors of :math:`\tilde D`. Surrogates are drawn from that exact
discrete-time law (no Euler error), started in the stationary distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.signal

from ._input import as_generator

__all__ = ["GaussianChain", "OUFit", "fit_ou", "fitted_chain", "pair_entropy_rate", "parity_null"]

# A fit counts as stationary when the trajectory spans at least this many relaxation times.
_MIN_RELAXATIONS = 20


def _sym_sqrt(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w, v = np.linalg.eigh(s)
    w = np.maximum(w, w.max() * 1e-15)
    return (v * np.sqrt(w)) @ v.T, (v / np.sqrt(w)) @ v.T


def _real_log(b: np.ndarray) -> np.ndarray:
    """Principal logarithm of a real matrix with no eigenvalue on (−∞, 0].

    By eigendecomposition (fast for the small k used here); ``scipy.linalg.logm`` when the
    eigenvectors are ill-conditioned (near-defective B).

    Returns:
        The real logarithm, (k, k).
    """
    lam, v = np.linalg.eig(b)
    if np.linalg.cond(v) < 1e8:
        return np.real((v * np.log(lam.astype(complex))) @ np.linalg.inv(v))
    return np.real(scipy.linalg.logm(b))


@dataclass(frozen=True)
class OUFit:
    r"""A linear model fitted to a (T, k) trajectory and its reversible (Q = 0) null.

    All matrices are (k, k) in the trajectory's coordinates and per unit time, with Δ = ``dt``
    between snapshots.

    Attributes:
        mean: (k,) stationary mean m.
        A: Least-squares transition matrix, :math:`x_{t+1}-m \approx A(x_t-m)`.
        S: Stationary covariance (the sample covariance).
        F: Drift matrix, :math:`F = -\log(A)/\Delta`.
        D: Diffusion matrix :math:`D = (FS + SF^\top)/2` (with β⁻¹ absorbed).
        Q: Antisymmetric matrix :math:`Q = (FS - SF^\top)/2` (Lemma 20: Q = FS − D).
        U: :math:`U = S^{-1}`; the potential is Φ(x) = ½ (x − m)ᵀ U (x − m).
        null_A: Transition matrix of the reversible null, :math:`e^{-DU\Delta}`.
        null_noise: Innovation covariance of the null, :math:`S - A_0 S A_0^\top`.
        mixing: (k, k) matrix P with :math:`x = m + P z`, z independent unit AR(1) processes.
        null_coefficients: (k,) AR(1) coefficients μ of the z processes.
        dt: Time between snapshots Δ.
        method: ``"continuous"`` (principal matrix logarithm) or ``"discrete"`` (used when A has
            an eigenvalue on the negative real axis, i.e. the sampling is too coarse for a
            continuous-time OU; then D and Q come from the first-order split of
            :math:`S^{-1/2}AS^{1/2}` and the null is its symmetric part).
        stationary: False when the trajectory spans fewer than 20 of the fit's slowest
            relaxation times 1/(1 − |μ|), which includes unit roots (drift rather than relaxation,
            e.g. a random walk or a still-descending run). Then lagged covariances are poorly
            estimated and the null's p-values are not reliable; analyse a longer or later window.
    """

    mean: np.ndarray
    A: np.ndarray
    S: np.ndarray
    F: np.ndarray
    D: np.ndarray
    Q: np.ndarray
    U: np.ndarray
    null_A: np.ndarray
    null_noise: np.ndarray
    mixing: np.ndarray
    null_coefficients: np.ndarray
    dt: float
    method: str
    stationary: bool

    @property
    def entropy_production(self) -> float:
        r"""Gaussian entropy-production rate per unit time, :math:`\operatorname{tr}(Q^\top D^{-1} Q U)`.

        For the OU process the steady current is :math:`J = \rho\,(-QUx)`, so
        :math:`\sigma = \int J^\top D^{-1} J/\rho = \operatorname{tr}(Q^\top D^{-1}QU)` (units of
        k_B per unit time). A pseudo-inverse is used when D is singular. The plug-in estimate is
        biased upwards (it is ≥ 0 and equals 0 only when Q̂ = 0); see ``entropy_production``.
        """
        dinv = np.linalg.pinv(self.D, rcond=1e-12, hermitian=True)
        return float(max(np.trace(self.Q.T @ dinv @ self.Q @ self.U), 0.0))

    @property
    def effect_size(self) -> float:
        r"""Dimensionless size of the irreversible drift, :math:`\|QU\|_F / \|DU\|_F`.

        0 at detailed balance. For D = U = I and Q = q [[0, 1], [−1, 0]] it is |q|: the ratio of
        rotation to relaxation.
        """
        den = np.linalg.norm(self.D @ self.U)
        return float(np.linalg.norm(self.Q @ self.U) / den) if den > 0 else 0.0

    def null_paths(self, eps: np.ndarray) -> np.ndarray:
        """Surrogates of the null from standard normals ``eps`` (B, T, k), as (B, k, T) rows.

        The batch form of :meth:`simulate_null`: the same normals give the same paths (tested).

        Returns:
            The surrogate paths.
        """
        mu = self.null_coefficients
        e = np.ascontiguousarray(eps.transpose(0, 2, 1))  # (B, k, T)
        e[:, :, 1:] *= np.sqrt(np.maximum(1.0 - mu**2, 0.0))[:, None]
        for i in range(mu.size):
            e[:, i] = scipy.signal.lfilter([1.0], [1.0, -mu[i]], e[:, i], axis=-1)
        out = np.empty_like(e)
        for j in range(e.shape[0]):
            np.matmul(self.mixing, e[j], out=out[j])
            out[j] += self.mean[:, None]
        return out

    def simulate_null(
        self, n_steps: int, seed: int | np.random.Generator | None = None
    ) -> np.ndarray:
        """Draw one surrogate trajectory of shape (n_steps, k) from the reversible null.

        Exact discrete-time law, stationary start; the AR(1) recursions run in
        ``scipy.signal.lfilter``.

        Returns:
            The surrogate.
        """
        rng = as_generator(seed)
        mu = self.null_coefficients
        k = mu.size
        eps = rng.standard_normal((n_steps, k))
        eps[1:] *= np.sqrt(np.maximum(1.0 - mu**2, 0.0))
        z = np.empty_like(eps)
        for i in range(k):
            z[:, i] = scipy.signal.lfilter([1.0], [1.0, -mu[i]], eps[:, i])
        return self.mean + z @ self.mixing.T

    def null_autocorrelation(self, lags: np.ndarray) -> np.ndarray:
        r"""(n_lags, k) autocorrelation of each coordinate under the null, :math:`C_0(\tau)_{cc}/S_{cc}`."""
        lags = np.asarray(lags, dtype=np.int64)
        p2 = self.mixing**2
        pw = self.null_coefficients[None, :] ** lags[:, None]
        return (pw @ p2.T) / p2.sum(axis=1)

    def null_spectrum(self, frequency: np.ndarray, *, increments: bool = False) -> np.ndarray:
        r"""(F, k) two-sided spectral density of each coordinate under the null.

        :math:`P_c(f) = \sum_i P_{ci}^2\,(1-\mu_i^2)/|1-\mu_i e^{-2\pi i f}|^2` per snapshot, times
        :math:`|1 - e^{-2\pi i f}|^2` for increments; ``frequency`` in cycles per snapshot.

        Returns:
            The spectral densities.
        """
        f = np.asarray(frequency, dtype=float)[:, None]
        mu = self.null_coefficients[None, :]
        lor = (1.0 - mu**2) / np.abs(1.0 - mu * np.exp(-2j * np.pi * f)) ** 2
        out = lor @ (self.mixing**2).T
        if increments:
            out = out * (2.0 - 2.0 * np.cos(2.0 * np.pi * f))
        return out


def fit_ou(x: np.ndarray, *, dt: float = 1.0) -> OUFit:
    r"""Fit the linear model of :class:`OUFit` to positions x of shape (T, k), T > k + 1.

    :math:`A = C(1)C(0)^{-1}` with :math:`C(\tau) = \frac{1}{T-\tau}\sum_t (x_{t+\tau}-\bar x)
    (x_t-\bar x)^\top` (least squares), S the sample covariance, then in whitened coordinates
    :math:`\tilde F = -\log(S^{-1/2} A S^{1/2})/\Delta`, :math:`\tilde D`, :math:`\tilde Q` its
    symmetric and antisymmetric parts, mapped back by :math:`S^{1/2}(\cdot)S^{1/2}`. This is
    Lemma 20 with S the stationary covariance: F S + S Fᵀ = 2D and Q = FS − D. Non-positive
    eigenvalues of D̃ (non-stationary data) are raised so that the null's AR(1) coefficients
    stay within 1/T of ±1; ``stationary`` reports whether T covers ≥ 20 relaxation times.

    Args:
        x: (T, k) float64 positions (already validated and, for large d, projected).
        dt: Time between snapshots.

    Returns:
        An :class:`OUFit`.
    """
    n = x.shape[0]
    mean = x.mean(axis=0)
    xc = x - mean
    s = xc.T @ xc / n
    c0 = xc[:-1].T @ xc[:-1] / (n - 1)
    c1 = xc[1:].T @ xc[:-1] / (n - 1)
    return _fit_from_moments(mean, s, c0, c1, n, dt)


def _fit_from_moments(
    mean: np.ndarray, s: np.ndarray, c0: np.ndarray, c1: np.ndarray, n: int, dt: float = 1.0
) -> OUFit:
    """:func:`fit_ou` from the moments of the data: mean, S, C(0) and C(1) over T − 1 pairs."""
    k = mean.shape[0]
    a = np.linalg.solve(c0.T, c1.T).T
    sh, wh = _sym_sqrt(s)
    b = wh @ a @ sh
    ev = np.linalg.eigvals(b)
    on_neg_axis = np.any((ev.real <= 0) & (np.abs(ev.imag) <= 1e-12 * np.abs(ev).max()))
    if not on_neg_axis:
        g = -_real_log(b) / dt
        dtl = 0.5 * (g + g.T)
        qtl = 0.5 * (g - g.T)
        kappa, v = np.linalg.eigh(dtl)
        mu = np.exp(-np.maximum(kappa, 0.0) * dt)
        method = "continuous"
    else:
        bs = 0.5 * (b + b.T)
        dtl = (np.eye(k) - bs) / dt
        qtl = -0.5 * (b - b.T) / dt
        mu, v = np.linalg.eigh(bs)
        method = "discrete"
    # The trajectory must span ≥ 20 relaxation times 1/(1 − |μ|). A random walk's least-squares
    # μ̂ is biased below 1 (Dickey–Fuller: T(1 − μ̂) ≈ 5 with the mean removed, > 20 in < 1 % of
    # walks), so this also flags unit roots. A unit root itself is replaced by a relaxation
    # time of T snapshots.
    stationary = bool(np.abs(mu).max() < 1.0 - _MIN_RELAXATIONS / n)
    edge = 1.0 / n
    mu = np.clip(mu, -1.0 + edge, 1.0 - edge)
    mixing = sh @ v
    null_a = sh @ (v * mu) @ v.T @ wh
    null_noise = s - null_a @ s @ null_a.T
    f = sh @ (dtl + qtl) @ wh
    d = sh @ dtl @ sh
    q = sh @ qtl @ sh
    return OUFit(
        mean=mean,
        A=a,
        S=s,
        F=f,
        D=0.5 * (d + d.T),
        Q=0.5 * (q - q.T),
        U=wh @ wh,
        null_A=null_a,
        null_noise=0.5 * (null_noise + null_noise.T),
        mixing=mixing,
        null_coefficients=mu,
        dt=float(dt),
        method=method,
        stationary=stationary,
    )


def null_distribution(
    fit: OUFit,
    n_steps: int,
    n_surrogates: int,
    statistic,
    seed: int | np.random.Generator | None,
) -> np.ndarray:
    """(n_surrogates, m) values of ``statistic(y) -> (m,)`` on surrogates drawn from the null."""
    rng = as_generator(seed)
    return np.array(
        [np.atleast_1d(statistic(fit.simulate_null(n_steps, rng))) for _ in range(n_surrogates)]
    )


@dataclass(frozen=True)
class GaussianChain:
    r"""A stationary Gaussian VAR(1) chain :math:`x_{t+1}-m = A(x_t-m) + e_t`, :math:`e_t\sim N(0, \Sigma)`.

    The exact snapshot law of a linear SDE (the OU process of §V-A) or of a linear discrete
    recursion such as heavy-ball SGD on a quadratic. Used for the fitted model itself (the
    bootstrap of the entropy-production rate) and for the reversible null with odd variables
    (:func:`parity_null`), whose transition matrix is not symmetric in any whitened frame.

    Attributes:
        mean: (k,) stationary mean m.
        A: (k, k) transition matrix, spectral radius < 1.
        noise: (k, k) innovation covariance Σ = S − A S Aᵀ.
        S: (k, k) stationary covariance.
        dt: Time between snapshots.
    """

    mean: np.ndarray
    A: np.ndarray
    noise: np.ndarray
    S: np.ndarray
    dt: float = 1.0

    def paths(self, eps: np.ndarray) -> np.ndarray:
        r"""Stationary paths from standard normals ``eps`` (B, T, k), as (B, k, T) rows.

        Row 0 is drawn from N(m, S), then the recursion runs mode by mode: with
        :math:`A = V\Lambda V^{-1}`, the modes :math:`z = V^{-1}x` are independent complex AR(1)
        recursions (``scipy.signal.lfilter``), and x = Re(V z). A near-defective A (eigenvector
        condition number above 1e8) runs the recursion step by step instead.

        Returns:
            The paths.
        """
        b, n, k = eps.shape
        e = np.empty((b, n, k))
        e[:, 0] = eps[:, 0] @ _psd_factor(self.S).T
        e[:, 1:] = eps[:, 1:] @ _psd_factor(self.noise).T
        lam, v = np.linalg.eig(self.A)
        if np.linalg.cond(v) < 1e8:
            z = np.ascontiguousarray((e @ np.linalg.inv(v).T).transpose(0, 2, 1))  # (B, k, T)
            for i in range(k):
                z[:, i] = scipy.signal.lfilter([1.0], [1.0, -lam[i]], z[:, i], axis=-1)
            x = np.real(np.einsum("ij,bjt->bit", v, z))
        else:  # pragma: no cover - near-defective transition matrices are rare
            x = np.empty((b, k, n))
            state = e[:, 0]
            x[:, :, 0] = state
            for t in range(1, n):
                state = state @ self.A.T + e[:, t]
                x[:, :, t] = state
        x += self.mean[:, None]
        return np.ascontiguousarray(x)

    def simulate(self, n_steps: int, seed: int | np.random.Generator | None = None) -> np.ndarray:
        """One stationary path of shape (n_steps, k)."""
        eps = as_generator(seed).standard_normal((1, n_steps, self.mean.size))
        return self.paths(eps)[0].T

    def autocorrelation(self, lags: np.ndarray) -> np.ndarray:
        """(n_lags, k) exact autocorrelation of each coordinate, diag(A^τ S)/diag(S)."""
        lags = np.asarray(lags, dtype=np.int64)
        d = np.diag(self.S)
        return np.stack(
            [np.diag(np.linalg.matrix_power(self.A, int(t)) @ self.S) / d for t in lags]
        )

    def spectrum(self, frequency: np.ndarray) -> np.ndarray:
        r"""(F, k) exact two-sided spectral density per snapshot of each coordinate.

        :math:`P(f) = \operatorname{diag} H\Sigma H^{*}` with :math:`H = (I - Ae^{-2\pi i f})^{-1}`;
        its integral over f ∈ [−½, ½] is diag(S).

        Returns:
            The spectral densities.
        """
        f = np.asarray(frequency, dtype=float)
        k = self.mean.size
        m = np.eye(k)[None] - self.A[None] * np.exp(-2j * np.pi * f)[:, None, None]
        h = np.linalg.inv(m)
        return np.real(np.einsum("fij,jl,fil->fi", h, self.noise, h.conj()))

    def entropy_rate(self, odd: np.ndarray | None = None) -> float:
        r"""Entropy production per unit time of the chain, with odd variables ``odd`` (k,) bool.

        The Kullback–Leibler rate between the chain and its time reverse with momenta flipped
        (ε = diag(±1), −1 on the odd variables): per step,
        :math:`\mathrm{KL}(N(0,J)\,\|\,N(0,RJR^\top))` for the joint covariance
        :math:`J` of :math:`(x_t, x_{t+1})` and :math:`R(a, b) = (\varepsilon b, \varepsilon a)`,
        i.e. :math:`\tfrac12[\operatorname{tr}((RJR^\top)^{-1}J) - 2k]` (the log-determinants
        cancel), divided by Δ. It is 0 exactly when :math:`AS = \varepsilon(AS)^\top\varepsilon`
        and :math:`S = \varepsilon S\varepsilon` (detailed balance with parity), and for a
        finely sampled OU without odd variables it tends to tr(Qᵀ D⁻¹ Q U) as Δ → 0 (tested).

        Returns:
            The rate, ≥ 0, per unit of time (``dt``).
        """
        return _kl_rate(self.A, self.S, odd) / self.dt


def _kl_rate(a: np.ndarray, s: np.ndarray, odd: np.ndarray | None) -> float:
    """KL per step between the chain (A, S) and its time reverse with parity (see entropy_rate)."""
    m = a @ s  # E[x_{t+1} x_tᵀ]
    return _reversal_kl(s, m, s, odd)


def _reversal_kl(
    c0: np.ndarray, c1: np.ndarray, c0_next: np.ndarray, odd: np.ndarray | None
) -> float:
    r"""KL(N(0, J) ‖ N(0, RJRᵀ)) for J = [[C₀, C₁ᵀ], [C₁, C₀']], the law of (x_t, x_{t+1}).

    R(a, b) = (εb, εa) reverses the pair and flips the odd coordinates. A step that is partly
    deterministic (heavy-ball SGD in (midpoint, step) coordinates, where
    m_{t+1} − m_t = (u_t + u_{t+1})/2 exactly) makes J and RJRᵀ singular on the same subspace;
    a ridge of 1e-10 of the mean eigenvalue on both makes that subspace contribute nothing.

    Returns:
        The KL divergence, ≥ 0.
    """
    k = c0.shape[0]
    eps = np.where(np.zeros(k, bool) if odd is None else odd, -1.0, 1.0)
    flip = eps[:, None] * eps[None, :]
    j = np.block([[c0, c1.T], [c1, c0_next]])
    jr = np.block([[c0_next * flip, c1 * flip], [c1.T * flip, c0 * flip]])
    ridge = 1e-10 * np.trace(j) / (2 * k) * np.eye(2 * k)
    j, jr = j + ridge, jr + ridge
    kl = 0.5 * (
        np.trace(np.linalg.solve(jr, j))
        - 2 * k
        + np.linalg.slogdet(jr)[1]
        - np.linalg.slogdet(j)[1]
    )
    return float(max(kl, 0.0))


def pair_entropy_rate(yt: np.ndarray, odd: np.ndarray | None, dt: float = 1.0) -> float:
    """Gaussian entropy-production rate of a path yᵀ (k, T) from its own one-step pairs.

    The plug-in version of :meth:`GaussianChain.entropy_rate`: J is the sample covariance of
    the pairs (y_t, y_{t+1}), t < T − 1, each half about its own mean, so that an exact linear
    relation between consecutive states (heavy-ball SGD) holds in J to round-off, as in the
    chain itself.

    Returns:
        The rate, ≥ 0, per unit of time (``dt``).
    """
    a, b = yt[:, :-1], yt[:, 1:]
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    n = a.shape[1]
    return _reversal_kl(a @ a.T / n, b @ a.T / n, b @ b.T / n, odd) / dt


def _psd_factor(c: np.ndarray) -> np.ndarray:
    """L with L Lᵀ = c for a symmetric PSD c (negative eigenvalues of round-off set to 0)."""
    w, v = np.linalg.eigh(0.5 * (c + c.T))
    return v * np.sqrt(np.maximum(w, 0.0))


def _stable(a: np.ndarray, n: int) -> np.ndarray:
    """A with eigenvalue moduli clipped to 1 − 1/n (a unit root becomes a relaxation over T)."""
    lam, v = np.linalg.eig(a)
    r = np.abs(lam)
    cap = 1.0 - 1.0 / n
    if r.max() <= cap:
        return a
    lam = np.where(r > cap, lam * cap / np.maximum(r, 1e-300), lam)
    return np.real(v @ np.diag(lam) @ np.linalg.inv(v))


def _chain(mean: np.ndarray, a: np.ndarray, s: np.ndarray, dt: float) -> GaussianChain:
    noise = s - a @ s @ a.T
    noise = 0.5 * (noise + noise.T)
    w, v = np.linalg.eigh(noise)
    noise = (v * np.maximum(w, 0.0)) @ v.T
    return GaussianChain(mean=mean, A=a, noise=noise, S=s, dt=dt)


def fitted_chain(fit: OUFit, n_steps: int) -> GaussianChain:
    """The fitted linear model itself (Q kept) as a chain, for a bootstrap of length n_steps.

    Its transition matrix is the least-squares A, with eigenvalues clipped inside 1 − 1/T, and its
    innovation covariance S − A S Aᵀ (negative eigenvalues of sampling noise set to 0).

    Returns:
        The :class:`GaussianChain`.
    """
    return _chain(fit.mean, _stable(fit.A, n_steps), fit.S, fit.dt)


def parity_null(fit: OUFit, odd: np.ndarray, n_steps: int) -> GaussianChain:
    r"""The reversible null of a fit whose ``odd`` (k,) bool coordinates flip sign under time reversal.

    For velocities v of positions x, time reversal maps (x, v) → (x, −v), i.e. ε = diag(±1).
    A linear SDE is in detailed balance with this parity exactly when, with
    :math:`FS = D + Q` (Lemma 20), :math:`\varepsilon S\varepsilon = S`,
    :math:`\varepsilon D\varepsilon = D` and :math:`\varepsilon Q\varepsilon = -Q`: the
    antisymmetric part may only couple even to odd variables (Risken 1989, §6.4; Gardiner,
    *Handbook of Stochastic Methods*, §5.3.5). An underdamped oscillator at equilibrium,
    dx = v dt, dv = −(γv + Kx) dt + √(2γT) dW, has exactly such a Q, so it rotates in phase space
    with no probability current. The null keeps those parts of the fit and drops the others:
    :math:`S_0 = (S + \varepsilon S\varepsilon)/2`, :math:`D_0 = (D + \varepsilon D\varepsilon)/2`
    (negative eigenvalues of noise set to 0), :math:`Q_0 = (Q - \varepsilon Q\varepsilon)/2`,
    :math:`F_0 = (D_0 + Q_0)S_0^{-1}`, whose stationary covariance is :math:`S_0`. With
    ``method="discrete"`` (no continuous-time generator), the one-step covariance
    :math:`M = AS` is symmetrised instead, :math:`M_0 = (M + \varepsilon M^\top\varepsilon)/2`,
    :math:`A_0 = M_0 S_0^{-1}`. Without odd coordinates this is the Q = 0 null of :class:`OUFit`.

    Args:
        fit: The linear model fitted to the (positions, velocities) coordinates.
        odd: (k,) bool, True for the coordinates that are odd under time reversal.
        n_steps: Record length T (eigenvalues of the transition matrix are kept inside 1 − 1/T).

    Returns:
        A :class:`GaussianChain` with stationary covariance S₀.
    """
    eps = np.where(odd, -1.0, 1.0)
    flip = eps[:, None] * eps[None, :]  # ε X ε = X * flip
    s0 = 0.5 * (fit.S + fit.S * flip)
    if fit.method == "continuous":
        d0 = 0.5 * (fit.D + fit.D * flip)
        q0 = 0.5 * (fit.Q - fit.Q * flip)
        sh, wh = _sym_sqrt(s0)
        w, v = np.linalg.eigh(wh @ d0 @ wh)  # D₀ ⪰ 0 in the S₀-whitened frame
        d0 = sh @ ((v * np.maximum(w, 0.0)) @ v.T) @ sh
        f0 = (d0 + q0) @ np.linalg.inv(s0)
        a0 = scipy.linalg.expm(-f0 * fit.dt)
    else:
        m = fit.A @ fit.S
        a0 = 0.5 * (m + m.T * flip) @ np.linalg.inv(s0)
    return _chain(fit.mean, _stable(a0, n_steps), s0, fit.dt)
