"""Random access to a finite data set given as tensors, a dict of tensors, a Dataset or a DataLoader.

A *batch* is ``(inputs, targets)``. ``inputs`` is a tensor (the model is called as
``model(inputs)``), a tuple of tensors (``model(*inputs)``) or a dict of tensors
(``model(**inputs)``, the Hugging Face convention); ``targets`` is what the loss receives beside
the model's output. One *sample* is one row of every tensor: for a sequence model, one sequence.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, default_collate

__all__ = ["DataSource", "call_model", "primary_output", "take", "to_device"]

TARGET_KEY = "labels"
"""The key that holds the targets in a dict batch (the Hugging Face convention)."""


def call_model(model: nn.Module, inputs: Any) -> Any:
    """Call ``model`` on a batch's inputs: a tensor, a tuple of tensors, or a dict of tensors."""
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, tuple):
        return model(*inputs)
    return model(inputs)


def primary_output(out: Any) -> torch.Tensor:
    """The tensor that carries a model's prediction.

    That is the output itself, ``logits`` of a dict / ``ModelOutput``, or a tuple's first tensor.

    Returns:
        The prediction tensor.

    Raises:
        TypeError: If the output holds no tensor.
    """
    if torch.is_tensor(out):
        return out
    if isinstance(out, dict):
        if torch.is_tensor(out.get("logits")):
            return out["logits"]
        out = tuple(out.values())
    if isinstance(out, tuple | list):
        for item in out:
            if torch.is_tensor(item):
                return item
    raise TypeError(
        f"the model returned a {type(out).__name__} with no tensor in it; sgdscope needs a tensor, "
        "a tuple whose first tensor is the prediction, or a dict / ModelOutput with 'logits'."
    )


def _map(inputs: Any, fn) -> Any:
    if isinstance(inputs, dict):
        return {k: fn(v) if torch.is_tensor(v) else v for k, v in inputs.items()}
    if isinstance(inputs, tuple):
        return tuple(fn(v) if torch.is_tensor(v) else v for v in inputs)
    return fn(inputs)


def take(inputs: Any, idx: torch.Tensor | slice) -> Any:
    """The samples ``idx`` of a batch's inputs (every tensor's rows; 0-d tensors pass through)."""
    return _map(inputs, lambda t: t[idx] if t.ndim else t)


def to_device(inputs: Any, device: torch.device) -> Any:
    """Move every tensor of a batch's inputs to ``device``."""
    return _map(inputs, lambda t: t.to(device))


def _rows(inputs: Any) -> int:
    if torch.is_tensor(inputs):
        return int(inputs.shape[0])
    values = inputs.values() if isinstance(inputs, dict) else inputs
    sizes = {int(v.shape[0]) for v in values if torch.is_tensor(v) and v.ndim > 0}
    if len(sizes) != 1:
        raise ValueError(
            f"the inputs of a batch must have one number of samples in every tensor, got {sorted(sizes)}."
        )
    return sizes.pop()


