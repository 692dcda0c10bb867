"""Oracles for the Fokker–Planck solver: closed-form stationary laws, the dense reference,
Gaussian transients and KL divergences, and the laws the scheme must keep (mass, F ↓)."""

import numpy as np
import pytest
import scipy.linalg
import torch

from sgdscope.dynamics import examples
from sgdscope.dynamics.fokker_planck import (
    CriticalKind,
    EvolveMethod,
    FokkerPlanck,
    gaussian_density,
)
from sgdscope.dynamics.grid import Grid
from sgdscope.dynamics.linear import linear_decomposition
from sgdscope.reference.fokker_planck import dense_generator


def _solve(ex, shape, **kw):
    grid = Grid(ex.bounds, shape)
    fields = {"loss": ex.loss} if ex.loss is not None else {"drift": ex.drift}
    fp = FokkerPlanck(grid, diffusion=ex.diffusion, beta=ex.beta, **fields, **kw)
    return grid, fp, fp.steady_state()


def _gaussian(grid, cov):
    x = grid.points
    q = np.einsum("...i,ij,...j->...", x, np.linalg.inv(cov), x)
    return np.exp(-0.5 * q) / np.sqrt(np.linalg.det(2 * np.pi * cov))


# --------------------------------------------------------------------------- dense reference
@pytest.mark.parametrize(
    ("name", "shape", "periodic"),
    [
        ("state_dependent", (7, 9), False),
        ("double_well", (8, 6), False),
        ("quadratic", (6, 7), True),
    ],
)
def test_sparse_generator_equals_dense_reference(name, shape, periodic):
    ex = examples.get(name, **({"lam": 0.5} if name == "double_well" else {}))
    grid = Grid(ex.bounds, shape)
    fp = FokkerPlanck(
        grid,
        drift=ex.drift,
        diffusion=ex.diffusion,
        beta=ex.beta,
        boundary="periodic" if periodic else "reflecting",
        max_peclet=None,
        check_positivity=False,
    )
    dense = dense_generator(grid, ex.drift, ex.diffusion, ex.beta, periodic)
    np.testing.assert_allclose(fp.generator.toarray(), dense, rtol=0, atol=1e-12 * abs(dense).max())


def test_sparse_generator_equals_dense_reference_3d_and_conserves_mass():
    grid = Grid([(-1, 1), (-1, 1.5), (0, 1)], (4, 5, 3))
    dmat = np.array([[1.0, 0.2, -0.1], [0.2, 1.0, 0.3], [-0.1, 0.3, 1.0]])

    def drift(x):
        return -(x**3) + 0.3 * x.flip(-1)

    for periodic in (False, True):
        fp = FokkerPlanck(
            grid,
            drift=drift,
            diffusion=dmat,
            boundary="periodic" if periodic else "reflecting",
            max_peclet=None,
        )
        dense = dense_generator(grid, drift, dmat, 1.0, periodic)
        np.testing.assert_allclose(fp.generator.toarray(), dense, atol=1e-12 * abs(dense).max())
        # Flux form: every column sums to zero, so d/dt Σρ = 0 to round-off.
        assert abs(np.asarray(fp.generator.sum(axis=0))).max() < 1e-12 * abs(dense).max()


