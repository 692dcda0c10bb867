r"""One parameter's per-sample gradients over one chunk of samples, in the cheapest exact form.

A :class:`GradBlock` stands for the (n, d_p) matrix G_p whose row i is ∇_p ℓ_i, the gradient of
sample i's loss with respect to parameter p. It offers the four things the engine needs, each
without keeping more than one such matrix (capped in size) alive:

- ``project(X)`` = G_p X_p, shape (n, k);
- ``backproject(P)`` = G_pᵀ P, shape (d_p, k), or ``backproject_add_(P, out)`` into a slice of a
  result without a d_p × k temporary;
- ``sq_dist(s)`` = ‖g_i − s‖² per sample (for tr D);
- ``gram_rep()`` / :func:`gram_block`: the pieces of the Gram block G_p^a G_p^bᵀ between two chunks.

Forms:

- :class:`Materialised`: G_p itself.
- :class:`LinearFactors`: a layer s = a Wᵀ applied at T positions (a sequence, or the pixels of a
  convolution after unfolding) has g_i = Σ_t b_it a_itᵀ, with a_it the input and b_it = ∂ℓ_i/∂s_it
  the output gradient at position t. Pairwise products then follow without G_p ("ghost" products,
  Goodfellow 2015; Li et al. 2022; Wang et al. 2024):
  ⟨g_i, g_j⟩ = Σ_{t,t'} (a_it·a_jt')(b_it·b_jt'), at T²(d_in + d_out) per pair against d_in·d_out
  for materialised rows, so the factored form is used for a Gram block only when
  T²(d_in + d_out) < d_in·d_out (per pair), i.e. small T.
- :class:`EmbeddingFactors`: an embedding table looked up at token ids x_it has
  g_i = Σ_t e_{x_it} b_itᵀ; products with X gather the rows x_it of X, and Gram entries are
  Σ_{t,t'} 1[x_it = x_jt'] (b_it·b_jt'). The (n, V·D) matrix is never formed unless asked.
- :class:`SumBlock`: a parameter used more than once per forward (tied weights, a module called
  twice): the sum of its uses.

Every form materialises at most ``MAX_ELEMENTS`` numbers at a time, row slice by row slice.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch

__all__ = [
    "MAX_ELEMENTS",
    "ConcatBlock",
    "EmbeddingFactors",
    "GradBlock",
    "GramRep",
    "LinearFactors",
    "Materialised",
    "SumBlock",
    "gram_block",
    "tensor_sum",
]

MAX_ELEMENTS = 2**25
"""Largest number of per-sample gradient entries a block materialises at once (128 MiB in
float32): the engine's working set for one layer is bounded by this, whatever the chunk size."""


def tensor_sum(terms: Iterable[torch.Tensor]) -> torch.Tensor:
    """t₁ + t₂ + … of one or more tensors, a new tensor (no copy of t₁ made to start from 0).

    Returns:
        The sum, a new tensor.

    Raises:
        ValueError: If there are no terms.
    """
    it = iter(terms)
    first = next(it, None)
    if first is None:
        raise ValueError("tensor_sum needs at least one tensor")
    rest = next(it, None)
    if rest is None:
        return first.clone()
    total = first + rest  # a new tensor: the terms are never written to
    for t in it:
        total += t
    return total


def _row_slices(n: int, width: int) -> list[slice]:
    step = max(1, MAX_ELEMENTS // max(width, 1))
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]


@dataclass
class GramRep:
    """What a block keeps of one chunk for Gram products.

    ``dense`` (n, d_p) holds the centred rows g_i − ḡ when the block is materialised; otherwise
    ``factors`` holds the factored form and ``u`` (n,) = g_i·ḡ, ``c`` = ‖ḡ‖², so that the centred
    product is ⟨g_i, g_j⟩ − u_i − u_j + c.
    """

    dense: torch.Tensor | None = None
    factors: GradBlock | None = None
    u: torch.Tensor | None = None
    c: float = 0.0

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        if self.dense is not None:
            return self.dense.numel() * self.dense.element_size()
        assert self.factors is not None  # one of the two forms is kept
        return self.factors.nbytes + (0 if self.u is None else self.u.numel() * 8)


