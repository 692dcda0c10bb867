"""Benchmark (a) of the gradient-noise issue: per-sample gradients of a batch of 512.

Compares, on the same model and batch (eval mode, so BatchNorm is per-sample):
  sgdscope (GradientNoise.per_sample_gradients, chunk = whole batch), the plain torch.func recipe,
  BackPACK BatchGrad, Opacus GradSampleModule ("hooks" and "ew"), a naive loop of 512 backward
  passes, and one plain forward+backward of the batch (the floor every method is measured against).

Usage: python benchmarks/bench_per_sample.py [--batch 512] [--repeats 5] [--device cpu]
Install the anchors first (torch pinned):
  pip install torch==2.13.0 opacus einops unfoldNd && pip install --no-deps backpack-for-pytorch
"""

from __future__ import annotations

import argparse
import copy
import warnings

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

import sgdscope as sg
from _common import machine, timeit, write_results
from sgdscope.paper import models


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, 10))


CASES = {
    "small-lenet": (lambda: models.build("small-lenet", seed=0), (1, 28, 28)),
    "small-allcnn": (lambda: models.build("small-allcnn", seed=0), (3, 32, 32)),
    "mlp-784-100-10": (mlp, (1, 28, 28)),
}


def warm(model: nn.Module, shape, device) -> nn.Module:
    """Give BatchNorm running statistics, then eval mode (the paper's measurement mode)."""
    model.to(device).train()
    with torch.no_grad():
        model(torch.randn(64, *shape, device=device))
    return model.eval()


def run_sgdscope(model, X, y, check_finite=True):
    noise = sg.GradientNoise(
        model, nn.CrossEntropyLoss(reduction="none"), (X, y), chunk_size=X.shape[0], cache=False,
        check_finite=check_finite,
    )  # fmt: skip
    return lambda: noise.per_sample_gradients()


def run_torch_func(model, X, y):
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = dict(model.named_buffers())
    loss = nn.CrossEntropyLoss()

    def f(p, x, t):
        return loss(functional_call(model, (p, buffers), (x[None],)), t[None])

    g = vmap(grad(f), in_dims=(None, 0, 0))
    return lambda: g(params, X, y)


def run_loop(model, X, y):
    loss = nn.CrossEntropyLoss()
    ps = list(model.parameters())

    def go():
        return [
            torch.autograd.grad(loss(model(X[i : i + 1]), y[i : i + 1]), ps)
            for i in range(X.shape[0])
        ]

    return go


def run_forward_backward(model, X, y):
    loss = nn.CrossEntropyLoss()
    ps = list(model.parameters())
    return lambda: torch.autograd.grad(loss(model(X), y), ps)


def run_backpack(model, X, y):
    from backpack import backpack, extend
    from backpack.extensions import BatchGrad

    m = extend(copy.deepcopy(model))
    loss = extend(nn.CrossEntropyLoss(reduction="sum"))

    def go():
        m.zero_grad()
        with backpack(BatchGrad()):
            loss(m(X), y).backward()
        return [p.grad_batch for p in m.parameters()]

    return go


def run_opacus(mode):
    def build(model, X, y):
        from opacus.grad_sample.utils import wrap_model  # Opacus 1.6's entry point for the modes

        m = wrap_model(copy.deepcopy(model), mode, batch_first=True, loss_reduction="sum")
        # Opacus captures activations only in training mode; for models without BatchNorm or
        # dropout (the only ones Opacus accepts here) train and eval mode compute the same thing.
        m.train()
        loss = nn.CrossEntropyLoss(reduction="sum")

        def go():
            m.zero_grad()
            loss(m(X), y).backward()
            return [p.grad_sample for p in m.parameters()]

        return go

    return build


METHODS = {
    "forward+backward (batch)": run_forward_backward,
    "sgdscope": run_sgdscope,
    "sgdscope check_finite=False": lambda m, X, y: run_sgdscope(m, X, y, check_finite=False),
    "torch.func recipe": run_torch_func,
    "BackPACK BatchGrad": run_backpack,
    "Opacus hooks": run_opacus("hooks"),
    "Opacus ew": run_opacus("ew"),
    "naive loop": run_loop,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default=",".join(CASES))
    args = parser.parse_args()
    results = {"machine": machine(), "batch": args.batch, "models": {}}
    warnings.filterwarnings("ignore")
    for name in args.models.split(","):
        make, shape = CASES[name]
        model = warm(make(), shape, args.device)
        g = torch.Generator().manual_seed(0)
        X = torch.randn(args.batch, *shape, generator=g).to(args.device)
        y = torch.randint(0, 10, (args.batch,), generator=g).to(args.device)
        d = sum(p.numel() for p in model.parameters())
        rows = {}
        for method, build in METHODS.items():
            try:
                fn = build(model, X, y)
                reps = 1 if method == "naive loop" else args.repeats
                rows[method] = timeit(
                    fn, repeats=reps, warmup=1, sync=args.device.startswith("cuda")
                )
            except Exception as err:  # an anchor that cannot handle the model is a result too
                rows[method] = {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"}
        # ratios of the best of the repeats: the least disturbed by other work on a shared machine
        base = rows["forward+backward (batch)"]["min_s"]
        ours = rows["sgdscope"]["min_s"]
        for r in rows.values():
            if "min_s" in r:
                r["x_forward_backward"] = r["min_s"] / base
                r["x_sgdscope"] = r["min_s"] / ours
        results["models"][name] = {"d": d, "methods": rows}
        print(f"\n{name} (d = {d:,}, batch {args.batch}, {args.device})")
        for method, r in rows.items():
            if "min_s" in r:
                print(
                    f"  {method:26s} {1e3 * r['min_s']:9.1f} ms   ×fwd+bwd {r['x_forward_backward']:6.1f}   ×sgdscope {r['x_sgdscope']:6.2f}"
                )
            else:
                print(f"  {method:26s} failed: {r['error']}")
    path = write_results(f"per_sample_{args.device.split(':')[0]}", results)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