# ------------------------------------------------------------------- OU: order, j = −QUx
def test_ou_noncommuting_density_converges_at_declared_order_and_force_is_minus_QUx():
    ex = examples.quadratic()
    F, D = np.array([[4.0, 0.0], [0.0, 1.0]]), ex.diffusion
    dec = linear_decomposition(F, D)
    assert not dec.commute
    ns = np.array([24, 32, 48, 64])
    errors = []
    for n in ns:
        grid, _, ss = _solve(ex, (n, n))
        exact = _gaussian(grid, dec.S / ex.beta)
        errors.append(np.abs(ss.density - exact).max() / exact.max())
    h = (ex.bounds[0][1] - ex.bounds[0][0]) / ns
    slope = np.polyfit(np.log(h), np.log(errors), 1)[0]
    assert FokkerPlanck.order - 0.25 <= slope <= FokkerPlanck.order + 0.5, (slope, errors)
    assert errors[-1] < 5e-3

    grid, _, ss = _solve(ex, (96, 96))
    exact_j = -np.einsum("ij,...j->...i", dec.Q @ dec.U, grid.points)
    bulk = ss.density > 1e-2 * ss.density.max()
    rel = np.abs(ss.force - exact_j)[bulk].max() / np.abs(exact_j[bulk]).max()
    assert rel < 0.08
    assert not ss.detailed_balance and ss.current_ratio > 0.3
    assert ss.assumption4  # linear case: ∇·j = 0 and j·∇Φ = 0
    assert ss.residual < 1e-12 and ss.negative_mass < 1e-12
    np.testing.assert_allclose(ss.current, ss.density[..., None] * ss.force)
    # Φ = ½ xᵀ U x up to a constant.
    phi = 0.5 * np.einsum("...i,ij,...j->...", grid.points, dec.U, grid.points)
    diff = (ss.potential - phi)[bulk]
    assert np.abs(diff - diff.mean()).max() < 0.06  # Φ ranges over [0, 4.6] here


def test_isotropic_potential_is_loss_and_commuting_case_is_detailed_balance():
    # Lemma 6: D = c I gives Φ = f / c (ρ ∝ e^{−βf/c}); D commuting with F gives Q = 0.
    grid = Grid([(-4, 4)], (200,))
    fp = FokkerPlanck(grid, loss=lambda x: 0.5 * x[..., 0] ** 2 * 2.0, diffusion=[[0.5]], beta=2.0)
    ss = fp.steady_state()
    exact = _gaussian(grid, np.array([[0.5 / (2.0 * 2.0)]]))
    assert np.abs(ss.density - exact).max() / exact.max() < 2e-3
    assert ss.detailed_balance and ss.current_ratio < 1e-3
    assert [p.kind for p in ss.critical_points_potential] == [CriticalKind.MIN]


def test_periodic_boundary_stationary_law_is_boltzmann():
    # Drift −U'(x) with U = cos x on the circle: ρ ∝ e^{−βU} (zero current).
    grid = Grid([(0, 2 * np.pi)], (128,))
    fp = FokkerPlanck(grid, drift=lambda x: torch.sin(x), diffusion=np.eye(1), boundary="periodic")
    ss = fp.steady_state()
    exact = np.exp(-np.cos(grid.points[..., 0]))
    exact /= exact.sum() * grid.cell_volume
    assert np.abs(ss.density - exact).max() / exact.max() < 1e-3
    assert ss.boundary_density == 0.0
    kinds = sorted(p.kind.value for p in ss.critical_points_potential)
    assert kinds == ["max", "min"]


# ---------------------------------------------------------------------------- Example 19
@pytest.mark.parametrize("lam", [0.0, 0.5, 1.5])
def test_example19_potential_recovered_for_every_lambda(lam):
    ex = examples.double_well(lam)
    grid, _, ss = _solve(ex, (96, 96))
    phi = np.asarray(ex.potential(grid.points))
    resolved = ss.density > 1e-3 * ss.density.max()
    diff = (ss.potential - phi)[resolved]
    assert np.abs(diff - diff.mean()).max() < 5e-3
    found = [(np.round(p.location, 2).tolist(), p.kind.value) for p in ss.critical_points_potential]
    assert found == [([-1.0, 0.0], "min"), ([0.0, 0.0], "saddle"), ([1.0, 0.0], "min")]
    # The critical points of f (drift zeros) are checked against the drift itself.
    for p in ss.critical_points_f:
        b = ex.drift(torch.as_tensor(p.location[None], dtype=torch.float64)).numpy()
        assert np.linalg.norm(b) < 0.02
    if lam == 0:
        assert ss.detailed_balance and ss.assumption4
        np.testing.assert_allclose(ss.critical_distances, 0.0, atol=0.01)
    else:
        # Assumption 4 fails (Example 19, by direct computation) and the drift's zeros leave (±1, 0).
        assert not ss.detailed_balance and not ss.assumption4
        assert ss.div_force > 0.1
        kinds = [p.kind for p in ss.critical_points_potential]
        dist = ss.critical_distances[[k is CriticalKind.MIN for k in kinds]]
        if lam == 0.5:
            assert np.all(dist > 0.2)
            assert {p.kind.value for p in ss.critical_points_f} == {"min", "saddle"}
        else:  # λ = 1.5 > e^{−1/4}: only the origin is left, a centre (limit cycles)
            assert [p.kind for p in ss.critical_points_f] == [CriticalKind.CENTER]
            assert np.all(np.isnan(dist))
    # j ρ = λ e^{−r⁴/4}(−x2, x1) (Example 19) on the resolved region.
    x = grid.points
    exact_j_rho = (
        lam * np.exp(-0.25 * (x**2).sum(-1) ** 2)[..., None] * np.stack([-x[..., 1], x[..., 0]], -1)
    )
    exact_j_rho /= np.exp(-phi).sum() * grid.cell_volume
    err = np.abs(ss.current - exact_j_rho).max()
    assert err < 5e-3 * max(np.abs(exact_j_rho).max(), 1.0)


