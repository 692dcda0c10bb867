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

import contextlib
import json
import os
import platform
import queue
import shutil
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._params import model_mode, select_params
from .._validation import check_int, check_option, check_real
from ..temperature import temperature
from .projection import Projection, ProjectionKind, basis_projection, random_projection
from .store import (
    INDEX,
    LOCK,
    MANIFEST,
    PROJECTION_FILE,
    STREAMS,
    DirectoryLock,
    StoreWriter,
    chunks_of,
    read_manifest,
)

__all__ = ["LossFn", "NonFinitePolicy", "TrajectoryRecorder"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""A loss returning per-sample losses of shape (b,) from ``(outputs, targets)``."""

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


def _layout(names: list[str], params: list[torch.Tensor]) -> dict:
    offsets, pos = [], 0
    for p in params:
        offsets.append(pos)
        pos += p.numel()
    return {"names": names, "shapes": [list(p.shape) for p in params], "offsets": offsets}


def _unstarted(path: Path) -> bool:
    """True for an empty directory, or one left by a recorder killed before its first manifest.

    Such a directory holds at most empty stream folders, hidden ``.*.tmp`` files, the lock file and
    an empty chunk index.
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
        if entry.is_dir() and entry.name in STREAMS and not any(entry.iterdir()):
            continue
        return False
    return True


def _resume_step(manifest: dict, gradient_every: int | None) -> int:
    """The step where a resumed recording continues: the last one that every stream covers.

    The weights' last committed step W, lowered so that no gradient due at a step <= it is missing
    (a crash between the commits of the two streams). Records after it are dropped on resume.
    """
    weights = chunks_of(manifest, "weights")
    step = weights[-1].last_step if weights else 0
    if gradient_every is not None and "gradients" in manifest["streams"]:
        grads = chunks_of(manifest, "gradients")
        covered = (grads[-1].last_step if grads else 0) + gradient_every - 1
        step = min(step, covered)
    return step


def _as_batches(data: Any) -> Iterable:
    if (
        isinstance(data, tuple | list)
        and len(data) == 2
        and all(isinstance(t, torch.Tensor) for t in data)
    ):
        return [tuple(data)]
    return data


class TrajectoryRecorder:
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

    Crash safety: records become durable chunk by chunk (``chunk_size`` rows); a process killed at
    any moment leaves every committed chunk readable, and ``resume=True`` continues the same
    trajectory after the last step that every stream (weights and gradients) holds, dropping any
    record after it, so the streams never hold a step twice (the records of the chunk being filled
    are lost; call :meth:`flush` when you save a checkpoint so that the trajectory ends where it
    resumes, and restart training at :attr:`step_count`).

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
        chunk_size: Records per chunk; None picks ≈1 MiB chunks (1 to 4096 rows). A crash
            loses at most the records of the chunk being filled.
        dtype: Storage dtype; None keeps the parameters' dtype.
        queue_size: Number of full chunks that may wait for the writer (≥ 1). The buffers take
            (queue_size + 1) · chunk_size · d · itemsize bytes on the model's device; for large
            models record a projection or a ``params`` subset.
        resume: Continue the trajectory at ``path`` if it exists (refused if the recorded
            parameters' names or shapes, ``every``, the projection or dtype differ); start a new
            one otherwise.
        overwrite: Replace an existing trajectory at ``path`` (only a trajectory is ever
            deleted).
        nonfinite: ``"record"`` or ``"raise"`` (see above).
        fsync: Flush every file to the device (power-loss safety; not needed for crashes).
        meta: Extra JSON-serialisable metadata.

    Raises:
        ValueError: If an argument is out of range or inconsistent.
        FileExistsError: If ``path`` exists and neither ``resume`` nor ``overwrite`` is set, or
            holds something other than a trajectory.
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
        projection: int | np.ndarray | torch.Tensor | Projection | None = None,
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
        chunk_size: int | None = None,
        dtype: torch.dtype | None = None,
        queue_size: int = 4,
        resume: bool = False,
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
        names, self._params = _select_params(model, params)
        # detached views share the parameters' storage, which optimizers update in place; a
        # non-contiguous parameter (e.g. channels_last) has no flat view and is copied per record
        self._sources = [p.detach() for p in self._params]
        self._contiguous = all(t.is_contiguous() for t in self._sources)
        self._views = [t.reshape(-1) for t in self._sources]
        full_dim = sum(v.numel() for v in self._views)
        device = self._params[0].device
        store_dtype = dtype if dtype is not None else self._params[0].dtype
        if not isinstance(store_dtype, torch.dtype) or not store_dtype.is_floating_point:
            raise ValueError(
                f"the 'dtype' parameter of {_WHERE} must be a floating torch.dtype, got {dtype!r}."
            )
        self._dtype = store_dtype

        # gradients
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

        # existing store
        manifest = None
        self._lock: DirectoryLock | None = None
        if self.path.exists() and not _unstarted(self.path):
            is_traj = (self.path / MANIFEST).is_file()
            if resume:
                read_manifest(self.path)  # a clear error before the lock file is created
                self._lock = DirectoryLock(self.path, _WHERE)
                manifest = read_manifest(self.path)  # again, now that no one else writes it
            elif is_traj and overwrite:
                read_manifest(self.path)  # only a trajectory is ever deleted
                self._lock = DirectoryLock(self.path, _WHERE)
                for entry in self.path.iterdir():
                    if entry.name == LOCK:
                        continue
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()
            elif is_traj:
                raise FileExistsError(
                    f"the 'path' parameter of {_WHERE} names an existing trajectory "
                    f"{str(path)!r}. Pass resume=True to continue it or overwrite=True to "
                    f"replace it."
                )
            else:
                raise FileExistsError(
                    f"the 'path' parameter of {_WHERE} names {str(path)!r}, which exists and is "
                    f"not a trajectory; choose a new or empty directory."
                )

        if self._lock is None:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock = DirectoryLock(self.path, _WHERE)
        try:
            self._open(
                names,
                manifest,
                projection,
                full_dim,
                device,
                store_dtype,
                seed,
                chunk_size,
                lr,
                batch_size,
                momentum,
                n,
                replacement,
                meta,
                fsync,
                queue_size,
            )
        except BaseException:
            self._lock.release()
            raise

    def _open(
        self,
        names: list[str],
        manifest: dict | None,
        projection: Any,
        full_dim: int,
        device: torch.device,
        store_dtype: torch.dtype,
        seed: int | None,
        chunk_size: int | None,
        lr: float | None,
        batch_size: int | None,
        momentum: float | None,
        n: int | None,
        replacement: bool,
        meta: Mapping[str, Any] | None,
        fsync: bool,
        queue_size: int,
    ) -> None:
        """The rest of the constructor, run while the directory's lock is held."""
        path = self.path
        optimizer, model, gradient_every = self._optimizer, self._model, self.gradient_every
        layout = _layout(names, self._params)
        if manifest is not None and manifest["meta"].get("layout") != layout:
            raise ValueError(
                f"cannot resume the trajectory at {str(path)!r}: its 'layout' (recorded parameter "
                f"names and shapes) is {manifest['meta'].get('layout')!r}, but this model has "
                f"{layout!r}. Resume with the same model and params, or record to a new path."
            )

        # projection
        proj = self._resolve_projection(projection, full_dim, seed, manifest)
        self.projection = proj
        self.dim = full_dim if proj is None else proj.k
        if proj is not None:
            self._basis = torch.tensor(np.array(proj.basis), dtype=store_dtype, device=device)
            self._shift = self._basis @ torch.tensor(
                np.array(proj.mean), dtype=store_dtype, device=device
            )
            self._flat = torch.empty(full_dim, dtype=store_dtype, device=device)

        itemsize = torch.empty((), dtype=store_dtype).element_size()
        if chunk_size is None:
            chunk_size = int(np.clip(_CHUNK_BYTES // (self.dim * itemsize), 1, 4096))
        self.chunk_size = check_int("chunk_size", chunk_size, where=_WHERE, low=1)
        self._grad_chunk = 1
        if gradient_every is not None:
            self._grad_chunk = max(
                1, min(self.chunk_size, self.chunk_size * self.every // gradient_every)
            )

        if lr is not None:
            lr = check_real("lr", lr, where=_WHERE, low=0.0, low_open=True)
        if batch_size is not None:
            batch_size = check_int("batch_size", batch_size, where=_WHERE, low=1)
        if n is not None:
            n = check_int("n", n, where=_WHERE, low=1)
        if lr is None and optimizer is not None:
            lr = optimizer.param_groups[0].get("lr")
        if momentum is None and optimizer is not None:
            momentum = optimizer.param_groups[0].get("momentum", 0.0)
        temp = None
        if lr is not None and batch_size is not None:
            temp = temperature(
                lr, batch_size, n=n, replacement=replacement, momentum=momentum or 0.0
            )
        new_meta = {
            "layout": layout,
            "lr": None if lr is None else float(lr),
            "batch_size": batch_size,
            "momentum": None if momentum is None else float(momentum),
            "n": n,
            "seed": seed,
            "replacement": bool(replacement),
            "temperature": temp,
            "every": self.every,
            "gradient_every": gradient_every,
            "gradient_mode": "eval" if gradient_every is not None else None,
            "projection": None if proj is None else {"kind": proj.kind.value, "k": proj.k},
            "dtype": str(store_dtype).removeprefix("torch."),
            "chunk_size": self.chunk_size,
            "nonfinite": self._nonfinite.value,
            "model": type(model).__name__,
            "recorded_dim": self.dim,
            "full_dim": full_dim,
            "torch_version": torch.__version__,
            "host": platform.node(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "resumed_at_steps": [],
            "user": dict(meta) if meta is not None else {},
        }
        try:
            json.dumps(new_meta)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"the 'meta' parameter of {_WHERE} must be JSON-serialisable, got {meta!r} ({err})."
            ) from err

        self._step = 0
        if manifest is not None:
            self._check_resume(manifest, new_meta)
            self._step = _resume_step(manifest, gradient_every)
            old_meta = manifest["meta"]
            old_meta["resumed_at_steps"] = [*old_meta.get("resumed_at_steps", []), self._step]
            manifest["meta"] = old_meta
            new_meta = old_meta
            if gradient_every is not None and "gradients" not in manifest["streams"]:
                raise ValueError(
                    f"the 'gradient_data' parameter of {_WHERE} was given with resume=True, but "
                    f"the trajectory at {str(path)!r} was recorded without gradients."
                )
        if self.path.is_dir():  # temporary files of writes interrupted by a crash
            for tmp in [*self.path.glob(".*.tmp"), *self.path.glob("*/.*.tmp")]:
                tmp.unlink(missing_ok=True)
        self.meta: dict = new_meta
        streams = {"weights": {"dim": self.dim, "dtype": new_meta["dtype"]}}
        if gradient_every is not None:
            streams["gradients"] = {"dim": self.dim, "dtype": new_meta["dtype"]}
        self._writer = StoreWriter(
            self.path,
            new_meta,
            streams,
            fsync=fsync,
            manifest=manifest,
            truncate_after=None if manifest is None else self._step,
        )
        if proj is not None and manifest is None:
            self._writer.write_projection(proj.basis, proj.mean)

        # buffers and the writer thread
        self._free: queue.Queue = queue.Queue()
        for _ in range(queue_size + 1):  # row views are made once: a row is then a tuple lookup
            buf = torch.empty((self.chunk_size, self.dim), dtype=store_dtype, device=device)
            self._free.put((buf, buf.unbind(0)))
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size + 1)
        self._error: BaseException | None = None
        self._failed = False  # set for good by the writer thread's first error
        self._nonfinite_seen: int | None = None
        self._warned = False
        self._closed = False
        self._new_chunk()
        self._grad_rows: list[tuple[int, torch.Tensor, torch.Tensor]] = []
        self._thread = threading.Thread(
            target=self._write_loop, name=f"sgdscope-recorder:{self.path.name}", daemon=True
        )
        self._thread.start()

    # ----------------------------------------------------------------------------- set-up helpers
    def _resolve_projection(
        self, projection: Any, full_dim: int, seed: int | None, manifest: dict | None
    ) -> Projection | None:
        stored = None
        if manifest is not None and (self.path / PROJECTION_FILE).is_file():
            with np.load(self.path / PROJECTION_FILE) as z:
                kind = manifest["meta"]["projection"]["kind"]
                stored = Projection(basis=z["basis"], mean=z["mean"], kind=ProjectionKind(kind))
        if projection is None:
            proj = None
        elif isinstance(projection, Projection):
            proj = projection
        elif isinstance(projection, int) and not isinstance(projection, bool):
            k = check_int("projection", projection, where=_WHERE, low=1, high=full_dim)
            proj = random_projection(full_dim, k, seed=0 if seed is None else seed)
        elif isinstance(projection, np.ndarray | torch.Tensor):
            proj = basis_projection(projection)
        else:
            raise ValueError(
                f"the 'projection' parameter of {_WHERE} must be None, an int k, an array (k, d) "
                f"or a Projection, got {type(projection).__name__}."
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
            same = proj.basis.shape == stored.basis.shape and np.allclose(
                proj.basis, stored.basis, atol=1e-6
            )
            if not same or not np.allclose(proj.mean, stored.mean, atol=1e-6):
                raise ValueError(
                    f"the 'projection' parameter of {_WHERE} differs from the projection of the "
                    f"trajectory being resumed at {str(self.path)!r}; pass the same one (or the "
                    f"same int k and seed)."
                )
            proj = stored
        return proj

    def _check_resume(self, manifest: dict, new_meta: dict) -> None:
        old = manifest["meta"]
        for key in ("layout", "every", "dtype", "projection"):
            if old.get(key) != new_meta[key]:
                raise ValueError(
                    f"cannot resume the trajectory at {str(self.path)!r}: its {key!r} is "
                    f"{old.get(key)!r}, but this recorder has {new_meta[key]!r}. Resume with the "
                    f"same model, params, every, projection and dtype, or record to a new path."
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
        if self.projection is None:
            torch.cat(self._current_views(), out=self._rows[i])
        else:
            torch.cat(self._current_views(), out=self._flat)
            torch.mv(self._basis, self._flat, out=self._rows[i])
            self._rows[i].sub_(self._shift)
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
        model = self._model
        device = self._params[0].device
        total = torch.zeros(sum(v.numel() for v in self._views), dtype=torch.float64, device=device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        count = 0
        # eval mode for the pass, then every module's own flag back (a frozen eval-mode
        # BatchNorm inside a training model stays frozen)
        with model_mode(model, eval_mode=True):
            for batch in _as_batches(self._gradient_data):
                inputs, targets = batch[0].to(device), batch[1].to(device)
                losses = self._loss_fn(model(inputs), targets)
                if losses.ndim != 1 or losses.shape[0] != inputs.shape[0]:
                    raise ValueError(
                        f"the 'loss_fn' parameter of {_WHERE} must return per-sample losses of "
                        f"shape ({inputs.shape[0]},) (use reduction='none'), got shape "
                        f"{tuple(losses.shape)}. sgdscope never guesses a reduction."
                    )
                grads = torch.autograd.grad(losses.sum(), self._params, allow_unused=True)
                flat = [
                    torch.zeros_like(v) if g is None else g.reshape(-1)
                    for g, v in zip(grads, self._views, strict=True)
                ]
                total += torch.cat(flat).double()
                loss_sum += losses.detach().sum().double()
                count += losses.shape[0]
        if count == 0:
            raise ValueError(
                f"the 'gradient_data' parameter of {_WHERE} yielded no samples; pass a non-empty "
                f"DataLoader or (inputs, targets) tuple."
            )
        g = (total / count).to(self._dtype)
        if self.projection is not None:
            g = self._basis @ g
        self._grad_rows.append((step, g, loss_sum / count))
        if len(self._grad_rows) >= self._grad_chunk:
            self._hand_off_gradients()

    def _hand_off_gradients(self) -> None:
        if not self._grad_rows:
            return
        rows = self._grad_rows
        self._grad_rows = []
        self._queue.put(("gradients", rows))

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
        self._hand_off()
        self._hand_off_gradients()
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
            self._hand_off()
            self._hand_off_gradients()
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

    def __enter__(self) -> TrajectoryRecorder:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
            return
        with contextlib.suppress(Exception):  # keep the user's exception; save what was recorded
            self.close()

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
            rows = item[1]
            data = torch.stack([g for _, g, _ in rows]).cpu().numpy()
            steps = np.array([s for s, _, _ in rows], dtype=np.int64)
            loss = torch.stack([v for _, _, v in rows]).cpu().numpy()
            chunk = self._writer.append("gradients", data, steps, {"loss": loss})
        if chunk.nonfinite and item[0] == "weights":
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
