"""Slow, obviously correct reference implementations for the gradient-noise engine.

These follow the authors' own method (``compute_sigma.py``, github.com/pratikac/grad-info, commit
4e1bd82): a batch-size-1 loop of ``loss.backward()`` calls, and D accumulated as rank-1 updates
``S += (g_k − g)(g_k − g)ᵀ`` of a dense d × d matrix. Tests use them as oracles and benchmarks as
the paper's baseline.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..noise.per_sample import per_sample_gradients_loop

__all__ = ["covariance_by_rank_one_updates", "per_sample_gradients_loop"]


def covariance_by_rank_one_updates(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """D = (1/N) Σ (g_k − g)(g_k − g)ᵀ the authors' way: full gradient first, then rank-1 updates.

    Two passes: the mean gradient g (as a mean of per-sample gradients), then a batch-size-1 loop
    adding ``torch.outer(g_k − g, g_k − g)`` to a dense d × d matrix.

    Returns:
        D, shape (d, d), in ``dtype``.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    n = inputs.shape[0]

    def grad_of(i: int) -> torch.Tensor:
        loss = loss_fn(model(inputs[i : i + 1]), targets[i : i + 1]).sum()
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]).to(dtype)

    total = grad_of(0)
    for i in range(1, n):
        total = total + grad_of(i)
    g = total / n
    d = g.numel()
    S = torch.zeros(d, d, dtype=dtype)
    for i in range(n):
        c = grad_of(i) - g
        S.add_(torch.outer(c, c))
    return S / n
