r"""Recording a real training run: :class:`TrajectoryRecorder`.

The recorder copies the flat weight vector x (as in README.md and docs/noise.md: the concatenation,
in ``model.named_parameters()`` order, of the parameters that require grad) into a preallocated
buffer of ``chunk_size`` rows, on the model's device, every ``every`` optimizer steps. A full buffer
is handed to a background thread that writes it as one chunk of the crash-safe store
(:mod:`sgdscope.trajectory.store`) while training goes on with the next buffer. So the training
thread pays one ``torch.cat`` per record and a queue hand-off per chunk; the bounded pool of buffers
(``queue_size``) blocks training only when the disk falls behind.

These trajectories are the raw material of the paper's §IV-B (Chaudhari & Soatto 2018, Fig. 3):
positions x_k, increments x_{k+1} - x_k, and the full gradient ∇f(x_k) (Remark 17, Thm 22).
"""

from __future__ import annotations

import json
import os
import platform
import queue
import shutil
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._closing import ClosesOnExit
from .._params import LossFn, full_gradient, select_params
from .._validation import check_int, check_option, check_real
from ..temperature import temperature
from .projection import (
    CoordinateProjection,
    Projection,
    ProjectionKind,
    basis_projection,
    random_projection,
)
from .store import (
    INDEX,
    LOCK,
    MANIFEST,
    PROJECTION_FILE,
    STREAMS,
    DirectoryLock,
    StoreWriter,
    TrajectoryGapError,
    check_stream_name,
    chunks_of,
    read_manifest,
)

__all__ = ["LossFn", "NonFinitePolicy", "TrajectoryRecorder"]

_CHUNK_BYTES = 1 << 20  # target size of one weights chunk
_WHERE = "TrajectoryRecorder"


class NonFinitePolicy(str, Enum):
    """What the recorder does with a record that holds a NaN or an infinity."""

    RECORD = "record"
    """Store it as it is, flag it in the manifest (``Trajectory.first_nonfinite_step``) and warn
    once (RuntimeWarning) in the training thread, so a diverged run can be inspected."""
    RAISE = "raise"
    """Store it, then raise FloatingPointError in the training thread at the next step or close."""


def _select_params(
    model: torch.nn.Module, params: Any
) -> tuple[list[str], list[torch.nn.Parameter]]:
    """The parameters that make up x, by the package's one rule (:func:`sgdscope._params.select_params`)."""
    names = select_params(model, params, where=_WHERE)
    named = dict(model.named_parameters())
    return names, [named[n] for n in names]


def _layout(names: list[str], params: Sequence[torch.Tensor]) -> dict:
    offsets, pos = [], 0
    for p in params:
        offsets.append(pos)
        pos += p.numel()
    return {"names": names, "shapes": [list(p.shape) for p in params], "offsets": offsets}


def _unstarted(path: Path) -> bool:
    """True for an empty directory, or one left by a recorder killed before its first manifest.

    Such a directory holds at most empty stream folders, hidden ``.*.tmp`` files, the lock file and
    an empty chunk index.

    Returns:
        Whether ``path`` is such a directory.
    """
    if not path.is_dir():
        return False
    for entry in path.iterdir():
        if entry.is_file() and entry.name.startswith(".") and entry.name.endswith(".tmp"):
            continue
        if entry.is_file() and entry.name == LOCK:
            continue
        if entry.is_file() and entry.name == INDEX and entry.stat().st_size == 0:
            continue
        if entry.is_dir() and not any(entry.iterdir()):
            continue
        return False
    return True


def _open_directory(
    path: Path, *, resume: bool, overwrite: bool
) -> tuple[DirectoryLock, dict | None]:
    """Take the directory's lock; the manifest to resume (None for a new trajectory).

    With ``overwrite`` an existing trajectory (and only a trajectory) is emptied once the lock is
    held; an existing directory that is neither empty nor a trajectory is refused.

    Returns:
        ``(lock, manifest)``: the lock, held, and the manifest to resume or None.

    Raises:
        FileExistsError: If ``path`` is a trajectory and neither ``resume`` nor ``overwrite`` is
        asked, or is a directory that is neither empty nor a trajectory.
    """
    if not path.exists() or _unstarted(path):
        path.mkdir(parents=True, exist_ok=True)
        return DirectoryLock(path, _WHERE), None
    is_traj = (path / MANIFEST).is_file()
    if resume:
        read_manifest(path)  # a clear error before the lock file is created
        lock = DirectoryLock(path, _WHERE)
        try:
            return lock, read_manifest(path)  # again, now that no one else writes it
        except BaseException:
            lock.release()
            raise
    if is_traj and overwrite:
        read_manifest(path)  # only a trajectory is ever deleted
        lock = DirectoryLock(path, _WHERE)
        for entry in path.iterdir():
            if entry.name == LOCK:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        return lock, None
    if is_traj:
        raise FileExistsError(
            f"the 'path' parameter of {_WHERE} names an existing trajectory {str(path)!r}. Pass "
            f"resume=True to continue it or overwrite=True to replace it."
        )
    raise FileExistsError(
        f"the 'path' parameter of {_WHERE} names {str(path)!r}, which exists and is not a "
        f"trajectory; choose a new or empty directory."
    )


