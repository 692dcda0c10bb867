"""simulate_sgd and the finite-sum problems against closed forms and second algorithms."""

import numpy as np
import pytest
import scipy.linalg
import torch

import sgdscope as sg
from sgdscope.dynamics import sde as sde_mod
from sgdscope.dynamics.sgd import _BatchSampler

f64 = torch.float64


# --- least squares near its minimum: closed forms ---------------------------------------------


def ls_case(seed=0, n=8, d=2):
    p = sg.LeastSquares.synthetic(n_samples=n, dim=d, noise=1.0, seed=seed)
    A, y = p.inputs.numpy(), p.targets.numpy()
    x_star = p.minimizer()
    r = A @ x_star.numpy() - y
    H = A.T @ A / n
    D = (A * r[:, None] ** 2).T @ A / n  # D(x*) = (1/N) Σ r_k² a_k a_kᵀ, since g(x*) = 0
    return p, x_star, H, D


def exact_discrete_covariance(A, H, D, lr, c_b):
    """Exact stationary E[δδᵀ] of SGD on least squares, δ = x − x*.

    δ' = (I − ηH) δ − η ξ, where the mini-batch noise ξ has covariance c_b·[D* + T(Σ)],
    T(Σ) = (1/N) Σ_k (a_k a_kᵀ − H) Σ (a_k a_kᵀ − H) (its multiplicative part), and c_b = 1/b with
    replacement or (1/b)(1 − b/N) N/(N−1) for b distinct indices (App. A). Linear in Σ.
    """
    n, d = A.shape
    M = np.eye(d) - lr * H
    T = sum(np.kron(B, B) for B in (np.outer(a, a) - H for a in A)) / n
    K = np.eye(d * d) - np.kron(M, M) - lr**2 * c_b * T
    return np.linalg.solve(K, lr**2 * c_b * D.reshape(-1)).reshape(d, d)


def sgd_covariance(p, x_star, lr, b, replacement, reshuffle=True, chains=4000):
    # relaxation time of the covariance ≈ 1/(2ηλ_min(H)) ≈ 40 steps: burn-in 400, then 20
    # records 100 steps apart (correlation ≈ e^{−2·1.2} ≈ 0.09 between records).
    xs = sg.simulate_sgd(
        p,
        lr,
        b,
        400 + 100 * 20,
        replacement,
        chains,
        seed=1,
        record_every=100,
        x0=x_star,
        reshuffle=reshuffle,
    )
    z = (xs[5:] - x_star).reshape(-1, p.dim).numpy()
    return z.T @ z / len(z)


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


LR, B = 0.01, 4  # N = 8, so b/N = 1/2


def test_stationary_covariance_with_replacement():
    """Σ ≈ β⁻¹ S with H S + S H = 2D, β⁻¹ = η/(2b) (Lemma 2, Lemma 20 with F = H).

    Tolerances: the continuous-time limit is off by O(ηλ_max/2) ≈ 1% plus the multiplicative part
    of D(x) near x* (≈ 0.5%), and 8e4 samples give ≈ 1% sampling error: 5% against β⁻¹S. The exact
    discrete-time covariance has only the sampling error: 3%.
    """
    p, x_star, H, D = ls_case()
    S = sg.linear_decomposition(H, D).S
    C = sgd_covariance(p, x_star, LR, B, replacement=True)
    assert rel(C, sg.temperature(LR, B) * S) < 0.05
    assert rel(C, exact_discrete_covariance(p.inputs.numpy(), H, D, LR, 1 / B)) < 0.03


def test_stationary_covariance_without_replacement_remark12():
    """b distinct indices per step at b/N = 1/2: Σ ≈ β'⁻¹·N/(N−1)·S, β'⁻¹ = η/(2b)(1 − b/N).

    Remark 12's factor (1 − b/N) = 1/2 halves the temperature; the N/(N−1) = 8/7 of App. A
    (eq. A2) is visible too: leaving it out is off by 14%.
    """
    p, x_star, H, D = ls_case()
    N = p.n_samples
    S = sg.linear_decomposition(H, D).S
    beta_inv = sg.temperature(LR, B, n=N, replacement=False)
    assert beta_inv == pytest.approx(0.5 * sg.temperature(LR, B))
    C = sgd_covariance(p, x_star, LR, B, replacement=False, reshuffle=False)
    assert rel(C, beta_inv * N / (N - 1) * S) < 0.05
    assert rel(C, beta_inv * S) > 0.08
    c_b = (1 / B) * (1 - B / N) * N / (N - 1)
    assert rel(C, exact_discrete_covariance(p.inputs.numpy(), H, D, LR, c_b)) < 0.03


