"""Where each parameter sits in the flat vector x (DESIGN.md: concatenation in named_parameters order)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from math import prod

import numpy as np
import torch

__all__ = ["ParamLayout"]


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
