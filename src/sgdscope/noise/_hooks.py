"""Per-sample gradients layer by layer from one ordinary forward and backward of a chunk.

Forward hooks keep each parameter-owning module's inputs (references, no copy) and put a tensor
hook on its output; the backward of Σ_i ℓ_i then hands over ∂ℓ_i/∂output for every sample at
once (samples do not interact, so row i of the batch gradient is sample i's). From inputs and
output gradients a *rule* builds each parameter's :class:`~.blocks.GradBlock`: factored for
Linear, Hugging Face ``Conv1D``, Conv1d/Conv2d (unfolded patches) and Embedding, per-sample
sums for LayerNorm, and for any other module a vmap over samples of the module's own
vector-Jacobian product (exact for any module whose samples do not interact). A module whose
parameters are used without calling it (``nn.MultiheadAttention``'s ``out_proj``) is handled
by its nearest ancestor that is called.

The attention kernels, fused or not, run batched as in training: nothing here goes through
forward-mode AD or a per-sample loop.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
import torch.utils._pytree as pytree
from torch import nn
from torch.func import functional_call, vjp, vmap
from torch.utils.hooks import RemovableHandle

from ._data import call_model
from .blocks import (
    ConcatBlock,
    EmbeddingFactors,
    GradBlock,
    LinearFactors,
    Materialised,
    SumBlock,
)

__all__ = ["HookedGradients", "UnbatchedOutput"]


class UnbatchedOutput(ValueError):
    """A parameter-owning module's output is shared by the samples, so hooks cannot split it."""


@dataclass
class _Call:
    args: tuple
    kwargs: dict
    n_out: int
    grads: dict[int, torch.Tensor] = field(default_factory=dict)


@dataclass
class _Unit:
    path: str
    module: nn.Module
    params: dict[str, str]  # local name (relative to module) -> full name
    rule: str
    calls: list[_Call] = field(default_factory=list)


def _rule_for(module: nn.Module, local_names: Sequence[str]) -> str:
    if (
        isinstance(module, nn.MultiheadAttention)
        and module._qkv_same_embed_dim
        and module.bias_k is None
        and not module.add_zero_attn
        and module.batch_first
    ):
        return "mha"
    own = {n for n, _ in module.named_parameters(recurse=False)}
    if not set(local_names) <= own:
        return "generic"
    if type(module) is nn.Linear or isinstance(module, nn.Linear):
        return "linear"
    if type(module).__name__ == "Conv1D" and hasattr(module, "nf"):
        return "conv1d_hf"
    if (
        isinstance(module, nn.Conv1d | nn.Conv2d)
        and module.groups == 1
        and module.padding_mode == "zeros"
        and not isinstance(module.padding, str)
    ):
        return "conv"
    if (
        isinstance(module, nn.Embedding)
        and module.max_norm is None
        and not module.scale_grad_by_freq
    ):
        return "embedding"
    if isinstance(module, nn.LayerNorm):
        return "layernorm"
    return "generic"


