r"""Batched Euler–Maruyama for :math:`dx = b(x)\,dt + \sqrt{2\beta^{-1}D(x)}\,dW`.

The diffusion is given as D itself (Chaudhari & Soatto, eq. 3), never as its square root. Its
structure comes from the type of the object passed:

* a callable field ``D(x)``, points (n, dim) → (n, dim, dim), factored at every step;
* a constant (dim, dim) matrix (tensor or array), factored once;
* :class:`LowRankDiffusion` ``(L)`` with D = L Lᵀ, L of shape (dim, r): noise costs O(dim·r) per
  particle, the natural form of SGD's low-rank gradient noise (§IV-A, Figs 1–2);
* :class:`DiagonalDiffusion` ``(d)`` with D = diag(d): O(dim) per particle.

The square-root rule, shared by the field and the constant matrix: the lower Cholesky factor when
D is positive definite, otherwise V·diag(√max(λ, 0)) from ``eigh`` (robust to singular D). Any
σ with σσᵀ = D gives the same law; this rule fixes the paths, so that two forms of the same D with
the same seed give the same trajectory.
"""

from __future__ import annotations

import math
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from .._validation import check_int, check_real

__all__ = [
    "AbstractDiffusion",
    "DenseDiffusion",
    "DiagonalDiffusion",
    "EulerMaruyama",
    "FieldDiffusion",
    "LowRankDiffusion",
    "simulate_sde",
]

DriftFn = Callable[[Tensor], Tensor]
"""A drift b: points (n, dim) → velocities (n, dim)."""
DiffusionFn = Callable[[Tensor], Tensor]
"""A diffusion field D: points (n, dim) → symmetric PSD matrices (n, dim, dim)."""

_WHERE = "simulate_sde"
_PSD_RTOL = 1e-8  # negative eigenvalues above −rtol·λ_max are round-off and clipped to 0


def _psd_root(D: Tensor) -> tuple[Tensor, Tensor]:
    """σ with σσᵀ = D for a batch (..., dim, dim): Cholesky where PD, eigh root elsewhere.

    Returns:
        ``(sigma, lam_min)``: the roots and, per matrix, the smallest eigenvalue relative to the
        largest (0 where Cholesky succeeded), used to detect matrices that are not PSD.
    """
    L, info = torch.linalg.cholesky_ex(D)
    lam_rel = torch.zeros(D.shape[:-2], dtype=D.dtype, device=D.device)
    bad = info != 0
    if bool(bad.any()):
        lam, V = torch.linalg.eigh(D[bad])
        top = lam.abs().amax(dim=-1, keepdim=True).clamp_min(torch.finfo(D.dtype).tiny)
        lam_rel[bad] = (lam / top).amin(dim=-1)
        L = L.clone()
        L[bad] = V * lam.clamp_min(0.0).sqrt().unsqueeze(-2)
    return L, lam_rel


class _NoiseKernel(ABC):
    """A prepared noise term: ``add_(out, x, z)`` adds c·σ(x) z to ``out`` in place.

    c = √(2β⁻¹h) is folded into the factor once; x (n, dim), z (n, r), out (n, dim), and
    ``r`` is the number of standard normals drawn per particle and step.
    """

    r: int

    @abstractmethod
    def add_(self, out: Tensor, x: Tensor, z: Tensor) -> None: ...


class _FactorKernel(_NoiseKernel):
    """Constant σ: one fused GEMM, out += z (cσ)ᵀ (O(dim·r) per particle)."""

    def __init__(self, sigma: Tensor, scale: float) -> None:
        self.sigma_t = (scale * sigma).T.contiguous()
        self.r = sigma.shape[1]

    def add_(self, out: Tensor, x: Tensor, z: Tensor) -> None:
        out.addmm_(z, self.sigma_t)


class _DiagonalKernel(_NoiseKernel):
    """Diagonal σ = diag(√d): out += z ⊙ c√d (O(dim) per particle)."""

    def __init__(self, d: Tensor, scale: float) -> None:
        self.root = scale * d.sqrt()
        self.r = d.shape[0]

    def add_(self, out: Tensor, x: Tensor, z: Tensor) -> None:
        out.addcmul_(z, self.root)