# ------------------------------------------------------------------------------ Theorem 22
def test_state_dependent_minimum_shift_is_linear_in_temperature():
    shifts = []
    for beta in (1.0, 2.0, 4.0):
        ex = examples.state_dependent(beta=beta)
        grid, _, ss = _solve(ex, (96, 96))
        (cp,) = ss.critical_points_potential
        known = ex.critical_points[0].location
        assert cp.kind is CriticalKind.MIN
        assert np.linalg.norm(cp.location - known) < 0.01
        assert ss.detailed_balance
        phi = np.asarray(ex.potential(grid.points))
        resolved = ss.density > 1e-3 * ss.density.max()
        diff = (ss.potential - phi)[resolved]
        assert np.abs(diff - diff.mean()).max() < 0.02
        shifts.append(ss.critical_distances[0] * beta)
    # distance × β is constant: the shift is linear in β⁻¹.
    np.testing.assert_allclose(shifts, shifts[0], rtol=0.08)
    assert shifts[0] > 0.1


# ------------------------------------------------------------------- evolve, free energy
@pytest.mark.parametrize("method", ["backward_euler", "expm"])
def test_free_energy_never_increases_and_mass_is_conserved(method):
    ex = examples.double_well(1.5)
    grid = Grid(ex.bounds, (48, 48))
    fp = FokkerPlanck(grid, drift=ex.drift, diffusion=ex.diffusion, max_peclet=None)
    rho0 = gaussian_density(grid, [1.2, 1.0], 0.05 * np.eye(2))
    times = np.linspace(0, 3.0, 31)
    ev = fp.evolve(rho0, times, method=method, dt=0.05)
    np.testing.assert_allclose(ev.mass, 1.0, atol=1e-12)
    assert np.all(np.diff(ev.free_energy) <= 1e-12 * ev.free_energy[0])
    assert ev.free_energy[-1] < 1e-2 * ev.free_energy[0]
    assert ev.density.min() >= 0.0
    assert ev.method is EvolveMethod(method)


def test_free_energy_is_gaussian_kl_over_beta():
    ex = examples.quadratic(beta=2.0)
    grid, fp, ss = _solve(ex, (96, 96))
    dec = linear_decomposition(np.array([[4.0, 0.0], [0.0, 1.0]]), ex.diffusion)
    cov_ss = dec.S / ex.beta
    mean, cov0 = np.array([0.4, -0.3]), np.array([[0.1, 0.02], [0.02, 0.2]])
    rho = gaussian_density(grid, mean, cov0)
    inv = np.linalg.inv(cov_ss)
    kl = 0.5 * (
        np.trace(inv @ cov0)
        + mean @ inv @ mean
        - 2
        + np.log(np.linalg.det(cov_ss) / np.linalg.det(cov0))
    )
    fe = fp.free_energy(rho)
    assert fe.value == pytest.approx(kl / ex.beta, rel=1.5e-2)
    assert fe.value == pytest.approx(fe.energy - fe.entropy / ex.beta, rel=1e-12)
    assert fe.kl == pytest.approx(kl * 1.0, rel=1.5e-2)
    assert fp.free_energy(ss.density).value == pytest.approx(0.0, abs=1e-12)
    # The error is the steady state's O(h²): it falls ~4× from 64² to 128².
    errs = []
    for n in (64, 128):
        g, f, _ = _solve(ex, (n, n))
        errs.append(abs(f.free_energy(gaussian_density(g, mean, cov0)).kl / kl - 1))
    assert 0.15 < errs[1] / errs[0] < 0.35, errs


