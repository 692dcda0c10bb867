"""Measure the CIFAR-10 panels' D (Figs 2a, 2c) on a lent GPU from a packed training subset.

The full CIFAR-10 archive (170 MB) cannot travel to the lent GPU machine (64 MiB at most), so
``pack`` writes, here, what D on the first ``--n`` training images needs, in under 64 MiB: those
images as bytes, their labels, and the GCN + ZCA map fitted on all 50,000 training images (its
mean in float64, the symmetric d × d matrix W = U diag((λ + ε)^(−1/2)) Uᵀ as its upper triangle
in float32). ``measure`` runs there: it rebuilds the whitened inputs, copies the checkpoints, and
calls the same code as ``sgdscope reproduce spectra`` (``inputs_for_d`` and ``measure_spectrum``), so
the spectrum caches it writes (``epoch_XXXX.n{N}[.augment1].spectrum.npz``) can be dropped
beside the checkpoints of the CPU run and are then used by
``sgdscope reproduce spectra --cifar-n-spectrum N``.

Usage:
    python scripts/cifar_subset_spectra.py pack --cifar-dir data/cifar10 \
        --out .carry/cifar_subset.npz [--n 10000]
    python scripts/cifar_subset_spectra.py measure --subset .carry/cifar_subset.npz \
        --checkpoints .carry/ckpt --work /tmp/work --n 5000,10000 --device cuda
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from sgdscope.paper import cifar
from sgdscope.reproduce.context import RunContext
from sgdscope.reproduce.spectra import PANELS, Settings
from sgdscope.reproduce.spectra.measure import Data, inputs_for_d, measure_spectrum


def pack(cifar_dir: Path, out: Path, n: int) -> None:
    """Write images[:n], labels[:n], the ZCA mean and W's upper triangle; check the map."""
    t0 = time.perf_counter()
    train = cifar.cifar(cifar_dir, "train", classes=10)
    zca = cifar.fit_zca(cifar.global_contrast_normalize(train.images.to(torch.float64)))
    w = ((zca.components * zca.scales) @ zca.components.T).numpy()
    upper = np.triu_indices(w.shape[0])
    images = train.images[:n]
    np.savez(out, images=images.numpy(), labels=train.labels[:n].numpy(),
             mean=zca.mean.numpy(), w_upper=w[upper].astype(np.float32))  # fmt: skip
    exact = zca.apply(cifar.global_contrast_normalize(images.to(torch.float64))).float()
    packed = whiten(images, np.load(out))
    err = float((packed - exact).abs().max())
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB) in {time.perf_counter() - t0:.0f} s;"
          f" packed map vs exact: max |Δx| = {err:.2e} (max |x| = {float(exact.abs().max()):.1f})")  # fmt: skip


def whiten(images: torch.Tensor, packed) -> torch.Tensor:
    """GCN then the packed ZCA map, in float64; float32 inputs N × 3 × 32 × 32."""
    d = packed["mean"].shape[0]
    w = np.zeros((d, d), dtype=np.float64)
    w[np.triu_indices(d)] = packed["w_upper"]
    w = w + np.triu(w, 1).T
    flat = cifar.global_contrast_normalize(images.to(torch.float64)).reshape(len(images), -1)
    flat = flat - torch.from_numpy(packed["mean"])
    return (flat @ torch.from_numpy(w)).float().reshape(images.shape)


def measure(subset: Path, checkpoints: Path, work: Path, ns: list[int], device: str) -> None:
    """D's spectrum at every ``epoch_*.pt`` in ``checkpoints`` for each N, Figs 2a and 2c."""
    packed = np.load(subset)
    x = whiten(torch.from_numpy(packed["images"]), packed)
    y = torch.from_numpy(packed["labels"]).long()
    data = Data((x, y), None, "packed subset")
    ctx = RunContext(out=work, device=device, progress=False)
    folder = work / "train"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for ckpt in sorted(checkpoints.glob("epoch_*.pt")):
        shutil.copy(ckpt, folder / ckpt.name)
        for n in ns:
            s = replace(Settings.full(), cifar_n_spectrum=n)
            for key in ("fig2a", "fig2c"):
                spec = PANELS[key]
                xy = inputs_for_d(spec, data, s, ctx)
                sp, seconds, _ = measure_spectrum(spec, folder / ckpt.name, xy, ctx, s)
                stats = sp.stats("paper")
                row = {"checkpoint": ckpt.name, "panel": key, "n": n, "method": sp.method,
                       "rank": sp.rank("paper"), "rank_percent": 100 * sp.rank_fraction("paper"),
                       "certain": sp.rank_is_certain("paper"), "trace": sp.trace,
                       "lambda_max": float(sp.eigenvalues[0]), "clipped": stats["clipped"],
                       "seconds": seconds}  # fmt: skip
                rows.append(row)
                print(json.dumps(row, default=float), flush=True)
    (work / "summary.json").write_text(json.dumps(rows, indent=1, default=float))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--cifar-dir", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--n", type=int, default=10_000)
    m = sub.add_parser("measure")
    m.add_argument("--subset", type=Path, required=True)
    m.add_argument("--checkpoints", type=Path, required=True)
    m.add_argument("--work", type=Path, required=True)
    m.add_argument("--n", default="5000,10000")
    m.add_argument("--device", default="cuda")
    a = ap.parse_args()
    if a.cmd == "pack":
        pack(a.cifar_dir, a.out, a.n)
    else:
        measure(a.subset, a.checkpoints, a.work, [int(v) for v in a.n.split(",")], a.device)


if __name__ == "__main__":
    main()
