"""MNIST for the paper's experiments: the standard IDX files, or a subset shipped in the package.

:func:`mnist` returns an :class:`MnistData`, a frozen dataclass that is also a map-style
``torch.utils.data.Dataset`` (``len``, ``data[i] -> (input, target)``) and hands out the whole
set at once with :meth:`MnistData.tensors` -> ``(inputs float32 N × 1 × s × s, targets int64 N)``.

**Input scaling.** The authors' ``loader.mnist`` fed small-lenet *raw* pixel values 0–255 as
floats, without normalisation (github.com/pratikac/grad-info, commit 4e1bd82), and the absolute
eigenvalues of D(x) scale with the square of the input scale. The default here is ``scale="unit"``
(pixels / 255, in [0, 1]), the common convention; ``scale="paper"`` (an alias of ``"raw"``) gives
the paper's inputs. Ranks and rank fractions are the robust targets (§IV-A, Figs 1–2); absolute λ
depend on this choice.

**7 × 7 inputs.** small-fc and tiny-fc read MNIST down-sampled to 7 × 7. By default
(``resize="area"``) ``size=7`` averages each 4 × 4 block, a clean down-sampling. The authors'
``halfmnist`` (``loader.py``) ran ``ToPILImage → Scale(7) → ToTensor`` on float tensors holding
0–255, and ``ToPILImage``'s ``pic.mul(255).byte()`` most likely wrapped every byte v to
(−v) mod 256 (torchvision 0.2; the wrap is inferred, not documented). ``resize="authors"``
mimics that chain without PIL or torchvision (see :class:`Resize` and :func:`pillow_bilinear`);
``resize="bilinear"`` is the same resampling without the wrap, to separate the two effects.

**Embedded subset.** With ``data_dir=None`` the data come from ``_embedded/mnist_subset.npz``,
shipped inside the package: real MNIST, 1,000 images per digit from the training file (10,000)
and 200 per digit from the test file (2,000), drawn without replacement with a fixed seed and
kept in their original file order (built by ``scripts/build_embedded_mnist.py``; see
``docs/data.md``). Nothing is downloaded, ever: for the full data, point ``data_dir`` at a folder
with the four standard files.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import Dataset

from .._validation import check_int, check_option
from .idx import read_idx
from .models import ModelName, info

__all__ = [
    "EMBEDDED_SIZES",
    "IMAGE_MAGIC",
    "LABEL_MAGIC",
    "MnistData",
    "Resize",
    "Scale",
    "Split",
    "find_mnist_files",
    "mnist",
    "mnist_for",
    "pillow_bilinear",
    "wrap_bytes",
]

IMAGE_MAGIC = 0x00000803  #: IDX magic number of MNIST image files (uint8, 3 dimensions).
LABEL_MAGIC = 0x00000801  #: IDX magic number of MNIST label files (uint8, 1 dimension).
EMBEDDED_SIZES = {"train": 10_000, "test": 2_000}  #: images per split in the embedded subset.
_EMBEDDED = "_embedded/mnist_subset.npz"
_PREFIX = {"train": "train", "test": "t10k"}
_SUBDIRS = (".", "raw", "MNIST/raw")  # also accept torchvision's layout
_SIZES = (1, 2, 4, 7, 14, 28)
_MEAN, _STD = 0.1307, 0.3081  # the usual MNIST statistics of pixels / 255
_WHERE = "sgdscope.paper.data.mnist"


class Split(str, Enum):
    """Which MNIST file: the 60,000 training images or the 10,000 test (``t10k``) images."""

    TRAIN = "train"
    TEST = "test"


class Scale(str, Enum):
    """How pixel values 0–255 become float inputs.

    ``RAW``: the values 0–255 as floats, what the paper's small-lenet loader fed (``loader.mnist``);
    ``PAPER`` is an alias of it. ``UNIT``: pixels / 255, in [0, 1]. ``STANDARD``:
    (pixels / 255 − 0.1307) / 0.3081, zero mean and unit variance over the MNIST training set.
    """

    RAW = "raw"
    PAPER = "raw"  # alias: Scale.PAPER is Scale.RAW
    UNIT = "unit"
    STANDARD = "standard"


class Resize(str, Enum):
    """How 28 × 28 images are down-sampled to ``size`` × ``size`` (used when size < 28).

    ``AREA`` (default): the mean of each (28/size)² block, a clean down-sampling.
    ``BILINEAR``: Pillow ≥ 4's ``Image.resize(..., BILINEAR)`` of the bytes, which torchvision's
    ``Scale``/``Resize`` called (:func:`pillow_bilinear`). ``AUTHORS``: the authors' ``halfmnist``
    chain (``loader.py``): ``ToPILImage`` on float tensors holding 0–255, whose
    ``pic.mul(255).byte()`` wraps each byte v to (255·v) mod 256 = (−v) mod 256
    (:func:`wrap_bytes`; torchvision 0.2's ``ToPILImage``), then the same bilinear resize;
    ``ToTensor``'s division by 255 is ``scale="unit"``. With size = 28 the resize is the identity,
    so ``AUTHORS`` only wraps the bytes (what ``halfmnist(sz=28)`` would give; the authors' 28 × 28
    loader did not go through PIL).
    """

    AREA = "area"
    BILINEAR = "bilinear"
    AUTHORS = "authors"


# Pillow's fixed-point precision for 8-bit resampling (libImaging/Resample.c: 32 − 8 − 2 bits).
_PRECISION_BITS = 22


def wrap_bytes(images: Tensor) -> Tensor:
    """Return ``(255 · v) mod 256 = (−v) mod 256`` for uint8 pixels v: ToPILImage's overflow.

    torchvision 0.1.9/0.2's ``ToPILImage`` converts a float tensor with ``pic.mul(255).byte()``,
    assuming values in [0, 1]. The authors' MNIST tensors held 0–255, so 255·v (exact in float32,
    at most 65,025) was cast to an unsigned byte. That cast is undefined in C for values above
    255; x86 compilers truncate through a 32-bit integer, i.e. keep the value mod 256, and
    255·v = 256·v − v ≡ −v (mod 256). So 0 ↦ 0, 1 ↦ 255, 255 ↦ 1, 128 ↦ 128: a negative image
    with the background kept at 0 (the mod-256 wrap is the likely, not a documented,
    behaviour).

    Args:
        images: uint8 tensor of any shape.

    Returns:
        The wrapped uint8 tensor, same shape.
    """
    return (-images.to(torch.int16)).remainder(256).to(torch.uint8)


def _pillow_coefficients(in_size: int, out_size: int) -> np.ndarray:
    """Pillow's fixed-point BILINEAR weights, shape (out_size, in_size), int64 (Resample.c).

    For output pixel ``xx``: ``scale = in/out``, ``filterscale = max(scale, 1)``,
    ``support = filterscale``, ``center = (xx + 0.5)·scale``; inputs ``x`` from
    ``int(center − support + 0.5)`` to ``int(center + support + 0.5)`` (clipped to the image)
    get weight ``tri((x − center + 0.5)/filterscale)`` with ``tri(t) = max(1 − |t|, 0)``; the
    weights are normalised to sum 1, then rounded to ``round(w · 2²²)`` (away from zero).

    Returns:
        The weights, shape (out_size, in_size), int64 in units of 2⁻²².
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale
    out = np.zeros((out_size, in_size), dtype=np.int64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size)
        x = np.arange(xmin, xmax)
        w = np.maximum(1.0 - np.abs((x - center + 0.5) / filterscale), 0.0)
        w = w / w.sum()
        one = float(1 << _PRECISION_BITS)
        out[xx, xmin:xmax] = np.where(w < 0, -0.5 + w * one, 0.5 + w * one).astype(np.int64)
    return out


