import pytest
import torch
from torch import nn

from sgdscope.paper import models
from sgdscope.paper.models import ModelName, build, info, input_shape, names, parameter_count

# The paper's counts (Figs 1-2 captions, §IV-B) and the authors' models.py (pratikac/grad-info@4e1bd82),
# for (name, classes).
PAPER_COUNTS = [
    ("small-lenet", 10, 13_338),
    ("small-fc", 10, 3_978),
    ("tiny-fc", 5, 917),
    ("tiny-fc", 4, 900),
    ("small-allcnn", 10, 26_982),
    ("small-allcnn", 100, 29_412),
]


def _hand_count(name: str, c: int) -> int:
    """Parameter count from the authors' models.py (pratikac/grad-info@4e1bd82), written out layer by layer."""

    def conv(ci, co, k):
        return ci * co * k * k + co

    def lin(i, o):
        return i * o + o

    def bn(ch):
        return 2 * ch

    if name == "small-lenet":
        return (
            conv(1, 8, 5) + bn(8) + conv(8, 16, 5) + bn(16) + lin(64, 128) + bn(128) + lin(128, c)
        )
    if name == "small-fc":
        return lin(49, 64) + bn(64) + lin(64, c)
    if name == "tiny-fc":
        return lin(49, 16) + bn(16) + lin(16, c)
    layers = [(3, 12, 3), (12, 12, 3), (12, 12, 3), (12, 24, 3), (24, 24, 3), (24, 24, 3)]
    layers += [(24, 24, 3), (24, 24, 3), (24, c, 1)]
    return sum(conv(ci, co, k) + bn(co) for ci, co, k in layers)


@pytest.mark.parametrize(("name", "classes", "count"), PAPER_COUNTS, ids=lambda v: str(v))
def test_parameter_counts_match_the_paper(name, classes, count):
    model = build(name, classes)
    assert parameter_count(model) == count
    assert sum(p.numel() for p in model.parameters()) == count
    assert _hand_count(name, classes) == count


def test_default_classes_give_the_paper_counts():
    for name in names():
        assert parameter_count(build(name)) == info(name).parameters
    assert info("tiny-fc").num_classes == 5


@pytest.mark.parametrize("name", names())
@pytest.mark.parametrize("classes", [2, 3, 7])
def test_counts_for_any_number_of_classes(name, classes):
    assert parameter_count(build(name, classes)) == _hand_count(name, classes)


@pytest.mark.parametrize("name", names())
def test_forward_shapes(name):
    model = build(name, seed=0).eval()
    x = torch.randn(4, *input_shape(name))
    out = model(x)
    assert out.shape == (4, info(name).num_classes)
    assert out.dtype == torch.float32


@pytest.mark.parametrize("name", ["small-fc", "tiny-fc"])
@pytest.mark.parametrize("shape", [(3, 1, 7, 7), (3, 7, 7), (3, 49)])
def test_fc_nets_flatten_inside(name, shape):
    model = build(name, seed=1).eval()
    x = torch.randn(3, 49)
    expected = model(x)
    torch.testing.assert_close(model(x.reshape(shape)), expected)


def test_input_shapes():
    assert input_shape("small-lenet") == (1, 28, 28)
    assert input_shape(ModelName.SMALL_FC) == (1, 7, 7)
    assert input_shape("tiny-fc") == (1, 7, 7)
    assert input_shape("small-allcnn") == (3, 32, 32)


def test_architecture_details():
    lenet = build("small-lenet")
    kinds = [type(m).__name__ for m in lenet]
    assert kinds == [
        "Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Dropout",
        "Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Dropout",
        "Flatten", "Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear",
    ]  # fmt: skip
    assert [m.p for m in lenet if isinstance(m, nn.Dropout)] == [0.1, 0.1, 0.1]
    pools = [(m.kernel_size, m.stride) for m in lenet if isinstance(m, nn.MaxPool2d)]
    assert pools == [(3, 3), (2, 2)]
    allcnn = build("small-allcnn", 10)
    convs = [m for m in allcnn if isinstance(m, nn.Conv2d)]
    assert [c.stride for c in convs] == [(1, 1), (1, 1), (2, 2)] + [(1, 1)] * 2 + [(2, 2)] + [
        (1, 1)
    ] * 3
    assert all(c.bias is not None for c in convs)
    # every conv, the last 1x1 included, is followed by BN and ReLU
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in allcnn)
    n_relu = sum(isinstance(m, nn.ReLU) for m in allcnn)
    assert n_bn == n_relu == len(convs) == 9
    assert not any(isinstance(m, nn.Dropout) for m in allcnn)


@pytest.mark.parametrize("name", names())
def test_eval_mode_forward_is_per_sample(name):
    """Oracle: in eval mode, the output for a batch equals the outputs of the samples alone."""
    model = build(name, seed=2).eval()
    x = torch.randn(5, *input_shape(name))
    batch = model(x)
    alone = torch.cat([model(x[i : i + 1]) for i in range(5)])
    torch.testing.assert_close(batch, alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", names())
def test_per_sample_gradients_through_torch_func(name):
    """Oracle for the noise engine: vmap(grad) equals a loop of single-sample backward passes."""
    model = build(name, seed=3).eval()
    params = {k: v.detach() for k, v in model.named_parameters()}
    x = torch.randn(3, *input_shape(name))
    y = torch.arange(3) % info(name).num_classes

    def loss(p, xi, yi):
        out = torch.func.functional_call(model, p, (xi.unsqueeze(0),))
        return nn.functional.cross_entropy(out, yi.unsqueeze(0))

    grads = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0))(params, x, y)
    for i in range(3):
        model.zero_grad()
        nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        for k, p in model.named_parameters():
            torch.testing.assert_close(grads[k][i], p.grad, rtol=1e-4, atol=1e-6)


def test_seed_is_reproducible_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = build("small-lenet", seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    b = build("small-lenet", seed=7)
    c = build("small-lenet", seed=8)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert not all(
        torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters(), strict=True)
    )


def test_names_and_enum():
    assert names() == ("small-lenet", "small-fc", "tiny-fc", "small-allcnn")
    assert parameter_count(build(ModelName.TINY_FC, 4)) == 900
    assert info("small-allcnn").weight_decay == 1e-4
    assert info("small-lenet").code_name == "lenets"


def test_unknown_name_lists_the_names():
    with pytest.raises(ValueError, match=r"'name' parameter .* must be one of 'small-lenet', "
                       r"'small-fc', 'tiny-fc', 'small-allcnn', got 'lenet'"):  # fmt: skip
        build("lenet")
    with pytest.raises(ValueError, match=r"'name' parameter of sgdscope.paper.models.info"):
        input_shape("resnet")


@pytest.mark.parametrize("bad", [1, 0, -3, 2.5, "10"])
def test_bad_num_classes(bad):
    with pytest.raises(
        ValueError, match=r"'num_classes' parameter .* must be an int in \[2, inf\]"
    ):
        build("small-fc", bad)


def test_bad_seed():
    with pytest.raises(ValueError, match=r"'seed' parameter .* must be an int in \[0, inf\]"):
        build("tiny-fc", seed=-1)


def test_module_exports():
    assert set(models.__all__) <= set(dir(models))
