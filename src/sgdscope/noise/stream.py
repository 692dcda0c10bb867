r"""The gradient stream: per-sample gradients of the selected parameters, chunk by chunk.

A :class:`GradientStream` owns everything between the user's model and data and the linear
algebra: which parameters make up x (their :class:`~sgdscope.ParamLayout`), the model mode, the
chunking of the N samples, and how a chunk's per-sample gradients are produced:

- ``backend="hooks"``: one ordinary forward and backward per chunk, each parameter's gradients
  delivered as a :class:`~.blocks.GradBlock` (factored where that is cheaper); memory per chunk is
  the chunk's activations and output gradients plus one capped block of per-sample gradients,
  independent of N and of d beyond the parameters themselves;
- ``backend="vmap"``: ``torch.func`` vmap(grad) over the chunk, which materialises the chunk's
  (n, d) gradients (needed when the forward is random, e.g. dropout in train mode);
- ``backend="auto"``: hooks, after checking on the first samples that they reproduce a
  one-sample-at-a-time backward loop; otherwise vmap, with a warning that says why.

It also accumulates the first two moments in one pass, shifted against cancellation (the
first chunk's mean is the shift s): ḡ = s + (1/N) Σ (g_k − s) and
Σ ‖g_k − ḡ‖² = Σ ‖g_k − s‖² − N ‖ḡ − s‖².
"""

from __future__ import annotations

import itertools
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import torch
from torch import nn

from .._memory import MemoryBudgetError, format_bytes
from .._params import LossFn, ParamLayout, model_mode
from .._progress import progress_bar
from ._data import DataSource, call_model, to_device
from ._hooks import HookedGradients, UnbatchedOutput
from .blocks import GradBlock, Materialised
from .distributed import Reducer
from .per_sample import make_per_sample_gradients, per_sample_gradients_loop

__all__ = ["Backend", "Chunk", "GradientStream"]


_CHUNK_TARGET_BYTES = {"cpu": 256 * 1024**2, "cuda": 2 * 1024**3}
"""Working memory aimed at per chunk (capped by the budget): large enough to keep the BLAS / GPU
busy, small enough to stay in the CPU's memory bandwidth sweet spot."""


class Backend(str, Enum):
    """How a :class:`GradientStream` computes a chunk's per-sample gradients."""

    AUTO = "auto"
    HOOKS = "hooks"
    VMAP = "vmap"


@dataclass(frozen=True)
class Chunk:
    """One chunk's per-sample gradients: samples ``start : start + n``, one block per parameter."""

    start: int
    n: int
    blocks: dict[str, GradBlock]
    sums: dict[str, torch.Tensor] | None = None
    """Σ_i g_i per parameter when the backend gives it for free (the batch gradient)."""

    def materialise(self, dtype: torch.dtype) -> torch.Tensor:
        """The chunk's (n, d) per-sample gradients, parameters in layout order."""
        return torch.cat([b.materialise(dtype) for b in self.blocks.values()], dim=1)

    def release(self) -> None:
        """Drop the chunk's blocks and sums (what a consumer kept of them stays alive)."""
        self.blocks.clear()
        if self.sums is not None:
            self.sums.clear()