def test_evolve_matches_ou_transient_moments():
    # Gaussian stays Gaussian: m(t) = e^{−Ft} m0, Σ(t) = e^{−Ft}(Σ0 − β⁻¹S)e^{−Fᵀt} + β⁻¹S.
    ex = examples.quadratic()
    grid = Grid(ex.bounds, (128, 128))
    fp = FokkerPlanck(grid, loss=ex.loss, diffusion=ex.diffusion)
    F = np.array([[4.0, 0.0], [0.0, 1.0]])
    s = linear_decomposition(F, ex.diffusion).S / ex.beta
    m0, c0 = np.array([1.5, -1.0]), 0.2 * np.eye(2)
    t = 0.3
    ev = fp.evolve(gaussian_density(grid, m0, c0), [0.0, t], method="expm")
    rho = ev.density[-1]
    x = grid.points
    w = rho.ravel() * grid.cell_volume
    x = x.reshape(-1, 2)
    mean = w @ x
    cov = np.einsum("n,ni,nj->ij", w, x - mean, x - mean)
    e = scipy.linalg.expm(-F * t)
    np.testing.assert_allclose(mean, e @ m0, atol=4e-3)
    np.testing.assert_allclose(cov, e @ (c0 - s) @ e.T + s, atol=4e-3)


def test_backward_euler_is_first_order_in_time():
    ex = examples.quadratic()
    grid = Grid(ex.bounds, (32, 32))
    fp = FokkerPlanck(grid, loss=ex.loss, diffusion=ex.diffusion)
    rho0 = gaussian_density(grid, [1.0, 1.0], 0.5 * np.eye(2))
    exact = fp.evolve(rho0, [0.5], method="expm").density[-1]
    errs = []
    for dt in (0.05, 0.025, 0.0125):
        ev = fp.evolve(rho0, [0.5], dt=dt)
        assert ev.order == 1.0 and ev.n_steps == round(0.5 / dt)
        errs.append(np.abs(ev.density[-1] - exact).max())
    rates = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all(np.abs(rates - 1.0) < 0.2), rates


# ------------------------------------------------------------------------------ bad input
def _grid2(n=16, half=3.0):
    return Grid([(-half, half), (-half, half)], (n, n))


def _ou(x):
    return -x


def test_diffusion_not_symmetric_names_the_point():
    def d(x):
        m = torch.eye(2, dtype=x.dtype).expand(*x.shape[:-1], 2, 2).clone()
        m[..., 0, 1] = torch.where(x[..., 0] > 1.0, 0.5, 0.0)
        return m

    with pytest.raises(
        ValueError, match=r"must be symmetric at every grid point, but at x = \(1\.31\d*, -2\.81"
    ):
        FokkerPlanck(_grid2(), drift=_ou, diffusion=d)


def test_diffusion_not_psd_names_the_point():
    def d(x):
        m = torch.eye(2, dtype=x.dtype).expand(*x.shape[:-1], 2, 2).clone()
        m[..., 1, 1] = 1.0 - x[..., 1]  # negative for x2 > 1
        return m

    with pytest.raises(
        ValueError, match=r"positive semi-definite.*x = \(.*2\.8.*smallest eigenvalue"
    ):
        FokkerPlanck(_grid2(), drift=_ou, diffusion=d)
    with pytest.raises(ValueError, match="positive semi-definite"):
        FokkerPlanck(_grid2(), drift=_ou, diffusion=np.array([[1.0, 2.0], [2.0, 1.0]]))


