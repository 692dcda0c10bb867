r"""D(x) from a gradient stream: the matrix-free operator, the dense matrix, and the Gram matrix.

With G the (N, d) matrix of per-sample gradients, ḡ their mean and Gᶜ = G − 1ḡᵀ (eq. 2),

.. math::

    D = \frac{1}{N - c}\, G^{c\top} G^c, \qquad
    D X = \frac{1}{N - c} \sum_{\text{chunks}} G_{\text{chunk}}^\top P - \bar g\, (1^\top P),
    \quad P = G_{\text{chunk}} X - 1 (\bar g^\top X),

with c the ``correction``. Products go parameter by parameter through each chunk's
:class:`~.blocks.GradBlock` s, so no N × d (nor n × d) matrix is ever formed. The non-zero
eigenvalues of D are those of the N × N matrix K = Gᶜ Gᶜᵀ / (N − c) (same singular values of Gᶜ),
accumulated parameter by parameter and chunk pair by chunk pair (:func:`gram_matrix`).
"""

from __future__ import annotations

import itertools

import torch

from .._memory import MemoryBudgetError, format_bytes
from .._operator import BaseOperator
from .blocks import Materialised, gram_block, tensor_sum
from .stream import Chunk, GradientStream

__all__ = [
    "CovarianceOperator",
    "dense_covariance",
    "gram_matrix",
    "gram_vectors",
    "group_gram_matrices",
    "group_gram_vectors",
]