class AbstractDiffusion(ABC):
    """A diffusion matrix D in some structure; each subclass prepares one private noise kernel.

    ``noise_dim`` is the number r of standard normals drawn per particle and step.
    """

    dim: int
    noise_dim: int

    @abstractmethod
    def _prepare(
        self, dim: int, dtype: torch.dtype, device: torch.device, scale: float
    ) -> _NoiseKernel:
        """Check the dimension and return the noise kernel on ``device`` in ``dtype``."""


def _check_dim(where: str, got: int, dim: int) -> None:
    if got != dim:
        raise ValueError(
            f"the 'diffusion' parameter of {_WHERE} acts on dimension {got} ({where}), but x0 has "
            f"dim = {dim}. Pass a diffusion of the state's dimension."
        )


@dataclass(frozen=True, eq=False)
class LowRankDiffusion(AbstractDiffusion):
    """D = L Lᵀ with a factor L of shape (dim, r); noise costs O(dim·r) per particle.

    Attributes:
        L: The (dim, r) factor, any float tensor or array. SGD's D is low-rank (§IV-A, Figs 1–2), so
            its top-r eigenvectors scaled by √λ are a natural L.
    """

    L: Tensor

    def __post_init__(self) -> None:
        L = torch.as_tensor(self.L)
        if L.ndim != 2 or not L.is_floating_point():
            raise ValueError(
                "the 'L' parameter of LowRankDiffusion must be a float matrix of shape (dim, r), "
                f"got shape {tuple(L.shape)} and dtype {L.dtype}."
            )
        if not bool(torch.isfinite(L).all()):
            raise ValueError(
                "the 'L' parameter of LowRankDiffusion must be finite, got NaN or inf."
            )
        object.__setattr__(self, "L", L)

    @property
    def dim(self) -> int:  # type: ignore[override]
        """The state dimension."""
        return self.L.shape[0]

    @property
    def noise_dim(self) -> int:  # type: ignore[override]
        """r, the number of noise directions."""
        return self.L.shape[1]

    def dense(self) -> Tensor:
        """The (dim, dim) matrix D = L Lᵀ."""
        return self.L @ self.L.T

    def _prepare(
        self, dim: int, dtype: torch.dtype, device: torch.device, scale: float
    ) -> _NoiseKernel:
        _check_dim(f"L has shape {tuple(self.L.shape)}", self.dim, dim)
        return _FactorKernel(self.L.to(device=device, dtype=dtype), scale)


@dataclass(frozen=True, eq=False)
class DiagonalDiffusion(AbstractDiffusion):
    """D = diag(d) with d ≥ 0 of shape (dim,); noise costs O(dim) per particle.

    Attributes:
        d: The (dim,) diagonal, non-negative.
    """

    d: Tensor

    def __post_init__(self) -> None:
        d = torch.as_tensor(self.d)
        if d.ndim != 1 or not d.is_floating_point():
            raise ValueError(
                "the 'd' parameter of DiagonalDiffusion must be a float vector of shape (dim,), "
                f"got shape {tuple(d.shape)} and dtype {d.dtype}."
            )
        if not bool(torch.isfinite(d).all()) or bool((d < 0).any()):
            raise ValueError(
                "the 'd' parameter of DiagonalDiffusion must be finite and non-negative (it is "
                f"the diagonal of a covariance), got min {float(d.min()):.3g}."
            )
        object.__setattr__(self, "d", d)

    @property
    def dim(self) -> int:  # type: ignore[override]
        """The state dimension."""
        return self.d.shape[0]

    @property
    def noise_dim(self) -> int:  # type: ignore[override]
        """r = dim."""
        return self.d.shape[0]

    def dense(self) -> Tensor:
        """The (dim, dim) matrix diag(d)."""
        return torch.diag(self.d)

    def _prepare(
        self, dim: int, dtype: torch.dtype, device: torch.device, scale: float
    ) -> _NoiseKernel:
        _check_dim(f"d has shape {tuple(self.d.shape)}", self.dim, dim)
        return _DiagonalKernel(self.d.to(device=device, dtype=dtype), scale)


