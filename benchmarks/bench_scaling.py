"""Benchmark (c) of the gradient-noise issue: time and peak memory of spectrum(k=100) as d and N grow.

d grows through wider small-allcnn variants (channel counts × width: 27k, 106k, 419k, 939k
parameters for width 1, 2, 4, 6) at fixed N; N grows at width 1. Inputs are real MNIST digits from
the embedded subset, padded to 32 × 32 and repeated over 3 channels (CIFAR-shaped, no download).
Each point runs in its own process on CPU (peak RSS is per process); on CUDA the peak is
torch.cuda.max_memory_allocated. The eigensolver is the randomized one (k = 100, tol 1e-5);
the per-sample gradients are cached in memory when they fit half the budget, otherwise streamed.

Usage: python benchmarks/bench_scaling.py [--device cpu] [--widths 1,2] [--ns 500,1000,2000]
       [--fixed-n 1000] [--fixed-width 1] [--out docs/figures/scaling_cpu.png]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

import sgdscope as sg
from _common import machine, write_results
from sgdscope.paper import data, models
from sgdscope.report.style import new_figure, save_figure


def cifar_shaped_mnist(n: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = data.mnist(n=n).tensors()
    x = F.pad(x, (2, 2, 2, 2)).repeat(1, 3, 1, 1)
    return x.to(device), y.to(device)


def point(width: int, n: int, k: int, device: str, cache: str) -> dict:
    model = models.build("small-allcnn", seed=0) if width == 1 else models.small_allcnn(10, width)
    model = model.to(device)
    x, y = cifar_shaped_mnist(n, device)
    with torch.no_grad():
        model.train()(x[:256])  # BatchNorm running statistics
    model.eval()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    noise = sg.GradientNoise(
        model, nn.CrossEntropyLoss(reduction="none"), (x, y), device=device,
        cache="auto" if cache == "auto" else False,
    )  # fmt: skip
    spec = noise.spectrum(k=k, method="randomized")
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if device.startswith("cuda")
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    return {"width": width, "n": n, "d": noise.dim, "k": k, "seconds": seconds, "peak_mib": peak,
            "iterations": spec.iterations, "converged": spec.converged, "cached": noise._use_cache,
            "lambda_max": spec.lambda_max, "lambda_k": float(spec.eigenvalues[-1])}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--widths", default="1,2")
    parser.add_argument("--ns", default="500,1000,2000")
    parser.add_argument("--fixed-n", type=int, default=1000)
    parser.add_argument("--fixed-width", type=int, default=1)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--cache", choices=["auto", "off"], default="auto",
        help="off: stream the data on every pass (memory O(d·k + chunk·d) instead of O(N·d))",
    )  # fmt: skip
    parser.add_argument("--point", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.point:
        w, n = map(int, args.point.split(","))
        print(json.dumps(point(w, n, args.k, args.device, args.cache)))
        return
    grid = [(int(w), args.fixed_n) for w in args.widths.split(",")]
    grid += [
        (args.fixed_width, int(n))
        for n in args.ns.split(",")
        if (args.fixed_width, int(n)) not in grid
    ]
    rows = []
    for w, n in grid:
        cmd = [
            sys.executable,
            __file__,
            "--point",
            f"{w},{n}",
            "--k",
            str(args.k),
            "--device",
            args.device,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode:
            row = {
                "width": w,
                "n": n,
                "error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:300],
            }
        else:
            row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {
        "machine": machine(),
        "device": args.device,
        "k": args.k,
        "cache": args.cache,
        "points": rows,
    }
    tag = f"{args.device.split(':')[0]}{'' if args.cache == 'auto' else '_streamed'}"
    write_results(f"scaling_{tag}", result)
    ok = [r for r in rows if "seconds" in r]
    by_d = sorted((r for r in ok if r["n"] == args.fixed_n), key=lambda r: r["d"])
    by_n = sorted((r for r in ok if r["width"] == args.fixed_width), key=lambda r: r["n"])
    fig, axes = new_figure(ncols=2)
    for ax, series, key, label in (
        (axes[0], by_d, "d", f"d (N = {args.fixed_n})"),
        (axes[1], by_n, "n", f"N (d = {by_n[0]['d'] if by_n else '?'})"),
    ):
        if not series:
            continue
        xs = [r[key] for r in series]
        ax.loglog(xs, [r["seconds"] for r in series], "o-", label="time [s]")
        ax.loglog(xs, [r["peak_mib"] / 1024 for r in series], "s--", label="peak memory [GiB]")
        ax.set(xlabel=label, title=f"spectrum(k={args.k}), {args.device}, cache {args.cache}")
        ax.legend()
    out = Path(args.out or f"docs/figures/scaling_{tag}.png")
    save_figure(fig, out)
    print("wrote", out)


if __name__ == "__main__":
    main()
