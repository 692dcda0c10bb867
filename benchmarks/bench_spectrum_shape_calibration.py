"""Calibration of the two statistics ``reproduce`` added to existing rows (issue 13, item 5).

Run from the repository root:  python benchmarks/bench_spectrum_shape_calibration.py [--seeds N]

1. Fig. 3a's spectrum-shape test (``sgdscope.reproduce.trajectory.spectrum_test``): on records
   with a known increment spectrum, the rate at which each model is rejected at α = 0.05:
   a 3-dimensional AR(1)/OU process (its own linear model true, flat false), Brownian motion
   (flat true) and an integrated AR(1) (flat false, low-frequency excess). T = 1,500, k = 3,
   39 surrogates per model.
2. The knee statistic (``sgdscope.reproduce.spectra.measure.knee``): how often a knee is called
   after C − 1 = 9 eigenvalues on smooth power laws with multiplicative log-normal noise
   (none planted), and how often it is found when a gap of a given size is planted there.

Results: benchmarks/results/spectrum_shape_calibration.json; the table is in
docs/benchmarks/equilibrium_test.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from sgdscope.reproduce.spectra.measure import knee
from sgdscope.reproduce.trajectory.spectrum_test import spectrum_shape_test

ALPHA = 0.05


def _ar(n: int, a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = np.zeros((n, a.size))
    e = rng.standard_normal((n, a.size))
    for t in range(1, n):
        x[t] = a * x[t - 1] + e[t]
    return x


def shape_rates(seeds: int) -> dict:
    """Rejection rates of each model on each process."""
    out: dict[str, dict[str, float]] = {}
    makers = {
        "ou": lambda r: _ar(1500, np.array([0.8, 0.9, 0.95]), r),
        "brownian": lambda r: r.standard_normal((1500, 3)).cumsum(axis=0),
        "integrated_ar": lambda r: _ar(1500, np.array([0.9, 0.95, 0.97]), r).cumsum(axis=0),
    }
    for name, make in makers.items():
        flat, lin = [], []
        for s in range(seeds):
            res = spectrum_shape_test(make(np.random.default_rng(s)), n_components=3,
                                      n_surrogates=39, seed=s)  # fmt: skip
            flat.append(res.p_flat < ALPHA)
            lin.append(res.p_linear < ALPHA)
        out[name] = {"reject_flat": float(np.mean(flat)), "reject_linear": float(np.mean(lin))}
        print(name, out[name], flush=True)
    return out


def knee_rates(seeds: int) -> dict:
    """False knees on noisy power laws; found knees against the planted gap."""
    out = {}
    for gap in (1.0, 1.5, 2.0, 4.0):
        found = []
        for s in range(seeds):
            rng = np.random.default_rng(s)
            lam = np.arange(1, 61, dtype=float) ** -1.2 * np.exp(0.05 * rng.standard_normal(60))
            lam = np.sort(lam)[::-1]
            lam[9:] /= gap
            k = knee(lam, 9)
            found.append(bool(k is not None and k.found))
        out[f"gap_{gap:g}"] = float(np.mean(found))
        print("knee gap", gap, out[f"gap_{gap:g}"], flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=200)
    seeds = ap.parse_args().seeds
    t0 = time.perf_counter()
    result = {
        "seeds": seeds,
        "alpha": ALPHA,
        "shape": shape_rates(seeds),
        "knee": knee_rates(seeds),
    }
    result["seconds"] = time.perf_counter() - t0
    path = Path("benchmarks/results/spectrum_shape_calibration.json")
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
