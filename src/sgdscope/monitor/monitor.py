r"""Watching a training run: :class:`Monitor`, one call after each optimizer step.

The monitor joins the trajectory recorder and the gradient-noise engine for a plain training
loop. At every ``record_every``-th step it records the weights (raw, or k single weights for a
large model: :attr:`Monitor.record_rule`), the mini-batch loss, the norm of the gradient the
optimizer stepped with, and the optimizer's *current* learning rate, momentum and temperature

.. math:: \beta^{-1} = \frac{\eta}{2b\,(1-\mu)}

(Chaudhari & Soatto 2018, eq. 3 and Remark 12; heavy-ball momentum in its SDE limit, see
:func:`sgdscope.temperature`), read at each step so that schedules are followed. Every
``measure_every`` steps it measures the gradient noise D(x) on a fixed probe set: tr D, the
simple noise scale B_simple = tr D / ‖g‖² (McCandlish et al. 2018, eq. 2.8) and the top-k
eigenvalues of D (and, for small models, their eigenvectors: Remark 13 asks how D's top
subspace moves along training), stored beside the weights with the step they belong to.

Everything goes into one crash-safe trajectory directory (:mod:`sgdscope.trajectory.store`):
the weights stream, a ``noise`` stream (one row of eigenvalues per measurement, with tr D,
B_simple, ‖g‖ and the measurement's cost as scalars) and, when eigenvectors are kept, a
``noise_vectors`` stream. Read it back with :func:`sgdscope.load_monitor`.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._closing import ClosesOnExit
from .._memory import format_bytes
from .._params import LossFn, select_params
from .._validation import check_int, check_real
from ..noise import GradientNoise
from ..noise.distributed import Reducer, shard, unwrap_data_parallel
from ..temperature import temperature
from ..trajectory import TrajectoryRecorder, coordinate_projection

__all__ = ["MAX_RAW_DIM", "NOISE_STREAM", "VECTORS_STREAM", "Monitor", "NoiseMeasurement"]

NOISE_STREAM = "noise"
"""The stream of D measurements: one row of top-k eigenvalues per measurement."""
VECTORS_STREAM = "noise_vectors"
"""The stream of D's top-k eigenvectors, one (k · d) row per measurement (small models)."""

MAX_RAW_DIM = 1 << 18
"""Default largest d recorded as raw weights: 262,144 coordinates, 1 MiB per float32 record."""

_WHERE = "Monitor"
_AUTO = "auto"


@dataclass(frozen=True)
class NoiseMeasurement:
    """One measurement of the gradient noise D(x) on the probe set, at one step.

    Attributes:
        step: The optimizer step after which it was made (weights x after that step).
        eigenvalues: Float64 array (k,), D's top-k eigenvalues, descending.
        trace: tr D = (1/N) Σ ‖g_k − g‖² (exact).
        noise_scale: B_simple = tr D / ‖g‖² (McCandlish et al. 2018); inf when g = 0.
        grad_norm: ‖g‖, the norm of the probe set's mean gradient.
        seconds: Wall time of the measurement.
        converged: Whether the eigensolver met its tolerance (exact methods always do).
        eigenvectors: Float32 array (d, k) of the eigenvectors, or None when not kept.
    """

    step: int
    eigenvalues: np.ndarray
    trace: float
    noise_scale: float
    grad_norm: float
    seconds: float
    converged: bool
    eigenvectors: np.ndarray | None = None

    def scalars(self) -> dict[str, float]:
        """The measurement as named scalars (for a training framework's loggers)."""
        out = {
            "trace_D": self.trace,
            "noise_scale": self.noise_scale,
            "probe_grad_norm": self.grad_norm,
        }
        for i, value in enumerate(self.eigenvalues[:3], start=1):
            out[f"lambda_{i}"] = float(value)
        return out


def _base_optimizer(optimizer: Any) -> Any:
    """The torch optimizer inside a framework's wrapper (Accelerate's, Lightning's)."""
    for _ in range(8):
        inner = getattr(optimizer, "optimizer", None) or getattr(optimizer, "_optimizer", None)
        if not isinstance(inner, torch.optim.Optimizer) or inner is optimizer:
            break
        optimizer = inner
    return optimizer


