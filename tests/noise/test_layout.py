import numpy as np
import pytest
import torch

from sgdscope import ParamLayout


def layout():
    return ParamLayout.from_named(
        [("a.weight", torch.zeros(2, 3)), ("a.bias", torch.zeros(2)), ("b", torch.zeros(4))]
    )


def test_offsets_and_slices():
    lay = layout()
    assert lay.dim == 12 and lay.offsets == (0, 6, 8)
    assert lay.slice("a.bias") == slice(6, 8)
    assert [lay.name_of(i) for i in (0, 5, 6, 7, 8, 11)] == ["a.weight"] * 2 + ["a.bias"] * 2 + [
        "b"
    ] * 2


def test_split_and_flatten_round_trip():
    lay = layout()
    v = torch.arange(12.0)
    parts = lay.split(v)
    assert parts["a.weight"].shape == (2, 3) and parts["b"].tolist() == [8, 9, 10, 11]
    torch.testing.assert_close(lay.flatten(parts), v)
    m = np.arange(144.0).reshape(12, 12)
    np.testing.assert_array_equal(lay.block(m, "b"), m[8:12, 8:12])
    np.testing.assert_array_equal(lay.block(m, "a.bias", "b"), m[6:8, 8:12])
    assert lay.split(np.zeros((12, 3)))["a.bias"].shape == (2, 3)
    assert lay.to_dict()["params"][1] == {"name": "a.bias", "shape": [2], "offset": 6}


def test_bad_input():
    lay = layout()
    with pytest.raises(KeyError, match=r"no parameter named 'c'.*\['a.weight', 'a.bias', 'b'\]"):
        lay.slice("c")
    with pytest.raises(ValueError, match=r"leading dimension d = 12, got shape \(5,\)"):
        lay.split(torch.zeros(5))
    with pytest.raises(IndexError, match=r"coordinate 12 is outside \[0, 12\)"):
        lay.name_of(12)
