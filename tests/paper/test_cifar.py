"""Tests of sgdscope.paper.cifar against archives built here in the official formats."""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import struct
import tarfile
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch

from sgdscope.paper import cifar as C

REAL = Path("/work/shared/data/cifar10/cifar-10-binary.tar.gz")


def _fake(n: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, C.PIXELS), dtype=np.uint8)
    fine = rng.integers(0, classes, n).astype(np.int64)
    coarse = rng.integers(0, 20, n).astype(np.int64)
    return data, fine, coarse


def _binary(data: np.ndarray, fine: np.ndarray, coarse: np.ndarray, classes: int) -> bytes:
    head = [fine[:, None]] if classes == 10 else [coarse[:, None], fine[:, None]]
    return np.concatenate([*(h.astype(np.uint8) for h in head), data], axis=1).tobytes()


def _python(data: np.ndarray, fine: np.ndarray, coarse: np.ndarray, classes: int) -> bytes:
    d = {b"batch_label": b"x", b"data": data, b"filenames": [b"a.png"] * len(fine)}
    if classes == 10:
        d[b"labels"] = fine.tolist()
    else:
        d[b"fine_labels"], d[b"coarse_labels"] = fine.tolist(), coarse.tolist()
    return _dumps_py2(d)


class _Py2Pickler(pickle._Pickler):
    """Writes what Python 2's cPickle wrote for the official files: protocol 2, str as BINSTRING."""

    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)

    def _save_str(self, obj):
        b = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(b) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(b)]) + b)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(b)) + b)
        self.memoize(obj)

    dispatch[bytes] = _save_str
    dispatch[str] = _save_str


def _dumps_py2(obj) -> bytes:
    f = io.BytesIO()
    _Py2Pickler(f, protocol=2).dump(obj)
    # numpy 1.x / Python 2 spelled the module numpy.core.multiarray
    return f.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def test_py2_pickles_need_only_numpy_globals():
    raw = _python(*_fake(2, 10, 0), 10)
    globs = {a for op, a, _ in pickletools.genops(raw) if op.name == "GLOBAL"}
    assert globs == {"numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}
    # a protocol-2 pickle re-saved by Python 3 also needs _codecs.encode, which is allowed
    data = _fake(2, 10, 1)[0]
    d = C.RestrictedUnpickler(
        io.BytesIO(pickle.dumps({b"data": data}, protocol=2)), encoding="bytes"
    ).load()
    np.testing.assert_array_equal(d[b"data"], data)


def _members(classes: int, binary: bool, split: str) -> list[str]:
    layout = C._LAYOUT[classes]
    names = layout[4] if split == "train" else layout[5]
    return [m + ".bin" if binary else m for m in names]


def _build(tmp: Path, classes: int, binary: bool, archive: bool, per: int = 7):
    """Write a small data set in the official layout; return (path, {split: arrays})."""
    bin_dir, bin_tar, py_dir, py_tar, _, _ = C._LAYOUT[classes]
    folder, tar_name = (bin_dir, bin_tar) if binary else (py_dir, py_tar)
    files, truth = {}, {}
    for s, split in enumerate(("train", "test")):
        parts = []
        for k, m in enumerate(_members(classes, binary, split)):
            arrays = _fake(per, classes, seed=100 * s + k)
            parts.append(arrays)
            files[m] = (_binary if binary else _python)(*arrays, classes)
        truth[split] = [np.concatenate([p[i] for p in parts]) for i in range(3)]
    if archive:
        path = tmp / tar_name
        with tarfile.open(path, "w:gz") as tar:
            for m, raw in files.items():
                info = tarfile.TarInfo(f"{folder}/{m}")
                info.size = len(raw)
                tar.addfile(info, io.BytesIO(raw))
    else:
        path = tmp / folder
        path.mkdir()
        for m, raw in files.items():
            (path / m).write_bytes(raw)
    return path, truth


@pytest.mark.parametrize("classes", [10, 100])
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "python"])
@pytest.mark.parametrize("archive", [True, False], ids=["tar", "folder"])
def test_reader_returns_the_arrays_written(tmp_path, classes, binary, archive):
    path, truth = _build(tmp_path, classes, binary, archive)
    for split in ("train", "test"):
        data, fine, coarse = truth[split]
        for where in (tmp_path, path):  # the parent folder, or the archive / folder itself
            d = C.cifar(where, split, classes=classes)
            assert d.images.shape == (len(fine), 3, 32, 32) and d.images.dtype == torch.uint8
            np.testing.assert_array_equal(d.images.numpy().reshape(-1, C.PIXELS), data)
            np.testing.assert_array_equal(d.labels.numpy(), fine)
            if classes == 100:
                np.testing.assert_array_equal(d.coarse_labels.numpy(), coarse)
            else:
                assert d.coarse_labels is None
            assert d.source == os.fspath(path) and d.num_classes == classes
    # pixel layout: red plane first, row-major
    d = C.cifar(path, "test", classes=classes)
    np.testing.assert_array_equal(d.images[0, 0].numpy().ravel(), truth["test"][0][0, :1024])
    np.testing.assert_array_equal(d.images[0, 2, 31].numpy(), truth["test"][0][0, -32:])