def _sgd_state(optimizer: Any) -> tuple[float, float, float | None, str]:
    """``(lr, momentum, effective lr or None, why)`` from the optimizer's current settings.

    The temperature of eq. 3 is defined for SGD (with heavy-ball momentum in its SDE limit), so
    it is given only for ``torch.optim.SGD`` whose groups share one lr, momentum and dampening;
    dampening τ scales the step of a momentum buffer by (1 − τ).

    Returns:
        The four values; the effective lr is None, and ``why`` says why, when the temperature
        is not defined.

    Raises:
        ValueError: If ``optimizer`` has no parameter groups (it is not a torch optimizer).
    """
    opt = _base_optimizer(optimizer)
    groups = getattr(opt, "param_groups", None)
    if not groups:
        raise ValueError(
            f"the 'optimizer' parameter of {_WHERE}.step must be a torch optimizer (or a "
            f"framework's wrapper of one), got {type(optimizer).__name__}."
        )
    lr = float(groups[0]["lr"])
    momentum = float(groups[0].get("momentum", 0.0) or 0.0)
    if not isinstance(opt, torch.optim.SGD):
        return lr, momentum, None, f"{type(opt).__name__} is not SGD"
    keys = [(float(g["lr"]), g.get("momentum", 0.0), g.get("dampening", 0.0)) for g in groups]
    if len(set(keys)) > 1:
        return lr, momentum, None, "the parameter groups have different lr/momentum"
    dampening = float(groups[0].get("dampening", 0.0) or 0.0)
    effective = lr * (1.0 - dampening) if momentum > 0 else lr
    if effective <= 0 or not 0 <= momentum < 1:
        return lr, momentum, None, "the lr or momentum is out of the SDE limit's range"
    return lr, momentum, effective, ""


def _grad_norm(params: list[nn.Parameter]) -> torch.Tensor | float:
    """‖∇‖ of the ``.grad`` fields (a device tensor: no synchronisation), NaN when none is set."""
    grads = [p.grad.detach() for p in params if p.grad is not None]
    if not grads:
        return math.nan
    norms = torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])
    return torch.linalg.vector_norm(norms)


