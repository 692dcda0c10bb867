"""Shared small problems for the gradient-noise tests."""

import torch
from torch import nn


def small_cnn(seed: int = 0) -> nn.Module:
    """Conv + BN + dropout + linear on 8×8 images: d = 40 + 8 + 435 = 483 (BN in eval mode by default)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Dropout(0.1),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 3),
    )


def image_data(n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g)


def mlp(seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).to(dtype)


def tabular_data(
    n: int, seed: int = 1, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g, dtype=dtype), torch.randint(0, 3, (n,), generator=g)


def cross_entropy() -> nn.Module:
    return nn.CrossEntropyLoss(reduction="none")


def warm_up_batchnorm(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Give BatchNorm non-trivial running statistics, then leave the model in train mode."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(x)
    return model