@dataclass(frozen=True, eq=False)
class DenseDiffusion(AbstractDiffusion):
    """A constant (dim, dim) symmetric PSD matrix D, factored once (Cholesky, else eigh root).

    Attributes:
        D: The (dim, dim) matrix.
    """

    D: Tensor

    def __post_init__(self) -> None:
        D = torch.as_tensor(self.D)
        if D.ndim != 2 or D.shape[0] != D.shape[1] or not D.is_floating_point():
            raise ValueError(
                f"the 'diffusion' parameter of {_WHERE}, as a constant matrix, must be a float "
                f"(dim, dim) matrix, got shape {tuple(D.shape)} and dtype {D.dtype}."
            )
        if not bool(torch.isfinite(D).all()):
            raise ValueError(
                f"the 'diffusion' parameter of {_WHERE} must be finite, got NaN or inf."
            )
        scale = float(D.abs().max()) or 1.0
        asym = float((D - D.T).abs().max())
        if asym > 1e-10 * scale:
            raise ValueError(
                f"the 'diffusion' parameter of {_WHERE} must be symmetric, got max |D − Dᵀ| = "
                f"{asym:.3g}. Pass (D + D.T) / 2 if the asymmetry is round-off."
            )
        lam = torch.linalg.eigvalsh(D.double())
        if float(lam[0]) < -_PSD_RTOL * max(float(lam[-1]), 0.0) or float(lam[-1]) < 0:
            raise ValueError(
                f"the 'diffusion' parameter of {_WHERE} must be positive semi-definite, got "
                f"smallest eigenvalue {float(lam[0]):.3g} (largest {float(lam[-1]):.3g}). "
                "D is a covariance (eq. 2); check its sign and construction."
            )
        object.__setattr__(self, "D", D)

    @property
    def dim(self) -> int:  # type: ignore[override]
        """The state dimension."""
        return self.D.shape[0]

    @property
    def noise_dim(self) -> int:  # type: ignore[override]
        """r = dim."""
        return self.D.shape[0]

    def _prepare(
        self, dim: int, dtype: torch.dtype, device: torch.device, scale: float
    ) -> _NoiseKernel:
        _check_dim(f"D has shape {tuple(self.D.shape)}", self.dim, dim)
        sigma, _ = _psd_root(self.D.to(device=device, dtype=torch.float64))
        return _FactorKernel(sigma.to(dtype), scale)


@dataclass(frozen=True, eq=False)
class FieldDiffusion(AbstractDiffusion):
    """A state-dependent D(x): a callable (n, dim) → (n, dim, dim), factored at every step.

    Cost per step: one batched Cholesky (O(dim³) per particle), plus ``eigh`` for the particles
    where D(x) is singular. A plain callable passed to :func:`simulate_sde` is wrapped in it.

    Attributes:
        fn: The field.
    """

    fn: DiffusionFn

    def _prepare(
        self, dim: int, dtype: torch.dtype, device: torch.device, scale: float
    ) -> _NoiseKernel:
        return _FieldKernel(self.fn, scale, dim)


class _FieldKernel(_NoiseKernel):
    """A state-dependent σ(x), the PSD root of D(x) at every step, with the checks."""

    def __init__(self, fn: DiffusionFn, scale: float, dim: int) -> None:
        self.fn, self.scale, self.r = fn, scale, dim

    def add_(self, out: Tensor, x: Tensor, z: Tensor) -> None:
        D = self.fn(x)
        n, dim = x.shape
        if not isinstance(D, Tensor) or tuple(D.shape) != (n, dim, dim):
            got = tuple(D.shape) if isinstance(D, Tensor) else type(D).__name__
            raise ValueError(
                f"the 'diffusion' parameter of {_WHERE} must map points of shape (n, dim) = "
                f"{(n, dim)} to matrices of shape (n, dim, dim) = {(n, dim, dim)}, got {got}."
            )
        if not bool(torch.isfinite(D).all()):
            k = int((~torch.isfinite(D)).flatten(1).any(1).nonzero()[0])
            raise FloatingPointError(
                f"the 'diffusion' parameter of {_WHERE} returned NaN or inf for particle {k} at "
                f"x = {x[k].tolist()}."
            )
        scale = D.abs().amax(dim=(-2, -1)).clamp_min(torch.finfo(D.dtype).tiny)
        asym = (D - D.transpose(-1, -2)).abs().amax(dim=(-2, -1)) / scale
        if bool((asym > 1e-8).any()):
            k = int(asym.argmax())
            raise ValueError(
                f"the 'diffusion' parameter of {_WHERE} must return symmetric matrices, got "
                f"|D − Dᵀ|/|D| = {float(asym[k]):.3g} for particle {k} at x = {x[k].tolist()}."
            )
        sigma, lam_rel = _psd_root(D)
        if bool((lam_rel < -_PSD_RTOL).any()):
            k = int(lam_rel.argmin())
            raise ValueError(
                f"the 'diffusion' parameter of {_WHERE} must return positive semi-definite "
                f"matrices, got smallest/largest eigenvalue {float(lam_rel[k]):.3g} for particle "
                f"{k} at x = {x[k].tolist()}."
            )
        out.add_(torch.einsum("nij,nj->ni", sigma, z), alpha=self.scale)


