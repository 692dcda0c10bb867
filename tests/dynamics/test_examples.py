"""The examples' known answers, checked by torch autograd, independently of any solver."""

import numpy as np
import pytest
import torch

from sgdscope.dynamics import examples
from sgdscope.dynamics.linear import linear_decomposition


def _points(ex, n=200, seed=0):
    gen = torch.Generator().manual_seed(seed)
    lo = torch.tensor([b[0] for b in ex.bounds], dtype=torch.float64)
    hi = torch.tensor([b[1] for b in ex.bounds], dtype=torch.float64)
    # Stay in the inner half of the box, where the fields are tame.
    u = torch.rand(n, ex.dim, generator=gen, dtype=torch.float64)
    return (0.5 * (lo + hi) + 0.5 * (hi - lo) * (u - 0.5)).requires_grad_(True)


def _div(field, x):
    """Σ_i ∂ field_i / ∂x_i by autograd, per point (field: (n, dim) built from x)."""
    return sum(
        torch.autograd.grad(field[:, i].sum(), x, create_graph=True)[0][:, i]
        for i in range(x.shape[1])
    )


def _diffusion(ex, x):
    d = ex.diffusion(x) if callable(ex.diffusion) else torch.as_tensor(ex.diffusion)
    return d.expand(x.shape[0], ex.dim, ex.dim)


def _stationary_residual(ex, x):
    """∇·J for ρ = e^{−βΦ}, J = bρ − β⁻¹ ∇·(Dρ): zero iff the known Φ is stationary (eq. 4)."""
    rho = torch.exp(-ex.beta * ex.potential(x))
    dr = _diffusion(ex, x) * rho[:, None, None]
    div_dr = torch.stack([_div(dr[:, i, :], x) for i in range(ex.dim)], -1)
    flux = ex.drift(x) * rho[:, None] - div_dr / ex.beta
    scale = (ex.drift(x) * rho[:, None]).abs().max()
    return _div(flux, x), float(scale.detach())


CASES = {
    "double_well-0": lambda: examples.double_well(0.0),
    "double_well-0.5": lambda: examples.double_well(0.5),
    "double_well-1.5": lambda: examples.double_well(1.5),
    "double_well-1.5-beta2": lambda: examples.double_well(1.5, beta=2.0),
    "quadratic": lambda: examples.quadratic(),
    "quadratic-beta3": lambda: examples.quadratic(beta=3.0),
    "accel-0": lambda: examples.accel(0.0),
    "state_dependent": lambda: examples.state_dependent(),
    "state_dependent-beta2": lambda: examples.state_dependent(beta=2.0, theta=0.3),
}


@pytest.mark.parametrize("make", CASES.values(), ids=CASES.keys())
def test_known_potential_is_stationary(make):
    ex = make()
    x = _points(ex)
    res, scale = _stationary_residual(ex, x)
    assert res.abs().max() < 1e-10 * max(scale, 1.0)


@pytest.mark.parametrize("make", CASES.values(), ids=CASES.keys())
def test_known_force_and_critical_points(make):
    ex = make()
    x = _points(ex)
    # eq. 8: j = b + D∇Φ − β⁻¹∇·D.
    (grad_phi,) = torch.autograd.grad(ex.potential(x).sum(), x, create_graph=True)
    d = _diffusion(ex, x)
    if callable(ex.diffusion):
        div_d = torch.stack([_div(d[:, i, :], x) for i in range(ex.dim)], -1)
    else:
        div_d = torch.zeros_like(x)
    j = ex.drift(x) + torch.einsum("nij,nj->ni", d, grad_phi) - div_d / ex.beta
    if ex.force is not None:
        torch.testing.assert_close(j, ex.force(x).expand_as(j), atol=1e-10, rtol=1e-10)
    for cp in ex.critical_points:
        p = torch.as_tensor(cp.location[None], dtype=torch.float64).requires_grad_(True)
        (g,) = torch.autograd.grad(ex.potential(p).sum(), p)
        assert g.abs().max() < 1e-12
    if ex.loss is not None:
        (grad_f,) = torch.autograd.grad(ex.loss(x).sum(), x)
        torch.testing.assert_close(ex.drift(x), -grad_f)
    for cp in ex.loss_critical_points:
        b = ex.drift(torch.as_tensor(cp.location[None], dtype=torch.float64))
        assert b.abs().max() < 1e-12


