"""What "x" is: the parameters that make up the flat vector, where each one sits, and the model mode.

The parameter vector x is the concatenation, in ``model.named_parameters()`` order, of the
parameters that require grad (or those selected with ``params=``). Every part of sgdscope that
speaks of x (the gradient-noise engine, the trajectory recorder) selects it here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from math import prod
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "LossFn",
    "ParamLayout",
    "as_batches",
    "full_gradient",
    "model_mode",
    "select_params",
    "train_mode_batchnorms",
]

LossFn = Callable[..., torch.Tensor]
"""``loss_fn(outputs, targets) -> per-sample losses of shape (n,)`` (``reduction="none"``).

``outputs`` is whatever the model returns (a tensor, a tuple, a dict or a Hugging Face
``ModelOutput``); ``targets`` is the batch's targets.
"""


def train_mode_batchnorms(model: nn.Module) -> list[str]:
    """Names of the BatchNorm modules of ``model`` that are in training mode."""
    return [
        name or type(m).__name__
        for name, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training
    ]


@contextmanager
def model_mode(model: nn.Module, eval_mode: bool) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the duration (if asked), then restore *each* module's flag."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        if eval_mode:
            model.eval()
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def select_params(model: nn.Module, params, *, where: str) -> list[str]:
    """The names of the parameters that make up x, in ``model.named_parameters()`` order.

    Args:
        model: The network.
        params: None (every parameter that requires grad); a parameter name; a submodule of
            ``model`` (its parameters); or an iterable of names and/or parameter tensors; or a
            dict from name to parameter.
        where: The caller, for error messages.

    Returns:
        The names, in ``model.named_parameters()`` order.

    Raises:
        ValueError: On names or tensors that are not parameters of ``model``, or an empty selection.
    """
    named = dict(model.named_parameters())
    by_id = {id(p): n for n, p in named.items()}
    if params is None:
        names = [n for n, p in named.items() if p.requires_grad]
    elif isinstance(params, str):
        names = [params]
    elif isinstance(params, nn.Module):
        names = [by_id[id(p)] for p in params.parameters() if id(p) in by_id]
        if not names:
            raise ValueError(
                f"the 'params' parameter of {where} is a module that holds none of the model's "
                "parameters; pass a submodule of the model (e.g. params=model.fc)."
            )
    elif isinstance(params, dict):
        names = [n if n in named or id(p) not in by_id else by_id[id(p)] for n, p in params.items()]
    else:
        names = []
        for p in params:
            if isinstance(p, str):
                names.append(p)
            elif torch.is_tensor(p) and id(p) in by_id:
                names.append(by_id[id(p)])
            else:
                raise ValueError(
                    f"the 'params' parameter of {where} must hold parameter names or parameters "
                    f"of the model, got a {type(p).__name__} that is not one of them. Pass e.g. "
                    "[n for n, _ in model.named_parameters() if n.startswith('fc')]."
                )
    unknown = [n for n in names if n not in named]
    if unknown:
        raise ValueError(
            f"the 'params' parameter of {where} names parameters the model does not have: "
            f"{unknown}. The model's parameters are {list(named)}."
        )
    if not names:
        raise ValueError(
            f"the 'params' parameter of {where} selects no parameters (none require grad?); "
            "x needs at least one."
        )
    order = {n: i for i, n in enumerate(named)}
    return sorted(dict.fromkeys(names), key=order.__getitem__)


def as_batches(data: Any) -> Iterable:
    """``data`` as an iterable of ``(inputs, targets)`` batches.

    A tuple or list ``(inputs, targets)`` of two tensors is one batch; anything else (a
    DataLoader, a list of batches) is iterated as it is.

    Returns:
        An iterable of ``(inputs, targets)`` batches (a one-element list for one batch).
    """
    if (
        isinstance(data, tuple | list)
        and len(data) == 2
        and all(isinstance(t, torch.Tensor) for t in data)
    ):
        return [tuple(data)]
    return data


def full_gradient(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    params: Sequence[nn.Parameter],
    *,
    eval_mode: bool = True,
    where: str = "full_gradient",
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The full-data gradient of the selected parameters and the mean loss, in one pass.

    .. math:: \nabla f(x) = \frac{1}{N}\sum_{k=1}^{N} \nabla \ell_k(x),\qquad
        f(x) = \frac{1}{N}\sum_{k=1}^{N} \ell_k(x)

    (Chaudhari & Soatto 2018, eq. 1; the paper's g, whose norm Fig. 3c plots). Computed with
    :func:`torch.autograd.grad`, so the ``.grad`` fields of the model are left alone; in eval
    mode when ``eval_mode`` (BatchNorm running statistics, no dropout), after which *each*
    module's own training flag is restored.

    Args:
        model: The network.
        loss_fn: Per-sample loss ``loss_fn(outputs, targets) -> (b,)`` (``reduction="none"``).
        data: A tuple ``(inputs, targets)`` of tensors, or an iterable of such batches (a
            DataLoader).
        params: The parameters that make up x, in layout order (a parameter that the loss does
            not reach gets a zero gradient).
        eval_mode: Compute with the model in eval mode.
        where: The caller, for error messages.

    Returns:
        ``(g, f)``: the gradient, a float64 tensor (d,) on the parameters' device, and the mean
        loss, a float64 0-d tensor (no device synchronisation is made).

    Raises:
        ValueError: If ``loss_fn`` does not return per-sample losses, or ``data`` is empty.

    Example:
        >>> model = torch.nn.Linear(2, 1, bias=False)
        >>> x, y = torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.zeros(2, 1)
        >>> with torch.no_grad():
        ...     _ = model.weight.fill_(1.0)
        >>> sq = lambda out, t: ((out - t) ** 2).sum(dim=1)
        >>> g, f = full_gradient(model, sq, (x, y), list(model.parameters()))
        >>> g.tolist(), f.item()  # ∇ of ((w1)² + (2 w2)²)/2 at w = (1, 1); f = (1 + 4)/2
        ([1.0, 4.0], 2.5)
    """
    device = params[0].device
    total = torch.zeros(sum(p.numel() for p in params), dtype=torch.float64, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    with model_mode(model, eval_mode=eval_mode):
        for batch in as_batches(data):
            inputs, targets = batch[0].to(device), batch[1].to(device)
            losses = loss_fn(model(inputs), targets)
            if losses.ndim != 1 or losses.shape[0] != inputs.shape[0]:
                raise ValueError(
                    f"the 'loss_fn' parameter of {where} must return per-sample losses of "
                    f"shape ({inputs.shape[0]},) (use reduction='none'), got shape "
                    f"{tuple(losses.shape)}. sgdscope never guesses a reduction."
                )
            grads = torch.autograd.grad(losses.sum(), list(params), allow_unused=True)
            flat = [
                torch.zeros(p.numel(), dtype=p.dtype, device=device) if g is None else g.reshape(-1)
                for g, p in zip(grads, params, strict=True)
            ]
            total += torch.cat(flat).double()
            loss_sum += losses.detach().sum().double()
            count += losses.shape[0]
    if count == 0:
        raise ValueError(
            f"the 'gradient_data' parameter of {where} yielded no samples; pass a non-empty "
            "DataLoader or (inputs, targets) tuple."
        )
    return total / count, loss_sum / count


@dataclass(frozen=True)
class ParamLayout:
    """Names, shapes and offsets of the parameters that make up the flat vector x of length d.

    Attributes:
        names: Parameter names, in ``model.named_parameters()`` order.
        shapes: Their shapes.
        offsets: Start index of each parameter in x; ``offsets[i] + numels[i]`` is its end.

    Example:
        >>> layout = ParamLayout.from_named([("w", torch.zeros(2, 3)), ("b", torch.zeros(2))])
        >>> layout.dim, layout.slice("b")
        (8, slice(6, 8, None))
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    offsets: tuple[int, ...]

    @classmethod
    def from_named(cls, named: Iterable[tuple[str, torch.Tensor]]) -> ParamLayout:
        """Build the layout from ``(name, tensor)`` pairs, in the order given."""
        names, shapes, offsets, pos = [], [], [], 0
        for name, tensor in named:
            names.append(name)
            shapes.append(tuple(tensor.shape))
            offsets.append(pos)
            pos += tensor.numel()
        return cls(tuple(names), tuple(shapes), tuple(offsets))

    @property
    def numels(self) -> tuple[int, ...]:
        """Number of entries of each parameter."""
        return tuple(prod(s) for s in self.shapes)

    @property
    def dim(self) -> int:
        """d, the length of the flat vector."""
        return sum(self.numels)

    def slice(self, name: str) -> slice:
        """The slice of x that holds parameter ``name``."""
        try:
            i = self.names.index(name)
        except ValueError:
            raise KeyError(
                f"no parameter named {name!r} in this layout; the names are {list(self.names)}."
            ) from None
        return slice(self.offsets[i], self.offsets[i] + self.numels[i])

    def name_of(self, index: int) -> str:
        """The name of the parameter that holds coordinate ``index`` of x."""
        if not 0 <= index < self.dim:
            raise IndexError(f"coordinate {index} is outside [0, {self.dim}).")
        i = int(np.searchsorted(np.asarray(self.offsets), index, side="right")) - 1
        return self.names[i]

    def split(self, vector: torch.Tensor | np.ndarray, *, reshape: bool = True) -> dict:
        """Split a d-vector (or an array whose first axis has length d) per parameter.

        Args:
            vector: Array with leading dimension d, e.g. a gradient (d,) or eigenvectors (d, k).
            reshape: Give each piece its parameter's shape (only for 1-D input).

        Returns:
            A dict from parameter name to the corresponding piece (a view where possible).

        Raises:
            ValueError: If the leading dimension of ``vector`` is not d.
        """
        if vector.shape[0] != self.dim:
            raise ValueError(
                f"the 'vector' parameter of ParamLayout.split must have leading dimension "
                f"d = {self.dim}, got shape {tuple(vector.shape)}."
            )
        out = {}
        for name, shape in zip(self.names, self.shapes, strict=True):
            piece = vector[self.slice(name)]
            out[name] = piece.reshape(shape) if reshape and vector.ndim == 1 else piece
        return out

    def block(self, matrix: torch.Tensor | np.ndarray, row: str, col: str | None = None):
        """The (row, col) block of a d × d matrix, e.g. the per-layer block of D."""
        return matrix[self.slice(row), self.slice(col or row)]

    def flatten(self, tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Concatenate per-parameter tensors (a dict by name) into one flat vector."""
        return torch.cat([tensors[n].reshape(-1) for n in self.names])

    def to_dict(self) -> dict:
        """A JSON-ready description: name, shape, offset per parameter."""
        return {
            "dim": self.dim,
            "params": [
                {"name": n, "shape": list(s), "offset": o}
                for n, s, o in zip(self.names, self.shapes, self.offsets, strict=True)
            ],
        }
