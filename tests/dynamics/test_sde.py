"""simulate_sde against exact laws, the reference loop, and itself in other diffusion forms."""

import itertools
import math

import numpy as np
import pytest
import scipy.integrate
import scipy.stats
import torch

import sgdscope as sg
from sgdscope.dynamics import sde as sde_mod
from sgdscope.reference.sde import brownian_normals, euler_maruyama_loop, psd_root

f64 = torch.float64


# --- shared cases ---------------------------------------------------------------------------


def rot_drift(x):
    """A nonlinear, rotating drift: −x³ + x + a rotation."""
    rot = torch.stack([-x[:, 1], x[:, 0]], dim=1)
    return -(x**3) + 0.5 * x + 0.8 * rot


def rot_drift_np(x):
    return -(x**3) + 0.5 * x + 0.8 * np.array([-x[1], x[0]])


def field_D(x):
    """A state-dependent, positive definite, anisotropic D(x) with off-diagonal terms."""
    d11 = 1.0 + x[:, 0] ** 2
    d22 = 0.5 + 0.2 * torch.sin(x[:, 1]) ** 2
    d12 = 0.3 * torch.tanh(x[:, 0] * x[:, 1])
    return torch.stack([torch.stack([d11, d12], -1), torch.stack([d12, d22], -1)], -2)


def field_D_np(x):
    return field_D(torch.as_tensor(x)[None])[0].numpy()


L_LOW = torch.tensor([[1.0], [0.5]], dtype=f64)  # rank-1 D in 2-D
D_SINGULAR = (L_LOW @ L_LOW.T).numpy()
D_DENSE = np.array([[1.0, 0.4], [0.4, 0.5]])

CASES = {
    # name: (diffusion passed to simulate_sde, σ(x) for one point, noise_dim)
    "field": (field_D, lambda x: psd_root(field_D_np(x)), 2),
    "dense": (torch.as_tensor(D_DENSE), lambda x: psd_root(D_DENSE), 2),
    "dense-singular": (D_SINGULAR, lambda x: psd_root(D_SINGULAR), 2),
    "low-rank": (sg.LowRankDiffusion(L_LOW), lambda x: L_LOW.numpy(), 1),
    "diagonal": (
        sg.DiagonalDiffusion(torch.tensor([1.0, 0.25], dtype=f64)),
        lambda x: np.diag([1.0, 0.5]),
        2,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_matches_reference_loop(name):
    diffusion, sigma, r = CASES[name]
    x0 = np.random.default_rng(1).standard_normal((4, 2))
    n_steps, dt, beta, seed = 40, 0.01, 2.0, 3
    xs = sg.simulate_sde(rot_drift, diffusion, torch.as_tensor(x0), dt, n_steps, beta, seed)
    ref = euler_maruyama_loop(
        rot_drift_np, sigma, x0, dt, brownian_normals(seed, n_steps, 4, r, dim=2), beta
    )
    np.testing.assert_allclose(xs.numpy(), ref, rtol=0, atol=1e-12)


def test_blocks_and_threads_match_reference_loop():
    """Several blocks (dim 512: blocks of 512 particles), the last one short, on 1 and 2 threads."""
    dim, n, n_steps, seed = 512, 1100, 3, 11
    assert sde_mod.block_size(n, dim, 3, "cpu") == 512
    L = torch.randn(dim, 3, dtype=f64, generator=torch.Generator().manual_seed(0)) / 10
    x0 = torch.randn(n, dim, dtype=f64, generator=torch.Generator().manual_seed(1))
    runs = [
        sg.simulate_sde(
            lambda x: -x, sg.LowRankDiffusion(L), x0, 0.1, n_steps, 1.0, seed, threads=t
        )
        for t in (1, 2)
    ]
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)
    ref = euler_maruyama_loop(
        lambda x: -x,
        lambda x: L.numpy(),
        x0.numpy(),
        0.1,
        brownian_normals(seed, n_steps, n, 3, dim=dim),
    )
    np.testing.assert_allclose(runs[0].numpy(), ref, rtol=0, atol=1e-12)


def test_thread_policy():
    assert sde_mod._thread_policy(100, 1, None) == 1
    assert sde_mod._thread_policy(sde_mod.SMALL_PROBLEM - 1, 8, None) == 1
    assert sde_mod._thread_policy(sde_mod.SMALL_PROBLEM, 8, 2) == 2
    assert sde_mod._thread_policy(sde_mod.SMALL_PROBLEM, 1, 2) == 1
    before = torch.get_num_threads()
    sg.simulate_sde(lambda x: -x, EYE, X0, 0.1, 3, threads=2)
    assert torch.get_num_threads() == before


def test_huge_n_steps_refused_before_building_steps(monkeypatch):
    """10⁹ steps of one particle: refused arithmetically, nothing of size n_steps is built."""
    monkeypatch.setattr(sde_mod, "_available_bytes", lambda device: 1 << 30)
    assert sde_mod.n_records(10**9, 1) == 10**9 + 1
    assert sde_mod.n_records(10, 4) == 4 and sde_mod.n_records(8, 4) == 3
    with pytest.raises(MemoryError, match=r"for 1000000001 records .* Increase 'record_every'"):
        sg.simulate_sde(lambda x: -x, EYE, X0[:1], 0.01, 10**9)
    problem = sg.LeastSquares.synthetic(n_samples=8, dim=2, noise=1.0, seed=0)
    with pytest.raises(MemoryError, match=r"1000000001 records of 1 chains"):
        sg.simulate_sgd(problem, 0.1, 4, 10**9)


def test_field_and_constant_give_same_paths():
    D = torch.as_tensor(D_DENSE)
    x0 = torch.zeros(50, 2, dtype=f64)
    a = sg.simulate_sde(rot_drift, D, x0, 0.01, 100, seed=5)
    b = sg.simulate_sde(rot_drift, lambda x: D.expand(x.shape[0], 2, 2), x0, 0.01, 100, seed=5)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-13)