class GradBlock(ABC):
    """Per-sample gradients G_p (n, d_p) of one parameter over one chunk (see module docs)."""

    n: int
    numel: int

    @abstractmethod
    def rows(self, sl: slice, dtype: torch.dtype) -> torch.Tensor:
        """Rows ``sl`` of G_p, materialised in ``dtype``, shape (len, d_p)."""

    def add_rows_(self, out: torch.Tensor, sl: slice) -> torch.Tensor:
        """``out += rows(sl)`` in place (``out`` of shape (len, d_p)); returns ``out``."""
        return out.add_(self.rows(sl, out.dtype))

    @property
    def nbytes(self) -> int:
        """Bytes this block keeps alive (its factors), for memory plans."""
        return 0

    def materialise(self, dtype: torch.dtype) -> torch.Tensor:
        """G_p as a dense (n, d_p) matrix."""
        return self.rows(slice(0, self.n), dtype)

    def sums(self, dtype: torch.dtype) -> torch.Tensor:
        """Σ_i g_i, shape (d_p,)."""
        out: torch.Tensor | None = None
        for sl in _row_slices(self.n, self.numel):
            part = self.rows(sl, dtype).sum(0)
            out = part if out is None else out + part
        assert out is not None  # a chunk has at least one sample
        return out

    def project(self, X: torch.Tensor) -> torch.Tensor:
        """G_p X for X (d_p, k), shape (n, k), in X's dtype."""
        return torch.cat([self.rows(sl, X.dtype) @ X for sl in _row_slices(self.n, self.numel)])

    def backproject(self, P: torch.Tensor) -> torch.Tensor:
        """G_pᵀ P for P (n, k), shape (d_p, k), in P's dtype."""
        out = torch.zeros(self.numel, P.shape[1], dtype=P.dtype, device=P.device)
        return self.backproject_add_(P, out)

    def backproject_add_(self, P: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``out += G_pᵀ P`` in place, in ``out``'s dtype (no d_p × k temporary); returns ``out``."""
        P = P.to(out.dtype)
        for sl in _row_slices(self.n, self.numel):
            out.addmm_(self.rows(sl, out.dtype).T, P[sl])
        return out

    @property
    @abstractmethod
    def native_dtype(self) -> torch.dtype:
        """The dtype the per-sample gradients are formed in (the model's)."""

    def sq_dist(self, shift: torch.Tensor) -> torch.Tensor:
        """‖g_i − s‖² per sample, shape (n,), float64 (rows cast slice by slice)."""
        s = shift.double()
        parts = []
        for sl in _row_slices(self.n, self.numel):
            r = self.rows(sl, torch.float64).sub_(s)
            parts.append((r * r).sum(1))
        return torch.cat(parts)

    def factored_gram_cheaper(self) -> bool:
        """Whether the factored pairwise product is cheaper than the materialised one."""
        return False

    def keeps_rows_cheaply(self) -> bool:
        """Whether forming all n rows once (to reuse them in a product's two halves) pays."""
        return True

    def gram_rep(self, mean: torch.Tensor, dtype: torch.dtype) -> GramRep:
        """What to keep of this chunk for Gram blocks, centred on ``mean`` (ḡ_p)."""
        if self.factored_gram_cheaper():
            return GramRep(
                factors=self,
                u=self.project(mean.to(dtype)[:, None])[:, 0].double(),
                c=float(mean.double() @ mean.double()),
            )
        return GramRep(dense=self.rows(slice(0, self.n), dtype).sub_(mean.to(dtype)))

    def self_gram(self, other: GradBlock, dtype: torch.dtype) -> torch.Tensor:
        """Uncentred G_p^self G_p^otherᵀ from the factors (only for factored forms)."""
        raise NotImplementedError


class Materialised(GradBlock):
    """G_p held as a matrix (n, d_p)."""

    def __init__(self, G: torch.Tensor) -> None:
        self.G = G.reshape(G.shape[0], -1)
        self.n, self.numel = self.G.shape

    @property
    def native_dtype(self) -> torch.dtype:  # noqa: D102
        return self.G.dtype

    @property
    def nbytes(self) -> int:  # noqa: D102
        return self.G.numel() * self.G.element_size()

    def rows(self, sl: slice, dtype: torch.dtype) -> torch.Tensor:  # noqa: D102
        return self.G[sl].to(dtype, copy=True)

    def project(self, X: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if self.G.dtype == X.dtype:
            return self.G @ X
        return super().project(X)

    def backproject_add_(self, P: torch.Tensor, out: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if self.G.dtype == out.dtype:
            return out.addmm_(self.G.T, P.to(out.dtype))
        return super().backproject_add_(P, out)


class LinearFactors(GradBlock):
    r"""g_i = Σ_t b_it a_itᵀ (d_out × d_in, or its transpose), from A (n, T, d_in) and B (n, T, d_out).

    ``A`` may be a callable ``A(rows: slice)`` that builds the inputs of those samples on demand
    (a convolution's unfolded patches, k² times its input), so that they are alive only while used.
    """

    def __init__(
        self,
        A: torch.Tensor | Callable[[slice], torch.Tensor],
        B: torch.Tensor,
        d_in: int,
        *,
        transposed: bool = False,
    ) -> None:
        self._A = A
        self.B = B
        self.n, self.T, self.d_out = B.shape
        self.d_in = d_in
        self.numel = self.d_in * self.d_out
        self.transposed = transposed

    @property
    def native_dtype(self) -> torch.dtype:  # noqa: D102
        return self.B.dtype

    def sq_dist(self, shift: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if not self.factored_gram_cheaper():
            return super().sq_dist(shift)
        # ghost norms ‖g_i‖² = Σ_{t,t'} (a_t·a_t')(b_t·b_t') and g_i·s = Σ_t b_tᵀ S a_t, in float64
        A, B = self.A().double(), self.B.double()
        S = (
            shift.reshape(self.d_in, self.d_out).T
            if self.transposed
            else shift.reshape(self.d_out, self.d_in)
        )
        norms = (torch.einsum("nti,nsi->nts", A, A) * torch.einsum("nto,nso->nts", B, B)).sum(
            (1, 2)
        )
        dots = (torch.einsum("nti,oi->nto", A, S) * B).sum((1, 2))
        return norms - 2 * dots + shift @ shift

    def A(self, sl: slice | None = None) -> torch.Tensor:
        """The inputs (n, T, d_in), or those of the samples ``sl``."""
        sl = slice(None) if sl is None else sl
        return self._A(sl) if callable(self._A) else self._A[sl]

    @property
    def nbytes(self) -> int:  # noqa: D102
        per = self.B.element_size()
        return self.n * self.T * (self.d_in + self.d_out) * per

    def rows(self, sl: slice, dtype: torch.dtype) -> torch.Tensor:  # noqa: D102
        # formed in the model's dtype, like every per-sample gradient, then cast
        A, B = self.A(sl), self.B[sl]
        if self.transposed:
            G = torch.bmm(A.transpose(1, 2), B)
        else:
            G = torch.bmm(B.transpose(1, 2), A)
        return G.reshape(A.shape[0], -1).to(dtype)

    def factored_gram_cheaper(self) -> bool:  # noqa: D102
        return self.T * self.T * (self.d_in + self.d_out) < self.numel

    def self_gram(self, other: GradBlock, dtype: torch.dtype) -> torch.Tensor:  # noqa: D102
        assert isinstance(other, LinearFactors)
        Aa, Ba = self.A().to(dtype), self.B.to(dtype)
        Ab, Bb = other.A().to(dtype), other.B.to(dtype)
        if self.T == 1 and other.T == 1:
            return (Aa[:, 0] @ Ab[:, 0].T) * (Ba[:, 0] @ Bb[:, 0].T)
        out = torch.empty(self.n, other.n, dtype=dtype, device=Ba.device)
        step = max(1, MAX_ELEMENTS // max(other.n * self.T * other.T, 1))
        for i in range(0, self.n, step):
            aa = torch.einsum("atd,bsd->abts", Aa[i : i + step], Ab)
            bb = torch.einsum("atd,bsd->abts", Ba[i : i + step], Bb)
            out[i : i + step] = (aa * bb).sum((2, 3))
        return out


class EmbeddingFactors(GradBlock):
    """g_i = Σ_t e_{x_it} b_itᵀ for an embedding table (V, D) looked up at ids x (n, T)."""

    def __init__(self, ids: torch.Tensor, B: torch.Tensor, num_embeddings: int) -> None:
        self.ids = ids.reshape(ids.shape[0], -1)
        self.B = B.reshape(self.ids.shape[0], self.ids.shape[1], -1)
        self.n, self.T, self.D = self.B.shape
        self.V = num_embeddings
        self.numel = self.V * self.D

    @property
    def native_dtype(self) -> torch.dtype:  # noqa: D102
        return self.B.dtype

    @property
    def nbytes(self) -> int:  # noqa: D102
        return self.B.numel() * self.B.element_size() + self.ids.numel() * 8

    def rows(self, sl: slice, dtype: torch.dtype) -> torch.Tensor:  # noqa: D102
        m = self.ids[sl].shape[0]
        out = torch.zeros(m, self.V * self.D, dtype=self.B.dtype, device=self.B.device)
        return self.add_rows_(out, sl).to(dtype)

    def add_rows_(self, out: torch.Tensor, sl: slice) -> torch.Tensor:  # noqa: D102
        ids, B = self.ids[sl], self.B[sl].to(out.dtype)
        rows = torch.arange(ids.shape[0], device=ids.device)[:, None].expand_as(ids)
        out.view(ids.shape[0], self.V, self.D).index_put_((rows, ids), B, accumulate=True)
        return out

    def _t_step(self, k: int) -> int:
        return max(1, MAX_ELEMENTS // max(self.n * self.D * k, 1))

    def sums(self, dtype: torch.dtype) -> torch.Tensor:  # noqa: D102
        out = torch.zeros(self.V, self.D, dtype=dtype, device=self.B.device)
        out.index_add_(0, self.ids.reshape(-1), self.B.to(dtype).reshape(-1, self.D))
        return out.reshape(-1)

    def project(self, X: torch.Tensor) -> torch.Tensor:  # noqa: D102
        k = X.shape[1]
        X3 = X.reshape(self.V, self.D, k)
        P = torch.zeros(self.n, k, dtype=X.dtype, device=X.device)
        step = self._t_step(k)
        for t in range(0, self.T, step):
            ids, B = self.ids[:, t : t + step], self.B[:, t : t + step].to(X.dtype)
            P += torch.einsum("ntd,ntdk->nk", B, X3[ids])
        return P

    def backproject_add_(self, P: torch.Tensor, out: torch.Tensor) -> torch.Tensor:  # noqa: D102
        k = P.shape[1]
        table = out.view(self.V, self.D, k)  # rows of the table, in place
        P = P.to(out.dtype)
        step = self._t_step(k)
        for t in range(0, self.T, step):
            ids, B = self.ids[:, t : t + step], self.B[:, t : t + step].to(out.dtype)
            vals = torch.einsum("ntd,nk->ntdk", B, P)
            table.index_add_(0, ids.reshape(-1), vals.reshape(-1, self.D, k))
        return out

    def sq_dist(self, shift: torch.Tensor) -> torch.Tensor:  # noqa: D102
        shift = shift.double()
        diag = torch.stack([self._pair(i, i, self, shift.dtype) for i in range(self.n)])
        return diag - 2 * self.project(shift[:, None])[:, 0] + shift @ shift

    def _pair(self, i: int, j: int, other: EmbeddingFactors, dtype) -> torch.Tensor:
        same = (self.ids[i][:, None] == other.ids[j][None, :]).to(dtype)
        return (same * (self.B[i].to(dtype) @ other.B[j].to(dtype).T)).sum()

    def factored_gram_cheaper(self) -> bool:  # noqa: D102
        return self.T * self.T * self.D < self.numel

    def keeps_rows_cheaply(self) -> bool:  # noqa: D102
        return False  # gather / scatter of the T looked-up rows beats n × V·D rows

    def self_gram(self, other: GradBlock, dtype: torch.dtype) -> torch.Tensor:  # noqa: D102
        assert isinstance(other, EmbeddingFactors)
        out = torch.empty(self.n, other.n, dtype=dtype, device=self.B.device)
        Ba, Bb = self.B.to(dtype), other.B.to(dtype)
        step = max(1, MAX_ELEMENTS // max(other.n * self.T * other.T, 1))
        for i in range(0, self.n, step):
            same = self.ids[i : i + step, None, :, None] == other.ids[None, :, None, :]
            bb = torch.einsum("atd,bsd->abts", Ba[i : i + step], Bb)
            out[i : i + step] = (bb * same).sum((2, 3))
        return out


class SumBlock(GradBlock):
    """The per-sample gradient of a parameter used several times in one forward: Σ of its uses."""

    def __init__(self, parts: Sequence[GradBlock]) -> None:
        self.parts = list(parts)
        self.n, self.numel = self.parts[0].n, self.parts[0].numel

    @property
    def nbytes(self) -> int:  # noqa: D102
        return sum(p.nbytes for p in self.parts)

    def keeps_rows_cheaply(self) -> bool:  # noqa: D102
        # when one use must be materialised anyway (a tied output head), adding the others'
        # rows into it (a scatter of T looked-up rows for an embedding) costs little more
        return any(p.keeps_rows_cheaply() for p in self.parts)

    @property
    def native_dtype(self) -> torch.dtype:  # noqa: D102
        return self.parts[0].native_dtype

    def rows(self, sl: slice, dtype: torch.dtype) -> torch.Tensor:  # noqa: D102
        # start from a use whose rows are formed anyway, add the others in place
        first = next((p for p in self.parts if p.keeps_rows_cheaply()), self.parts[0])
        out = first.rows(sl, dtype)
        for p in self.parts:
            if p is not first:
                p.add_rows_(out, sl)
        return out

    def sums(self, dtype: torch.dtype) -> torch.Tensor:  # noqa: D102
        return tensor_sum(p.sums(dtype) for p in self.parts)

    def project(self, X: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return tensor_sum(p.project(X) for p in self.parts)

    def backproject_add_(self, P: torch.Tensor, out: torch.Tensor) -> torch.Tensor:  # noqa: D102
        for p in self.parts:
            p.backproject_add_(P, out)
        return out


class ConcatBlock(GradBlock):
    """Per-sample gradients of a parameter made of stacked row blocks (q, k, v of in_proj)."""

    def __init__(self, parts: list[GradBlock]) -> None:
        self.parts = parts
        self.n = parts[0].n
        self.numel = sum(p.numel for p in parts)

    @property
    def native_dtype(self) -> torch.dtype:  # noqa: D102
        return self.parts[0].native_dtype

    @property
    def nbytes(self) -> int:  # noqa: D102
        return sum(p.nbytes for p in self.parts)

    def rows(self, sl: slice, dtype: torch.dtype) -> torch.Tensor:  # noqa: D102
        return torch.cat([p.rows(sl, dtype) for p in self.parts], 1)

    def _split(self, X: torch.Tensor) -> list[torch.Tensor]:
        return list(X.split([p.numel for p in self.parts]))

    def project(self, X: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return tensor_sum(p.project(x) for p, x in zip(self.parts, self._split(X), strict=True))

    def backproject_add_(self, P: torch.Tensor, out: torch.Tensor) -> torch.Tensor:  # noqa: D102
        for p, rows in zip(self.parts, self._split(out), strict=True):
            p.backproject_add_(P, rows)
        return out

    def sums(self, dtype: torch.dtype) -> torch.Tensor:  # noqa: D102
        return torch.cat([p.sums(dtype) for p in self.parts])

    def sq_dist(self, shift: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return tensor_sum(p.sq_dist(s) for p, s in zip(self.parts, self._split(shift), strict=True))

    def keeps_rows_cheaply(self) -> bool:  # noqa: D102
        return True


def gram_block(a: GramRep, b: GramRep, dtype: torch.dtype) -> torch.Tensor:
    """The centred Gram block (g_i − ḡ)·(g_j − ḡ) between two chunks' reps, in float64."""
    if a.dense is not None:
        assert b.dense is not None  # both reps come from one parameter's blocks: the same form
        return (a.dense @ b.dense.T).double()
    assert a.factors is not None and b.factors is not None
    assert a.u is not None and b.u is not None  # kept with the factors
    K = a.factors.self_gram(b.factors, dtype).double()
    return K - a.u[:, None] - b.u[None, :] + a.c
