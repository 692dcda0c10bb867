r"""The gradient-noise diffusion matrix D(x) of a PyTorch model (Chaudhari & Soatto 2018, eq. 2).

.. math::

    D(x) = \frac1N \sum_{k=1}^N (g_k - g)(g_k - g)^\top,\qquad g_k = \nabla \ell_k(x),\quad
    g = \frac1N \sum_k g_k,

the covariance of one sample's gradient; a mini-batch of size b drawn with replacement has
gradient covariance D/b (App. A). ``correction=1`` divides by N − 1 instead.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from enum import Enum

import numpy as np
import torch
from torch import nn

from .._memory import MemoryBudgetError, default_budget, format_bytes
from .._progress import progress_bar
from .._validation import check_int, check_option, check_real
from ._data import DataSource
from .eigensolvers import eigenpairs_above, eigh_descending, subspace_iteration
from .layout import ParamLayout
from .operator import CovarianceOperator
from .per_sample import LossFn, make_per_sample_gradients, model_mode, train_mode_batchnorms
from .spectrum import FLOAT32_EPS, Spectrum

__all__ = ["GradientNoise", "SpectrumMethod"]

_CHUNK_TARGET_BYTES = {"cpu": 256 * 1024**2, "cuda": 2 * 1024**3}
"""Working memory aimed at per chunk of per-sample gradients (capped by the budget): large enough
to keep the BLAS / GPU busy, small enough to stay in the CPU's memory bandwidth sweet spot."""

_EXACT_MAX = 6000
"""auto: exact methods (dense / Gram eigh) when min(N, d) is at most this (an eigh of a 6000 × 6000
float64 matrix takes about a minute on two CPU cores); randomized otherwise."""


class SpectrumMethod(str, Enum):
    """How :meth:`GradientNoise.spectrum` computes the eigenvalues of D."""

    AUTO = "auto"
    DENSE = "dense"
    GRAM = "gram"
    RANDOMIZED = "randomized"


