"""What the paper's full CIFAR-10 protocol (Fig. 2) costs on a device: training and D.

The full small-allcnn run of ``sgdscope reproduce spectra`` is 50 epochs on 50,000 CIFAR-10
images (batch 128, momentum 0.9), then D at three checkpoints. This measures, on ``--device``:

  train_epoch_s   one training epoch through :func:`sgdscope.paper.training.train` (the second
                  of two: the first pays for kernel selection and warm-up), on ``--n-train``
                  inputs of CIFAR's shape;
  spectrum_s      ``GradientNoise.spectrum(k=None, method="auto")`` at each ``--n-spectrum`` N
                  (the call ``reproduce spectra`` makes), with the method it chose, the rank at
                  the paper's threshold and the number of passes over the data.

Inputs are drawn N(0, 1), as after GCN + ZCA whitening, with random labels: the real data
cannot travel to a lent GPU machine (150 MB > its 64 MiB), and every cost here is
data-independent except the rank found, which is therefore not a result about CIFAR-10.

Usage: python benchmarks/bench_cifar_protocol.py --device cuda [--n-train 50000]
       [--n-spectrum 5000,50000] [--name cifar_protocol_cuda]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

import sgdscope as sg
from _common import machine, write_results
from sgdscope.paper import models
from sgdscope.paper.training import TrainConfig, train


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--n-train", type=int, default=50_000)
    ap.add_argument("--n-spectrum", default="5000,50000")
    ap.add_argument("--name", default=None, help="results file name (default by device)")
    args = ap.parse_args()
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.n_train, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (args.n_train,), generator=g)
    model = models.build("small-allcnn", 10, seed=0)
    out: dict = {"machine": machine(), "device": str(device), "n_train": args.n_train,
                 "dim": sum(p.numel() for p in model.parameters())}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(epochs=2, checkpoint_at=(1.0,), seed=0)
        res = train(model, (x, y), cfg, Path(tmp), progress=False, device=device)
    out["train_epoch_s"] = res.history[-1].seconds
    out["train_first_epoch_s"] = res.history[0].seconds
    out["train_50_epochs_min"] = 50 * res.history[-1].seconds / 60
    print(f"{device}: epoch {res.history[-1].seconds:.1f} s (first {res.history[0].seconds:.1f} s)",
          flush=True)  # fmt: skip
    out["spectra"] = []
    model.eval()
    for n in (int(v) for v in args.n_spectrum.split(",")):
        noise = sg.GradientNoise(model, nn.CrossEntropyLoss(reduction="none"), (x[:n], y[:n]),
                                 device=device, progress=False)  # fmt: skip
        _sync(device)
        t0 = time.perf_counter()
        try:
            sp = noise.spectrum(k=None, method="auto", seed=0, rtol="paper")
        except Exception as e:  # a refusal (memory budget) is a result too
            out["spectra"].append({"n": n, "error": f"{type(e).__name__}: {e}"})
            print(f"N={n}: {type(e).__name__}: {e}", flush=True)
            continue
        _sync(device)
        row = {"n": n, "seconds": time.perf_counter() - t0, "method": sp.method,
               "reason": sp.reason, "rank": sp.rank("paper"), "passes": sp.info.get("data_passes")}  # fmt: skip
        out["spectra"].append(row)
        print(f"N={n}: {row}", flush=True)
        del noise
        if device.type == "cuda":
            torch.cuda.empty_cache()
    path = write_results(args.name or f"cifar_protocol_{device.type}", out)
    print("wrote", path)


if __name__ == "__main__":
    main()
