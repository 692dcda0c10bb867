"""The four networks of Chaudhari & Soatto (ICLR 2018), with the authors' exact architectures.

Rebuilt from the authors' ``models.py`` at commit ``4e1bd82`` of ``pratikac/grad-info``
(github.com/pratikac/grad-info). Parameter counts ``d`` (all weights, biases and BatchNorm γ/β; BN
running buffers are not parameters) match the paper where it states them:

==============  ==================  ================  =========================================
name            input (per sample)  default classes   d
==============  ==================  ================  =========================================
small-lenet     1 × 28 × 28         10                13,338 (Fig. 1a)
small-fc        1 × 7 × 7 (or 49)   10                3,978 (Fig. 1b; 10 outputs as in code)
tiny-fc         1 × 7 × 7 (or 49)   5                 917 (5 classes, §IV-B); 900 for 4
small-allcnn    3 × 32 × 32         10                26,982 (CIFAR-10, Fig. 2a); 29,412 for 100
==============  ==================  ================  =========================================

Architectures (ConvBN = Conv2d with bias + BatchNorm2d + ReLU):

- ``small-lenet`` (``lenets``): Conv(1→8, 5×5)–BN–ReLU–MaxPool(3, stride 3)–Dropout(0.1);
  Conv(8→16, 5×5)–BN–ReLU–MaxPool(2, stride 2)–Dropout(0.1); flatten (64);
  Linear(64→128)–BN1d–ReLU–Dropout(0.1); Linear(128→C). The paper mentions dropout after the
  convolutions only; the code also has it after the first linear layer, kept here.
- ``small-fc`` (``fclenets``): flatten (49); Linear(49→64)–BN1d–ReLU; Linear(64→C).
- ``tiny-fc`` (``fclenett``): flatten (49); Linear(49→16)–BN1d–ReLU; Linear(16→C).
- ``small-allcnn`` (``allcnns``): ConvBN(3→12, 3, p1), ConvBN(12→12, 3, p1),
  ConvBN(12→12, 3, s2, p1), ConvBN(12→24, 3, p1), ConvBN(24→24, 3, p1), ConvBN(24→24, 3, s2, p1),
  ConvBN(24→24, 3, p1), ConvBN(24→24, 3, p1), ConvBN(24→C, 1×1), AvgPool(8), view(C). The
  code's two Dropout(0) layers are no-ops and omitted; the input Dropout(0.2) it had on Sep 8
  was removed on Oct 22 and is omitted too.

Initialisation is PyTorch's current default, not that of PyTorch 0.2 that the authors used; pass
``seed`` for a reproducible initialisation that leaves the global RNG untouched. The paper's
training recipe (cross-entropy, SGD with heavy-ball momentum 0.9, batch 128, lr 0.1, weight decay
per model) is recorded in :class:`ModelInfo`.

The fully connected nets flatten inside, so they accept N × 1 × 7 × 7, N × 7 × 7 or N × 49. All
four are per-sample in eval mode (BatchNorm uses running statistics, dropout is off), which is
the mode in which the paper measured D(x) (§IV-A).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch
from torch import nn

from .._validation import check_int, check_option

__all__ = [
    "ModelInfo",
    "ModelName",
    "build",
    "info",
    "input_shape",
    "names",
    "parameter_count",
    "small_allcnn",
]


class ModelName(str, Enum):
    """The paper's four networks (§IV)."""

    SMALL_LENET = "small-lenet"
    SMALL_FC = "small-fc"
    TINY_FC = "tiny-fc"
    SMALL_ALLCNN = "small-allcnn"


@dataclass(frozen=True)
class ModelInfo:
    """What the paper used each network for.

    Attributes:
        name: The network's name.
        code_name: The class name in the authors' ``models.py``.
        input_shape: Shape of one input sample, without the batch dimension.
        num_classes: Default number of outputs (the paper's setting).
        parameters: Parameter count ``d`` at the default number of classes.
        dataset: The data the paper trained it on, in words.
        dropout: Dropout probability in the network.
        weight_decay: L2 coefficient used in training (``opt['l2']`` of the code).
        figure: Where the paper reports on it.
    """

    name: ModelName
    code_name: str
    input_shape: tuple[int, ...]
    num_classes: int
    parameters: int
    dataset: str
    dropout: float
    weight_decay: float
    figure: str


_INFO: dict[ModelName, ModelInfo] = {
    ModelName.SMALL_LENET: ModelInfo(
        ModelName.SMALL_LENET,
        "lenets",
        (1, 28, 28),
        10,
        13_338,
        "MNIST 28x28, raw 0-255 pixels (sgdscope.paper.data.mnist(scale='paper'))",
        0.1,
        0.0,
        "Fig. 1a",
    ),
    ModelName.SMALL_FC: ModelInfo(
        ModelName.SMALL_FC,
        "fclenets",
        (1, 7, 7),
        10,
        3_978,
        "MNIST down-sampled to 7x7; the code's defaults keep digits 0 and 1 only "
        "(mnist(size=7, classes=(0, 1)))",
        0.0,
        0.0,
        "Fig. 1b",
    ),
    ModelName.TINY_FC: ModelInfo(
        ModelName.TINY_FC,
        "fclenett",
        (1, 7, 7),
        5,
        917,
        "MNIST 7x7, digits 0-4 (mnist(size=7, classes=range(5))); the Fig. 3a-b run used "
        "4 classes x 512 images (900 parameters)",
        0.0,
        0.0,
        "Fig. 3, §IV-B",
    ),
    ModelName.SMALL_ALLCNN: ModelInfo(
        ModelName.SMALL_ALLCNN,
        "allcnns",
        (3, 32, 32),
        10,
        26_982,
        "CIFAR-10/100 32x32 after global contrast normalisation + ZCA, no augmentation",
        0.0,
        1e-4,
        "Fig. 2",
    ),
}

