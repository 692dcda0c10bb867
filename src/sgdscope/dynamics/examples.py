r"""The paper's toy problems, each with its known answer (Chaudhari & Soatto 2018, §V).

Every factory returns an :class:`Example` with the same fields: ``drift``,
``diffusion``, ``beta``, ``bounds``, ``dim``, the known ``potential`` Φ (when known) and ``loss``
(when the drift is −∇f). Callables accept points of shape (..., dim) as torch tensors (any
device and float dtype) or numpy arrays and return the same kind, so one example drives
:class:`~sgdscope.FokkerPlanck`, ``simulate_sde`` and plain numpy plotting alike. ``bounds`` are
chosen so that β(Φ − min Φ) ≳ 8 on the walls, i.e. the box holds all but a negligible part of
the stationary mass. Use :func:`get` to build one by name.

>>> ex = double_well(0.5)
>>> ex.dim, ex.beta, ex.satisfies_assumption4
(2, 1.0, False)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._validation import check_option, check_real
from .linear import linear_decomposition

__all__ = [
    "EXAMPLES",
    "Example",
    "KnownCriticalPoint",
    "accel",
    "double_well",
    "get",
    "quadratic",
    "state_dependent",
]

Array = Any  # torch.Tensor or np.ndarray of points (..., dim)


@dataclass(frozen=True, eq=False)
class KnownCriticalPoint:
    """A critical point known in closed form.

    Attributes:
        location: Coordinates, shape (dim,).
        kind: ``"min"``, ``"max"`` or ``"saddle"``.
    """

    location: np.ndarray
    kind: str


@dataclass(frozen=True, eq=False)
class Example:
    """A toy problem dx = b dt + √(2β⁻¹D) dW with its known answers.

    Attributes:
        name: Registry name (see :data:`EXAMPLES`).
        dim: Dimension.
        bounds: Box holding the stationary mass, one (low, high) pair per dimension.
        beta: Inverse temperature β.
        drift: b(x): (..., dim) → (..., dim).
        diffusion: D(x) itself: a callable (..., dim) → (..., dim, dim) or a (dim, dim) array.
        potential: Known Φ(x) with ρ_ss ∝ e^{−βΦ}, (..., dim) → (...), up to a constant; None
            when not known in closed form.
        loss: f(x) when b = −∇f, else None.
        force: Known j(x) (eq. 8), (..., dim) → (..., dim), or None.
        critical_points: Known critical points of Φ.
        loss_critical_points: Known critical points of f (zeros of the drift).
        satisfies_assumption4: Whether ∇·j = 0 (eq. 9), when known.
        description: One paragraph on where it comes from and what it shows.
    """

    name: str
    dim: int
    bounds: tuple[tuple[float, float], ...]
    beta: float
    drift: Callable[[Array], Array]
    diffusion: Callable[[Array], Array] | np.ndarray
    potential: Callable[[Array], Array] | None = None
    loss: Callable[[Array], Array] | None = None
    force: Callable[[Array], Array] | None = None
    critical_points: tuple[KnownCriticalPoint, ...] = ()
    loss_critical_points: tuple[KnownCriticalPoint, ...] = ()
    satisfies_assumption4: bool | None = None
    description: str = ""


def _xp(x: Array):
    return torch if isinstance(x, torch.Tensor) else np


def _stack(x: Array, parts: list, axis: int = -1):
    return torch.stack(parts, dim=axis) if isinstance(x, torch.Tensor) else np.stack(parts, axis)


def _const(x: Array, m: np.ndarray):
    """Broadcast a constant matrix to the batch of ``x`` in its library, dtype and device."""
    if isinstance(x, torch.Tensor):
        return torch.as_tensor(m, dtype=x.dtype, device=x.device)
    return np.asarray(m, dtype=float)


def _cp(loc, kind: str) -> KnownCriticalPoint:
    return KnownCriticalPoint(location=np.asarray(loc, dtype=float), kind=kind)


# ------------------------------------------------------------------------------- double well
def double_well(lam: float = 0.0, beta: float = 1.0) -> Example:
    r"""Example 19 / Fig. 4: a double well whose potential is the same for every λ.

    With :math:`\Phi(x) = \tfrac14(x_1^2-1)^2 + \tfrac12 x_2^2` and D = I,

    .. math:: b = -\nabla\Phi + j,\qquad j = \lambda\,e^{\beta\Phi - r^4/4}\,(-x_2,\ x_1),

    (the authors' ``double_well.py`` at β = 1; the factor e^{βΦ} generalises it to any β). Since
    :math:`j\rho^{ss} = \lambda e^{-r^4/4}(-x_2, x_1)/Z` is divergence-free, the stationary
    density is :math:`e^{-\beta\Phi}/Z` **for every λ**, while the zeros of the drift (the
    "critical points of f") move: at (±1, 0), ∇Φ = 0 but j ≠ 0. The linearised drift at the
    origin has trace 0 and determinant λ²e^{1/2} − 1 (β = 1), so for λ > e^{−1/4} ≈ 0.78 the
    origin is no longer a saddle of the drift and trajectories circulate around it (λ = 1.5 in
    Fig. 4c), yet Φ still has its saddle there.

    **It does not satisfy Assumption 4** (eq. 9; by direct computation from Example 19): it has
    ∇·(jρ^{ss}) = 0 but :math:`\nabla\cdot j = \beta\,j\cdot\nabla\Phi =
    \lambda\beta e^{\beta\Phi - r^4/4}x_1x_2(2 - x_1^2)\ne0` for λ ≠ 0, so the paper's
    Theorem 5 argument (which uses ∇·j = 0) does not cover it, although F still decreases.

    Args:
        lam: Strength λ of the rotation; the paper shows λ ∈ {0, 0.5, 1.5}.
        beta: Inverse temperature (the paper uses 1).

    Returns:
        The :class:`Example`; ``loss`` is Φ when λ = 0 and None otherwise.
    """
    lam = check_real("lam", lam, where="examples.double_well")
    beta = check_real("beta", beta, where="examples.double_well", low=0.0, low_open=True)

    def potential(x):
        return 0.25 * (x[..., 0] ** 2 - 1.0) ** 2 + 0.5 * x[..., 1] ** 2

    def force(x):
        xp = _xp(x)
        r2 = x[..., 0] ** 2 + x[..., 1] ** 2
        s = lam * xp.exp(beta * potential(x) - 0.25 * r2**2)
        return _stack(x, [-s * x[..., 1], s * x[..., 0]])

    def drift(x):
        grad = _stack(x, [x[..., 0] ** 3 - x[..., 0], x[..., 1]])
        return -grad + force(x)

    lx = math.sqrt(1.0 + math.sqrt(36.0 / beta))
    ly = math.sqrt(18.0 / beta)
    cps = (_cp((-1, 0), "min"), _cp((0, 0), "saddle"), _cp((1, 0), "min"))
    return Example(
        name="double_well",
        dim=2,
        bounds=((-lx, lx), (-ly, ly)),
        beta=beta,
        drift=drift,
        diffusion=np.eye(2),
        potential=potential,
        loss=potential if lam == 0 else None,
        force=force,
        critical_points=cps,
        loss_critical_points=cps if lam == 0 else (),
        satisfies_assumption4=lam == 0,
        description=(
            f"Example 19 (Fig. 4) with λ = {lam:g}: Φ = (x1²−1)²/4 + x2²/2 for every λ, the "
            "drift rotates by j = λ e^{βΦ−r⁴/4}(−x2, x1); Assumption 4 fails for λ ≠ 0."
        ),
    )


# ---------------------------------------------------------------------------------- quadratic
_F_DEFAULT = np.array([[4.0, 0.0], [0.0, 1.0]])
_D_DEFAULT = np.array([[1.0, 0.6], [0.6, 1.0]])


def quadratic(F: Any = None, D: Any = None, beta: float = 1.0) -> Example:
    r"""A quadratic loss with a constant diffusion that does not commute with its Hessian.

    :math:`f(x) = \tfrac12 x^\top F x`, b = −Fx, constant D: the Ornstein–Uhlenbeck process of
    Lemma 20 (eq. 15). With FS + SFᵀ = 2D, U = S⁻¹ and Q = FS − D (from
    :func:`~sgdscope.linear_decomposition`), the stationary density is Gaussian with covariance
    β⁻¹S, Φ = ½xᵀUx (≠ f unless FD = DF, Lemma 6), and the force is j = −QUx, which circulates
    on the level sets of Φ (∇·j = −tr(QU) = 0 and j·∇Φ = 0: Assumption 4 holds).
    Defaults: F = diag(4, 1), D = [[1, 0.6], [0.6, 1]] (‖QU‖/‖F‖ ≈ 0.49).

    Args:
        F: (dim, dim) symmetric positive-definite Hessian.
        D: (dim, dim) symmetric positive-definite diffusion, not commuting with F.
        beta: Inverse temperature.

    Returns:
        The :class:`Example`; bounds are ±5.5 stationary standard deviations (square box).

    Raises:
        ValueError: If F or D is not a symmetric positive-definite matrix of matching size.
    """
    F = _F_DEFAULT if F is None else np.asarray(F, dtype=float)
    D = _D_DEFAULT if D is None else np.asarray(D, dtype=float)
    beta = check_real("beta", beta, where="examples.quadratic", low=0.0, low_open=True)
    if F.ndim != 2 or F.shape[0] != F.shape[1] or not np.allclose(F, F.T):
        raise ValueError(
            f"the 'F' parameter of examples.quadratic must be a symmetric square matrix (the "
            f"Hessian of f), got {F.tolist()}."
        )
    dec = linear_decomposition(F, D)
    dim = F.shape[0]
    qu = dec.Q @ dec.U

    def loss(x):
        return 0.5 * (x * (x @ _const(x, F))).sum(-1)

    def drift(x):
        return -(x @ _const(x, F).T)

    def potential(x):
        return 0.5 * (x * (x @ _const(x, dec.U))).sum(-1)

    def force(x):
        return -(x @ _const(x, qu).T)

    half = 5.5 * float(np.sqrt(np.diag(dec.S).max() / beta))
    origin = (_cp(np.zeros(dim), "min"),)
    return Example(
        name="quadratic",
        dim=dim,
        bounds=tuple((-half, half) for _ in range(dim)),
        beta=beta,
        drift=drift,
        diffusion=D,
        potential=potential,
        loss=loss,
        force=force,
        critical_points=origin,
        loss_critical_points=origin,
        satisfies_assumption4=True,
        description=(
            "Lemma 20: quadratic f = ½xᵀFx with constant D, FD ≠ DF; Φ = ½xᵀUx, j = −QUx, "
            "stationary covariance β⁻¹S."
        ),
    )


# -------------------------------------------------------------------------------------- accel
def accel(lam: float = 10.0, alpha: float = 0.25, b: float = 2.0, beta: float = 1.0) -> Example:
    r"""The acceleration field of the authors' ``plot_accel.py`` (``fig/j_accel.pdf``).

    :math:`U(x) = \tfrac12x_1^2 + 2\alpha x_1x_2 + \tfrac b2 x_2^2` (α = 0.25, b = 2) and D = I,

    .. math:: b(x) = -\nabla U + \lambda\,e^{U - r^4/4}\,(-\partial_2U,\ \partial_1U),

    a 90°-rotated gradient added to speed up mixing (λ = 10 in the script), as MCMC samplers do
    with a force j = ∇Φ − ∇f. Known answers (derived here): for λ = 0, Φ = U exactly. For λ ≠ 0
    the added term is orthogonal to ∇U, so it leaves U unchanged along its flow, but
    :math:`\nabla\cdot(e^{-\beta U}j) = \lambda r^2e^{(1-\beta)U - r^4/4}(x_1\partial_2U -
    x_2\partial_1U)` is not zero unless U is radial, so ρ_ss ≠ e^{−βU}: the script's
    field does change the stationary law. ``potential`` is therefore U only when λ = 0.

    Args:
        lam: Strength of the rotated term (the script's ``l``).
        alpha: Coupling α of U.
        b: Curvature of U along x₂ (the script's ``beta``, renamed to avoid β).
        beta: Inverse temperature of the noise.

    Returns:
        The :class:`Example`.

    Raises:
        ValueError: If U is not convex (b ≤ 4α²), or a parameter is not a finite number.
    """
    where = "examples.accel"
    lam = check_real("lam", lam, where=where)
    alpha = check_real("alpha", alpha, where=where)
    b = check_real("b", b, where=where)
    beta = check_real("beta", beta, where=where, low=0.0, low_open=True)
    hess = np.array([[1.0, 2 * alpha], [2 * alpha, b]])
    lam_min = float(np.linalg.eigvalsh(hess)[0])
    if lam_min <= 0:
        raise ValueError(
            f"the parameters of {where} must make U convex (1·b > 4α²), got alpha={alpha:g}, "
            f"b={b:g}; the stationary density would not exist."
        )

    def u(x):
        return 0.5 * x[..., 0] ** 2 + 2 * alpha * x[..., 0] * x[..., 1] + 0.5 * b * x[..., 1] ** 2

    def grad_u(x):
        return _stack(x, [x[..., 0] + 2 * alpha * x[..., 1], 2 * alpha * x[..., 0] + b * x[..., 1]])

    def force(x):
        xp = _xp(x)
        g = grad_u(x)
        r2 = x[..., 0] ** 2 + x[..., 1] ** 2
        s = lam * xp.exp(u(x) - 0.25 * r2**2)
        return _stack(x, [-s * g[..., 1], s * g[..., 0]])

    def drift(x):
        return -grad_u(x) + force(x)

    half = math.sqrt(9.0 / (0.5 * lam_min * beta))
    origin = (_cp((0, 0), "min"),)
    return Example(
        name="accel",
        dim=2,
        bounds=((-half, half), (-half, half)),
        beta=beta,
        drift=drift,
        diffusion=np.eye(2),
        potential=u if lam == 0 else None,
        loss=u if lam == 0 else None,
        force=None,
        critical_points=origin if lam == 0 else (),
        loss_critical_points=origin,
        satisfies_assumption4=None,
        description=(
            f"plot_accel.py: U = x²/2 + 2αxy + by²/2 (α = {alpha:g}, b = {b:g}) plus the rotated "
            f"gradient λ e^{{U−r⁴/4}}(−∂yU, ∂xU), λ = {lam:g}."
        ),
    )


# ---------------------------------------------------------------------------- state-dependent
def state_dependent(
    beta: float = 1.0,
    kappa: float = 0.1,
    d0: float = 1.0,
    a: tuple[float, float] = (1.0, 1.5),
    theta: float = math.pi / 6,
) -> Example:
    r"""A state-dependent, anisotropic D(x) whose Φ has its minimum β⁻¹-far from f's (Theorem 22).

    In rotated coordinates :math:`y = R_\theta^\top x` the loss and the diffusion separate:

    .. math:: f = \tfrac12\sum_k a_k y_k^2,\qquad
              D(x) = R_\theta\,\mathrm{diag}(d_0 + \kappa y_1,\ d_0 + \kappa y_2)\,R_\theta^\top,

    so D has state-dependent off-diagonal entries in x. Each coordinate is a 1-D Itô diffusion
    :math:`dy = -a y\,dt + \sqrt{2\beta^{-1}(d_0+\kappa y)}\,dW`; zero flux,
    :math:`-a y\rho - \beta^{-1}((d_0+\kappa y)\rho)' = 0`, gives (derived here)

    .. math:: \rho_k \propto \frac{e^{-\beta A_k(y)}}{d_0 + \kappa y},\quad
              A_k(y) = \frac{a_k}{\kappa}y - \frac{a_kd_0}{\kappa^2}\log(d_0+\kappa y),\qquad
              \Phi = \sum_k A_k(y_k) + \beta^{-1}\log(d_0 + \kappa y_k),

    a Gamma law in :math:`d_0 + \kappa y` with mean y = 0. Detailed balance holds (J = 0, Q = 0),
    and :math:`\Phi'(y_k) = (a_ky_k + \beta^{-1}\kappa)/(d_0+\kappa y_k)` vanishes at
    :math:`y_k^* = -\kappa\beta^{-1}/a_k`: the minimum of Φ sits at
    :math:`x^* = R_\theta(-\kappa/a_1, -\kappa/a_2)\,\beta^{-1}`, a shift **linear in β⁻¹** from
    the minimum of f at 0, as Theorem 22 predicts: there ∇f = −β⁻¹∇·D ≠ 0 (eq. 19 with Q = 0).
    Note that this Φ depends on β through β⁻¹ log D.

    The box keeps d₀ + κ y_k > 0 (D positive definite) and, for the defaults, satisfies the
    scheme's M-matrix condition on square cells.

    Args:
        beta: Inverse temperature.
        kappa: Slope κ of the diffusion.
        d0: Diffusion at the minimum of f.
        a: Curvatures (a₁, a₂) of f along the rotated axes.
        theta: Rotation angle θ of the axes (radians).

    Returns:
        The :class:`Example`.

    Raises:
        ValueError: If ``a`` does not hold 2 positive curvatures, or a parameter is out of range.
    """
    where = "examples.state_dependent"
    beta = check_real("beta", beta, where=where, low=0.0, low_open=True)
    kappa = check_real("kappa", kappa, where=where, low=0.0, low_open=True)
    d0 = check_real("d0", d0, where=where, low=0.0, low_open=True)
    theta = check_real("theta", theta, where=where)
    curvatures = tuple(
        check_real(f"a[{k}]", v, where=where, low=0.0, low_open=True) for k, v in enumerate(a)
    )
    if len(curvatures) != 2:
        raise ValueError(
            f"the 'a' parameter of {where} must hold 2 curvatures, got {curvatures!r}."
        )
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, -s], [s, c]])
    a_arr = np.array(curvatures)

    def to_y(x):
        return x @ _const(x, rot)  # y = Rᵀx for row vectors

    def loss(x):
        y = to_y(x)
        return 0.5 * (y**2 * _const(x, a_arr)).sum(-1)

    def diffusion(x):
        y = to_y(x)
        dd = d0 + kappa * y  # (..., 2)
        r = _const(x, rot)
        return (r * dd[..., None, :]) @ r.T

    def drift(x):
        y = to_y(x)
        return -((y * _const(x, a_arr)) @ _const(x, rot).T)

    def potential(x):
        xp = _xp(x)
        y = to_y(x)
        z = d0 + kappa * y
        av = _const(x, a_arr)
        terms = av / kappa * y - av * d0 / kappa**2 * xp.log(z) + xp.log(z) / beta
        return terms.sum(-1)

    reach = abs(c) + abs(s)  # largest |y_k| per unit of the box half-width
    half = min(0.95 * d0 / (kappa * reach), math.sqrt(22.0 * d0 / (beta * min(curvatures))))
    x_star = rot @ (-kappa / (beta * a_arr))
    return Example(
        name="state_dependent",
        dim=2,
        bounds=((-half, half), (-half, half)),
        beta=beta,
        drift=drift,
        diffusion=diffusion,
        potential=potential,
        loss=loss,
        force=lambda x: 0.0 * x,
        critical_points=(_cp(x_star, "min"),),
        loss_critical_points=(_cp((0, 0), "min"),),
        satisfies_assumption4=True,
        description=(
            f"Theorem 22: f = ½Σ a_k y_k², D = R diag(d0 + κ y) Rᵀ (κ = {kappa:g}); the minimum "
            f"of Φ sits at R(−κ/a)β⁻¹ = ({x_star[0]:.3g}, {x_star[1]:.3g}), not at 0."
        ),
    )


EXAMPLES: dict[str, Callable[..., Example]] = {
    "double_well": double_well,
    "quadratic": quadratic,
    "accel": accel,
    "state_dependent": state_dependent,
}
"""Example factories by name, as the CLI's ``sgdscope toy NAME`` uses them."""


def get(name: str, **params: Any) -> Example:
    """Build the example ``name`` (a key of :data:`EXAMPLES`) with the given parameters.

    Args:
        name: ``"double_well"``, ``"quadratic"``, ``"accel"`` or ``"state_dependent"``.
        **params: Keyword arguments of that factory.

    Returns:
        The :class:`Example`.

    Raises:
        ValueError: If ``name`` is unknown (the message lists the names).
    """
    key = check_option("name", name, list(EXAMPLES), where="examples.get")
    return EXAMPLES[key](**params)