def test_grid_too_coarse_for_drift_says_which_size():
    with pytest.raises(
        ValueError, match=r"too coarse for the drift.*Péclet number .* Use at least"
    ):
        FokkerPlanck(_grid2(8), drift=lambda x: -30.0 * x, diffusion=np.eye(2))
    with pytest.raises(ValueError, match="D_00 = 0 with drift along axis 0"):
        FokkerPlanck(_grid2(), drift=_ou, diffusion=np.diag([0.0, 1.0]))
    fp = FokkerPlanck(_grid2(8), drift=lambda x: -30.0 * x, diffusion=np.eye(2), max_peclet=None)
    assert fp.peclet > 10


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"drift": lambda x: torch.where(x > 1, torch.nan, -x)},
            "'drift' callable returned non-finite",
        ),
        (
            {"loss": lambda x: torch.sqrt(x[..., 0]) + x[..., 1] ** 2},
            "'loss' callable returned non-finite",
        ),
        ({"loss": lambda x: x.sum(-1), "loss_grad": lambda x: x / 0.0}, "'loss_grad' callable"),
    ],
)
def test_nan_from_user_callables_names_callable_and_point(kwargs, match):
    with pytest.raises(ValueError, match=match + r".* at x = \("):
        FokkerPlanck(_grid2(), diffusion=np.eye(2), **kwargs)


def test_nan_from_diffusion_callable():
    def d(x):
        return torch.eye(2, dtype=x.dtype) * torch.log(x[..., :1, None] + 10)

    with pytest.raises(
        ValueError, match=r"'diffusion' callable returned non-finite values .* x = \("
    ):
        FokkerPlanck(Grid([(-12, 0), (0, 1)], (12, 4)), drift=_ou, diffusion=d)


def test_density_leaking_through_boundary():
    # OU with unit variance on [−1.5, 1.5]²: the walls cut the Gaussian.
    fp = FokkerPlanck(_grid2(16, 1.5), drift=_ou, diffusion=np.eye(2))
    with pytest.raises(
        ValueError, match=r"steady-state density leaks through the reflecting boundary"
    ):
        fp.steady_state()
    fp = FokkerPlanck(_grid2(16, 4.0), drift=_ou, diffusion=np.eye(2))
    rho0 = gaussian_density(fp.grid, [3.5, 0.0], 0.1 * np.eye(2))
    with pytest.raises(ValueError, match=r"density at t = 0 leaks"):
        fp.evolve(rho0, [0.0, 0.1])