class Monitor(ClosesOnExit):
    r"""Record a training run and measure its gradient noise, one call after each optimizer step.

    Call :meth:`step` after each ``optimizer.step()`` and :meth:`close` at the end, or use the
    monitor as a context manager.

    What is recorded at every ``record_every``-th step (the trajectory; steps count calls to
    :meth:`step` from 1, or continue a resumed run):

    - the weights x: raw when d ≤ ``max_raw_dim``, otherwise ``projection_dim`` single weights
      drawn uniformly with ``seed`` (a :class:`~sgdscope.trajectory.CoordinateProjection`, the
      per-weight view of the paper's Fig. 3, at O(k) memory whatever d). The rule and its
      outcome are in :attr:`record_rule`;
    - scalars: ``loss`` (as given), ``grad_norm`` (‖∇‖ of the ``.grad`` fields of x after the
      step: the gradient the optimizer used, after any clipping), ``lr`` and ``momentum`` read
      from the optimizer at this step, ``batch_size``, and ``temperature``
      η(1 − τ)/(2b(1 − μ)) (×(1 − b/N) without replacement), NaN when it is not defined (not
      SGD, groups with different settings, or no batch size); plus your own scalars.

    Every ``measure_every`` steps (or, with ``"auto"``, at the first step and then at the step
    where the training time since the last measurement, at its mean step time, makes that
    measurement's cost ``overhead`` of it), on the probe set:
    tr D, B_simple, ‖g‖ and D's top ``k`` eigenvalues (and eigenvectors when kept), stored in
    the ``noise`` stream at that step (:class:`NoiseMeasurement`). D is measured in eval mode,
    as the paper did; the model's modes and ``.grad`` fields are left as they were, and no
    global random state is used, so monitoring does not change the training run.

    Crash safety and resuming: as :class:`~sgdscope.TrajectoryRecorder` (chunks committed
    atomically; a killed run keeps every committed chunk and measurement). Call :meth:`flush`
    when you save a checkpoint; to continue, construct the monitor with ``resume=True`` and
    ``resume_step`` = the checkpoint's step: the records after it (made by the interrupted run)
    are dropped, and the record goes on with no gap and no step twice.

    Data-parallel training (``torch.distributed`` initialised, e.g. DDP under ``torchrun``):
    construct the monitor on every rank, with the same ``probe_data`` and ``path``, and call
    :meth:`step` on every rank. Each rank measures D on its contiguous share of the probe set
    and the statistics are summed across ranks (:class:`~sgdscope.GradientNoise` with
    ``process_group``), so a measurement equals one process on the whole probe set; only rank
    0 (:attr:`is_writer`) records and writes, and the ``"auto"`` schedule is decided there and
    shared, so that every rank measures at the same step.

    Args:
        model: The model being trained (construct the monitor after moving it to its device);
            a ``DistributedDataParallel`` wrapper is accepted (its module is watched).
        loss_fn: Per-sample loss ``loss_fn(outputs, targets) -> (b,)`` (``reduction="none"``)
            for the measurements of D.
        probe_data: The fixed probe set D is measured on: ``(inputs, targets)`` tensors, a dict
            batch with ``"labels"``, a map-style Dataset or a DataLoader (as
            :class:`~sgdscope.GradientNoise` takes).
        path: Directory of the record (created).
        record_every: Record every this many steps (≥ 1).
        measure_every: Measure D every this many steps (≥ 1), or ``"auto"``.
        overhead: With ``"auto"``: the largest share of the training time that the
            measurements may take (the next measurement waits until the training time since
            the last one is its cost / overhead; the default 0.05 is the 5 % budget that
            gradient-noise trackers aim at).
        k: Number of top eigenvalues of D per measurement, in [1, min(N − 1, d)].
        params: The parameters that make up x (as in :class:`~sgdscope.GradientNoise`).
        batch_size: Mini-batch size b for the temperature (each :meth:`step` may give its own).
        n: Training-set size N (for the temperature without replacement).
        replacement: Whether mini-batches are drawn with replacement (the paper's model).
        max_raw_dim: The largest d recorded as raw weights.
        projection_dim: Single weights recorded when d > ``max_raw_dim``.
        eigenvectors: Keep D's top-k eigenvectors with each measurement; None keeps them when
            the raw weights are recorded.
        seed: Seed of the coordinate draw (and of the eigensolver's start).
        memory_budget: Bytes a measurement may allocate; None: half of the device's free memory.
        chunk_size: Records per chunk of the weights stream (None: ≈1 MiB).
        resume: Continue the record at ``path`` if it exists.
        resume_step: With ``resume``: the step training restarts from (the checkpoint's).
        overwrite: Replace an existing record at ``path``.
        progress: Show the progress of long measurements (on the writing rank).
        meta: Extra JSON-serialisable metadata.
        process_group: Under ``torch.distributed``, the group of the ranks that train together
            (None: the default group when one is initialised, else one process).

    Raises:
        ValueError: On an argument out of range, a loss that is not per-sample, or ``k`` above
            what the probe set allows.
        FileExistsError: If ``path`` holds a record and neither ``resume`` nor ``overwrite``.
        TrajectoryGapError: If ``resume_step`` is after the record's last step.
        TrajectoryLockedError: If another writer holds ``path``.
        RankError: Under ``torch.distributed``, on every rank, if any rank failed (the first
            failure's message).

    Example:
        >>> import tempfile, torch
        >>> from torch import nn
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Linear(4, 3)
        >>> x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
        >>> loss_fn = nn.CrossEntropyLoss(reduction="none")
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        >>> path = tempfile.mkdtemp() + "/run"
        >>> with Monitor(model, loss_fn, (x, y), path, measure_every=4, batch_size=16) as mon:
        ...     for i in range(0, 64, 16):
        ...         loss = loss_fn(model(x[i : i + 16]), y[i : i + 16]).mean()
        ...         opt.zero_grad()
        ...         loss.backward()
        ...         opt.step()
        ...         mon.step(opt, loss=loss)
        >>> mon.record_rule.startswith("raw weights")
        True
        >>> from sgdscope import load_monitor
        >>> rec = load_monitor(path)
        >>> rec.steps.tolist(), rec.eigenvalues.shape
        ([4], (1, 8))
        >>> round(float(rec.trajectory.scalars["temperature"][0]), 6)  # 0.1 / (2·16·(1 − 0.9))
        0.03125
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        probe_data: Any,
        path: str | os.PathLike,
        *,
        record_every: int = 1,
        measure_every: int | str = _AUTO,
        overhead: float = 0.05,
        k: int = 8,
        params: Any = None,
        batch_size: int | None = None,
        n: int | None = None,
        replacement: bool = True,
        max_raw_dim: int = MAX_RAW_DIM,
        projection_dim: int = 1024,
        eigenvectors: bool | None = None,
        seed: int = 0,
        memory_budget: int | None = None,
        chunk_size: int | None = None,
        resume: bool = False,
        resume_step: int | None = None,
        overwrite: bool = False,
        progress: bool = False,
        meta: Mapping[str, Any] | None = None,
        process_group: Any = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ValueError(
                f"the 'model' parameter of {_WHERE} must be a torch.nn.Module, got "
                f"{type(model).__name__}."
            )
        model = unwrap_data_parallel(model, where=_WHERE)  # DDP's module: its replica here
        self._ranks = Reducer(process_group, where=_WHERE)
        self.is_writer = self._ranks.is_writer
        self._group = process_group
        if self._ranks.distributed:
            probe_data = shard(probe_data, group=process_group)  # this rank's share
        self._model, self._loss_fn, self._probe = model, loss_fn, probe_data
        self.record_every = check_int("record_every", record_every, where=_WHERE, low=1)
        self.measure_every = self._check_cadence(measure_every)
        self.overhead = check_real("overhead", overhead, where=_WHERE, low=0.0, low_open=True)
        self.batch_size = (
            None if batch_size is None else check_int("batch_size", batch_size, where=_WHERE, low=1)
        )
        self.n = None if n is None else check_int("n", n, where=_WHERE, low=1)
        self.replacement = bool(replacement)
        self.seed = check_int("seed", seed, where=_WHERE, low=0)
        self._memory_budget = memory_budget
        self._progress = bool(progress)
        self._names = select_params(model, params, where=_WHERE)
        named = dict(model.named_parameters())
        self._params = [named[name] for name in self._names]
        self.k, self._probe_size = self._check_probe(k)
        projection = self._plan_record(max_raw_dim, projection_dim)
        self.eigenvectors = (
            self.recorded_dim == self.full_dim if eigenvectors is None else bool(eigenvectors)
        )
        self.path = Path(path)
        record = {
            "projection": projection, "chunk_size": chunk_size, "resume": resume,
            "resume_step": resume_step, "overwrite": overwrite, "meta": meta,
        }  # fmt: skip
        self._recorder = self._ranks.run("opening the record", lambda: self._open_record(record))
        start = self._recorder.step_count if self._recorder is not None else -1
        self._step = int(self._ranks.max("the record's step", [start])[0])
        self.last_measurement: NoiseMeasurement | None = None
        self.last_scalars: dict[str, Any] = {}
        self._train_seconds = 0.0  # training time since the last measurement
        self._steps_since = 0  # steps since the last measurement
        self._next_measurement: int | None = None  # None: at the next step ("auto")
        self._clock = time.perf_counter()
        self.temperature_note = ""

    # ------------------------------------------------------------------------------ set-up steps
    @staticmethod
    def _check_cadence(measure_every: int | str) -> int | str:
        if measure_every == _AUTO:
            return _AUTO
        if isinstance(measure_every, str):
            raise ValueError(
                f"the 'measure_every' parameter of {_WHERE} must be an int ≥ 1 or 'auto', got "
                f"{measure_every!r}."
            )
        return check_int("measure_every", measure_every, where=_WHERE, low=1)

    def _check_probe(self, k: int) -> tuple[int, int]:
        """Check the model, loss and probe set once (shapes only) and bound ``k``; N."""
        with warnings.catch_warnings():
            # fresh BatchNorm statistics are expected before training; D is measured later
            warnings.filterwarnings("ignore", message="sgdscope: BatchNorm", category=UserWarning)
            noise = self._noise()
        high = max(min(noise.n_samples - 1, noise.dim), 1)
        k = check_int(
            "k", k, where=_WHERE, low=1, high=high,
            hint=f"D of N = {noise.n_samples} probe samples in d = {noise.dim} dimensions has "
            f"rank at most min(N − 1, d) = {high}; use a larger probe set or a smaller k.",
        )  # fmt: skip
        return k, noise.n_samples

    def _plan_record(self, max_raw_dim: int, projection_dim: int) -> Any:
        """Raw weights or k single weights, by the memory rule; sets :attr:`record_rule`."""
        max_raw_dim = check_int("max_raw_dim", max_raw_dim, where=_WHERE, low=1)
        self.full_dim = d = sum(p.numel() for p in self._params)
        if d <= max_raw_dim:
            self.recorded_dim = d
            self.record_rule = (
                f"raw weights: d = {d:,} ≤ max_raw_dim = {max_raw_dim:,}, so one float32 record "
                f"takes {format_bytes(4 * d)}"
            )
            return None
        k = check_int("projection_dim", projection_dim, where=_WHERE, low=1, high=d)
        self.recorded_dim = k
        self.record_rule = (
            f"{k:,} single weights drawn uniformly with seed {self.seed}: d = {d:,} > "
            f"max_raw_dim = {max_raw_dim:,} (a raw float32 record would take "
            f"{format_bytes(4 * d)})"
        )
        return coordinate_projection(d, k, seed=self.seed)

    def _open_record(self, record: dict[str, Any]) -> TrajectoryRecorder | None:
        """The trajectory store, on the writing rank (rank 0); None on the others."""
        if not self.is_writer:
            return None
        streams: dict[str, Any] = {NOISE_STREAM: self.k}
        if self.eigenvectors:
            streams[VECTORS_STREAM] = (self.k * self.full_dim, torch.float32)
        settings = {
            "probe_size": self._probe_size, "k": self.k, "measure_every": self.measure_every,
            "overhead": self.overhead, "record_rule": self.record_rule,
            "eigenvectors": self.eigenvectors, "replacement": self.replacement,
            "ranks": self._ranks.world_size,
        }  # fmt: skip
        meta = record["meta"]
        return TrajectoryRecorder(
            self.path, self._model, every=self.record_every, params=self._names,
            projection=record["projection"], batch_size=self.batch_size, n=self.n,
            seed=self.seed, replacement=self.replacement, streams=streams,
            chunk_size=record["chunk_size"], dtype=torch.float32, resume=record["resume"],
            resume_step=record["resume_step"], overwrite=record["overwrite"],
            meta={**(dict(meta) if meta is not None else {}), "monitor": settings},
        )  # fmt: skip

    def _noise(self) -> GradientNoise:
        return GradientNoise(
            self._model, self._loss_fn, self._probe, params=self._names,
            memory_budget=self._memory_budget, progress=self._progress and self.is_writer,
            process_group=self._group,
        )  # fmt: skip

    # ----------------------------------------------------------------------------- training side
    @property
    def step_count(self) -> int:
        """Number of optimizer steps seen (continues from the resume step after a resume)."""
        return self._step

    def step(
        self,
        optimizer: Any,
        loss: Any = None,
        *,
        batch_size: int | None = None,
        grad_norm: Any = None,
        lr: float | None = None,
        **scalars: Any,
    ) -> None:
        """Count one optimizer step: record it when due, and measure D when due.

        Call it after ``optimizer.step()`` (and before the scheduler's step, so that the
        learning rate read is the one the step used).

        Args:
            optimizer: The optimizer (or a framework's wrapper of it); its first parameter
                group's lr and momentum are read at each recorded step.
            loss: The mini-batch loss (a float or a 0-d tensor, read in the writer thread).
            batch_size: This step's mini-batch size (else the constructor's).
            grad_norm: The norm of this step's gradient, when the ``.grad`` fields are already
                cleared (a framework that zeroes them before its callbacks); None reads them.
            lr: The learning rate this step used, when the optimizer already holds the next
                one (a framework that steps the scheduler before its callbacks); None reads it.
            **scalars: Further scalars recorded at this step.

        A measurement made at this step is :attr:`last_measurement` (its ``step`` is this
        step); the scalars of the last recorded step are :attr:`last_scalars`.

        Raises:
            RuntimeError: If the monitor is closed, or its writer thread failed.
        """
        now = time.perf_counter()
        self._train_seconds += now - self._clock
        self._steps_since += 1
        self._step = step = self._step + 1
        if self._recorder is not None:
            if step % self.record_every == 0:
                scalars = {**self._optimizer_scalars(optimizer, batch_size, lr), **scalars}
                scalars["grad_norm"] = _grad_norm(self._params) if grad_norm is None else grad_norm
                self.last_scalars = {"step": step, **scalars}
            self._recorder.step(loss=loss, **scalars)
        if self._measurement_due(step):
            self.measure()
        self._clock = time.perf_counter()

    def _optimizer_scalars(
        self, optimizer: Any, batch_size: int | None, lr_used: float | None
    ) -> dict[str, float]:
        lr, momentum, effective, why = _sgd_state(optimizer)
        if lr_used is not None and effective is not None:
            effective *= float(lr_used) / lr
        lr = lr if lr_used is None else float(lr_used)
        b = self.batch_size if batch_size is None else int(batch_size)
        temp = math.nan
        if effective is not None and b is not None:
            temp = temperature(
                effective, b, n=self.n, replacement=self.replacement, momentum=momentum
            )
        self.temperature_note = why or ("" if b is not None else "no batch size was given")
        out = {"lr": lr, "momentum": momentum, "temperature": temp}
        if b is not None:
            out["batch_size"] = float(b)
        return out

    def _measurement_due(self, step: int) -> bool:
        if isinstance(self.measure_every, int):
            return step % self.measure_every == 0
        return self._next_measurement is None or step >= self._next_measurement

    def _schedule(self, cost: float) -> None:
        """With "auto": the step of the next measurement, shared by every rank.

        Its cost is ``overhead`` of the training time until it, at the mean step time since the
        last one; the writing rank decides, so that every rank measures at the same step.
        """
        mean_step = self._train_seconds / max(self._steps_since, 1)
        gap = math.ceil(cost / (self.overhead * max(mean_step, 1e-9)))
        nxt = self._step + int(min(max(gap, 1), 2**52)) if self.is_writer else -1
        self._next_measurement = int(self._ranks.max("the next measurement's step", [nxt])[0])

    def measure(self) -> NoiseMeasurement:
        """Measure D on the probe set now, at the current step, and record it.

        Under ``torch.distributed``, call it on every rank at the same step.

        Returns:
            The :class:`NoiseMeasurement` (also kept as :attr:`last_measurement`).

        Raises:
            ValueError: If the current step already holds a measurement.
            RankError: Under ``torch.distributed``, on every rank, if a rank failed.
        """
        t0 = time.perf_counter()
        noise = self._noise()
        trace = noise.trace()
        grad_norm = float(noise.mean_gradient().norm())
        noise_scale = trace / grad_norm**2 if grad_norm > 0 else math.inf
        spec = noise.spectrum(
            k=self.k, seed=self.seed, eigenvectors=self.k if self.eigenvectors else False,
            throw=False,
        )  # fmt: skip
        values = np.full(self.k, np.nan)
        top = np.asarray(spec.eigenvalues, dtype=np.float64)[: self.k]
        values[: top.size] = top
        vectors = None
        if self.eigenvectors and spec.eigenvectors is not None:
            vectors = np.zeros((self.full_dim, self.k), dtype=np.float32)
            got = np.asarray(spec.eigenvectors)[:, : self.k]
            vectors[:, : got.shape[1]] = got
        seconds = time.perf_counter() - t0
        m = NoiseMeasurement(
            step=self.step_count, eigenvalues=values, trace=float(trace),
            noise_scale=float(noise_scale), grad_norm=grad_norm, seconds=seconds,
            converged=bool(spec.converged), eigenvectors=vectors,
        )  # fmt: skip
        self._ranks.run("recording a measurement", lambda: self._record(m))
        self.last_measurement = m
        if self.measure_every == _AUTO:
            self._schedule(seconds)
        self._train_seconds, self._steps_since = 0.0, 0
        return m

    def _record(self, m: NoiseMeasurement) -> None:
        """Append a measurement to the record (on the writing rank)."""
        if self._recorder is None:
            return
        self._recorder.append(
            NOISE_STREAM, m.eigenvalues, trace=m.trace, noise_scale=m.noise_scale,
            grad_norm=m.grad_norm, seconds=m.seconds, converged=float(m.converged),
        )  # fmt: skip
        if m.eigenvectors is not None:
            rows = torch.from_numpy(np.ascontiguousarray(m.eigenvectors.T))
            self._recorder.append(VECTORS_STREAM, rows)

    def flush(self) -> None:
        """Commit everything recorded so far; call it when you save a training checkpoint."""
        if self._recorder is not None:
            self._recorder.flush()

    def close(self) -> None:
        """Flush and close the record (idempotent)."""
        if self._recorder is not None:
            self._recorder.close()

    def __repr__(self) -> str:
        return (
            f"Monitor({str(self.path)!r}, steps={self.step_count}, record_every="
            f"{self.record_every}, measure_every={self.measure_every!r}, k={self.k}, "
            f"recorded_dim={self.recorded_dim})"
        )
