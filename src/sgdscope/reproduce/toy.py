r"""``reproduce toy``: Fig. 4 (Example 19), Theorem 22, Assumption 4 and Lemma 20 on toy problems.

**Example 19 / Fig. 4** (§V). The double well
:math:`\Phi = \tfrac14(x_1^2-1)^2 + \tfrac12x_2^2` with D = I, β = 1 and the drift
:math:`b = -\nabla\Phi + j`, :math:`j = \lambda e^{\Phi - r^4/4}(-x_2, x_1)`
(:func:`sgdscope.examples.double_well`). For every λ the stationary density is :math:`e^{-\Phi}`
(because :math:`j e^{-\Phi}` is divergence-free) while the current is not zero for λ > 0. For
λ ∈ {0, 0.5, 1.5} this experiment solves the Fokker–Planck equation on a grid
(:class:`sgdscope.FokkerPlanck`), compares the recovered Φ (eq. 5) and force j (eq. 8) with the
closed forms, simulates the SDE (:func:`sgdscope.simulate_sde`, Euler–Maruyama) from a Gaussian
at the origin and compares the particles' histogram with :math:`e^{-\Phi}` by a χ² test (bin
probabilities from the closed form, independent of the solver), and draws the paper's Fig. 4
(drift streamlines over Φ, with :func:`sgdscope.report.fig_toy.plot_drift`).

**Theorem 22** (eq. 19). The critical points of Φ are not those of f: at ∇Φ = 0,
∇f = −β⁻¹∇·(D + Q), "linear in β⁻¹". Test: keep the drift of Example 19 at λ = 0.5 fixed (the
loss f and D do not change) and solve the Fokker–Planck equation at several β; measure the
distance from each minimum of Φ to the nearest zero of the drift of the same type, and the local
exponent of that shift against β⁻¹ at the smallest β⁻¹.

**Assumption 4** (eq. 9, ∇·j = 0). Example 19 satisfies ∇·(jρ^{ss}) = 0 but not ∇·j = 0 for
λ ≠ 0 (by direct computation): ∇·j = λe^{Φ−r⁴/4}x₁x₂(2 − x₁²). Both are measured on the solved
steady state and, as an oracle, by autograd on the closed-form j and ρ = e^{−Φ}.

**Lemma 20** (eqs. 15–16). For a random 2-D Hessian F and diffusion D,
:func:`sgdscope.linear_decomposition` gives F = (D + Q)U with Q antisymmetric and j = −QUx; the
Fokker–Planck solve of the same Ornstein–Uhlenbeck process gives j independently. Q = 0 exactly
when FD = DFᵀ (checked on a commuting pair with the same eigenvectors).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.integrate
import scipy.stats
import torch

from .._progress import progress_bar
from .._validation import check_int, check_real
from ..dynamics import examples
from ..dynamics.fokker_planck import CriticalKind, FokkerPlanck, SteadyState
from ..dynamics.grid import Grid
from ..dynamics.linear import linear_decomposition
from ..dynamics.sde import simulate_sde
from ..report.fig_toy import plot_drift
from ..report.results import Comparison, ExperimentResult, FigureRef, Verdict
from ..report.style import new_figure, save_figure
from .context import RunContext

__all__ = [
    "NAME",
    "TITLE",
    "Settings",
    "assumption4_verdict",
    "example19_verdict",
    "linear_verdict",
    "run",
    "shift_verdict",
]

NAME = "toy"
TITLE = "Fig. 4 and §V: Example 19 (limit cycles), Theorem 22, Assumption 4, Lemma 20"
_WHERE = "sgdscope.reproduce.toy.Settings"
_RESOLVED = 1e-3  # cells with ρ ≥ this · max ρ count for the Φ and j comparisons
_PHI_TOL = 1e-2  # max |Φ − Φ_known| (after removing the constant) that counts as "the same Φ"
_J_MIN = 0.05  # |J|/|bρ| above this is a non-zero current; below it, detailed balance
_A4_TOL = 0.05  # relative ∇·j above this violates Assumption 4


@dataclass(frozen=True)
class Settings:
    """Sizes of the toy experiment.

    Attributes:
        lams: The λ of Example 19 (Fig. 4a–c: 0, 0.5, 1.5).
        grid: Cells per axis of the Fokker–Planck grid.
        particles: Number of simulated SDE particles per λ.
        t_max: Simulated time (the slowest relaxation time of the double well at β = 1 is ≈ 1).
        dt: Euler–Maruyama step (weak order 1: the stationary law is biased by O(dt)).
        bins: χ² bins per axis (bins with expected count < 5 are pooled).
        alpha: Level of the χ² test.
        shift_lam: λ of the Theorem 22 test.
        shift_betas: β values of the Theorem 22 test (drift fixed at its β = 1 form).
        linear_grid: Cells per axis of the Lemma 20 Fokker–Planck check.
    """

    lams: tuple[float, ...] = (0.0, 0.5, 1.5)
    grid: int = 256
    particles: int = 40_000
    t_max: float = 10.0
    dt: float = 0.002
    bins: int = 10
    alpha: float = 0.01
    shift_lam: float = 0.5
    shift_betas: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
    linear_grid: int = 192

    def __post_init__(self) -> None:
        check_int("grid", self.grid, where=_WHERE, low=32)
        check_int("particles", self.particles, where=_WHERE, low=100)
        check_int("bins", self.bins, where=_WHERE, low=2)
        check_int("linear_grid", self.linear_grid, where=_WHERE, low=32)
        check_real("t_max", self.t_max, where=_WHERE, low=0.0, low_open=True)
        check_real("dt", self.dt, where=_WHERE, low=0.0, low_open=True, high=self.t_max)
        check_real("alpha", self.alpha, where=_WHERE, low=0.0, high=1.0, low_open=True)
        check_real("shift_lam", self.shift_lam, where=_WHERE)
        for lam in self.lams:
            check_real("lams", lam, where=_WHERE, low=0.0)
        if len(self.lams) == 0:
            raise ValueError(f"the 'lams' parameter of {_WHERE} must hold at least one λ, got ().")
        betas = tuple(self.shift_betas)
        if len(betas) < 2 or any(b < 1.0 for b in betas) or len(set(betas)) != len(betas):
            raise ValueError(
                f"the 'shift_betas' parameter of {_WHERE} must hold at least two distinct β ≥ 1 "
                f"(the grid's box is sized for β ≥ 1), got {betas!r}."
            )

    @classmethod
    def quick(cls) -> Settings:
        """Reduced sizes: grid 112², 4,000 particles, dt = 0.005, β up to 16 (≈ 30 s)."""
        return cls(
            grid=112,
            particles=4_000,
            t_max=8.0,
            dt=0.005,
            bins=8,
            shift_betas=(1.0, 2.0, 4.0, 8.0, 16.0),
            linear_grid=128,
        )

    @classmethod
    def full(cls) -> Settings:
        """The paper's three λ at grid 256², 40,000 particles, dt = 0.002, β up to 32."""
        return cls()