def _as_diffusion(diffusion: object) -> AbstractDiffusion:
    if isinstance(diffusion, AbstractDiffusion):
        return diffusion
    if isinstance(diffusion, Tensor | np.ndarray):
        return DenseDiffusion(torch.as_tensor(diffusion))
    if callable(diffusion):
        return FieldDiffusion(diffusion)
    raise TypeError(
        f"the 'diffusion' parameter of {_WHERE} must be a callable field x ↦ D(x), a constant "
        "(dim, dim) tensor or array, a LowRankDiffusion(L) or a DiagonalDiffusion(d), got "
        f"{type(diffusion).__name__}."
    )


class EulerMaruyama:
    r"""The Euler–Maruyama scheme :math:`x_{k+1} = x_k + b(x_k)\,h + \sqrt{2\beta^{-1}h}\,\sigma(x_k) z_k`.

    With σσᵀ = D and z_k ~ N(0, I_r). Strong order ½ and weak order 1 (Kloeden & Platen 1992,
    Thms 10.2.2 and 14.1.5); the weak order is measured in the tests on Ornstein–Uhlenbeck.
    """

    strong_order: ClassVar[float] = 0.5
    weak_order: ClassVar[float] = 1.0

    @staticmethod
    def step(
        x: Tensor, drift: Tensor, z: Tensor, dt: float, noise: _NoiseKernel, out: Tensor
    ) -> Tensor:
        """One step into ``out``: x + h b + √(2β⁻¹h) σ(x) z (x and b are not modified).

        Args:
            x: (n, dim) states.
            drift: (n, dim) b(x).
            z: (n, r) standard normals.
            dt: Step h.
            noise: The prepared noise term (√(2β⁻¹h) already folded into σ).
            out: (n, dim) buffer for the result, not aliasing x (two buffers alternate).

        Returns:
            ``out``.
        """
        torch.add(x, drift, alpha=dt, out=out)
        noise.add_(out, x, z)
        return out


def _available_bytes(device: torch.device) -> int:
    """Free memory on ``device``: CUDA ``mem_get_info``; CPU MemAvailable, capped by ulimit -v."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    free = _mem_available()
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            with open("/proc/self/statm") as fh:
                used = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            free = min(free, max(soft - used, 0))
    except (ImportError, OSError, ValueError):  # pragma: no cover - non-Linux
        pass
    return free


def _mem_available() -> int:
    """MemAvailable of /proc/meminfo (free physical pages elsewhere)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - non-Linux
        pass
    try:  # pragma: no cover - non-Linux
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return 1 << 62


def n_records(n_steps: int, record_every: int) -> int:
    """How many records a run keeps: ⌊n_steps / k⌋ + 1, plus 1 if k does not divide n_steps.

    Arithmetic only, so that the memory check runs before anything of size n_steps is built.

    Returns:
        The number of records, including step 0 and the last step.
    """
    return n_steps // record_every + 1 + (n_steps % record_every != 0)


def record_steps(n_steps: int, record_every: int) -> np.ndarray:
    """The step numbers that are recorded: 0, k, 2k, …, and ``n_steps`` (always last).

    Call it after the memory check (:func:`n_records` gives the length without building it).

    Returns:
        The recorded step numbers, ascending, int64.
    """
    steps = np.arange(0, n_steps + 1, record_every, dtype=np.int64)
    if steps[-1] != n_steps:
        steps = np.append(steps, np.int64(n_steps))
    return steps


