"""How :meth:`GradientNoise.spectrum` computes the eigenvalues of D: dense, Gram, randomized.

Each method is a function of the gradient stream (and, for the randomized method, the public
:class:`~.covariance.CovarianceOperator`, the tested path) that returns a frozen
:class:`~sgdscope.Spectrum`; :func:`choose_method` picks one for ``method="auto"`` and says why.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from enum import Enum
from typing import TypedDict

import numpy as np
import torch

from .._memory import MemoryBudgetError, format_bytes
from .._progress import progress_bar
from .covariance import (
    CovarianceOperator,
    dense_covariance,
    gram_matrix,
    gram_vectors,
    group_gram_matrices,
    group_gram_vectors,
)
from .eigensolvers import ConvergenceError, block_krylov, eigenpairs_above, eigh_descending
from .spectrum import Spectrum
from .stream import GradientStream

__all__ = [
    "Precision",
    "SpectrumMethod",
    "choose_method",
    "compute_group_spectra",
    "compute_spectrum",
]

EXACT_MAX = 6000
"""auto: exact methods (dense / Gram eigh) when min(N, d) is at most this (an eigh of a 6000 × 6000
float64 matrix takes about a minute on two CPU cores); randomized otherwise."""


class SpectrumMethod(str, Enum):
    """How :meth:`GradientNoise.spectrum` computes the eigenvalues of D."""

    AUTO = "auto"
    DENSE = "dense"
    GRAM = "gram"
    RANDOMIZED = "randomized"


class Precision(str, Enum):
    """Arithmetic of the products inside a chunk; accumulation across chunks is float64."""

    FLOAT64 = "float64"
    MIXED = "mixed"


def rounding_floor(centred_sq: float, n: int, mean_sq: float, denom: int, dtype) -> float:
    r"""Eigenvalues of D below this cannot be told from rounding of the per-sample gradients.

    Each g_k is held in ``dtype``, with relative rounding ε (unit roundoff). The computed D then
    differs from the exact one by δD with ‖δD‖₂ ≤ 2ε · (1/(N − c)) Σ_k ‖g_k‖² (to first order),
    and by Weyl's inequality every eigenvalue moves by at most ‖δD‖₂. With Σ_k ‖g_k‖² =
    Σ_k ‖g_k − ḡ‖² + N ‖ḡ‖² (``centred_sq``, ``mean_sq``). This floor does not grow with d, unlike
    the paper's λ_max · d · ε_float32, which reaches λ_max at d ≈ 8.4M.

    Returns:
        The floor 2ε · (centred_sq + n · mean_sq) / denom.
    """
    eps = float(torch.finfo(dtype).eps) / 2
    return 2 * eps * (centred_sq + n * mean_sq) / denom


def noise_floor(stream: GradientStream, correction: int) -> float:
    """:func:`rounding_floor` of the whole D, from the stream's moments."""
    _mean, sq, mean_sq = stream.moments()
    return rounding_floor(sq, stream.n, mean_sq, stream.n - correction, stream.grad_dtype)


