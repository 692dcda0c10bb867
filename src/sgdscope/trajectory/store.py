"""The on-disk trajectory format: one ``.npy`` file per chunk and an append-only chunk index.

Layout of a trajectory directory (format version 2)::

    run.sgdtraj/
      manifest.json                 # format name and version, metadata, stream geometry, complete
      chunks.jsonl                  # the committed chunks: one JSON line per chunk, appended
      .lock                         # held (flock) by the one recorder writing the trajectory
      weights/00000000.npy          # (count, dim) array: one row per record
      weights/00000000.records.npz  # "steps" (count,) int64 and one (count,) array per scalar
      gradients/...                 # same shape of files, optional stream of full gradients
      <name>/...                    # same shape of files, optional further streams (format 3)
      projection.npz                # "basis" (k, d) and "mean" (d,) when weights were projected,
                                    # or "indices" (k,) and "dim" for a coordinate projection

Crash safety is by construction. Every chunk file is written under a temporary name and moved into
place with :func:`os.replace`, which is atomic on POSIX and Windows. A chunk becomes part of the
trajectory only when its line, ending with a newline, is appended to ``chunks.jsonl`` after both
of its files are in place; the line holds the CRC-32 of both files. So a process killed at any
instant (SIGKILL included) leaves an index that lists only chunks whose files are complete, plus
at most one unterminated line, which readers ignore. Files of a chunk that was being written when
the process died are orphans: readers never see them, and a resumed recorder overwrites them.
With ``fsync=True`` the files and the directory are also flushed to the device, which makes the
same guarantee hold across a power loss (SIGKILL alone needs no fsync: the page cache outlives the
process).

Committing a chunk appends one line (≈200 bytes), so recording stays linear in the number of
chunks; the manifest is replaced only when a recorder opens or closes the trajectory. Format
version 1 (manifest listing every chunk, rewritten per chunk, no checksums) is still read, and a
recorder that resumes a version-1 trajectory converts it to version 2. Version 3 is version 2
with streams besides ``weights`` and ``gradients`` (for example the gradient-noise measurements
of :class:`sgdscope.Monitor`); a trajectory without them is still written as version 2, so that
older readers open it.

Integrity: readers check the CRC-32 of a chunk's files the first time they read them (skip with
``load_trajectory(path, verify=False)``) and check the geometry of the index (contiguous starts,
increasing steps, one step per row).

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

import errno
import io
import json
import os
import platform
import re
import tempfile
import time
import zlib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

try:  # POSIX advisory locks; on other systems the one-writer rule is not enforced
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "INDEX",
    "LOCK",
    "MANIFEST",
    "ChunkInfo",
    "StoreWriter",
    "TrajectoryFormatError",
    "TrajectoryGapError",
    "TrajectoryLockedError",
    "read_manifest",
]

FORMAT_NAME = "sgdscope-trajectory"
FORMAT_VERSION = 3
MANIFEST = "manifest.json"
INDEX = "chunks.jsonl"
LOCK = ".lock"
PROJECTION_FILE = "projection.npz"
STREAMS = ("weights", "gradients")  # the streams of format version 2
_STREAM_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


def check_stream_name(name: Any, where: str) -> str:
    """A stream name: lower-case letters, digits and ``_``, starting with a letter (a folder)."""
    if not isinstance(name, str) or not _STREAM_NAME.fullmatch(name):
        raise ValueError(
            f"the stream name {name!r} of {where} is not valid: a stream name is 1 to 32 "
            "lower-case letters, digits or '_', starting with a letter (it names a folder)."
        )
    return name


def format_version(streams: Any) -> int:
    """The format version a manifest with these stream names is written as (2 or 3)."""
    return 2 if set(streams) <= set(STREAMS) else 3


class TrajectoryFormatError(ValueError):
    """A path is not a trajectory, or one written by a newer format version, or is damaged."""


class TrajectoryLockedError(RuntimeError):
    """Another recorder is writing the trajectory (one writer per trajectory)."""


class TrajectoryGapError(ValueError):
    """A resume would leave steps missing: training restarts after the trajectory's last step."""