def test_double_well_violates_assumption4_with_the_closed_form_divergence():
    lam = 0.5
    ex = examples.double_well(lam)
    x = _points(ex)
    div_j = _div(ex.force(x), x)
    x1, x2 = x[:, 0], x[:, 1]
    r2 = x1**2 + x2**2
    expected = lam * torch.exp(ex.potential(x) - r2**2 / 4) * x1 * x2 * (2 - x1**2)
    torch.testing.assert_close(div_j, expected)
    assert div_j.abs().max() > 0.1
    assert ex.satisfies_assumption4 is False
    assert examples.double_well(0.0).satisfies_assumption4 is True


def test_quadratic_matches_linear_decomposition():
    F = np.array([[3.0, 0.5], [0.5, 1.0]])
    D = np.array([[1.0, -0.3], [-0.3, 0.6]])
    ex = examples.quadratic(F, D, beta=2.0)
    dec = linear_decomposition(F, D)
    x = np.random.default_rng(0).normal(size=(5, 2))
    np.testing.assert_allclose(ex.potential(x), dec.potential(x))
    np.testing.assert_allclose(ex.force(x), dec.force(x))
    half = ex.bounds[0][1]
    assert half == pytest.approx(5.5 * np.sqrt(dec.S.diagonal().max() / 2.0))


def test_state_dependent_shift_is_linear_in_temperature():
    a = (1.0, 1.5)
    for beta in (0.5, 1.0, 4.0):
        ex = examples.state_dependent(beta=beta, a=a, kappa=0.1, theta=0.0)
        np.testing.assert_allclose(
            ex.critical_points[0].location, [-0.1 / (beta * a[0]), -0.1 / (beta * a[1])]
        )
    # D stays positive definite on the box.
    ex = examples.state_dependent()
    lo, hi = ex.bounds[0]
    corners = torch.tensor([[lo, lo], [lo, hi], [hi, lo], [hi, hi]], dtype=torch.float64)
    assert torch.linalg.eigvalsh(ex.diffusion(corners)).min() > 0


def test_callables_accept_numpy_and_torch_alike():
    for make in CASES.values():
        ex = make()
        x = np.random.default_rng(1).uniform(-1, 1, size=(4, 3, ex.dim))
        t = torch.as_tensor(x)
        np.testing.assert_allclose(ex.drift(x), ex.drift(t).numpy())
        np.testing.assert_allclose(ex.potential(x), ex.potential(t).numpy())
        assert ex.drift(t).shape == (4, 3, ex.dim)
        if callable(ex.diffusion):
            assert ex.diffusion(t).shape == (4, 3, ex.dim, ex.dim)
    ex = examples.accel(10.0)
    assert ex.potential is None and ex.loss is None
    x = torch.zeros(2, 2, dtype=torch.float32)
    assert ex.drift(x).dtype == torch.float32


def test_accel_rotation_is_orthogonal_to_grad_u():
    ex0, ex = examples.accel(0.0), examples.accel(10.0)
    x = _points(ex0)
    (grad_u,) = torch.autograd.grad(ex0.potential(x).sum(), x)
    rot = ex.drift(x) - ex0.drift(x)
    assert (rot * grad_u).sum(-1).abs().max() < 1e-10 * rot.abs().max()
    assert rot.abs().max() > 1.0


def test_get_and_bad_parameters():
    assert examples.get("double_well", lam=0.5).name == "double_well"
    assert set(examples.EXAMPLES) == {"double_well", "quadratic", "accel", "state_dependent"}
    with pytest.raises(ValueError, match=r"'name' parameter of examples.get must be one of"):
        examples.get("mexican_hat")
    with pytest.raises(ValueError, match=r"'lam' parameter of examples.double_well"):
        examples.double_well(float("nan"))
    with pytest.raises(ValueError, match=r"must make U convex"):
        examples.accel(alpha=1.0, b=1.0)
    with pytest.raises(
        ValueError, match=r"'F' parameter of examples.quadratic must be a symmetric"
    ):
        examples.quadratic(F=[[1.0, 1.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match=r"'a' parameter of examples.state_dependent must hold 2"):
        examples.state_dependent(a=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match=r"'kappa' parameter of examples.state_dependent"):
        examples.state_dependent(kappa=0.0)