def _resume_step(manifest: dict, gradient_every: int | None) -> int:
    """The step where a resumed recording continues: the last one that every stream covers.

    The weights' last committed step W, lowered so that no gradient due at a step <= it is missing
    (a crash between the commits of the two streams). Records after it are dropped on resume.
    Streams written with :meth:`TrajectoryRecorder.append` do not lower it: a row is due at no
    particular step.

    Returns:
        The step.
    """
    weights = chunks_of(manifest, "weights")
    step = weights[-1].last_step if weights else manifest["meta"].get("start_step", 0)
    if gradient_every is not None and "gradients" in manifest["streams"]:
        grads = chunks_of(manifest, "gradients")
        covered = (grads[-1].last_step if grads else 0) + gradient_every - 1
        step = min(step, covered)
    return step


def _stream_specs(streams: Mapping[str, Any] | None) -> dict[str, tuple[int, torch.dtype]]:
    """``{name: dim}`` or ``{name: (dim, dtype)}`` checked, as ``{name: (dim, dtype)}``."""
    out: dict[str, tuple[int, torch.dtype]] = {}
    for name, spec in (streams or {}).items():
        check_stream_name(name, _WHERE)
        if name in STREAMS:
            raise ValueError(
                f"the 'streams' parameter of {_WHERE} names {name!r}, which the recorder writes "
                f"itself; choose another name."
            )
        dim, dtype = spec if isinstance(spec, tuple) else (spec, torch.float64)
        dim = check_int(f"streams[{name!r}]", dim, where=_WHERE, low=1)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(
                f"the 'streams' parameter of {_WHERE} gives stream {name!r} the dtype {dtype!r}; "
                "expected a floating torch.dtype."
            )
        out[name] = (dim, dtype)
    return out