@dataclass(frozen=True)
class ChunkInfo:
    """One committed chunk of a stream.

    Attributes:
        index: Number of the chunk's files within its stream (increasing along the stream).
        start: Index of the chunk's first record within the stream.
        count: Number of records in the chunk.
        first_step: Training step of the first record.
        last_step: Training step of the last record.
        nonfinite: Number of records whose row holds a NaN or an infinity.
        first_nonfinite_step: Step of the first such record, or None.
        data_crc32: CRC-32 of the chunk's ``.npy`` file (None in format version 1).
        records_crc32: CRC-32 of the chunk's ``.records.npz`` file (None in format version 1).
    """

    index: int
    start: int
    count: int
    first_step: int
    last_step: int
    nonfinite: int = 0
    first_nonfinite_step: int | None = None
    data_crc32: int | None = None
    records_crc32: int | None = None

    def data_file(self, stream: str) -> str:
        """Relative path of the (count, dim) array of this chunk."""
        return f"{stream}/{self.index:08d}.npy"

    def records_file(self, stream: str) -> str:
        """Relative path of the steps and scalars of this chunk."""
        return f"{stream}/{self.index:08d}.records.npz"


_CHUNK_KEYS = {f.name for f in fields(ChunkInfo)}
_CHUNK_REQUIRED = ("index", "start", "count", "first_step", "last_step")


class _CrcWriter:
    """A write-only file wrapper that computes the CRC-32 of what goes through it."""

    def __init__(self, fh: Any) -> None:
        self._fh = fh
        self.crc = 0

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.crc = zlib.crc32(view, self.crc)
        self._fh.write(view)
        return view.nbytes


def file_crc32(path: Path) -> int:
    """CRC-32 of a file, read in 1 MiB blocks."""
    crc = 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            crc = zlib.crc32(block, crc)
    return crc


