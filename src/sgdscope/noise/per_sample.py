"""Per-sample gradients g_k = ∇ℓ_k(x) through ``torch.func`` (functional_call + vmap(grad)).

The kernel is a pure function of (parameters, inputs, targets). Chaudhari & Soatto (2018)
computed the same g_k with a batch-size-1 loop of ``loss.backward()`` calls; vmap computes a
whole chunk in one call. It is the engine's second, independent way to the same numbers (the
first is :mod:`._hooks`) and the one used when the forward draws random numbers.
:func:`per_sample_gradients_loop` is the third and slowest, one backward per sample: the
reference the hooks are checked against on the first samples, and the tests' oracle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.utils._pytree as pytree
from torch import nn
from torch.func import functional_call, grad, vmap

from .._params import LossFn
from ._data import call_model, take

__all__ = ["make_per_sample_gradients", "per_sample_gradients_loop"]


def _as_call(inputs: Any) -> tuple[tuple, dict]:
    if isinstance(inputs, dict):
        return (), inputs
    if isinstance(inputs, tuple):
        return inputs, {}
    return (inputs,), {}


def per_sample_gradients_loop(
    model: nn.Module,
    loss_fn: Callable[..., torch.Tensor],
    inputs: Any,
    targets: torch.Tensor,
    params: Sequence[str] | None = None,
) -> torch.Tensor:
    """Per-sample gradients by one backward pass per sample, shape (N, d), in named_parameters order.

    ``inputs`` is a tensor, a tuple or a dict of tensors (as :class:`~sgdscope.GradientNoise`
    takes them); a parameter a sample's loss does not reach gets a zero gradient. The model is
    used in whatever mode it is in (call ``model.eval()`` first to match the default of
    :class:`~sgdscope.GradientNoise`), and its ``.grad`` fields are left alone.

    Returns:
        The gradients, shape (N, d), in the parameters' dtype.
    """
    named = [
        (n, p)
        for n, p in model.named_parameters()
        if (p.requires_grad if params is None else n in params)
    ]
    rows = []
    with torch.enable_grad():
        for i in range(targets.shape[0]):
            out = call_model(model, take(inputs, slice(i, i + 1)))
            loss = loss_fn(out, targets[i : i + 1]).sum()
            grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
            rows.append(
                torch.cat(
                    [
                        (torch.zeros_like(p) if g is None else g).reshape(-1)
                        for (_, p), g in zip(named, grads, strict=True)
                    ]
                )
            )
    return torch.stack(rows).detach()


def make_per_sample_gradients(
    model: nn.Module,
    loss_fn: LossFn,
    names: Sequence[str],
    *,
    stochastic: bool = False,
) -> Callable[..., torch.Tensor]:
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

    def sample_loss(trainable: dict, constants: dict, x: Any, y: torch.Tensor):
        args, kwargs = _as_call(pytree.tree_map(lambda t: t.unsqueeze(0), x))
        out = functional_call(model, {**constants, **trainable}, args, kwargs)
        return loss_fn(out, y.unsqueeze(0)).reshape(())

    batched = vmap(
        grad(sample_loss),
        in_dims=(None, None, 0, 0),
        randomness="different" if stochastic else "error",
    )

    def per_sample(
        trainable: dict,
        constants: dict,
        x: Any,
        y: torch.Tensor,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        grads = batched(trainable, constants, x, y)
        n = y.shape[0]
        return torch.cat([grads[name].reshape(n, -1) for name in names], dim=1, out=out)

    return per_sample
