"""Data readers refuse amplified inputs before allocating (D7), name the file for every corrupt
gzip stream (D8) and check CIFAR labels fully (D9)."""

import gzip
import io
import pickle
import struct
import tarfile
import tracemalloc

import numpy as np
import pytest

from sgdscope.paper import cifar as C
from sgdscope.paper import data, idx
from sgdscope.paper.idx import IdxFormatError


# ---------------------------------------------------------------------------------- D7 (a), D8
def test_a_gzip_bomb_is_refused_after_reading_only_what_the_header_allows(tmp_path):
    """64 MiB of zeros behind a header of 3 images: refused having inflated ~2.4 kB, not 64 MiB."""
    f = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(f, "wb") as fh:
        fh.write(b"\x00\x00\x08\x03" + struct.pack(">III", 3, 28, 28))
        for _ in range(64):
            fh.write(bytes(1 << 20))
    assert f.stat().st_size < 200_000
    tracemalloc.start()
    try:
        with pytest.raises(IdxFormatError, match=r"longer than its header says"):
            idx.read_idx(f)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, peak  # the whole stream would be 64 MiB


def test_a_plain_file_is_read_only_as_far_as_its_header_allows(tmp_path):
    f = tmp_path / "x-idx1-ubyte"
    f.write_bytes(b"\x00\x00\x08\x01" + struct.pack(">I", 5) + bytes(5) + bytes(1 << 20))
    with pytest.raises(IdxFormatError, match=r"holds 6 payload bytes; the file is longer"):
        idx.read_idx(f)


def _compressible_mnist(folder):
    images = ((np.arange(50 * 784) % 7 == 0) * 255).astype(np.uint8).reshape(50, 28, 28)
    idx.write_idx(folder / "train-images-idx3-ubyte.gz", images)
    idx.write_idx(folder / "train-labels-idx1-ubyte.gz", (np.arange(50) % 10).astype(np.uint8))
    return folder / "train-images-idx3-ubyte.gz"


def test_a_corrupt_deflate_block_names_the_file(tmp_path):
    f = _compressible_mnist(tmp_path)
    b = bytearray(f.read_bytes())
    b[20] ^= 0xFF  # raised a raw zlib.error ('invalid distance too far back') before
    f.write_bytes(bytes(b))
    with pytest.raises(IdxFormatError, match=r"train-images-idx3-ubyte\.gz' is gzip-compressed"):
        data.mnist(tmp_path)


def test_random_corruptions_always_give_an_error_naming_the_file(tmp_path):
    f = _compressible_mnist(tmp_path)
    good = f.read_bytes()
    want = idx.read_idx(f)
    rng = np.random.default_rng(0)
    errors = 0
    for _ in range(150):
        b = bytearray(good)
        for pos in rng.integers(10, len(b) - 8, size=rng.integers(1, 4)):
            b[pos] ^= int(rng.integers(1, 256))
        f.write_bytes(bytes(b))
        try:
            got = idx.read_idx(f)
        except IdxFormatError as err:
            assert "train-images-idx3-ubyte.gz" in str(err)
            errors += 1
        else:  # only if the corruption left the content intact (the CRC passed)
            np.testing.assert_array_equal(got, want)
    assert errors > 100


def test_multi_member_gzip_is_read(tmp_path):
    f = tmp_path / "m-idx1-ubyte.gz"
    f.write_bytes(
        gzip.compress(b"\x00\x00\x08\x01" + struct.pack(">I", 4))
        + gzip.compress(bytes([1, 2, 3, 4]))
    )
    assert idx.read_idx(f).tolist() == [1, 2, 3, 4]