# ------------------------------------------------------------------------------ measurements
@dataclass(frozen=True)
class WellMeasurement:
    """What one λ of Example 19 measured (all relative errors are ρ-weighted over the grid).

    Attributes:
        lam: λ.
        phi_max_error: max |Φ − Φ_known − c| where ρ ≥ 1e-3 max ρ (c: the mean difference).
        force_rel_error: ‖j_solved − j_known‖/‖j_known‖ (nan for λ = 0, where j = 0).
        current_ratio: ∫|J| / ∫|bρ| of the solved steady state (0 at detailed balance).
        div_force: E_ρ|∇·j| / E_ρ Σ|∂_i j_i| on the solved steady state (Assumption 4).
        div_force_exact: The same ratio from the closed-form j by autograd, with ρ = e^{−Φ}.
        div_current: ∫|∇·J| / ∫|∇·(bρ)| on the solved steady state (discretisation error).
        div_current_exact: ∫|∇·(jρ)| / ∫Σ|∂_i(j_iρ)| from the closed forms (≈ round-off).
        critical_points_potential: Critical points of Φ (location and kind).
        critical_points_f: Zeros of the drift (location and kind; "center" = rotation).
        shifts: For each critical point of Φ, the distance to the nearest zero of the drift
            of the same kind (nan: none of that kind).
        chi2: χ² statistic of the particles' 2-D histogram against e^{−Φ}.
        chi2_dof: Its degrees of freedom.
        chi2_p: Its p-value.
        sde_seconds: Wall time of the simulation.
        solve_seconds: Wall time of the Fokker–Planck build and solve.
    """

    lam: float
    phi_max_error: float
    force_rel_error: float
    current_ratio: float
    div_force: float
    div_force_exact: float
    div_current: float
    div_current_exact: float
    critical_points_potential: list[dict[str, Any]]
    critical_points_f: list[dict[str, Any]]
    shifts: list[float | None]
    chi2: float
    chi2_dof: int
    chi2_p: float
    sde_seconds: float
    solve_seconds: float