def _resample_pass(values: np.ndarray, coeffs: np.ndarray) -> np.ndarray:
    """One 8-bit pass along the last axis: ``clip((Σ v·k + 2²¹) >> 22, 0, 255)``."""
    acc = values @ coeffs.T + (1 << (_PRECISION_BITS - 1))
    return np.clip(acc >> _PRECISION_BITS, 0, 255)


def pillow_bilinear(images: Tensor, size: int) -> Tensor:
    r"""Resize uint8 images N × H × W to N × size × size as Pillow ≥ 4's BILINEAR resize does.

    Mimics ``PIL.Image.resize((size, size), Image.BILINEAR)`` on mode-"L" images, which
    torchvision's ``Scale(size)`` called on the authors' square MNIST digits: the separable,
    antialiased convolution of Pillow's ``libImaging/Resample.c`` (since Pillow 3.3/4), with a
    triangle filter whose support grows with the down-scaling factor (for 28 → 7, each output
    pixel mixes 8 input pixels per axis with weights (1, 3, 5, 7, 7, 5, 3, 1)/32, renormalised
    at the border), weights in 22-bit fixed point, a horizontal pass then a vertical pass, each
    rounded and clipped to a byte. Pillow < 2.7 (and PIL) instead interpolated bilinearly at the
    centre of each output pixel (the mean of the 2 × 2 central pixels of each 4 × 4 block); that
    variant is not implemented. In October 2017 the current Pillow was 4.3 and torchvision 0.2
    required ``pillow >= 4.1.1``, so the antialiased one is the likely choice (unverified: the
    authors' environment is not recorded).

    Args:
        images: uint8 tensor N × H × W.
        size: Output side.

    Returns:
        uint8 tensor N × size × size.
    """
    _, h, w = images.shape
    x = images.numpy().astype(np.int64)
    x = _resample_pass(x, _pillow_coefficients(w, size))  # horizontal: along the columns
    x = _resample_pass(np.swapaxes(x, 1, 2), _pillow_coefficients(h, size))  # vertical
    return torch.from_numpy(np.ascontiguousarray(np.swapaxes(x, 1, 2)).astype(np.uint8))


