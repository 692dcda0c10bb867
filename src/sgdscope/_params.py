"""What "x" is: the parameters that make up the flat vector, where each one sits, and the model mode.

The parameter vector x is the concatenation, in ``model.named_parameters()`` order, of the
parameters that require grad (or those selected with ``params=``). Every part of sgdscope that
speaks of x (the gradient-noise engine, the trajectory recorder) selects it here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from math import prod

import numpy as np
import torch
from torch import nn

__all__ = ["LossFn", "ParamLayout", "model_mode", "select_params", "train_mode_batchnorms"]

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
        names = [by_id.get(id(p), n) if n not in named else n for n, p in params.items()]
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
