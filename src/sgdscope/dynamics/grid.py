"""Cell-centred tensor grids in 1–3 dimensions for the Fokker–Planck solver."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._validation import check_int, check_real

__all__ = ["Grid"]

_WHERE = "Grid"
# Cell widths whose 1/h² (the diffusion weights of the generator) stay well inside float64.
_MIN_SPACING = 1e-100
_MAX_SPACING = 1e100


@dataclass(frozen=True)
class Grid:
    r"""A box :math:`\prod_i [a_i, b_i]` cut into ``shape`` equal cells (finite-volume layout).

    Densities live at the **cell centres** ``x_k = a + (k + ½) h`` with spacing
    ``h_i = (b_i − a_i) / n_i``; faces sit half a cell away. A density is an array of shape
    ``grid.shape`` with ``density.sum() * grid.cell_volume == 1`` (docs/dynamics.md), i.e. the
    values are cell averages of ρ. Cell-centred rather than vertex-centred because the finite-volume
    scheme of :class:`~sgdscope.FokkerPlanck` balances fluxes through faces, so zero-flux
    (reflecting) and periodic boundaries are exact and mass is conserved to round-off.

    Args:
        bounds: One ``(low, high)`` pair per dimension, ``low < high``; 1 to 3 pairs.
        shape: Number of cells per dimension, each at least 3.

    Attributes:
        bounds: The box, as a tuple of ``(low, high)`` float pairs.
        shape: Cells per dimension.
        dim: Number of dimensions.
        spacing: ``h``, cell widths, shape ``(dim,)``.
        axes: List of 1-D arrays of cell-centre coordinates, one per dimension.
        points: Cell centres, shape ``(*shape, dim)``.
        cell_volume: ``prod(h)``.

    Example:
        >>> grid = Grid(bounds=[(-2, 2), (-1, 1)], shape=(40, 20))
        >>> grid.points.shape, round(grid.cell_volume, 12)
        ((40, 20, 2), 0.01)
    """

    bounds: tuple[tuple[float, float], ...]
    shape: tuple[int, ...]
    spacing: np.ndarray = field(init=False, repr=False, compare=False)

    def __init__(self, bounds: Sequence[Sequence[float]], shape: Sequence[int] | int):
        if isinstance(bounds, np.ndarray):
            bounds = bounds.tolist()
        try:
            pairs = [tuple(b) for b in bounds]
        except TypeError:
            pairs = []
        if not 1 <= len(pairs) <= 3 or any(len(p) != 2 for p in pairs):
            raise ValueError(
                f"the 'bounds' parameter of {_WHERE} must be 1 to 3 (low, high) pairs, "
                f"got {bounds!r}. Example: bounds=[(-2, 2), (-2, 2)]."
            )
        clean = []
        for i, (lo, hi) in enumerate(pairs):
            lo = check_real(f"bounds[{i}][0]", lo, where=_WHERE)
            hi = check_real(f"bounds[{i}][1]", hi, where=_WHERE, low=lo, low_open=True)
            clean.append((lo, hi))
        dim = len(clean)
        given: Any = shape  # not validated yet: anything may arrive
        if isinstance(given, int | np.integer) and not isinstance(given, bool):
            given = (int(given),) * dim
        try:
            cells = tuple(given)
        except TypeError:
            raise ValueError(
                f"the 'shape' parameter of {_WHERE} must be an int or a sequence of ints (cells "
                f"per dimension), got {shape!r}. Example: shape=(201, 201)."
            ) from None
        if len(cells) != dim:
            raise ValueError(
                f"the 'shape' parameter of {_WHERE} must have one entry per dimension ({dim}), "
                f"got {cells!r}."
            )
        sizes = tuple(
            check_int(
                f"shape[{i}]", n, where=_WHERE, low=3, hint="Centred differences need 3 cells."
            )
            for i, n in enumerate(cells)
        )
        object.__setattr__(self, "bounds", tuple(clean))
        object.__setattr__(self, "shape", sizes)
        h = np.array([(hi - lo) / n for (lo, hi), n in zip(clean, sizes, strict=True)])
        for i, ((lo, hi), hi_) in enumerate(zip(clean, h, strict=True)):
            # the generator divides by h² and differences coordinates: both must be resolved
            tiny = 1e4 * np.finfo(float).eps * max(abs(lo), abs(hi))
            if not (_MIN_SPACING <= hi_ <= _MAX_SPACING) or hi_ <= tiny or hi - lo == np.inf:
                raise ValueError(
                    f"the 'bounds' parameter of {_WHERE} gives axis {i} = [{lo:g}, {hi:g}] a "
                    f"cell width h = {hi_:.3g} with {sizes[i]} cells, outside what float64 "
                    f"resolves (needs {_MIN_SPACING:g} ≤ h ≤ {_MAX_SPACING:g} and h > 10⁴ ε "
                    f"max(|low|, |high|) = {tiny:.3g}). Rescale the coordinates to O(1) units."
                )
        h.setflags(write=False)
        object.__setattr__(self, "spacing", h)

    @property
    def dim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    @property
    def size(self) -> int:
        """Total number of cells."""
        return int(np.prod(self.shape))

    @property
    def cell_volume(self) -> float:
        """Volume of one cell, ``prod(h)``."""
        return float(np.prod(self.spacing))

    @property
    def low(self) -> np.ndarray:
        """Lower corner of the box, shape ``(dim,)``."""
        return np.array([lo for lo, _ in self.bounds])

    @property
    def high(self) -> np.ndarray:
        """Upper corner of the box, shape ``(dim,)``."""
        return np.array([hi for _, hi in self.bounds])

    @property
    def axes(self) -> list[np.ndarray]:
        """Cell-centre coordinates along each axis: ``a_i + (k + ½) h_i``, k = 0..n_i−1."""
        return [
            lo + (np.arange(n) + 0.5) * h
            for (lo, _), n, h in zip(self.bounds, self.shape, self.spacing, strict=True)
        ]

    @property
    def points(self) -> np.ndarray:
        """Cell centres, shape ``(*shape, dim)``."""
        return np.stack(np.meshgrid(*self.axes, indexing="ij"), axis=-1)

    def face_points(self, axis: int, periodic: bool = False) -> np.ndarray:
        """Centres of the faces normal to ``axis`` between neighbouring cells.

        Args:
            axis: The axis the faces are normal to.
            periodic: Include the face that joins the last cell to the first (at ``high``).

        Returns:
            Array of shape ``(*face_shape, dim)`` where ``face_shape`` is ``shape`` with
            ``n_axis − 1`` (``n_axis`` when periodic) on ``axis``. Face k lies between cells
            k and k+1 along ``axis``.
        """
        axes = self.axes
        lo, _ = self.bounds[axis]
        n = self.shape[axis] if periodic else self.shape[axis] - 1
        axes[axis] = lo + (np.arange(n) + 1.0) * self.spacing[axis]
        return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)

    def integrate(self, values: np.ndarray) -> float | np.ndarray:
        """Midpoint-rule integral over the box of ``values`` (shape ``(*shape, ...)``)."""
        values = np.asarray(values)
        axes = tuple(range(self.dim))
        return values.sum(axis=axes) * self.cell_volume

    def index_of(self, point: Sequence[float]) -> tuple[int, ...]:
        """Multi-index of the cell containing ``point`` (clipped to the box)."""
        p = np.asarray(point, dtype=float)
        k = np.floor((p - self.low) / self.spacing).astype(int)
        return tuple(int(min(max(ki, 0), n - 1)) for ki, n in zip(k, self.shape, strict=True))