def test_anisotropic_cells_break_m_matrix_and_message_gives_aspect_ratio():
    grid = Grid([(-3, 3), (-3, 3)], (12, 48))  # h_1/h_0 = 1/4
    dmat = np.array([[1.0, 0.8], [0.8, 1.0]])
    with pytest.raises(
        ValueError, match=r"too anisotropic.*aspect ratio h_1/h_0 in \[0\.8, 1\.25\]"
    ):
        FokkerPlanck(grid, drift=_ou, diffusion=dmat)
    fp = FokkerPlanck(grid, drift=_ou, diffusion=dmat, check_positivity=False)
    assert not fp.is_m_matrix
    # With square cells the same D is fine (without drift, exactly an M-matrix).
    assert FokkerPlanck(_grid2(24), drift=lambda x: 0 * x, diffusion=dmat).is_m_matrix


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"drift": _ou, "loss": lambda x: x.sum(-1)}, ValueError, "either 'drift' or 'loss'"),
        ({"drift": 3.0}, TypeError, "'drift' parameter of FokkerPlanck must be a callable"),
        (
            {"drift": _ou, "diffusion": None},
            ValueError,
            "'diffusion' parameter of FokkerPlanck is required",
        ),
        ({"drift": _ou, "diffusion": np.eye(3)}, ValueError, r"must be a \(2, 2\) matrix"),
        ({"drift": lambda x: x[..., 0]}, ValueError, r"must return shape \(\d+, 2\) for points"),
        ({"loss": lambda x: x.detach().sum(-1).numpy()}, ValueError, "must return a torch tensor"),
        ({"drift": _ou, "beta": 0.0}, ValueError, "'beta' parameter of FokkerPlanck"),
        (
            {"drift": _ou, "boundary": "absorbing"},
            ValueError,
            "must be one of 'reflecting', 'periodic'",
        ),
        ({"drift": _ou, "max_peclet": -1}, ValueError, "'max_peclet' parameter"),
        ({"drift": _ou, "leak_tol": -1}, ValueError, "'leak_tol' parameter"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    kwargs.setdefault("diffusion", np.eye(2))
    with pytest.raises(exc, match=match):
        FokkerPlanck(_grid2(), **kwargs)


def test_grid_must_be_a_grid():
    with pytest.raises(TypeError, match="must be a sgdscope Grid"):
        FokkerPlanck([(-1, 1)], drift=_ou, diffusion=np.eye(1))


def test_bad_densities_times_and_options():
    fp = FokkerPlanck(_grid2(16, 4.0), drift=_ou, diffusion=np.eye(2))
    good = gaussian_density(fp.grid, [0, 0], np.eye(2))
    with pytest.raises(
        ValueError,
        match=r"'rho0' parameter of FokkerPlanck.evolve must have the grid's shape \(16, 16\)",
    ):
        fp.evolve(good[:4], [1.0])
    with pytest.raises(ValueError, match="must be finite and non-negative"):
        fp.evolve(-good, [1.0])
    with pytest.raises(ValueError, match="must integrate to 1"):
        fp.free_energy(2 * good)
    with pytest.raises(
        ValueError, match=r"'times' parameter of FokkerPlanck.evolve must be a non-empty"
    ):
        fp.evolve(good, [1.0, 0.5])
    with pytest.raises(
        ValueError, match=r"'method' parameter of FokkerPlanck.evolve must be one of"
    ):
        fp.evolve(good, [1.0], method="rk4")
    with pytest.raises(ValueError, match="'dt' parameter"):
        fp.evolve(good, [1.0], dt=0.0)
    with pytest.raises(ValueError, match=r"'tol' parameter of FokkerPlanck.steady_state"):
        fp.steady_state(tol=0)


def test_user_exception_passes_through_unchanged():
    class Boom(RuntimeError):
        pass

    def drift(x):
        raise Boom("user code failed")

    with pytest.raises(Boom, match="user code failed"):
        FokkerPlanck(_grid2(), drift=drift, diffusion=np.eye(2))


def test_summary_is_json_friendly():
    import json

    ex = examples.double_well(0.5)
    _, _, ss = _solve(ex, (48, 48))
    text = json.dumps(ss.summary())
    assert '"saddle"' in text and '"detailed_balance": false' in text


def test_three_dimensional_ou_with_full_diffusion():
    F = np.diag([2.0, 1.0, 1.5])
    D = np.array([[1.0, 0.3, 0.1], [0.3, 0.8, -0.2], [0.1, -0.2, 0.9]])
    dec = linear_decomposition(F, D)
    half = 5.0 * np.sqrt(dec.S.diagonal().max())
    grid = Grid([(-half, half)] * 3, (24, 24, 24))
    fp = FokkerPlanck(grid, drift=lambda x: -(x @ torch.as_tensor(F).T), diffusion=D)
    ss = fp.steady_state()
    exact = _gaussian(grid, dec.S)
    assert np.abs(ss.density - exact).max() / exact.max() < 0.02
    # Second moments against the Lyapunov covariance.
    x = grid.points.reshape(-1, 3)
    cov = np.einsum("n,ni,nj->ij", ss.density.ravel() * grid.cell_volume, x, x)
    np.testing.assert_allclose(cov, dec.S, atol=0.01)
    (cp,) = ss.critical_points_potential
    assert cp.kind is CriticalKind.MIN and np.abs(cp.location).max() < 0.02


def test_gradient_drift_converges_at_fourth_order():
    # Simpson's edge mean in the SG flux: for b = −∇U and constant D the scheme's equilibrium
    # ratios are exact to O(h⁵) per segment, so the density error falls like h⁴ (documented).
    def loss(x):
        return 0.5 * (x**2).sum(-1) + 0.8 * torch.cos(2 * x[..., 0]) * torch.cos(2 * x[..., 1])

    ns = np.array([24, 32, 48])
    errors = []
    for n in ns:
        grid = Grid([(-4.5, 4.5), (-4.5, 4.5)], (n, n))
        ss = FokkerPlanck(grid, loss=loss, diffusion=np.eye(2)).steady_state()
        u = loss(torch.as_tensor(grid.points)).numpy()
        exact = np.exp(-(u - u.min()))
        exact /= exact.sum() * grid.cell_volume
        errors.append(np.abs(ss.density - exact).max() / exact.max())
    slope = np.polyfit(np.log(9.0 / ns), np.log(errors), 1)[0]
    assert 3.5 <= slope <= 5.0, (slope, errors)


# ------------------------------------------------------------- iterative solvers (issue 15)
def _rotating_ou_3d(n):
    U = np.array([[1.0, 0.3, 0.1], [0.3, 1.5, 0.2], [0.1, 0.2, 2.0]])
    D = np.array([[1.0, 0.2, 0.0], [0.2, 0.8, 0.1], [0.0, 0.1, 0.6]])
    Q = np.array([[0, 0.8, 0.3], [-0.8, 0, 0.5], [-0.3, -0.5, 0]])
    F = torch.as_tensor((D + Q) @ U)
    half = 5.5 * np.sqrt(np.diag(np.linalg.inv(U)))
    grid = Grid([(-h, h) for h in half], (n, n, n))
    fp = FokkerPlanck(grid, drift=lambda x: -(x @ F.T), diffusion=D, max_peclet=None)
    return grid, fp, U


@pytest.mark.parametrize("solver", ["amg", "ilu_gmres"])
def test_iterative_steady_state_equals_lu(solver):
    """A rotating (Q ≠ 0) 3-D OU with a full D: the iterative solvers reach the LU solution."""
    pytest.importorskip("pyamg") if solver == "amg" else None
    grid, fp, U = _rotating_ou_3d(14)
    lu = fp.steady_state(solver="lu")
    it = fp.steady_state(solver=solver, rtol=1e-11)
    assert (lu.solver, it.solver) == ("lu", solver)
    assert it.solver_residual <= 1e-10 and it.residual < lu.residual + 1e-9
    np.testing.assert_allclose(it.density, lu.density, rtol=0, atol=1e-8 * lu.density.max())
    # and both approach the closed form N(0, U⁻¹) (S = U⁻¹ by Lemma 20)
    exact = _gaussian(grid, np.linalg.inv(U))
    exact /= exact.sum() * grid.cell_volume
    assert np.abs(it.density - exact).sum() * grid.cell_volume < 0.05


def test_auto_solver_by_size_and_fallback_without_pyamg(monkeypatch):
    from sgdscope.dynamics import _fp_solve

    S = _fp_solve.Solver
    assert _fp_solve.resolve(S.AUTO, 10**6, 1) is S.LU
    assert _fp_solve.resolve(S.AUTO, 256**2, 2) is S.LU
    assert _fp_solve.resolve(S.AUTO, 20**3, 3) is S.LU
    monkeypatch.setattr(_fp_solve, "HAVE_PYAMG", True)
    assert _fp_solve.resolve(S.AUTO, 1024**2, 2) is S.LU
    assert _fp_solve.resolve(S.AUTO, 2048**2, 2) is S.AMG
    assert _fp_solve.resolve(S.AUTO, 32**3, 3) is S.AMG
    monkeypatch.setattr(_fp_solve, "HAVE_PYAMG", False)
    assert _fp_solve.resolve(S.AUTO, 32**3, 3) is S.ILU_GMRES
    with pytest.raises(ImportError, match=r"solver='amg' needs the optional dependency pyamg"):
        _fp_solve.resolve(S.AMG, 10, 1)
    # a small grid with "auto" still takes the LU, pyamg or not
    grid = Grid([(-4, 4)], (50,))
    fp = FokkerPlanck(grid, loss=lambda x: 0.5 * (x**2).sum(-1), diffusion=np.eye(1))
    assert fp.steady_state().solver == "lu"


@pytest.mark.parametrize("solver", ["amg", "ilu_gmres"])
def test_iterative_evolve_equals_lu(solver):
    pytest.importorskip("pyamg") if solver == "amg" else None
    ex = examples.double_well(1.5)
    grid = Grid(ex.bounds, (40, 40))
    fp = FokkerPlanck(grid, drift=ex.drift, diffusion=ex.diffusion, max_peclet=None)
    rho0 = gaussian_density(grid, [1.2, 1.0], 0.05 * np.eye(2))
    a = fp.evolve(rho0, [0.0, 0.5, 1.0], dt=0.05, solver="lu")
    b = fp.evolve(rho0, [0.0, 0.5, 1.0], dt=0.05, solver=solver, rtol=1e-12)
    assert (a.solver, b.solver) == ("lu", solver) and b.residual <= 1e-11
    np.testing.assert_allclose(b.density, a.density, rtol=0, atol=1e-9 * a.density.max())
    np.testing.assert_allclose(b.mass, 1.0, atol=1e-9)


def test_iterative_solver_that_cannot_converge_is_reported(monkeypatch):
    from sgdscope.dynamics import _fp_solve

    grid = Grid([(-4, 4)], (60,))
    fp = FokkerPlanck(grid, loss=lambda x: 0.5 * (x**2).sum(-1), diffusion=np.eye(1))
    monkeypatch.setattr(_fp_solve.Prepared, "solve", lambda self, rhs, x0=None: (rhs, 0.5))
    with pytest.raises(
        RuntimeError, match=r"ilu_gmres solver .* relative residual 0.5 .* solver='lu'"
    ):
        fp.steady_state(solver="ilu_gmres")


# ------------------------------------------- size check before work, degenerate grids
def test_grid_too_large_is_refused_before_work(monkeypatch):
    from sgdscope.dynamics import fokker_planck as fpm

    monkeypatch.setattr(fpm, "_available_bytes", lambda: 2**30)
    calls = []

    def loss(x):
        calls.append(1)
        return 0.5 * (x**2).sum(-1)

    grid = Grid([(-3, 3), (-3, 3)], (4000, 4000))
    with pytest.raises(
        MemoryError, match=r"16,000,000 cells\) would need about .* GiB.* e\.g\. shape \("
    ):
        FokkerPlanck(grid, loss=loss, diffusion=np.eye(2))
    assert not calls  # refused before the callables ran


def test_lu_too_large_is_refused_with_advice(monkeypatch):
    from sgdscope.dynamics import fokker_planck as fpm

    grid = Grid([(-4, 4)] * 3, (12, 12, 12))
    fp = FokkerPlanck(grid, loss=lambda x: 0.5 * (x**2).sum(-1), diffusion=np.eye(3))
    monkeypatch.setattr(fpm, "_available_bytes", lambda: 10**6)
    with pytest.raises(MemoryError, match=r"sparse LU .* Pass solver='amg'"):
        fp.steady_state(solver="lu")


def test_bad_solver_options():
    grid = Grid([(-4, 4)], (30,))
    fp = FokkerPlanck(grid, loss=lambda x: 0.5 * (x**2).sum(-1), diffusion=np.eye(1))
    with pytest.raises(ValueError, match=r"'solver' parameter of FokkerPlanck\.steady_state"):
        fp.steady_state(solver="cholesky")
    with pytest.raises(ValueError, match=r"'rtol' parameter of FokkerPlanck.evolve"):
        fp.evolve(np.full(30, 1 / 8.0), [0.0, 1.0], rtol=0.5)
