r"""The gradient-noise diffusion matrix D(x) of a PyTorch model (Chaudhari & Soatto 2018, eq. 2).

.. math::

    D(x) = \frac1N \sum_{k=1}^N (g_k - g)(g_k - g)^\top,\qquad g_k = \nabla \ell_k(x),\quad
    g = \frac1N \sum_k g_k,

the covariance of one sample's gradient; a mini-batch of size b drawn with replacement has
gradient covariance D/b (App. A). ``correction=1`` divides by N − 1 instead.

:class:`GradientNoise` is a thin façade over three layers, each in its own module: the gradient
stream (:mod:`.stream`: per-sample gradients chunk by chunk, layer by layer), D itself
(:mod:`.covariance`: the matrix-free :class:`~sgdscope.CovarianceOperator`, the dense matrix,
the Gram matrix) and the spectrum methods (:mod:`._spectrum_methods`).
"""

from __future__ import annotations

import time
import warnings
import zlib
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from .._memory import MemoryBudgetError, default_budget, format_bytes
from .._params import LossFn, ParamLayout, model_mode, select_params, train_mode_batchnorms
from .._validation import check_int, check_option, check_real
from ._data import DataSource, call_model, primary_output, to_device
from ._spectrum_methods import (
    Precision,
    SpectrumMethod,
    choose_method,
    compute_group_spectra,
    compute_spectrum,
    exact_bytes,
    noise_floor,
)
from .covariance import CovarianceOperator, dense_covariance
from .density import SpectralDensity, rademacher_probes, stochastic_lanczos_quadrature
from .distributed import Reducer, unwrap_data_parallel
from .groups import resolve_groups
from .memory_plan import RANDOMIZED_COLUMNS, MemoryPlan, randomized_bytes
from .spectrum import FLOAT32_EPS, PAPER, Spectrum
from .stream import Backend, GradientStream

__all__ = ["GradientNoise", "SpectrumMethod"]

SOLVER_RTOL_MIN = 1e-10
"""The smallest relative threshold the randomized k=None search aims at by default: it tightens
its residual tolerance to 0.01 · rtol, and float64 subspace iteration stalls near 1e-15 · λ_max."""


