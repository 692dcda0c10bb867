"""What a spectrum computation will allocate on each rank, said before any heavy work starts.

:meth:`GradientNoise.memory_plan <sgdscope.GradientNoise.memory_plan>` returns a frozen
:class:`MemoryPlan`; the ``sgdscope spectrum`` command prints it and refuses a plan that does not
fit. Under torch.distributed every rank allocates the same solver state (it is replicated) and
one chunk of its own shard; the budget is the smallest of the ranks' budgets.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._memory import format_bytes

__all__ = ["MemoryPlan"]

RANDOMIZED_COLUMNS = 12
"""float64 d-vectors the block Krylov method keeps per eigenpair asked for (a basis and its
images of up to 4 blocks, and the eigenvectors): its allocation is 12 · d · 8 bytes per column."""


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes a spectrum computation allocates per rank, and what would fit instead.

    Attributes:
        method: The spectrum method that will run ("dense", "gram", "randomized").
        reason: Why (as in :attr:`Spectrum.reason`).
        k: Eigenpairs asked for (None: all, or all above the threshold).
        budget: Bytes allowed per rank (the smallest rank's budget).
        world_size: Ranks taking part.
        n_samples: N, all ranks' samples.
        n_local: This rank's samples.
        dim: d.
        chunk_size: Samples per chunk.
        chunk_bytes: One chunk's working memory (activations, output gradients, one layer's
            per-sample rows), estimated from one sample's activations.
        cache_bytes: Per-sample gradients kept in memory (this rank's N_r × d, or 0).
        solver_bytes: The method's own allocations (replicated on every rank): 3 d² float64 for
            dense; 4 N² float64, the eigenvectors and room for two chunks' Gram pieces for gram;
            12 · d · max(k, 32) float64 for randomized.
        groups_bytes: One N × N float64 matrix per parameter group and one eigh (per-group
            spectra; 0 without them).
        largest_k: The largest k the randomized method could take beside the chunk and cache.
        largest_chunk: The largest chunk that fits beside the solver, groups and cache.
    """

    method: str
    reason: str
    k: int | None
    budget: int
    world_size: int
    n_samples: int
    n_local: int
    dim: int
    chunk_size: int
    chunk_bytes: int
    cache_bytes: int
    solver_bytes: int
    groups_bytes: int
    largest_k: int
    largest_chunk: int

    @property
    def total(self) -> int:
        """Bytes allocated per rank at the peak (estimated)."""
        return self.solver_bytes + self.groups_bytes + self.chunk_bytes + self.cache_bytes

    @property
    def fits(self) -> bool:
        """Whether :attr:`total` is within :attr:`budget`."""
        return self.total <= self.budget

    def lines(self) -> list[str]:
        """The plan as readable lines (what the CLI prints)."""
        ranks = f" per rank, {self.world_size} ranks" if self.world_size > 1 else ""
        k = "all" if self.k is None else f"{self.k}"
        out = [
            f"memory plan{ranks}: budget {format_bytes(self.budget)}, N = {self.n_samples:,}"
            + (f" ({self.n_local:,} on this rank)" if self.world_size > 1 else "")
            + f", d = {self.dim:,}",
            f"  solver ({self.method}, k = {k}): {format_bytes(self.solver_bytes)}"
            + (" (replicated on every rank)" if self.world_size > 1 else ""),
            f"  one chunk of {self.chunk_size:,} samples: {format_bytes(self.chunk_bytes)}",
        ]
        if self.cache_bytes:
            out.append(f"  per-sample gradient cache: {format_bytes(self.cache_bytes)}")
        if self.groups_bytes:
            out.append(f"  per-group Gram matrices: {format_bytes(self.groups_bytes)}")
        out.append(
            f"  total {format_bytes(self.total)} of {format_bytes(self.budget)}"
            f" ({'fits' if self.fits else 'does NOT fit'}); largest k that fits (randomized): "
            f"{self.largest_k:,}; largest chunk: {self.largest_chunk:,} samples"
        )
        return out


def randomized_bytes(dim: int, k: int | None) -> int:
    """The randomized method's allocation: 12 float64 d-vectors per column, at least 32 columns."""
    return RANDOMIZED_COLUMNS * max(k or 32, 4) * dim * 8