def _affine(scale: Scale) -> tuple[float, float]:
    """Return (a, b) with input = a * pixel + b."""
    if scale is Scale.RAW:
        return 1.0, 0.0
    if scale is Scale.UNIT:
        return 1.0 / 255.0, 0.0
    return 1.0 / (255.0 * _STD), -_MEAN / _STD


@dataclass(frozen=True, eq=False)
class MnistData(Dataset):
    """MNIST images and labels, usable as a torch ``Dataset`` and as two tensors.

    Attributes:
        images: uint8 tensor N × 28 × 28, the pixels as stored in the files.
        labels: int64 tensor N, the class index: the position of the digit in ``classes``
            (equal to the digit itself when ``classes`` is ``0, 1, …, k−1``).
        index: int64 tensor N, the row of each image in the original MNIST IDX file of the split.
        classes: The digits kept, in class-index order.
        split: Training or test file.
        scale: How pixels become inputs (:class:`Scale`).
        size: Side of the input images (28, or 7 for small-fc / tiny-fc).
        source: ``"embedded"`` or the path of the image file read.
        resize: How images are down-sampled to ``size`` (:class:`Resize`).
    """

    images: Tensor
    labels: Tensor
    index: Tensor
    classes: tuple[int, ...]
    split: Split
    scale: Scale
    size: int
    source: str
    resize: Resize = Resize.AREA

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.dtype != torch.uint8 or tuple(self.images.shape[1:]) != (28, 28):
            raise ValueError(
                "MnistData.images must be a uint8 tensor N x 28 x 28, got "
                f"{self.images.dtype} {tuple(self.images.shape)}."
            )
        if tuple(self.labels.shape) != (n,) or tuple(self.index.shape) != (n,):
            raise ValueError(
                f"MnistData.labels and .index must have shape ({n},), got "
                f"{tuple(self.labels.shape)} and {tuple(self.index.shape)}."
            )

    @property
    def num_classes(self) -> int:
        """The number of classes, ``len(classes)``."""
        return len(self.classes)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        """Return sample ``i`` as ``(input float32 1 × s × s, target int64 scalar)``."""
        return self._inputs(self.images[i : i + 1])[0], self.labels[i]

    def _inputs(self, images: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        if self.resize is Resize.AREA:
            x = images.to(dtype).unsqueeze(1)
            if self.size != 28:
                x = F.avg_pool2d(x, kernel_size=28 // self.size)
        else:
            if self.resize is Resize.AUTHORS:
                images = wrap_bytes(images)
            x = pillow_bilinear(images, self.size).to(dtype).unsqueeze(1)
        a, b = _affine(self.scale)
        return x * a + b if b else x * a

    def tensors(
        self, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
    ) -> tuple[Tensor, Tensor]:
        """Return the whole set as tensors, as the paper fed them to the network.

        Args:
            dtype: Floating dtype of the inputs.
            device: Where to put both tensors; None keeps them on the CPU.

        Returns:
            ``(inputs, targets)``: inputs of shape N × 1 × s × s (s = ``size``) scaled by
            ``scale``, and int64 targets of shape N.
        """
        return self._inputs(self.images, dtype).to(device), self.labels.to(device)

    def class_counts(self) -> list[int]:
        """Return the number of samples of each class, in class-index order."""
        return torch.bincount(self.labels, minlength=self.num_classes).tolist()


def find_mnist_files(data_dir: str | os.PathLike) -> dict[str, tuple[Path, Path]]:
    """The (images, labels) files of both splits in ``data_dir``, without reading them.

    Used to refuse a wrong folder before any work starts.

    Args:
        data_dir: A folder with the MNIST IDX files (``.``, ``raw/`` or ``MNIST/raw/`` in it).

    Returns:
        ``{"train": (images, labels), "test": (images, labels)}``.

    Raises:
        FileNotFoundError: If ``data_dir`` is not a folder or a file is missing; the message lists
            the names and folders searched.
    """
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"the 'data_dir' parameter of {_WHERE} must be an existing folder, got "
            f"{os.fspath(data_dir)!r}; pass data_dir=None to use the embedded subset."
        )
    return {split.value: _files_for(root, split) for split in Split}


def _files_for(data_dir: Path, split: Split) -> tuple[Path, Path]:
    prefix = _PREFIX[split.value]
    stems = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    dirs = [data_dir / sub for sub in _SUBDIRS]
    found = []
    for stem in stems:
        hits = [
            d / (stem + ext) for d in dirs for ext in (".gz", "") if (d / (stem + ext)).is_file()
        ]
        if not hits:
            names = ", ".join(f"{stem}.gz, {stem}" for stem in stems)
            where = ", ".join(os.fspath(d) for d in dirs)
            raise FileNotFoundError(
                f"MNIST {split.value} file {stem}[.gz] not found: looked for {names} in {where}. "
                f"Put the standard MNIST IDX files (gzip-compressed or not) in "
                f"{os.fspath(data_dir)!r}, or pass data_dir=None to use the embedded subset."
            )
        found.append(hits[0])
    return found[0], found[1]


def _read_files(data_dir: Path, split: Split) -> tuple[np.ndarray, np.ndarray, str]:
    image_file, label_file = _files_for(data_dir, split)
    images = read_idx(image_file, magic=IMAGE_MAGIC)
    labels = read_idx(label_file, magic=LABEL_MAGIC)
    if images.shape[1:] != (28, 28):
        raise ValueError(
            f"MNIST image file {os.fspath(image_file)!r} holds images of "
            f"{images.shape[1]} x {images.shape[2]} pixels, expected 28 x 28; is it MNIST?"
        )
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"MNIST image file {os.fspath(image_file)!r} holds {images.shape[0]} images but "
            f"label file {os.fspath(label_file)!r} holds {labels.shape[0]} labels; the two "
            "files must come from the same split and be complete."
        )
    if images.shape[0] == 0:
        raise ValueError(
            f"MNIST image file {os.fspath(image_file)!r} holds 0 images: the data set is empty."
        )
    if labels.max() > 9:
        bad = int(np.flatnonzero(labels > 9)[0])
        raise ValueError(
            f"MNIST label file {os.fspath(label_file)!r} has label {int(labels[bad])} at row "
            f"{bad}; MNIST labels are digits 0-9, so the file is corrupted or not MNIST."
        )
    return images, labels, os.fspath(image_file)


