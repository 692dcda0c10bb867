"""linear_decomposition (Lemma 20) against closed forms derived by hand, and simulate_sde."""

import numpy as np
import pytest
import scipy.linalg
import torch

import sgdscope as sg

# --- closed form 1: symmetric F = diag(a, b), D = [[1, r], [r, 1]] -------------------------------
# F S + S F = 2D with F diagonal gives S_ij (F_i + F_j) = 2 D_ij, so
#   S = [[1/a, 2r/(a+b)], [2r/(a+b), 1/b]],   Q = F S − D = r (a − b)/(a + b) [[0, 1], [−1, 0]].
# Q = 0 iff r = 0 or a = b, i.e. iff F and D commute.


def closed_form_diag(a, b, r):
    S = np.array([[1 / a, 2 * r / (a + b)], [2 * r / (a + b), 1 / b]])
    q = r * (a - b) / (a + b)
    return S, np.array([[0.0, q], [-q, 0.0]])


# --- closed form 2: non-symmetric F = [[a, c], [0, b]], D = I ---------------------------------
# (1,1): a s11 + c s12 = 1; (2,2): s22 = 1/b; (1,2): (a + b) s12 + c s22 = 0, so
#   s12 = −c / (b (a + b)), s11 = (1 − c s12) / a,  and Q_12 = a s12 + c s22 = c / (a + b).
# Here D = I commutes with F, yet Q ≠ 0 for c ≠ 0: the criterion is F D = D Fᵀ, not F D = D F.


def closed_form_triangular(a, b, c):
    s12 = -c / (b * (a + b))
    S = np.array([[(1 - c * s12) / a, s12], [s12, 1 / b]])
    q = c / (a + b)
    return S, np.array([[0.0, q], [-q, 0.0]])


@pytest.mark.parametrize(("a", "b", "r"), [(1.0, 3.0, 0.5), (2.0, 0.5, -0.3), (1.0, 1.0, 0.7)])
def test_closed_form_symmetric_F(a, b, r):
    F, D = np.diag([a, b]), np.array([[1.0, r], [r, 1.0]])
    res = sg.linear_decomposition(F, D)
    S, Q = closed_form_diag(a, b, r)
    np.testing.assert_allclose(res.S, S, atol=1e-13)
    np.testing.assert_allclose(res.Q, Q, atol=1e-13)
    np.testing.assert_allclose(res.U, np.linalg.inv(S), atol=1e-12)
    assert res.commute == (a == b)
    assert res.stable and res.residual < 1e-13


@pytest.mark.parametrize(("a", "b", "c"), [(1.0, 2.0, 0.0), (1.0, 2.0, 1.5), (0.5, 0.5, -2.0)])
def test_closed_form_nonsymmetric_F(a, b, c):
    res = sg.linear_decomposition(np.array([[a, c], [0.0, b]]), np.eye(2))
    S, Q = closed_form_triangular(a, b, c)
    np.testing.assert_allclose(res.S, S, atol=1e-13)
    np.testing.assert_allclose(res.Q, Q, atol=1e-13)
    assert res.commute == (c == 0.0)


def random_case(dim, seed, commuting=False):
    rng = np.random.default_rng(seed)
    V = np.linalg.qr(rng.standard_normal((dim, dim)))[0]
    F = V @ np.diag(rng.uniform(0.5, 2.0, dim)) @ V.T
    if commuting:  # same eigenvectors
        D = V @ np.diag(rng.uniform(0.1, 1.0, dim)) @ V.T
    else:
        B = rng.standard_normal((dim, dim))
        D = B @ B.T / dim + 0.1 * np.eye(dim)
    return F, D


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("commuting", [False, True])
def test_identities(seed, commuting):
    F, D = random_case(4, seed, commuting)
    U, Q, S = sg.linear_decomposition(F, D)
    np.testing.assert_allclose(Q, -Q.T, atol=1e-13)  # antisymmetric
    np.testing.assert_allclose((D + Q) @ U, F, atol=1e-10)  # eq. 16
    np.testing.assert_allclose(F @ S + S @ F.T, 2 * D, atol=1e-12)
    np.testing.assert_allclose(U, U.T, atol=1e-12)
    # Q = 0 iff F D = D F (F symmetric here)
    assert (np.abs(Q).max() < 1e-10) == commuting
    assert sg.linear_decomposition(F, D).commute == commuting
    # j(x) = −Q U x is divergence-free and tangent to level sets of Φ (Lemma 20)
    res = sg.linear_decomposition(F, D)
    x = np.random.default_rng(seed).standard_normal((10, 4))
    np.testing.assert_allclose(np.einsum("ni,ni->n", res.force(x), x @ U), 0.0, atol=1e-12)
    assert abs(np.trace(Q @ U)) < 1e-12
    np.testing.assert_allclose(res.potential(x), 0.5 * np.einsum("ni,ij,nj->n", x, U, x))