_WHERE = "sgdscope.paper.models.build"


def names() -> tuple[str, ...]:
    """Return the names of the four networks, in the paper's order.

    Returns:
        ``("small-lenet", "small-fc", "tiny-fc", "small-allcnn")``.
    """
    return tuple(m.value for m in ModelName)


def info(name: str | ModelName) -> ModelInfo:
    """Return the paper's metadata for a network.

    Args:
        name: One of :func:`names`.

    Returns:
        The network's :class:`ModelInfo`.

    Raises:
        ValueError: If the name is unknown; the message lists the valid names.
    """
    return _INFO[check_option("name", name, ModelName, where="sgdscope.paper.models.info")]


def input_shape(name: str | ModelName) -> tuple[int, ...]:
    """Return the shape of one input sample of a network (no batch dimension).

    Args:
        name: One of :func:`names`.

    Returns:
        ``(1, 28, 28)``, ``(1, 7, 7)``, ``(1, 7, 7)`` or ``(3, 32, 32)``.

    Raises:
        ValueError: If the name is unknown.
    """
    return info(name).input_shape


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int = 0) -> list:
    return [
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=True),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    ]


def _small_lenet(num_classes: int) -> nn.Sequential:
    p = _INFO[ModelName.SMALL_LENET].dropout
    return nn.Sequential(
        nn.Conv2d(1, 8, 5),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(3, 3),
        nn.Dropout(p),
        nn.Conv2d(8, 16, 5),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Dropout(p),
        nn.Flatten(),
        nn.Linear(64, 128),
        nn.BatchNorm1d(128),
        nn.ReLU(),
        nn.Dropout(p),
        nn.Linear(128, num_classes),
    )


def _fc(hidden: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(49, hidden),
        nn.BatchNorm1d(hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )


def small_allcnn(num_classes: int = 10, width: int = 1) -> nn.Sequential:
    """small-allcnn with its channel counts (12, 24) multiplied by ``width``.

    ``width=1`` is the paper's network (26,982 parameters for 10 classes); wider variants serve
    the scaling benchmarks (about 26,712 · width² parameters).

    Returns:
        The network, freshly initialised.
    """
    width = check_int("width", width, where="sgdscope.paper.models.small_allcnn", low=1)
    c1, c2 = 12 * width, 24 * width
    return nn.Sequential(
        *_conv_bn(3, c1, 3, padding=1),
        *_conv_bn(c1, c1, 3, padding=1),
        *_conv_bn(c1, c1, 3, stride=2, padding=1),
        *_conv_bn(c1, c2, 3, padding=1),
        *_conv_bn(c2, c2, 3, padding=1),
        *_conv_bn(c2, c2, 3, stride=2, padding=1),
        *_conv_bn(c2, c2, 3, padding=1),
        *_conv_bn(c2, c2, 3, padding=1),
        *_conv_bn(c2, num_classes, 1),
        nn.AvgPool2d(8),
        nn.Flatten(),
    )


def parameter_count(model: nn.Module) -> int:
    """Return ``d``, the number of scalar parameters that require grad.

    Args:
        model: Any module.

    Returns:
        The sum of ``p.numel()`` over ``model.parameters()`` with ``requires_grad``.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def build(
    name: str | ModelName, num_classes: int | None = None, *, seed: int | None = None
) -> nn.Module:
    """Build one of the paper's four networks (Chaudhari & Soatto, §IV).

    The parameter count is ``d = 13,338`` (small-lenet), ``3,978`` (small-fc),
    ``917`` / ``900`` (tiny-fc with 5 / 4 classes) and ``26,982`` / ``29,412`` (small-allcnn with
    10 / 100 classes). With C classes: small-lenet ``12,048 + 129 C``; small-fc ``3,328 + 65 C``;
    tiny-fc ``832 + 17 C``; small-allcnn ``26,712 + 27 C``.

    Args:
        name: ``"small-lenet"``, ``"small-fc"``, ``"tiny-fc"`` or ``"small-allcnn"``.
        num_classes: Number of outputs C; None takes the paper's (10, 10, 5, 10).
        seed: Seed for the initial weights, drawn without touching the global RNG; None uses the
            global RNG as ``nn.Module`` constructors do.

    Returns:
        An ``nn.Sequential`` in train mode. Call ``.eval()`` before measuring D(x).

    Raises:
        ValueError: If the name is unknown (the message lists the names) or ``num_classes``
            is not an int ≥ 2.

    Example:
        >>> model = build("small-lenet", seed=0)
        >>> sum(p.numel() for p in model.parameters())
        13338
        >>> model.eval()(torch.zeros(2, *input_shape("small-lenet"))).shape
        torch.Size([2, 10])
    """
    key = check_option("name", name, ModelName, where=_WHERE)
    c = _INFO[key].num_classes if num_classes is None else num_classes
    c = check_int("num_classes", c, where=_WHERE, low=2)
    makers = {
        ModelName.SMALL_LENET: lambda: _small_lenet(c),
        ModelName.SMALL_FC: lambda: _fc(64, c),
        ModelName.TINY_FC: lambda: _fc(16, c),
        ModelName.SMALL_ALLCNN: lambda: small_allcnn(c),
    }
    if seed is None:
        return makers[key]()
    seed = check_int("seed", seed, where=_WHERE, low=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return makers[key]()