def _solve(lam: float, n: int, beta: float = 1.0) -> tuple[examples.Example, SteadyState, Any]:
    """Steady state of Example 19's β = 1 drift at inverse temperature ``beta``.

    The drift (hence f) is that of the paper (β = 1); the box is the one the example sizes for
    max(1, β/4): the density concentrates as β grows and a smaller box keeps the cell Péclet
    number low, while the margin of 4 in β keeps the rotated density off the walls.
    """
    ex = examples.double_well(lam, beta=1.0)
    grid = Grid(examples.double_well(lam, beta=max(1.0, beta / 4)).bounds, (n, n))
    fp = FokkerPlanck(grid, drift=ex.drift, diffusion=ex.diffusion, beta=beta)
    return ex, fp.steady_state(), fp


def _divergence_ratios(field, points: np.ndarray, weight: np.ndarray) -> float:
    """``Σ w|∇·v| / Σ w Σ_i|∂_i v_i|`` for a closed-form field v, by autograd (the oracle)."""
    x = torch.as_tensor(points.reshape(-1, 2), dtype=torch.float64).requires_grad_(True)
    with torch.enable_grad():
        v = field(x)
        parts = [torch.autograd.grad(v[:, i].sum(), x, retain_graph=True)[0][:, i] for i in (0, 1)]
    d = torch.stack(parts, dim=-1).detach().numpy()
    w = weight.reshape(-1)
    den = float(np.sum(w * np.abs(d).sum(-1)))
    return float(np.sum(w * np.abs(d.sum(-1))) / den) if den > 0 else 0.0


def _chi2(points: np.ndarray, bins: int, potential_x1) -> tuple[float, int, float]:
    """χ² of a 2-D histogram of ``points`` against ρ ∝ e^{−Φ(x₁)}·N(x₂; 0, 1).

    Bin probabilities come from the closed form (1-D quadrature in x₁, the normal CDF in x₂),
    not from the grid solve; edges span ±2.2 (x₁) and ±2.5 (x₂) with open outer bins, and bins
    whose expected count is below 5 are pooled into one.
    """
    e1 = np.concatenate([[-np.inf], np.linspace(-2.2, 2.2, bins - 1), [np.inf]])
    e2 = np.concatenate([[-np.inf], np.linspace(-2.5, 2.5, bins - 1), [np.inf]])

    def dens(t: float) -> float:
        return math.exp(-potential_x1(t))

    z = scipy.integrate.quad(dens, -np.inf, np.inf)[0]
    p1 = np.array([scipy.integrate.quad(dens, a, b)[0] for a, b in itertools.pairwise(e1)]) / z
    p2 = np.diff(scipy.stats.norm.cdf(e2))
    expected = np.outer(p1, p2).ravel() * len(points)
    observed, _, _ = np.histogram2d(points[:, 0], points[:, 1], bins=[e1, e2])
    observed = observed.ravel()
    small = expected < 5
    if small.any():
        expected = np.append(expected[~small], expected[small].sum())
        observed = np.append(observed[~small], observed[small].sum())
    stat = float(np.sum((observed - expected) ** 2 / expected))
    dof = len(expected) - 1
    return stat, dof, float(scipy.stats.chi2.sf(stat, dof))


def _simulate(ex, settings: Settings, seed: int, device: str) -> np.ndarray:
    """Final positions of ``settings.particles`` Euler–Maruyama paths from N(0, 0.25 I)."""
    gen = torch.Generator().manual_seed(seed)
    x0 = 0.5 * torch.randn(settings.particles, 2, generator=gen, dtype=torch.float64)
    n_steps = math.ceil(settings.t_max / settings.dt)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # (n, 2) tensors: thread start-up costs more than it saves
    try:
        paths = simulate_sde(
            ex.drift,
            torch.eye(2, dtype=torch.float64, device=device),
            x0.to(device),
            settings.t_max / n_steps,
            n_steps,
            beta=ex.beta,
            seed=seed,
            record_every=n_steps,
        )
    finally:
        torch.set_num_threads(threads)
    return paths[-1].cpu().numpy()


