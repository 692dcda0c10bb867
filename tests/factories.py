"""Factories for `sgdscope spectrum --model tests.factories:NAME` (the CLI tests)."""

import torch
from torch import nn


def tiny_mlp():
    """(model, per-sample loss, data): a 2-layer MLP on 30 random samples, float64."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(30, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (30,), generator=g)
    return model, nn.CrossEntropyLoss(reduction="none"), (x, y)


def as_dict():
    model, loss, data = tiny_mlp()
    return {"model": model, "loss_fn": loss, "data": data}


def scalar_loss():
    model, _, data = tiny_mlp()
    return model, nn.CrossEntropyLoss(), data


def not_a_triple():
    return 42


NOT_CALLABLE = 3


def nan_on_rank_1():
    """The MLP's data with a NaN in sample 20: on rank 1 of 2 (samples 15 to 29)."""
    model, loss, (x, y) = tiny_mlp()
    x = x.clone()
    x[20, 0] = float("nan")
    return model, loss, (x, y)