class _Projector:
    """The projection applied in the training thread, from the parameters' flat views.

    Raw weights are concatenated into the record row; a dense projection multiplies the
    concatenation by its basis; a coordinate projection gathers its k entries parameter by
    parameter (never the whole vector).
    """

    def __init__(
        self,
        proj: Projection | CoordinateProjection | None,
        numels: list[int],
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        self.proj = proj
        if isinstance(proj, Projection):
            self._basis = torch.tensor(np.array(proj.basis), dtype=dtype, device=device)
            mean = torch.tensor(np.array(proj.mean), dtype=dtype, device=device)
            self._shift = self._basis @ mean
            self._flat = torch.empty(sum(numels), dtype=dtype, device=device)
        elif isinstance(proj, CoordinateProjection):
            offsets = np.cumsum([0, *numels])
            owner = np.searchsorted(offsets, proj.indices, side="right") - 1
            self._gather = [
                (int(i), torch.as_tensor(proj.indices[owner == i] - offsets[i], device=device))
                for i in np.unique(owner)
            ]
            self._index = torch.tensor(proj.indices, device=device)

    def record(self, views: list[torch.Tensor], out: torch.Tensor) -> None:
        """Write the projected weights into ``out`` (one record row)."""
        if self.proj is None:
            torch.cat(views, out=out)
        elif isinstance(self.proj, Projection):
            torch.cat(views, out=self._flat)
            torch.mv(self._basis, self._flat, out=out)
            out.sub_(self._shift)
        else:
            torch.cat([views[i].index_select(0, local) for i, local in self._gather], out=out)

    def vector(self, flat: torch.Tensor) -> torch.Tensor:
        """Project a d-vector that is not a position (a gradient: no centre)."""
        if self.proj is None:
            return flat
        if isinstance(self.proj, Projection):
            return self._basis @ flat
        return flat.index_select(0, self._index)


def _projection_record(proj: Projection | CoordinateProjection | None) -> dict | None:
    """The projection's description in the metadata."""
    if proj is None:
        return None
    return {"kind": proj.kind.value, "k": proj.k}


def _same_projection(
    a: Projection | CoordinateProjection, b: Projection | CoordinateProjection
) -> bool:
    if isinstance(a, CoordinateProjection) or isinstance(b, CoordinateProjection):
        return (
            isinstance(a, CoordinateProjection)
            and isinstance(b, CoordinateProjection)
            and a.dim == b.dim
            and np.array_equal(a.indices, b.indices)
        )
    return (
        a.basis.shape == b.basis.shape
        and np.allclose(a.basis, b.basis, atol=1e-6)
        and np.allclose(a.mean, b.mean, atol=1e-6)
    )


class TrajectoryRecorder(ClosesOnExit):
    r"""Record the weights (and optionally full gradients and scalars) of a training run to disk.

    Call :meth:`step` after each ``optimizer.step()`` and :meth:`close` at the end, or use the
    recorder as a context manager. Record i holds the weights after optimizer step
    ``steps[i]`` (steps count calls to :meth:`step`, from 1); a record is taken when the step is a
    multiple of ``every``.

    What is recorded: the flat weights x ∈ R^d (all parameters that require grad, or the subset
    ``params``), or their projection y = B(x - m) ∈ R^k when ``projection`` is given (k random
    orthonormal directions, a given basis such as D's top eigenvectors, or a
    :class:`~sgdscope.trajectory.projection.Projection`); the scalars passed to :meth:`step`
    (``loss``, ...), plus ``lr`` read from ``optimizer`` when one is given; and, every
    ``gradient_every`` steps, the full-data gradient

    .. math:: \nabla f(x) = \frac{1}{N}\sum_{k=1}^{N} \nabla \ell_k(x)

    (the paper's g; Fig. 3c plots ‖∇f‖/√d) over ``gradient_data`` with ``loss_fn``, which must
    return **per-sample** losses of shape (b,) (``reduction="none"``; sgdscope never guesses a
    reduction). It is computed in eval mode (BatchNorm running statistics, no dropout; the mode
    is restored afterwards and recorded in ``meta``) with :func:`torch.autograd.grad`, so the
    ``.grad`` fields of the model are left alone. It runs in the training thread: it costs one pass
    over the data. With a projection, the gradient is projected too (B ∇f).

    Metadata (``meta``): the parameter layout (names, shapes, offsets), lr, batch_size, momentum,
    n, seed, replacement, the temperature β⁻¹ = η/(2b) (:func:`sgdscope.temperature`, eq. 3;
    ×(1 - b/N) without replacement, /(1 - μ) with momentum) when lr and batch_size are known,
    every, gradient_every, the projection, dtype, and your own ``meta`` dict.

    Further streams (``streams``): rows of a fixed length that you add with :meth:`append` at the
    current step, such as measurements made every so often (:class:`sgdscope.Monitor` stores the
    gradient noise this way). Each :meth:`append` is committed as its own chunk.

    Crash safety: records become durable chunk by chunk (``chunk_size`` rows); a process killed at
    any moment leaves every committed chunk readable, and ``resume=True`` continues the same
    trajectory after the last step that every stream (weights and gradients) holds, dropping any
    record after it, so the streams never hold a step twice (the records of the chunk being filled
    are lost; call :meth:`flush` when you save a checkpoint so that the trajectory ends where it
    resumes, and restart training at :attr:`step_count`). When training restarts from a
    checkpoint of its own, pass its step as ``resume_step``: every record after it is dropped
    (the interrupted run's records past the checkpoint), and the trajectory continues at
    ``resume_step + 1``.

    One writer: the recorder holds an exclusive lock on ``path`` (``PATH/.lock``) until
    :meth:`close`; a second recorder on the same path is refused with
    :class:`~sgdscope.trajectory.store.TrajectoryLockedError`. The lock dies with its process.

    Threading: a bounded pool of ``queue_size + 1`` buffers; a background thread writes full ones.
    An exception in that thread is raised in the training thread at the next :meth:`step`,
    :meth:`flush` or :meth:`close`.

    Non-finite weights (``nonfinite``): ``"record"`` (default) stores them, flags the first such
    step in the manifest and warns once; ``"raise"`` stores them and raises FloatingPointError.
    The check runs in the writer thread, so it costs the training thread nothing.

    Args:
        path: Directory of the trajectory (created).
        model: The model being trained. Construct the recorder after moving the model to its
            device: the recorder keeps views of the parameters' storage.
        every: Record every ``every``-th step (≥ 1).
        params: Parameter names, parameters, or a ``dict(model.named_parameters())`` subset to
            record; None records every parameter that requires grad.
        projection: None (raw weights), an int k (k random orthonormal directions, drawn with
            ``seed``, or 0 when seed is None), an array/tensor (k, d) of orthonormal rows, or a
            :class:`Projection`.
        optimizer: Optional optimizer: gives the default ``lr`` and ``momentum`` of the
            metadata, and ``lr`` is recorded as a scalar at every record (schedules).
        lr: Learning rate η for the metadata.
        batch_size: Mini-batch size b for the metadata.
        momentum: Heavy-ball momentum μ for the metadata.
        n: Data-set size N for the metadata.
        seed: Your run's seed, for the metadata (also seeds a random projection).
        replacement: Whether mini-batches are drawn with replacement (for the temperature).
        gradient_data: Data for full gradients: a DataLoader (or any iterable of
            ``(inputs, targets)``) or a tuple ``(inputs, targets)`` of tensors.
        loss_fn: Per-sample loss ``loss_fn(outputs, targets) -> (b,)``; required with
            ``gradient_data``.
        gradient_every: Compute the full gradient every this many steps (≥ 1); required with
            ``gradient_data``.
        streams: Further streams, ``{name: dim}`` (rows stored in float64) or
            ``{name: (dim, dtype)}``; names are lower-case identifiers other than ``weights`` and
            ``gradients``. Write rows with :meth:`append`.
        chunk_size: Records per chunk; None picks ≈1 MiB chunks (1 to 4096 rows). A crash
            loses at most the records of the chunk being filled.
        dtype: Storage dtype; None keeps the parameters' dtype.
        queue_size: Number of full chunks that may wait for the writer (≥ 1). The buffers take
            (queue_size + 1) · chunk_size · d · itemsize bytes on the model's device; for large
            models record a projection or a ``params`` subset.
        resume: Continue the trajectory at ``path`` if it exists (refused if the recorded
            parameters' names or shapes, ``every``, the projection, dtype or streams differ);
            start a new one otherwise.
        resume_step: With ``resume``: the optimizer step training restarts from (its
            checkpoint's step). Records after it are dropped and counting continues from it;
            refused if the trajectory ends before it (steps would be missing). A new
            trajectory then starts at ``resume_step + 1``. None: the last step every stream
            holds.
        overwrite: Replace an existing trajectory at ``path`` (only a trajectory is ever
            deleted).
        nonfinite: ``"record"`` or ``"raise"`` (see above).
        fsync: Flush every file to the device (power-loss safety; not needed for crashes).
        meta: Extra JSON-serialisable metadata.

    Raises:
        ValueError: If an argument is out of range or inconsistent.
        FileExistsError: If ``path`` exists and neither ``resume`` nor ``overwrite`` is set, or
            holds something other than a trajectory.
        TrajectoryGapError: If ``resume_step`` is after the trajectory's last step.
        TrajectoryFormatError: If ``resume=True`` and ``path`` is not a trajectory.
        TrajectoryLockedError: If another recorder is writing ``path``.

    Example:
        >>> import tempfile, torch
        >>> model = torch.nn.Linear(4, 2)
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> x, y = torch.randn(64, 4), torch.randn(64, 2)
        >>> path = tempfile.mkdtemp() + "/run"
        >>> with TrajectoryRecorder(path, model, optimizer=opt, batch_size=8, n=64) as rec:
        ...     for i in range(0, 64, 8):
        ...         loss = ((model(x[i : i + 8]) - y[i : i + 8]) ** 2).mean()
        ...         opt.zero_grad()
        ...         loss.backward()
        ...         opt.step()
        ...         rec.step(loss=loss)
        >>> rec.step_count, round(rec.meta["temperature"], 5)
        (8, 0.00625)
    """

    def __init__(
        self,
        path: str | os.PathLike,
        model: torch.nn.Module,
        every: int = 1,
        params: Any = None,
        projection: int
        | np.ndarray
        | torch.Tensor
        | Projection
        | CoordinateProjection
        | None = None,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        lr: float | None = None,
        batch_size: int | None = None,
        momentum: float | None = None,
        n: int | None = None,
        seed: int | None = None,
        replacement: bool = True,
        gradient_data: Any = None,
        loss_fn: LossFn | None = None,
        gradient_every: int | None = None,
        streams: Mapping[str, int | tuple[int, torch.dtype]] | None = None,
        chunk_size: int | None = None,
        dtype: torch.dtype | None = None,
        queue_size: int = 4,
        resume: bool = False,
        resume_step: int | None = None,
        overwrite: bool = False,
        nonfinite: NonFinitePolicy | str = NonFinitePolicy.RECORD,
        fsync: bool = False,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(model, torch.nn.Module):
            raise ValueError(
                f"the 'model' parameter of {_WHERE} must be a torch.nn.Module, got "
                f"{type(model).__name__}."
            )
        self.path = Path(path)
        self.every = check_int("every", every, where=_WHERE, low=1)
        queue_size = check_int("queue_size", queue_size, where=_WHERE, low=1)
        self._nonfinite = check_option("nonfinite", nonfinite, NonFinitePolicy, where=_WHERE)
        self._model = model
        self._optimizer = optimizer
        self._attach(model, params, dtype)
        self._set_gradient_source(gradient_data, loss_fn, gradient_every)
        self._extra = _stream_specs(streams)
        if resume_step is not None:
            if not resume:
                raise ValueError(
                    f"the 'resume_step' parameter of {_WHERE} is used only with resume=True, "
                    f"got resume_step={resume_step!r} and resume=False."
                )
            resume_step = check_int("resume_step", resume_step, where=_WHERE, low=0)
        run = {
            "lr": lr, "batch_size": batch_size, "momentum": momentum, "n": n, "seed": seed,
            "replacement": replacement, "meta": meta,
        }  # fmt: skip
        self._lock, manifest = _open_directory(self.path, resume=resume, overwrite=overwrite)
        try:
            self._open(manifest, projection, chunk_size, run, resume_step, fsync, queue_size)
        except BaseException:
            self._lock.release()
            raise

    # ----------------------------------------------------------------------------- set-up steps
    def _attach(self, model: torch.nn.Module, params: Any, dtype: torch.dtype | None) -> None:
        """Select the parameters that make up x and keep flat views of their storage."""
        names, self._params = _select_params(model, params)
        self._names = names
        # detached views share the parameters' storage, which optimizers update in place; a
        # non-contiguous parameter (e.g. channels_last) has no flat view and is copied per record
        self._sources = [p.detach() for p in self._params]
        self._contiguous = all(t.is_contiguous() for t in self._sources)
        self._views = [t.reshape(-1) for t in self._sources]
        self._full_dim = sum(v.numel() for v in self._views)
        self._device = self._params[0].device
        store_dtype = dtype if dtype is not None else self._params[0].dtype
        if not isinstance(store_dtype, torch.dtype) or not store_dtype.is_floating_point:
            raise ValueError(
                f"the 'dtype' parameter of {_WHERE} must be a floating torch.dtype, got {dtype!r}."
            )
        self._dtype = store_dtype

    def _set_gradient_source(
        self, gradient_data: Any, loss_fn: LossFn | None, gradient_every: int | None
    ) -> None:
        """Check and keep the data, loss and cadence of the full-gradient stream."""
        if gradient_data is not None:
            if loss_fn is None or gradient_every is None:
                raise ValueError(
                    f"the 'gradient_data' parameter of {_WHERE} needs 'loss_fn' (per-sample "
                    f"losses, reduction='none') and 'gradient_every', got loss_fn={loss_fn!r}, "
                    f"gradient_every={gradient_every!r}."
                )
            gradient_every = check_int("gradient_every", gradient_every, where=_WHERE, low=1)
        elif loss_fn is not None or gradient_every is not None:
            raise ValueError(
                f"the 'loss_fn' and 'gradient_every' parameters of {_WHERE} are used only with "
                f"'gradient_data' (the data of the full gradient), which is None."
            )
        self._gradient_data = gradient_data
        self._loss_fn = loss_fn
        self.gradient_every = gradient_every

    def _open(
        self,
        manifest: dict | None,
        projection: Any,
        chunk_size: int | None,
        run: dict,
        resume_step: int | None,
        fsync: bool,
        queue_size: int,
    ) -> None:
        """The rest of the constructor, run while the directory's lock is held."""
        layout = _layout(self._names, self._params)
        if manifest is not None and manifest["meta"].get("layout") != layout:
            raise ValueError(
                f"cannot resume the trajectory at {str(self.path)!r}: its 'layout' (recorded "
                f"parameter names and shapes) is {manifest['meta'].get('layout')!r}, but this "
                f"model has {layout!r}. Resume with the same model and params, or record to a "
                f"new path."
            )
        proj = self._resolve_projection(projection, self._full_dim, run["seed"], manifest)
        self.projection = proj
        self.dim = self._full_dim if proj is None else proj.k
        numels = [v.numel() for v in self._views]
        self._projector = _Projector(proj, numels, self._dtype, self._device)
        self._size_chunks(chunk_size)
        new_meta = self._build_meta(layout, run)
        self._step = self._start_step(manifest, new_meta, resume_step)
        if manifest is not None:
            old = manifest["meta"]
            old["resumed_at_steps"] = [*old.get("resumed_at_steps", []), self._step]
            new_meta = old
        else:
            new_meta["start_step"] = self._step
        self.meta: dict = new_meta
        self._writer = self._open_store(manifest, proj, fsync)
        self._start_writer(queue_size)

    def _size_chunks(self, chunk_size: int | None) -> None:
        """Rows per weights chunk (≈1 MiB by default) and per gradients chunk."""
        itemsize = torch.empty((), dtype=self._dtype).element_size()
        if chunk_size is None:
            chunk_size = int(np.clip(_CHUNK_BYTES // (self.dim * itemsize), 1, 4096))
        self.chunk_size = check_int("chunk_size", chunk_size, where=_WHERE, low=1)
        self._chunk_rows = {name: 1 for name in self._extra}
        if self.gradient_every is not None:
            self._chunk_rows["gradients"] = max(
                1, min(self.chunk_size, self.chunk_size * self.every // self.gradient_every)
            )

    def _build_meta(self, layout: dict, run: dict) -> dict:
        """The trajectory's metadata: layout, run settings, the temperature, the format."""
        lr, batch_size, n, momentum = run["lr"], run["batch_size"], run["n"], run["momentum"]
        if lr is not None:
            lr = check_real("lr", lr, where=_WHERE, low=0.0, low_open=True)
        if batch_size is not None:
            batch_size = check_int("batch_size", batch_size, where=_WHERE, low=1)
        if n is not None:
            n = check_int("n", n, where=_WHERE, low=1)
        optimizer = self._optimizer
        if lr is None and optimizer is not None:
            lr = optimizer.param_groups[0].get("lr")
        if momentum is None and optimizer is not None:
            momentum = optimizer.param_groups[0].get("momentum", 0.0)
        temp = None
        if lr is not None and batch_size is not None:
            temp = temperature(
                lr, batch_size, n=n, replacement=run["replacement"], momentum=momentum or 0.0
            )
        proj = self.projection
        meta = {
            "layout": layout,
            "lr": None if lr is None else float(lr),
            "batch_size": batch_size,
            "momentum": None if momentum is None else float(momentum),
            "n": n,
            "seed": run["seed"],
            "replacement": bool(run["replacement"]),
            "temperature": temp,
            "every": self.every,
            "gradient_every": self.gradient_every,
            "gradient_mode": "eval" if self.gradient_every is not None else None,
            "projection": _projection_record(proj),
            "dtype": str(self._dtype).removeprefix("torch."),
            "streams": {
                name: [dim, str(dtype).removeprefix("torch.")]
                for name, (dim, dtype) in self._extra.items()
            },
            "chunk_size": self.chunk_size,
            "nonfinite": self._nonfinite.value,
            "model": type(self._model).__name__,
            "recorded_dim": self.dim,
            "full_dim": self._full_dim,
            "torch_version": torch.__version__,
            "host": platform.node(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "resumed_at_steps": [],
            "user": dict(run["meta"]) if run["meta"] is not None else {},
        }
        try:
            json.dumps(meta)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"the 'meta' parameter of {_WHERE} must be JSON-serialisable, got {run['meta']!r} "
                f"({err})."
            ) from err
        return meta

    def _start_step(self, manifest: dict | None, new_meta: dict, resume_step: int | None) -> int:
        """The step count the recording continues from (0, or where a resumed one left off)."""
        if manifest is None:
            return 0 if resume_step is None else resume_step
        self._check_resume(manifest, new_meta)
        if self.gradient_every is not None and "gradients" not in manifest["streams"]:
            raise ValueError(
                f"the 'gradient_data' parameter of {_WHERE} was given with resume=True, but "
                f"the trajectory at {str(self.path)!r} was recorded without gradients."
            )
        covered = _resume_step(manifest, self.gradient_every)
        if resume_step is None:
            return covered
        if resume_step > covered:
            raise TrajectoryGapError(
                f"cannot resume the trajectory at {str(self.path)!r} at step {resume_step}: it "
                f"holds every stream only up to step {covered}, so steps {covered + 1}.."
                f"{resume_step} would be missing (records not flushed when the checkpoint was "
                f"saved: call flush() then). Resume from a checkpoint at or before step "
                f"{covered}, or record to a new path."
            )
        return resume_step

    def _open_store(
        self, manifest: dict | None, proj: Projection | CoordinateProjection | None, fsync: bool
    ) -> StoreWriter:
        """Open the store: a new one, or the existing one cut back to the resume step."""
        if self.path.is_dir():  # temporary files of writes interrupted by a crash
            for tmp in [*self.path.glob(".*.tmp"), *self.path.glob("*/.*.tmp")]:
                tmp.unlink(missing_ok=True)
        dtype = self.meta["dtype"]
        streams = {"weights": {"dim": self.dim, "dtype": dtype}}
        if self.gradient_every is not None:
            streams["gradients"] = {"dim": self.dim, "dtype": dtype}
        for name, (dim, sdtype) in self._extra.items():
            streams[name] = {"dim": dim, "dtype": str(sdtype).removeprefix("torch.")}
        writer = StoreWriter(
            self.path,
            self.meta,
            streams,
            fsync=fsync,
            manifest=manifest,
            truncate_after=None if manifest is None else self._step,
        )
        if manifest is None and isinstance(proj, Projection):
            writer.write_projection(basis=proj.basis, mean=proj.mean)
        elif manifest is None and isinstance(proj, CoordinateProjection):
            writer.write_projection(indices=proj.indices, dim=np.int64(proj.dim))
        return writer

    def _start_writer(self, queue_size: int) -> None:
        """Allocate the pool of record buffers and start the writer thread."""
        self._free: queue.Queue = queue.Queue()
        for _ in range(queue_size + 1):  # row views are made once: a row is then a tuple lookup
            buf = torch.empty((self.chunk_size, self.dim), dtype=self._dtype, device=self._device)
            self._free.put((buf, buf.unbind(0)))
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size + 1)
        self._error: BaseException | None = None
        self._failed = False  # set for good by the writer thread's first error
        self._nonfinite_seen: int | None = None
        self._warned = False
        self._closed = False
        self._new_chunk()
        self._pending: dict[str, list[tuple[int, torch.Tensor, dict[str, Any]]]] = {
            name: [] for name in self._chunk_rows
        }
        # a resumed stream may already hold a row at the resume step (kept by the truncation)
        kept = self._writer.manifest["streams"]
        self._last_row_step = {
            name: kept[name]["chunks"][-1].last_step if kept[name]["chunks"] else -1
            for name in self._extra
        }
        self._thread = threading.Thread(
            target=self._write_loop, name=f"sgdscope-recorder:{self.path.name}", daemon=True
        )
        self._thread.start()

    def _resolve_projection(
        self, projection: Any, full_dim: int, seed: int | None, manifest: dict | None
    ) -> Projection | CoordinateProjection | None:
        stored = self._stored_projection(manifest)
        if projection is None:
            proj = None
        elif isinstance(projection, Projection | CoordinateProjection):
            proj = projection
        elif isinstance(projection, int) and not isinstance(projection, bool):
            k = check_int("projection", projection, where=_WHERE, low=1, high=full_dim)
            proj = random_projection(full_dim, k, seed=0 if seed is None else seed)
        elif isinstance(projection, np.ndarray | torch.Tensor):
            proj = basis_projection(projection)
        else:
            raise ValueError(
                f"the 'projection' parameter of {_WHERE} must be None, an int k, an array (k, d), "
                f"a Projection or a CoordinateProjection, got {type(projection).__name__}."
            )
        if proj is not None and proj.dim != full_dim:
            raise ValueError(
                f"the 'projection' parameter of {_WHERE} acts on d = {proj.dim} coordinates, but "
                f"the recorded parameters have d = {full_dim}."
            )
        if manifest is not None and (proj is None) != (stored is None):
            raise ValueError(
                f"the 'projection' parameter of {_WHERE} must match the trajectory being resumed "
                f"at {str(self.path)!r}: it was recorded "
                f"{'with' if stored is not None else 'without'} a projection, got "
                f"{'none' if proj is None else 'one'}."
            )
        if stored is not None and proj is not None:
            if not _same_projection(proj, stored):
                raise ValueError(
                    f"the 'projection' parameter of {_WHERE} differs from the projection of the "
                    f"trajectory being resumed at {str(self.path)!r}; pass the same one (or the "
                    f"same int k and seed)."
                )
            proj = stored
        return proj

    def _stored_projection(self, manifest: dict | None) -> Projection | CoordinateProjection | None:
        described = None if manifest is None else manifest["meta"].get("projection")
        if described is None or not (self.path / PROJECTION_FILE).is_file():
            return None  # a stray projection file of an unprojected trajectory is ignored
        with np.load(self.path / PROJECTION_FILE) as z:
            kind = ProjectionKind(described["kind"])
            if kind is ProjectionKind.COORDINATES:
                return CoordinateProjection(indices=z["indices"], dim=int(z["dim"]))
            return Projection(basis=z["basis"], mean=z["mean"], kind=kind)

    def _check_resume(self, manifest: dict, new_meta: dict) -> None:
        old = manifest["meta"]
        for key in ("layout", "every", "dtype", "projection", "streams"):
            before = old.get(key, {} if key == "streams" else None)
            if before != new_meta[key]:
                raise ValueError(
                    f"cannot resume the trajectory at {str(self.path)!r}: its {key!r} is "
                    f"{before!r}, but this recorder has {new_meta[key]!r}. Resume with the "
                    f"same model, params, every, projection, dtype and streams, or record to a "
                    f"new path."
                )

    def _new_chunk(self) -> None:
        self._buffer = self._take_buffer()
        self._rows = self._buffer[1]
        self._fill = 0
        self._steps = np.empty(self.chunk_size, dtype=np.int64)
        self._loss: list[tuple[int, Any]] = []
        self._lr: list[tuple[int, Any]] = []
        self._scalars: dict[str, list[tuple[int, Any]]] = {}

    def _take_buffer(self) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        while True:
            self._raise_pending()
            try:
                return self._free.get(timeout=0.1)
            except queue.Empty:
                if not self._thread_alive():
                    raise RuntimeError(
                        f"the writer thread of {_WHERE} at {str(self.path)!r} stopped."
                    ) from None

    def _thread_alive(self) -> bool:
        thread = getattr(self, "_thread", None)
        return thread is None or thread.is_alive()

    # ------------------------------------------------------------------------------ training side
    @property
    def step_count(self) -> int:
        """Number of optimizer steps seen (continues from the last record after a resume)."""
        return self._step

    def step(self, loss: Any = None, **scalars: Any) -> None:
        """Count one optimizer step, and record if it is a multiple of ``every``.

        Call it after ``optimizer.step()``.

        Args:
            loss: The mini-batch loss (a float or a 0-d tensor; tensors are read in the writer
                thread, so passing one costs no device synchronisation).
            **scalars: Other scalars to record at this step (e.g. ``batch_size=len(x)``).

        Raises:
            RuntimeError: If the writer thread failed (the original error is the cause), or the
                recorder is closed or the model's parameters were replaced.
            FloatingPointError: With ``nonfinite="raise"``, if a recorded row was not finite.
        """
        if self._closed:
            raise RuntimeError(f"{_WHERE}.step was called after close(); create a new recorder.")
        if self._error is not None or (self._nonfinite_seen is not None and not self._warned):
            self._raise_pending()
        self._step = step = self._step + 1
        if self.gradient_every is not None and step % self.gradient_every == 0:
            self._record_gradient(step)
        if step % self.every:
            return
        i = self._fill
        self._projector.record(self._current_views(), self._rows[i])
        self._steps[i] = step
        # detach: never keep an autograd graph alive
        if loss is not None:
            self._loss.append((i, loss.detach() if isinstance(loss, torch.Tensor) else loss))
        if self._optimizer is not None:
            self._lr.append((i, self._optimizer.param_groups[0]["lr"]))
        for name, value in scalars.items():
            v = value.detach() if isinstance(value, torch.Tensor) else value
            self._scalars.setdefault(name, []).append((i, v))
        self._fill += 1
        if self._fill == self.chunk_size:
            self._hand_off()

    def _current_views(self) -> list[torch.Tensor]:
        if self._contiguous:
            return self._views
        return [t.reshape(-1) for t in self._sources]

    def _hand_off(self) -> None:
        if self._fill == 0:
            return
        for p, v in zip(self._params, self._sources, strict=True):
            if p.data_ptr() != v.data_ptr() or p.device != v.device:
                raise RuntimeError(
                    f"the parameters of the model given to {_WHERE} were replaced (for example "
                    f"by model.to(device) or p.data = ...) after the recorder was created, so its "
                    f"view of them is stale. Create the recorder after moving the model."
                )
        scalars = {"loss": self._loss, "lr": self._lr, **self._scalars}
        scalars = {name: values for name, values in scalars.items() if values}
        item = ("weights", self._buffer, self._fill, self._steps[: self._fill].copy(), scalars)
        self._queue.put(item)
        self._new_chunk()

    def _record_gradient(self, step: int) -> None:
        assert self._loss_fn is not None  # required with gradient_data (_set_gradient_source)
        g, loss = full_gradient(
            self._model, self._loss_fn, self._gradient_data, self._params, where=_WHERE
        )
        g = self._projector.vector(g.to(self._dtype))
        self._queue_row("gradients", step, g, {"loss": loss})

    def append(self, stream: str, row: Any, **scalars: Any) -> None:
        """Add a row to one of the further ``streams``, at the current step (:attr:`step_count`).

        The row is committed as its own chunk by the writer thread (tensors are copied now and
        read there, so a device tensor costs no synchronisation here).

        Args:
            stream: A name given in the constructor's ``streams``.
            row: A tensor or array of the stream's length.
            **scalars: Scalars recorded with the row (floats or 0-d tensors).

        Raises:
            KeyError: If ``stream`` was not declared.
            ValueError: If ``row`` has another length, or the stream already holds a row at this
                step.
            RuntimeError: If the recorder is closed or its writer thread failed.
        """
        if self._closed:
            raise RuntimeError(f"{_WHERE}.append was called after close(); create a new recorder.")
        if stream not in self._extra:
            raise KeyError(
                f"the 'stream' parameter of {_WHERE}.append names {stream!r}, which was not "
                f"declared; the recorder's further streams are {list(self._extra)}."
            )
        dim, dtype = self._extra[stream]
        tensor = torch.as_tensor(row).detach().reshape(-1)
        if tensor.numel() != dim:
            raise ValueError(
                f"the 'row' parameter of {_WHERE}.append must have the length of stream "
                f"{stream!r}, {dim}, got {tensor.numel()} values."
            )
        if self._step <= self._last_row_step[stream]:
            raise ValueError(
                f"stream {stream!r} of {_WHERE} already holds a row at step {self._step}; append "
                f"at most one row per stream and step."
            )
        self._raise_pending()
        self._last_row_step[stream] = self._step
        self._queue_row(stream, self._step, tensor.to(dtype=dtype, copy=True), scalars)

    def _queue_row(self, stream: str, step: int, row: torch.Tensor, scalars: dict) -> None:
        scalars = {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in scalars.items()}
        rows = self._pending[stream]
        rows.append((step, row, scalars))
        if len(rows) >= self._chunk_rows[stream]:
            self._hand_off_rows(stream)

    def _hand_off_rows(self, stream: str) -> None:
        rows = self._pending[stream]
        if rows:
            self._pending[stream] = []
            self._queue.put(("rows", stream, rows))

    def _hand_off_all(self) -> None:
        self._hand_off()
        for stream in self._pending:
            self._hand_off_rows(stream)

    def _raise_pending(self) -> None:
        err = self._error
        if err is not None:
            self._error = None
            self._closed = True
            self._queue.put(None)  # stop the writer thread; it skips everything after an error
            self._thread.join()
            self._lock.release()
            raise err
        self._warn_nonfinite()

    def _warn_nonfinite(self) -> None:
        if self._nonfinite_seen is not None and not self._warned:
            self._warned = True
            warnings.warn(
                f"{_WHERE} at {str(self.path)!r}: the weights recorded at step "
                f"{self._nonfinite_seen} hold NaN or inf; they are recorded and flagged "
                f"(Trajectory.first_nonfinite_step). Pass nonfinite='raise' to stop instead.",
                RuntimeWarning,
                stacklevel=4,
            )

    def flush(self) -> None:
        """Commit every record taken so far (a possibly short chunk) and wait until it is on disk.

        Call it when you save a training checkpoint, so that a resumed run and its trajectory
        restart from the same step.

        Raises:
            RuntimeError: If the writer thread failed.
            FloatingPointError: With ``nonfinite="raise"``, if a recorded row was not finite.
        """
        if self._closed:
            return
        self._hand_off_all()
        self._queue.join()
        self._raise_pending()

    def close(self) -> None:
        """Flush, stop the writer thread and mark the trajectory complete. Idempotent.

        Raises:
            RuntimeError: If the writer thread failed.
            FloatingPointError: With ``nonfinite="raise"``, if a recorded row was not finite.
        """
        if self._closed:
            return
        try:
            self._hand_off_all()
        finally:
            self._closed = True
            self._queue.put(None)
            self._thread.join()
            self._lock.release()
        self._free = queue.Queue()
        err, self._error = self._error, None
        if err is not None:
            raise err
        self._warn_nonfinite()

    def __repr__(self) -> str:
        return (
            f"TrajectoryRecorder({str(self.path)!r}, dim={self.dim}, every={self.every}, "
            f"steps={self._step}, closed={self._closed})"
        )

    # -------------------------------------------------------------------------------- writer side
    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    self._writer.close()
                    if not self._failed:  # a failed run is never marked complete
                        self._writer.commit(complete=True)
                    return
                if not self._failed:
                    self._write_item(item)
            except BaseException as err:  # surfaced in the training thread
                self._failed = True
                if self._error is None:
                    wrapped = RuntimeError(
                        f"the writer thread of {_WHERE} failed while writing {str(self.path)!r}: "
                        f"{err!r}. Records after the last committed chunk are not saved."
                    )
                    wrapped.__cause__ = err
                    self._error = wrapped
            finally:
                if item is not None and item[0] == "weights":
                    self._free.put(item[1])
                self._queue.task_done()

    def _write_item(self, item: tuple) -> None:
        if item[0] == "weights":
            _, (buf, _), fill, steps, scalar_lists = item
            data = buf[:fill].detach().cpu().numpy()
            scalars = {name: _scalar_column(vals, fill) for name, vals in scalar_lists.items()}
            chunk = self._writer.append("weights", data, steps, scalars)
        else:
            _, stream, rows = item
            data = torch.stack([r for _, r, _ in rows]).cpu().numpy()
            steps = np.array([s for s, _, _ in rows], dtype=np.int64)
            columns: dict[str, list[tuple[int, Any]]] = {}
            for i, (_, _, scalars) in enumerate(rows):
                for name, value in scalars.items():
                    columns.setdefault(name, []).append((i, value))
            scalars = {name: _scalar_column(vals, len(rows)) for name, vals in columns.items()}
            self._writer.append(stream, data, steps, scalars)
            return
        if chunk.nonfinite:
            if self._nonfinite is NonFinitePolicy.RAISE:
                self._failed = True
                self._error = FloatingPointError(
                    f"{_WHERE} at {str(self.path)!r}: the weights recorded at step "
                    f"{chunk.first_nonfinite_step} hold NaN or inf (nonfinite='raise'). They were "
                    f"saved; the run has diverged: lower the learning rate or check the data."
                )
            elif self._nonfinite_seen is None:
                self._nonfinite_seen = chunk.first_nonfinite_step


def _scalar_column(values: list[tuple[int, Any]], fill: int) -> np.ndarray:
    """A (fill,) float64 column with NaN where no value was given; tensors are read here."""
    col = np.full(fill, np.nan)
    tensors = [(i, v) for i, v in values if isinstance(v, torch.Tensor)]
    if tensors:
        idx = np.array([i for i, _ in tensors])
        if all(v.device.type == "cpu" for _, v in tensors):
            col[idx] = [v.item() for _, v in tensors]
        else:  # one device transfer for the whole chunk
            col[idx] = torch.stack([v.reshape(()) for _, v in tensors]).double().cpu().numpy()
    for i, v in values:
        if not isinstance(v, torch.Tensor):
            col[i] = float(v)
    return col