def _mha_blocks(m: nn.MultiheadAttention, call: _Call, n: int) -> dict[str, GradBlock]:
    """Blocks of an ``nn.MultiheadAttention``, batched.

    Recompute q, k, v and the heads' output, backpropagate the output gradient through the
    attention kernel once for the whole chunk, and hand each projection's (input, output
    gradient) to :class:`LinearFactors`.

    Returns:
        The block of each of the module's parameters, by local name (``in_proj_weight``, ...).
    """
    names = ["query", "key", "value", "key_padding_mask", "need_weights", "attn_mask",
             "average_attn_weights", "is_causal"]  # fmt: skip
    bound = dict(zip(names, call.args, strict=False))
    bound.update(call.kwargs)
    query, key, value = (bound[k].detach() for k in ("query", "key", "value"))
    E, H = m.embed_dim, m.num_heads
    W, b = m.in_proj_weight.detach(), m.in_proj_bias
    bs = [None] * 3 if b is None else b.detach().chunk(3)
    with torch.enable_grad():
        qkv = [
            F.linear(x, w, bb).detach().requires_grad_()
            for x, w, bb in zip((query, key, value), W.chunk(3), bs, strict=True)
        ]
        q, k, v = (t.unflatten(-1, (H, E // H)).transpose(1, 2) for t in qkv)
        mask = bound.get("attn_mask")
        pad = bound.get("key_padding_mask")
        mask = F._canonical_mask(mask=mask, mask_name="attn_mask", other_type=None,
                                 other_name="", target_type=q.dtype, check_other=False)  # fmt: skip
        if pad is not None:
            pad = F._canonical_mask(mask=pad, mask_name="key_padding_mask", other_type=None,
                                    other_name="", target_type=q.dtype)  # fmt: skip
            assert pad is not None  # a mask in, a mask out
            pad = pad[:, None, None, :]
            mask = pad if mask is None else mask + pad
        elif mask is not None and mask.dim() == 3:
            mask = mask.view(n, H, *mask.shape[1:])
        heads = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=bool(bound.get("is_causal")) and mask is None
        )
        o = heads.transpose(1, 2).flatten(2)
        g = call.grads[0].detach()
        grads = torch.autograd.grad(o, qkv, g @ m.out_proj.weight.detach())
    out: dict[str, GradBlock] = {}
    loc = {"in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"}
    A = [x.reshape(n, -1, E) for x in (query, key, value)]
    B = [d.reshape(n, -1, E) for d in grads]
    blocks_w = [LinearFactors(a, bb, E) for a, bb in zip(A, B, strict=True)]
    out["in_proj_weight"] = ConcatBlock([*blocks_w])
    if m.in_proj_bias is not None:
        out["in_proj_bias"] = Materialised(torch.cat([bb.sum(1) for bb in B], 1))
    out["out_proj.weight"] = LinearFactors(o.detach().reshape(n, -1, E), g.reshape(n, -1, E), E)
    if m.out_proj.bias is not None:
        out["out_proj.bias"] = Materialised(g.reshape(n, -1, E).sum(1))
    assert set(out) <= loc
    return out


class HookedGradients:
    """Build per-parameter :class:`GradBlock` s for a chunk from one forward + backward.

    Args:
        model: The network (its modes are set by the caller).
        loss_fn: Per-sample loss.
        names: Full names of the selected parameters.
        probe: ``(inputs, targets)`` of a few samples, used once to find which modules are called.
    """

    def __init__(self, model: nn.Module, loss_fn, names: Sequence[str], probe) -> None:
        self.model = model
        self.loss_fn = loss_fn
        self.names = list(names)
        self._active = False
        named = dict(model.named_parameters())
        self._params = [named[n] for n in self.names]
        owner = self._owners(model, set(self.names))
        called = self._called_modules(model, owner, probe)
        by_module: dict[str, dict[str, str]] = defaultdict(dict)
        for path, local, full in owner:
            host = path
            while host not in called and host != "":
                host = host.rpartition(".")[0]
            rel = local if host == path else f"{path[len(host) + 1 if host else 0 :]}.{local}"
            by_module[host][rel] = full
        modules = dict(model.named_modules())
        self.units = [
            _Unit(path, modules[path], params, _rule_for(modules[path], list(params)))
            for path, params in by_module.items()
        ]
        self._handles: list[RemovableHandle] = []
        self._warned: set[str] = set()

    @staticmethod
    def _owners(model: nn.Module, selected: set[str]) -> list[tuple[str, str, str]]:
        """(module path, local name, full parameter name) for every use of a selected parameter."""
        full_of = {id(p): n for n, p in model.named_parameters()}
        out = []
        for path, module in model.named_modules(remove_duplicate=False):
            for local, p in module.named_parameters(recurse=False, remove_duplicate=False):
                full = full_of.get(id(p))
                if full in selected:
                    out.append((path, local, full))
        return list(dict.fromkeys(out))  # each use once, in module order

    @staticmethod
    def _called_modules(model: nn.Module, owner, probe) -> set[str]:
        modules = dict(model.named_modules(remove_duplicate=False))
        called: set[str] = {""}
        handles = []
        for path in {p for p, _, _ in owner}:
            handles.append(modules[path].register_forward_hook(lambda *_a, _p=path: called.add(_p)))
        try:
            with torch.no_grad():
                call_model(model, probe[0])
        finally:
            for h in handles:
                h.remove()
        return called

    # ------------------------------------------------------------------------------ hooks
    def _forward_hook(self, unit: _Unit):
        def hook(_module, args, kwargs, output):
            if not self._active:
                return None
            if torch.is_tensor(output) and output.ndim and output.shape[0] == 1 < self._n:
                # An input shared by every sample (positions of shape (1, T)): broadcast the
                # output to the batch here, so that its gradient arrives per sample.
                output = output.expand(self._n, *output.shape[1:])
            flat, _ = pytree.tree_flatten(output)
            call = _Call(args=args, kwargs=kwargs, n_out=len(flat))
            unit.calls.append(call)
            for i, t in enumerate(flat):
                if torch.is_tensor(t) and t.requires_grad:
                    t.register_hook(lambda g, _i=i, _c=call: _c.grads.__setitem__(_i, g))
            return output

        return hook

    def __call__(
        self, inputs: Any, targets: torch.Tensor
    ) -> tuple[dict[str, GradBlock], torch.Tensor, dict[str, torch.Tensor]]:
        """Blocks for every selected parameter, the per-sample losses, and Σ_i g_i per parameter.

        The sums are the batch gradient, which the backward computes anyway.

        Returns:
            ``(blocks, losses, sums)``: a :class:`GradBlock` per selected parameter, the (n,)
            per-sample losses (detached), and Σ_i g_i per parameter.

        Raises:
            UnbatchedOutput: If a module's output does not have the samples as its first dimension.
        """
        for unit in self.units:
            unit.calls = []
            self._handles.append(
                unit.module.register_forward_hook(self._forward_hook(unit), with_kwargs=True)
            )
        self._active = True
        self._n = int(targets.shape[0])
        try:
            with torch.enable_grad():
                losses = self.loss_fn(call_model(self.model, inputs), targets)
                sums = torch.autograd.grad(
                    losses.sum(), self._params, allow_unused=True, materialize_grads=True
                )
        finally:
            self._active = False
            for h in self._handles:
                h.remove()
            self._handles = []
        n = losses.shape[0]
        for unit in self.units:
            for call in unit.calls:
                if any(g.ndim == 0 or g.shape[0] != n for g in call.grads.values()):
                    for u in self.units:
                        u.calls = []
                    raise UnbatchedOutput(
                        f"module '{unit.path}' ({type(unit.module).__name__}) returns an output "
                        f"whose first dimension is not the {n} samples, so per-layer hooks cannot "
                        "tell the samples' gradients apart"
                    )
        parts: dict[str, list[GradBlock]] = defaultdict(list)
        for unit in self.units:
            for call in unit.calls:
                if not call.grads:  # not on the loss's path (or recomputed under checkpointing)
                    continue
                for full, block in self._blocks(unit, call, n).items():
                    parts[full].append(block)
            unit.calls = []
        named = dict(zip(self.names, self._params, strict=True))
        blocks: dict[str, GradBlock] = {}
        for name in self.names:
            got = parts.get(name, [])
            if not got:  # not on the loss's path: every per-sample gradient is zero
                blocks[name] = Materialised(named[name].new_zeros(n, named[name].numel()))
            else:
                blocks[name] = got[0] if len(got) == 1 else SumBlock(got)
        return blocks, losses.detach(), dict(zip(self.names, sums, strict=True))

    # ------------------------------------------------------------------------------ rules
    def _blocks(self, unit: _Unit, call: _Call, n: int) -> dict[str, GradBlock]:
        m = unit.module
        if unit.rule == "mha" and set(call.grads) == {0}:
            assert isinstance(m, nn.MultiheadAttention)  # the rule's condition (_rule_for)
            return {
                unit.params[k]: v for k, v in _mha_blocks(m, call, n).items() if k in unit.params
            }
        if unit.rule == "generic" or set(call.grads) != {0} or call.n_out != 1:
            return self._generic(unit, call, n)
        x, g = call.args[0].detach(), call.grads[0].detach()
        if x.ndim and x.shape[0] == 1 < n:  # a shared input whose output was broadcast
            x = x.expand(n, *x.shape[1:])
        out: dict[str, GradBlock] = {}
        loc = unit.params
        if unit.rule in ("linear", "conv1d_hf"):
            d_in = x.shape[-1]
            A = x.reshape(n, -1, d_in)
            B = g.reshape(n, -1, g.shape[-1])
            w = "weight"
            if w in loc:
                out[loc[w]] = LinearFactors(A, B, d_in, transposed=unit.rule == "conv1d_hf")
            if "bias" in loc:
                out[loc["bias"]] = Materialised(B.sum(1))
        elif unit.rule == "conv":
            assert isinstance(m, nn.Conv1d | nn.Conv2d)
            conv2d = isinstance(m, nn.Conv2d)
            x4 = x if conv2d else x.unsqueeze(2)
            kernel = m.kernel_size if conv2d else (1, m.kernel_size[0])
            dil = m.dilation if conv2d else (1, m.dilation[0])
            pad = m.padding if conv2d else (0, m.padding[0])
            stride = m.stride if conv2d else (1, m.stride[0])
            B = g.reshape(n, g.shape[1], -1).transpose(1, 2)

            def patches(sl, x4=x4, kernel=kernel, dil=dil, pad=pad, stride=stride):
                return F.unfold(x4[sl], kernel, dilation=dil, padding=pad, stride=stride).transpose(
                    1, 2
                )

            d_in = m.in_channels * math.prod(kernel)
            if "weight" in loc:
                out[loc["weight"]] = LinearFactors(patches, B, d_in)
            if "bias" in loc:
                out[loc["bias"]] = Materialised(B.sum(1))
        elif unit.rule == "embedding":
            assert isinstance(m, nn.Embedding)
            B = g
            if m.padding_idx is not None:
                B = B * (x != m.padding_idx).unsqueeze(-1).to(B.dtype)
            out[loc["weight"]] = EmbeddingFactors(x, B, m.num_embeddings)
        elif unit.rule == "layernorm":
            assert isinstance(m, nn.LayerNorm)
            dims = tuple(range(-len(m.normalized_shape), 0))
            xhat = F.layer_norm(x, m.normalized_shape, eps=m.eps)
            other = tuple(range(1, x.ndim - len(dims)))
            if "weight" in loc:
                out[loc["weight"]] = Materialised((xhat * g).sum(other) if other else xhat * g)
            if "bias" in loc:
                out[loc["bias"]] = Materialised(g.sum(other) if other else g)
        return out

    def _generic(self, unit: _Unit, call: _Call, n: int) -> dict[str, GradBlock]:
        """Per-sample vector-Jacobian products of the module's own forward, vmapped over samples."""
        m = unit.module
        params = {local: m.get_parameter(local).detach() for local in unit.params}
        leaves, spec = pytree.tree_flatten((call.args, call.kwargs))
        leaves = (
            [  # shared inputs whose output was broadcast to the batch
                t.expand(n, *t.shape[1:])
                if torch.is_tensor(t) and t.ndim and t.shape[0] == 1 < n
                else t
                for t in leaves
            ]
            if any(g.shape[0] == n for g in call.grads.values())
            else leaves
        )
        batched = [torch.is_tensor(t) and t.ndim > 0 and t.shape[0] == n for t in leaves]
        data = [t.detach() if b else None for t, b in zip(leaves, batched, strict=True)]
        fixed = [None if b else t for t, b in zip(leaves, batched, strict=True)]
        idx = sorted(call.grads)
        grads = [call.grads[i].detach() for i in idx]

        def one(sample_leaves, sample_grads):
            def f(p):
                merged = [
                    s.unsqueeze(0) if b else c
                    for s, c, b in zip(sample_leaves, fixed, batched, strict=True)
                ]
                args, kwargs = pytree.tree_unflatten(merged, spec)
                flat, _ = pytree.tree_flatten(functional_call(m, p, args, kwargs))
                return tuple(flat[i] for i in idx)

            back = vjp(f, params)[1]
            return back(tuple(g.unsqueeze(0) for g in sample_grads))[0]

        in_dims = ([0 if b else None for b in batched], [0] * len(grads))
        with torch.enable_grad(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            per = vmap(one, in_dims=in_dims)(data, grads)
        slow = [w for w in caught if "performance drop" in str(w.message)]
        for w in caught:
            if w not in slow:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if slow and unit.path not in self._warned:
            self._warned.add(unit.path)
            warnings.warn(
                f"sgdscope: module '{unit.path or type(m).__name__}' ({type(m).__name__}) has no "
                "per-layer rule, so its per-sample gradients go through torch.func.vmap, and vmap "
                f"runs an op of it sample by sample (PyTorch: {str(slow[0].message)[:160]}…). "
                "The result is exact but slower; write its projections as nn.Linear modules "
                "(as Hugging Face models do) to keep them batched.",
                stacklevel=2,
            )
        return {unit.params[local]: Materialised(per[local].reshape(n, -1)) for local in params}