def _measure_well(lam: float, settings: Settings, seed: int, device: str):
    t0 = time.perf_counter()
    ex, ss, fp = _solve(lam, settings.grid)
    solve_s = time.perf_counter() - t0
    points = ss.grid.points
    known_phi = np.asarray(ex.potential(points), dtype=float)
    resolved = ss.density >= _RESOLVED * ss.density.max()
    diff = (ss.potential - known_phi)[resolved]
    rho_exact = np.exp(-known_phi)
    w = np.where(resolved, ss.density, 0.0)
    j_known = np.asarray(ex.force(points), dtype=float)
    norm = float(np.sum(w * (j_known**2).sum(-1)))
    force_err = (
        float(np.sqrt(np.sum(w * ((ss.force - j_known) ** 2).sum(-1)) / norm))
        if norm > 0
        else math.nan
    )

    def flux(x):
        return ex.force(x) * torch.exp(-ex.potential(x))[..., None]

    t0 = time.perf_counter()
    final = _simulate(ex, settings, seed, device)
    sde_s = time.perf_counter() - t0
    chi2, dof, p = _chi2(final, settings.bins, lambda t: 0.25 * (t * t - 1.0) ** 2)
    m = WellMeasurement(
        lam=lam,
        phi_max_error=float(np.abs(diff - diff.mean()).max()),
        force_rel_error=force_err,
        current_ratio=ss.current_ratio,
        div_force=ss.div_force,
        div_force_exact=_divergence_ratios(ex.force, points, rho_exact),
        div_current=ss.div_current,
        div_current_exact=_divergence_ratios(flux, points, np.ones_like(rho_exact)),
        critical_points_potential=[p.to_dict() for p in ss.critical_points_potential],
        critical_points_f=[p.to_dict() for p in ss.critical_points_f],
        shifts=[None if not np.isfinite(d) else float(d) for d in ss.critical_distances],
        chi2=chi2,
        chi2_dof=dof,
        chi2_p=p,
        sde_seconds=sde_s,
        solve_seconds=solve_s,
    )
    return m, ex, ss, fp, final


def _min_shift(ss: SteadyState) -> float:
    """Largest distance from a minimum of Φ to the nearest minimum of f (nan if f has none)."""
    d = [
        dist
        for p, dist in zip(ss.critical_points_potential, ss.critical_distances, strict=True)
        if p.kind is CriticalKind.MIN
    ]
    return float(np.max(d)) if d and np.all(np.isfinite(d)) else math.nan


def _rotation(angle: float) -> np.ndarray:
    return np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])


def _linear_case(seed: int, n: int) -> dict[str, Any]:
    """Lemma 20 on a random 2-D F and D, checked against a Fokker–Planck solve.

    F and D get random eigenvectors at a relative angle in [π/8, 3π/8] and random eigenvalues
    with F's ratio ≥ 2 (so that Q is clearly non-zero) and D's ratio < 3 (which keeps the
    scheme an M-matrix on square cells).
    """
    rng = np.random.default_rng(seed)
    a_f = rng.uniform(0.0, np.pi)
    r_f, r_d = _rotation(a_f), _rotation(a_f + rng.uniform(np.pi / 8, 3 * np.pi / 8))
    f_eig = np.array([rng.uniform(0.5, 1.0), rng.uniform(2.0, 3.0)])
    d_eig = np.array([rng.uniform(0.5, 0.7), rng.uniform(1.0, 1.4)])
    F = r_f @ np.diag(f_eig) @ r_f.T
    D = r_d @ np.diag(d_eig) @ r_d.T
    dec = linear_decomposition(F, D)
    D_c = r_f @ np.diag(d_eig) @ r_f.T  # shares F's eigenvectors: FD = DF
    dec_c = linear_decomposition(F, D_c)
    ex = examples.quadratic(F, D)
    grid = Grid(ex.bounds, (n, n))
    ss = FokkerPlanck(grid, drift=ex.drift, diffusion=D, beta=1.0).steady_state()
    w = np.where(ss.density >= _RESOLVED * ss.density.max(), ss.density, 0.0)
    j_lin = dec.force(grid.points)  # −QUx
    j_err = float(
        np.sqrt(np.sum(w * ((ss.force - j_lin) ** 2).sum(-1)) / np.sum(w * (j_lin**2).sum(-1)))
    )
    pts = grid.points.reshape(-1, 2)
    rho = ss.density.reshape(-1) * grid.cell_volume
    mean = rho @ pts
    cov = np.einsum("n,ni,nj->ij", rho, pts - mean, pts - mean)
    ex_c = examples.quadratic(F, D_c)
    grid_c = Grid(ex_c.bounds, (n, n))
    ss_c = FokkerPlanck(grid_c, drift=ex_c.drift, diffusion=D_c).steady_state()
    return {
        "F": F.tolist(),
        "D": D.tolist(),
        "D_commuting": D_c.tolist(),
        "Q": dec.Q.tolist(),
        "U": dec.U.tolist(),
        "commute": dec.commute,
        "commute_commuting": dec_c.commute,
        "q_norm_rel": float(np.linalg.norm(dec.Q) / np.linalg.norm(F)),
        "q_norm_rel_commuting": float(np.linalg.norm(dec_c.Q) / np.linalg.norm(F)),
        "q_antisymmetry": float(
            np.linalg.norm(dec.Q + dec.Q.T) / max(np.linalg.norm(dec.Q), 1e-300)
        ),
        "decomposition_residual": dec.residual,
        "lyapunov_residual": float(
            np.linalg.norm(F @ dec.S + dec.S @ F.T - 2 * D) / np.linalg.norm(2 * D)
        ),
        "force_rel_error_fp": j_err,
        "covariance_rel_error_fp": float(np.linalg.norm(cov - dec.S) / np.linalg.norm(dec.S)),
        "current_ratio_fp": ss.current_ratio,
        "current_ratio_fp_commuting": ss_c.current_ratio,
        "grid": n,
    }