def test_reshuffled_epochs_are_far_colder():
    """Per-epoch permutations at b = N/2: the two batches of an epoch have opposite noise
    (their gradients sum to N·∇f), so near x* the spread is O(η²), far below β'⁻¹S = O(η)."""
    p, x_star, H, D = ls_case()
    S = sg.linear_decomposition(H, D).S
    C = sgd_covariance(p, x_star, LR, B, replacement=False, reshuffle=True, chains=1000)
    assert np.linalg.norm(C) < 0.01 * np.linalg.norm(
        sg.temperature(LR, B, n=8, replacement=False) * S
    )


def test_gradient_noise_measures_the_closed_form_D():
    if not hasattr(sg, "GradientNoise"):
        pytest.skip("sgdscope.GradientNoise not available yet")
    p, x_star, _, D = ls_case()
    noise = sg.GradientNoise(p.module(x_star), p.loss_fn, data=p.data, progress=False)
    np.testing.assert_allclose(noise.dense().numpy(), D, atol=1e-12)
    for q in (sg.LogisticRegression.synthetic(64), sg.MLPProblem.synthetic(32)):
        x = q.initial_point(3) + 0.1
        G = q.per_sample_gradients(x)
        Gc = G - G.mean(0)
        gn = sg.GradientNoise(q.module(x), q.loss_fn, data=q.data, progress=False).dense()
        torch.testing.assert_close(gn, Gc.T @ Gc / q.n_samples, rtol=1e-9, atol=1e-12)


# --- momentum: the exact covariance of heavy ball on the quadratic ----------------------------


def test_momentum_stationary_covariance():
    """Heavy ball v' = μv + ∇f_b, x' = x − ηv': exact stationary covariance of the linear system
    (δ, v) with the state-dependent noise of LS (fixed point), and the SDE limit
    β⁻¹ = η/(2b(1 − μ)) (sg.temperature) within 8% (correction O(η/(1 − μ)²))."""
    p, x_star, H, D = ls_case()
    A = p.inputs.numpy()
    mu, lr, d = 0.5, 0.005, 2
    M = np.block([[np.eye(d) - lr * H, -lr * mu * np.eye(d)], [H, mu * np.eye(d)]])
    Bm = np.vstack([-lr * np.eye(d), np.eye(d)])
    Sz = np.zeros((2 * d, 2 * d))
    for _ in range(200):
        Sxx = Sz[:d, :d]
        noise = (
            D + sum(np.outer(a, a) @ Sxx @ np.outer(a, a) for a in A) / len(A) - H @ Sxx @ H
        ) / B
        Sz = scipy.linalg.solve_discrete_lyapunov(M, Bm @ noise @ Bm.T)
    xs = sg.simulate_sgd(
        p, lr, B, 400 + 100 * 20, chains=4000, seed=2, momentum=mu, record_every=100, x0=x_star
    )
    z = (xs[5:] - x_star).reshape(-1, d).numpy()
    C = z.T @ z / len(z)
    assert rel(C, Sz[:d, :d]) < 0.03
    S = sg.linear_decomposition(H, D).S
    assert rel(C, sg.temperature(lr, B, momentum=mu) * S) < 0.08


# --- exact iterations against second algorithms -----------------------------------------------


def test_full_batch_is_gradient_descent():
    p, _, _, _ = ls_case(n=16, d=3)
    x0 = torch.ones(3, dtype=f64)
    xs = sg.simulate_sgd(p, 0.1, 16, 20, replacement=False, reshuffle=False, x0=x0)
    x, A, y = x0.numpy(), p.inputs.numpy(), p.targets.numpy()
    for _ in range(20):
        x = x - 0.1 * A.T @ (A @ x - y) / 16
    np.testing.assert_allclose(xs[-1, 0].numpy(), x, atol=1e-12)


@pytest.mark.parametrize(
    "make",
    [sg.LeastSquares.synthetic, sg.LogisticRegression.synthetic, sg.MLPProblem.synthetic],
    ids=["least-squares", "logistic", "mlp"],
)
def test_momentum_matches_torch_optim(make):
    """Full-batch heavy ball against torch.optim.SGD(momentum) on the problem's nn.Module."""
    p = make(n_samples=16)
    x0 = p.initial_point(1)
    xs = sg.simulate_sgd(p, 0.05, 16, 15, replacement=False, momentum=0.9, x0=x0)
    m = p.module(x0)
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
    X, y = p.data
    for _ in range(15):
        opt.zero_grad()
        p.loss_fn(m(X), y).mean().backward()
        opt.step()
    flat = torch.nn.utils.parameters_to_vector(m.parameters()).detach()
    torch.testing.assert_close(xs[-1, 0], flat, rtol=1e-10, atol=1e-12)