def test_unpack_and_stationary_covariance():
    F, D = random_case(3, 7)
    res = sg.linear_decomposition(F, D)
    U, Q, S = res
    assert U is res.U and Q is res.Q and S is res.S
    np.testing.assert_allclose(res.stationary_covariance(4.0), S / 4.0)


def test_saddle_is_not_stable():
    F = np.diag([1.0, -2.0])  # a saddle: λ_i + λ_j ≠ 0, so S exists, but no stationary density
    res = sg.linear_decomposition(F, np.eye(2))
    assert not res.stable
    with pytest.raises(ValueError, match="no stationary density"):
        res.stationary_covariance(1.0)


@pytest.mark.parametrize(
    ("F", "D", "match"),
    [
        (np.ones(3), np.eye(3), "'F' parameter of linear_decomposition must be a square"),
        (np.eye(3), np.eye(2), r"'D' parameter .* must be a \(3, 3\) matrix"),
        (np.eye(2), [[1.0, 0.2], [0.0, 1.0]], "must be symmetric"),
        (np.eye(2), np.diag([1.0, -1.0]), "positive semi-definite, got smallest eigenvalue -1"),
        (np.diag([1.0, -1.0]), np.eye(2), "two eigenvalues that sum to zero"),
        (np.eye(2), [[np.nan, 0.0], [0.0, 1.0]], "must be finite"),
        (np.eye(2), np.diag([1.0, 0.0]), "S of linear_decomposition is singular"),
    ],
)
def test_bad_input(F, D, match):
    with pytest.raises(ValueError, match=match):
        sg.linear_decomposition(F, D)


def test_bad_beta():
    res = sg.linear_decomposition(np.eye(2), np.eye(2))
    with pytest.raises(ValueError, match="'beta' parameter"):
        res.stationary_covariance(0.0)


# --- simulate_sde on dx = −F x dt + √(2β⁻¹D) dW: covariance β⁻¹S, and the lag-τ asymmetry --------


def ou_run(F, D, beta, seed=0, n=4000, dt=0.01, burn=600, every=100, n_rec=30):
    Ft = torch.as_tensor(F)
    x0 = torch.zeros(n, F.shape[0], dtype=torch.float64)
    xs = sg.simulate_sde(lambda x: -x @ Ft.T, D, x0, dt, burn + every * n_rec, beta, seed, every)
    return xs[burn // every + 1 :]


def test_simulated_covariance_matches_lyapunov():
    a, b, r, beta = 1.0, 3.0, 0.6, 2.0
    F, D = np.diag([a, b]), np.array([[1.0, r], [r, 1.0]])
    xs = ou_run(F, D, beta)
    C = torch.einsum("tni,tnj->ij", xs, xs).numpy() / (xs.shape[0] * xs.shape[1])
    target = sg.linear_decomposition(F, D).stationary_covariance(beta)
    # EM with dt = 0.01 biases the covariance by O(dt·λ_max/2) ≈ 1.5%; sampling error of
    # 1.2e5 nearly independent samples ≈ 0.5%. Tolerance 4% of ‖target‖.
    assert np.linalg.norm(C - target) < 0.04 * np.linalg.norm(target)


def lag_asymmetry(xs, lag):
    A, B = xs[:-lag].reshape(-1, xs.shape[-1]), xs[lag:].reshape(-1, xs.shape[-1])
    C = (A.T @ B / A.shape[0]).numpy()
    return np.abs(C - C.T).max() / np.abs(C).max()


def test_lag_cross_covariance_asymmetric_iff_Q_nonzero():
    # C(τ) = e^{−Fτ} Σ; C(τ) − C(τ)ᵀ = 0 iff Q = 0 (Lemma 20). Σ = β⁻¹S.
    F = np.diag([1.0, 3.0])
    for r, expect_q in [(0.0, False), (0.6, True)]:
        D = np.array([[1.0, r], [r, 1.0]])
        xs = ou_run(F, D, 1.0, n=3000, every=25, n_rec=60, burn=600)
        asym = lag_asymmetry(xs, 1)  # τ = 0.25
        # exact: ‖e^{−Fτ}S − (e^{−Fτ}S)ᵀ‖ / ‖e^{−Fτ}S‖
        S = sg.linear_decomposition(F, D).S
        Ct = scipy.linalg.expm(-F * 0.25) @ S
        exact = np.abs(Ct - Ct.T).max() / np.abs(Ct).max()
        if expect_q:
            assert exact > 0.1 and abs(asym - exact) < 0.03
        else:
            assert exact == 0.0 and asym < 0.02