class DataSource:
    """A finite data set of ``(inputs, targets)`` samples with random access by index.

    Accepts:

    - a tuple ``(inputs, targets)`` where ``inputs`` is a tensor, a tuple of tensors or a dict of
      tensors, with one first dimension N everywhere;
    - a dict of tensors holding a ``"labels"`` entry (the targets) beside the model's keyword
      inputs, as a Hugging Face tokenizer returns it;
    - a map-style ``Dataset`` whose items are ``(input, target)`` pairs or such dicts;
    - a ``DataLoader`` over such a Dataset (its dataset and collate function are used; its sampler
      and batch size are not, because D(x) is a sum over every sample, whatever the order).

    Args:
        data: The data, in one of the forms above.
        where: Name of the caller, for error messages.

    Raises:
        TypeError: If ``data`` is none of the accepted forms.
        ValueError: If it holds no samples, or the tensors' first dimensions differ.
    """

    def __init__(self, data, *, where: str = "GradientNoise") -> None:
        self.where = where
        self._tensors: tuple[Any, torch.Tensor] | None = None
        self._dataset: Dataset | None = None
        self._collate = default_collate
        if isinstance(data, dict):
            data = self._split_dict(data)
        if isinstance(data, tuple | list) and len(data) == 2 and torch.is_tensor(data[1]):
            x, y = data
            if not (torch.is_tensor(x) or isinstance(x, dict | tuple)):
                raise TypeError(
                    f"the 'data' parameter of {where} holds inputs of type {type(x).__name__}; "
                    "inputs must be a tensor, a tuple of tensors or a dict of tensors."
                )
            n = _rows(x)
            if n != y.shape[0]:
                raise ValueError(
                    f"the 'data' parameter of {where} must hold inputs and targets with the same "
                    f"number of samples, got {n} inputs and {y.shape[0]} targets."
                )
            self._tensors = (x, y)
        elif isinstance(data, DataLoader):
            dataset = data.dataset
            if isinstance(dataset, IterableDataset) or not isinstance(dataset, Sized):
                got = (
                    "an IterableDataset"
                    if isinstance(dataset, IterableDataset)
                    else f"a {type(dataset).__name__} without __len__"
                )
                raise TypeError(
                    f"the 'data' parameter of {where} must be a DataLoader over a map-style Dataset "
                    f"(with __len__ and __getitem__), got one over {got}. D(x) needs a "
                    "finite data set: materialise it as tensors (inputs, targets)."
                )
            self._dataset = dataset
            self._collate = data.collate_fn or default_collate
            n = len(dataset)
        elif isinstance(data, Dataset) and hasattr(data, "__len__"):
            self._dataset = data
            n = len(data)
        else:
            raise TypeError(
                f"the 'data' parameter of {where} must be a tuple (inputs, targets), a dict of "
                f"tensors with a '{TARGET_KEY}' entry, a map-style torch Dataset, or a DataLoader, "
                f"got {type(data).__name__}."
            )
        if n == 0:
            raise ValueError(
                f"the 'data' parameter of {where} holds no samples (an empty data set); D(x) is a "
                "mean over samples and needs at least 2."
            )
        self.n = int(n)

    def _split_dict(self, batch: dict) -> tuple[dict, torch.Tensor]:
        if TARGET_KEY not in batch:
            raise ValueError(
                f"the 'data' parameter of {self.where} is a dict without a '{TARGET_KEY}' entry "
                f"(keys: {sorted(batch)}); sgdscope needs the targets of each sample. Add them as "
                f"'{TARGET_KEY}' (the Hugging Face convention, e.g. labels=input_ids for a causal "
                "LM), or pass a tuple (inputs_dict, targets)."
            )
        inputs = {k: v for k, v in batch.items() if k != TARGET_KEY}
        return inputs, batch[TARGET_KEY]

    def __len__(self) -> int:
        return self.n

    def get(self, idx: torch.Tensor) -> tuple[Any, torch.Tensor]:
        """The inputs and targets of the samples ``idx`` (a 1-D integer tensor), stacked."""
        if self._tensors is not None:
            x, y = self._tensors
            return take(x, idx), y[idx]
        assert self._dataset is not None  # data given as tensors, or as a dataset
        items = [self._dataset[int(i)] for i in idx]
        batch = self._collate(items)
        if isinstance(batch, dict):
            return self._split_dict(batch)
        if not (isinstance(batch, tuple | list) and len(batch) == 2):
            raise TypeError(
                f"the 'data' parameter of {self.where}: the Dataset's items must be (input, target) "
                f"pairs or dicts with '{TARGET_KEY}', got a collated {type(batch).__name__}."
            )
        x, y = batch
        return (tuple(x) if isinstance(x, list) else x), y

    def chunks(
        self, chunk_size: int, start: int = 0, stop: int | None = None
    ) -> Iterator[tuple[int, Any, torch.Tensor]]:
        """Yield ``(start, inputs, targets)`` for consecutive chunks covering [start, stop) once."""
        stop = self.n if stop is None else stop
        for begin in range(start, stop, chunk_size):
            idx = torch.arange(begin, min(begin + chunk_size, stop))
            x, y = self.get(idx)
            yield begin, x, y

    def first(self, count: int = 2) -> tuple[Any, torch.Tensor]:
        """The first ``count`` samples, for cheap shape checks."""
        return self.get(torch.arange(min(count, self.n)))
