"""Reading a recorded trajectory: :class:`Trajectory` and :func:`load_trajectory`.

The weights are read lazily: ``traj.weights[t0:t1]`` memory-maps only the chunks that hold rows
t0..t1-1 and returns a numpy array of shape (t1 - t0, d). Steps, scalars and metadata are small and
read when the trajectory is opened.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .projection import Projection, ProjectionKind
from .store import (
    PROJECTION_FILE,
    ChunkInfo,
    TrajectoryFormatError,
    chunks_of,
    read_manifest,
)

__all__ = ["ChunkedArray", "Trajectory", "load_trajectory"]


class ChunkedArray:
    """A read-only (T, d) array stored as row chunks on disk, indexed like a numpy array.

    ``arr[t]``, ``arr[t0:t1]``, ``arr[t0:t1:s]``, ``arr[[t, ...]]``, and the same with a second,
    coordinate index (``arr[t0:t1, i0:i1]``, ``arr[:, [i, j]]``) return numpy arrays with numpy's
    result shapes. Only the chunks that hold the requested rows are read (memory-mapped).

    Attributes:
        shape: (T, d): number of records and their dimension.
        dtype: The stored dtype.
    """

    def __init__(self, root: Path, stream: str, chunks: list[ChunkInfo], dim: int, dtype: str):
        self._root = root
        self._stream = stream
        self._chunks = chunks
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
        arr = np.load(self._root / chunk.data_file(self._stream), mmap_mode="r")
        if arr.shape != (chunk.count, self.shape[1]):
            raise TrajectoryFormatError(
                f"chunk {chunk.data_file(self._stream)!r} of {str(self._root)!r} has shape "
                f"{arr.shape}, expected {(chunk.count, self.shape[1])}; the file is damaged."
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


def _positions(key: Any, n: int) -> np.ndarray:
    """The integer positions that ``key`` selects along an axis of length n (numpy rules)."""
    if isinstance(key, slice):
        return np.arange(*key.indices(n))
    if isinstance(key, int | np.integer) and not isinstance(key, bool):
        if not -n <= key < n:
            raise IndexError(f"index {key} is out of bounds for an axis of size {n}.")
        return np.asarray(int(key) % n)
    return np.arange(n)[key]


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
        projection: The :class:`Projection` the recorder applied, or None if raw weights
            were recorded.
        complete: True if the recorder was closed cleanly; False after a crash (the records up to
            the last complete chunk are still all valid).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        manifest = read_manifest(self.path)
        self.complete: bool = bool(manifest.get("complete", False))
        self.meta: dict = {**manifest["meta"], "format_version": manifest["format_version"]}
        self._chunks = {s: chunks_of(manifest, s) for s in manifest["streams"]}
        streams = manifest["streams"]
        w = streams["weights"]
        self.weights = ChunkedArray(
            self.path, "weights", self._chunks["weights"], w["dim"], w["dtype"]
        )
        self.steps, self.scalars = self._records("weights")
        if "gradients" in streams:
            g = streams["gradients"]
            self.gradients: ChunkedArray | None = ChunkedArray(
                self.path, "gradients", self._chunks["gradients"], g["dim"], g["dtype"]
            )
            self.gradient_steps, self.gradient_scalars = self._records("gradients")
        else:
            self.gradients = None
            self.gradient_steps, self.gradient_scalars = np.zeros(0, np.int64), {}
        self.projection: Projection | None = None
        if (self.path / PROJECTION_FILE).is_file():
            with np.load(self.path / PROJECTION_FILE) as z:
                kind = self.meta.get("projection", {}).get("kind", ProjectionKind.BASIS.value)
                self.projection = Projection(
                    basis=z["basis"], mean=z["mean"], kind=ProjectionKind(kind)
                )

    def _records(self, stream: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        steps, parts = [], []
        for chunk in self._chunks[stream]:
            with np.load(self.path / chunk.records_file(stream)) as z:
                steps.append(z["steps"])
                parts.append({k: z[k] for k in z.files if k != "steps"})
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


def load_trajectory(path: str | os.PathLike) -> Trajectory:
    """Open a trajectory written by :class:`~sgdscope.TrajectoryRecorder`, lazily.

    Only the manifest, the steps and the scalars are read; the weights are read on slicing.
    A trajectory whose recorder was killed opens normally: it holds every chunk committed before
    the crash (``traj.complete`` is then False).

    Args:
        path: The trajectory directory.

    Returns:
        The :class:`Trajectory`.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        TrajectoryFormatError: If ``path`` is not a trajectory or was written by a newer format
            version (a subclass of ValueError).

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
    return Trajectory(path)