class GradientNoise:
    """Per-sample gradients of a model on a data set, and the diffusion matrix D(x) they define.

    The constructor checks the model, the loss and the data on the first samples (shapes,
    independence, and that the per-layer engine reproduces vmap's gradients) and computes
    nothing heavy; the data passes happen in the named methods.

    Args:
        model: Any ``nn.Module`` whose forward treats samples independently (Linear, Conv,
            Embedding, LayerNorm, attention, eval-mode BatchNorm, dropout off). It may take a
            tensor, a tuple or keyword tensors (a dict batch), and return a tensor, a tuple, a
            dict or a Hugging Face ``ModelOutput``.
        loss_fn: ``loss_fn(outputs, targets) -> (n,)`` per-sample losses (``reduction="none"``);
            sgdscope never guesses a reduction. For sequence models one sample is one sequence:
            see :func:`sgdscope.noise.losses.sequence_cross_entropy`.
        data: ``(inputs, targets)`` with inputs a tensor, tuple or dict of tensors; a dict of
            tensors with a ``"labels"`` entry; a map-style Dataset of such samples; or a
            DataLoader over one.
        params: The parameters that make up x: None (all that require grad), a name, a
            submodule (``params=model.fc``), names or parameter tensors, or a dict name → parameter.
        chunk_size: Samples per chunk; None sizes it from the memory budget.
        device: Where to compute; None uses the model's device.
        dtype: Accumulation dtype: float64 (the default and, since the per-layer engine, the only
            accumulation used; float32 is accepted for compatibility and gives the same numbers).
        eval_mode: Measure with the model in eval mode (BatchNorm running statistics, no dropout),
            as the paper did. The model's modes are restored afterwards.
        correction: 0 divides by N (the paper's eq. 2), 1 by N − 1.
        memory_budget: Bytes sgdscope may allocate; None is half of the device's memory.
        cache: Keep all per-sample gradients (N × d) in memory after the first pass so later passes
            are free: "auto" (when they take at most half the budget), True or False.
        progress: Show a progress bar during data passes.
        check_finite: Check every chunk of per-sample gradients for NaN/inf and name the sample
            and parameter. False skips it.
        backend: How per-sample gradients are computed: "auto" (per-layer hooks when they
            reproduce vmap on the first samples, else vmap), "hooks" or "vmap".
        process_group: Under ``torch.distributed``: the group whose ranks each hold a shard of
            the data (None: the default group when one is initialised, else one process;
            False: this process alone, to measure on one rank of a distributed job). The
            data given on each rank is then that rank's shard, N is the total over the ranks,
            and every statistic is summed across them (one all-reduce, as a DDP step), the same
            on every rank; an error on one rank stops every rank with its message
            (:mod:`sgdscope.noise.distributed`, docs/distributed.md). A model wrapped in
            ``DistributedDataParallel`` is accepted as it is; FSDP-sharded parameters are refused.

    Raises:
        ValueError: On a loss that returns a scalar, a forward that couples samples, train-mode
            BatchNorm with eval_mode=False, an empty data set, unknown parameters.
        TypeError: On data of an unsupported type.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> X, y = torch.randn(64, 5), torch.randint(0, 3, (64,))
        >>> noise = GradientNoise(nn.Linear(5, 3), nn.CrossEntropyLoss(reduction="none"), (X, y))
        >>> noise.dense().shape
        torch.Size([18, 18])
        >>> spec = noise.spectrum()
        >>> spec.method, spec.rank() <= 18
        ('dense', True)
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        data,
        params: Iterable | dict | str | nn.Module | None = None,
        chunk_size: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float64,
        eval_mode: bool = True,
        correction: int = 0,
        memory_budget: int | None = None,
        cache: bool | str = "auto",
        progress: bool = False,
        check_finite: bool = True,
        backend: str | Backend = "auto",
        process_group=None,
    ) -> None:
        where = "GradientNoise"
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"the 'model' parameter of {where} must be an nn.Module, got {type(model).__name__}."
            )
        self._reducer = reducer = Reducer(process_group, where=where)
        self.model = model = unwrap_data_parallel(model, where=where)
        self.loss_fn = loss_fn

        def check_inputs() -> tuple[Backend, list[str], bool, int]:
            self.source = DataSource(data, where=where)
            first = next(iter(model.parameters()), None)
            self.device = (
                torch.device(device)
                if device is not None
                else (first.device if first is not None else torch.device("cpu"))
            )
            if dtype not in (torch.float32, torch.float64):
                raise ValueError(
                    f"the 'dtype' parameter of {where} must be torch.float32 or torch.float64, got {dtype}."
                )
            self.dtype = dtype
            self.eval_mode = bool(eval_mode)
            self.correction = check_int("correction", correction, where=where, low=0, high=1)
            budget = (
                default_budget(self.device)
                if memory_budget is None
                else check_int("memory_budget", memory_budget, where=where, low=1)
            )
            if cache not in ("auto", True, False):
                raise ValueError(
                    f"the 'cache' parameter of {where} must be 'auto', True or False, got {cache!r}."
                )
            names = select_params(model, params, where=where)
            return (
                check_option("backend", backend, Backend, where=where),
                names,
                self._check_model_and_loss(),
                budget,
            )

        chosen, names, stochastic, budget = reducer.run(f"{where} set-up", check_inputs)
        reducer.set_count(self.source.n)
        # every rank plans with the smallest budget, so that every rank takes the same decisions
        self.memory_budget = reducer.min_int("the memory budget", budget)
        if self.n_samples - self.correction < 1:
            raise ValueError(
                f"the 'data' parameter of {where} holds {self.n_samples} sample(s); D with correction="
                f"{self.correction} needs at least {self.correction + 1}."
            )

        def build_stream() -> GradientStream:
            stream = GradientStream(
                model, loss_fn, self.source, names, device=self.device, eval_mode=self.eval_mode,
                chunk_size=None if chunk_size is None else check_int("chunk_size", chunk_size, where=where, low=1),
                memory_budget=self.memory_budget, cache=False, progress=bool(progress),
                check_finite=bool(check_finite), stochastic=stochastic, backend=chosen,
                reducer=reducer,
            )  # fmt: skip
            cache_bytes = stream.n_local * stream.dim * stream.grad_itemsize
            if cache is True and cache_bytes > self.memory_budget:
                raise MemoryBudgetError(
                    f"the 'cache' parameter of {where} asks to keep N × d = {stream.n_local} × "
                    f"{stream.dim} per-sample gradients ({format_bytes(cache_bytes)}), over the memory "
                    f"budget of {format_bytes(self.memory_budget)}. Use cache='auto' or False, or "
                    "raise memory_budget."
                )
            stream.cache = cache is True or (
                cache == "auto" and cache_bytes <= self.memory_budget // 2
            )
            return stream

        self._stream = reducer.run(f"{where} set-up", build_stream)
        layout = self._stream.layout
        reducer.check_same(
            "the parameters that make up x",
            [layout.dim, zlib.crc32(repr((layout.names, layout.shapes)).encode())],
            "every rank must build the same model and select the same parameters.",
        )

    # ------------------------------------------------------------------------------ set-up
    def _check_model_and_loss(self) -> bool:
        """Check on two samples: per-sample loss shape, train-mode BatchNorm, sample independence."""
        if not self.eval_mode:
            bns = train_mode_batchnorms(self.model)
            if bns:
                raise ValueError(
                    f"the 'model' parameter of GradientNoise has BatchNorm in training mode ({', '.join(bns)}) "
                    "and eval_mode=False: train-mode BatchNorm normalises with batch statistics, which couples "
                    "the samples of a batch, so per-sample gradients are not defined. Use eval_mode=True "
                    "(running statistics, as the paper did) or call model.eval()."
                )
        elif fresh := [
            name or type(m).__name__
            for name, m in self.model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)
            and m.training
            and m.track_running_stats
            and m.num_batches_tracked is not None
            and int(m.num_batches_tracked) == 0
        ]:
            warnings.warn(
                f"sgdscope: BatchNorm {', '.join(fresh[:5])}{' …' if len(fresh) > 5 else ''} is in "
                "training mode and its running statistics were never updated (mean 0, variance 1); "
                "eval_mode=True measures D with those statistics, i.e. without normalisation. Run "
                "the model on data in train mode first (or train it), or pass eval_mode=False "
                "only if the model has no BatchNorm that couples samples.",
                stacklevel=5,  # the caller of GradientNoise(...),
            )
        x, y = self.source.first(2)
        x, y = to_device(x, self.device), y.to(self.device)
        n = y.shape[0]
        with torch.no_grad(), model_mode(self.model, self.eval_mode):
            stochastic = any(
                isinstance(m, nn.modules.dropout._DropoutNd) and m.training
                for m in self.model.modules()
            )
            out = call_model(self.model, x)
            loss = self.loss_fn(out, y)
            if not torch.is_tensor(loss) or loss.shape != (n,):
                shape = (
                    "a scalar"
                    if torch.is_tensor(loss) and loss.ndim == 0
                    else f"shape {tuple(getattr(loss, 'shape', ()))}"
                )
                raise ValueError(
                    f"the 'loss_fn' parameter of GradientNoise must return per-sample losses of shape "
                    f"(n,) = ({n},), got {shape}. Use reduction='none', e.g. "
                    "nn.CrossEntropyLoss(reduction='none'), or for sequences "
                    "sgdscope.noise.losses.sequence_cross_entropy; sgdscope never guesses a reduction."
                )
            if not stochastic and n == 2:
                first_only = self.source.get(torch.arange(1))[0]
                single = primary_output(call_model(self.model, to_device(first_only, self.device)))
                both = primary_output(out)[:1]
                if not torch.allclose(
                    single, both, rtol=1e-4, atol=1e-5 * (1 + float(both.abs().max()))
                ):
                    raise ValueError(
                        "the 'model' parameter of GradientNoise has a forward that is not per-sample: the "
                        "output of sample 0 changes when sample 1 is in the same batch (max difference "
                        f"{(single - both).abs().max().item():.3g}). Per-sample gradients need samples that "
                        "do not interact (train-mode BatchNorm does this: use eval_mode=True)."
                    )
        return stochastic

    # ------------------------------------------------------------------------- basic facts
    @property
    def layout(self) -> ParamLayout:
        """Where each parameter sits in x."""
        return self._stream.layout

    @property
    def dim(self) -> int:
        """d, the number of parameters in x."""
        return self._stream.dim

    @property
    def n_samples(self) -> int:
        """N, the number of samples (of every rank under torch.distributed)."""
        return self._reducer.n_total

    @property
    def n_local(self) -> int:
        """The samples of this rank's shard (N in one process)."""
        return self.source.n

    @property
    def rank(self) -> int:
        """This process's rank in the process group (0 in one process)."""
        return self._reducer.rank

    @property
    def world_size(self) -> int:
        """The number of ranks whose shards make up the data (1 in one process)."""
        return self._reducer.world_size

    @property
    def chunk_size(self) -> int:
        """Samples per chunk."""
        return self._stream.chunk_size

    @property
    def backend(self) -> str:
        """The per-sample gradient engine in use ("hooks" or "vmap")."""
        return self._stream.backend.value

    @property
    def passes(self) -> float:
        """Passes over the data made so far.

        A partial pass counts its share; passes served from the cache do not count.
        """
        return self._stream.passes

    @property
    def _denominator(self) -> int:
        return self.n_samples - self.correction

    # ------------------------------------------------------------------------------ moments
    def mean_gradient(self) -> torch.Tensor:
        """g = ∇f(x) = (1/N) Σ g_k, shape (d,), in the accumulation dtype."""
        return self._stream.moments()[0].to(self.dtype)

    def trace(self) -> float:
        """tr D = (1/N) Σ ‖g_k − g‖², exact, in one pass (shared with :meth:`mean_gradient`)."""
        return self._stream.moments()[1] / self._denominator

    def noise_scale(self) -> float:
        r"""The simple gradient noise scale B_simple = tr D / ‖g‖² (McCandlish et al. 2018, eq. 2.8).

        The batch size at which the gradient's noise and signal are of one size: below it SGD
        steps are noise-dominated. Exact, from the same pass as :meth:`trace`.

        Returns:
            B_simple, in samples.

        Raises:
            ZeroDivisionError: If the mean gradient is exactly zero.
        """
        _mean, _sq, mean_sq = self._stream.moments()
        if mean_sq == 0.0:
            raise ZeroDivisionError(
                "noise_scale() is tr D / ‖g‖² and the mean gradient g is exactly zero here "
                "(a stationary point of the loss on these data): B_simple is infinite."
            )
        return self.trace() / mean_sq

    def per_sample_gradients(
        self, idx: Sequence[int] | torch.Tensor | slice | None = None
    ) -> torch.Tensor:
        """Per-sample gradients g_k for the samples ``idx`` (all when None), shape (n, d).

        Under torch.distributed, ``idx`` indexes this rank's shard (nothing is communicated).

        Returns:
            The gradients, shape (n, d), in the gradients' dtype.

        Raises:
            MemoryBudgetError: If n × d gradients exceed the memory budget.
            IndexError: If an index is outside [0, n_local).
        """
        if idx is None:
            idx = torch.arange(self.n_local)
        elif isinstance(idx, slice):
            idx = torch.arange(self.n_local)[idx]
        idx = torch.as_tensor(idx, dtype=torch.long).reshape(-1)
        if idx.numel() and (idx.min() < 0 or idx.max() >= self.n_local):
            raise IndexError(
                f"the 'idx' parameter of GradientNoise.per_sample_gradients must hold indices in "
                f"[0, {self.n_local}), got values in [{idx.min().item()}, {idx.max().item()}]."
            )
        return self._stream.per_sample_gradients(idx)

    # ------------------------------------------------------------------------------ D itself
    def _check_dense_budget(self, what: str, factor: float = 1.0) -> None:
        need = int(factor * self.dim * self.dim * 8)
        if need > self.memory_budget:
            fit = int((self.memory_budget / (factor * 8)) ** 0.5)
            raise MemoryBudgetError(
                f"{what} needs a dense d × d matrix with d = {self.dim}: {format_bytes(need)}, over the memory "
                f"budget of {format_bytes(self.memory_budget)} (d ≤ {fit} would fit). Use operator() for "
                "matrix-free products, or spectrum(k=...) / spectrum(method='randomized'), which need "
                "O(d·k) memory; or raise memory_budget."
            )

    def dense(self) -> torch.Tensor:
        """D(x) as a dense (d, d) matrix in the accumulation dtype (eq. 2).

        Returns:
            D, shape (d, d).

        Raises:
            MemoryBudgetError: If d × d does not fit the memory budget (says what to call instead).
        """
        self._check_dense_budget("dense()")
        return dense_covariance(self._stream, self.correction).to(self.dtype)

    def operator(self, precision: str | Precision = "float64") -> CovarianceOperator:
        """D as a matrix-free operator: each product makes one pass over the data (or the cache).

        Args:
            precision: "float64", or "mixed" (products inside a chunk in the model's dtype,
                accumulated in float64 across chunks).

        Returns:
            The :class:`~sgdscope.noise.covariance.CovarianceOperator` of D.
        """
        precision = check_option("precision", precision, Precision, where="GradientNoise.operator")
        compute = torch.float64 if precision is Precision.FLOAT64 else self._stream.grad_dtype
        return CovarianceOperator(self._stream, self.correction, compute)

    # --------------------------------------------------------------------------- spectrum
    def spectrum(
        self,
        k: int | None = None,
        method: str | SpectrumMethod = "auto",
        seed: int | None = 0,
        *,
        rtol: float | str | None = None,
        tol: float = 1e-5,
        max_iter: int = 300,
        eigenvectors: bool | int = True,
        precision: str | Precision = "float64",
        throw: bool = True,
    ) -> Spectrum:
        """Eigenvalues (descending) and eigenvectors of D.

        Methods:
            - ``dense``: eigh of the d × d matrix D. Exact; O(d²) memory, O(d³) time.
            - ``gram``: the non-zero spectrum of D equals that of the N × N matrix
              K = Gᶜ Gᶜᵀ / N of centred gradients, accumulated parameter by parameter without
              the N × d matrix (:func:`~sgdscope.noise.covariance.gram_matrix`); eigenvectors map
              back as v = Gᶜᵀ u / √(N λ) in one more pass. Exact at any d for N up to ~10⁴.
            - ``randomized``: for the top k, block Krylov (block Lanczos with thick restarts, see
              :mod:`.eigensolvers`); for ``k=None``, block subspace iteration that grows k to the
              threshold. O(d·k) memory, one pass over the data per iteration, converged when
              every residual ‖D v − λ v‖ ≤ tol · λ_max.
            - ``auto``: exact when min(N, d) ≤ 6000 and it fits the budget, otherwise randomized.
              The result's ``method`` and ``reason`` say what was chosen.

        With ``k=None`` the exact methods return every eigenvalue, and the randomized method
        grows k until its smallest converged eigenvalue falls below the rank threshold, so that
        the rank at that threshold is exact without a dense matrix.

        Args:
            k: Number of eigenpairs, in [1, min(N − 1, d)]; None for all (exact methods) or all
                above the threshold (randomized).
            method: "auto", "dense", "gram" or "randomized".
            seed: Seed of the randomized method's starting block (None: nondeterministic).
            rtol: The rank threshold the randomized ``k=None`` search stops at: None for the
                computation's noise floor (:attr:`Spectrum.noise_floor`), ``"paper"`` for
                λ_max · d · ε_float32, or a number r for r · λ_max.
            tol: Residual tolerance of the randomized method, relative to λ_max.
            max_iter: Maximum passes per round of the randomized method.
            eigenvectors: Keep eigenvectors: True (one per eigenvalue computed, budget allowing),
                False, or an int m for the top m only (the Gram method then maps back only m).
            precision: "float64", or "mixed": products inside a chunk in the model's dtype
                (float32: about 2× faster on CPU), accumulated in float64 across chunks. The
                extra error is of the order of the noise floor already set by float32
                per-sample gradients (docs/noise.md states the bound).
            throw: Raise :class:`~sgdscope.ConvergenceError` when the randomized solver does not
                converge; False returns the result flagged ``converged=False``.

        Returns:
            A frozen :class:`~sgdscope.Spectrum`.

        Raises:
            ValueError: On ``k`` outside [1, min(N − correction, d)] or an unknown method.
            MemoryBudgetError: If an explicitly requested exact method does not fit the budget.
            ConvergenceError: If the randomized solver does not converge and ``throw`` is True.
        """
        where = "GradientNoise.spectrum"
        precision = check_option("precision", precision, Precision, where=where)
        max_iter = check_int("max_iter", max_iter, where=where, low=1)
        if rtol is not None and rtol != PAPER:
            check_real("rtol", rtol, where=where, low=0.0, low_open=True)
        t0 = time.perf_counter()
        passes0 = self.passes
        k, method, reason, vectors = self._choose(k, method, eigenvectors, where=where)
        seed = self._reducer.common_seed(seed)  # replicas on every rank start alike
        generator = None if seed is None else torch.Generator().manual_seed(int(seed))
        rtol_eff = self._solver_rtol(rtol)
        spec = compute_spectrum(
            self._stream, correction=self.correction, method=method, reason=reason, k=k,
            vectors=vectors, precision=precision, tol=tol, rtol=rtol_eff, max_iter=max_iter,
            generator=generator, throw=throw,
            info={"chunk_size": self.chunk_size, "cached": self._stream.cache,
                  "eval_mode": self.eval_mode, "correction": self.correction,
                  "backend": self.backend, "t0": t0, "passes0": passes0},
        )  # fmt: skip
        return spec

    def _choose(
        self, k: int | None, method, eigenvectors: bool | int, *, where: str
    ) -> tuple[int | None, SpectrumMethod, str, int]:
        """Check k and eigenvectors; the method (auto resolved), why, and the eigenvectors kept."""
        method = check_option("method", method, SpectrumMethod, where=where)
        max_rank = max(min(self.n_samples - 1, self.dim), 1)  # a centred covariance of N samples
        if k is not None:
            k = check_int(
                "k", k, where=where, low=1, high=max_rank,
                hint=f"D is a covariance of N = {self.n_samples} centred gradients in d = {self.dim} "
                f"dimensions, so its rank is at most min(N − 1, d) = {max_rank}.",
            )  # fmt: skip
        if isinstance(eigenvectors, bool):
            vectors = (k if k is not None else max_rank) if eigenvectors else 0
        else:
            vectors = check_int("eigenvectors", eigenvectors, where=where, low=0, high=max_rank)
        method, reason = choose_method(self._stream, method, k, vectors if k is not None else 0)
        if method is not SpectrumMethod.RANDOMIZED and k is None and eigenvectors is True:
            vectors = self._affordable_vectors(method, vectors)
        if method is SpectrumMethod.RANDOMIZED and k is not None:
            vectors = min(vectors, k)
        return k, method, reason, vectors

    def memory_plan(
        self,
        k: int | None = None,
        method: str | SpectrumMethod = "auto",
        *,
        eigenvectors: bool | int = True,
        groups: str | dict | None = None,
    ) -> MemoryPlan:
        """What :meth:`spectrum` (and :meth:`group_spectra` with ``groups``) will allocate per rank.

        Cheap: it runs no data pass, except that ``method="auto"`` beyond min(N, d) = 6000 times
        one (the moments pass, which the spectrum needs anyway).

        Args:
            k: As in :meth:`spectrum`.
            method: As in :meth:`spectrum`; ``plan.method`` is what "auto" resolves to.
            eigenvectors: As in :meth:`spectrum`.
            groups: The grouping of :meth:`group_spectra` to plan for too, or None.

        Returns:
            A frozen :class:`~sgdscope.noise.memory_plan.MemoryPlan`.
        """
        where = "GradientNoise.memory_plan"
        k, method, reason, vectors = self._choose(k, method, eigenvectors, where=where)
        stream, n, d = self._stream, self.n_samples, self.dim
        if method is SpectrumMethod.DENSE:
            solver = 3 * d * d * 8 + d * 8
        elif method is SpectrumMethod.GRAM:
            solver = exact_bytes(stream, method, vectors)
        else:
            solver = randomized_bytes(d, k)
        groups_bytes = 0
        if groups is not None:
            resolved = resolve_groups(self.layout, groups, where=where)
            groups_bytes = (len(resolved) + 3) * n * n * 8
        cache = stream.n_local * d * stream.grad_itemsize if stream.cache else 0
        chunk = stream.sample_bytes * stream.chunk_size
        room_k = self.memory_budget - chunk - cache - groups_bytes
        return MemoryPlan(
            method=method.value, reason=reason, k=k, budget=self.memory_budget,
            world_size=self.world_size, n_samples=n, n_local=self.n_local, dim=d,
            chunk_size=stream.chunk_size, chunk_bytes=chunk, cache_bytes=cache,
            solver_bytes=solver, groups_bytes=groups_bytes,
            largest_k=int(np.clip(room_k // (RANDOMIZED_COLUMNS * d * 8), 0, max(min(n - 1, d), 1))),
            largest_chunk=int(np.clip((self.memory_budget - solver - groups_bytes - cache)
                                      // max(stream.sample_bytes, 1), 0, self.n_local)),
        )  # fmt: skip

    def group_spectra(
        self,
        groups: str | dict = "layer",
        k: int | None = None,
        *,
        eigenvectors: bool | int = False,
        precision: str | Precision = "float64",
    ) -> dict[str, Spectrum]:
        """Exact spectra of D's diagonal blocks for several parameter groups, from one pass.

        The block of D for a group g of parameters is the covariance of their per-sample
        gradients alone (per layer: Remark 13's question of where the noise lives). Every
        group's spectrum comes from its N × N Gram matrix, accumulated in the same passes over
        the data (the Gram method; exact at any d).

        Args:
            groups: ``"layer"`` (one group per module owning parameters), ``"module"`` (one per
                top-level child of the model), or a dict group name → parameter names or glob
                patterns; groups may overlap.
            k: Eigenvalues per group (None: all non-zero ones).
            eigenvectors: False, True (one per eigenvalue) or an int m (the top m of each group),
                each of the group's own dimension (its parameters in layout order).
            precision: "float64" or "mixed", as in :meth:`spectrum`.

        Returns:
            A dict group name → frozen :class:`~sgdscope.Spectrum` (its ``info["params"]`` lists
            the group's parameters).

        Raises:
            ValueError: On an unknown grouping rule or a group that matches nothing.
            MemoryBudgetError: If one N × N matrix per group does not fit the budget.
        """
        where = "GradientNoise.group_spectra"
        precision = check_option("precision", precision, Precision, where=where)
        resolved = resolve_groups(self.layout, groups, where=where)
        max_rank = max(self.n_samples - 1, 1)
        if k is not None:
            k = check_int("k", k, where=where, low=1, high=max_rank)
        if isinstance(eigenvectors, bool):
            vectors = (k or max_rank) if eigenvectors else 0
        else:
            vectors = check_int("eigenvectors", eigenvectors, where=where, low=0, high=max_rank)
        return compute_group_spectra(
            self._stream, resolved, correction=self.correction, k=k, vectors=vectors,
            precision=precision,
            info={"chunk_size": self.chunk_size, "eval_mode": self.eval_mode,
                  "correction": self.correction, "backend": self.backend,
                  "t0": time.perf_counter(), "passes0": self.passes},
        )  # fmt: skip

    def spectral_density(
        self,
        n_probes: int = 8,
        steps: int = 60,
        seed: int | None = 0,
        *,
        reorthogonalize: bool | str = "auto",
        precision: str | Precision = "float64",
    ) -> SpectralDensity:
        """The eigenvalue density of D by stochastic Lanczos quadrature (see :mod:`.density`).

        For when the rank is beyond any affordable k: ``steps`` passes over the data, each
        applying D to all ``n_probes`` Rademacher probes at once.

        Args:
            n_probes: Random probes (the estimate's variance falls as 1/n_probes).
            steps: Lanczos steps m per probe (the quadrature is exact for polynomials of degree
                ≤ 2m − 1).
            seed: Seed of the probes (None: nondeterministic).
            reorthogonalize: Keep the d × n_probes × steps Lanczos vectors and reorthogonalise
                fully (True), not (False), or when they fit a quarter of the budget ("auto").
            precision: "float64" or "mixed", as in :meth:`spectrum`.

        Returns:
            A frozen :class:`~sgdscope.noise.density.SpectralDensity`.

        Raises:
            ValueError: On ``n_probes`` or ``steps`` out of range, or an unknown ``reorthogonalize``.
            MemoryBudgetError: If the Lanczos blocks (4 d × n_probes float64) exceed the budget.
        """
        where = "GradientNoise.spectral_density"
        n_probes = check_int("n_probes", n_probes, where=where, low=1)
        steps = check_int("steps", steps, where=where, low=1, high=max(self.dim, 1))
        block = self.dim * n_probes * 8
        need = 4 * block
        if need > self.memory_budget:
            raise MemoryBudgetError(
                f"spectral_density with {n_probes} probes at d = {self.dim} needs "
                f"{format_bytes(need)} for its Lanczos blocks, over the memory budget of "
                f"{format_bytes(self.memory_budget)}. Use fewer probes."
            )
        if reorthogonalize == "auto":
            reorthogonalize = need + steps * block <= self.memory_budget // 4
        elif not isinstance(reorthogonalize, bool):
            raise ValueError(
                f"the 'reorthogonalize' parameter of {where} must be True, False or 'auto', "
                f"got {reorthogonalize!r}."
            )
        t0, op = time.perf_counter(), self.operator(precision)
        seed = self._reducer.common_seed(seed)  # the same probes on every rank
        generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
        if seed is None:
            generator.seed()
        probes = rademacher_probes(self.dim, n_probes, generator).to(self.device)
        nodes, weights = stochastic_lanczos_quadrature(
            op.matmat, probes, steps, reorthogonalize=reorthogonalize
        )
        return SpectralDensity(
            nodes=nodes, weights=weights, dim=self.dim, trace=self.trace(),
            reorthogonalized=bool(reorthogonalize),
            info={"seconds": time.perf_counter() - t0, "data_passes": self.passes,
                  "n_probes": n_probes, "steps": steps, "backend": self.backend},
        )  # fmt: skip

    def _solver_rtol(self, rtol: float | str | None) -> float:
        """The relative threshold the randomized k=None search must reach below."""
        if rtol == PAPER:
            return self.dim * FLOAT32_EPS
        if rtol is not None:
            return float(rtol)
        # λ_max ≤ tr D, so floor / tr D ≤ floor / λ_max: the search reaches below the floor;
        # but not below SOLVER_RTOL_MIN, under which float64 residuals cannot certify a side.
        trace = self.trace()
        floor = noise_floor(self._stream, self.correction) / trace if trace > 0 else FLOAT32_EPS
        return max(floor, SOLVER_RTOL_MIN)

    def _affordable_vectors(self, method: SpectrumMethod, wanted: int) -> int:
        """For k=None and eigenvectors=True: as many eigenvectors as the budget allows (≥ 1)."""
        if method is SpectrumMethod.DENSE:
            return wanted
        spare = self.memory_budget - 4 * self.n_samples**2 * 8
        return int(np.clip(spare // 2 // max(self.dim * 8, 1), 1, wanted))