def _read_embedded(split: Split) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ref = resources.files("sgdscope.paper").joinpath(_EMBEDDED)
    with ref.open("rb") as fh, np.load(fh) as z:
        s = split.value
        return z[f"{s}_images"], z[f"{s}_labels"], z[f"{s}_index"].astype(np.int64)


def _check_classes(classes: Iterable[int] | None) -> tuple[int, ...]:
    if classes is None:
        return tuple(range(10))
    digits: tuple[Any, ...]  # not validated yet
    try:
        digits = tuple(classes)
    except TypeError:
        digits = (classes,)
    ok = len(digits) >= 1 and len(set(digits)) == len(digits)
    ok = ok and all(isinstance(c, int | np.integer) and 0 <= c <= 9 for c in digits)
    if not ok:
        raise ValueError(
            f"the 'classes' parameter of {_WHERE} must be distinct digits in [0, 9] "
            f"(e.g. range(5)), got {classes!r}."
        )
    return tuple(int(c) for c in digits)


def _balanced_first(labels: np.ndarray, n: int, k: int, source: str) -> np.ndarray:
    """Rows of the first ``n // k`` (+1 for the first ``n % k`` classes) samples of each class."""
    quota = [n // k + (1 if c < n % k else 0) for c in range(k)]
    counts = np.bincount(labels, minlength=k)
    rows = []
    for c in range(k):
        if counts[c] < quota[c]:
            most = k * int(counts.min())
            raise ValueError(
                f"the 'n' parameter of {_WHERE} asks for {quota[c]} samples of class {c}, but "
                f"{source} holds only {int(counts[c])}; a class-balanced subset can have at "
                f"most n = {most} here: lower n."
            )
        rows.append(np.flatnonzero(labels == c)[: quota[c]])
    return np.sort(np.concatenate(rows))


def mnist(
    data_dir: str | os.PathLike[str] | None = None,
    split: str | Split = "train",
    *,
    n: int | None = None,
    scale: str | Scale = "unit",
    size: int = 28,
    classes: Iterable[int] | None = None,
    resize: str | Resize = "area",
) -> MnistData:
    """Load MNIST from the standard IDX files, or the embedded subset when ``data_dir`` is None.

    With a ``data_dir``, the files ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``
    (split ``"train"``) or ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (``"test"``),
    each optionally ``.gz``, are looked for in ``data_dir``, ``data_dir/raw`` and
    ``data_dir/MNIST/raw`` (torchvision's layout). The reader checks the magic numbers
    (0x00000803 images, 0x00000801 labels), the 28 × 28 image size, that each payload matches its
    header, that image and label counts agree, and that labels are digits.

    Selection happens in this order: keep the digits in ``classes`` (labels become their
    position in ``classes``), then, if ``n`` is given, keep the first ``n // k`` samples of each
    of the k classes in file order (one more for the first ``n % k`` classes), preserving the
    file order overall. This is how the authors built their trajectory subsets (their
    ``prob_current.py``, github.com/pratikac/grad-info, commit 4e1bd82: "first N/nc images per
    class").

    Args:
        data_dir: Folder with the IDX files; None uses the embedded subset (10,000 train and
            2,000 test images, 1,000 / 200 per digit).
        split: ``"train"`` or ``"test"``.
        n: Size of a class-balanced subset; None keeps everything selected.
        scale: ``"unit"`` (default, pixels / 255), ``"raw"`` or its alias ``"paper"`` (pixels
            0–255, as the paper fed small-lenet), or ``"standard"`` (unit, then standardised
            with mean 0.1307 and std 0.3081).
        size: Side of the inputs, a divisor of 28: 28 (small-lenet) or 7 (small-fc, tiny-fc);
            down-sampling averages blocks.
        classes: The digits to keep, e.g. ``(0, 1)`` (the code's ``halfmnist`` default for
            small-fc) or ``range(5)`` (tiny-fc); None keeps all ten.
        resize: ``"area"`` (default: block means), ``"bilinear"`` (Pillow's antialiased
            bilinear resize) or ``"authors"`` (the byte wrap of the authors' ``halfmnist``, then
            that resize); see :class:`Resize`. For the authors' exact 7 × 7 inputs use
            ``resize="authors", scale="unit"`` (their ``ToTensor`` divided by 255).

    Returns:
        An :class:`MnistData`; ``.tensors()`` gives ``(inputs N × 1 × size × size, targets N)``.

    Raises:
        FileNotFoundError: If ``data_dir`` does not exist or a file is missing; the message lists
            the file names looked for and where.
        sgdscope.paper.idx.IdxFormatError: If a file has a wrong magic number or is truncated.
        ValueError: If the files disagree (image vs label counts), hold no images, hold a label
            outside 0–9, or an argument is invalid (the message names it).

    Example:
        >>> data = mnist(split="test", n=20, size=7, classes=range(5), scale="paper")
        >>> x, y = data.tensors()
        >>> tuple(x.shape), x.dtype, y.dtype, data.class_counts()
        ((20, 1, 7, 7), torch.float32, torch.int64, [4, 4, 4, 4, 4])
    """
    split = check_option("split", split, Split, where=_WHERE)
    scale = check_option("scale", scale, ["unit", "raw", "paper", "standard"], where=_WHERE)
    scale = Scale.PAPER if scale == "paper" else Scale(scale)
    size = check_int("size", size, where=_WHERE, low=1, high=28)
    if size not in _SIZES:
        raise ValueError(
            f"the 'size' parameter of {_WHERE} must divide 28 (one of {_SIZES}), got {size}."
        )
    digits = _check_classes(classes)
    resize = check_option("resize", resize, Resize, where=_WHERE)
    if n is not None:
        n = check_int("n", n, where=_WHERE, low=1, hint="Use n=None for all samples.")

    if data_dir is None:
        images, labels, index = _read_embedded(split)
        source = "embedded"
        where = f"the embedded MNIST subset ({split.value})"
    else:
        root = Path(data_dir).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(
                f"the 'data_dir' parameter of {_WHERE} must be an existing folder, got "
                f"{os.fspath(data_dir)!r}; pass data_dir=None to use the embedded subset."
            )
        images, labels, source = _read_files(root, split)
        index = np.arange(len(labels), dtype=np.int64)
        where = f"MNIST file {source!r}"

    keep = np.flatnonzero(np.isin(labels, digits))
    if keep.size == 0:
        raise ValueError(
            f"{where} holds no image of the digits {digits}: the selected data set is empty."
        )
    remap = np.full(10, -1, dtype=np.int64)
    remap[list(digits)] = np.arange(len(digits))
    cls = remap[labels[keep]]
    if n is not None:
        rows = _balanced_first(cls, n, len(digits), where)
        keep, cls = keep[rows], cls[rows]

    return MnistData(
        images=torch.from_numpy(np.ascontiguousarray(images[keep])),
        labels=torch.from_numpy(cls),
        index=torch.from_numpy(index[keep]),
        classes=digits,
        split=split,
        scale=scale,
        size=size,
        source=source,
        resize=resize,
    )


# The digits each network saw in the paper's runs (the authors' ``loader.halfmnist`` defaults and
# ``prob_current.py``, github.com/pratikac/grad-info, commit 4e1bd82).
_PAPER_CLASSES: dict[ModelName, tuple[int, ...]] = {
    ModelName.SMALL_LENET: tuple(range(10)),
    ModelName.SMALL_FC: (0, 1),
    ModelName.TINY_FC: tuple(range(5)),
}


def mnist_for(
    model: str | ModelName,
    data_dir: str | os.PathLike[str] | None = None,
    split: str | Split = "train",
    *,
    n: int | None = None,
    scale: str | Scale = "paper",
    resize: str | Resize = "area",
) -> MnistData:
    """Load MNIST the way the paper fed it to one of its networks (§IV).

    - ``small-lenet``: 28 × 28, all ten digits.
    - ``small-fc``: 7 × 7, digits 0 and 1 only (the code's ``halfmnist`` defaults; the network
      keeps 10 outputs). Call :func:`mnist` with ``size=7`` for all ten digits.
    - ``tiny-fc``: 7 × 7, digits 0–4 (5 classes, §IV-B). The Fig. 3a–b run used
      ``n=2048, classes=range(4)`` with ``build("tiny-fc", 4)``; call :func:`mnist` for that.

    Args:
        model: ``"small-lenet"``, ``"small-fc"`` or ``"tiny-fc"``.
        data_dir: Folder with the IDX files; None uses the embedded subset.
        split: ``"train"`` or ``"test"``.
        n: Size of a class-balanced subset; None keeps everything selected.
        scale: Input scaling; default ``"paper"`` (raw 0–255, as the authors' 28 × 28 loader fed
            it; their 7 × 7 ``halfmnist`` inputs were bytes / 255, i.e. ``"unit"``).
        resize: Down-sampling of the 7 × 7 networks' inputs, passed to :func:`mnist`:
            ``"area"`` (default), ``"bilinear"`` or ``"authors"`` (see :class:`Resize`).

    Returns:
        An :class:`MnistData` whose inputs have the network's input shape.

    Raises:
        ValueError: If ``model`` is unknown, or is ``small-allcnn`` (a CIFAR network: sgdscope
            ships no CIFAR data; pass your own tensors to the noise engine instead).

    Example:
        >>> x, y = mnist_for("tiny-fc", split="test", n=10).tensors()
        >>> tuple(x.shape), sorted(set(y.tolist()))
        ((10, 1, 7, 7), [0, 1, 2, 3, 4])
    """
    meta = info(check_option("model", model, ModelName, where="sgdscope.paper.data.mnist_for"))
    if meta.name not in _PAPER_CLASSES:
        raise ValueError(
            f"the 'model' parameter of sgdscope.paper.data.mnist_for must be an MNIST network "
            f"({', '.join(repr(m.value) for m in _PAPER_CLASSES)}), got {meta.name.value!r}: "
            "it reads CIFAR, which sgdscope does not ship: read the official archives with "
            "sgdscope.paper.cifar.cifar(data_dir) (see docs/cifar.md)."
        )
    return mnist(
        data_dir,
        split,
        n=n,
        scale=scale,
        size=meta.input_shape[-1],
        classes=_PAPER_CLASSES[meta.name],
        resize=resize,
    )
