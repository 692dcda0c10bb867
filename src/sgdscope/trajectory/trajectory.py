"""Reading a recorded trajectory: :class:`Trajectory` and :func:`load_trajectory`.

The weights are read lazily: ``traj.weights[t0:t1]`` memory-maps only the chunks that hold rows
t0..t1-1 and returns a numpy array of shape (t1 - t0, d). Steps, scalars and metadata are small and
read when the trajectory is opened.
"""

from __future__ import annotations

import io
import os
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._params import ParamLayout
from .projection import CoordinateProjection, Projection, ProjectionKind
from .store import (
    PROJECTION_FILE,
    ChunkInfo,
    TrajectoryFormatError,
    chunks_of,
    file_crc32,
    read_manifest,
)

__all__ = ["ChunkedArray", "Stream", "Trajectory", "load_trajectory"]


class ChunkedArray:
    """A read-only (T, d) array stored as row chunks on disk, indexed like a numpy array.

    ``arr[t]``, ``arr[t0:t1]``, ``arr[t0:t1:s]``, ``arr[[t, ...]]``, and the same with a second,
    coordinate index (``arr[t0:t1, i0:i1]``, ``arr[:, [i, j]]``) return numpy arrays with numpy's
    result shapes. Only the chunks that hold the requested rows are read (memory-mapped).

    Attributes:
        shape: (T, d): number of records and their dimension.
        dtype: The stored dtype.
    """

    def __init__(
        self,
        root: Path,
        stream: str,
        chunks: list[ChunkInfo],
        dim: int,
        dtype: str,
        *,
        verify: bool = True,
    ):
        self._root = root
        self._stream = stream
        self._chunks = chunks
        self._verify = verify
        self._verified: set[int] = set()
        self._starts = np.array([c.start for c in chunks], dtype=np.int64)
        length = chunks[-1].start + chunks[-1].count if chunks else 0
        self.shape = (length, dim)
        self.dtype = np.dtype(dtype)

    @property
    def ndim(self) -> int:
        """Always 2."""
        return 2

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return (
            f"ChunkedArray(shape={self.shape}, dtype={self.dtype}, "
            f"chunks={len(self._chunks)}, stream={self._stream!r})"
        )

    def _load(self, chunk: ChunkInfo) -> np.ndarray:
        name = chunk.data_file(self._stream)
        file = self._root / name
        if self._verify and chunk.data_crc32 is not None and chunk.index not in self._verified:
            _check_crc(file, chunk.data_crc32, self._root, name)
            self._verified.add(chunk.index)
        try:
            arr = np.load(file, mmap_mode="r")
        except FileNotFoundError:
            raise
        except (ValueError, OSError, EOFError) as err:
            raise TrajectoryFormatError(
                f"chunk {name!r} of {str(self._root)!r} cannot be read ({type(err).__name__}: "
                f"{err}); the file is damaged (truncated or rewritten)."
            ) from err
        if arr.shape != (chunk.count, self.shape[1]) or arr.dtype != self.dtype:
            raise TrajectoryFormatError(
                f"chunk {name!r} of {str(self._root)!r} has shape {arr.shape} and dtype "
                f"{arr.dtype}, expected {(chunk.count, self.shape[1])} and {self.dtype}; the file "
                f"is damaged."
            )
        return arr

    def iter_chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start, rows)`` for each chunk in order; ``rows`` has shape (count, d).

        Useful to stream over a trajectory that does not fit in memory.
        """
        for chunk in self._chunks:
            yield chunk.start, np.asarray(self._load(chunk))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, tuple):
            if len(key) > 2:
                raise IndexError(
                    f"too many indices for a (T, d) trajectory array: got {len(key)}, expected "
                    "at most 2 (time, coordinate)."
                )
            tkey, ckey = (*key, slice(None))[:2]
        else:
            tkey, ckey = key, slice(None)
        rows = _positions(tkey, self.shape[0])
        scalar_row = rows.ndim == 0
        rows = np.atleast_1d(rows)
        if rows.ndim != 1:
            raise IndexError(
                f"the time index of a trajectory array must select a 1-D set of rows, got an "
                f"index of shape {rows.shape}."
            )
        if isinstance(ckey, slice):  # basic slicing of the columns: no index array
            col_key: Any = ckey
            width: tuple[int, ...] = (len(range(*ckey.indices(self.shape[1]))),)
        else:
            col_key = _positions(ckey, self.shape[1])
            width = () if col_key.ndim == 0 else (col_key.size,)
        out = np.empty((rows.size, *width), dtype=self.dtype)
        if rows.size:
            owner = np.searchsorted(self._starts, rows, side="right") - 1
            for c in np.unique(owner):
                chunk = self._chunks[c]
                mask = owner == c
                local = rows[mask] - chunk.start
                data = self._load(chunk)
                if local.size == local[-1] - local[0] + 1 and np.all(np.diff(local) == 1):
                    block = data[local[0] : local[-1] + 1, col_key]
                else:
                    block = data[local][:, col_key]
                out[mask] = block
        return out[0] if scalar_row else out


def _check_crc(file: Path, want: int, root: Path, name: str) -> None:
    got = file_crc32(file)
    if got != want:
        raise TrajectoryFormatError(
            f"chunk file {name!r} of the trajectory {str(root)!r} is damaged: its CRC-32 is "
            f"{got:08x}, but {want:08x} was recorded when it was written (a changed byte, or "
            f"another chunk's file put in its place). Restore it from a copy or re-record; "
            f"load_trajectory(path, verify=False) reads it unchecked."
        )


def _positions(key: Any, n: int) -> np.ndarray:
    """The integer positions that ``key`` selects along an axis of length n (numpy rules)."""
    if isinstance(key, slice):
        return np.arange(*key.indices(n))
    if isinstance(key, int | np.integer) and not isinstance(key, bool):
        if not -n <= key < n:
            raise IndexError(f"index {key} is out of bounds for an axis of size {n}.")
        return np.asarray(int(key) % n)
    return np.arange(n)[key]


@dataclass(frozen=True)
class Stream:
    """One stream of a trajectory: rows, the step of each row, and the scalars recorded with it.

    Attributes:
        name: The stream's name (``"weights"``, ``"gradients"`` or another stream's).
        data: Lazy (R, dim) array of rows.
        steps: Int array (R,), the optimizer step of each row (increasing).
        scalars: Dict name -> float64 array (R,) aligned with ``steps``; NaN where a scalar was
            not given with that row.
    """

    name: str
    data: ChunkedArray
    steps: np.ndarray
    scalars: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.steps)


class Trajectory:
    """A recorded training trajectory, opened lazily. Use :func:`load_trajectory` to open one.

    Attributes:
        path: The trajectory directory.
        weights: Lazy (T, d) array of recorded weights (or their projection; see ``projection``).
            ``traj.weights[t0:t1]`` returns a numpy array of shape (t1 - t0, d).
        steps: Int array (T,), the optimizer step of each record (1 = after the first step).
        scalars: Dict name -> float64 array (T,) aligned with ``steps`` (``"loss"``, ``"lr"``,
            ``"batch_size"``, ...); NaN where a scalar was not given at that record.
        gradients: Lazy (G, d) array of full-data gradients, or None if none were recorded.
        gradient_steps: Int array (G,) of the steps at which ``gradients`` were computed
            (empty if none).
        gradient_scalars: Dict name -> array (G,) aligned with ``gradient_steps`` (``"loss"`` is
            the full-data loss f(x) at those steps).
        meta: Dict of metadata: ``layout`` (names, shapes, offsets of the recorded parameters),
            ``lr``, ``batch_size``, ``momentum``, ``n``, ``seed``, ``temperature``, ``every``,
            ``gradient_every``, ``projection``, ``dtype``, ``format_version``, ...
        projection: The :class:`Projection` (or :class:`CoordinateProjection`) the recorder
            applied, or None if raw weights were recorded.
        streams: Names of every stream (``"weights"`` first, then ``"gradients"`` and the
            others, such as ``"noise"`` written by :class:`sgdscope.Monitor`); read one with
            :meth:`stream`.
        complete: True if the recorder was closed cleanly; False after a crash or a failed write
            (the records up to the last committed chunk are still all valid).
    """

    def __init__(self, path: str | os.PathLike, *, verify: bool = True) -> None:
        self.path = Path(path)
        self._verify = verify
        manifest = read_manifest(self.path)
        self.complete: bool = manifest["complete"]
        self.meta: dict = {**manifest["meta"], "format_version": manifest["format_version"]}
        self._chunks = {s: chunks_of(manifest, s) for s in manifest["streams"]}
        streams = manifest["streams"]
        self._geometry = {name: (info["dim"], info["dtype"]) for name, info in streams.items()}
        self.streams: tuple[str, ...] = tuple(
            sorted(streams, key=lambda n: (n != "weights", n != "gradients", n))
        )
        w = streams["weights"]
        self.weights = ChunkedArray(
            self.path, "weights", self._chunks["weights"], w["dim"], w["dtype"], verify=verify
        )
        self.steps, self.scalars = self._records("weights")
        if "gradients" in streams:
            g = streams["gradients"]
            self.gradients: ChunkedArray | None = ChunkedArray(
                self.path,
                "gradients",
                self._chunks["gradients"],
                g["dim"],
                g["dtype"],
                verify=verify,
            )
            self.gradient_steps, self.gradient_scalars = self._records("gradients")
        else:
            self.gradients = None
            self.gradient_steps, self.gradient_scalars = np.zeros(0, np.int64), {}
        self.projection: Projection | CoordinateProjection | None = None
        described = self.meta.get("projection")
        if described is not None:  # a stray projection.npz in an unprojected trajectory is ignored
            self.projection = self._read_projection(described)

    def stream(self, name: str) -> Stream:
        """The rows, steps and scalars of one stream, read lazily like :attr:`weights`.

        Args:
            name: One of :attr:`streams`.

        Returns:
            A :class:`Stream`.

        Raises:
            KeyError: If the trajectory has no such stream (the message lists those it has).
        """
        if name not in self._geometry:
            raise KeyError(
                f"the trajectory {str(self.path)!r} has no stream {name!r}; its streams are "
                f"{list(self.streams)}."
            )
        if name == "weights":
            return Stream(name, self.weights, self.steps, self.scalars)
        if name == "gradients" and self.gradients is not None:
            return Stream(name, self.gradients, self.gradient_steps, self.gradient_scalars)
        dim, dtype = self._geometry[name]
        data = ChunkedArray(self.path, name, self._chunks[name], dim, dtype, verify=self._verify)
        steps, scalars = self._records(name)
        return Stream(name, data, steps, scalars)

    def _read_projection(self, described: Any) -> Projection | CoordinateProjection:
        file = self.path / PROJECTION_FILE
        try:
            kind = ProjectionKind(described.get("kind", ProjectionKind.BASIS.value))
            with np.load(file) as z:
                if kind is ProjectionKind.COORDINATES:
                    return CoordinateProjection(indices=z["indices"], dim=int(z["dim"]))
                return Projection(basis=z["basis"], mean=z["mean"], kind=kind)
        except FileNotFoundError as err:
            raise TrajectoryFormatError(
                f"the trajectory {str(self.path)!r} was recorded with a projection, but its "
                f"{PROJECTION_FILE!r} is missing; restore it from a copy."
            ) from err
        except (ValueError, OSError, KeyError, AttributeError, zipfile.BadZipFile) as err:
            raise TrajectoryFormatError(
                f"the {PROJECTION_FILE!r} of the trajectory {str(self.path)!r} cannot be read "
                f"({type(err).__name__}: {err}); the file is damaged."
            ) from err

    def _read_records(self, stream: str, chunk: ChunkInfo) -> dict[str, np.ndarray]:
        name = chunk.records_file(stream)
        file = self.path / name
        raw = file.read_bytes()  # FileNotFoundError names the file
        if (
            self._verify
            and chunk.records_crc32 is not None
            and zlib.crc32(raw) != chunk.records_crc32
        ):
            _check_crc(file, chunk.records_crc32, self.path, name)
        try:
            with np.load(io.BytesIO(raw)) as z:
                arrays = {k: z[k] for k in z.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
            raise TrajectoryFormatError(
                f"records file {name!r} of the trajectory {str(self.path)!r} cannot be read "
                f"({type(err).__name__}: {err}); the file is damaged."
            ) from err
        steps = arrays.get("steps")
        problem = None
        if steps is None or steps.shape != (chunk.count,) or steps.dtype.kind not in "iu":
            problem = f"holds steps of shape {None if steps is None else steps.shape}"
        elif chunk.count and (steps[0] != chunk.first_step or steps[-1] != chunk.last_step):
            problem = f"holds steps {int(steps[0])}..{int(steps[-1])}"
        elif np.any(np.diff(steps) <= 0):
            problem = "holds steps that do not increase"
        elif any(v.shape != (chunk.count,) for k, v in arrays.items()):
            problem = "holds a scalar column of another length"
        if problem is not None:
            raise TrajectoryFormatError(
                f"records file {name!r} of the trajectory {str(self.path)!r} {problem}, but its "
                f"index says {chunk.count} increasing steps {chunk.first_step}..{chunk.last_step}; "
                f"the file is damaged."
            )
        return arrays

    def _records(self, stream: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        steps, parts = [], []
        for chunk in self._chunks[stream]:
            arrays = self._read_records(stream, chunk)
            steps.append(arrays.pop("steps"))
            parts.append(arrays)
        names = sorted({k for p in parts for k in p})
        scalars = {
            name: np.concatenate(
                [
                    p[name].astype(np.float64) if name in p else np.full(len(s), np.nan)
                    for p, s in zip(parts, steps, strict=True)
                ]
            )
            for name in names
        }
        all_steps = np.concatenate(steps).astype(np.int64) if steps else np.zeros(0, np.int64)
        return all_steps, scalars

    @property
    def dim(self) -> int:
        """d: the number of recorded coordinates (k when a projection was recorded)."""
        return self.weights.shape[1]

    def __len__(self) -> int:
        return self.weights.shape[0]

    @property
    def layout(self) -> ParamLayout:
        """Where each recorded parameter sits in a weight record.

        These are the model's parameters (not the k coordinates of a recorded projection), so
        that any d-vector of the run splits per layer.

        Raises:
            TrajectoryFormatError: If the manifest has no usable layout (not written by
            TrajectoryRecorder).
        """
        lay = self.meta.get("layout") or {}
        names, shapes = lay.get("names"), lay.get("shapes")
        if not names or shapes is None or len(names) != len(shapes):
            raise TrajectoryFormatError(
                f"{self.path}: the manifest's meta has no usable 'layout' (names and shapes of the "
                "recorded parameters); it was not written by TrajectoryRecorder."
            )
        return ParamLayout.from_named(
            (n, torch.empty(tuple(s), device="meta")) for n, s in zip(names, shapes, strict=True)
        )

    @property
    def first_nonfinite_step(self) -> int | None:
        """Step of the first record holding a NaN or infinity, or None if every record is finite.

        The recorder records non-finite weights as they are (``nonfinite="record"``) and flags them
        here, so that a diverged run can still be inspected up to the divergence.
        """
        bad = [c.first_nonfinite_step for c in self._chunks["weights"] if c.nonfinite]
        return bad[0] if bad else None

    def __repr__(self) -> str:
        grads = 0 if self.gradients is None else len(self.gradients)
        return (
            f"Trajectory({str(self.path)!r}, records={len(self)}, dim={self.dim}, "
            f"gradients={grads}, complete={self.complete})"
        )


def load_trajectory(path: str | os.PathLike, *, verify: bool = True) -> Trajectory:
    """Open a trajectory written by :class:`~sgdscope.TrajectoryRecorder`, lazily.

    Only the manifest, the chunk index, the steps and the scalars are read; the weights are read
    on slicing. A trajectory whose recorder was killed opens normally: it holds every chunk
    committed before the crash (``traj.complete`` is then False).

    Integrity: the index's geometry is checked when the trajectory is opened (contiguous chunks,
    increasing steps, one step per row), and each chunk file's CRC-32 the first time it is read.

    Args:
        path: The trajectory directory.
        verify: Check the CRC-32 of each chunk file (format version 2) on its first read; False
            skips the check (one pass over each file saved).

    Returns:
        The :class:`Trajectory`.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        TrajectoryFormatError: If ``path`` is not a trajectory, was written by a newer format
            version, or is damaged (a subclass of ValueError); raised on slicing for a damaged
            chunk file.

    Example:
        >>> import tempfile, torch
        >>> from sgdscope import TrajectoryRecorder
        >>> model = torch.nn.Linear(3, 1)
        >>> path = tempfile.mkdtemp() + "/run"
        >>> with TrajectoryRecorder(path, model, lr=0.1, batch_size=8) as rec:
        ...     for _ in range(5):
        ...         rec.step(loss=1.0)
        >>> traj = load_trajectory(path)
        >>> traj.weights[1:4].shape, traj.steps.tolist()
        ((3, 4), [1, 2, 3, 4, 5])
    """
    return Trajectory(path, verify=verify)
