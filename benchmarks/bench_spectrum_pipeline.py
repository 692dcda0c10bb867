"""Benchmark (b) of the gradient-noise issue: the whole D-spectrum pipeline for small-lenet on MNIST.

Pipelines (each in its own process, so that its peak memory is its own):
  sgdscope      GradientNoise.spectrum() with method="auto", k=None: the rank at the paper's
                threshold and the top eigenvalues (sgdscope_float32: the same with float32
                accumulation, dtype=torch.float32).
  paper         the authors' method (compute_sigma.py, github.com/pratikac/grad-info, commit 4e1bd82): batch-size-1 backward loop, float32 rank-1
                updates S += (g_k − g)(g_k − g)ᵀ of a dense d × d matrix, then float32 eigh.
                By default the loop runs on --paper-n samples and its time is extrapolated
                linearly to N (the eigh is always run in full and timed); --paper-n N runs it all.
  backpack      BackPACK BatchGrad per-sample gradients (batches of 256), float64 D = Gᶜᵀ Gᶜ / N
                accumulated per batch, torch eigh.
  curvlinops    curvlinops EFLinearOperator (uncentred EF) minus g gᵀ as a scipy LinearOperator,
                scipy eigsh for the top 20 (no rank: eigsh cannot reach ~λ_max·1e-3 cheaply).

Usage: python benchmarks/bench_spectrum_pipeline.py [--n 10000] [--paper-n 1000] [--epochs 1]
Anchors: pip install torch==2.13.0 einops unfoldNd einconv linear_operator tqdm &&
         pip install --no-deps backpack-for-pytorch curvlinops-for-pytorch
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import sgdscope as sg
from _common import machine, write_results
from sgdscope.noise.spectrum import FLOAT32_EPS
from sgdscope.paper import data, models

TOP = 20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def setup(checkpoint: Path, n: int):
    model = models.build("small-lenet", seed=0)
    model.load_state_dict(torch.load(checkpoint, weights_only=True))
    model.eval()
    x, y = data.mnist_for("small-lenet", n=n).tensors()
    return model, x, y


def rank_at_paper_threshold(eigenvalues: np.ndarray, d: int) -> int:
    return int((eigenvalues > eigenvalues.max() * d * FLOAT32_EPS).sum())


def run_sgdscope(model, x, y, dtype=torch.float64) -> dict:
    noise = sg.GradientNoise(model, nn.CrossEntropyLoss(reduction="none"), (x, y), dtype=dtype)
    spec = noise.spectrum(rtol="paper")
    return {"top": spec.eigenvalues[:TOP].tolist(), "rank": spec.rank("paper"), "method": spec.method,
            "reason": spec.reason, "iterations": spec.iterations, "rank_is_certain": spec.rank_is_certain("paper")}  # fmt: skip


def run_paper(model, x, y, paper_n: int) -> dict:
    params = [p for p in model.parameters()]
    d, n = sum(p.numel() for p in params), x.shape[0]
    m = min(paper_n, n)
    loss = nn.CrossEntropyLoss()

    def grad_of(i):
        return torch.cat(
            [
                g.reshape(-1)
                for g in torch.autograd.grad(loss(model(x[i : i + 1]), y[i : i + 1]), params)
            ]
        )

    # full gradient as the authors did: mean of batch-mean gradients (batch 1024)
    t0 = time.perf_counter()
    fgrad = torch.zeros(d)
    for s in range(0, n, 1024):
        g = torch.autograd.grad(loss(model(x[s : s + 1024]), y[s : s + 1024]), params)
        fgrad += torch.cat([t.reshape(-1) for t in g])
    fgrad /= -(-n // 1024)
    t_fgrad = time.perf_counter() - t0
    S = torch.zeros(d, d)  # float32, as the authors
    t0 = time.perf_counter()
    for i in range(m):
        c = grad_of(i) - fgrad
        S.addr_(c, c)  # in-place BLAS rank-1 update (the authors allocated th.ger each time)
    t_loop = time.perf_counter() - t0
    S /= m
    t0 = time.perf_counter()
    w = np.linalg.eigh(S.numpy())[0][::-1]
    t_eigh = time.perf_counter() - t0
    return {"top": w[:TOP].astype(float).tolist(), "rank": rank_at_paper_threshold(w, d) if m == n else None,
            "loop_samples": m, "seconds_fgrad": t_fgrad, "seconds_loop_measured": t_loop,
            "seconds_eigh": t_eigh, "seconds_extrapolated": t_fgrad + t_loop * n / m + t_eigh,
            "extrapolated": m < n}  # fmt: skip


def run_backpack(model, x, y) -> dict:
    from backpack import backpack, extend
    from backpack.extensions import BatchGrad

    m = extend(model)
    loss = extend(nn.CrossEntropyLoss(reduction="sum"))
    d = sum(p.numel() for p in m.parameters())
    S = torch.zeros(d, d, dtype=torch.float64)
    total = torch.zeros(d, dtype=torch.float64)
    shift = None
    for s in range(0, x.shape[0], 256):
        m.zero_grad()
        with backpack(BatchGrad()):
            loss(m(x[s : s + 256]), y[s : s + 256]).backward()
        G = torch.cat(
            [p.grad_batch.reshape(p.grad_batch.shape[0], -1) for p in m.parameters()], 1
        ).double()
        shift = G.mean(0) if shift is None else shift
        G -= shift
        S.addmm_(G.T, G)
        total += G.sum(0)
    n = x.shape[0]
    S -= torch.outer(total, total) / n
    S /= n
    w = torch.linalg.eigvalsh(S).flip(0).numpy()
    return {"top": w[:TOP].tolist(), "rank": rank_at_paper_threshold(w, d)}


def run_curvlinops(model, x, y) -> dict:
    import scipy.sparse.linalg
    from curvlinops import EFLinearOperator

    params = [p for p in model.parameters() if p.requires_grad]
    batches = [(x[s : s + 256], y[s : s + 256]) for s in range(0, x.shape[0], 256)]
    ef = EFLinearOperator(
        model, nn.CrossEntropyLoss(reduction="mean"), params, batches, check_deterministic=False
    )
    ef = ef.to_scipy() if hasattr(ef, "to_scipy") else ef
    loss = nn.CrossEntropyLoss()
    g = (
        sum(
            torch.cat(
                [
                    t.reshape(-1)
                    for t in torch.autograd.grad(loss(model(xb), yb) * xb.shape[0], params)
                ]
            ).double()
            for xb, yb in batches
        )
        / x.shape[0]
    )
    g = g.numpy()
    d = g.size

    def mv(v):
        v = np.asarray(v).reshape(d, -1)
        return np.asarray(ef @ v.astype(np.float32)).reshape(d, -1) - np.outer(g, g @ v)

    op = scipy.sparse.linalg.LinearOperator((d, d), matvec=mv, matmat=mv, dtype=np.float64)
    w = scipy.sparse.linalg.eigsh(op, k=TOP, which="LA", return_eigenvectors=False)
    return {"top": np.sort(w)[::-1].tolist(), "rank": None}


def child(args) -> None:
    model, x, y = setup(Path(args.checkpoint), args.n)
    t0 = time.perf_counter()
    fn = {
        "sgdscope": run_sgdscope,
        "sgdscope_float32": lambda m, x, y: run_sgdscope(m, x, y, dtype=torch.float32),
        "backpack": run_backpack,
        "curvlinops": run_curvlinops,
    }.get(args.pipeline)
    result = fn(model, x, y) if fn else run_paper(model, x, y, args.paper_n)
    result["seconds"] = time.perf_counter() - t0
    result["peak_rss_mib"] = peak_rss_mib()
    Path(args.result).write_text(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--paper-n", type=int, default=1000)
    parser.add_argument(
        "--epochs", type=int, default=1, help="SGD epochs before measuring (lr 0.01, momentum 0.9)"
    )
    parser.add_argument("--pipelines", default="sgdscope,paper,backpack,curvlinops")
    parser.add_argument(
        "--reuse", help="a small-lenet state_dict to measure instead of training one"
    )
    parser.add_argument("--pipeline", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pipeline:
        return child(args)
    tmp = Path(tempfile.mkdtemp())
    ckpt = Path(args.reuse) if args.reuse else tmp / "lenet.pt"
    if (
        not args.reuse
    ):  # one checkpoint for every pipeline: the rank near the threshold is sensitive
        model = models.build("small-lenet", seed=0)
        x, y = data.mnist_for("small-lenet", n=args.n).tensors()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        gen = torch.Generator().manual_seed(0)
        for _ in range(args.epochs):
            for idx in torch.randperm(x.shape[0], generator=gen).split(128):
                opt.zero_grad()
                nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
                opt.step()
        torch.save(model.state_dict(), ckpt)
    out = {
        "machine": machine(),
        "n": args.n,
        "d": 13338,
        "epochs": args.epochs,
        "checkpoint": str(ckpt),
        "pipelines": {},
    }
    for name in args.pipelines.split(","):
        res = tmp / f"{name}.json"
        cmd = [sys.executable, __file__, "--pipeline", name, "--checkpoint", str(ckpt), "--result", str(res),
               "--n", str(args.n), "--paper-n", str(args.paper_n)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not res.exists():
            out["pipelines"][name] = {
                "error": proc.stderr.strip().splitlines()[-1][:300] if proc.stderr else "failed"
            }
        else:
            out["pipelines"][name] = json.loads(res.read_text())
        brief = {k: v for k, v in out["pipelines"][name].items() if k != "top"}
        print(name, json.dumps(brief), flush=True)
    ref = np.array(
        out["pipelines"].get("backpack", out["pipelines"]["sgdscope"]).get("top", [np.nan])
    )
    for r in out["pipelines"].values():
        if "top" in r:
            top = np.array(r["top"])
            r["top20_max_rel_diff_vs_dense_float64"] = float(
                np.max(np.abs(top - ref[: top.size]) / ref[: top.size])
            )
    base = out["pipelines"]["sgdscope"].get("seconds")
    for r in out["pipelines"].values():
        t = r.get("seconds_extrapolated", r.get("seconds"))
        if t and base:
            r["x_sgdscope_time"] = t / base
    print(json.dumps(out, indent=1)[:3000])
    print("wrote", write_results("spectrum_pipeline", out))


if __name__ == "__main__":
    main()