class GradientStream:
    """Per-sample gradients of a model on a data set, chunk by chunk (see the module docs).

    Args:
        model: The network; samples must not interact in its forward.
        loss_fn: Per-sample loss ``loss_fn(outputs, targets) -> (n,)``.
        source: The data.
        names: The parameters that make up x, in layout order.
        device: Where to compute.
        eval_mode: Run the model in eval mode (modes restored afterwards).
        chunk_size: Samples per chunk, or None to size it from ``memory_budget``.
        memory_budget: Bytes the stream may use.
        cache: Keep all (N, d) per-sample gradients after the first pass (True/False).
        progress: Show progress bars.
        check_finite: Check every chunk for NaN/inf and name the sample and parameter.
        stochastic: The forward draws random numbers (forces the vmap backend).
        backend: "auto", "hooks" or "vmap".
        reducer: The ranks that hold the other shards of the data (None: one process); it must
            know every rank's number of samples (:meth:`~.distributed.Reducer.set_count`).
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        source: DataSource,
        names: Sequence[str],
        *,
        device: torch.device,
        eval_mode: bool,
        chunk_size: int | None,
        memory_budget: int,
        cache: bool,
        progress: bool,
        check_finite: bool,
        stochastic: bool,
        backend: Backend,
        reducer: Reducer | None = None,
    ) -> None:
        self.model, self.loss_fn, self.source = model, loss_fn, source
        if reducer is None:
            reducer = Reducer()
            reducer.set_count(source.n)
        self.reducer = reducer
        self.names = list(names)
        self.device = device
        self.eval_mode = eval_mode
        self.memory_budget = memory_budget
        self.progress = progress and reducer.is_writer  # rank 0 alone shows progress
        self.check_finite = check_finite
        named = dict(model.named_parameters())
        self.layout = ParamLayout.from_named((n, named[n]) for n in self.names)
        self._trainable = {n: named[n].detach().to(device) for n in self.names}
        self._constants = {
            n: p.detach().to(device) for n, p in named.items() if n not in self._trainable
        }
        self._constants.update({n: b.to(device) for n, b in model.named_buffers()})
        self.grad_dtype = self._trainable[self.names[0]].dtype
        self._vmap = make_per_sample_gradients(model, loss_fn, self.names, stochastic=stochastic)
        self.backend, self.backend_reason = self._choose_backend(backend, stochastic)
        self.sample_bytes, auto = self._chunk_rule()
        """Working memory of one sample in a chunk (estimated): the memory plan's unit."""
        self.chunk_size = chunk_size if chunk_size is not None else auto
        self.cache = cache
        self._cache: torch.Tensor | None = None
        self._cache_complete = False
        self._moments: tuple[torch.Tensor, float, float] | None = None
        self._kept_numel: int | None = None  # see rows_kept_per_sample
        self.moments_seconds = 0.0
        """Seconds the moments pass took: the auto method's measured cost of one pass."""
        self._samples_computed = 0

    # ---------------------------------------------------------------------------- basics
    @property
    def n(self) -> int:
        """N, the number of samples (of every rank, under torch.distributed)."""
        return self.reducer.n_total

    @property
    def n_local(self) -> int:
        """The samples of this rank's shard (N in one process)."""
        return self.source.n

    @property
    def dim(self) -> int:
        """d, the number of parameters in x."""
        return self.layout.dim

    @property
    def passes(self) -> float:
        """Passes over the data made so far: samples computed, over this rank's samples.

        A partial pass counts its share; passes served from the cache do not count.
        """
        return self._samples_computed / self.n_local

    @property
    def grad_itemsize(self) -> int:
        """Bytes per entry of a per-sample gradient."""
        return torch.empty((), dtype=self.grad_dtype).element_size()

    # ---------------------------------------------------------------------------- backend
    def _vmap_chunk(self, x: Any, y: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        with model_mode(self.model, self.eval_mode):
            try:
                return self._vmap(self._trainable, self._constants, x, y, out=out).detach()
            except RuntimeError as err:
                if "saved tensor hooks" not in str(err):
                    raise
                raise ValueError(
                    "the model uses activation checkpointing (or another saved-tensor hook), which "
                    "torch.func.vmap does not support, so backend='vmap' cannot run it. Use "
                    "backend='hooks' (the default), which recomputes as training does."
                ) from err

    def _choose_backend(self, backend: Backend, stochastic: bool) -> tuple[Backend, str]:
        if backend is Backend.VMAP:
            return backend, "requested"
        if stochastic:
            if backend is Backend.HOOKS:
                raise ValueError(
                    "backend='hooks' needs a deterministic forward, but the model has dropout in "
                    "training mode; use eval_mode=True or backend='vmap' (one random draw per sample)."
                )
            return Backend.VMAP, "the forward draws random numbers (dropout in train mode)"
        x, y = self.source.first(3)
        x, y = to_device(x, self.device), y.to(self.device)
        try:
            with model_mode(self.model, self.eval_mode):
                self._hooks = HookedGradients(self.model, self.loss_fn, self.names, (x, y))
                blocks, _, _ = self._hooks(x, y)
            hooked = {n: b.materialise(self.grad_dtype) for n, b in blocks.items()}
        except (UnbatchedOutput, RuntimeError) as err:
            return self._fall_back(backend, f"per-layer hooks failed on the first samples ({err})")
        with model_mode(self.model, self.eval_mode):  # the slow exact way, on three samples
            G = per_sample_gradients_loop(self.model, self.loss_fn, x, y, params=self.names)
        bad = []
        overall = G.abs().max().item()
        for name in self.names:
            ref = G[:, self.layout.slice(name)]
            # relative to the parameter's own scale, with a floor at the gradient's round-off
            # (a key bias has zero gradient in exact arithmetic: both sides are round-off)
            tol = 1e-4 * ref.abs().max().item() + 1e-6 * overall + torch.finfo(ref.dtype).tiny
            if not (hooked[name] - ref).abs().max().item() <= tol:
                bad.append(name)
        if not bad:
            reason = "per-layer hooks reproduce a per-sample backward loop on the first samples"
            return Backend.HOOKS, reason if backend is Backend.AUTO else "requested"
        return self._fall_back(
            backend,
            f"per-layer hooks do not reproduce the per-sample gradients of {bad[:5]}"
            f"{' …' if len(bad) > 5 else ''} on the first samples (a parameter used outside its "
            "module's forward, or a forward that mixes samples inside a module)",
        )

    @staticmethod
    def _fall_back(backend: Backend, why: str) -> tuple[Backend, str]:
        """vmap instead of hooks, said in a warning; an error when hooks were asked for."""
        if backend is Backend.HOOKS:
            raise ValueError(f"backend='hooks': {why}. Use backend='vmap'.")
        warnings.warn(
            f"sgdscope: {why}; using vmap per-sample gradients instead (exact, more memory).",
            stacklevel=7,  # the caller of GradientNoise(...)
        )
        return Backend.VMAP, why

    def _chunk_rule(self) -> tuple[int, int]:
        """(working bytes per sample, samples per chunk so that a chunk fits the chunk target)."""
        act = [0]

        def hook(_m, _i, out):
            if torch.is_tensor(out):
                act[0] += out.numel() * out.element_size()

        # leaf modules only: a container's output is its last child's, counted once
        handles = [
            m.register_forward_hook(hook) for m in self.model.modules() if not list(m.children())
        ]
        try:
            x, _ = self.source.first(1)
            with torch.no_grad(), model_mode(self.model, self.eval_mode):
                call_model(self.model, to_device(x, self.device))
        finally:
            for h in handles:
                h.remove()
        if self.backend is Backend.VMAP:
            per_sample = self.dim * (2 * self.grad_itemsize + 8) + 4 * act[0]
            target = min(
                _CHUNK_TARGET_BYTES.get(self.device.type, _CHUNK_TARGET_BYTES["cpu"]),
                self.memory_budget // 8,
            )
        else:
            # activations kept for the backward, the output gradients, and the work of one
            # layer's rows; larger chunks amortise the O(d·k) traffic of each product over
            # more samples, so the hooks path takes an eighth of the budget
            per_sample = 4 * act[0] + 1
            target = self.memory_budget // 8
        size = int(max(1, min(4096, target // max(per_sample, 1), self.n_local)))
        return int(per_sample), size

    # --------------------------------------------------------------------------- chunks
    def _full_cache(self) -> torch.Tensor | None:
        """The cached gradients once they hold every sample of this rank, else None."""
        return self._cache if self._cache_complete else None

    def _compute(
        self, ids: torch.Tensor, x: Any, y: torch.Tensor, out: torch.Tensor | None
    ) -> Chunk:
        x, y = to_device(x, self.device), y.to(self.device)
        n, start = y.shape[0], int(ids[0])
        if self.backend is Backend.VMAP:
            G = self._vmap_chunk(x, y, out=out)
            self._check_rows(ids, G)
            return Chunk(
                start, n, {name: Materialised(G[:, self.layout.slice(name)]) for name in self.names}
            )
        with model_mode(self.model, self.eval_mode):
            blocks, losses, sums = self._hooks(x, y)
        if self.check_finite and not (
            torch.isfinite(losses).all() and all(torch.isfinite(s).all() for s in sums.values())
        ):
            for name in self.names:
                self._check_rows(ids, blocks[name].materialise(self.grad_dtype), name)
        chunk = Chunk(start, n, blocks, sums)
        if self._kept_numel is None:  # the blocks' forms are the same in every chunk
            self._kept_numel = sum(b.numel for b in blocks.values() if b.keeps_rows_cheaply())
        if out is not None:
            out.copy_(chunk.materialise(self.grad_dtype))
        return chunk

    def rows_kept_per_sample(self) -> int:
        """Entries per sample of the blocks whose rows a product keeps between its two halves.

        Every block of a cached or vmap chunk is materialised (d entries); on the hooks path a
        factored embedding is not. Noted from the first chunk computed (one sample is computed
        if none was yet).

        Returns:
            The number of entries.
        """
        if self.backend is Backend.VMAP or self._full_cache() is not None:
            return self.dim
        if self._kept_numel is None:
            for _ in self.chunks("the blocks' forms (one sample)", 0, 1, chunk_size=1):
                pass
        assert self._kept_numel is not None  # set by the chunk just computed
        return self._kept_numel

    def _check_rows(self, ids: torch.Tensor, G: torch.Tensor, name: str | None = None) -> None:
        """Raise on the first NaN/inf of a chunk's gradients, naming the sample and parameter."""
        # A column sum is finite iff no entry is NaN/inf (barring overflow of finite values,
        # which the exact search below then clears); it allocates d numbers, not n·d flags.
        if not self.check_finite or torch.isfinite(G.sum(0)).all():
            return
        bad = (~torch.isfinite(G)).nonzero()
        if bad.numel():
            row, col = bad[0].tolist()
            value = G[row, col].item()
            offset = 0 if name is None else self.layout.slice(name).start
            raise FloatingPointError(
                f"the per-sample gradient of sample {int(ids[row])} is {value} in parameter "
                f"'{self.layout.name_of(offset + col)}' (coordinate {offset + col}). Check that "
                "sample's input and target, and the loss (log of zero?) before measuring D."
            )

    def chunks(
        self,
        description: str,
        start: int = 0,
        stop: int | None = None,
        *,
        chunk_size: int | None = None,
    ) -> Iterator[Chunk]:
        """Yield the :class:`Chunk` s covering this rank's samples [start, stop), from the cache when complete.

        A chunk is valid until the next one is asked for: its blocks may hold views of reused
        buffers, and a computed chunk is then released (:meth:`Chunk.release`) before the next is
        computed, so that one chunk's working memory is alive at a time even while the caller's
        loop variable still names the last one.
        ``chunk_size`` overrides the stream's for this iteration (the Gram panels use it when a
        chunk's pieces would not fit).
        """
        stop = self.n_local if stop is None else stop
        c = self.chunk_size if chunk_size is None else chunk_size
        cache = self._full_cache()
        if cache is not None:
            for s in range(start, stop, c):
                G = cache[s : min(s + c, stop)]
                yield Chunk(
                    s,
                    G.shape[0],
                    {nm: Materialised(G[:, self.layout.slice(nm)]) for nm in self.names},
                )
            return
        whole = start == 0 and stop == self.n_local
        if self.cache and whole and self._cache is None:
            self._cache = torch.empty(
                self.n_local, self.dim, dtype=self.grad_dtype, device=self.device
            )
        n_chunks = -(-(stop - start) // c)
        with progress_bar(description, n_chunks, enabled=self.progress) as advance:
            for s, x, y in self.source.chunks(c, start, stop):
                m = y.shape[0]
                out = self._cache[s : s + m] if (self._cache is not None and whole) else None
                chunk = self._compute(torch.arange(s, s + m), x, y, out)
                yield chunk
                chunk.release()
                self._samples_computed += m
                advance()
        if whole and self._cache is not None:
            self._cache_complete = True

    # --------------------------------------------------------------------------- moments
    def chunk_sums(self, chunk: Chunk) -> torch.Tensor:
        """Σ_i g_i over a chunk, float64 (d,): the batch gradient when the backend gives it."""
        return torch.cat(
            [
                chunk.sums[name].reshape(-1).double()
                if chunk.sums is not None
                else block.sums(torch.float64)
                for name, block in chunk.blocks.items()
            ]
        )

    def agreed_shift(self, what: str, chunks: Iterator[Chunk]) -> tuple[Chunk, torch.Tensor]:
        """The first chunk, and the shift s: the mean of every rank's first chunk (float64, d).

        Shifting every sample by the same s before summing keeps sums of squares free of
        cancellation; under torch.distributed s is agreed on in one all-reduce of d + 1 numbers.

        Returns:
            ``(first chunk, s)``.
        """

        def first() -> tuple[Chunk, torch.Tensor]:
            chunk = next(chunks)
            return chunk, self.chunk_sums(chunk)

        chunk, sums = self.reducer.run(what, first)
        head = torch.cat([sums, sums.new_tensor([chunk.n])])
        self.reducer.sum_(what, head)
        return chunk, head[:-1] / head[-1]

    def moments(self) -> tuple[torch.Tensor, float, float]:
        """(ḡ in float64, Σ_k ‖g_k − ḡ‖², ‖ḡ‖²), from one shifted pass (cached), over all ranks."""
        if self._moments is None:
            t0 = time.perf_counter()
            what = "the mean gradient and trace"
            total = torch.zeros(self.dim, dtype=torch.float64, device=self.device)
            sq = torch.zeros((), dtype=torch.float64, device=self.device)
            chunks = self.chunks(what)
            first, shift = self.agreed_shift(what, chunks)

            def local() -> None:
                for chunk in itertools.chain([first], chunks):
                    sums = self.chunk_sums(chunk)
                    for name, block in chunk.blocks.items():
                        sq.add_(block.sq_dist(shift[self.layout.slice(name)]).sum())
                    total.add_(sums - chunk.n * shift)
                    del sums  # d numbers, freed before the next chunk is computed

            self.reducer.run(what, local)
            self.reducer.sum_(what, total, sq)
            delta = total / self.n
            mean = shift + delta
            self._moments = (mean, float(sq - self.n * (delta @ delta)), float(mean @ mean))
            self.moments_seconds = time.perf_counter() - t0
        return self._moments

    def per_sample_gradients(self, idx: torch.Tensor) -> torch.Tensor:
        """The (len(idx), d) per-sample gradients of this rank's samples ``idx`` (memory checked)."""
        need = idx.numel() * self.dim * self.grad_itemsize
        if need > self.memory_budget:
            fit = self.memory_budget // (self.dim * self.grad_itemsize)
            raise MemoryBudgetError(
                f"per_sample_gradients for {idx.numel()} samples × d = {self.dim} needs "
                f"{format_bytes(need)}, over the memory budget of {format_bytes(self.memory_budget)}; "
                f"at most {fit} samples fit. Pass fewer indices, or use operator() / spectrum(), "
                "which stream over the data."
            )
        cache = self._full_cache()
        if cache is not None:
            return cache[idx.to(cache.device)]  # advanced indexing copies
        result = torch.empty(idx.numel(), self.dim, dtype=self.grad_dtype, device=self.device)
        for begin in range(0, idx.numel(), self.chunk_size):
            sub = idx[begin : begin + self.chunk_size]
            x, y = self.source.get(sub)
            self._compute(sub, x, y, out=result[begin : begin + sub.numel()])
        return result