def test_problem_derivatives_closed_form():
    p, _, _, _ = ls_case(n=10, d=3)
    x = torch.tensor([0.3, -0.2, 0.5], dtype=f64)
    A, y = p.inputs, p.targets
    G = A * (A @ x - y)[:, None]
    torch.testing.assert_close(p.per_sample_gradients(x), G)
    torch.testing.assert_close(p.hessian(), A.T @ A / 10)
    torch.testing.assert_close(sg.AbstractFiniteSumProblem.hessian(p, x), A.T @ A / 10)
    idx = torch.randint(10, (5, 4), generator=torch.Generator().manual_seed(0))
    xc = torch.randn(5, 3, dtype=f64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(
        p.batch_gradient(xc, idx), sg.AbstractFiniteSumProblem.batch_gradient(p, xc, idx)
    )
    # logistic: ∇ℓ_k = (σ(z) − y) a,  ∇²f = (1/N) Σ σ(1 − σ) a aᵀ
    q = sg.LogisticRegression.synthetic(n_samples=20, dim=3)
    s = torch.sigmoid(q.inputs @ x)
    torch.testing.assert_close(q.per_sample_gradients(x), q.inputs * (s - q.targets)[:, None])
    torch.testing.assert_close(q.hessian(x), (q.inputs * (s * (1 - s))[:, None]).T @ q.inputs / 20)


def test_mlp_forward_matches_module_and_finite_differences():
    p = sg.MLPProblem.synthetic(n_samples=24, in_dim=3, hidden=5, n_classes=3)
    assert p.dim == 5 * 4 + 3 * 6
    x = p.initial_point(0)
    X, y = p.data
    idx = torch.arange(24)[None]
    torch.testing.assert_close(
        p.per_sample_losses(x[None], idx)[0], p.loss_fn(p.module(x)(X), y).detach()
    )
    g = p.gradient(x)
    e = torch.zeros_like(x)
    for i in (0, 7, 21, p.dim - 1):
        e.zero_()
        e[i] = 1e-6
        fd = (p.loss(x + e) - p.loss(x - e)) / 2e-6
        assert abs(float(fd) - float(g[i])) < 1e-7


def test_sgd_decreases_loss_on_every_problem():
    for p in (sg.LogisticRegression.synthetic(), sg.MLPProblem.synthetic()):
        xs = sg.simulate_sgd(p, 0.1, 16, 300, chains=3, record_every=300)
        assert all(float(p.loss(xs[-1, c])) < float(p.loss(xs[0, c])) for c in range(3))


# --- sampling, records, determinism -----------------------------------------------------------


def test_reshuffle_sampler_covers_each_epoch():
    gen = torch.Generator().manual_seed(0)
    s = _BatchSampler(
        10, 3, 4, replacement=False, reshuffle=True, gen=gen, device=torch.device("cpu")
    )
    for _ in range(3):  # 3 epochs of ⌊10/3⌋ = 3 batches; one sample per epoch dropped
        idx = torch.cat([s() for _ in range(3)], dim=1)
        assert all(len(set(row.tolist())) == 9 for row in idx)
    fresh = _BatchSampler(
        10, 3, 500, replacement=False, reshuffle=False, gen=gen, device=torch.device("cpu")
    )
    idx = fresh()
    assert all(len(set(row.tolist())) == 3 for row in idx)
    counts = torch.bincount(idx.flatten(), minlength=10).double()
    assert float(counts.std() / counts.mean()) < 0.1  # uniform: 150 ± 12 each


def test_records_determinism_and_rng():
    p = sg.LeastSquares.synthetic()
    state = torch.get_rng_state()
    a = sg.simulate_sgd(p, 0.05, 4, 10, chains=3, seed=5)
    b = sg.simulate_sgd(p, 0.05, 4, 10, chains=3, seed=5, record_every=4)
    assert torch.equal(state, torch.get_rng_state())
    assert a.shape == (11, 3, 2) and b.shape == (4, 3, 2)
    torch.testing.assert_close(b, a[[0, 4, 8, 10]], rtol=0, atol=0)
    torch.testing.assert_close(a[0], p.initial_point().expand(3, 2))
    c = sg.simulate_sgd(p, 0.05, 4, 10, chains=3, seed=6)
    assert not torch.equal(a[-1], c[-1])
    x0 = torch.randn(3, 2, dtype=f64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(sg.simulate_sgd(p, 0.05, 4, 0, chains=3, x0=x0)[0], x0)


# --- bad input --------------------------------------------------------------------------------

P = sg.LeastSquares.synthetic(n_samples=8)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (
            {"problem": "ls"},
            TypeError,
            "'problem' parameter of simulate_sgd must be a finite-sum problem",
        ),
        ({"lr": 0.0}, ValueError, "'lr' parameter of simulate_sgd"),
        (
            {"batch_size": 9},
            ValueError,
            r"'batch_size' parameter of simulate_sgd must be an int in \[1, 8\], got 9",
        ),
        ({"n_steps": -1}, ValueError, "'n_steps' parameter"),
        ({"chains": 0}, ValueError, "'chains' parameter"),
        (
            {"momentum": 1.0},
            ValueError,
            r"'momentum' parameter of simulate_sgd must be a real number in \[0, 1\)",
        ),
        ({"record_every": 0}, ValueError, "'record_every' parameter"),
        (
            {"reshuffle": False},
            ValueError,
            "'reshuffle' parameter of simulate_sgd applies only without replacement",
        ),
        (
            {"x0": torch.zeros(3, dtype=f64)},
            ValueError,
            r"'x0' parameter .* \(dim,\) = \(2,\) or \(chains, dim\) = \(1, 2\), got \(3,\)",
        ),
        ({"lr": 1e6}, FloatingPointError, "became NaN or inf at step .* Lower 'lr'"),
    ],
)
def test_bad_input(kwargs, exc, match):
    args = {"problem": P, "lr": 0.1, "batch_size": 2, "n_steps": 200}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        sg.simulate_sgd(**args)


