"""Reader and writer for the IDX file format (the format MNIST is distributed in).

An IDX file is a big-endian header followed by a dense row-major payload (LeCun, Cortes & Burges,
"THE MNIST DATABASE of handwritten digits", file-format section)::

    bytes 0-1   0x00 0x00
    byte  2     type code: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
                0x0E float64
    byte  3     number of dimensions k
    bytes 4..   k sizes, each a big-endian uint32
    then        prod(sizes) items of the type, big-endian

So the MNIST images carry the magic number ``0x00000803`` (uint8, 3 dimensions) and the labels
``0x00000801`` (uint8, 1 dimension). Files may be gzip-compressed; the reader detects gzip from
its two magic bytes, not from the file name.

Every error is an :class:`IdxFormatError` that names the file and says what is wrong with it.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

__all__ = ["IDX_DTYPES", "IdxFormatError", "read_idx", "write_idx"]

#: IDX type code -> numpy dtype (big-endian, as stored in the file).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


class IdxFormatError(ValueError):
    """An IDX file is malformed: wrong magic number, bad dimensions or a truncated payload."""


_MAX_HEADER = 4 + 4 * 255  # magic number and up to 255 dimension sizes
_MAX_RATIO = 1032  # the largest expansion of deflate (RFC 1951): 258 bytes from 2 bits


def _gunzip(raw: bytes, limit: int) -> bytes:
    """At most ``limit`` bytes of the (possibly multi-member) gzip stream ``raw``.

    Stops as soon as ``limit`` bytes are out, so a small file that inflates to gigabytes costs
    only ``limit`` bytes of memory. A stream that ends earlier is read to its end, where zlib
    checks its CRC-32 and length.

    Returns:
        The decompressed bytes, at most ``limit`` of them.

    Raises:
        zlib.error: If the stream is corrupted (a bad CRC-32, length or deflate data).
        EOFError: If it is truncated, or followed by bytes that are not another gzip member.
    """
    out = bytearray()
    data = raw
    while True:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out += d.decompress(data, limit - len(out))
        while len(out) < limit and d.unconsumed_tail:
            out += d.decompress(d.unconsumed_tail, limit - len(out))
        if len(out) >= limit:
            return bytes(out)
        if not d.eof:
            raise EOFError("compressed file ended before the end-of-stream marker was reached")
        data = d.unused_data
        if not data.strip(b"\x00"):  # no further member (zero padding is allowed, as in gzip)
            return bytes(out)
        if data[:2] != _GZIP_MAGIC:
            raise EOFError(f"{len(data)} bytes of trailing garbage after the gzip stream")


def _read_bytes(path: Path, limit: int) -> bytes:
    """The file's bytes, gunzipped if compressed: at most ``limit`` bytes."""
    with open(path, "rb") as fh:
        gzipped = fh.read(2) == _GZIP_MAGIC
        fh.seek(0)
        raw = fh.read() if gzipped else fh.read(min(limit, os.fstat(fh.fileno()).st_size + 1))
    if not gzipped:
        return raw
    try:
        return _gunzip(raw, limit)
    except (OSError, EOFError, zlib.error) as err:  # truncated or corrupted gzip stream
        raise IdxFormatError(
            f"IDX file {os.fspath(path)!r} is gzip-compressed but cannot be decompressed "
            f"({err}); the file is truncated or corrupted: download it again."
        ) from err