def test_low_rank_square_lower_factor_equals_dense():
    # D = L Lᵀ with L lower triangular, positive diagonal: its Cholesky factor is L itself.
    L = torch.tensor([[1.0, 0.0, 0.0], [0.3, 0.7, 0.0], [-0.2, 0.5, 0.4]], dtype=f64)
    x0 = torch.randn(30, 3, dtype=f64, generator=torch.Generator().manual_seed(0))
    a = sg.simulate_sde(lambda x: -x, sg.LowRankDiffusion(L), x0, 0.02, 50, seed=1)
    b = sg.simulate_sde(lambda x: -x, L @ L.T, x0, 0.02, 50, seed=1)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_diagonal_equals_dense_diagonal():
    d = torch.tensor([2.0, 0.5], dtype=f64)
    x0 = torch.zeros(20, 2, dtype=f64)
    a = sg.simulate_sde(lambda x: -x, sg.DiagonalDiffusion(d), x0, 0.05, 30, seed=2)
    b = sg.simulate_sde(lambda x: -x, torch.diag(d), x0, 0.05, 30, seed=2)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-13)


def stationary_cov(diffusion, F, beta=1.0, n=4000, dt=0.02, burn=250, every=50, n_rec=20):
    Ft = torch.as_tensor(F)
    x0 = torch.zeros(n, F.shape[0], dtype=f64)
    xs = sg.simulate_sde(
        lambda x: -x @ Ft.T, diffusion, x0, dt, burn + every * n_rec, beta, 0, every
    )
    xs = xs[burn // every + 1 :].reshape(-1, F.shape[0])
    return (xs.T @ xs / xs.shape[0]).numpy()


def test_low_rank_and_dense_same_statistics():
    # Rank-1 D in 3-D, with a non-normal F that mixes the noise into every direction: S ≻ 0.
    F = np.array([[1.0, 0.5, 0.0], [-0.5, 1.0, 0.5], [0.0, -0.5, 1.5]])
    ell = torch.tensor([[1.0], [0.5], [-0.5]], dtype=f64)
    target = sg.linear_decomposition(F, (ell @ ell.T).numpy()).stationary_covariance(1.0)
    c_low = stationary_cov(sg.LowRankDiffusion(ell), F)
    c_dense = stationary_cov(ell @ ell.T, F)  # singular: eigh root, different paths, same law
    # 8e4 samples (≈0.5% error) plus EM bias O(dt·λ/2) ≈ 2%: tolerance 5% of ‖target‖.
    for c in (c_low, c_dense):
        assert np.linalg.norm(c - target) < 0.05 * np.linalg.norm(target)


# --- laws: Example 19 (non-equilibrium, ρ_ss = e^{−Φ}) and a 1-D state-dependent D ------------


def example19_drift(lam):
    def drift(x):
        x1, x2 = x[:, 0], x[:, 1]
        phi = (x1**2 - 1) ** 2 / 4 + x2**2 / 2
        s = lam * torch.exp(phi - (x1**2 + x2**2) ** 2 / 4)
        return torch.stack([-(x1**3) + x1 - s * x2, -x2 + s * x1], dim=1)

    return drift


def test_example19_histogram_chi2():
    """Chaudhari & Soatto Example 19 with λ = 1.5: ρ_ss = e^{−Φ} although j ≠ 0 (Fig. 4)."""
    n, dt = 10000, 0.005
    x0 = torch.zeros(n, 2, dtype=f64)
    xs = sg.simulate_sde(example19_drift(1.5), torch.eye(2, dtype=f64), x0, dt, 1200, 1.0, 11, 1200)
    x = xs[-1].numpy()
    # ρ_ss(x1, x2) = e^{−(x1²−1)²/4} e^{−x2²/2} / Z: a product, so bin probabilities are products.
    ex = np.array([-np.inf, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, np.inf])
    ey = np.array([-np.inf, -1.0, -0.4, 0.0, 0.4, 1.0, np.inf])
    w = lambda t: np.exp(-((t**2 - 1) ** 2) / 4)  # noqa: E731
    z = scipy.integrate.quad(w, -np.inf, np.inf)[0]
    px = np.array([scipy.integrate.quad(w, a, b)[0] for a, b in itertools.pairwise(ex)]) / z
    py = np.diff(scipy.stats.norm.cdf(ey))
    expected = n * np.outer(px, py)
    counts = np.histogram2d(x[:, 0], x[:, 1], bins=[ex, ey])[0]
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    p = scipy.stats.chi2.sf(chi2, counts.size - 1)
    assert p > 0.01, (chi2, p)  # fixed seed; threshold 1%
    # moments: E[x2²] = 1, E[x1²] from quadrature; 3 standard errors + EM bias O(dt)
    m2 = scipy.integrate.quad(lambda t: t**2 * w(t), -np.inf, np.inf)[0] / z
    assert abs(np.mean(x[:, 1] ** 2) - 1.0) < 3 * math.sqrt(2 / n) + 0.01
    assert abs(np.mean(x[:, 0] ** 2) - m2) < 3 * np.std(x[:, 0] ** 2) / math.sqrt(n) + 0.01


def test_state_dependent_D_1d_ks():
    """Itô dx = −f′ dt + √(2β⁻¹D(x)) dW with D(x) = 1 + x²/2: ρ_ss ∝ exp(−β∫f′/D)/D(x).

    Zero flux, −f′ρ − β⁻¹(Dρ)′ = 0, gives Dρ ∝ exp(−β ∫ f′/D); the 1/D factor is the Itô
    signature (a Stratonovich scheme would miss it). f = (x² − 1)²/4, β = 2.
    """
    beta, n, dt = 2.0, 10000, 0.005
    fp = lambda t: t**3 - t  # noqa: E731
    Dn = lambda t: 1.0 + 0.5 * t**2  # noqa: E731
    grid = np.linspace(-4, 4, 8001)
    inner = scipy.integrate.cumulative_trapezoid(fp(grid) / Dn(grid), grid, initial=0.0)
    dens = np.exp(-beta * inner) / Dn(grid)
    cdf = scipy.integrate.cumulative_trapezoid(dens, grid, initial=0.0)
    cdf /= cdf[-1]
    x0 = torch.zeros(n, 1, dtype=f64)
    xs = sg.simulate_sde(
        lambda x: -(x**3) + x, lambda x: Dn(x)[..., None], x0, dt, 1500, beta, 4, 1500
    )
    x = xs[-1, :, 0].numpy()
    res = scipy.stats.kstest(x, lambda t: np.interp(t, grid, cdf))
    assert res.pvalue > 0.01, res  # fixed seed; threshold 1%
    # power: the density without the Itô factor 1/D(x) is rejected (p ≈ 1e-37 here)
    wrong = scipy.integrate.cumulative_trapezoid(np.exp(-beta * inner), grid, initial=0.0)
    assert scipy.stats.kstest(x, lambda t: np.interp(t, grid, wrong / wrong[-1])).pvalue < 1e-6
    m2 = np.trapezoid(grid**2 * np.gradient(cdf, grid), grid)
    assert abs(np.mean(x**2) - m2) < 3 * np.std(x**2) / math.sqrt(n) + 0.01


def test_weak_order_on_ou():
    """Weak order of EM on OU, dx = −x dt + √2 dW, from the stationary second moment.

    EM's E[x²] is 1/(1 − h/2), so its error against the exact 1 is ≈ h/2. All step sizes use the
    same seed, so their Monte Carlo errors (≈ 0.15%: 1.2e6 samples, correlation 0.14) are nearly
    common; the order is therefore fitted on successive differences m(h) − m(h/2), in which the
    common error cancels (exact EM values give 1.05–1.11 on this ladder), and must match the
    declared weak order 1 within 0.2. The errors against the exact value must also shrink.
    """
    hs = [0.2, 0.1, 0.05, 0.025]
    m2 = []
    for h in hs:
        burn, every, n_rec = int(5 / h), int(1 / h), 60
        x0 = torch.zeros(20000, 1, dtype=f64)
        xs = sg.simulate_sde(
            lambda x: -x, torch.eye(1, dtype=f64), x0, h, burn + every * n_rec, 1.0, 7, every
        )
        m2.append(float((xs[burn // every + 1 :] ** 2).mean()))
    diffs = np.abs(np.diff(m2))
    slope = np.polyfit(np.log(hs[:-1]), np.log(diffs), 1)[0]
    assert abs(slope - sg.EulerMaruyama.weak_order) < 0.2, (slope, m2)
    errs = np.abs(np.array(m2) - 1.0)
    assert np.all(np.diff(errs) < 0) and errs[0] == pytest.approx(0.2 / 1.8, rel=0.1)
    assert sg.EulerMaruyama.strong_order == 0.5


# --- conventions ----------------------------------------------------------------------------


def test_records_and_determinism():
    x0 = torch.randn(10, 2, dtype=f64, generator=torch.Generator().manual_seed(0))
    full = sg.simulate_sde(rot_drift, torch.as_tensor(D_DENSE), x0, 0.01, 10, seed=9)
    some = sg.simulate_sde(
        rot_drift, torch.as_tensor(D_DENSE), x0, 0.01, 10, seed=9, record_every=4
    )
    assert full.shape == (11, 10, 2) and some.shape == (4, 10, 2)
    torch.testing.assert_close(some, full[[0, 4, 8, 10]], rtol=0, atol=0)
    torch.testing.assert_close(some[0], x0, rtol=0, atol=0)
    other = sg.simulate_sde(rot_drift, torch.as_tensor(D_DENSE), x0, 0.01, 10, seed=10)
    assert not torch.equal(full[-1], other[-1])
    assert sg.simulate_sde(rot_drift, torch.as_tensor(D_DENSE), x0, 0.01, 0).shape == (1, 10, 2)


def test_global_rng_untouched_and_float32():
    state = torch.get_rng_state()
    x0 = torch.zeros(100, 2, dtype=torch.float32)
    xs = sg.simulate_sde(lambda x: -x, torch.eye(2), x0, 0.01, 20, seed=None)
    assert xs.dtype == torch.float32
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_law():
    x0 = torch.zeros(100000, 2, dtype=torch.float32, device="cuda")
    L = torch.tensor([[1.0], [0.5]], device="cuda")
    xs = sg.simulate_sde(lambda x: -x, sg.LowRankDiffusion(L), x0, 0.01, 1000, 1.0, 0, 1000)
    assert xs.device.type == "cuda"
    target = (L @ L.T).cpu().numpy()  # F = I: F S + S Fᵀ = 2D gives S = D (singular here)
    c = (xs[-1].T @ xs[-1] / xs.shape[1]).cpu().numpy()
    assert np.abs(c - target).max() < 0.03


# --- bad input ------------------------------------------------------------------------------

X0 = torch.zeros(3, 2, dtype=f64)
EYE = torch.eye(2, dtype=f64)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (
            {"x0": torch.zeros(2, dtype=f64)},
            ValueError,
            r"'x0' .* \(n_particles, dim\), got shape \(2,\)",
        ),
        ({"x0": torch.zeros(3, 2, dtype=torch.int64)}, ValueError, "'x0' .* float tensor"),
        ({"dt": 0.0}, ValueError, r"'dt' parameter of simulate_sde must be a real number in \(0"),
        ({"n_steps": -1}, ValueError, "'n_steps' parameter of simulate_sde must be an int"),
        ({"beta": -1.0}, ValueError, "'beta' parameter"),
        ({"record_every": 0}, ValueError, "'record_every' parameter"),
        (
            {"diffusion": torch.eye(3, dtype=f64)},
            ValueError,
            "acts on dimension 3 .* x0 has dim = 2",
        ),
        (
            {"diffusion": torch.ones(2, 3, dtype=f64)},
            ValueError,
            r"float \(dim, dim\) matrix, got shape \(2, 3\)",
        ),
        (
            {"diffusion": torch.tensor([[1.0, 0.5], [0.0, 1.0]], dtype=f64)},
            ValueError,
            "must be symmetric",
        ),
        (
            {"diffusion": torch.diag(torch.tensor([1.0, -0.5], dtype=f64))},
            ValueError,
            "positive semi-definite, got smallest eigenvalue -0.5",
        ),
        (
            {"diffusion": torch.tensor([[np.nan, 0], [0, 1.0]], dtype=f64)},
            ValueError,
            "must be finite",
        ),
        ({"diffusion": "isotropic"}, TypeError, "must be a callable field .* got str"),
        (
            {"diffusion": lambda x: torch.ones(x.shape[0], 2, dtype=f64)},
            ValueError,
            r"shape \(n, dim, dim\) = \(3, 2, 2\), got \(3, 2\)",
        ),
        (
            {
                "diffusion": lambda x: torch.tensor([[1.0, 0.3], [0.0, 1.0]], dtype=f64).expand(
                    3, 2, 2
                )
            },
            ValueError,
            "symmetric matrices, got",
        ),
        (
            {
                "diffusion": lambda x: torch.diag(torch.tensor([1.0, -1.0], dtype=f64)).expand(
                    3, 2, 2
                )
            },
            ValueError,
            "positive semi-definite matrices, got .* particle 0",
        ),
        (
            {"diffusion": lambda x: torch.full((3, 2, 2), np.nan, dtype=f64)},
            FloatingPointError,
            "returned NaN or inf for particle 0",
        ),
        (
            {"diffusion": sg.LowRankDiffusion(torch.ones(3, 1, dtype=f64))},
            ValueError,
            "acts on dimension 3",
        ),
        (
            {"diffusion": sg.DiagonalDiffusion(torch.ones(3, dtype=f64))},
            ValueError,
            "acts on dimension 3",
        ),
        ({"drift": lambda x: x[:, :1]}, ValueError, r"'drift' .* same shape, got \(3, 1\)"),
        (
            {"drift": lambda x: torch.where(x[:, :1] > 1e9, x, x * np.nan)},
            FloatingPointError,
            "'drift' .* NaN or inf at step 1 for particle 0",
        ),
        (
            {"drift": lambda x: torch.full_like(x, 1e308), "dt": 10.0},
            FloatingPointError,
            "state of simulate_sde became NaN or inf at step 1",
        ),
    ],
)
def test_bad_input(kwargs, exc, match):
    args = {"drift": lambda x: -x, "diffusion": EYE, "x0": X0, "dt": 0.1, "n_steps": 3}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        sg.simulate_sde(**args)


def test_nan_drift_at_later_step():
    calls = {"n": 0}

    def drift(x):
        calls["n"] += 1
        return -x if calls["n"] < 7 else x * np.nan

    with pytest.raises(FloatingPointError, match="at step 7 for particle 0"):
        sg.simulate_sde(drift, EYE, X0, 0.1, 10)


def test_user_exception_passes_through():
    def drift(x):
        raise KeyError("mine")

    with pytest.raises(KeyError, match="mine"):
        sg.simulate_sde(drift, EYE, X0, 0.1, 10)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (
            lambda: sg.LowRankDiffusion(torch.ones(3)),
            r"'L' parameter of LowRankDiffusion must be a float matrix of shape \(dim, r\)",
        ),
        (
            lambda: sg.LowRankDiffusion(torch.full((2, 1), np.inf)),
            "'L' parameter of LowRankDiffusion must be finite",
        ),
        (
            lambda: sg.DiagonalDiffusion(torch.ones(2, 2)),
            r"'d' parameter of DiagonalDiffusion must be a float vector",
        ),
        (lambda: sg.DiagonalDiffusion(torch.tensor([1.0, -1.0])), "finite and non-negative"),
    ],
)
def test_bad_structured_diffusion(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_memory_refusal(monkeypatch):
    monkeypatch.setattr(sde_mod, "_available_bytes", lambda device: 10_000)
    with pytest.raises(
        MemoryError,
        match=r"would need .* GiB .* \(80% usable: 166 records fit\). Increase 'record_every'",
    ):
        sg.simulate_sde(lambda x: -x, EYE, X0, 0.1, 1000)


def test_structured_dense_views():
    L = torch.tensor([[1.0], [2.0]])
    torch.testing.assert_close(sg.LowRankDiffusion(L).dense(), L @ L.T)
    torch.testing.assert_close(
        sg.DiagonalDiffusion(torch.tensor([1.0, 2.0])).dense(), torch.diag(torch.tensor([1.0, 2.0]))
    )
    assert sg.LowRankDiffusion(L).noise_dim == 1 and sg.LowRankDiffusion(L).dim == 2


def test_errors_in_worker_threads_pass_through_and_name_the_particle():
    """Several blocks on 2 threads: a user exception and a NaN in a later block surface as such."""
    dim, n = 512, 1100  # blocks of 512: particle 700 sits in block 1
    x0 = torch.zeros(n, dim, dtype=f64)
    D = sg.DiagonalDiffusion(torch.ones(dim, dtype=f64))

    def mine(x):
        raise KeyError("mine")

    with pytest.raises(KeyError, match="mine"):
        sg.simulate_sde(mine, D, x0, 0.01, 3, threads=2)

    # coordinate 0 holds each particle's index: no drift and no noise there
    x0[:, 0] = torch.arange(n, dtype=f64)
    d = torch.ones(dim, dtype=f64)
    d[0] = 0.0

    def drift(x):
        b = -x
        b[:, 0] = 0.0
        b[x[:, 0] == 700] = np.nan
        return b

    with pytest.raises(FloatingPointError, match="at step 1 for particle 700 "):
        sg.simulate_sde(drift, sg.DiagonalDiffusion(d), x0, 0.01, 3, threads=2)
    assert torch.get_num_threads() >= 1


def test_address_space_limit_caps_the_memory_check(monkeypatch):
    """Under ``ulimit -v`` the check refuses what the cap forbids, not only what RAM holds."""
    import resource

    limit = 1 << 31
    monkeypatch.setattr(resource, "getrlimit", lambda which: (limit, resource.RLIM_INFINITY))
    assert sde_mod._available_bytes(torch.device("cpu")) < limit
    with pytest.raises(MemoryError, match=r"but only [0-9.]+ GiB is free"):
        sg.simulate_sde(lambda x: -x, EYE, X0[:1], 0.01, 10**9)
