"""The 7 × 7 down-sampling options of ``sgdscope.paper.data``: clean area, Pillow bilinear, and
the authors' ``halfmnist`` chain (byte wrap, then bilinear).

Oracles: the wrap on known bytes and against the float32 ``mul(255)`` cast done by hand; the
bilinear weights and output values computed by hand from Pillow's Resample.c formulas; Pillow
itself (a dependency of matplotlib, so present wherever the tests run) as a second
implementation of the resize.
"""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from sgdscope.paper import data as data_mod
from sgdscope.paper.data import Resize, mnist, mnist_for, pillow_bilinear, wrap_bytes


def _one_pixel(row: int, col: int, value: int) -> torch.Tensor:
    img = torch.zeros(1, 28, 28, dtype=torch.uint8)
    img[0, row, col] = value
    return img


# --- the byte wrap of ToPILImage ------------------------------------------------------------


def test_wrap_on_known_bytes():
    v = torch.tensor([0, 1, 255, 128, 2, 127], dtype=torch.uint8)
    assert wrap_bytes(v).tolist() == [0, 255, 1, 128, 254, 129]


def test_wrap_equals_the_float32_mul_255_cast_mod_256():
    # What pic.mul(255).byte() computed on x86: 255·v exactly in float32, kept mod 256.
    v = torch.arange(256, dtype=torch.uint8)
    by_hand = (v.to(torch.float32) * 255).to(torch.int64).remainder(256).to(torch.uint8)
    assert torch.equal(wrap_bytes(v), by_hand)
    assert torch.equal(wrap_bytes(wrap_bytes(v)), v)  # an involution


# --- Pillow's bilinear resize ---------------------------------------------------------------


def test_bilinear_weights_28_to_7_by_hand():
    k = data_mod._pillow_coefficients(28, 7).astype(float) / 2**22
    # interior output pixel 1: centre 6, support 4 → inputs 2..9, triangle (1,3,5,7,7,5,3,1)/32
    assert np.allclose(k[1, 2:10], np.array([1, 3, 5, 7, 7, 5, 3, 1]) / 32, atol=1e-6)
    assert k[1, :2].sum() == 0 and k[1, 10:].sum() == 0
    # border output pixel 0: inputs 0..5, (5,7,7,5,3,1)/28 after renormalisation
    assert np.allclose(k[0, :6], np.array([5, 7, 7, 5, 3, 1]) / 28, atol=1e-6)
    assert np.allclose(k.sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize(
    ("row", "col", "value", "out", "expected"),
    [
        # corner: 255·5/28 = 45.5 → 46 (first pass), 46·5/28 = 8.2 → 8 (second pass)
        (0, 0, 255, (0, 0), 8),
        # interior: 255·7/32 = 55.8 → 56, 56·7/32 = 12.25 → 12
        (5, 6, 255, (1, 1), 12),
        # next output column: 255·1/32 = 7.97 → 8, 8·7/32 = 1.75 → 2
        (5, 6, 255, (1, 2), 2),
    ],
)
def test_bilinear_hand_computed_values(row, col, value, out, expected):
    got = pillow_bilinear(_one_pixel(row, col, value), 7)
    assert got.dtype == torch.uint8 and got.shape == (1, 7, 7)
    assert int(got[0, out[0], out[1]]) == expected


def test_bilinear_constant_image_and_identity():
    flat = torch.full((2, 28, 28), 200, dtype=torch.uint8)
    assert torch.all(pillow_bilinear(flat, 7) == 200)
    rng = np.random.default_rng(1)
    imgs = torch.from_numpy(rng.integers(0, 256, (3, 28, 28), dtype=np.uint8))
    assert torch.equal(pillow_bilinear(imgs, 28), imgs)


@pytest.mark.parametrize("size", [1, 2, 4, 7, 14])
def test_bilinear_equals_pillow(size):
    image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(size)
    imgs = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    imgs[:10] = mnist(split="test", n=10).images.numpy()  # real digits too
    ours = pillow_bilinear(torch.from_numpy(imgs), size).numpy()
    ref = np.stack(
        [np.asarray(image.fromarray(a).resize((size, size), image.BILINEAR)) for a in imgs]
    )
    assert np.array_equal(ours, ref)


# --- mnist(..., resize=) --------------------------------------------------------------------


def test_authors_path_hand_computed():
    # A byte 1 wraps to 255, which the resize spreads as in the corner case above: 8 / 255.
    d = mnist(split="test", n=2, size=7, resize="authors", scale="unit")
    images = torch.zeros_like(d.images)
    images[0, 0, 0] = 1
    d2 = type(d)(images, d.labels, d.index, d.classes, d.split, d.scale, 7, "x", d.resize)
    x, _ = d2.tensors(dtype=torch.float64)
    assert x[0, 0, 0, 0].item() == pytest.approx(8 / 255)
    assert x[0].sum().item() == pytest.approx(x[0, 0, :2, :2].sum().item())  # local support
    assert torch.all(x[1] == 0)


def test_clean_path_unchanged():
    default = mnist(split="test", n=30, size=7, scale="raw")
    area = mnist(split="test", n=30, size=7, scale="raw", resize="area")
    assert default.resize is Resize.AREA
    x, _ = default.tensors(dtype=torch.float64)
    assert torch.equal(x, area.tensors(dtype=torch.float64)[0])
    block_means = default.images.to(torch.float64).reshape(30, 7, 4, 7, 4).mean(dim=(2, 4))
    assert torch.allclose(x[:, 0], block_means)
    ref = F.avg_pool2d(default.images.to(torch.float64).unsqueeze(1), 4)
    assert torch.allclose(x, ref)


@pytest.mark.parametrize("resize", ["area", "bilinear", "authors"])
@pytest.mark.parametrize("size", [28, 14, 7])
def test_shapes_and_ranges(resize, size):
    d = mnist(split="test", n=10, size=size, resize=resize, scale="unit")
    x, y = d.tensors()
    assert x.shape == (10, 1, size, size) and x.dtype == torch.float32 and y.shape == (10,)
    assert 0 <= x.min() and x.max() <= 1
    xi, yi = d[3]
    assert torch.equal(xi, x[3]) and yi == y[3]


def test_authors_pipeline_composes_wrap_and_bilinear():
    d = mnist(split="test", n=40, size=7, resize="authors", scale="unit")
    x, _ = d.tensors(dtype=torch.float64)
    expected = pillow_bilinear(wrap_bytes(d.images), 7).to(torch.float64) / 255
    assert torch.allclose(x[:, 0], expected)
    clean = mnist(split="test", n=40, size=7, resize="bilinear", scale="unit").tensors()[0]
    assert not torch.allclose(x.float(), clean)  # the wrap changes real digits


def test_authors_at_full_size_only_wraps():
    d = mnist(split="test", n=5, resize="authors", scale="raw")
    x, _ = d.tensors(dtype=torch.float64)
    assert torch.equal(x[:, 0], wrap_bytes(d.images).to(torch.float64))


def test_mnist_for_passes_resize_through():
    a = mnist_for("small-fc", split="test", n=20, resize="authors")
    b = mnist(split="test", n=20, size=7, classes=(0, 1), scale="paper", resize="authors")
    assert a.resize is Resize.AUTHORS
    assert torch.equal(a.tensors()[0], b.tensors()[0])


def test_bad_resize_is_refused():
    with pytest.raises(ValueError, match=r"'resize' parameter of .*mnist must be one of 'area', "
                       r"'bilinear', 'authors', got 'nearest'"):  # fmt: skip
        mnist(split="test", n=2, size=7, resize="nearest")
