"""Per-sample gradients g_k = ∇ℓ_k(x) through ``torch.func`` (functional_call + vmap(grad)).

The kernel is a pure function of (parameters, inputs, targets); :class:`GradientNoise` wraps it
with chunking, memory budgets and checks. Chaudhari & Soatto (2018) computed the same g_k with a
batch-size-1 loop (DIGEST §2.2, step 3); vmap computes a whole chunk in one call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

__all__ = ["LossFn", "make_per_sample_gradients", "model_mode", "train_mode_batchnorms"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``loss_fn(outputs, targets) -> per-sample losses of shape (n,)`` (``reduction="none"``)."""


def train_mode_batchnorms(model: nn.Module) -> list[str]:
    """Names of the BatchNorm modules of ``model`` that are in training mode."""
    return [
        name or type(m).__name__
        for name, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training
    ]


@contextmanager
def model_mode(model: nn.Module, eval_mode: bool):
    """Put ``model`` in eval mode for the duration (if asked), then restore every module's flag."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        if eval_mode:
            model.eval()
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def make_per_sample_gradients(
    model: nn.Module,
    loss_fn: LossFn,
    names: Sequence[str],
    *,
    stochastic: bool = False,
) -> Callable[[dict, dict, torch.Tensor, torch.Tensor], torch.Tensor]:
    """Build ``f(trainable, constants, x, y, out=None) -> G``, G[i] = ∇ ℓ(x_i, y_i) flattened, (n, d).

    ``trainable`` maps the names in ``names`` to tensors; ``constants`` holds every other parameter
    and buffer of ``model``. Parameters are differentiated in the order of ``names``.

    Args:
        model: The network; its forward must treat samples independently.
        loss_fn: Per-sample loss ``loss_fn(outputs, targets) -> (n,)``.
        names: Names of the parameters that make up x.
        stochastic: The forward draws random numbers (dropout in train mode); each sample then
            gets its own draw (``vmap(randomness="different")``).

    Returns:
        The batched per-sample-gradient function; ``out`` (n, d) receives the result when given,
        so that a caller can reuse one buffer across chunks.
    """
    names = list(names)

    def sample_loss(trainable: dict, constants: dict, x: torch.Tensor, y: torch.Tensor):
        out = functional_call(model, {**constants, **trainable}, (x.unsqueeze(0),))
        return loss_fn(out, y.unsqueeze(0)).reshape(())

    batched = vmap(
        grad(sample_loss),
        in_dims=(None, None, 0, 0),
        randomness="different" if stochastic else "error",
    )

    def per_sample(
        trainable: dict,
        constants: dict,
        x: torch.Tensor,
        y: torch.Tensor,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        grads = batched(trainable, constants, x, y)
        return torch.cat([grads[n].reshape(x.shape[0], -1) for n in names], dim=1, out=out)

    return per_sample
