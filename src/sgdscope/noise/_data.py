"""Random access to a finite data set given as tensors, a Dataset or a DataLoader."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, default_collate

__all__ = ["DataSource"]


class DataSource:
    """A finite data set of ``(input, target)`` pairs with random access by index.

    Accepts a tuple ``(inputs, targets)`` of tensors with equal first dimension, a map-style
    ``Dataset`` whose items are ``(input, target)``, or a ``DataLoader`` over such a Dataset (its
    dataset and collate function are used; its sampler and batch size are not, because D(x) is a
    sum over every sample, whatever the order).

    Args:
        data: The data, in one of the forms above.
        where: Name of the caller, for error messages.

    Raises:
        TypeError: If ``data`` is none of the accepted forms.
        ValueError: If it holds no samples, or the tensors' first dimensions differ.
    """

    def __init__(self, data, *, where: str = "GradientNoise") -> None:
        self._tensors: tuple[torch.Tensor, torch.Tensor] | None = None
        self._dataset: Dataset | None = None
        self._collate = default_collate
        if (
            isinstance(data, tuple | list)
            and len(data) == 2
            and all(torch.is_tensor(t) for t in data)
        ):
            x, y = data
            if x.shape[0] != y.shape[0]:
                raise ValueError(
                    f"the 'data' parameter of {where} must hold inputs and targets with the same "
                    f"number of samples, got {x.shape[0]} inputs and {y.shape[0]} targets."
                )
            self._tensors = (x, y)
            n = x.shape[0]
        elif isinstance(data, DataLoader):
            if isinstance(data.dataset, IterableDataset):
                raise TypeError(
                    f"the 'data' parameter of {where} must be a DataLoader over a map-style Dataset "
                    "(with __len__ and __getitem__), got one over an IterableDataset. D(x) needs a "
                    "finite data set: materialise it as tensors (inputs, targets)."
                )
            self._dataset = data.dataset
            self._collate = data.collate_fn or default_collate
            n = len(data.dataset)
        elif isinstance(data, Dataset) and hasattr(data, "__len__"):
            self._dataset = data
            n = len(data)
        else:
            raise TypeError(
                f"the 'data' parameter of {where} must be a tuple (inputs, targets) of tensors, a "
                f"map-style torch Dataset, or a DataLoader, got {type(data).__name__}."
            )
        if n == 0:
            raise ValueError(
                f"the 'data' parameter of {where} holds no samples (an empty data set); D(x) is a "
                "mean over samples and needs at least 2."
            )
        self.n = int(n)

    def __len__(self) -> int:
        return self.n

    def get(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The inputs and targets of the samples ``idx`` (a 1-D integer tensor), stacked."""
        if self._tensors is not None:
            x, y = self._tensors
            return x[idx], y[idx]
        items = [self._dataset[int(i)] for i in idx]
        x, y = self._collate(items)
        return x, y

    def chunks(self, chunk_size: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """Yield ``(start, inputs, targets)`` for consecutive chunks covering every sample once."""
        for start in range(0, self.n, chunk_size):
            idx = torch.arange(start, min(start + chunk_size, self.n))
            x, y = self.get(idx)
            yield start, x, y

    def first(self, count: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``count`` samples, for cheap shape checks."""
        return self.get(torch.arange(min(count, self.n)))