# --------------------------------------------------------------------------------- verdicts
def example19_verdict(
    lams: list[float],
    phi_errors: list[float],
    current_ratios: list[float],
    p_values: list[float],
    alpha: float,
) -> tuple[Verdict, str]:
    """Verdict of "Example 19: Φ = the known potential, ρ_ss = e^{−βΦ} while j ≠ 0".

    Reproduced when, for every λ, the solved Φ matches the closed form (max error < 1e-2), the
    current is non-zero exactly when λ > 0 (|J|/|bρ| above or below 0.05) and the simulated
    particles pass the χ² test against e^{−Φ} at level ``alpha``; partly when the current
    behaves and only one of Φ or the simulation agrees; not reproduced otherwise.

    Returns:
        The verdict and a sentence saying which parts held.
    """
    phi_ok = all(e < _PHI_TOL for e in phi_errors)
    j_ok = all((c > _J_MIN) == (lam > 0) for lam, c in zip(lams, current_ratios, strict=True))
    sde_ok = all(p > alpha for p in p_values)
    parts = (
        f"Φ {'matches' if phi_ok else 'does not match'} the closed form; the current is "
        f"{'non-zero exactly for λ > 0' if j_ok else 'not as predicted'}; the simulated "
        f"histogram {'passes' if sde_ok else 'fails'} the χ² test at level {alpha:g}."
    )
    if phi_ok and j_ok and sde_ok:
        return Verdict.REPRODUCED, parts
    if j_ok and (phi_ok or sde_ok):
        return Verdict.PARTLY, parts
    return Verdict.NOT_REPRODUCED, parts


def shift_verdict(inv_betas: list[float], shifts: list[float]) -> tuple[Verdict, float]:
    """Verdict of "critical points of Φ differ from those of f by a shift ∝ β⁻¹" (Thm 22).

    With the shifts sorted by β⁻¹, the local exponent is the slope of log(shift) against
    log(β⁻¹) between the two smallest β⁻¹. Reproduced when every shift is positive, the shifts
    grow with β⁻¹ and that exponent is within 0.15 of 1 (linear as β⁻¹ → 0); partly when they
    are positive and grow but the exponent is further from 1 (not yet linear in the range
    tested); not reproduced when a shift is missing, zero, or not increasing in β⁻¹.

    Returns:
        The verdict and the local exponent (nan when it cannot be computed).
    """
    order = np.argsort(inv_betas)
    b = np.asarray(inv_betas, dtype=float)[order]
    s = np.asarray(shifts, dtype=float)[order]
    if len(s) < 2 or not np.all(np.isfinite(s)) or np.any(s <= 1e-9):
        return Verdict.NOT_REPRODUCED, math.nan
    exponent = float(np.log(s[1] / s[0]) / np.log(b[1] / b[0]))
    if not np.all(np.diff(s) > 0):
        return Verdict.NOT_REPRODUCED, exponent
    if abs(exponent - 1.0) <= 0.15:
        return Verdict.REPRODUCED, exponent
    return Verdict.PARTLY, exponent


def assumption4_verdict(
    lams: list[float], div_force: list[float], div_current: list[float], tol: float = _A4_TOL
) -> Verdict:
    """Verdict of the paper's claim "Assumption 4 (∇·j = 0) holds for Example 19".

    Only λ > 0 count (for λ = 0, j = 0 and the assumption holds trivially). Not reproduced when
    some λ > 0 has a relative ∇·j above ``tol`` while ∇·(jρ) stays below it (the steady state is
    right, the assumption fails); reproduced when every λ > 0 has ∇·j below ``tol``; not
    testable when ∇·(jρ) itself is not resolved (the solve is too coarse to tell).
    """
    rows = [(f, c) for lam, f, c in zip(lams, div_force, div_current, strict=True) if lam > 0]
    if not rows:
        return Verdict.NOT_TESTABLE
    if any(c >= tol for _, c in rows):
        return Verdict.NOT_TESTABLE
    if any(f > tol for f, _ in rows):
        return Verdict.NOT_REPRODUCED
    return Verdict.REPRODUCED