class GradientNoise:
    """Per-sample gradients of a model on a data set, and the diffusion matrix D(x) they define.

    The constructor checks the model, the loss and the data on two samples (shapes and
    independence only) and computes nothing heavy; the data passes happen in the named methods.

    Args:
        model: Any ``nn.Module`` whose forward treats samples independently (Linear, Conv,
            LayerNorm, attention, eval-mode BatchNorm, dropout off).
        loss_fn: ``loss_fn(outputs, targets) -> (n,)`` per-sample losses (``reduction="none"``);
            sgdscope never guesses a reduction.
        data: ``(inputs, targets)`` tensors, a map-style Dataset of ``(input, target)`` pairs, or a
            DataLoader over one.
        params: The parameters that make up x: None (all that require grad), or names, or the
            parameter tensors themselves, or a dict from name to parameter.
        chunk_size: Samples per vmap call; None sizes it from the memory budget.
        device: Where to compute; None uses the model's device.
        dtype: Accumulation dtype (float64 by default; per-sample gradients stay in the model's dtype).
        eval_mode: Measure with the model in eval mode (BatchNorm running statistics, no dropout),
            as the paper did. The model's modes are restored afterwards.
        correction: 0 divides by N (the paper's eq. 2), 1 by N − 1.
        memory_budget: Bytes sgdscope may allocate; None is half of the device's memory.
        cache: Keep all per-sample gradients (N × d) in memory after the first pass so later passes
            are free: "auto" (when they take at most half the budget), True or False.
        progress: Show a progress bar during data passes.
        check_finite: Check every chunk of per-sample gradients for NaN/inf and name the sample
            and parameter. It reads the gradients once more (about 20–50 % of the per-sample time
            of a memory-bound model on CPU, a few % on GPU); False skips it.

    Raises:
        ValueError: On a loss that returns a scalar, a forward that couples samples, train-mode
            BatchNorm, an empty data set, unknown parameters.
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
        params: Iterable | dict | None = None,
        chunk_size: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float64,
        eval_mode: bool = True,
        correction: int = 0,
        memory_budget: int | None = None,
        cache: bool | str = "auto",
        progress: bool = False,
        check_finite: bool = True,
    ) -> None:
        where = "GradientNoise"
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"the 'model' parameter of {where} must be an nn.Module, got {type(model).__name__}."
            )
        self.model = model
        self.loss_fn = loss_fn
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
        if self.source.n - self.correction < 1:
            raise ValueError(
                f"the 'data' parameter of {where} holds {self.source.n} sample(s); D with correction="
                f"{self.correction} needs at least {self.correction + 1}."
            )
        self.memory_budget = (
            default_budget(self.device)
            if memory_budget is None
            else check_int("memory_budget", memory_budget, where=where, low=1)
        )
        self._names, self._trainable, self._constants = self._resolve_params(params)
        self.layout = ParamLayout.from_named((n, self._trainable[n]) for n in self._names)
        self.progress = bool(progress)
        self.check_finite = bool(check_finite)
        self._stochastic = self._check_model_and_loss()
        self._kernel = make_per_sample_gradients(
            model, loss_fn, self._names, stochastic=self._stochastic
        )
        self.chunk_size = (
            check_int("chunk_size", chunk_size, where=where, low=1)
            if chunk_size is not None
            else self._auto_chunk_size()
        )
        cache_bytes = self.n_samples * self.dim * self._grad_itemsize
        if cache == "auto":
            self._use_cache = cache_bytes <= self.memory_budget // 2
        elif isinstance(cache, bool):
            if cache and cache_bytes > self.memory_budget:
                raise MemoryBudgetError(
                    f"the 'cache' parameter of {where} asks to keep N × d = {self.n_samples} × {self.dim} "
                    f"per-sample gradients ({format_bytes(cache_bytes)}), over the memory budget of "
                    f"{format_bytes(self.memory_budget)}. Use cache='auto' or False, or raise memory_budget."
                )
            self._use_cache = cache
        else:
            raise ValueError(
                f"the 'cache' parameter of {where} must be 'auto', True or False, got {cache!r}."
            )
        self._cache: torch.Tensor | None = None
        self._cache_complete = False
        self._buffers: dict[str, torch.Tensor] = {}
        self._mean: torch.Tensor | None = None
        self._trace: float | None = None
        self.passes = 0
        """Number of passes over the data made so far (cached passes not counted)."""

    # ------------------------------------------------------------------------------ set-up
    def _resolve_params(self, params) -> tuple[list[str], dict, dict]:
        named = dict(self.model.named_parameters())
        by_id = {id(p): n for n, p in named.items()}
        if params is None:
            names = [n for n, p in named.items() if p.requires_grad]
        elif isinstance(params, dict):
            names = [by_id.get(id(p), n) if n not in named else n for n, p in params.items()]
        else:
            names = []
            for p in params:
                if isinstance(p, str):
                    names.append(p)
                elif torch.is_tensor(p) and id(p) in by_id:
                    names.append(by_id[id(p)])
                else:
                    raise ValueError(
                        "the 'params' parameter of GradientNoise must hold parameter names or parameters "
                        f"of the model, got a {type(p).__name__} that is not one of them. Pass e.g. "
                        "[n for n, _ in model.named_parameters() if n.startswith('fc')]."
                    )
        unknown = [n for n in names if n not in named]
        if unknown:
            raise ValueError(
                f"the 'params' parameter of GradientNoise names parameters the model does not have: {unknown}. "
                f"The model's parameters are {list(named)}."
            )
        if not names:
            raise ValueError(
                "the 'params' parameter of GradientNoise selects no parameters (none require grad?); "
                "D(x) needs at least one."
            )
        order = {n: i for i, n in enumerate(named)}
        names = sorted(dict.fromkeys(names), key=order.__getitem__)  # named_parameters order
        trainable = {n: named[n].detach().to(self.device) for n in names}
        constants = {n: p.detach().to(self.device) for n, p in named.items() if n not in trainable}
        constants.update({n: b.to(self.device) for n, b in self.model.named_buffers()})
        return names, trainable, constants

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
        x, y = self.source.first(2)
        x, y = x.to(self.device), y.to(self.device)
        with torch.no_grad(), model_mode(self.model, self.eval_mode):
            stochastic = any(
                isinstance(m, nn.modules.dropout._DropoutNd) and m.training
                for m in self.model.modules()
            )
            out = self.model(x)
            loss = self.loss_fn(out, y)
            if not torch.is_tensor(loss) or loss.shape != (x.shape[0],):
                shape = (
                    "a scalar"
                    if torch.is_tensor(loss) and loss.ndim == 0
                    else f"shape {tuple(getattr(loss, 'shape', ()))}"
                )
                raise ValueError(
                    f"the 'loss_fn' parameter of GradientNoise must return per-sample losses of shape "
                    f"(n,) = ({x.shape[0]},), got {shape}. Use reduction='none', e.g. "
                    "nn.CrossEntropyLoss(reduction='none'); sgdscope never guesses a reduction."
                )
            if not stochastic and x.shape[0] == 2:
                single = self.model(x[:1])
                if not torch.allclose(
                    single, out[:1], rtol=1e-4, atol=1e-5 * (1 + out.abs().max())
                ):
                    raise ValueError(
                        "the 'model' parameter of GradientNoise has a forward that is not per-sample: the "
                        "output of sample 0 changes when sample 1 is in the same batch (max difference "
                        f"{(single - out[:1]).abs().max().item():.3g}). Per-sample gradients need samples that "
                        "do not interact (train-mode BatchNorm does this: use eval_mode=True)."
                    )
        return stochastic

    @property
    def _grad_dtype(self) -> torch.dtype:
        return self._trainable[self._names[0]].dtype

    @property
    def _grad_itemsize(self) -> int:
        return torch.empty((), dtype=self._grad_dtype).element_size()

    @property
    def _acc_itemsize(self) -> int:
        return torch.empty((), dtype=self.dtype).element_size()

    def _auto_chunk_size(self) -> int:
        """Samples per chunk so that gradients plus activations fit the chunk target."""
        act = [0]

        def hook(_m, _i, out):
            if torch.is_tensor(out):
                act[0] += out.numel() * out.element_size()

        handles = [m.register_forward_hook(hook) for m in self.model.modules()]
        try:
            x, _ = self.source.first(1)
            with torch.no_grad(), model_mode(self.model, self.eval_mode):
                self.model(x.to(self.device))
        finally:
            for h in handles:
                h.remove()
        grad_bytes = self.dim * (2 * self._grad_itemsize + self._acc_itemsize)
        per_sample = grad_bytes + 4 * act[0]
        target = min(
            _CHUNK_TARGET_BYTES.get(self.device.type, _CHUNK_TARGET_BYTES["cpu"]),
            self.memory_budget // 8,
        )
        return int(max(1, min(4096, target // max(per_sample, 1), self.n_samples)))

    # ------------------------------------------------------------------------- basic facts
    @property
    def dim(self) -> int:
        """d, the number of parameters in x."""
        return self.layout.dim

    @property
    def n_samples(self) -> int:
        """N, the number of samples."""
        return self.source.n

    @property
    def _denominator(self) -> int:
        return self.n_samples - self.correction

    # ------------------------------------------------------------------------ data passes
    def _compute_chunk(
        self,
        indices: torch.Tensor,
        x: torch.Tensor,
        y: torch.Tensor,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-sample gradients of one chunk, written into ``out`` when given; checked for NaN/inf."""
        with model_mode(self.model, self.eval_mode), warnings.catch_warnings():
            # vmap falls back to a loop for ops without a batching rule (e.g. CPU flash attention);
            # the result is exact, only slower, so the per-chunk warning is noise to the user.
            warnings.filterwarnings(
                "ignore", message="There is a performance drop because we have not yet"
            )
            G = self._kernel(
                self._trainable, self._constants, x.to(self.device), y.to(self.device), out=out
            )
        G = G.detach()
        # A column sum is finite iff no entry is NaN/inf (barring overflow of finite values, which
        # the exact search below then clears); it allocates d numbers instead of n·d flags.
        if self.check_finite and not torch.isfinite(G.sum(0)).all():
            bad = (~torch.isfinite(G)).nonzero()
            if bad.numel():
                row, col = bad[0].tolist()
                value = G[row, col].item()
                raise FloatingPointError(
                    f"the per-sample gradient of sample {int(indices[row])} is {value} in parameter "
                    f"'{self.layout.name_of(col)}' (coordinate {col}). Check that sample's input and "
                    "target, and the loss (log of zero?) before measuring D."
                )
        return G

    def _buffer(self, name: str, rows: int, dtype: torch.dtype) -> torch.Tensor:
        """A work buffer of shape (rows, d), allocated once and reused by every pass.

        Fresh multi-hundred-MB allocations per chunk cost page faults that can exceed the
        arithmetic; reusing one buffer pays them once.
        """
        buf = self._buffers.get(name)
        if buf is None or buf.shape[0] < rows or buf.dtype != dtype:
            buf = torch.empty(max(rows, self.chunk_size), self.dim, dtype=dtype, device=self.device)
            self._buffers[name] = buf
        return buf[:rows]

    def _accumulation_view(self, G: torch.Tensor) -> torch.Tensor:
        """``G`` in the accumulation dtype, through a reused buffer when a cast is needed."""
        if G.dtype == self.dtype:
            return G
        return self._buffer("accumulate", G.shape[0], self.dtype).copy_(G)

    def _shifted(self, G: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """G − shift in the accumulation dtype, written into a reused buffer (G is left intact)."""
        return self._buffer("accumulate", G.shape[0], self.dtype).copy_(G).sub_(shift)

    def _chunks(self, description: str) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(start, G_chunk)`` over all samples; from the cache when it is complete.

        ``G_chunk`` may be a view of a reused buffer: it is valid until the next chunk.
        """
        if self._cache_complete:
            for start in range(0, self.n_samples, self.chunk_size):
                yield start, self._cache[start : start + self.chunk_size]
            return
        if self._use_cache and self._cache is None:
            self._cache = torch.empty(
                self.n_samples, self.dim, dtype=self._grad_dtype, device=self.device
            )
        n_chunks = -(-self.n_samples // self.chunk_size)
        with progress_bar(description, n_chunks, enabled=self.progress) as advance:
            for start, x, y in self.source.chunks(self.chunk_size):
                m = x.shape[0]
                out = (
                    self._cache[start : start + m]
                    if self._cache is not None
                    else self._buffer("gradients", m, self._grad_dtype)
                )
                yield start, self._compute_chunk(torch.arange(start, start + m), x, y, out=out)
                advance()
        self.passes += 1
        if self._cache is not None:
            self._cache_complete = True

    def _moments(self) -> None:
        """One pass for g and tr D, with a shift s (first chunk's mean) against cancellation."""
        total = torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        sq = torch.zeros((), dtype=self.dtype, device=self.device)
        shift = None
        for _, G in self._chunks("mean gradient and trace"):
            if shift is None:
                shift = G.to(self.dtype).mean(0)
            Gs = self._shifted(G, shift).view(-1)
            total += Gs.view(G.shape).sum(0)
            sq += torch.dot(Gs, Gs)
        n = self.n_samples
        delta = total / n
        self._mean = shift + delta
        self._trace = float((sq - n * (delta @ delta)) / self._denominator)

    def mean_gradient(self) -> torch.Tensor:
        """g = ∇f(x) = (1/N) Σ g_k, shape (d,), in the accumulation dtype."""
        if self._mean is None:
            self._moments()
        return self._mean

    def trace(self) -> float:
        """tr D = (1/N) Σ ‖g_k − g‖², exact, in one pass."""
        if self._trace is None:
            self._moments()
        return self._trace

    def per_sample_gradients(
        self, idx: Sequence[int] | torch.Tensor | slice | None = None
    ) -> torch.Tensor:
        """Per-sample gradients g_k for the samples ``idx`` (all when None), shape (n, d).

        Raises:
            MemoryBudgetError: If n × d gradients exceed the memory budget.
        """
        if idx is None:
            idx = torch.arange(self.n_samples)
        elif isinstance(idx, slice):
            idx = torch.arange(self.n_samples)[idx]
        idx = torch.as_tensor(idx, dtype=torch.long).reshape(-1)
        if idx.numel() and (idx.min() < 0 or idx.max() >= self.n_samples):
            raise IndexError(
                f"the 'idx' parameter of GradientNoise.per_sample_gradients must hold indices in "
                f"[0, {self.n_samples}), got values in [{idx.min().item()}, {idx.max().item()}]."
            )
        need = idx.numel() * self.dim * self._grad_itemsize
        if need > self.memory_budget:
            fit = self.memory_budget // (self.dim * self._grad_itemsize)
            raise MemoryBudgetError(
                f"per_sample_gradients for {idx.numel()} samples × d = {self.dim} needs {format_bytes(need)}, "
                f"over the memory budget of {format_bytes(self.memory_budget)}; at most {fit} samples fit. "
                "Pass fewer indices, or use operator() / spectrum(), which stream over the data."
            )
        if self._cache_complete:
            return self._cache[idx.to(self._cache.device)]  # advanced indexing copies
        result = torch.empty(idx.numel(), self.dim, dtype=self._grad_dtype, device=self.device)
        for start in range(0, idx.numel(), self.chunk_size):
            sub = idx[start : start + self.chunk_size]
            x, y = self.source.get(sub)
            self._compute_chunk(sub, x, y, out=result[start : start + sub.numel()])
        return result

    def _check_dense_budget(self, what: str, factor: float = 1.0) -> None:
        size = self.dim
        need = int(factor * size * size * self._acc_itemsize)
        if need > self.memory_budget:
            fit = int((self.memory_budget / (factor * self._acc_itemsize)) ** 0.5)
            raise MemoryBudgetError(
                f"{what} needs a dense d × d matrix with d = {size}: {format_bytes(need)}, over the memory "
                f"budget of {format_bytes(self.memory_budget)} (d ≤ {fit} would fit). Use operator() for "
                "matrix-free products, or spectrum(k=...) / spectrum(method='randomized'), which need "
                "O(d·k) memory; or raise memory_budget."
            )

    def dense(self) -> torch.Tensor:
        """D(x) as a dense (d, d) matrix in the accumulation dtype (eq. 2).

        Raises:
            MemoryBudgetError: If d × d does not fit the memory budget (says what to call instead).
        """
        self._check_dense_budget("dense()")
        S = torch.zeros(self.dim, self.dim, dtype=self.dtype, device=self.device)
        total = torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        shift = self._mean
        for _, G in self._chunks("dense D"):
            if shift is None:
                shift = G.to(self.dtype).mean(0)
            Gs = self._shifted(G, shift)
            S.addmm_(Gs.T, Gs)
            total += Gs.sum(0)
        n = self.n_samples
        delta = total / n
        S.sub_(torch.outer(delta, delta), alpha=n).div_(self._denominator)
        if self._mean is None:
            self._mean = shift + delta
            self._trace = float(S.diagonal().sum())
        return 0.5 * (S + S.T)

    def operator(self) -> CovarianceOperator:
        """D as a matrix-free operator: each product makes one pass over the data (or the cache)."""
        return CovarianceOperator(self)

    def _centred_products(self, X: torch.Tensor) -> torch.Tensor:
        """D @ X for X (d, k), one pass: (1/N) Σ_k (g_k − g) ((g_k − g)ᵀ X)."""
        g = self.mean_gradient()
        gX = g @ X
        out = torch.zeros_like(X)
        for _, G in self._chunks("D products"):
            Gd = self._accumulation_view(G)
            P = Gd @ X - gX
            out.addmm_(Gd.T, P)
            out.sub_(torch.outer(g, P.sum(0)))
        return out / self._denominator

    # --------------------------------------------------------------------------- spectrum
    def spectrum(
        self,
        k: int | None = None,
        method: str | SpectrumMethod = "auto",
        seed: int | None = 0,
        *,
        rtol: float | None = None,
        tol: float = 1e-5,
        max_iter: int = 300,
        eigenvectors: bool = True,
    ) -> Spectrum:
        """Eigenvalues (descending) and eigenvectors of D.

        Methods:
            - ``dense``: eigh of the d × d matrix D. Exact; O(d²) memory, O(d³) time.
            - ``gram``: for N < d, the non-zero spectrum of D equals that of the N × N matrix
              K = Gᶜ Gᶜᵀ / N of centred gradients; eigenvectors map back as v = Gᶜᵀ u / √(N λ).
              Exact; needs the N × d gradients in memory.
            - ``randomized``: block subspace iteration (see :mod:`.eigensolvers`) for the top k,
              O(d·k) memory, one pass over the data per iteration, converged when every residual
              ‖D v − λ v‖ ≤ tol · λ_max.
            - ``auto``: exact when min(N, d) ≤ 6000 and the matrix fits the budget, otherwise
              randomized. The result's ``method`` and ``reason`` say what was chosen.

        With ``k=None`` the exact methods return every eigenvalue, and the randomized method
        grows k until its smallest converged eigenvalue falls below the rank threshold
        rtol · λ_max, so the rank at that threshold is exact without a dense matrix.

        Args:
            k: Number of eigenpairs, in [1, min(N − correction, d)] (the rank of a centred
                covariance of N samples is at most N − 1); None for "all above the threshold".
            method: "auto", "dense", "gram" or "randomized".
            seed: Seed of the randomized method's starting block (None: nondeterministic).
            rtol: Relative rank threshold for ``k=None``; None is the paper's d · ε_float32.
            tol: Residual tolerance of the randomized method, relative to λ_max.
            max_iter: Maximum passes per round of the randomized method.
            eigenvectors: Keep eigenvectors (d × k) in the result.

        Returns:
            A :class:`~sgdscope.Spectrum`.

        Raises:
            ValueError: On ``k`` outside [1, min(N − correction, d)] or an unknown method.
            MemoryBudgetError: If an explicitly requested exact method does not fit the budget.
        """
        where = "GradientNoise.spectrum"
        method = check_option("method", method, SpectrumMethod, where=where)
        max_rank = max(min(self.n_samples - 1, self.dim), 1)  # a centred covariance of N samples
        if k is not None:
            k = check_int(
                "k", k, where=where, low=1, high=max_rank,
                hint=f"D is a covariance of N = {self.n_samples} centred gradients in d = {self.dim} "
                f"dimensions, so its rank is at most min(N − 1, d) = {max_rank}.",
            )  # fmt: skip
        if rtol is not None:
            check_real("rtol", rtol, where=where, low=0.0, low_open=True)
        rtol_eff = self.dim * FLOAT32_EPS if rtol is None else rtol
        t0 = time.perf_counter()
        method, reason = self._choose_method(method, k)
        generator = None
        if seed is not None:
            generator = torch.Generator().manual_seed(int(seed))
        if method is SpectrumMethod.RANDOMIZED:
            spec = self._spectrum_randomized(
                k, rtol_eff, tol, max_iter, generator, eigenvectors, reason, max_rank
            )
        elif method is SpectrumMethod.DENSE:
            spec = self._spectrum_dense(k, eigenvectors, reason)
        else:
            spec = self._spectrum_gram(k, eigenvectors, reason)
        spec.info.update({"seconds": time.perf_counter() - t0, "data_passes": self.passes,
                          "chunk_size": self.chunk_size, "cached": self._use_cache,
                          "eval_mode": self.eval_mode, "correction": self.correction})  # fmt: skip
        return spec

    def _exact_bytes(self, method: SpectrumMethod) -> int:
        """Bytes an exact method needs.

        The m × m matrix, its eigenvectors and LAPACK work (3 m²), plus, for the Gram method,
        the N × d gradients it keeps.
        """
        if method is SpectrumMethod.DENSE:
            return 3 * self.dim**2 * self._acc_itemsize
        cache = self.n_samples * self.dim * self._grad_itemsize
        return 3 * self.n_samples**2 * self._acc_itemsize + cache

    def _exact_fits(self, method: SpectrumMethod) -> bool:
        return self._exact_bytes(method) <= self.memory_budget

    def _choose_method(self, method: SpectrumMethod, k: int | None) -> tuple[SpectrumMethod, str]:
        if method is not SpectrumMethod.AUTO:
            return method, "requested"
        n, d = self.n_samples, self.dim
        exact = SpectrumMethod.DENSE if d <= n else SpectrumMethod.GRAM
        size = min(n, d)
        if size <= _EXACT_MAX and self._exact_fits(exact):
            return (
                exact,
                f"auto: min(N, d) = {size} ≤ {_EXACT_MAX} and the {size}² matrix fits the budget",
            )
        if k is not None and 4 * k >= size and self._exact_fits(exact):
            return (
                exact,
                f"auto: k = {k} is a large share of min(N, d) = {size}; the exact method is cheaper",
            )
        why = (
            f"min(N, d) = {size} > {_EXACT_MAX}"
            if size > _EXACT_MAX
            else f"the {size}² matrix does not fit the memory budget"
        )
        return SpectrumMethod.RANDOMIZED, f"auto: {why}; the randomized method needs O(d·k) memory"

    def _spectrum_dense(self, k: int | None, keep_vectors: bool, reason: str) -> Spectrum:
        self._check_dense_budget("spectrum(method='dense')", factor=3.0)
        D = self.dense()
        values, vectors = eigh_descending(D)
        del D
        values = np.clip(values, 0.0, None)  # D ⪰ 0; negative values are round-off
        if k is not None:
            values, vectors = values[:k], vectors[:, :k]
        return Spectrum(
            eigenvalues=values,
            eigenvectors=vectors.cpu().numpy() if keep_vectors else None,
            dim=self.dim, n_samples=self.n_samples, trace=self.trace(),
            complete=k is None, method="dense", reason=reason,
        )  # fmt: skip

    def _centred_rows(self, G: torch.Tensor, start: int, buffer: str) -> torch.Tensor:
        """Rows ``start : start + chunk`` of G minus the mean gradient, in a reused buffer."""
        rows = G[start : start + self.chunk_size]
        out = self._buffer(buffer, rows.shape[0], self.dtype)
        return out.copy_(rows).sub_(self.mean_gradient())

    def _spectrum_gram(self, k: int | None, keep_vectors: bool, reason: str) -> Spectrum:
        need = self._exact_bytes(SpectrumMethod.GRAM)
        if need > self.memory_budget:
            raise MemoryBudgetError(
                f"spectrum(method='gram') keeps N × d = {self.n_samples} × {self.dim} gradients and an N × N "
                f"matrix: {format_bytes(need)}, over the memory budget of {format_bytes(self.memory_budget)}. "
                "Use method='randomized' (O(d·k) memory) or fewer samples."
            )
        if not self._cache_complete:
            self._use_cache = True
            for _ in self._chunks("per-sample gradients"):
                pass
        G = self._cache
        self.mean_gradient()
        n, c = self.n_samples, self.chunk_size
        K = torch.empty(n, n, dtype=self.dtype, device=self.device)
        for i in range(0, n, c):
            Gi = self._centred_rows(G, i, "gram rows")
            for j in range(0, i + 1, c):
                Gj = self._centred_rows(G, j, "gram columns")
                block = Gi @ Gj.T
                K[i : i + c, j : j + c] = block
                if j != i:
                    K[j : j + c, i : i + c] = block.T
        K /= self._denominator
        values, U = eigh_descending(K)
        del K
        r = min(n - 1, self.dim) if k is None else k
        values = np.clip(values[:r], 0.0, None)
        vectors = None
        if keep_vectors:
            U = U[:, :r]
            V = torch.zeros(self.dim, r, dtype=self.dtype, device=self.device)
            for i in range(0, n, c):
                V.addmm_(self._centred_rows(G, i, "gram rows").T, U[i : i + c])
            scale = (
                torch.as_tensor(values, dtype=self.dtype, device=self.device) * self._denominator
            )
            nonzero = scale > 0
            V[:, nonzero] /= scale[nonzero].sqrt()
            V[:, ~nonzero] = 0.0
            vectors = V.cpu().numpy()
        return Spectrum(
            eigenvalues=values, eigenvectors=vectors, dim=self.dim, n_samples=n, trace=self.trace(),
            complete=k is None, method="gram", reason=reason,
        )  # fmt: skip

    def _spectrum_randomized(
        self, k, rtol, tol, max_iter, generator, keep_vectors, reason, max_rank
    ) -> Spectrum:
        self.mean_gradient()
        operator = self._centred_products
        with progress_bar("eigensolver passes", None, enabled=self.progress) as advance:

            def on_iteration(_it: int, _res: float) -> None:
                advance()

            if k is None:
                res = eigenpairs_above(
                    operator, self.dim, rtol, max_rank=max_rank, tol=tol, max_iter=max_iter,
                    generator=generator, dtype=self.dtype, device=self.device, on_iteration=on_iteration,
                )  # fmt: skip
            else:
                res = subspace_iteration(
                    operator, self.dim, k, tol=tol, max_iter=max_iter, generator=generator,
                    dtype=self.dtype, device=self.device, on_iteration=on_iteration,
                )  # fmt: skip
        values = np.clip(res.values, 0.0, None)
        return Spectrum(
            eigenvalues=values,
            eigenvectors=res.vectors.cpu().numpy() if keep_vectors else None,
            dim=self.dim, n_samples=self.n_samples, trace=self.trace(),
            complete=values.size >= max_rank, method="randomized", reason=reason,
            residuals=res.residuals, iterations=res.iterations, converged=bool(res.converged),
            info={"tol": min(tol, 0.01 * rtol) if k is None else tol},
        )  # fmt: skip