def test_dataset_protocol_tensors_and_n(tmp_path):
    path, truth = _build(tmp_path, 10, True, True)
    d = C.cifar(path, n=10)
    assert len(d) == 10 and d.index.tolist() == list(range(10))
    x, y = d.tensors(torch.float64)
    assert x.shape == (10, 3, 32, 32) and x.dtype == torch.float64 and y.dtype == torch.int64
    np.testing.assert_allclose(x.numpy().reshape(10, -1), truth["train"][0][:10] / 255.0)
    xi, yi = d[3]
    assert torch.equal(xi, x[3].float()) and int(yi) == truth["train"][1][3]
    assert sum(d.class_counts()) == 10
    assert d.class_counts() == np.bincount(truth["train"][1][:10], minlength=10).tolist()


def test_binary_preferred_when_both_versions_present(tmp_path):
    _build(tmp_path, 10, False, True)
    path, _ = _build(tmp_path, 10, True, False)
    assert C.cifar(tmp_path, "test").source == os.fspath(path)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    good = _python(*_fake(3, 10, 0), 10)
    for m in _members(10, False, "train"):
        (folder / m).write_bytes(good)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": _Evil(marker)}, protocol=2))
    with pytest.raises(C.CifarFormatError, match=r"test_batch.*refusing to unpickle.*system"):
        C.cifar(tmp_path, "test")
    assert not marker.exists()
    with pytest.raises(C.CifarFormatError, match=r"builtins\.eval"):
        C.RestrictedUnpickler(io.BytesIO(pickle.dumps(eval)), encoding="bytes").load()


def test_missing_data_names_files_and_where(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cifar-10-binary\.tar\.gz.*cifar-10-batches-py"):
        C.cifar(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"cifar-100-python\.tar\.gz.*nothing is down"):
        C.cifar(tmp_path / "nowhere", classes=100)
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match=r"lacks train\.bin"):
        C.cifar(tmp_path, classes=100)


def test_corrupt_and_truncated_archives(tmp_path):
    path, _ = _build(tmp_path, 10, True, True)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(C.CifarFormatError, match=r"cifar-10-binary\.tar\.gz.*truncated or corrupt"):
        C.cifar(path)
    path.write_bytes(b"not a tar file at all" * 10)
    with pytest.raises(C.CifarFormatError, match="truncated or corrupt"):
        C.cifar(path)
    with tarfile.open(path, "w:gz") as tar:  # a valid tar without the members
        info = tarfile.TarInfo("other/file")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(C.CifarFormatError, match=r"no member cifar-10-batches-bin/data_batch_1"):
        C.cifar(path)
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-bin/test_batch.bin")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    with pytest.raises(C.CifarFormatError, match="not a regular file"):
        C.cifar(path, "test")


def test_bad_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    (folder / "test_batch.bin").write_bytes(b"\x00" * (C.PIXELS + 1) + b"\x01")
    with pytest.raises(C.CifarFormatError, match=r"test_batch\.bin has 3074 bytes.*truncated"):
        C.cifar(folder, "test")
    (folder / "test_batch.bin").write_bytes(b"\x0c" + b"\x00" * C.PIXELS)
    with pytest.raises(C.CifarFormatError, match=r"label 12 at row 0, outside \[0, 9\]"):
        C.cifar(folder, "test")
    py = tmp_path / "cifar-100-python"
    py.mkdir()
    data, fine, coarse = _fake(2, 100, 0)
    cases = {
        pickle.dumps([1, 2], protocol=2): "holds a list",
        pickle.dumps({b"data": data, b"labels": [0, 1]}, protocol=2): "keys.*fine_labels",
        pickle.dumps(
            {b"data": data[:, :5], b"fine_labels": [0, 1], b"coarse_labels": [0, 0]}, protocol=2
        ): r"expected uint8 N x 3072",
        pickle.dumps(
            {b"data": data, b"fine_labels": [0], b"coarse_labels": [0, 0]}, protocol=2
        ): "holds 2 images but 1 labels",
        _python(data, fine, coarse, 100)[:-20]: "truncated or corrupt",
    }
    for raw, match in cases.items():
        (py / "test").write_bytes(raw)
        with pytest.raises(C.CifarFormatError, match=match):
            C.cifar(tmp_path, "test", classes=100)