def test_memory_refusal(monkeypatch):
    monkeypatch.setattr(sde_mod, "_available_bytes", lambda device: 10_000)
    with pytest.raises(
        MemoryError, match=r"simulate_sgd would need .* Increase 'record_every' or use fewer chains"
    ):
        sg.simulate_sgd(P, 0.1, 2, 10_000, chains=4)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (
            lambda: sg.LeastSquares(torch.ones(4), torch.ones(4)),
            r"'inputs' parameter of LeastSquares must be a float tensor of shape \(N, p\)",
        ),
        (
            lambda: sg.LeastSquares(torch.ones(4, 2), torch.ones(3)),
            r"'targets' parameter of LeastSquares must be a tensor of shape \(N,\) = \(4,\), got \(3,\)",
        ),
        (
            lambda: sg.LeastSquares(torch.ones(4, 2), torch.ones(4, dtype=torch.int64)),
            "must be a float tensor, got dtype torch.int64",
        ),
        (
            lambda: sg.LeastSquares(torch.full((4, 2), np.nan), torch.ones(4)),
            "'inputs' parameter of LeastSquares must be finite",
        ),
        (
            lambda: sg.LogisticRegression(torch.ones(4, 2), torch.tensor([0.0, 1.0, 2.0, 1.0])),
            "labels 0 or 1",
        ),
        (
            lambda: sg.MLPProblem(torch.ones(4, 2), torch.tensor([0, 1, 2, 1])),
            r"integer labels in \[0, 2\)",
        ),
        (
            lambda: sg.MLPProblem(torch.ones(4, 2), torch.ones(4)),
            r"integer labels in \[0, 2\), got dtype torch.float32",
        ),
        (
            lambda: sg.MLPProblem(torch.ones(4, 2), torch.tensor([0, 1, 0, 1]), hidden=0),
            "'hidden' parameter of MLPProblem",
        ),
        (
            lambda: sg.LeastSquares.synthetic(n_samples=0),
            "'n_samples' parameter of LeastSquares.synthetic",
        ),
        (
            lambda: sg.LeastSquares.synthetic(noise=-1.0),
            "'noise' parameter of LeastSquares.synthetic",
        ),
        (
            lambda: sg.LogisticRegression.synthetic(dim=0),
            "'dim' parameter of LogisticRegression.synthetic",
        ),
        (lambda: sg.MLPProblem.synthetic(in_dim=0), "'in_dim' parameter of MLPProblem.synthetic"),
    ],
)
def test_bad_problem(make, match):
    with pytest.raises(ValueError, match=match):
        make()