# -------------------------------------------------------------------------------- D7 (b), (c)
def test_a_tar_member_larger_than_any_official_batch_is_refused_unread(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()
    tarinfo = tarfile.TarInfo("cifar-10-batches-bin/test_batch.bin")
    tarinfo.size = 10_000 * 3073 + 3073  # one record more than the official test batch

    class Zeros(io.RawIOBase):
        def __init__(self, n):
            self.left = n

        def readable(self):
            return True

        def readinto(self, buf):
            k = min(len(buf), self.left)
            buf[:k] = bytes(k)
            self.left -= k
            return k

    with tarfile.open(folder / "cifar-10-binary.tar.gz", "w:gz") as tar:
        tar.addfile(tarinfo, io.BufferedReader(Zeros(tarinfo.size)))
    tracemalloc.start()
    try:
        with pytest.raises(C.CifarFormatError, match=r"30,733,073 bytes, more than the 30,730,000"):
            C.cifar(folder, "test")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, peak


def test_an_ndarray_pickle_that_sizes_itself_is_refused(tmp_path):
    """83 bytes asking numpy.ndarray((262144, 3072), 'u1') were accepted as 262,144 images."""
    py = tmp_path / "cifar-10-batches-py"
    py.mkdir()
    body = (
        b"\x80\x02}(C\x04datacnumpy\nndarray\nJ\x00\x00\x04\x00M\x00\x0c\x86X\x02\x00\x00\x00u1\x86R"
        b"C\x06labelscnumpy\nndarray\nJ\x00\x00\x04\x00\x85X\x02\x00\x00\x00i8\x86Ru."
    )
    (py / "test_batch").write_bytes(body)
    with pytest.raises(C.CifarFormatError, match="test_batch"):
        C.cifar(tmp_path, "test")


@pytest.mark.parametrize("protocol", [2, 3, 4])
def test_real_numpy_pickles_still_load(tmp_path, protocol):
    py = tmp_path / "cifar-10-batches-py"
    py.mkdir()
    pixels = np.arange(4 * 3072, dtype=np.uint8).reshape(4, 3072)
    (py / "test_batch").write_bytes(
        pickle.dumps({b"data": pixels, b"labels": [3, 1, 4, 1]}, protocol=protocol)
    )
    d = C.cifar(tmp_path, "test")
    assert d.labels.tolist() == [3, 1, 4, 1]
    np.testing.assert_array_equal(d.images.reshape(4, -1).numpy(), pixels)


# ------------------------------------------------------------------------------------------ D9
def _batch(tmp_path, labels, classes=10, coarse=None):
    pixels = np.zeros((4, 3072), np.uint8)
    if classes == 10:
        folder = tmp_path / "cifar-10-batches-py"
        d = {b"data": pixels, b"labels": labels}
        name = "test_batch"
    else:
        folder = tmp_path / "cifar-100-python"
        d = {b"data": pixels, b"fine_labels": labels, b"coarse_labels": coarse}
        name = "test"
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(pickle.dumps(d, protocol=2))


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        ([0.0, 1.7, 2.2, 3.9], r"must hold whole numbers .* float64"),
        ([b"cat"] * 4, r"must hold whole numbers"),
        ([0, 1, float("nan"), 3], r"must hold whole numbers"),
        ([0, 1, 2**64 + 1, 3], r"must hold whole numbers"),
        (None, r"holds 4 images but 1 labels"),
        ({0: 1}, r"holds 4 images but 1 labels"),
        ([[0], [1], [2], [3]], r"holds 4 images but 4 labels \(b'labels' has shape \(4, 1\)"),
        (["1", "2", "3", "4"], r"must hold whole numbers"),
    ],
)
def test_cifar10_labels_that_are_not_class_indices_name_the_batch(tmp_path, labels, match):
    _batch(tmp_path, labels)
    with pytest.raises(C.CifarFormatError, match=match) as info:
        C.cifar(tmp_path, "test")
    assert "test_batch" in str(info.value)


@pytest.mark.parametrize(
    ("coarse", "match"),
    [
        ([57, 1, 2, 3], r"coarse label 57 at row 0, outside \[0, 19\]"),
        ([1, -3, 2, 3], r"coarse label -3 at row 1"),
        ([1, 2], r"holds 4 images but 2 labels \(b'coarse_labels'"),
        ([b"x"] * 4, r"b'coarse_labels' must hold whole numbers"),
    ],
)
def test_cifar100_coarse_labels_are_checked(tmp_path, coarse, match):
    _batch(tmp_path, [1, 2, 3, 4], classes=100, coarse=coarse)
    with pytest.raises(C.CifarFormatError, match=match):
        C.cifar(tmp_path, "test", classes=100)


def test_cifar100_binary_coarse_label_out_of_range(tmp_path):
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    rec = np.zeros((2, 3074), np.uint8)
    rec[:, 1] = 5
    rec[1, 0] = 200
    (folder / "test.bin").write_bytes(rec.tobytes())
    with pytest.raises(C.CifarFormatError, match=r"coarse label 200 at row 1"):
        C.cifar(tmp_path, "test", classes=100)


def test_cifar_data_checks_the_coarse_labels_shape():
    import torch

    with pytest.raises(ValueError, match=r"coarse_labels must have shape \(2,\)"):
        C.CifarData(
            images=torch.zeros(2, 3, 32, 32, dtype=torch.uint8),
            labels=torch.zeros(2, dtype=torch.int64),
            coarse_labels=torch.zeros(1, dtype=torch.int64),
            index=torch.arange(2),
            num_classes=100,
            split=C.Split.TEST,
            source="x",
        )
