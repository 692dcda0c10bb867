"""CIFAR-10 and CIFAR-100 for the paper's small-allcnn runs, read from the official archives.

:func:`cifar` reads either official version of each data set, as the ``.tar.gz`` archive (members
are read in memory, nothing is extracted) or as its extracted folder:

- CIFAR-10, binary: ``cifar-10-binary.tar.gz`` or folder ``cifar-10-batches-bin``, members
  ``data_batch_1.bin`` … ``data_batch_5.bin`` and ``test_batch.bin``;
- CIFAR-10, python: ``cifar-10-python.tar.gz`` or folder ``cifar-10-batches-py``, members
  ``data_batch_1`` … ``data_batch_5`` and ``test_batch``;
- CIFAR-100, binary: ``cifar-100-binary.tar.gz`` or folder ``cifar-100-binary``, members
  ``train.bin`` and ``test.bin``;
- CIFAR-100, python: ``cifar-100-python.tar.gz`` or folder ``cifar-100-python``, members
  ``train`` and ``test``.

Binary records are 1 label byte + 3,072 pixel bytes (CIFAR-10) or coarse byte + fine byte +
3,072 pixel bytes (CIFAR-100); the pixels are the red, green then blue 32 × 32 planes, row-major.
The python version holds pickled dicts with ``b'data'`` (uint8 N × 3072, same layout) and
``b'labels'`` (CIFAR-10) or ``b'fine_labels'`` / ``b'coarse_labels'`` (CIFAR-100). They are
unpickled by :class:`RestrictedUnpickler`, which builds only numpy arrays and refuses every other
global, so a crafted file cannot run code.

**Preprocessing (§IV).** The authors trained small-allcnn on ``*-train-proc.npz`` files
that the paper calls "global contrast normalization + ZCA". Their constants are not published; we
use the pylearn2 ones that most CIFAR GCN + ZCA pipelines copy (Goodfellow et al., "Maxout
networks", 2013; ``pylearn2/expr/preprocessing.py::global_contrast_normalize`` and
``pylearn2/datasets/preprocessing.py::ZCA``):

- :func:`global_contrast_normalize`: per image x ∈ R³⁰⁷², x ← s · (x − mean(x)) / ‖x − mean(x)‖₂
  with s = :data:`GCN_SCALE` = 55, so every image has mean 0 and Euclidean norm 55.
- :func:`fit_zca` (on the training split) and :meth:`Zca.apply` (to both splits):
  x ← (x − μ) U diag((λ + ε)^(−1/2)) Uᵀ with the eigenpairs (λ, U) of the training covariance and
  ε = :data:`ZCA_EPSILON` = 1e-2; eigen-directions with λ ≤ 1e-10·λ_max are dropped.

**Augmentation (Fig. 2c, Remark 14).** :func:`augment`: a random horizontal flip with
probability ½, reflect-padding by 4 pixels and a random 32 × 32 crop, drawn from an explicit
``torch.Generator``.
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import Dataset

from .._validation import check_int, check_option, check_real
from .data import Split

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]  # numpy 1.x's path

__all__ = [
    "GCN_SCALE",
    "ZCA_EPSILON",
    "Augmentation",
    "CifarData",
    "CifarFormatError",
    "RestrictedUnpickler",
    "Zca",
    "apply_augmentation",
    "augment",
    "augmentation_params",
    "cifar",
    "find_cifar",
    "fit_zca",
    "global_contrast_normalize",
    "paper_inputs",
]

GCN_SCALE = 55.0  #: Euclidean norm of every image after global contrast normalisation.
ZCA_EPSILON = 1e-2  #: Regulariser added to the covariance eigenvalues before whitening.
PIXELS = 3 * 32 * 32  #: Pixel bytes of one CIFAR image.
_WHERE = "sgdscope.paper.cifar.cifar"

# (binary folder, binary archive, python folder, python archive, train members, test members)
_LAYOUT: dict[int, tuple[str, str, str, str, tuple[str, ...], tuple[str, ...]]] = {
    10: (
        "cifar-10-batches-bin",
        "cifar-10-binary.tar.gz",
        "cifar-10-batches-py",
        "cifar-10-python.tar.gz",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",),
    ),
    100: (
        "cifar-100-binary",
        "cifar-100-binary.tar.gz",
        "cifar-100-python",
        "cifar-100-python.tar.gz",
        ("train",),
        ("test",),
    ),
}


class CifarFormatError(ValueError):
    """A CIFAR file is truncated, corrupt, or not in the official layout."""


class _NdarrayToken:
    """Stands for ``numpy.ndarray`` in a CIFAR pickle; not callable, so no array is sized by it."""

    def __repr__(self) -> str:
        return "numpy.ndarray"


_NDARRAY = _NdarrayToken()


def _empty_array(cls: Any, shape: Any, dtype: Any) -> np.ndarray:
    """``_reconstruct(ndarray, (0,), dtype)``, the only call numpy's pickles make.

    The array is then filled by its pickled state, whose bytes are in the file, so its size is
    bounded by the file's. Any other class or shape (a crafted file asking for a huge
    uninitialised array) is refused.

    Returns:
        An empty array of shape (0,), which the pickle's state then fills.

    Raises:
        CifarFormatError: On any other class or shape.
    """
    if cls is not _NDARRAY or tuple(shape) != (0,):
        raise CifarFormatError(
            f"refusing _reconstruct({cls!r}, {shape!r}, ...): numpy's pickles rebuild an array "
            "from an empty one of shape (0,) and its stored bytes; this file is not an official "
            "CIFAR batch."
        )
    empty = _reconstruct(np.ndarray, (0,), dtype)
    assert isinstance(empty, np.ndarray)  # numpy's stub says object
    return empty


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds only what the CIFAR python files hold: numpy arrays.

    The official files were written by Python 2's ``cPickle`` (protocol 2) and need
    ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray`` and ``numpy.dtype``; a protocol-2
    pickle written by Python 3 also needs ``_codecs.encode`` (how it stores ``bytes``). Those
    globals, and their numpy ≥ 2 spelling ``numpy._core.multiarray._reconstruct``, are the only
    ones allowed; any other (``os.system``, ``builtins.eval``, …) raises
    :class:`CifarFormatError` before anything is called. ``numpy.ndarray`` resolves to a
    token that only ``_reconstruct`` accepts, and only with the empty shape (0,) numpy's own
    pickles use, so a short file cannot allocate a large uninitialised array. Load with
    ``encoding="bytes"``, as the files' own instructions do.
    """

    _ALLOWED: ClassVar[MappingProxyType[tuple[str, str], Any]] = MappingProxyType(
        {
            ("numpy.core.multiarray", "_reconstruct"): _empty_array,
            ("numpy._core.multiarray", "_reconstruct"): _empty_array,
            ("numpy", "ndarray"): _NDARRAY,
            ("numpy", "dtype"): np.dtype,
            ("_codecs", "encode"): codecs.encode,
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        """Return an allowed global, or raise :class:`CifarFormatError` for any other."""
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            allowed = ", ".join(f"{m}.{n}" for m, n in self._ALLOWED)
            raise CifarFormatError(
                f"refusing to unpickle the global {module}.{name}: CIFAR python files hold only "
                f"numpy arrays ({allowed}); this file is not an official CIFAR batch and may be "
                "crafted to run code."
            ) from None


def _unpickle(raw: bytes, name: str) -> dict:
    try:
        obj = RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except CifarFormatError as err:
        raise CifarFormatError(f"{name}: {err}") from None
    except Exception as err:  # truncated or garbled pickle stream
        raise CifarFormatError(
            f"CIFAR python batch {name} cannot be unpickled ({type(err).__name__}: {err}); the "
            "file is truncated or corrupt: download the archive again."
        ) from None
    if not isinstance(obj, dict):
        raise CifarFormatError(
            f"CIFAR python batch {name} holds a {type(obj).__name__}, expected a dict with "
            "b'data' and labels."
        )
    return obj


@dataclass(frozen=True, eq=False)
class CifarData(Dataset):
    """CIFAR images and labels, usable as a torch ``Dataset`` and as two tensors.

    Attributes:
        images: uint8 tensor N × 3 × 32 × 32 (RGB planes), the pixels as stored.
        labels: int64 tensor N, the class (the fine label for CIFAR-100).
        coarse_labels: int64 tensor N, CIFAR-100's 20 super-classes; None for CIFAR-10.
        index: int64 tensor N, the row of each image in the split (batches concatenated).
        num_classes: 10 or 100.
        split: Training or test split.
        source: The archive or folder read.
    """

    images: Tensor
    labels: Tensor
    coarse_labels: Tensor | None
    index: Tensor
    num_classes: int
    split: Split
    source: str

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.dtype != torch.uint8 or tuple(self.images.shape[1:]) != (3, 32, 32):
            raise ValueError(
                "CifarData.images must be a uint8 tensor N x 3 x 32 x 32, got "
                f"{self.images.dtype} {tuple(self.images.shape)}."
            )
        if tuple(self.labels.shape) != (n,) or tuple(self.index.shape) != (n,):
            raise ValueError(
                f"CifarData.labels and .index must have shape ({n},), got "
                f"{tuple(self.labels.shape)} and {tuple(self.index.shape)}."
            )
        if self.coarse_labels is not None and tuple(self.coarse_labels.shape) != (n,):
            raise ValueError(
                f"CifarData.coarse_labels must have shape ({n},) or be None, got "
                f"{tuple(self.coarse_labels.shape)}."
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        """Return sample ``i`` as ``(input float32 3 × 32 × 32 in [0, 1], target int64)``."""
        return self.images[i].to(torch.float32) / 255.0, self.labels[i]

    def tensors(
        self, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
    ) -> tuple[Tensor, Tensor]:
        """Return ``(inputs N × 3 × 32 × 32 = pixels / 255, targets int64 N)``.

        For the paper's GCN + ZCA inputs use :func:`paper_inputs`.
        """
        return (self.images.to(dtype) / 255.0).to(device), self.labels.to(device)

    def class_counts(self) -> list[int]:
        """Return the number of samples of each class, in class order."""
        return torch.bincount(self.labels, minlength=self.num_classes).tolist()


# --------------------------------------------------------------------------- reading


class _Source:
    """One CIFAR version found on disk: a folder of members or a tar archive."""

    def __init__(self, path: Path, folder: str, binary: bool) -> None:
        self.path, self.folder, self.binary = path, folder, binary

    def _check_size(self, name: str, size: int, limit: int) -> None:
        if size > limit:
            raise CifarFormatError(
                f"CIFAR batch {name} is {size:,} bytes, more than the {limit:,} bytes an official "
                f"batch can hold; it is not an official CIFAR file (refused before reading it)."
            )

    def read(self, members: tuple[str, ...], limit: int) -> list[tuple[str, bytes]]:
        """The bytes of each member; one larger than ``limit`` bytes is refused unread."""
        names = [m + ".bin" if self.binary else m for m in members]
        if self.path.is_dir():
            out = []
            for m in names:
                f = self.path / m
                if not f.is_file():
                    raise FileNotFoundError(
                        f"CIFAR folder {os.fspath(self.path)!r} lacks {m}; it should hold "
                        f"{', '.join(names)}: extract the official archive again."
                    )
                self._check_size(os.fspath(f), f.stat().st_size, limit)
                out.append((os.fspath(f), f.read_bytes()))
            return out
        try:
            with tarfile.open(self.path, "r:*") as tar:
                out = []
                for m in names:
                    try:
                        fh = tar.extractfile(f"{self.folder}/{m}")
                    except KeyError:
                        raise CifarFormatError(
                            f"CIFAR archive {os.fspath(self.path)!r} has no member "
                            f"{self.folder}/{m}; is it the official archive?"
                        ) from None
                    if fh is None:
                        raise CifarFormatError(
                            f"CIFAR archive {os.fspath(self.path)!r}: {self.folder}/{m} is not "
                            "a regular file."
                        )
                    where = f"{os.fspath(self.path)}:{self.folder}/{m}"
                    self._check_size(where, tar.getmember(f"{self.folder}/{m}").size, limit)
                    out.append((where, fh.read()))
                return out
        except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
            if isinstance(err, FileNotFoundError):
                raise
            raise CifarFormatError(
                f"CIFAR archive {os.fspath(self.path)!r} is truncated or corrupt "
                f"({type(err).__name__}: {err}); download it again."
            ) from None


def find_cifar(data_dir: str | os.PathLike, classes: int = 10) -> Path:
    """The CIFAR archive or extracted folder that :func:`cifar` would read, without reading it.

    Args:
        data_dir: The archive, its extracted folder, or a folder holding either.
        classes: 10 or 100.

    Returns:
        The path of the archive or folder found.

    Raises:
        FileNotFoundError: If none is found; the message lists the names looked for.
    """
    return _find(Path(data_dir).expanduser(), classes).path


def _find(root: Path, classes: int) -> _Source:
    bin_dir, bin_tar, py_dir, py_tar, _, _ = _LAYOUT[classes]
    candidates = [(bin_dir, bin_dir, True), (bin_tar, bin_dir, True)]
    candidates += [(py_dir, py_dir, False), (py_tar, py_dir, False)]
    if root.is_file() or root.name in (bin_dir, py_dir):
        for name, folder, binary in candidates:
            if root.name == name:
                return _Source(root, folder, binary)
    if root.is_dir():
        for name, folder, binary in candidates:
            if (root / name).exists():
                return _Source(root / name, folder, binary)
    looked = ", ".join(name for name, _, _ in candidates)
    raise FileNotFoundError(
        f"CIFAR-{classes} not found in {os.fspath(root)!r}: looked for {looked}. Put one of the "
        f"official archives (from https://www.cs.toronto.edu/~kriz/cifar.html) or its extracted "
        f"folder in that folder, or pass the archive's path as data_dir; nothing is downloaded."
    )


def _parse_binary(
    name: str, raw: bytes, classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    head = 1 if classes == 10 else 2
    rec = head + PIXELS
    if len(raw) == 0 or len(raw) % rec:
        raise CifarFormatError(
            f"CIFAR binary batch {name} has {len(raw)} bytes, not a positive multiple of the "
            f"{rec}-byte record ({head} label byte(s) + {PIXELS} pixels): it is truncated or "
            "corrupt."
        )
    arr = np.frombuffer(raw, dtype=np.uint8).reshape(-1, rec)
    coarse = arr[:, 0].astype(np.int64) if classes == 100 else None
    return arr[:, head:], arr[:, head - 1].astype(np.int64), coarse


def _parse_python(
    name: str, raw: bytes, classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    d = _unpickle(raw, name)
    key = b"labels" if classes == 10 else b"fine_labels"
    if b"data" not in d or key not in d or (classes == 100 and b"coarse_labels" not in d):
        raise CifarFormatError(
            f"CIFAR python batch {name} has keys {sorted(d)}, expected b'data' and {key!r}"
            + (" and b'coarse_labels'" if classes == 100 else "")
            + "; is it the right data set?"
        )
    data = np.asarray(d[b"data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != PIXELS:
        raise CifarFormatError(
            f"CIFAR python batch {name}: b'data' is {data.dtype} {data.shape}, expected uint8 "
            f"N x {PIXELS}."
        )
    labels = _labels(d[key], name, key, data.shape[0])
    coarse = (
        _labels(d[b"coarse_labels"], name, b"coarse_labels", data.shape[0])
        if classes == 100
        else None
    )
    return data, labels, coarse


def _labels(value: Any, name: str, key: bytes, n: int) -> np.ndarray:
    """The labels under ``key`` as int64 (n,): whole numbers only, one per image."""
    try:
        arr = np.asarray(value)
    except Exception as err:  # e.g. ragged lists
        raise CifarFormatError(
            f"CIFAR python batch {name}: {key!r} cannot be read as an array ({err})."
        ) from None
    if arr.shape != (n,):
        raise CifarFormatError(
            f"CIFAR python batch {name} holds {n} images but {arr.size} labels ({key!r} has "
            f"shape {arr.shape}, expected ({n},): one label per image)."
        )
    if arr.dtype.kind in "iu":
        if arr.dtype.kind == "u" and arr.dtype.itemsize == 8 and n and arr.max() > 2**62:
            raise CifarFormatError(f"CIFAR python batch {name}: {key!r} holds {arr.max()}.")
        return arr.astype(np.int64)
    example = next((v for v in arr.ravel() if not isinstance(v, int | np.integer)), None)
    raise CifarFormatError(
        f"CIFAR python batch {name}: {key!r} must hold whole numbers (class indices), got "
        f"dtype {arr.dtype}"
        + (f" (e.g. {example!r})" if example is not None else "")
        + "; the file is corrupt or not an official CIFAR batch."
    )


def cifar(
    data_dir: str | os.PathLike[str],
    split: str | Split = "train",
    *,
    classes: int = 10,
    n: int | None = None,
) -> CifarData:
    """Load CIFAR-10 or CIFAR-100 from an official archive or its extracted folder.

    ``data_dir`` is a folder holding one of the archives or extracted folders listed in the
    module docstring (the binary version is preferred when both are present), or the path of
    one of them. Archives are read in memory; the python version is unpickled by
    :class:`RestrictedUnpickler`. Labels are checked to lie in ``[0, classes)``.

    Args:
        data_dir: Folder with the data, or the archive / extracted folder itself.
        split: ``"train"`` (50,000 images) or ``"test"`` (10,000).
        classes: 10 (CIFAR-10) or 100 (CIFAR-100).
        n: Keep the first ``n`` images in file order (the files are already shuffled); None
            keeps all.

    Returns:
        A :class:`CifarData` with uint8 images N × 3 × 32 × 32.

    Raises:
        FileNotFoundError: If no archive or folder is found; the message lists the names looked
            for and where to put them.
        CifarFormatError: If an archive or batch is truncated, corrupt, holds the wrong keys or
            labels, or a pickle asks for a forbidden global.
        ValueError: If an argument is invalid (the message names it).

    Example:
        >>> data = cifar("~/data/cifar10", "test")  # doctest: +SKIP
        >>> x, y = paper_inputs(cifar("~/data/cifar10"), data)[1]  # doctest: +SKIP
    """
    split = check_option("split", split, Split, where=_WHERE)
    if classes not in _LAYOUT:
        raise ValueError(
            f"the 'classes' parameter of {_WHERE} must be 10 (CIFAR-10) or 100 (CIFAR-100), "
            f"got {classes!r}."
        )
    if n is not None:
        n = check_int("n", n, where=_WHERE, low=1, hint="Use n=None for all images.")
    source = _find(Path(data_dir).expanduser(), classes)
    layout = _LAYOUT[classes]
    members = layout[4] if split is Split.TRAIN else layout[5]
    parse = _parse_binary if source.binary else _parse_python
    # the largest an official member can be: its images' records, plus pickle overhead
    images = 50_000 // len(members) if split is Split.TRAIN else 10_000
    record = PIXELS + (1 if classes == 10 else 2)
    limit = images * record if source.binary else images * (record + 64) + (1 << 20)
    parts = [parse(name, raw, classes) for name, raw in source.read(members, limit)]
    data = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    coarse = np.concatenate([p[2] for p in parts if p[2] is not None]) if classes == 100 else None
    checks = [("label", labels, classes)]
    if coarse is not None:
        checks.append(("coarse label", coarse, 20))
    for what, values, high in checks:
        bad = np.flatnonzero((values < 0) | (values >= high))
        if bad.size:
            raise CifarFormatError(
                f"CIFAR-{classes} {split.value} data in {os.fspath(source.path)!r} has {what} "
                f"{int(values[bad[0]])} at row {int(bad[0])}, outside [0, {high - 1}]: the file "
                "is corrupt or belongs to the other CIFAR."
            )
    if n is not None:
        if n > len(labels):
            raise ValueError(
                f"the 'n' parameter of {_WHERE} must be at most {len(labels)} (the images in "
                f"the {split.value} split), got {n}."
            )
        data, labels = data[:n], labels[:n]
        coarse = None if coarse is None else coarse[:n]
    return CifarData(
        images=torch.from_numpy(np.ascontiguousarray(data).reshape(-1, 3, 32, 32)),
        labels=torch.from_numpy(labels),
        coarse_labels=None if coarse is None else torch.from_numpy(coarse),
        index=torch.arange(len(labels), dtype=torch.int64),
        num_classes=classes,
        split=split,
        source=os.fspath(source.path),
    )


# --------------------------------------------------------------------------- preprocessing


def global_contrast_normalize(x: Tensor, scale: float = GCN_SCALE, eps: float = 1e-8) -> Tensor:
    """Global contrast normalisation: each image to mean 0 and Euclidean norm ``scale``.

    x_i ← scale · (x_i − mean(x_i)) / max(‖x_i − mean(x_i)‖₂, eps) over the 3,072 values of each
    image (pylearn2's ``global_contrast_normalize(X, scale=55.)``).

    Args:
        x: Images N × C × H × W (any float dtype; integers are cast to float32).
        scale: Target norm of each image (default 55).
        eps: Images with a smaller centred norm (constant images) are only centred.

    Returns:
        A new tensor of the same shape.
    """
    scale = check_real("scale", scale, where="global_contrast_normalize", low=0, low_open=True)
    x = x if x.is_floating_point() else x.to(torch.float32)
    flat = x.reshape(x.shape[0], -1)
    c = flat - flat.mean(dim=1, keepdim=True)
    norm = c.norm(dim=1, keepdim=True)
    return (scale * c / torch.where(norm < eps, scale, norm)).reshape(x.shape)


@dataclass(frozen=True)
class Zca:
    """A fitted ZCA whitening map x ↦ (x − mean) U diag(scales) Uᵀ.

    Attributes:
        mean: float64 tensor d, the training mean.
        components: float64 tensor d × r, the retained covariance eigenvectors U.
        eigenvalues: float64 tensor r, their eigenvalues λ.
        scales: float64 tensor r, (λ + ε)^(−1/2).
        epsilon: The regulariser ε.
    """

    mean: Tensor
    components: Tensor
    eigenvalues: Tensor
    scales: Tensor
    epsilon: float

    def apply(self, x: Tensor) -> Tensor:
        """Whiten images N × C × H × W (C·H·W = d); returns the same shape and dtype."""
        flat = x.reshape(x.shape[0], -1).to(self.mean.dtype) - self.mean
        u = self.components
        n, (d, r) = flat.shape[0], u.shape
        if n * d * r * 2 > n * d * d + d * d * r:  # forming W = U diag(s) Uᵀ once is cheaper
            out = flat @ ((u * self.scales) @ u.T)
        else:
            out = ((flat @ u) * self.scales) @ u.T
        return out.to(x.dtype if x.is_floating_point() else torch.float32).reshape(x.shape)


def fit_zca(x: Tensor, epsilon: float = ZCA_EPSILON, rtol: float = 1e-10) -> Zca:
    """Fit ZCA whitening on training images (float64 internally).

    With the centred data X_c (N × d) and covariance C = X_cᵀ X_c / N = U diag(λ) Uᵀ, the map is
    W = U diag((λ + ε)^(−1/2)) Uᵀ over the eigen-directions with λ > rtol·λ_max. The whitened
    training covariance is then U diag(λ / (λ + ε)) Uᵀ (the identity on the retained directions
    when ε = 0). Uses an SVD of X_c when N < d, an eigendecomposition of C otherwise.

    Args:
        x: Training images N × C × H × W (after :func:`global_contrast_normalize`).
        epsilon: ε ≥ 0 (default 1e-2, pylearn2-style ``filter_bias``).
        rtol: Relative eigenvalue cut-off of the retained directions.

    Returns:
        The fitted :class:`Zca`.

    Raises:
        ValueError: On fewer than 2 images, or a negative ``epsilon``.
    """
    epsilon = check_real("epsilon", epsilon, where="fit_zca", low=0)
    flat = x.reshape(x.shape[0], -1).to(torch.float64)
    if flat.shape[0] < 2:
        raise ValueError(f"fit_zca needs at least 2 images, got {flat.shape[0]}.")
    mean = flat.mean(dim=0)
    c = flat - mean
    n, d = c.shape
    if n < d:
        _, s, vh = torch.linalg.svd(c, full_matrices=False)
        lam, u = s**2 / n, vh.T
    else:
        lam, u = torch.linalg.eigh(c.T @ c / n)
    keep = lam > rtol * lam.max()
    lam, u = lam[keep], u[:, keep]
    return Zca(mean, u, lam, (lam + epsilon).rsqrt(), epsilon)


def paper_inputs(
    train: CifarData, *others: CifarData, dtype: torch.dtype = torch.float32
) -> list[tuple[Tensor, Tensor]]:
    """The paper's inputs: GCN (scale 55) then ZCA (ε = 1e-2) fitted on ``train``, applied to all.

    Args:
        train: The training split (the ZCA is fitted on it).
        *others: Further splits to transform with the same map (e.g. the test split).
        dtype: Floating dtype of the returned inputs.

    Returns:
        ``[(inputs N × 3 × 32 × 32, targets N)]`` for ``train`` then each of ``others``.

    Cost: on the 50,000 CIFAR training images the work is done in float64 and peaks near 5 GB
    of memory; about a minute on 2 CPU cores (see ``docs/cifar.md``).
    """
    zca = fit_zca(global_contrast_normalize(train.images.to(torch.float64)))
    return [
        (zca.apply(global_contrast_normalize(s.images.to(torch.float64))).to(dtype), s.labels)
        for s in (train, *others)
    ]


@dataclass(frozen=True)
class Augmentation:
    """Drawn augmentation parameters for N images.

    Attributes:
        flip: bool tensor N, mirror left-right.
        top: int64 tensor N, crop row offset in [0, 2·pad] of the padded image.
        left: int64 tensor N, crop column offset in [0, 2·pad].
        pad: Reflect-padding on each side.
    """

    flip: Tensor
    top: Tensor
    left: Tensor
    pad: int


def augmentation_params(
    n: int, *, pad: int = 4, generator: torch.Generator | None = None
) -> Augmentation:
    """Draw flips (probability ½) and crop offsets (uniform in [0, 2·pad]) for ``n`` images."""
    n = check_int("n", n, where="augmentation_params", low=1)
    pad = check_int("pad", pad, where="augmentation_params", low=0, high=31)
    flip = torch.rand(n, generator=generator) < 0.5
    top = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    left = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    return Augmentation(flip, top, left, pad)


def apply_augmentation(x: Tensor, params: Augmentation) -> Tensor:
    """Flip, reflect-pad and crop images N × C × H × W with drawn parameters (same shape)."""
    if x.ndim != 4 or params.flip.shape != (x.shape[0],):
        raise ValueError(
            f"apply_augmentation needs images N x C x H x W with N = {params.flip.shape[0]} "
            f"(the parameters drawn), got shape {tuple(x.shape)}."
        )
    p = params.pad
    n, c, h, w = x.shape
    padded = F.pad(x, (p, p, p, p), mode="reflect") if p else x
    dev = x.device
    rows = params.top.to(dev)[:, None] + torch.arange(h, device=dev)
    cols = params.left.to(dev)[:, None] + torch.arange(w, device=dev)
    cols = torch.where(params.flip.to(dev)[:, None], cols.flip(1), cols)
    i = torch.arange(n, device=dev)[:, None, None, None]
    ch = torch.arange(c, device=dev)[None, :, None, None]
    return padded[i, ch, rows[:, None, :, None], cols[:, None, None, :]]


def augment(
    x: Tensor, *, pad: int = 4, generator: torch.Generator | None = None, seed: int | None = None
) -> Tensor:
    """Random horizontal flip + reflect-pad ``pad`` + random crop back to H × W (Fig. 2c).

    Args:
        x: Float images N × C × H × W.
        pad: Padding on each side (default 4).
        generator: Source of randomness; never the global RNG when ``seed`` is given.
        seed: Builds a fresh generator when ``generator`` is None.

    Returns:
        Augmented images of the same shape.
    """
    if generator is None and seed is not None:
        generator = torch.Generator().manual_seed(check_int("seed", seed, where="augment"))
    return apply_augmentation(x, augmentation_params(x.shape[0], pad=pad, generator=generator))