def linear_verdict(
    q_noncommuting: float, q_commuting: float, commute_flags: tuple[bool, bool], force_error: float
) -> Verdict:
    """Verdict of "linear case: Q = 0 iff FD = DFᵀ" (Lemma 20).

    Reproduced when the non-commuting pair has ‖Q‖/‖F‖ > 1e-3 and is flagged non-commuting,
    the commuting pair has ‖Q‖/‖F‖ < 1e-10 and is flagged commuting, and the Fokker–Planck
    force agrees with −QUx to 5 %; partly when only the algebra holds; otherwise not reproduced.
    """
    algebra = q_noncommuting > 1e-3 and q_commuting < 1e-10 and commute_flags == (False, True)
    if algebra and force_error < 0.05:
        return Verdict.REPRODUCED
    return Verdict.PARTLY if algebra else Verdict.NOT_REPRODUCED


# ---------------------------------------------------------------------------------- figures
def _fig4(wells: list[tuple], lams: list[float], path: Path, label: str) -> Path:
    """Fig. 4 composed in memory: one drift panel per λ from its (example, steady state, drift)."""
    fig, axes = new_figure(len(wells), 1, width=4.4, height=4.2)
    axes = np.atleast_1d(axes)
    for ax, (ex, ss, drift), lam, letter in zip(axes, wells, lams, "abcdefgh", strict=False):
        plot_drift(ex, ss, drift, ax=ax, title=f"({letter}) λ = {lam:g}")
    fig.suptitle(f"Fig. 4: Example 19, drift streamlines over Φ; red: minima of Φ{label}")
    return save_figure(fig, path)


def _fig_histograms(finals: list[np.ndarray], ms: list[WellMeasurement], path, label) -> Path:
    fig, axes = new_figure(len(finals), 2, width=3.8, height=3.0)
    axes = np.asarray(axes).reshape(2, len(finals))
    t = np.linspace(-2.6, 2.6, 400)
    p1 = np.exp(-0.25 * (t * t - 1) ** 2)
    p1 /= np.trapezoid(p1, t)
    p2 = scipy.stats.norm.pdf(t)
    for k, (x, m) in enumerate(zip(finals, ms, strict=True)):
        for row, (dens, name) in enumerate(((p1, "x_1"), (p2, "x_2"))):
            ax = axes[row, k]
            ax.hist(x[:, row], bins=60, range=(-2.6, 2.6), density=True, color="0.7")
            ax.plot(t, dens, "tab:red", lw=1.2, label="exp(−Φ), closed form")
            ax.set_xlabel(f"${name}$")
            if row == 0:
                ax.set_title(f"λ = {m.lam:g}: χ² p = {m.chi2_p:.2g}")
    axes[0, 0].legend(frameon=False, fontsize=8)
    fig.suptitle(f"SDE particles at t_max against the marginals of exp(−Φ){label}")
    return save_figure(fig, path)


def _fig_shift(inv_betas, shifts, lam: float, path, label) -> Path:
    fig, ax = new_figure(1, 1, width=4.8, height=3.8)
    b = np.asarray(inv_betas)
    s = np.asarray(shifts)
    ax.loglog(b, s, "o-", label="|argmin Φ − argmin f| (measured)")
    k = np.argmin(b)
    ax.loglog(b, s[k] / b[k] * b, "k--", lw=0.8, label="∝ β⁻¹ (through the smallest β⁻¹)")
    ax.set_xlabel("β⁻¹")
    ax.set_ylabel("shift of the minimum")
    ax.legend(frameon=False, fontsize=8)
    title = f"Theorem 22: Example 19, λ = {lam:g}, drift fixed"
    ax.set_title(title + ("\n" + label.strip() if label else ""), fontsize=9)
    return save_figure(fig, path)


# ---------------------------------------------------------------------------------- the run
def _reduced_note(s: Settings) -> str:
    f = Settings.full()
    return (
        f"grid {s.grid}² (full {f.grid}²), {s.particles:,} SDE particles (full {f.particles:,}) "
        f"to t = {s.t_max:g} with dt {s.dt:g} (full {f.t_max:g}, {f.dt:g}), β up to "
        f"{max(s.shift_betas):g} (full {max(f.shift_betas):g}), λ ∈ {list(s.lams)}"
    )


