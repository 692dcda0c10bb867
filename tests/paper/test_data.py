import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from sgdscope.paper import data as data_mod
from sgdscope.paper.data import EMBEDDED_SIZES, MnistData, Scale, Split, mnist, mnist_for
from sgdscope.paper.idx import IdxFormatError, write_idx

SHARED = Path("/work/shared/data/mnist")
EMBEDDED = Path(data_mod.__file__).parent / "_embedded" / "mnist_subset.npz"
EMBEDDED_SHA256 = "ef77e95e0479f0d9a1baf06a1baacb056f6d6679e69d9584b5c63ecbad8dacce"


def _fake_mnist(folder: Path, n: int = 60, prefix: str = "train", gz: bool = True, seed: int = 0):
    """Write a small MNIST-format pair of IDX files; return (images, labels)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) * 7 % 10).astype(np.uint8)
    rng.shuffle(labels)
    ext = ".gz" if gz else ""
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", labels)
    return images, labels


# --- the embedded subset --------------------------------------------------------------------


def test_embedded_file_is_the_documented_one():
    assert hashlib.sha256(EMBEDDED.read_bytes()).hexdigest() == EMBEDDED_SHA256
    assert EMBEDDED.stat().st_size < 6 * 2**20


@pytest.mark.parametrize(("split", "per_class", "rows"), [("train", 1000, 60_000),
                                                          ("test", 200, 10_000)])  # fmt: skip
def test_embedded_subset_sizes_and_balance(split, per_class, rows):
    d = mnist(split=split)
    assert len(d) == EMBEDDED_SIZES[split] == 10 * per_class
    assert d.class_counts() == [per_class] * 10
    assert d.source == "embedded" and d.split is Split(split)
    assert d.images.dtype == torch.uint8 and d.images.shape == (len(d), 28, 28)
    assert d.labels.dtype == torch.int64
    idx = d.index.numpy()
    assert np.all(np.diff(idx) > 0) and idx[0] >= 0 and idx[-1] < rows  # distinct, file order
    # real digits, not noise: mean pixel of MNIST is about 33, with a dark border
    assert 25 < d.images.float().mean() < 40
    assert d.images[:, 0, :].float().mean() < 1


@pytest.mark.skipif(not SHARED.is_dir(), reason="full MNIST not available here")
@pytest.mark.parametrize("split", ["train", "test"])
def test_embedded_rows_equal_the_original_files(split):
    full = mnist(SHARED, split)
    sub = mnist(split=split)
    assert torch.equal(full.images[sub.index], sub.images)
    assert torch.equal(full.labels[sub.index], sub.labels)


# --- reading IDX files ----------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("split", ["train", "test"])
def test_reads_idx_files_round_trip(tmp_path, gz, split):
    prefix = "train" if split == "train" else "t10k"
    images, labels = _fake_mnist(tmp_path, prefix=prefix, gz=gz)
    d = mnist(tmp_path, split, scale="raw")
    assert d.source.endswith(f"{prefix}-images-idx3-ubyte" + (".gz" if gz else ""))
    np.testing.assert_array_equal(d.images.numpy(), images)
    np.testing.assert_array_equal(d.labels.numpy(), labels)
    np.testing.assert_array_equal(d.index.numpy(), np.arange(len(labels)))
    x, y = d.tensors()
    assert x.shape == (60, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    np.testing.assert_array_equal(x[:, 0].numpy(), images.astype(np.float32))


def test_torchvision_layout_is_found(tmp_path):
    images, _ = _fake_mnist(tmp_path / "MNIST" / "raw", gz=False)
    np.testing.assert_array_equal(mnist(tmp_path).images.numpy(), images)


def test_str_path_and_enum_arguments(tmp_path):
    images, _ = _fake_mnist(tmp_path)
    d = mnist(str(tmp_path), Split.TRAIN, scale=Scale.UNIT)
    np.testing.assert_array_equal(d.images.numpy(), images)


# --- scaling, size, classes, n --------------------------------------------------------------


def test_scales(tmp_path):
    images, _ = _fake_mnist(tmp_path)
    pix = torch.from_numpy(images).float().unsqueeze(1)
    raw = mnist(tmp_path, scale="raw").tensors()[0]
    torch.testing.assert_close(raw, pix, rtol=0, atol=0)
    torch.testing.assert_close(mnist(tmp_path, scale="paper").tensors()[0], pix, rtol=0, atol=0)
    torch.testing.assert_close(mnist(tmp_path).tensors()[0], pix / 255)
    std = mnist(tmp_path, scale="standard").tensors()[0]
    torch.testing.assert_close(std, (pix / 255 - 0.1307) / 0.3081)
    assert Scale.PAPER is Scale.RAW
    assert mnist(tmp_path, scale="paper").scale is Scale.RAW


def test_unit_scale_of_the_embedded_set_is_in_0_1():
    x, _ = mnist(split="test").tensors()
    assert x.min() == 0 and x.max() == 1


@pytest.mark.parametrize("size", [7, 14, 4])
def test_down_sampling_is_the_block_mean(tmp_path, size):
    images, _ = _fake_mnist(tmp_path)
    k = 28 // size
    expected = images.astype(np.float64).reshape(-1, size, k, size, k).mean(axis=(2, 4))
    x, _ = mnist(tmp_path, scale="raw", size=size).tensors(dtype=torch.float64)
    assert x.shape == (60, 1, size, size)
    np.testing.assert_allclose(x[:, 0].numpy(), expected, rtol=1e-12)


def test_classes_keep_and_remap(tmp_path):
    images, labels = _fake_mnist(tmp_path)
    d = mnist(tmp_path, classes=(7, 2))
    keep = np.flatnonzero((labels == 7) | (labels == 2))
    np.testing.assert_array_equal(d.index.numpy(), keep)
    np.testing.assert_array_equal(d.labels.numpy(), np.where(labels[keep] == 7, 0, 1))
    np.testing.assert_array_equal(d.images.numpy(), images[keep])
    assert d.classes == (7, 2) and d.num_classes == 2
    assert mnist(tmp_path, classes=range(5)).labels.max() == 4


def _first_n_oracle(labels: np.ndarray, n: int, k: int) -> np.ndarray:
    taken, rows = [0] * k, []
    quota = [n // k + (c < n % k) for c in range(k)]
    for i, c in enumerate(labels):
        if c < k and taken[c] < quota[c]:
            taken[c] += 1
            rows.append(i)
    return np.array(rows)


@pytest.mark.parametrize("n", [1, 10, 23, 40])
def test_class_balanced_first_n(tmp_path, n):
    _, labels = _fake_mnist(tmp_path)
    d = mnist(tmp_path, n=n)
    assert len(d) == n
    np.testing.assert_array_equal(d.index.numpy(), _first_n_oracle(labels, n, 10))
    counts = d.class_counts()
    assert max(counts) - min(counts) <= 1


def test_paper_trajectory_subset_on_the_embedded_data():
    d = mnist(n=2048, size=7, classes=range(4), scale="paper")  # the Oct-12 trajectory run: 4 x 512
    x, y = d.tensors()
    assert x.shape == (2048, 1, 7, 7) and d.class_counts() == [512] * 4
    assert y.unique().tolist() == [0, 1, 2, 3]


# --- Dataset behaviour ----------------------------------------------------------------------


def test_dataset_protocol_matches_tensors():
    d = mnist(split="test", n=50, size=7)
    assert isinstance(d, Dataset) and len(d) == 50
    x, y = d.tensors()
    for i in (0, 17, 49):
        xi, yi = d[i]
        assert xi.shape == (1, 7, 7)
        torch.testing.assert_close(xi, x[i])
        assert yi == y[i] and yi.dtype == torch.int64
    xb, yb = next(iter(DataLoader(d, batch_size=50, shuffle=False)))
    torch.testing.assert_close(xb, x)
    assert torch.equal(yb, y)


def test_tensors_dtype_and_device():
    x, y = mnist(split="test", n=10).tensors(dtype=torch.float64, device="cpu")
    assert x.dtype == torch.float64 and y.device.type == "cpu"


def test_result_is_frozen():
    d = mnist(split="test", n=10)
    with pytest.raises(AttributeError):
        d.size = 7


# --- bad files ------------------------------------------------------------------------------


def test_missing_file_lists_what_was_looked_for(tmp_path):
    with pytest.raises(
        FileNotFoundError,
        match=r"MNIST test file t10k-images-idx3-ubyte\[\.gz\] not found: looked for "
        r"t10k-images-idx3-ubyte\.gz, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte\.gz, "
        r"t10k-labels-idx1-ubyte in .*MNIST/raw\. Put the standard MNIST IDX files .* or pass "
        r"data_dir=None",
    ):
        mnist(tmp_path, "test")


def test_missing_label_file(tmp_path):
    _fake_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"train-labels-idx1-ubyte\[\.gz\] not found"):
        mnist(tmp_path)


def test_missing_data_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'data_dir' parameter .* existing folder, got"):
        mnist(tmp_path / "nowhere")


def test_swapped_files_give_a_wrong_magic_number(tmp_path):
    _fake_mnist(tmp_path, gz=False)
    imgs = tmp_path / "train-images-idx3-ubyte"
    labs = tmp_path / "train-labels-idx1-ubyte"
    a, b = imgs.read_bytes(), labs.read_bytes()
    imgs.write_bytes(b)
    labs.write_bytes(a)
    with pytest.raises(
        IdxFormatError, match=r"train-images-idx3-ubyte' has magic number 0x00000801, expected "
        r"0x00000803"
    ):  # fmt: skip
        mnist(tmp_path)


def test_truncated_image_file(tmp_path):
    _fake_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-784]))
    with pytest.raises(
        IdxFormatError, match=r"train-images-idx3-ubyte.gz' .* the file is truncated"
    ):
        mnist(tmp_path)


def test_count_mismatch(tmp_path):
    _fake_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(59, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"holds 60 images but label file .* holds 59 labels"):
        mnist(tmp_path)


def test_empty_data_set(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((0, 28, 28), dtype=np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(0, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte' holds 0 images: the data set"):
        mnist(tmp_path)


def test_no_image_of_the_selected_classes(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 28, 28), dtype=np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([1, 2, 3], dtype=np.uint8))
    with pytest.raises(ValueError, match=r"holds no image of the digits \(5,\): the selected"):
        mnist(tmp_path, classes=[5])


def test_wrong_image_size(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 32, 32), dtype=np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(3, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"holds images of 32 x 32 pixels, expected 28 x 28"):
        mnist(tmp_path)


def test_label_out_of_range(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 28, 28), dtype=np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([1, 12, 3], dtype=np.uint8))
    with pytest.raises(ValueError, match=r"has label 12 at row 1; MNIST labels are digits 0-9"):
        mnist(tmp_path)


# --- bad arguments --------------------------------------------------------------------------


def test_n_too_large_for_a_balanced_subset():
    with pytest.raises(ValueError, match=r"'n' parameter .* asks for 1001 samples of class 0, but "
                       r"the embedded MNIST subset \(train\) holds only 1000; .* at most "
                       r"n = 10000"):  # fmt: skip
        mnist(n=10_010)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"split": "val"}, r"'split' parameter of sgdscope.paper.data.mnist must be one of "
                           r"'train', 'test', got 'val'"),
        ({"scale": "zscore"}, r"'scale' parameter .* must be one of 'unit', 'raw', 'paper', "
                              r"'standard', got 'zscore'"),
        ({"size": 5}, r"'size' parameter .* must divide 28 \(one of \(1, 2, 4, 7, 14, 28\)\), "
                      r"got 5"),
        ({"size": 56}, r"'size' parameter .* must be an int in \[1, 28\], got 56"),
        ({"n": 0}, r"'n' parameter .* must be an int in \[1, inf\], got 0. Use n=None"),
        ({"classes": [1, 1]}, r"'classes' parameter .* distinct digits in \[0, 9\]"),
        ({"classes": [10]}, r"'classes' parameter .* got \[10\]"),
        ({"classes": []}, r"'classes' parameter .* got \[\]"),
        ({"classes": ["3"]}, r"'classes' parameter"),
    ],
)  # fmt: skip
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mnist(**kwargs)


def test_single_digit_class_is_accepted():
    assert mnist(split="test", classes=3).class_counts() == [200]


def test_mnistdata_checks_its_fields():
    z = torch.zeros(2, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"images must be a uint8 tensor N x 28 x 28, got "
                       r"torch.float32 \(2, 28, 28\)"):  # fmt: skip
        MnistData(torch.zeros(2, 28, 28), z, z, (0,), Split.TRAIN, Scale.RAW, 28, "x")
    with pytest.raises(ValueError, match=r"labels and .index must have shape \(2,\), got \(3,\)"):
        MnistData(
            torch.zeros(2, 28, 28, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64), z,
            (0,), Split.TRAIN, Scale.RAW, 28, "x",
        )  # fmt: skip


# --- data for each of the paper's networks --------------------------------------------------


@pytest.mark.parametrize(
    ("model", "size", "classes"),
    [("small-lenet", 28, tuple(range(10))), ("small-fc", 7, (0, 1)), ("tiny-fc", 7, (0, 1, 2, 3, 4))],
)  # fmt: skip
def test_mnist_for_follows_the_paper(model, size, classes):
    from sgdscope.paper.models import build, input_shape

    d = mnist_for(model, split="test", n=20)
    x, y = d.tensors()
    assert tuple(x.shape[1:]) == input_shape(model) == (1, size, size)
    assert d.classes == classes and d.scale is Scale.RAW
    out = build(model, seed=0).eval()(x)
    assert out.shape[0] == 20 and int(y.max()) < out.shape[1]
    expected = mnist(split="test", n=20, size=size, classes=classes, scale="raw").tensors()[0]
    torch.testing.assert_close(x, expected, rtol=0, atol=0)


def test_mnist_for_refuses_the_cifar_network():
    with pytest.raises(ValueError, match=r"'model' parameter .* must be an MNIST network .* got "
                       r"'small-allcnn': it reads CIFAR.*sgdscope.paper.cifar.cifar"):  # fmt: skip
        mnist_for("small-allcnn")
    with pytest.raises(
        ValueError,
        match=r"'model' parameter of sgdscope.paper.data.mnist_for must be one of 'small-lenet'",
    ):
        mnist_for("lenet")