def test_argument_errors(tmp_path):
    path, _ = _build(tmp_path, 10, True, False, per=2)
    with pytest.raises(ValueError, match=r"'classes' parameter of .*cifar must be 10 .* got 20"):
        C.cifar(path, classes=20)
    with pytest.raises(ValueError, match=r"'split' parameter .* got 'val'"):
        C.cifar(path, "val")
    with pytest.raises(ValueError, match=r"'n' parameter .* int in \[1, inf\], got 0"):
        C.cifar(path, n=0)
    with pytest.raises(ValueError, match=r"'n' parameter .* at most 10 .* got 11"):
        C.cifar(path, n=11)
    with pytest.raises(ValueError, match=r"CifarData.images must be a uint8"):
        C.CifarData(torch.zeros(1, 3, 32, 31), torch.zeros(1), None, torch.zeros(1), 10, "t", "")
    img = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"labels and .index must have shape \(2,\)"):
        C.CifarData(img, torch.zeros(1), None, torch.zeros(2), 10, "t", "")
    with pytest.raises(ValueError, match=r"'epsilon' parameter of fit_zca"):
        C.fit_zca(torch.zeros(4, 3), epsilon=-1.0)
    with pytest.raises(ValueError, match="at least 2 images, got 1"):
        C.fit_zca(torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"'scale' parameter of global_contrast_normalize"):
        C.global_contrast_normalize(torch.zeros(1, 3), scale=0.0)
    with pytest.raises(ValueError, match=r"'n' parameter of augmentation_params .* got 0"):
        C.augmentation_params(0)
    with pytest.raises(ValueError, match=r"'pad' parameter of augmentation_params"):
        C.augmentation_params(3, pad=-1)
    with pytest.raises(ValueError, match=r"'seed' parameter of augment"):
        C.augment(torch.zeros(2, 3, 8, 8), seed=1.5)
    with pytest.raises(ValueError, match=r"N = 3 .* got shape \(2, 3, 8, 8\)"):
        C.apply_augmentation(torch.zeros(2, 3, 8, 8), C.augmentation_params(3))


# --------------------------------------------------------------------------- preprocessing


