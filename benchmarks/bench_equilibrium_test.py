"""equilibrium_test: time at T = 10⁵, d = 10³, and calibration (false-positive rate, power).

Run from the repository root:  python benchmarks/bench_equilibrium_test.py [--quick]

Timing. A float32 (T, d) = (10⁵, 10³) trajectory (400 MB, memory-mapped .npy, as the CLI reads it):
a rotated 2-D OU embedded in 10³ dimensions plus independent AR(1) noise per coordinate. The test
projects first, onto the top-2 PCA plane of the positions (one streamed float64 d × d covariance,
then eigh), then fits the OU model and draws 199 surrogates of length 10⁵ in that plane. No
library offers this test, so the reference is the cheapest possible first step, one float32
X.T @ X pass over the same memory map (numpy/BLAS), timed in the same run; we report the ratio.

Calibration. 200 seeds of the 2-D OU with Q = 0 (D = ½I, U = [[2, .5], [.5, 1]], Δ = 0.2,
T = 1000, 99 surrogates): false-positive rate at α = 0.05 and 0.01, KS of the p-values against
U(0, 1). Power: the same OU with Q = (q/2)J for q in {0.2, 0.4, 0.8}, 50 seeds each.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import scipy.signal
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.trajectory._analysis_processes import rotated_ou  # noqa: E402

from sgdscope.trajectory.analysis import equilibrium_test  # noqa: E402
from sgdscope.trajectory.analysis._input import project  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def machine() -> dict:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "lscpu_head": lscpu.splitlines()[:10],
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "load_avg_at_start": os.getloadavg(),
        "note": "2 cores shared with other engineers' jobs: absolute times are noisy; "
        "ratios are measured in the same run.",
    }


def make_wide(path: Path, T: int, d: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    latent, *_ = rotated_ou(0.8, T, seed=seed)
    embed = np.linalg.qr(rng.standard_normal((d, 2)))[0].T * 5.0  # (2, d)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(T, d))
    for c0 in range(0, d, 100):
        c1 = min(d, c0 + 100)
        noise = scipy.signal.lfilter([1.0], [1.0, -0.9], rng.standard_normal((T, c1 - c0)), axis=0)
        out[:, c0:c1] = latent @ embed[:, c0:c1] + 0.3 * noise
    out.flush()
    del out


def timing(T: int, d: int, n_surrogates: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "wide.npy"
        make_wide(path, T, d)
        x = np.load(path, mmap_mode="r")
        t0 = time.perf_counter()
        gram = np.zeros((d, d), dtype=np.float32)
        for r0 in range(0, T, 4096):
            blk = np.asarray(x[r0 : r0 + 4096])
            gram += blk.T @ blk
        t_gram = time.perf_counter() - t0
        t0 = time.perf_counter()
        _, _, plane = project(x, 2, None, where="bench")
        t_proj = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = equilibrium_test(x, n_surrogates=n_surrogates, seed=0)
        t_test = time.perf_counter() - t0
    return {
        "T": T,
        "d": d,
        "dtype": "float32 (memory-mapped .npy)",
        "n_surrogates": n_surrogates,
        "projection": plane,
        "seconds_equilibrium_test": t_test,
        "seconds_projection_alone": t_proj,
        "seconds_in_plane_after_projection": t_test - t_proj,
        "seconds_reference_one_gram_pass": t_gram,
        "ratio_test_to_reference": t_test / t_gram,
        "p_value": res.p_value,
        "out_of_equilibrium": res.out_of_equilibrium,
        "effect_size": res.effect_size,
    }


def calibration(n_null: int, n_power: int, T: int, n_surrogates: int) -> dict:
    t0 = time.perf_counter()
    ps = np.array(
        [
            equilibrium_test(
                rotated_ou(0.0, T, seed=s)[0], n_surrogates=n_surrogates, seed=s
            ).p_value
            for s in range(n_null)
        ]
    )
    flux_ps = []
    power = {}
    for q in (0.2, 0.4, 0.8):
        rej, sign_ok = [], []
        for s in range(n_power):
            x, _, _, Q = rotated_ou(q, T, seed=10_000 + s)
            r = equilibrium_test(x, n_surrogates=n_surrogates, seed=s)
            rej.append(r.p_value < 0.05)
            sign_ok.append(np.sign(r.circulation) == np.sign(Q[0, 1]))
            flux_ps.append(r.flux.p_value)
        power[str(q)] = {
            "reject_at_0.05": float(np.mean(rej)),
            "circulation_sign_correct": float(np.mean(sign_ok)),
        }
    return {
        "T": T,
        "n_surrogates": n_surrogates,
        "null_seeds": n_null,
        "false_positive_rate_0.05": float(np.mean(ps < 0.05)),
        "false_positive_rate_0.01": float(np.mean(ps < 0.01)),
        "ks_uniform_pvalue": float(stats.kstest(ps, "uniform").pvalue),
        "null_p_deciles": np.quantile(ps, np.linspace(0.1, 0.9, 9)).round(3).tolist(),
        "power_seeds_per_q": n_power,
        "power": power,
        "seconds": time.perf_counter() - t0,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="T = 2·10⁴, d = 200, fewer seeds")
    args = ap.parse_args()
    out = {"machine": machine()}
    if args.quick:
        out["timing"] = timing(20_000, 200, 49)
        out["calibration"] = calibration(40, 10, 1000, 49)
    else:
        out["timing"] = timing(100_000, 1000, 199)
        out["calibration"] = calibration(200, 50, 1000, 99)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "equilibrium_test_quick.json" if args.quick else "equilibrium_test.json"
    (RESULTS / name).write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