def exact_bytes(
    stream: GradientStream, method: SpectrumMethod, vectors: int, vector_itemsize: int = 8
) -> int:
    """Bytes an exact method allocates before its data pass.

    Dense: D, its eigenvectors and LAPACK work (3 d² float64). Gram: K and its eigh (4 N²
    float64), the d × r eigenvectors (``vector_itemsize`` bytes each: 8, or 4 under mixed
    precision) and their N × r coefficients, and room for the Gram pieces
    of at least two chunks (estimated as materialised per-sample gradients, capped at a quarter
    of the budget: factored layers need less).

    Returns:
        The bytes, an upper estimate.
    """
    if method is SpectrumMethod.DENSE:
        return 3 * stream.dim**2 * 8 + stream.dim * 8
    # the Gram pieces (first phase) and the eigenvectors (second phase) are never alive together
    return max(
        gram_fixed_bytes(stream, vectors, vector_itemsize), gram_fixed_bytes(stream, 0)
    ) + min(2 * stream.chunk_size * stream.dim * stream.grad_itemsize, stream.memory_budget // 4)


def gram_fixed_bytes(stream: GradientStream, vectors: int, vector_itemsize: int = 8) -> int:
    """The Gram method's allocations that do not depend on the panel size."""
    return 4 * stream.n**2 * 8 + vectors * (stream.dim * vector_itemsize + stream.n * 8)


def gram_panel_budget(stream: GradientStream, vectors: int) -> int:
    """Bytes left for the Gram pieces of a panel while K is accumulated.

    K is complete, and the panels freed, before the d × r eigenvectors are allocated, so the
    pieces share the budget with K, its eigh and the N × r coefficients only.

    Returns:
        The bytes.
    """
    return stream.memory_budget - gram_fixed_bytes(stream, 0) - vectors * stream.n * 8


def choose_method(
    stream: GradientStream, method: SpectrumMethod, k: int | None, vectors: int
) -> tuple[SpectrumMethod, str]:
    """The method for ``method="auto"`` and the reason, as a sentence."""
    if method is not SpectrumMethod.AUTO:
        return method, "requested"
    n, d = stream.n, stream.dim
    exact = SpectrumMethod.DENSE if d <= n else SpectrumMethod.GRAM
    size = min(n, d)
    fits = exact_bytes(stream, exact, vectors) <= stream.memory_budget
    if size <= EXACT_MAX and fits:
        return (
            exact,
            f"auto: min(N, d) = {size} ≤ {EXACT_MAX} and the {size}² matrix fits the budget",
        )
    if k is not None and 4 * k >= size and fits:
        return (
            exact,
            f"auto: k = {k} is a large share of min(N, d) = {size}; the exact method is cheaper",
        )
    if exact is SpectrumMethod.GRAM and fits:
        gram_s, rand_s, how = _estimated_costs(stream, k, vectors)
        if gram_s <= rand_s:
            return (
                exact,
                f"auto: N = {n} > {EXACT_MAX} but the Gram method is estimated cheaper ({how})",
            )
        return (
            SpectrumMethod.RANDOMIZED,
            f"auto: the randomized method is estimated cheaper ({how})",
        )
    why = (
        f"min(N, d) = {size} > {EXACT_MAX}"
        if size > EXACT_MAX
        else f"the {size}² matrix does not fit the memory budget"
    )
    return SpectrumMethod.RANDOMIZED, f"auto: {why}; the randomized method needs O(d·k) memory"


RANDOMIZED_PASSES = 20
"""Passes the block Krylov top-k solver typically makes at tol = 1e-5 (4 to 22 measured on the
test problems; more for clustered spectra), for the auto cost model."""


def _estimated_costs(
    stream: GradientStream, k: int | None, vectors: int
) -> tuple[float, float, str]:
    """Seconds estimated for the Gram and the randomized methods, from measured rates.

    One pass over the data costs what the moments pass took (measured, made first anyway); a
    dense symmetric eigh of size m costs m³ times the rate measured on a 256 × 256 matrix on the
    same device. Gram: 1 + ⌈panels / 2⌉ (+ 1 for eigenvectors) passes and the N × N eigh;
    randomized: ``RANDOMIZED_PASSES`` passes (k = None: the rank search, about twice that).

    Returns:
        ``(gram seconds, randomized seconds, how)``, ``how`` the estimate in words.
    """
    t0 = time.perf_counter()
    stream.moments()
    pass_s = max(stream.moments_seconds, time.perf_counter() - t0)
    A = torch.randn(256, 256, dtype=torch.float64, device=stream.device)
    t1 = time.perf_counter()
    torch.linalg.eigh(A + A.T)
    rate = max(time.perf_counter() - t1, 1e-6) / 256**3
    # every rank must choose the same method: the slowest rank's rates decide
    pass_s, rate = stream.reducer.max("the auto method's timings", [pass_s, rate])
    n = stream.n
    per_sample = stream.dim * stream.grad_itemsize  # Gram pieces: at most the materialised row
    room = max(gram_panel_budget(stream, vectors), 1)
    panels = max(1, math.ceil(n * per_sample / room))
    gram_passes = 1 + math.ceil(panels / 2) + (1 if vectors else 0)
    eigh_s = rate * n**3
    gram_s = gram_passes * pass_s + eigh_s
    rand_passes = RANDOMIZED_PASSES * (2 if k is None else 1)
    rand_s = rand_passes * pass_s
    how = (
        f"one pass {pass_s:.3g} s measured; Gram ≈ {gram_passes} passes + an eigh of {n}² "
        f"≈ {gram_s:.3g} s, randomized ≈ {rand_passes} passes ≈ {rand_s:.3g} s"
    )
    return gram_s, rand_s, how


def _require(need: int, budget: int, what: str, instead: str) -> None:
    if need > budget:
        raise MemoryBudgetError(
            f"{what} needs {format_bytes(need)}, over the memory budget of {format_bytes(budget)}. "
            f"{instead}"
        )


def _fewer_vectors(stream: GradientStream, vectors: int, itemsize: int) -> str:
    """The advice on eigenvectors when the Gram method does not fit: the most that would fit."""
    fit = next(
        (r for r in range(vectors - 1, -1, -1)
         if exact_bytes(stream, SpectrumMethod.GRAM, r, itemsize) <= stream.memory_budget),
        None,
    )  # fmt: skip
    if fit is None:  # not even the eigenvalues alone
        return ""
    if fit:
        return f"Ask for at most eigenvectors={fit} (of the {vectors} asked), use"
    return "Ask for no eigenvectors (eigenvectors=False), use"


def _finish(info: dict, stream: GradientStream, **extra) -> dict:
    """The result's info: the caller's, plus the time taken and the data passes so far."""
    out = {k: v for k, v in info.items() if k not in ("t0", "passes0")}
    out.update(seconds=time.perf_counter() - info["t0"], data_passes=stream.passes, **extra)
    return out


def _normalise_in_place(Vt: torch.Tensor, values: np.ndarray, denom: int) -> torch.Tensor:
    """v = Gᶜᵀu / √((N − c) λ), in place (no masked copy of the d × r block); 0 where λ = 0."""
    scale = torch.as_tensor(values, dtype=torch.float64, device=Vt.device) * denom
    inv = torch.where(scale > 0, scale.clamp_min(np.finfo(np.float64).tiny).rsqrt(), 0.0)
    return Vt.mul_(inv.to(Vt.dtype))


class _Common(TypedDict):
    """The fields every method's :class:`~sgdscope.Spectrum` shares."""

    dim: int
    n_samples: int
    trace: float
    reason: str


class _KrylovOptions(TypedDict):
    """The options :func:`eigenpairs_above` and :func:`block_krylov` share."""

    tol: float
    max_iter: int
    generator: torch.Generator | None
    dtype: torch.dtype
    device: torch.device | str
    on_iteration: Callable[[int, float], None] | None


def compute_spectrum(
    stream: GradientStream,
    *,
    correction: int,
    method: SpectrumMethod,
    reason: str,
    k: int | None,
    vectors: int,
    precision: Precision,
    tol: float,
    rtol: float,
    max_iter: int,
    generator: torch.Generator | None,
    throw: bool,
    info: dict,
) -> Spectrum:
    """Run one method and return its frozen :class:`~sgdscope.Spectrum` (see GradientNoise.spectrum)."""
    compute = torch.float64 if precision is Precision.FLOAT64 else stream.grad_dtype
    denom = stream.n - correction
    floor = noise_floor(stream, correction)
    _mean, sq, _ = stream.moments()
    trace = sq / denom
    common = _Common(dim=stream.dim, n_samples=stream.n, trace=trace, reason=reason)
    if method is SpectrumMethod.DENSE:
        _require(
            3 * stream.dim**2 * 8, stream.memory_budget, f"spectrum(method='dense') with d = {stream.dim}",
            "Use method='gram' (N < d) or 'randomized' (O(d·k) memory), or raise memory_budget.",
        )  # fmt: skip
        values, U = eigh_descending(dense_covariance(stream, correction))
        values = np.clip(values, 0.0, None)  # D ⪰ 0; negative values are round-off
        r = values.size if k is None else k
        return Spectrum(
            eigenvalues=values[:r], eigenvectors=U[:, :vectors].cpu().numpy() if vectors else None,
            complete=k is None, method="dense", noise_floor=floor, precision="float64", info=_finish(info, stream), **common,
        )  # fmt: skip
    if method is SpectrumMethod.GRAM:
        n = stream.n
        itemsize = torch.finfo(compute).bits // 8
        _require(
            exact_bytes(stream, method, vectors, itemsize), stream.memory_budget,
            f"spectrum(method='gram') with N = {n}, d = {stream.dim} and {vectors} eigenvectors "
            "(an N × N matrix, its eigh, and d × r eigenvectors)",
            (_fewer_vectors(stream, vectors, itemsize) or "Use")
            + " fewer samples, or method='randomized', or raise memory_budget.",
        )  # fmt: skip
        K = gram_matrix(stream, compute, gram_panel_budget(stream, vectors))
        K /= denom
        values, U = eigh_descending(K)
        del K
        r = min(n - 1, stream.dim) if k is None else k
        values = np.clip(values[:r], 0.0, None)
        V: np.ndarray | None = None
        if vectors:
            m = min(vectors, r)
            Vt = gram_vectors(stream, U[:, :m].contiguous(), compute)
            V = _normalise_in_place(Vt, values[:m], denom).cpu().numpy()
        return Spectrum(
            eigenvalues=values, eigenvectors=V, complete=k is None, method="gram",
            noise_floor=floor, precision=precision.value, info=_finish(info, stream), **common,
        )  # fmt: skip
    operator = CovarianceOperator(stream, correction, compute)
    max_rank = max(min(stream.n - 1, stream.dim), 1)
    b = max(k or 32, 4)  # block Krylov keeps up to 4b basis columns and their images
    _require(
        (8 * b + 4 * b) * stream.dim * 8, stream.memory_budget,
        f"spectrum(method='randomized') with k = {k or 32} at d = {stream.dim} (the Krylov basis, "
        "its images and the eigenvectors, float64)",
        "Ask for a smaller k, or raise memory_budget.",
    )  # fmt: skip
    with progress_bar("eigensolver passes", None, enabled=stream.progress) as advance:
        kwargs = _KrylovOptions(
            tol=tol, max_iter=max_iter, generator=generator, dtype=torch.float64,
            device=stream.device, on_iteration=lambda _it, _res: advance(),
        )  # fmt: skip
        if k is None:
            res = eigenpairs_above(operator.matmat, stream.dim, rtol, max_rank=max_rank, **kwargs)
        else:
            res = block_krylov(operator.matmat, stream.dim, k, **kwargs)
    used_tol = min(tol, 0.01 * rtol) if k is None else tol
    values = np.clip(res.values, 0.0, None)
    floor = max(floor, used_tol * (float(values[0]) if values.size else 0.0))
    if not res.converged and throw:
        worst = (
            float(np.max(res.residuals) / max(values[0], np.finfo(float).tiny))
            if values.size
            else math.nan
        )
        raise ConvergenceError(
            f"the randomized eigensolver did not converge in {res.iterations} passes: the worst "
            f"relative residual is {worst:.3g} > tol = {used_tol:.3g}. Raise max_iter, loosen tol, "
            "or use an exact method (method='gram' when N < d); spectrum(..., throw=False) "
            "returns the unconverged result, flagged converged=False."
        )
    return Spectrum(
        eigenvalues=values, eigenvectors=res.vectors[:, :vectors].cpu().numpy() if vectors else None,
        complete=values.size >= max_rank, method="randomized", residuals=res.residuals,
        iterations=res.iterations, converged=bool(res.converged), noise_floor=floor,
        precision=precision.value, info=_finish(info, stream, tol=used_tol), **common,
    )  # fmt: skip


def compute_group_spectra(
    stream: GradientStream,
    groups: dict[str, list[str]],
    *,
    correction: int,
    k: int | None,
    vectors: int,
    precision: Precision,
    info: dict,
) -> dict[str, Spectrum]:
    """Exact spectra of D restricted to each parameter group (its diagonal blocks), one pass.

    Every group's N × N Gram matrix K_g = Gᶜ_g Gᶜ_gᵀ / (N − c) is accumulated in the same panel
    passes as the whole model's (the blocks are computed once per parameter and summed per
    group); the top ``vectors`` eigenvectors of every group come from one more pass.

    Returns:
        ``{group: Spectrum}``, each frozen, method ``"gram"``.
    """
    compute = torch.float64 if precision is Precision.FLOAT64 else stream.grad_dtype
    n, denom = stream.n, stream.n - correction
    layout = stream.layout
    dims = {
        g: sum(layout.slice(p).stop - layout.slice(p).start for p in m) for g, m in groups.items()
    }
    fixed = (
        len(groups) * n * n * 8
        + 3 * n * n * 8
        + sum(min(vectors, n) * (dims[g] + n) * 8 for g in groups)
    )
    _require(
        fixed, stream.memory_budget,
        f"group_spectra with {len(groups)} groups, N = {n} and {vectors} eigenvectors each (an N × N "
        "matrix per group, one eigh, and the eigenvectors)",
        "Use fewer groups (e.g. groups='module'), fewer samples or fewer eigenvectors.",
    )  # fmt: skip
    Ks = group_gram_matrices(stream, compute, stream.memory_budget - fixed, groups)
    mean = stream.moments()[0]
    results, wanted, values_of = {}, {}, {}
    for g, K in Ks.items():
        gbar = torch.cat([mean[layout.slice(p)] for p in groups[g]])
        sq = float(K.trace())  # Σ_k ‖g_k,g − ḡ_g‖²
        floor = rounding_floor(sq, n, float(gbar @ gbar), denom, stream.grad_dtype)
        values, U = eigh_descending(K / denom)
        r = min(n - 1, dims[g]) if k is None else min(k, n - 1, dims[g])
        values_of[g] = (np.clip(values[:r], 0.0, None), sq / denom, floor)
        m = min(vectors, r)
        if m:
            wanted[g] = (groups[g], U[:, :m].contiguous())
        del K
    vecs = group_gram_vectors(stream, wanted, compute) if wanted else {}
    for g, (values, trace, floor) in values_of.items():
        V = None
        if g in vecs:
            Vt = vecs[g]
            V = _normalise_in_place(Vt, values[: Vt.shape[1]], denom).cpu().numpy()
        results[g] = Spectrum(
            eigenvalues=values, eigenvectors=V, dim=dims[g], n_samples=n, trace=trace,
            complete=k is None or k >= min(n - 1, dims[g]), method="gram",
            reason=f"group {g!r}: {len(groups[g])} parameter(s)", noise_floor=floor,
            precision=precision.value, info=_finish(info, stream, params=list(groups[g])),
        )  # fmt: skip
    return results