def _allocate_records(
    n_records: int, shape: tuple[int, int], like: Tensor, what: str, unit: str
) -> Tensor:
    row = shape[0] * shape[1] * like.element_size()
    need = n_records * row
    free = _available_bytes(like.device)
    if need > 0.8 * free:
        fit = max(int(0.8 * free) // max(row, 1), 0)
        raise MemoryError(
            f"{what} would need {need / 2**30:.3g} GiB on {like.device} for {n_records} records "
            f"of {shape[0]} {unit} × dim {shape[1]}, but only {free / 2**30:.3g} GiB is free "
            f"(80% usable: {fit} records fit). Increase 'record_every' or use fewer {unit}."
        )
    return torch.empty((n_records, *shape), dtype=like.dtype, device=like.device)


BLOCK_ELEMENTS = 1 << 18
"""Target size, in elements, of one block's (particles × max(dim, r)) work arrays on CPU."""
SMALL_PROBLEM = 1 << 16
"""Below this many particle × max(dim, r) elements, a run uses one thread (see simulate_sde)."""


def block_size(n_particles: int, dim: int, noise_dim: int, device: torch.device | str) -> int:
    """Particles per block: on CPU ⌊2¹⁸ / max(dim, r)⌋ clamped to [512, 65536]; on CUDA all.

    The rule depends only on the problem's shape (never on the machine or its threads), so that
    the random stream of a given seed is the same everywhere on CPU. A block's work arrays (its
    states, drift and normals, at most ~2¹⁸ elements each, 1 MiB in float32) stay in cache across
    all the steps of the block.

    Returns:
        The number of particles a block advances together.
    """
    if torch.device(device).type != "cpu":
        return max(n_particles, 1)
    return max(min(BLOCK_ELEMENTS // max(dim, noise_dim, 1), 1 << 16), 512)


def block_seed(seed: int, block: int) -> int:
    """The seed of block ``block``'s generator: SeedSequence([seed, block]) → one uint64 < 2⁶³."""
    word = np.random.SeedSequence([seed, block]).generate_state(1, dtype=np.uint64)[0]
    return int(word) >> 1


def _raise_non_finite(
    new: Tensor, b: Tensor, x: Tensor, k: int, dt: float, offset: int = 0
) -> None:
    """Name the culprit (the drift, or the step itself) once a step produced NaN/inf."""
    bad_b = ~torch.isfinite(b).all(dim=1)
    if bool(bad_b.any()):
        j = int(bad_b.nonzero()[0])
        raise FloatingPointError(
            f"the 'drift' parameter of {_WHERE} returned NaN or inf at step {k} for particle "
            f"{j + offset} at x = {x[j].tolist()}. Check the drift there, or reduce 'dt'."
        )
    if not bool(torch.isfinite(new).all()):
        raise FloatingPointError(
            f"the state of {_WHERE} became NaN or inf at step {k} (t = {k * dt:.6g}) although "
            "the drift was finite: the scheme is unstable at this step. Reduce 'dt'."
        )


def simulate_sde(
    drift: DriftFn,
    diffusion: DiffusionFn | Tensor | np.ndarray | AbstractDiffusion,
    x0: Tensor,
    dt: float,
    n_steps: int,
    beta: float = 1.0,
    seed: int | None = 0,
    record_every: int = 1,
    *,
    check_finite: bool = True,
    threads: int | None = None,
) -> Tensor:
    r"""Simulate :math:`dx = b(x)\,dt + \sqrt{2\beta^{-1}D(x)}\,dW` for many particles at once.

    Batched Euler–Maruyama (:class:`EulerMaruyama`, strong order ½, weak order 1) of the Itô SDE
    of Chaudhari & Soatto, eq. (3), with b = −∇f for SGD, or any drift, e.g. eq. (7) or (18).
    Its density follows the Fokker–Planck equation (FP); for b = −F x and constant D the
    stationary covariance is β⁻¹ S with F S + S Fᵀ = 2D (Lemma 20, :func:`linear_decomposition`).

    Blocks and randomness: the particles are split into blocks of :func:`block_size` particles
    (on CPU ⌊2¹⁸ / max(dim, r)⌋ clamped to [512, 65536], so that a block's arrays stay in cache;
    on CUDA one block), and each block runs all its steps at once. Block j draws from its own
    ``torch.Generator`` on x0's device seeded with :func:`block_seed` (seed, j); at every step, in
    order, ``z = torch.randn((n_j, r), generator=g_j)`` with r = ``diffusion.noise_dim`` (dim for a
    field or a dense matrix). The global RNG is never touched, and the stream depends only on the
    seed and the problem's shape, not on the machine or its threads: this is part of the contract,
    so :func:`sgdscope.reference.sde.brownian_normals` and
    :func:`sgdscope.reference.sde.euler_maruyama_loop` reproduce the paths. The drift and a
    diffusion field are therefore called on blocks of particles: they must act row by row (one
    particle's velocity may not depend on the other particles), and, with several threads, be
    safe to call from several threads at once (pure torch functions are).

    Threads (CPU): while it runs, torch's intra-op thread count is set to 1 (and then restored),
    the factorisation of D included, and the blocks are shared among ``threads`` Python threads. Problems with fewer than 2¹⁶
    particle × max(dim, r) elements run on one thread (their steps take microseconds; waking
    threads would cost more, on a loaded machine up to ~100× more); larger ones default to
    ``torch.get_num_threads()``. The result does not depend on the thread count.

    Args:
        drift: b, a callable points (n, dim) → (n, dim) (torch, same device and dtype as x0).
        diffusion: D itself (not its root): a callable field (n, dim) → (n, dim, dim), a constant
            (dim, dim) tensor or array, a :class:`LowRankDiffusion` or a :class:`DiagonalDiffusion`.
        x0: (n_particles, dim) initial states; the device and the float dtype follow it.
        dt: Time step h > 0.
        n_steps: Number of steps ≥ 0.
        beta: Inverse temperature β > 0 (β⁻¹ = η/2b for SGD, eq. 3).
        seed: Seed of the generator, or None for a fresh random seed.
        record_every: Record every this many steps.
        check_finite: Check every step for NaN/inf and name the step and the culprit (one
            reduction and, on CUDA, one synchronisation per step; turn off for the last bit of
            speed).
        threads: Threads on CPU (None: the policy above; 1: this thread only). Ignored on CUDA.

    Returns:
        A tensor (n_records, n_particles, dim). Record 0 is x0; then the states after steps
        k, 2k, … (k = ``record_every``); the final state (after ``n_steps``) is always the last
        record, so n_records = ⌊n_steps / k⌋ + 1, plus 1 if k does not divide n_steps.

    Raises:
        ValueError: On a bad argument, a drift or diffusion of the wrong shape, a non-symmetric or
            non-PSD D (the particle and point are named).
        TypeError: If ``diffusion`` is of an unsupported type.
        FloatingPointError: If the drift, D or the state becomes NaN/inf (names the step).
        MemoryError: If the record buffer would not fit; says how many records would.

    Example:
        >>> import torch
        >>> x0 = torch.zeros(1000, 1, dtype=torch.float64)
        >>> xs = simulate_sde(lambda x: -x, torch.eye(1, dtype=torch.float64), x0, 0.01, 2000,
        ...                   record_every=500)
        >>> xs.shape
        torch.Size([5, 1000, 1])
        >>> abs(float(xs[-1].var()) - 1.0) < 0.15  # stationary variance β⁻¹ = 1
        True
    """
    if not isinstance(x0, Tensor) or x0.ndim != 2 or not x0.is_floating_point():
        got = (
            f"shape {tuple(x0.shape)}, dtype {x0.dtype}"
            if isinstance(x0, Tensor)
            else type(x0).__name__
        )
        raise ValueError(
            f"the 'x0' parameter of {_WHERE} must be a float tensor of shape (n_particles, dim), "
            f"got {got}. For one particle use x0[None]."
        )
    dt = check_real("dt", dt, where=_WHERE, low=0.0, low_open=True)
    n_steps = check_int("n_steps", n_steps, where=_WHERE, low=0)
    beta = check_real("beta", beta, where=_WHERE, low=0.0, low_open=True)
    record_every = check_int("record_every", record_every, where=_WHERE, low=1)
    threads = None if threads is None else check_int("threads", threads, where=_WHERE, low=1)
    if x0.device.type == "cpu":
        # everything on one intra-op thread, the factorisation of D included: on small matrices
        # and cache-sized blocks, waking a second thread costs more than it saves (on a loaded
        # machine up to ~100× more); the blocks may run on Python threads instead (see above)
        with _torch_threads(1):
            return _run(
                drift, diffusion, x0, dt, n_steps, beta, seed, record_every, check_finite, threads
            )
    return _run(drift, diffusion, x0, dt, n_steps, beta, seed, record_every, check_finite, threads)


def _run(
    drift: DriftFn,
    diffusion: object,
    x0: Tensor,
    dt: float,
    n_steps: int,
    beta: float,
    seed: int | None,
    record_every: int,
    check_finite: bool,
    threads: int | None,
) -> Tensor:
    """The body of :func:`simulate_sde` once its arguments are checked."""
    n, dim = x0.shape
    noise = _as_diffusion(diffusion)._prepare(dim, x0.dtype, x0.device, math.sqrt(2.0 * dt / beta))
    r = noise.r
    out = _allocate_records(n_records(n_steps, record_every), (n, dim), x0, _WHERE, "particles")
    base_seed = seed if seed is not None else int(torch.Generator().seed()) >> 1
    nb = block_size(n, dim, r, x0.device)
    blocks = [(s, min(s + nb, n)) for s in range(0, n, nb)] or [(0, 0)]
    out[0] = x0
    if n == 0 or n_steps == 0:
        out[-1] = x0
        return out
    stop = threading.Event()

    def run_block(j: int) -> None:
        lo, hi = blocks[j]
        gen = torch.Generator(device=x0.device)
        gen.manual_seed(block_seed(base_seed, j))
        x, spare = x0[lo:hi].clone(), torch.empty_like(x0[lo:hi])
        z = torch.empty((hi - lo, r), dtype=x0.dtype, device=x0.device)
        i_rec = 1
        for k in range(1, n_steps + 1):
            if stop.is_set():
                return
            b = drift(x)
            if not isinstance(b, Tensor) or b.shape != x.shape:
                got = tuple(b.shape) if isinstance(b, Tensor) else type(b).__name__
                raise ValueError(
                    f"the 'drift' parameter of {_WHERE} must map points of shape "
                    f"{tuple(x.shape)} to velocities of the same shape, got {got}."
                )
            torch.randn((hi - lo, r), generator=gen, out=z)
            new = EulerMaruyama.step(x, b, z, dt, noise, out=spare)
            # one reduction per step; the precise (allocating) check runs only when it fails
            if check_finite and not bool(torch.isfinite(new.sum())):
                _raise_non_finite(new, b, x, k, dt, offset=lo)
            x, spare = new, x
            if k % record_every == 0 or k == n_steps:
                out[i_rec, lo:hi] = x
                i_rec += 1

    if x0.device.type != "cpu":
        for j in range(len(blocks)):
            run_block(j)
        return out
    workers = _thread_policy(n * max(dim, r), len(blocks), threads)
    if workers == 1:
        for j in range(len(blocks)):
            run_block(j)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(run_block, j) for j in range(len(blocks))]
            try:
                for f in futures:  # the first error in block order is raised
                    f.result()
            finally:
                stop.set()
    return out


def _thread_policy(size: int, n_blocks: int, threads: int | None) -> int:
    """Worker threads for a CPU run: 1 for small problems, else torch's thread count.

    Small problems (fewer than :data:`SMALL_PROBLEM` particle × max(dim, r) elements) run on one
    thread: their steps take microseconds, and waking threads costs more (on a loaded machine up
    to ~100× more). Larger ones run their blocks on ``threads`` (default
    ``torch.get_num_threads()``) Python threads, each op single-threaded inside.

    Returns:
        The number of worker threads (1: run the blocks in this thread).
    """
    if threads is None:
        threads = 1 if size < SMALL_PROBLEM else torch.get_num_threads()
    return max(1, min(threads, n_blocks))


@contextmanager
def _torch_threads(k: int) -> Iterator[None]:
    """Set torch's intra-op thread count to ``k`` for the duration, then restore it."""
    before = torch.get_num_threads()
    if before != k:
        torch.set_num_threads(k)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
