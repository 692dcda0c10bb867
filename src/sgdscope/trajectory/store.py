"""The on-disk trajectory format: one ``.npy`` file per chunk and an atomically replaced manifest.

Layout of a trajectory directory (format version 1)::

    run.sgdtraj/
      manifest.json                 # format name and version, metadata, the list of committed chunks
      weights/00000000.npy          # (count, dim) array: one row per record
      weights/00000000.records.npz  # "steps" (count,) int64 and one (count,) array per scalar
      gradients/...                 # same shape of files, optional stream of full gradients
      projection.npz                # "basis" (k, d) and "mean" (d,) when weights were projected

Crash safety is by construction. Every file is written under a temporary name and moved into place
with :func:`os.replace`, which is atomic on POSIX and Windows. A chunk becomes part of the
trajectory only when a new manifest that lists it replaces the old one, after both chunk files are in
place. So a process killed at any instant (SIGKILL included) leaves the last manifest, which lists
only chunks whose files are complete. Files of a chunk that was being written when the process died
are orphans: readers never see them, and a resumed recorder overwrites them. With ``fsync=True``
the files and the directory are also flushed to the device, which makes the same guarantee hold
across a power loss (SIGKILL alone needs no fsync: the page cache outlives the process).

Why not zarr v3 or HDF5 (the two formats the issue names): HDF5 keeps one file whose internal
B-trees and free-space lists a killed writer can leave inconsistent, so a crash may make the whole
file unreadable (SWMR mode narrows but does not remove this, and needs h5py). zarr v3 stores one
object per chunk and would be crash-safe for the chunks, but its array metadata (the shape) is
updated separately from the chunks, it adds a runtime dependency, and the records of a trajectory
are a few aligned arrays (weights, steps, scalars) that this small format handles directly.
The chunk files are plain ``.npy`` and ``.npz``, readable by numpy alone and memory-mapped for lazy
slicing.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MANIFEST",
    "ChunkInfo",
    "StoreWriter",
    "TrajectoryFormatError",
    "read_manifest",
]

FORMAT_NAME = "sgdscope-trajectory"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PROJECTION_FILE = "projection.npz"
STREAMS = ("weights", "gradients")


class TrajectoryFormatError(ValueError):
    """A path is not a trajectory, or one written by a newer format version, or is damaged."""


@dataclass(frozen=True)
class ChunkInfo:
    """One committed chunk of a stream.

    Attributes:
        index: Chunk number within its stream (0, 1, ...).
        start: Index of the chunk's first record within the stream.
        count: Number of records in the chunk.
        first_step: Training step of the first record.
        last_step: Training step of the last record.
        nonfinite: Number of records whose row holds a NaN or an infinity.
        first_nonfinite_step: Step of the first such record, or None.
    """

    index: int
    start: int
    count: int
    first_step: int
    last_step: int
    nonfinite: int = 0
    first_nonfinite_step: int | None = None

    def data_file(self, stream: str) -> str:
        """Relative path of the (count, dim) array of this chunk."""
        return f"{stream}/{self.index:08d}.npy"

    def records_file(self, stream: str) -> str:
        """Relative path of the steps and scalars of this chunk."""
        return f"{stream}/{self.index:08d}.records.npz"


def _atomic_write(path: Path, write: Any, *, fsync: bool) -> None:
    """Write a file through ``write(fileobj)`` under a temporary name, then move it into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if fsync:
        _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":  # pragma: no cover - directories cannot be opened on Windows
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_manifest(path: str | os.PathLike) -> dict:
    """Read and check the manifest of the trajectory at ``path``.

    Args:
        path: A trajectory directory.

    Returns:
        The manifest as a dict (keys ``format``, ``format_version``, ``meta``, ``streams``).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        TrajectoryFormatError: If ``path`` is not a trajectory, was written by a newer format
            version than this sgdscope reads, or its manifest is damaged.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(
            f"the 'path' parameter of load_trajectory must name an existing trajectory "
            f"directory, got {str(path)!r}, which does not exist."
        )
    file = root / MANIFEST
    if not root.is_dir() or not file.is_file():
        raise TrajectoryFormatError(
            f"{str(path)!r} is not a trajectory: a trajectory is a directory with a "
            f"{MANIFEST!r} written by sgdscope.TrajectoryRecorder."
        )
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise TrajectoryFormatError(
            f"{str(path)!r} is not a trajectory: its {MANIFEST!r} is not valid JSON ({err})."
        ) from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise TrajectoryFormatError(
            f"{str(path)!r} is not a trajectory: its {MANIFEST!r} does not declare "
            f"format {FORMAT_NAME!r}."
        )
    version = manifest.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise TrajectoryFormatError(
            f"{str(path)!r} has an invalid format_version {version!r}; expected an int >= 1."
        )
    if version > FORMAT_VERSION:
        raise TrajectoryFormatError(
            f"{str(path)!r} was written by a newer trajectory format version {version}; this "
            f"sgdscope reads versions up to {FORMAT_VERSION}. Upgrade sgdscope to read it."
        )
    return manifest


def chunks_of(manifest: dict, stream: str) -> list[ChunkInfo]:
    """The committed chunks of ``stream`` listed in ``manifest`` (empty if the stream is absent)."""
    info = manifest["streams"].get(stream)
    return [] if info is None else [ChunkInfo(**c) for c in info["chunks"]]


class StoreWriter:
    """Writes chunks and commits them to the manifest; used by the recorder's writer thread.

    Not thread-safe: one writer per directory, called from one thread.

    Args:
        root: The trajectory directory (created if missing).
        meta: Metadata stored in the manifest (JSON-serialisable).
        streams: ``{name: {"dim": int, "dtype": str}}`` for each stream to create.
        fsync: Flush files and directories to the device (power-loss safety).
        manifest: An existing manifest to append to (``resume=True``), or None to start afresh.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        meta: dict,
        streams: dict[str, dict],
        *,
        fsync: bool = False,
        manifest: dict | None = None,
    ) -> None:
        self.root = Path(root)
        self.fsync = fsync
        if manifest is None:
            self.root.mkdir(parents=True, exist_ok=True)
            manifest = {
                "format": FORMAT_NAME,
                "format_version": FORMAT_VERSION,
                "complete": False,
                "meta": meta,
                "streams": {
                    name: {"dim": s["dim"], "dtype": s["dtype"], "length": 0, "chunks": []}
                    for name, s in streams.items()
                },
            }
        else:
            manifest = {**manifest, "complete": False}
        for name in manifest["streams"]:
            (self.root / name).mkdir(exist_ok=True)
        self.manifest = manifest
        self.commit()

    def write_projection(self, basis: np.ndarray, mean: np.ndarray) -> None:
        """Store the projection basis (k, d) and mean (d,) used for the recorded weights."""
        _atomic_write(
            self.root / PROJECTION_FILE,
            lambda fh: np.savez(fh, basis=basis, mean=mean),
            fsync=self.fsync,
        )

    def append(
        self,
        stream: str,
        data: np.ndarray,
        steps: np.ndarray,
        scalars: dict[str, np.ndarray],
    ) -> ChunkInfo:
        """Write one chunk of ``stream`` and commit it.

        Args:
            stream: Stream name (``"weights"`` or ``"gradients"``).
            data: Array of shape (count, dim).
            steps: Int array of shape (count,), the training step of each row.
            scalars: Arrays of shape (count,), one per scalar name.

        Returns:
            The committed chunk's description.
        """
        info = self.manifest["streams"][stream]
        rows_ok = np.isfinite(data).all(axis=1)
        bad = np.flatnonzero(~rows_ok)
        chunk = ChunkInfo(
            index=len(info["chunks"]),
            start=info["length"],
            count=len(steps),
            first_step=int(steps[0]),
            last_step=int(steps[-1]),
            nonfinite=len(bad),
            first_nonfinite_step=int(steps[bad[0]]) if len(bad) else None,
        )
        _atomic_write(
            self.root / chunk.data_file(stream),
            lambda fh: np.save(fh, np.ascontiguousarray(data)),
            fsync=self.fsync,
        )
        _atomic_write(
            self.root / chunk.records_file(stream),
            lambda fh: np.savez(fh, steps=np.asarray(steps, np.int64), **scalars),
            fsync=self.fsync,
        )
        info["chunks"].append(chunk.__dict__.copy())
        info["length"] += chunk.count
        self.commit()
        return chunk

    def commit(self, *, complete: bool | None = None) -> None:
        """Atomically replace the manifest with the current state."""
        if complete is not None:
            self.manifest["complete"] = complete
        text = json.dumps(self.manifest, separators=(",", ":"), sort_keys=True).encode("utf-8")
        _atomic_write(self.root / MANIFEST, lambda fh: fh.write(text), fsync=self.fsync)