def run(ctx: RunContext, settings: Settings | None = None) -> ExperimentResult:
    """Run the toy experiment (Fig. 4, Theorem 22, Assumption 4, Lemma 20) and save its result.

    Args:
        ctx: Where and how to run (``ctx.quick`` picks :meth:`Settings.quick` when ``settings``
            is None; ``ctx.seed`` seeds the particles and the random F, D; ``ctx.device`` runs
            the SDE simulation).
        settings: Sizes; None picks quick or full from ``ctx``.

    Returns:
        The :class:`ExperimentResult`, also written to ``ctx.folder("toy")/result.json``.
    """
    start = time.perf_counter()
    if settings is None:
        settings = Settings.quick() if ctx.quick else Settings.full()
    reduced = settings != Settings.full()
    label = (
        f" (reduced: grid {settings.grid}², {settings.particles:,} particles, dt {settings.dt:g})"
        if reduced
        else ""
    )
    folder = ctx.folder(NAME)
    lams = list(settings.lams)
    betas = sorted(settings.shift_betas)
    ms: list[WellMeasurement] = []
    finals: list[np.ndarray] = []
    wells: list[tuple] = []  # (example, steady state, drift) per λ, for Fig. 4
    shift_ss: dict[float, SteadyState] = {}
    total = len(lams) + len(betas) + 1
    with progress_bar("reproduce toy", total, enabled=ctx.progress) as advance:
        for k, lam in enumerate(lams):
            m, ex, ss, fp, final = _measure_well(lam, settings, ctx.seed + k, ctx.device)
            ms.append(m)
            finals.append(final)
            wells.append((ex, ss, fp.drift_cells))
            if lam == settings.shift_lam and 1.0 in betas:
                shift_ss[1.0] = ss
            advance()
        for beta in betas:
            if beta not in shift_ss:
                shift_ss[beta] = _solve(settings.shift_lam, settings.grid, beta)[1]
            advance()
        linear = _linear_case(ctx.seed, settings.linear_grid)
        advance()

    inv_betas = [1.0 / b for b in betas]
    shifts = [_min_shift(shift_ss[b]) for b in betas]
    phi_mins = [
        [
            p.location.tolist()
            for p in shift_ss[b].critical_points_potential
            if p.kind is CriticalKind.MIN
        ]
        for b in betas
    ]
    figures = [
        FigureRef(
            _fig4(wells, lams, folder / "fig4.png", label).name,
            "Fig. 4: drift streamlines (width ∝ speed) over filled contours of the solved Φ, "
            "for each λ; red dots: minima of Φ, at (±1, 0) for every λ.",
        ),
        FigureRef(
            _fig_histograms(finals, ms, folder / "sde_histograms.png", label).name,
            "Euler–Maruyama particles at t_max (histograms) against the marginals of e^{−Φ}; "
            "the same law for every λ although the drift rotates.",
        ),
        FigureRef(
            _fig_shift(
                inv_betas, shifts, settings.shift_lam, folder / "theorem22_shift.png", label
            ).name,
            "Theorem 22: distance between the minimum of Φ and the nearest minimum of f "
            "(zero of the drift) against β⁻¹, for the fixed Example 19 drift.",
        ),
    ]

    # ------------------------------------------------------------------------- comparisons
    v19, why19 = example19_verdict(
        lams, [m.phi_max_error for m in ms], [m.current_ratio for m in ms],
        [m.chi2_p for m in ms], settings.alpha,
    )  # fmt: skip
    per_lam = "; ".join(
        f"λ = {m.lam:g}: max|ΔΦ| = {m.phi_max_error:.1e}, |J|/|bρ| = {m.current_ratio:.3f}, "
        f"χ² p = {m.chi2_p:.2f}"
        for m in ms
    )
    last = ms[-1]
    f_kinds = ", ".join(
        f"{c['kind']} at ({c['location'][0]:.2f}, {c['location'][1]:.2f})"
        for c in last.critical_points_f
    )
    v22, exponent = shift_verdict(inv_betas, shifts)
    va4 = assumption4_verdict(lams, [m.div_force for m in ms], [m.div_current for m in ms])
    vlin = linear_verdict(
        linear["q_norm_rel"], linear["q_norm_rel_commuting"],
        (linear["commute"], linear["commute_commuting"]), linear["force_rel_error_fp"],
    )  # fmt: skip
    pos = [m for m in ms if m.lam > 0]
    a4_measured = "; ".join(
        f"λ = {m.lam:g}: rel. ∇·j = {m.div_force:.2f} (closed form {m.div_force_exact:.2f}), "
        f"rel. ∇·(jρ) = {m.div_current:.1e} (closed form {m.div_current_exact:.0e})"
        for m in pos
    )
    comparisons = [
        Comparison(
            key="fig4.example19",
            claim="Example 19: Φ = the known potential, SGD's steady state is e^{−βΦ} while "
            "j ≠ 0 (Fig. 4)",
            paper="ρ_ss = e^{−Φ} for λ ∈ {0, 0.5, 1.5}; j ≠ 0 for λ > 0; λ = 1.5 circulates "
            "around the saddle at the origin",
            measured=f"{per_lam}; λ = {last.lam:g}: zeros of the drift: {f_kinds or 'none'}",
            verdict=v19,
            note=f"{why19} Grid {settings.grid}², {settings.particles:,} particles to "
            f"t = {settings.t_max:g} (dt {settings.dt:g}); the χ² bins come from the closed form "
            "e^{−Φ}, not from the solver. The paper only draws the drift fields; the solve and "
            "the simulation are added here.",
        ),
        Comparison(
            key="thm22.shift",
            claim="Theorem 22: critical points of Φ differ from those of f by a shift ∝ β⁻¹",
            paper="at ∇Φ = 0, ∇f = −β⁻¹∇·(D + Q) ≠ 0: a shift linear in β⁻¹ = η/2b",
            measured=", ".join(
                f"β⁻¹ = {b:.3g}: {s:.3f}" for b, s in zip(inv_betas, shifts, strict=True)
            )
            + f"; local exponent at the smallest β⁻¹: {exponent:.2f}",
            verdict=v22,
            note=f"Example 19's drift at λ = {settings.shift_lam:g} held fixed (f and D fixed), "
            "the Fokker–Planck equation solved at each β. The shift exists and vanishes as "
            "β⁻¹ → 0; it is linear in β⁻¹ only asymptotically (at the paper's β = 1 it is far "
            "from the linear regime). The minima of Φ move with β, so Φ does depend on β for a "
            "fixed loss, contrary to the paper's statement that it does not.",
        ),
        Comparison(
            key="assumption4.example19",
            claim="Assumption 4 holds for Example 19",
            paper="∇·j = 0 (eq. 9), illustrated by Example 19",
            measured=a4_measured,
            verdict=va4,
            note="Example 19 has ∇·(jρ_ss) = 0 (so ρ_ss = e^{−Φ}) but ∇·j = "
            "λe^{Φ−r⁴/4}x₁x₂(2 − x₁²) ≠ 0 (by direct computation): the assumption fails for λ ≠ 0. "
            "Ratios are ρ-weighted E|∇·j| / E Σ|∂ᵢjᵢ|; the closed forms use autograd on j and "
            "ρ = e^{−Φ}. For λ = 0, j = 0 and the assumption holds trivially.",
        ),
        Comparison(
            key="lemma20.linear_q",
            claim="linear case: Q = 0 iff FD = DFᵀ",
            paper="F = (D + Q)U, Φ = ½xᵀUx, j = −QUx; Q = 0 iff F and D commute (Lemma 20)",
            measured=f"random F, D: ‖Q‖/‖F‖ = {linear['q_norm_rel']:.3f}; commuting D: "
            f"{linear['q_norm_rel_commuting']:.1e}; Fokker–Planck j against −QUx: rel. error "
            f"{linear['force_rel_error_fp']:.1e}",
            verdict=vlin,
            note=f"Q antisymmetric to {linear['q_antisymmetry']:.0e}, residual of F = (D + Q)U "
            f"{linear['decomposition_residual']:.0e}, Lyapunov residual "
            f"{linear['lyapunov_residual']:.0e}; stationary covariance of the grid solve against "
            f"S: rel. error {linear['covariance_rel_error_fp']:.1e} (grid {linear['grid']}²).",
        ),
    ]
    notes = [
        "Example 19 is an out-of-equilibrium process whose stationary law is nevertheless the "
        "Gibbs law of a known Φ: the solved Φ equals the closed form for every λ, and the "
        "simulated particles follow e^{−Φ}, while the current J = jρ grows with λ.",
        f"At λ = {last.lam:g} the only zero of the drift is of kind "
        f"'{last.critical_points_f[0]['kind'] if last.critical_points_f else 'none'}' at the "
        "origin: the minima of Φ at (±1, 0) are not zeros of the drift at all, so SGD's most "
        "likely states are not critical points of f (Remark 23).",
        "Assumption 4 fails for Example 19 (∇·j ≠ 0), yet its stationary law is exactly "
        "e^{−Φ}: what the steady state needs is ∇·(jρ_ss) = 0, not ∇·j = 0.",
    ]
    numbers = {
        "wells": [asdict(m) for m in ms],
        "theorem22": {
            "lam": settings.shift_lam,
            "betas": betas,
            "inv_betas": inv_betas,
            "shifts": shifts,
            "phi_minima": phi_mins,
            "local_exponent": exponent,
        },
        "linear": linear,
    }
    result = ExperimentResult(
        seconds=time.perf_counter() - start,
        name=NAME,
        title=TITLE,
        reduced=reduced,
        reduced_note=_reduced_note(settings) if reduced else "",
        config=asdict(settings),
        comparisons=comparisons,
        figures=figures,
        numbers=numbers,
        notes=notes,
    )
    result.save(folder)
    return result