def read_idx(path: str | os.PathLike[str], *, magic: int | None = None) -> np.ndarray:
    """Read one IDX file (plain or gzip-compressed) into a numpy array.

    Args:
        path: The file. Gzip compression is detected from the content.
        magic: The expected magic number (e.g. ``0x00000803`` for MNIST images); None accepts
            any valid IDX magic number.

    Returns:
        The payload as an array of shape ``sizes`` in native byte order, with the dtype given by
        the type code (uint8 for MNIST).

    Raises:
        IdxFormatError: If the magic number is wrong or unexpected, the header is short, or the
            payload length does not match the header (a truncated or padded file).

    Example:
        >>> import tempfile, pathlib, numpy as np
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x-idx2-ubyte.gz"
        >>> write_idx(p, np.arange(6, dtype=np.uint8).reshape(2, 3))
        >>> read_idx(p, magic=0x00000802).tolist()
        [[0, 1, 2], [3, 4, 5]]
    """
    path = Path(path)
    name = os.fspath(path)
    data = _read_bytes(path, _MAX_HEADER)  # the header first: it bounds what the rest may hold
    if len(data) < 4:
        raise IdxFormatError(
            f"IDX file {name!r} has {len(data)} bytes, fewer than the 4-byte magic number; "
            "the file is empty or truncated."
        )
    found = int.from_bytes(data[:4], "big")
    code, ndim = data[2], data[3]
    if data[:2] != b"\x00\x00" or code not in IDX_DTYPES:
        raise IdxFormatError(
            f"IDX file {name!r} has magic number 0x{found:08X}, which is not an IDX magic number "
            "(0x0000TTKK with type code TT in 08, 09, 0B, 0C, 0D, 0E and KK dimensions); "
            "it is not an IDX file or it is corrupted."
        )
    if magic is not None and found != magic:
        raise IdxFormatError(
            f"IDX file {name!r} has magic number 0x{found:08X}, expected 0x{magic:08X}; "
            "is it the right file (images vs labels)?"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxFormatError(
            f"IDX file {name!r} declares {ndim} dimensions but its header is cut short "
            f"({len(data)} bytes, expected at least {header}); the file is truncated."
        )
    sizes = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = IDX_DTYPES[code]
    expected = math.prod(sizes) * dtype.itemsize
    size = path.stat().st_size
    with open(path, "rb") as fh:
        gzipped = fh.read(2) == _GZIP_MAGIC
    if gzipped and header + expected > _MAX_RATIO * size + _MAX_HEADER:
        raise IdxFormatError(
            f"IDX file {name!r} declares shape {sizes} ({expected} payload bytes), more than a "
            f"{size}-byte gzip file can hold (deflate expands at most {_MAX_RATIO}-fold); the "
            "file is truncated or corrupted: download it again."
        )
    data = _read_bytes(path, header + expected + 1)  # one byte more shows a too-long payload
    payload = len(data) - header
    if payload != expected:
        what = "truncated" if payload < expected else "longer than its header says"
        raise IdxFormatError(
            f"IDX file {name!r} declares shape {sizes} ({expected} payload bytes) but holds "
            f"{payload} payload bytes; the file is {what}: download it again."
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header, count=math.prod(sizes))
    return arr.reshape(sizes).astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write an array as an IDX file; gzip-compressed when the name ends in ``.gz``.

    Args:
        path: Destination file.
        array: Array with 1 to 255 dimensions and dtype uint8, int8, int16, int32, float32 or
            float64.

    Raises:
        TypeError: If the dtype has no IDX type code.
        ValueError: If the array has 0 or more than 255 dimensions.
    """
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in _CODES:
        raise TypeError(
            f"the 'array' parameter of write_idx must have dtype uint8, int8, int16, int32, "
            f"float32 or float64, got {array.dtype}; convert it with array.astype(...)."
        )
    if not 1 <= array.ndim <= 255:
        raise ValueError(
            f"the 'array' parameter of write_idx must have 1 to 255 dimensions, got {array.ndim}."
        )
    code = _CODES[native]
    header = bytes([0, 0, code, array.ndim]) + b"".join(
        int(s).to_bytes(4, "big") for s in array.shape
    )
    body = np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    path = Path(path)
    if path.name.endswith(".gz"):
        # No file name and mtime=0 in the gzip header: the output is byte-for-byte reproducible.
        with (
            open(path, "wb") as raw,
            gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as fh,
        ):
            fh.write(header + body)
    else:
        path.write_bytes(header + body)
