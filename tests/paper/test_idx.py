import gzip
import struct

import numpy as np
import pytest

from sgdscope.paper.idx import IDX_DTYPES, IdxFormatError, read_idx, write_idx


def _hand_idx(array: np.ndarray, code: int) -> bytes:
    """IDX bytes built by hand from the format description, independently of write_idx."""
    header = struct.pack(">BBBB", 0, 0, code, array.ndim)
    header += struct.pack(">" + "I" * array.ndim, *array.shape)
    return header + array.astype(IDX_DTYPES[code]).tobytes()


def test_reads_a_hand_built_mnist_like_file(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(_hand_idx(images, 0x08))
    assert path.read_bytes()[:4] == b"\x00\x00\x08\x03"
    out = read_idx(path, magic=0x00000803)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, images)


@pytest.mark.parametrize(
    ("dtype", "code"),
    [(np.uint8, 0x08), (np.int8, 0x09), (np.int16, 0x0B), (np.int32, 0x0C), (np.float32, 0x0D),
     (np.float64, 0x0E)],
)  # fmt: skip
@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 4), (1, 1, 1, 2)])
def test_round_trip(tmp_path, dtype, code, suffix, shape):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal(shape) * 100).astype(dtype)
    path = tmp_path / f"x{suffix}"
    write_idx(path, array)
    raw = path.read_bytes()
    if suffix:
        assert raw[:2] == b"\x1f\x8b"
        raw = gzip.decompress(raw)
    assert raw == _hand_idx(array, code)  # the exact bytes of the format
    out = read_idx(path, magic=(code << 8) | len(shape))
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, array)


def test_gzip_is_detected_from_content_not_name(tmp_path):
    array = np.arange(10, dtype=np.uint8)
    gz_no_suffix = tmp_path / "labels-idx1-ubyte"
    gz_no_suffix.write_bytes(gzip.compress(_hand_idx(array, 0x08)))
    plain_with_suffix = tmp_path / "labels-idx1-ubyte.gz"
    plain_with_suffix.write_bytes(_hand_idx(array, 0x08))
    np.testing.assert_array_equal(read_idx(gz_no_suffix), array)
    np.testing.assert_array_equal(read_idx(plain_with_suffix), array)


def test_gzip_output_is_reproducible(tmp_path):
    array = np.arange(100, dtype=np.uint8)
    write_idx(tmp_path / "a.gz", array)
    write_idx(tmp_path / "b.gz", array)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()


def test_wrong_magic_names_the_file(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte"
    write_idx(path, np.zeros(4, dtype=np.uint8))
    with pytest.raises(
        IdxFormatError,
        match=r"train-labels-idx1-ubyte' has magic number 0x00000801, expected 0x00000803",
    ):
        read_idx(path, magic=0x00000803)


@pytest.mark.parametrize("head", [b"\x12\x34\x08\x01", b"\x00\x00\x07\x01", b"PK\x03\x04"])
def test_not_an_idx_file(tmp_path, head):
    path = tmp_path / "junk"
    path.write_bytes(head + b"\x00" * 12)
    with pytest.raises(IdxFormatError, match=r"junk' has magic number 0x[0-9A-F]{8}, which is not"):
        read_idx(path)


@pytest.mark.parametrize("content", [b"", b"\x00\x00"])
def test_file_shorter_than_the_magic_number(tmp_path, content):
    path = tmp_path / "short"
    path.write_bytes(content)
    with pytest.raises(IdxFormatError, match=rf"short' has {len(content)} bytes, fewer than"):
        read_idx(path)


def test_header_cut_short(tmp_path):
    path = tmp_path / "cut"
    path.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">I", 10))
    with pytest.raises(IdxFormatError, match=r"cut' declares 3 dimensions but its header is cut"):
        read_idx(path)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_truncated_payload(tmp_path, suffix):
    full = _hand_idx(np.zeros((3, 28, 28), dtype=np.uint8), 0x08)
    path = tmp_path / f"images{suffix}"
    cut = full[:-100]
    path.write_bytes(gzip.compress(cut) if suffix else cut)
    with pytest.raises(
        IdxFormatError,
        match=r"declares shape \(3, 28, 28\) \(2352 payload bytes\) but holds 2252 payload "
        r"bytes; the file is truncated",
    ):
        read_idx(path, magic=0x803)


def test_payload_longer_than_header(tmp_path):
    path = tmp_path / "long"
    path.write_bytes(_hand_idx(np.zeros(4, dtype=np.uint8), 0x08) + b"\x00")
    with pytest.raises(IdxFormatError, match=r"holds 5 payload bytes; the file is longer than"):
        read_idx(path)


def test_truncated_gzip_stream(tmp_path):
    path = tmp_path / "images.gz"
    blob = gzip.compress(_hand_idx(np.arange(1000, dtype=np.int32), 0x0C))
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(IdxFormatError, match=r"images.gz' is gzip-compressed but cannot be"):
        read_idx(path)


def test_write_rejects_bad_dtype(tmp_path):
    with pytest.raises(TypeError, match=r"'array' parameter of write_idx must have dtype uint8"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))


def test_write_rejects_scalars(tmp_path):
    with pytest.raises(ValueError, match=r"must have 1 to 255 dimensions, got 0"):
        write_idx(tmp_path / "x", np.uint8(3))