def _explain_write_error(err: BaseException, path: Path) -> BaseException:
    """A short write or ENOSPC/EFBIG/EDQUOT said in words (numpy reports 'N requested and M written')."""
    full = isinstance(err, OSError) and (
        err.errno in (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", -1))
        or "requested and" in str(err)
    )
    if not full:
        return err
    new = OSError(
        errno.ENOSPC,
        f"could not write {os.fspath(path)!r}: the disk is full or a file-size limit "
        f"(ulimit -f, quota) was reached ({err}); free space and resume",
    )
    new.__cause__ = err
    return new


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
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        explained = _explain_write_error(err, path)
        if explained is not err:
            raise explained from err
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


def _damaged(path: Any, what: str) -> TrajectoryFormatError:
    return TrajectoryFormatError(
        f"{str(path)!r} is a damaged trajectory: {what}. Re-record it, or delete the damaged "
        f"part and resume."
    )


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def chunk_from_dict(entry: Any, path: Any, where: str) -> ChunkInfo:
    """A :class:`ChunkInfo` from one index entry, with its keys and types checked."""
    if not isinstance(entry, dict):
        raise _damaged(path, f"{where} is not a JSON object")
    unknown = set(entry) - _CHUNK_KEYS
    missing = [k for k in _CHUNK_REQUIRED if k not in entry]
    if unknown or missing:
        raise _damaged(
            path,
            f"{where} has unknown keys {sorted(unknown)} or lacks {missing} (written by another "
            f"version of sgdscope?)",
        )
    for key, value in entry.items():
        optional = key in ("first_nonfinite_step", "data_crc32", "records_crc32")
        if not (_is_int(value) or (optional and value is None)):
            raise _damaged(path, f"{where} has {key} = {value!r}, expected an int")
    if entry["count"] < 1 or entry["start"] < 0 or entry["index"] < 0:
        raise _damaged(path, f"{where} has count {entry['count']}, start {entry['start']}")
    if entry["first_step"] > entry["last_step"]:
        raise _damaged(path, f"{where} has first_step > last_step")
    return ChunkInfo(**entry)


def _check_geometry(chunks: list[ChunkInfo], stream: str, path: Any) -> None:
    """Starts contiguous from 0, steps increasing from chunk to chunk."""
    pos, last = 0, None
    for c in chunks:
        if c.start != pos:
            raise _damaged(
                path,
                f"chunk {c.data_file(stream)!r} starts at record {c.start}, but the chunks before "
                f"it end at record {pos}",
            )
        if last is not None and c.first_step <= last:
            raise _damaged(
                path,
                f"chunk {c.data_file(stream)!r} starts at step {c.first_step}, not after the "
                f"previous chunk's last step {last}",
            )
        pos, last = pos + c.count, c.last_step


def read_index(root: Path) -> tuple[dict[str, list[ChunkInfo]], int]:
    """The chunks listed in ``root/chunks.jsonl`` and the byte length of its complete lines.

    An unterminated last line (a write cut short by a crash) is ignored.

    Returns:
        ``({stream: its chunks}, byte length of the complete lines)``.

    Raises:
        TrajectoryFormatError: If the index is missing or a complete line is damaged.
    """  # noqa: DOC501 (_damaged(...) builds the TrajectoryFormatError)
    file = root / INDEX
    if not file.is_file():
        raise _damaged(root, f"its chunk index {INDEX!r} is missing")
    raw = file.read_bytes()
    end = raw.rfind(b"\n") + 1
    out: dict[str, list[ChunkInfo]] = {}
    for number, line in enumerate(raw[:end].splitlines(), start=1):
        where = f"line {number} of {INDEX!r}"
        try:
            entry = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise _damaged(root, f"{where} is not valid JSON ({err})") from err
        if not isinstance(entry, dict) or not isinstance(entry.get("stream"), str):
            raise _damaged(root, f"{where} does not name its stream")
        stream = entry.pop("stream")
        out.setdefault(stream, []).append(chunk_from_dict(entry, root, where))
    return out, end


def read_manifest(path: str | os.PathLike) -> dict:
    """Read and check the manifest (and, in format version 2, the chunk index) at ``path``.

    Args:
        path: A trajectory directory.

    Returns:
        The manifest as a dict (keys ``format``, ``format_version``, ``complete``, ``meta``,
        ``streams``); each stream holds ``dim``, ``dtype``, ``length`` and ``chunks`` (a list of
        :class:`ChunkInfo`), whatever the format version.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        TrajectoryFormatError: If ``path`` is not a trajectory, was written by a newer format
            version than this sgdscope reads, or its manifest or index is damaged.
    """  # noqa: DOC501 (_damaged(...) builds a TrajectoryFormatError)
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
    if not _is_int(version) or version < 1:
        raise TrajectoryFormatError(
            f"{str(path)!r} has an invalid format_version {version!r}; expected an int >= 1."
        )
    if version > FORMAT_VERSION:
        raise TrajectoryFormatError(
            f"{str(path)!r} was written by a newer trajectory format version {version}; this "
            f"sgdscope reads versions up to {FORMAT_VERSION}. Upgrade sgdscope to read it."
        )
    if not isinstance(manifest.get("meta"), dict):
        raise _damaged(path, f"its {MANIFEST!r} has no 'meta' object")
    streams = manifest.get("streams")
    if not isinstance(streams, dict) or not isinstance(streams.get("weights"), dict):
        raise _damaged(path, f"its {MANIFEST!r} has no 'weights' stream")
    indexed = read_index(root)[0] if version >= 2 else {}
    for name, info in streams.items():
        known = name in STREAMS or (version >= 3 and _STREAM_NAME.fullmatch(str(name)))
        if not known or not isinstance(info, dict):
            raise _damaged(path, f"its {MANIFEST!r} lists an unknown stream {name!r}")
        dim, dtype = info.get("dim"), info.get("dtype")
        if not _is_int(dim) or dim < 1:
            raise _damaged(path, f"stream {name!r} has dim {dim!r}, expected an int >= 1")
        try:
            ok = np.dtype(dtype).kind == "f"
        except TypeError:
            ok = False
        if not isinstance(dtype, str) or not ok:
            raise _damaged(path, f"stream {name!r} has dtype {dtype!r}, expected a float dtype")
        if version >= 2:
            chunks = indexed.pop(name, [])
        else:
            raw = info.get("chunks")
            if not isinstance(raw, list):
                raise _damaged(path, f"stream {name!r} has no 'chunks' list")
            chunks = [
                chunk_from_dict(c, path, f"chunk {i} of stream {name!r}") for i, c in enumerate(raw)
            ]
        _check_geometry(chunks, name, path)
        info["chunks"] = chunks
        info["length"] = sum(c.count for c in chunks)
    if indexed:
        raise _damaged(path, f"its {INDEX!r} lists chunks of unknown streams {sorted(indexed)}")
    manifest["complete"] = manifest.get("complete") is True
    return manifest


def chunks_of(manifest: dict, stream: str) -> list[ChunkInfo]:
    """The committed chunks of ``stream`` in a manifest from :func:`read_manifest` (or [])."""
    info = manifest["streams"].get(stream)
    return [] if info is None else list(info["chunks"])


class DirectoryLock:
    """An exclusive advisory lock (``flock``) on ``root/.lock``, held until :meth:`release`.

    The lock file records the holder's host and pid for the error message of the next one. The
    kernel releases the lock when the process dies, so a killed recorder never leaves it held.
    """

    def __init__(self, root: Path, who: str) -> None:
        self.path = root / LOCK
        self._fd: int | None = None
        if fcntl is None:  # pragma: no cover - Windows
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise TrajectoryLockedError(
                f"the trajectory {str(root)!r} is being written by another {who} ({holder}); "
                f"a trajectory has one writer at a time. Close the other recorder (or wait for "
                f"its process to end), or record to another path."
            ) from None
        info = f"pid {os.getpid()} on host {platform.node()!r} since " + time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime()
        )
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Release the lock (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock


class StoreWriter:
    """Writes chunks and commits them to the index; used by the recorder's writer thread.

    Not thread-safe: one writer per directory (the recorder holds the directory's lock), called
    from one thread.

    Args:
        root: The trajectory directory (created if missing).
        meta: Metadata stored in the manifest (JSON-serialisable).
        streams: ``{name: {"dim": int, "dtype": str}}`` for each stream to create.
        fsync: Flush files and directories to the device (power-loss safety).
        manifest: An existing manifest from :func:`read_manifest` to append to
            (``resume=True``), or None to start afresh.
        truncate_after: With ``manifest``: drop every record whose step is larger (the last
            chunk that holds such a record is rewritten), so that all streams end at the same
            step before new records are appended.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        meta: dict,
        streams: dict[str, dict],
        *,
        fsync: bool = False,
        manifest: dict | None = None,
        truncate_after: int | None = None,
    ) -> None:
        self.root = Path(root)
        self.fsync = fsync
        self._fd: int | None = None
        if manifest is None:
            self.root.mkdir(parents=True, exist_ok=True)
            manifest = {
                "format": FORMAT_NAME,
                "format_version": format_version(streams),
                "complete": False,
                "meta": meta,
                "streams": {
                    name: {"dim": s["dim"], "dtype": s["dtype"], "length": 0, "chunks": []}
                    for name, s in streams.items()
                },
            }
        else:
            manifest = {
                **manifest,
                "format_version": format_version(manifest["streams"]),
                "complete": False,
                "streams": {
                    n: {**s, "chunks": list(s["chunks"])} for n, s in manifest["streams"].items()
                },
            }
        for name in manifest["streams"]:
            (self.root / name).mkdir(exist_ok=True)
        self.manifest = manifest
        self._next = {
            name: max((c.index for c in s["chunks"]), default=-1) + 1
            for name, s in manifest["streams"].items()
        }
        if truncate_after is not None:
            for name in manifest["streams"]:
                self._truncate(name, truncate_after)
        # the index first (a v1 reader ignores it), then the manifest that points readers at it
        lines = b"".join(
            self._line(name, c) for name, s in manifest["streams"].items() for c in s["chunks"]
        )
        _atomic_write(self.root / INDEX, lambda fh: fh.write(lines), fsync=fsync)
        self.commit()
        self._fd = os.open(self.root / INDEX, os.O_WRONLY | os.O_APPEND)

    @staticmethod
    def _line(stream: str, chunk: ChunkInfo) -> bytes:
        entry = {"stream": stream, **chunk.__dict__}
        return (json.dumps(entry, separators=(",", ":")) + "\n").encode("utf-8")

    def _truncate(self, stream: str, step: int) -> None:
        info = self.manifest["streams"][stream]
        keep = [c for c in info["chunks"] if c.last_step <= step]
        cut = [c for c in info["chunks"] if c.first_step <= step < c.last_step]
        for c in cut:  # rewritten under a new index: the old index still lists the old files
            for name, want in (
                (c.data_file(stream), c.data_crc32),
                (c.records_file(stream), c.records_crc32),
            ):
                if want is not None and file_crc32(self.root / name) != want:
                    raise _damaged(self.root, f"the CRC-32 of {name!r} does not match its index")
            data = np.load(self.root / c.data_file(stream), mmap_mode="r")
            with np.load(self.root / c.records_file(stream)) as z:
                steps = z["steps"]
                n = int(np.searchsorted(steps, step, side="right"))
                scalars = {k: z[k][:n] for k in z.files if k != "steps"}
            keep.append(
                self._write_chunk(stream, np.asarray(data[:n]), steps[:n], scalars, c.start)
            )
        info["chunks"] = keep
        info["length"] = sum(c.count for c in keep)

    def write_projection(self, **arrays: np.ndarray) -> None:
        """Store the projection of the recorded weights.

        The arrays are ``basis`` (k, d) and ``mean`` (d,), or ``indices`` (k,) and ``dim`` for a
        coordinate projection.
        """
        _atomic_write(
            self.root / PROJECTION_FILE,
            lambda fh: np.savez(fh, allow_pickle=False, **arrays),
            fsync=self.fsync,
        )

    def _write_chunk(
        self,
        stream: str,
        data: np.ndarray,
        steps: np.ndarray,
        scalars: dict[str, np.ndarray],
        start: int,
    ) -> ChunkInfo:
        rows_ok = np.isfinite(data).all(axis=1)
        bad = np.flatnonzero(~rows_ok)
        index = self._next[stream]
        self._next[stream] = index + 1
        data_file = self.root / f"{stream}/{index:08d}.npy"
        crc: dict[str, int] = {}

        def write_data(fh: Any) -> None:
            w = _CrcWriter(fh)
            np.save(w, np.ascontiguousarray(data))
            crc["data"] = w.crc

        buf = io.BytesIO()
        np.savez(buf, allow_pickle=False, steps=np.asarray(steps, np.int64), **scalars)
        records = buf.getvalue()
        _atomic_write(data_file, write_data, fsync=self.fsync)
        _atomic_write(
            self.root / f"{stream}/{index:08d}.records.npz",
            lambda fh: fh.write(records),
            fsync=self.fsync,
        )
        return ChunkInfo(
            index=index,
            start=start,
            count=len(steps),
            first_step=int(steps[0]),
            last_step=int(steps[-1]),
            nonfinite=len(bad),
            first_nonfinite_step=int(steps[bad[0]]) if len(bad) else None,
            data_crc32=crc["data"],
            records_crc32=zlib.crc32(records),
        )

    def append(
        self,
        stream: str,
        data: np.ndarray,
        steps: np.ndarray,
        scalars: dict[str, np.ndarray],
    ) -> ChunkInfo:
        """Write one chunk of ``stream`` and commit it (one appended line of the index).

        Args:
            stream: Stream name (``"weights"`` or ``"gradients"``).
            data: Array of shape (count, dim).
            steps: Int array of shape (count,), the training step of each row.
            scalars: Arrays of shape (count,), one per scalar name.

        Returns:
            The committed chunk's description.

        Raises:
            RuntimeError: If the writer is closed.
            OSError: If the index line cannot be written (a full disk is said in words); the writer
            is then closed.
        """  # noqa: DOC501 (_explain_write_error(...) is the OSError)
        if self._fd is None:
            raise RuntimeError(f"the store writer of {str(self.root)!r} is closed.")
        info = self.manifest["streams"][stream]
        chunk = self._write_chunk(stream, data, steps, scalars, info["length"])
        line = self._line(stream, chunk)
        try:
            written = os.write(self._fd, line)
            if written != len(line):
                raise OSError(errno.ENOSPC, f"{len(line)} requested and {written} written")
            if self.fsync:
                os.fsync(self._fd)
        except OSError as err:
            self.close()  # a partial line must not be followed by another one
            raise _explain_write_error(err, self.root / INDEX) from err
        info["chunks"].append(chunk)
        info["length"] += chunk.count
        return chunk

    def commit(self, *, complete: bool | None = None) -> None:
        """Atomically replace the manifest (metadata, stream geometry and ``complete``)."""
        if complete is not None:
            self.manifest["complete"] = complete
        header = {
            **self.manifest,
            "streams": {
                name: {"dim": s["dim"], "dtype": s["dtype"]}
                for name, s in self.manifest["streams"].items()
            },
        }
        text = json.dumps(header, separators=(",", ":"), sort_keys=True).encode("utf-8")
        _atomic_write(self.root / MANIFEST, lambda fh: fh.write(text), fsync=self.fsync)

    def close(self) -> None:
        """Close the index file (idempotent); :meth:`commit` still works."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