class CovarianceOperator(BaseOperator):
    r"""The centred gradient covariance D = (1/N) Σ (g_k − g)(g_k − g)ᵀ without forming it (eq. 2).

    Each product D @ X makes one pass over the data (or over the in-memory gradients when the
    :class:`~sgdscope.GradientNoise` caches them): X is projected onto each chunk's centred
    gradients, P = Gᶜ X, parameter by parameter, and accumulated as Gᶜᵀ P. Memory: O(d · k) for X
    and the result, plus one chunk's activations and one capped block of per-sample gradients,
    independent of N.

    Unlike curvlinops' ``EFLinearOperator`` (the uncentred Σ g_k g_kᵀ), the mean is removed.

    Args:
        stream: The :class:`~.stream.GradientStream` whose D this is.
        correction: 0 divides by N, 1 by N − 1.
        compute_dtype: dtype of the products inside a chunk (float64, or float32 for "mixed"
            precision). The result is accumulated across chunks in X's dtype: float64 for a
            float64 X (the default), float32 for a float32 X (half the d × k memory); any other
            input is cast to float64.
    """

    SELF_ADJOINT = True
    INPUT_DTYPES = (torch.float32, torch.float64)

    def __init__(
        self,
        stream: GradientStream,
        correction: int = 0,
        compute_dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__(stream.dim, torch.float64, stream.device)
        self.stream = stream
        self.correction = correction
        self.compute_dtype = compute_dtype

    def product_chunk_size(self) -> int:
        """Samples per chunk in a product: the stream's, or fewer so that the kept rows fit.

        All the rows a chunk keeps for the product's second half must fit a quarter of the
        budget. Rows that do not fit are formed twice (once for Gᶜ X, once for Gᶜᵀ P), which cost more
        than the smaller chunks' extra passes over the d × k result: on ResNet-18 (d = 11.2M,
        8 GiB, k = 64, one thread) chunks of 256 took 40.6 s per 256 images, of 48 (every row
        kept) 26.0 s, of 16 34.5 s. Which rows are kept is the stream's
        :meth:`~.stream.GradientStream.rows_kept_per_sample` (a factored embedding's are not).

        Returns:
            The chunk size, at least 8 (or the stream's, when smaller).
        """
        stream = self.stream
        item = torch.empty((), dtype=self.compute_dtype).element_size()
        fit = (stream.memory_budget // 4) // max(stream.rows_kept_per_sample() * item, 1)
        return int(min(stream.chunk_size, max(8, fit)))

    @property
    def layout(self):
        """The :class:`~sgdscope.ParamLayout` of the d coordinates."""
        return self.stream.layout

    def _matmat(self, X: torch.Tensor) -> torch.Tensor:
        stream = self.stream
        item = torch.empty((), dtype=self.compute_dtype).element_size()
        # the result, in X's dtype, and X in the compute dtype when that differs
        need = X.numel() * (X.element_size() + (item if X.dtype != self.compute_dtype else 0))
        if need > stream.memory_budget:
            raise MemoryBudgetError(
                f"a product D @ X with X of shape {tuple(X.shape)} ({X.dtype}) needs "
                f"{format_bytes(need)} for the result and X in the compute dtype, over the memory "
                f"budget of {format_bytes(stream.memory_budget)}. Multiply fewer columns at a time."
            )
        mean = stream.moments()[0]
        Xc = X.to(self.compute_dtype)
        gX = (mean.to(X.dtype) @ X).double()  # ḡᵀX, in X's dtype like the products
        out = torch.zeros_like(X)
        keep_budget = stream.memory_budget // 4
        p_total = torch.zeros_like(gX)

        def local() -> None:  # Gᶜᵀ P into out and 1ᵀP into p_total over this rank's chunks
            for chunk in stream.chunks("D products", chunk_size=self.product_chunk_size()):
                self._add_chunk(chunk, Xc, gX, out, p_total, keep_budget)

        stream.reducer.run("D products", local, replicated=(X,))
        stream.reducer.sum_("D products", out, p_total)
        out.addr_(mean.to(out.dtype), p_total.to(out.dtype), alpha=-1.0)  # − ḡ (1ᵀP), over chunks
        return out.div_(stream.n - self.correction)

    def _add_chunk(
        self,
        chunk: Chunk,
        Xc: torch.Tensor,
        gX: torch.Tensor,
        out: torch.Tensor,
        p_total: torch.Tensor,
        keep_budget: int,
    ) -> None:
        """One chunk's Gᶜᵀ P into ``out`` and 1ᵀP into ``p_total``; its rows die on return."""
        layout = self.stream.layout
        item = torch.empty((), dtype=self.compute_dtype).element_size()
        # A factored block's rows are formed once and kept for the second half of the
        # product while the chunk's kept rows fit a quarter of the budget (independent of N).
        kept: dict[str, torch.Tensor] = {}
        used = 0
        P = -gX.expand(chunk.n, -1).clone()
        for name, block in chunk.blocks.items():
            Xp = Xc[layout.slice(name)]
            size = chunk.n * block.numel * item
            if block.keeps_rows_cheaply() and used + size <= keep_budget:
                rows = block.materialise(self.compute_dtype)
                kept[name], used = rows, used + size
                P += (rows @ Xp).double()
            else:
                P += block.project(Xp).double()
        Pc = P.to(self.compute_dtype)
        for name, block in chunk.blocks.items():
            held = kept.pop(name, None)  # the kept rows, or the block forms them again
            source = block if held is None else Materialised(held)
            source.backproject_add_(Pc, out[layout.slice(name)])
        p_total += P.sum(0)


def dense_covariance(stream: GradientStream, correction: int = 0) -> torch.Tensor:
    """D as a dense (d, d) float64 matrix, from one shifted pass (the caller checks memory)."""
    d = stream.dim
    S = torch.zeros(d, d, dtype=torch.float64, device=stream.device)
    total = torch.zeros(d, dtype=torch.float64, device=stream.device)
    chunks = stream.chunks("dense D")
    first, shift = stream.agreed_shift("dense D", chunks)

    def local() -> None:
        for chunk in itertools.chain([first], chunks):
            Gs = chunk.materialise(torch.float64).sub_(shift)
            S.addmm_(Gs.T, Gs)
            total.add_(Gs.sum(0))

    stream.reducer.run("dense D", local)
    stream.reducer.sum_("dense D", S, total)
    delta = total / stream.n
    S.sub_(torch.outer(delta, delta), alpha=stream.n).div_(stream.n - correction)
    return 0.5 * (S + S.T)


def gram_matrix(stream: GradientStream, dtype: torch.dtype, rep_budget: int) -> torch.Tensor:
    r"""Kᶜ = Gᶜ Gᶜᵀ (N × N, float64, not yet divided by N − c), without the N × d matrix.

    See :func:`group_gram_matrices`, of which this is the one-group case.

    Returns:
        Kᶜ, shape (N, N), float64.
    """
    return group_gram_matrices(stream, dtype, rep_budget, {"all": list(stream.layout.names)})["all"]


def group_gram_matrices(
    stream: GradientStream, dtype: torch.dtype, rep_budget: int, groups: dict[str, list[str]]
) -> dict[str, torch.Tensor]:
    r"""Kᶜ_g = Gᶜ_g Gᶜ_gᵀ for every parameter group g, from the same passes over the data.

    Samples are taken in *panels*: each panel's per-parameter Gram pieces (centred rows, or the
    factors of a factored layer) are kept while the rest of the data streams past chunk by
    chunk, filling the panel's rows of K; then the next panel. When every piece fits
    ``rep_budget`` there is one panel and one pass; otherwise passes ≈ (panels + 1) / 2.

    Returns:
        ``{group: Kᶜ_g}``, each (N, N) float64.

    Raises:
        MemoryBudgetError: If not even two chunks' pieces fit ``rep_budget``.
    """
    if stream.reducer.distributed:
        from ._sharded_gram import sharded_group_gram_matrices

        return sharded_group_gram_matrices(stream, dtype, rep_budget, groups)
    n = stream.n
    mean = stream.moments()[0]
    layout = stream.layout
    Ks = {g: torch.zeros(n, n, dtype=torch.float64, device=stream.device) for g in groups}

    def reps(chunk):
        return (
            chunk.start,
            chunk.n,
            {
                name: block.gram_rep(mean[layout.slice(name)], dtype)
                for name, block in chunk.blocks.items()
            },
        )

    def fill(a, b) -> None:
        (sa, na, ra), (sb, nb, rb) = a, b
        per_param = {p: gram_block(ra[p], rb[p], dtype) for p in ra}
        for g, members in groups.items():
            block = tensor_sum(per_param[p] for p in members)
            Ks[g][sa : sa + na, sb : sb + nb] = block
            Ks[g][sb : sb + nb, sa : sa + na] = block.T

    def nbytes(rep) -> int:
        return sum(r.nbytes for r in rep[2].values())

    c = stream.chunk_size
    first = reps(next(stream.chunks("Gram pieces", 0, min(c, n))))
    per_sample = nbytes(first) / first[1]
    if 2 * per_sample > rep_budget:
        raise MemoryBudgetError(
            f"spectrum(method='gram') keeps the Gram pieces of at least two samples "
            f"({format_bytes(2 * per_sample)}), over the {format_bytes(rep_budget)} left of the "
            "memory budget after the N × N matrix. Use fewer samples or method='randomized', or "
            "raise memory_budget."
        )
    if 2 * nbytes(first) > rep_budget:  # smaller chunks for this computation only
        c = max(1, int(rep_budget // (3 * per_sample)))
        del first  # before the smaller first chunk is computed
        first = reps(next(stream.chunks("Gram pieces", 0, min(c, n), chunk_size=c)))
    # the panel's pieces, plus one streamed chunk's pieces and its working memory (activations,
    # output gradients, one layer's rows: a quarter of the budget, twice the chunk rule's eighth)
    room = rep_budget - c * per_sample - stream.memory_budget // 4
    panel = max(c, int(room // max(per_sample, 1) // c) * c)
    # the streamed chunk's pieces are dropped before the next chunk is computed (the stream
    # releases the chunk itself), and the first panel's pieces with the panel
    held, begin, start = [first], first[1], 0
    del first
    while start < n:
        stop = min(start + panel, n)
        for ch in stream.chunks("Gram panel", begin, stop, chunk_size=c):
            held.append(reps(ch))
        for i, a in enumerate(held):
            for b in held[: i + 1]:
                fill(a, b)
        for ch in stream.chunks("Gram rows", stop, n, chunk_size=c):
            other = reps(ch)
            for a in held:
                fill(other, a)
            del other
        held, begin, start = [], stop, stop
    return Ks


def gram_vectors(stream: GradientStream, U: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Gᶜᵀ U (d, r) for U (N, r) in one pass: eigenvectors of D from those of K, unnormalised."""
    names = list(stream.layout.names)
    return group_gram_vectors(stream, {"all": (names, U)}, dtype)["all"]


def group_gram_vectors(
    stream: GradientStream, wanted: dict[str, tuple[list[str], torch.Tensor]], dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """Gᶜ_gᵀ U_g (d_g, r_g) for every group g = (its parameter names, U_g (N, r_g)), in one pass.

    The result is accumulated and returned in ``dtype``: float64, or the gradients' float32 under
    mixed precision, which halves the d × r block (9 GB instead of 18 GB for 64 eigenvectors of a
    36M-parameter model) at a relative error of about √(chunks) · 2⁻²⁴.

    Returns:
        ``{group: Gᶜ_gᵀ U_g}``, each (d_g, r_g) in ``dtype``.
    """
    layout = stream.layout
    mean = stream.moments()[0]
    outs: dict[str, torch.Tensor] = {}
    offsets: dict[str, dict[str, slice]] = {}
    for g, (members, U) in wanted.items():
        offsets[g] = {}
        pos = 0
        for p in members:
            numel = layout.slice(p).stop - layout.slice(p).start
            offsets[g][p] = slice(pos, pos + numel)
            pos += numel
        outs[g] = torch.zeros(pos, U.shape[1], dtype=dtype, device=stream.device)
    first = stream.reducer.offset  # this rank's rows of U

    def local() -> None:
        for chunk in stream.chunks("eigenvectors"):
            for g, (members, U) in wanted.items():
                rows = slice(first + chunk.start, first + chunk.start + chunk.n)
                Uc = U[rows].to(dtype)
                for p in members:
                    chunk.blocks[p].backproject_add_(Uc, outs[g][offsets[g][p]])

    replicated = [U for _, U in wanted.values()]
    stream.reducer.run("eigenvectors", local, replicated=replicated)
    stream.reducer.sum_("eigenvectors", *outs.values())
    for g, (members, U) in wanted.items():
        gbar = torch.cat([mean[layout.slice(p)] for p in members])
        outs[g].addr_(gbar.to(dtype), U.sum(0).to(dtype), alpha=-1.0)
    return outs
