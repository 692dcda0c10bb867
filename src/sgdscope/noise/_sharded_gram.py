r"""The Gram matrices Kᶜ_g = Gᶜ_g Gᶜ_gᵀ when the samples are sharded across ranks.

Rank r holds the per-sample gradients G_r of its N_r samples only, but K has blocks
K_rs = Gᶜ_r Gᶜ_sᵀ for every pair of ranks. Gradients cannot be recomputed elsewhere (the data is
the rank's), so the centred rows travel: each rank cuts its shard into *panels* of at most
``panel`` samples, and in round (i, j) it keeps its own panel i while every rank's panel j goes
around the ring r → r + 1 (:meth:`~.distributed.Reducer.ring`). Each unordered pair of panels
is multiplied by exactly one rank: by the holder of the first panel when the second comes from
a rank less than half the ring ahead (ties broken by rank), and within one rank when i ≤ j.
Every rank writes its blocks (and their transposes) into an N × N zero matrix, and one
all-reduce of N² float64 numbers per group assembles K on every rank, exactly (every entry has
one writer).

**Communication per rank**: the centred rows of every other rank's samples pass through once
per round of i: (P · (N − N_r) · d) numbers in the compute dtype (P = ⌈max_r N_r / panel⌉
rounds; P = 1 when a shard's rows fit the budget), plus the N² all-reduce. Against the
randomized method's ~20–40 products of 2·d·k float64 each, the exchange is cheaper when
N·itemsize < 40·16·k, i.e. N ≲ 2,500 at k = 32 in float32 rows: the Gram method is the exact
choice for small N, block Krylov for large N (docs/distributed.md has the cost model).

Rows are exchanged materialised (d numbers per sample) even where a layer's factored form would
be smaller: the factored "ghost" products are used within a rank only.

**Memory per rank**: K (N² float64 per group), and three panels of rows (this rank's, the one
being sent and the one being received) beside one chunk's working memory.
"""

from __future__ import annotations

import math
from functools import partial

import torch

from .._memory import MemoryBudgetError, format_bytes
from .blocks import tensor_sum
from .stream import GradientStream

__all__ = ["sharded_group_gram_matrices"]


def _computes(rank: int, src: int, world: int, i: int, j: int) -> bool:
    """Whether this rank multiplies its panel i by rank ``src``'s panel j (one side of each pair)."""
    if src == rank:
        return i <= j
    ahead = (src - rank) % world
    return 2 * ahead < world or (2 * ahead == world and rank < src)


def sharded_group_gram_matrices(
    stream: GradientStream, dtype: torch.dtype, rep_budget: int, groups: dict[str, list[str]]
) -> dict[str, torch.Tensor]:
    """Kᶜ_g (N × N float64, not yet divided by N − c) for every group, over all ranks' samples.

    Returns:
        ``{group: Kᶜ_g}``, each (N, N) float64 and the same on every rank.

    Raises:
        MemoryBudgetError: If three panels of one sample's rows do not fit ``rep_budget``.
    """
    red = stream.reducer
    n, d, world, rank = stream.n, stream.dim, red.world_size, red.rank
    mean = stream.moments()[0].to(dtype)
    layout = stream.layout
    whole = len(groups) == 1 and list(next(iter(groups.values()))) == list(layout.names)
    slices = {g: [layout.slice(p) for p in members] for g, members in groups.items()}
    per_sample = d * torch.empty((), dtype=dtype).element_size()
    room = rep_budget - stream.memory_budget // 4  # one streamed chunk's working memory
    panel = int(room // (3 * per_sample))
    if panel < 1:
        raise MemoryBudgetError(
            f"spectrum(method='gram') across {world} ranks exchanges centred rows of d = {d} "
            f"numbers and keeps three panels of them ({format_bytes(3 * per_sample)} for one "
            f"sample each), over the {format_bytes(max(room, 0))} left of the memory budget. Use "
            "method='randomized' (O(d·k) per rank), or raise memory_budget."
        )
    rounds = max(1, math.ceil(max(red.counts) / panel))
    offsets = [sum(red.counts[:r]) for r in range(world)]

    def lengths(j: int) -> list[int]:
        return [max(0, min(panel, c - j * panel)) for c in red.counts]

    def rows(j: int) -> torch.Tensor:
        """This rank's centred rows of panel j, (length, d) in ``dtype``."""
        start = j * panel
        stop = min(start + panel, stream.n_local)
        out = torch.empty(max(stop - start, 0), d, dtype=dtype, device=stream.device)
        if stop > start:
            for chunk in stream.chunks("Gram rows", start, stop):
                a = chunk.start - start
                out[a : a + chunk.n] = chunk.materialise(dtype)
            out -= mean
        return out

    Ks = {g: torch.zeros(n, n, dtype=torch.float64, device=stream.device) for g in groups}

    def fill(L: torch.Tensor, R: torch.Tensor, i: int, src: int, j: int) -> None:
        a = offsets[rank] + i * panel
        b = offsets[src] + j * panel
        for g, sls in slices.items():
            if whole:
                block = (L @ R.T).double()
            else:
                block = tensor_sum((L[:, sl] @ R[:, sl].T).double() for sl in sls)
            Ks[g][a : a + L.shape[0], b : b + R.shape[0]] = block
            Ks[g][b : b + R.shape[0], a : a + L.shape[0]] = block.T

    for i in range(rounds):
        L = red.run("Gram rows", partial(rows, i))
        for j in range(rounds):
            mine = L if j == i else red.run("Gram rows", partial(rows, j))
            for src, R in red.ring("Gram panels", mine, lengths(j)):
                if L.shape[0] and R.shape[0] and _computes(rank, src, world, i, j):
                    fill(L, R, i, src, j)
    red.sum_("Gram matrices", *Ks.values())
    return Ks
