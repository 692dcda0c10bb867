r"""Data-parallel measurement on ``torch.distributed``: every sum over samples taken across ranks.

Under ``torchrun`` (gloo on CPU, NCCL on GPU) each rank of a process group holds a *shard* of the
data, N_r samples, with N = Σ_r N_r. Every statistic of D(x) (eq. 2) is a sum over samples, so each
rank sums over its own shard and one ``all_reduce`` (the collective of a DDP gradient step) adds
the ranks' parts:

- moments (ḡ, Σ‖g_k − ḡ‖²): d + 2 numbers, after a shift s agreed on from every rank's first
  chunk (d + 1 numbers), so that the result equals one process on the concatenated data to
  float64 round-off;
- an operator product D X, X of shape (d, k): the d·k float64 entries of Gᶜᵀ P plus the k of 1ᵀP;
- the dense D: d² numbers, once;
- Gram matrices: see :mod:`._sharded_gram` (a ring exchange of centred rows, then N² numbers).

The eigensolvers' state (Krylov basis, Lanczos vectors, the N × N Gram matrix) is **replicated**:
every rank runs the same deterministic iteration on the same all-reduced numbers, so every rank
holds the same result. A fingerprint of each product's input travels with the product's status,
so ranks whose replicas drift apart (different torch builds or hardware) stop with an error
instead of waiting for each other in different iterations.

**Errors.** Every rank runs its local part of a reduction inside :meth:`Reducer.run`; before the
sum, one small ``all_reduce`` tells every rank whether any failed, and the first failing rank's
message is broadcast, so every rank raises the same :class:`RankError`. A rank that dies or hangs
without reporting is caught by the process group's timeout (``init_process_group(timeout=…)``):
the collective fails on the other ranks, which raise a :class:`RankError` saying so.

Samples are numbered globally in rank order: rank r's sample i is sample ``offset_r + i`` of the
concatenated data (what the Gram matrix's rows and eigenvector coefficients refer to).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import TypeVar, cast

import torch
import torch.distributed as dist

__all__ = ["RankError", "Reducer", "shard", "shard_bounds", "subset", "unwrap_data_parallel"]

T = TypeVar("T")

_COALESCE_BELOW = 2**16
"""Tensors with fewer entries are summed together in one buffer (one collective); larger ones
are summed in place, one collective each, without a copy."""


class RankError(RuntimeError):
    """A rank of a distributed measurement failed; every rank raises this, with the same message."""


def shard_bounds(n: int, world_size: int) -> list[tuple[int, int]]:
    """Contiguous shards of ``n`` samples for ``world_size`` ranks, sizes differing by at most 1."""
    base, extra = divmod(n, world_size)
    bounds, start = [], 0
    for r in range(world_size):
        stop = start + base + (1 if r < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def shard(data, rank: int | None = None, world_size: int | None = None, *, group=None):
    """This rank's contiguous share of ``data`` (the first ranks get one sample more when uneven).

    Concatenating the shards in rank order gives ``data`` back, so a distributed measurement on
    the shards equals one process on ``data``. Accepts what :class:`~sgdscope.GradientNoise`
    accepts: a tuple ``(inputs, targets)`` (inputs a tensor, tuple or dict of tensors), a dict of
    tensors with ``"labels"``, a map-style Dataset, or a DataLoader over one.

    Args:
        data: The whole data set.
        rank: The rank; None for this process's rank in ``group`` (0 without torch.distributed).
        world_size: The number of ranks; None for the size of ``group`` (1 without it).
        group: The process group (None: the default group).

    Returns:
        The shard, in the form ``data`` came in (a Subset for a Dataset, a DataLoader over one for
        a DataLoader).

    Raises:
        ValueError: On a rank outside [0, world_size) or more ranks than samples.
    """
    from ._data import DataSource

    initialised = dist.is_available() and dist.is_initialized()
    if rank is None:
        rank = dist.get_rank(group) if initialised else 0
    if world_size is None:
        world_size = dist.get_world_size(group) if initialised else 1
    if not 0 <= rank < world_size:
        raise ValueError(f"the 'rank' parameter of shard must be in [0, {world_size}), got {rank}.")
    n = DataSource(data, where="shard").n
    if n < world_size:
        raise ValueError(
            f"the 'data' parameter of shard holds {n} samples, fewer than the {world_size} ranks; "
            "every rank needs at least one sample. Use fewer processes or more data."
        )
    start, stop = shard_bounds(n, world_size)[rank]
    return subset(data, start, stop)


def subset(data, start: int, stop: int):
    """Samples [start, stop) of ``data``, in the form it came in (any form :func:`shard` takes)."""
    from torch.utils.data import DataLoader, Dataset, Subset

    from ._data import take

    if isinstance(data, DataLoader):
        return DataLoader(Subset(data.dataset, range(start, stop)), collate_fn=data.collate_fn)
    if isinstance(data, Dataset):
        return Subset(data, range(start, stop))
    if isinstance(data, dict):
        return {k: v[start:stop] if torch.is_tensor(v) and v.ndim else v for k, v in data.items()}
    inputs, targets = data
    return take(inputs, slice(start, stop)), targets[start:stop]


FSDP_ALTERNATIVE = (
    "sgdscope needs every parameter whole on every rank (data parallelism): gather the full "
    "parameters (e.g. torch.distributed.checkpoint.state_dict.get_model_state_dict(model, "
    "options=StateDictOptions(full_state_dict=True))), load them into an unsharded copy of the "
    "model, and pass that copy (or wrap it in DistributedDataParallel); if the whole model does "
    "not fit one device, measure a part of it with params=... on an unsharded copy of that part."
)


def unwrap_data_parallel(model: torch.nn.Module, *, where: str) -> torch.nn.Module:
    """The module inside ``DistributedDataParallel`` / ``DataParallel``; FSDP is refused.

    DDP all-reduces gradients from hooks on the ``AccumulateGrad`` step of ``.backward()``; sgdscope
    differentiates with ``torch.autograd.grad`` through the wrapped module itself, which runs
    neither DDP's forward bookkeeping nor that step, so no DDP collective is triggered and the
    model's ``.grad`` fields are left alone: measuring between two DDP steps is harmless.

    Returns:
        The innermost wrapped module (``model`` itself when it is not wrapped).

    Raises:
        ValueError: On a model with FSDP-sharded parameters (FSDP or ``fully_shard``, DTensor
            parameters), with what to do instead.
    """
    from torch.nn.parallel import DataParallel, DistributedDataParallel

    while isinstance(model, DistributedDataParallel | DataParallel):
        model = model.module
    sharded = []
    sharding_modules: tuple[type, ...] = ()  # the wrappers of this torch build
    sharded_tensors: tuple[type, ...] = ()
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel

        sharding_modules += (FullyShardedDataParallel,)
    except ImportError:  # pragma: no cover - builds without distributed
        pass
    try:
        from torch.distributed.fsdp import FSDPModule

        sharding_modules += (FSDPModule,)
    except ImportError:  # pragma: no cover - torch < 2.6
        pass
    try:
        from torch.distributed.tensor import DTensor

        sharded_tensors += (DTensor,)
    except ImportError:  # pragma: no cover
        pass
    for name, m in model.named_modules():
        if isinstance(m, sharding_modules):
            sharded.append(name or type(m).__name__)
    if not sharded and sharded_tensors:
        sharded = [n for n, p in model.named_parameters() if isinstance(p, sharded_tensors)]
    if sharded:
        raise ValueError(
            f"the 'model' parameter of {where} has FSDP-sharded parameters ({', '.join(sharded[:4])}"
            f"{' …' if len(sharded) > 4 else ''}): no rank holds them whole, so a rank cannot form "
            f"its samples' gradients of them without gathering every layer. {FSDP_ALTERNATIVE}"
        )
    return model


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


class Reducer:
    """Sums across the ranks of a process group; in one process every operation is the identity.

    Args:
        process_group: The group whose ranks hold the shards; None for the default group when
            ``torch.distributed`` is initialised, else no distribution; False for this process
            alone even when it is (a measurement made on one rank of a DDP job).
        where: The caller, for error messages.

    Raises:
        ValueError: If a group is passed but ``torch.distributed`` is not initialised.
    """

    def __init__(self, process_group=None, *, where: str = "GradientNoise") -> None:
        alone = process_group is False
        initialised = not alone and dist.is_available() and dist.is_initialized()
        if process_group is not None and not alone and not initialised:
            raise ValueError(
                f"the 'process_group' parameter of {where} was given, but torch.distributed is not "
                "initialised; call torch.distributed.init_process_group first (torchrun sets the "
                "environment it needs), or pass process_group=None for one process."
            )
        self.group = process_group if initialised else None  # (False: this process only)
        self.rank = dist.get_rank(self.group) if initialised else 0
        self.world_size = dist.get_world_size(self.group) if initialised else 1
        self.backend = str(dist.get_backend(self.group)) if initialised else None
        self.counts: list[int] = []
        self.bytes_reduced = 0
        """Payload bytes this rank has contributed to sums, all-reduces and ring steps."""

    # ------------------------------------------------------------------------ facts
    @property
    def distributed(self) -> bool:
        """Whether more than one rank takes part."""
        return self.world_size > 1

    @property
    def is_writer(self) -> bool:
        """Whether this rank writes files and shows progress (rank 0)."""
        return self.rank == 0

    @property
    def n_total(self) -> int:
        """N, the samples of all ranks (after :meth:`set_count`)."""
        return sum(self.counts)

    @property
    def offset(self) -> int:
        """Global index of this rank's first sample."""
        return sum(self.counts[: self.rank])

    def _device(self) -> torch.device:
        """Where collectives run: the current CUDA device for NCCL, else the CPU."""
        if self.backend == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def _global(self, rank: int) -> int:
        return rank if self.group is None else dist.get_global_rank(self.group, rank)

    def _collective(self, what: str, fn: Callable[[], T]) -> T:
        """Run a collective; a failure (a rank died, or the group's timeout passed) → RankError."""
        try:
            return fn()
        except RuntimeError as err:  # DistBackendError, gloo's timeouts and closed connections
            raise RankError(
                f"a collective of sgdscope ({what}) failed on rank {self.rank} of "
                f"{self.world_size}: {str(err).strip().splitlines()[0][:300]}. Another rank "
                "stopped without reporting (it crashed, was killed, or is stuck beyond the process "
                "group's timeout, set with init_process_group(timeout=...))."
            ) from err

    # ------------------------------------------------------------------------ agreement
    def run(
        self,
        what: str,
        compute: Callable[[], T],
        *,
        replicated: Sequence[torch.Tensor] = (),
    ) -> T:
        """Run this rank's part ``compute()``, then make sure every rank succeeded.

        One small all-reduce carries each rank's status and a fingerprint of the ``replicated``
        tensors (which must be equal on every rank). If any rank failed, every rank raises a
        :class:`RankError` with the first failing rank's message.

        Returns:
            What ``compute()`` returned on this rank.

        Raises:
            RankError: If a rank raised, or the replicated tensors differ between ranks.
        """
        if not self.distributed:
            return compute()
        error: Exception | None = None
        result: T | None = None
        try:
            result = compute()
        except Exception as err:
            error = err
        prints = [float(t.double().sum()) for t in replicated] + [
            float(t.double().square().sum()) for t in replicated
        ]
        status = torch.zeros(self.world_size, 1 + len(prints), dtype=torch.float64)
        status[self.rank, 0] = 1.0 if error is not None else 0.0
        status[self.rank, 1:] = torch.tensor(prints, dtype=torch.float64)
        status = status.to(self._device())
        self._collective(what, lambda: dist.all_reduce(status, group=self.group))
        status = status.cpu()
        failed = torch.nonzero(status[:, 0]).flatten().tolist()
        if failed:
            first = failed[0]
            box = [
                f"rank {self.rank} of {self.world_size} stopped in {what}: {_describe(error)}"
                if self.rank == first and error is not None  # (the first failed rank has one)
                else None
            ]
            self._collective(
                what,
                lambda: dist.broadcast_object_list(
                    box, src=self._global(first), group=self.group, device=self._device()
                ),
            )
            raise RankError(box[0]) from error
        if prints and not bool((status[:, 1:] == status[0, 1:]).all()):
            raise RankError(
                f"the replicated state of {what} differs between ranks (fingerprints "
                f"{status[:, 1:].tolist()}); every rank must run the same deterministic iteration. "
                "Run every rank with the same torch build, device type and thread count "
                "(torchrun sets OMP_NUM_THREADS=1), and the same seed."
            )
        # No rank failed, this one included: compute() returned (maybe None, so no assert).
        return cast(T, result)

    def check_same(self, what: str, value: Sequence[float], hint: str) -> None:
        """Raise :class:`RankError` on every rank unless ``value`` is the same on all ranks."""
        if not self.distributed:
            return
        mine = torch.tensor([float(v) for v in value], dtype=torch.float64)
        both = torch.cat([mine, -mine]).to(self._device())
        self._collective(
            what, lambda: dist.all_reduce(both, op=dist.ReduceOp.MAX, group=self.group)
        )
        both = both.cpu()
        if not bool((both[: mine.numel()] == -both[mine.numel() :]).all()):
            raise RankError(f"{what} differs between ranks (rank {self.rank}: {value}); {hint}")

    # ------------------------------------------------------------------------ sums
    def set_count(self, n_local: int) -> None:
        """Share every rank's number of samples (one all-gather of W integers)."""
        if not self.distributed:
            self.counts = [int(n_local)]
            return
        counts = torch.zeros(self.world_size, dtype=torch.float64)
        counts[self.rank] = n_local
        counts = counts.to(self._device())
        self._collective("the shard sizes", lambda: dist.all_reduce(counts, group=self.group))
        self.counts = [int(c) for c in counts.cpu().tolist()]

    def sum_(self, what: str, *tensors: torch.Tensor) -> None:
        """Replace each tensor, in place, by its sum over the ranks (small ones summed in float64)."""
        if not self.distributed:
            return
        small = [t for t in tensors if t.numel() < _COALESCE_BELOW]
        large = [t for t in tensors if t.numel() >= _COALESCE_BELOW]
        device = self._device()
        if small:
            buf = torch.cat([t.reshape(-1).to(device, torch.float64) for t in small])
            self._all_reduce(what, buf)
            pos = 0
            for t in small:
                t.copy_(buf[pos : pos + t.numel()].view(t.shape))
                pos += t.numel()
        for t in large:
            if t.device == device and t.is_contiguous():
                self._all_reduce(what, t)
            else:
                buf = t.to(device).contiguous()
                self._all_reduce(what, buf)
                t.copy_(buf)

    def _all_reduce(self, what: str, t: torch.Tensor) -> None:
        self.bytes_reduced += t.numel() * t.element_size()
        self._collective(what, lambda: dist.all_reduce(t, group=self.group))

    def max(self, what: str, values: Sequence[float]) -> list[float]:
        """The largest of each value over the ranks (e.g. measured times, for one decision)."""
        if not self.distributed:
            return [float(v) for v in values]
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self._device())
        self._collective(what, lambda: dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.group))
        return t.cpu().tolist()

    def min_int(self, what: str, value: int) -> int:
        """The smallest of an integer over the ranks (e.g. memory budgets)."""
        return -int(self.max(what, [-float(value)])[0])

    def common_seed(self, seed: int | None) -> int | None:
        """``seed``, or for None a random seed drawn on rank 0 and shared, so replicas agree."""
        if seed is not None or not self.distributed:
            return seed
        # a fresh generator's entropy: the global RNG is left alone
        drawn = torch.Generator().seed() % 2**52 if self.rank == 0 else 0
        return int(self.max("the random seed", [float(drawn)])[0])

    # ------------------------------------------------------------------------ ring
    def ring(
        self, what: str, panel: torch.Tensor, lengths: Sequence[int]
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(source rank, its panel)`` for every rank's panel, this rank's first.

        Panels travel around the ring r → r + 1: at step t each rank forwards the panel it
        received at step t − 1 and receives rank (r − t)'s. ``lengths[s]`` is rank s's number
        of rows (known to every rank); panels of zero rows are not sent.
        """
        yield self.rank, panel
        if not self.distributed:
            return
        device = self._device()
        nxt, prv = (self.rank + 1) % self.world_size, (self.rank - 1) % self.world_size
        send = panel.to(device)
        for t in range(1, self.world_size):
            origin_sent = (self.rank - t + 1) % self.world_size
            src = (self.rank - t) % self.world_size
            recv = torch.empty((lengths[src], *panel.shape[1:]), dtype=panel.dtype, device=device)
            ops = []
            if lengths[origin_sent]:
                ops.append(dist.P2POp(dist.isend, send, self._global(nxt), self.group))
                self.bytes_reduced += send.numel() * send.element_size()
            if lengths[src]:
                ops.append(dist.P2POp(dist.irecv, recv, self._global(prv), self.group))
            if ops:
                works = self._collective(what, partial(dist.batch_isend_irecv, ops))
                for w in works:
                    self._collective(what, w.wait)
            send = recv
            yield src, recv.to(panel.device)