def test_gcn_mean_zero_and_norm_scale():
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x[5] = 0.7  # a constant image is only centred
    g = C.global_contrast_normalize(x)
    flat = g.reshape(6, -1)
    np.testing.assert_allclose(flat.mean(1).numpy(), 0.0, atol=1e-12)
    np.testing.assert_allclose(flat[:5].norm(dim=1).numpy(), C.GCN_SCALE, rtol=1e-12)
    assert flat[5].abs().max() < 1e-12
    # oracle: numpy formula, and invariance to affine changes of contrast
    ref = x[:5].reshape(5, -1).numpy()
    ref = ref - ref.mean(1, keepdims=True)
    ref = 55.0 * ref / np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(flat[:5].numpy(), ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(C.global_contrast_normalize(3 * x[:5] + 2), g[:5])
    assert C.global_contrast_normalize(torch.ones(2, 3, dtype=torch.uint8)).dtype == torch.float32


@pytest.mark.parametrize("n", [40, 200])  # SVD path (N < d) and eigh path (N >= d)
def test_zca_whitens_retained_components(n):
    gen = torch.Generator().manual_seed(1)
    d = 3 * 6 * 6 if n > 108 else 3 * 8 * 8
    side = 6 if d == 108 else 8
    mix = torch.randn(d, d, generator=gen, dtype=torch.float64)
    x = (torch.randn(n, d, generator=gen, dtype=torch.float64) @ mix).reshape(n, 3, side, side)
    flat = x.reshape(n, -1).numpy()
    xc = flat - flat.mean(0)
    lam, u = np.linalg.eigh(xc.T @ xc / n)  # independent oracle
    keep = lam > 1e-10 * lam.max()
    r = int(keep.sum())
    assert r == min(n - 1, d)
    # epsilon = 0: covariance of whitened training data is the projector on the retained span
    z = C.fit_zca(x, epsilon=0.0)
    assert z.components.shape == (d, r)
    w = z.apply(x).reshape(n, -1).numpy()
    cov = (w - w.mean(0)).T @ (w - w.mean(0)) / n
    proj = u[:, keep] @ u[:, keep].T
    np.testing.assert_allclose(cov, proj, atol=1e-8)
    np.testing.assert_allclose(np.linalg.eigvalsh(cov)[-r:], 1.0, atol=1e-8)
    np.testing.assert_allclose(np.sort(z.eigenvalues.numpy()), lam[keep], rtol=1e-8)
    # epsilon > 0: closed form U diag(lam / (lam + eps)) U^T, and ZCA is symmetric (W = W^T)
    z = C.fit_zca(x, epsilon=0.5)
    w = z.apply(x).reshape(n, -1).numpy()
    cov = (w - w.mean(0)).T @ (w - w.mean(0)) / n
    uk, lk = u[:, keep], lam[keep]
    np.testing.assert_allclose(cov, (uk * (lk / (lk + 0.5))) @ uk.T, atol=1e-8)
    wmat = (uk / np.sqrt(lk + 0.5)) @ uk.T
    np.testing.assert_allclose(w, xc @ wmat, atol=1e-8)
    assert z.apply(x.float()).dtype == torch.float32


def test_paper_inputs_fit_on_train_apply_to_test(tmp_path):
    _build(tmp_path, 10, True, True, per=8)
    train, test = C.cifar(tmp_path), C.cifar(tmp_path, "test")
    (xtr, ytr), (xte, yte) = C.paper_inputs(train, test, dtype=torch.float64)
    assert xtr.shape == (40, 3, 32, 32) and xte.shape == (8, 3, 32, 32)
    assert torch.equal(ytr, train.labels) and torch.equal(yte, test.labels)
    zca = C.fit_zca(C.global_contrast_normalize(train.images.double()))
    torch.testing.assert_close(xte, zca.apply(C.global_contrast_normalize(test.images.double())))
    w = xtr.reshape(40, -1)
    cov = (w - w.mean(0)).T @ (w - w.mean(0)) / 40
    ev = torch.linalg.eigvalsh(cov)[-39:]  # 39 retained directions, each lam / (lam + 1e-2)
    lam = zca.eigenvalues.sort().values
    torch.testing.assert_close(ev, lam / (lam + C.ZCA_EPSILON))


# --------------------------------------------------------------------------- augmentation


def _oracle_augment(x: np.ndarray, p: C.Augmentation) -> np.ndarray:
    pad = p.pad
    out = np.empty_like(x)
    for i in range(len(x)):
        img = np.pad(x[i], ((0, 0), (pad, pad), (pad, pad)), mode="reflect")
        t, left = int(p.top[i]), int(p.left[i])
        img = img[:, t : t + x.shape[2], left : left + x.shape[3]]
        out[i] = img[:, :, ::-1] if p.flip[i] else img
    return out


def test_augment_matches_loop_oracle_and_is_a_pixel_selection():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(64, 3, 32, 32, generator=gen, dtype=torch.float64)
    p = C.augmentation_params(64, generator=torch.Generator().manual_seed(5))
    assert p.top.min() >= 0 and p.top.max() <= 8 and 10 < int(p.flip.sum()) < 54
    y = C.apply_augmentation(x, p)
    assert y.shape == x.shape
    np.testing.assert_array_equal(y.numpy(), _oracle_augment(x.numpy(), p))
    for i in range(64):  # every output pixel is a pixel of the same image and channel
        for c in range(3):
            assert np.isin(y[i, c].numpy(), x[i, c].numpy()).all()
    # centre crop without flip is the identity; with flip it is an exact mirror (a permutation)
    n = 4
    centre = C.Augmentation(
        torch.tensor([False, True] * 2), torch.full((n,), 4), torch.full((n,), 4), 4
    )
    y = C.apply_augmentation(x[:n], centre)
    assert torch.equal(y[0::2], x[0:n:2]) and torch.equal(y[1::2], x[1:n:2].flip(-1))
    assert torch.equal(y[1].sort().values, x[1].sort().values)


def test_augment_reproducible_by_seed_and_no_global_rng():
    x = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    state = torch.get_rng_state()
    a, b = C.augment(x, seed=7), C.augment(x, seed=7)
    assert torch.equal(a, b) and not torch.equal(a, C.augment(x, seed=8))
    assert torch.equal(torch.get_rng_state(), state)
    c = C.augment(x, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, c)


@pytest.mark.skipif(not REAL.is_file(), reason="real CIFAR-10 archive not present")
def test_real_cifar10_binary_test_split():
    d = C.cifar(REAL, "test")
    assert len(d) == 10_000 and d.class_counts() == [1000] * 10
