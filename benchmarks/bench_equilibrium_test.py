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


def gram_pass(x) -> float:
    t0 = time.perf_counter()
    d = x.shape[1]
    gram = np.zeros((d, d), dtype=np.float32)
    for r0 in range(0, x.shape[0], 4096):
        blk = np.asarray(x[r0 : r0 + 4096])
        gram += blk.T @ blk
    return time.perf_counter() - t0


_CHILD = """
import json, sys, time, numpy as np
from sgdscope.trajectory.analysis import equilibrium_test
x = np.load(sys.argv[1], mmap_mode="r")
t0 = time.perf_counter()
r = equilibrium_test(x, n_surrogates=int(sys.argv[2]), seed=0)
print(json.dumps({"seconds": time.perf_counter() - t0, "p_value": r.p_value,
                  "components": {k: c.p_value for k, c in r.components.items()},
                  "statistic": r.statistic}))
"""


def baseline_run(src: str, path: Path, n_surrogates: int) -> dict:
    """equilibrium_test of another source tree (e.g. the commit before), in a subprocess."""
    env = {**os.environ, "PYTHONPATH": src}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), str(n_surrogates)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def timing(T: int, d: int, n_surrogates: int, baseline_src: str | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "wide.npy"
        make_wide(path, T, d)
        x = np.load(path, mmap_mode="r")
        gram_pass(x)  # page cache warm for everyone
        t_gram = gram_pass(x)
        t0 = time.perf_counter()
        _, _, plane = project(x, 2, None, where="bench")
        t_proj = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = equilibrium_test(x, n_surrogates=n_surrogates, seed=0)
        t_test = time.perf_counter() - t0
        t_gram_after = gram_pass(x)
        base = None
        if baseline_src:
            base = baseline_run(baseline_src, path, n_surrogates)
            base["reference_after"] = gram_pass(x)
            base["ratio_to_reference"] = base["seconds"] / base["reference_after"]
    return {
        "reference_pass_after_s": t_gram_after,
        "baseline": base,
        "components_p": {k: c.p_value for k, c in res.components.items()},
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
        "status": res.status.value,
        "out_of_equilibrium": res.out_of_equilibrium,
        "effect_size": res.effect_size,
    }


def reference_p(x: np.ndarray, n_surrogates: int, seed: int) -> dict:
    """The p-values of the sequential algorithm: _statistics and simulate_null, one at a time."""
    from sgdscope.trajectory.analysis import equilibrium as eq
    from sgdscope.trajectory.analysis.irreversibility import default_lags
    from sgdscope.trajectory.analysis.ou import fit_ou

    y = x - x.mean(axis=0)
    n = len(y)
    fit = fit_ou(y)
    lags = default_lags(n, fit)
    ac_lags = np.unique(np.round(np.geomspace(1, max(2, n // 10), 16)).astype(np.int64))
    seg = max(16, n // 8)
    obs, _ = eq._statistics(y, lags, ac_lags, 12, seg, fit)
    rng = np.random.default_rng(seed)
    null = np.array(
        [
            eq._statistics(fit.simulate_null(n, rng), lags, ac_lags, 12, seg)[0]
            for _ in range(n_surrogates)
        ]
    )
    return {
        name: float((1 + np.count_nonzero(null[:, j] >= obs[j])) / (n_surrogates + 1))
        for j, name in enumerate(eq.COMPONENTS)
    }


def calibration(n_null: int, n_power: int, T: int, n_surrogates: int) -> dict:
    t0 = time.perf_counter()
    ps, mismatches = [], 0
    for s in range(n_null):
        x = rotated_ou(0.0, T, seed=s)[0]
        r = equilibrium_test(x, n_surrogates=n_surrogates, seed=s)
        ps.append(r.p_value)
        ref = reference_p(x, n_surrogates, s)
        mismatches += sum(ref[k] != c.p_value for k, c in r.components.items())
    ps = np.array(ps)
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
        "component_p_values_differing_from_sequential_reference": int(mismatches),
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
    ap.add_argument(
        "--baseline-src",
        default=None,
        help="a src/ folder of another version (e.g. `git archive <commit> src | tar -x -C DIR`) "
        "to time side by side in a subprocess",
    )
    ap.add_argument("--skip-calibration", action="store_true")
    ap.add_argument("--output", default=None, help="results file name (default by --quick)")
    args = ap.parse_args()
    out = {"machine": machine()}
    if args.quick:
        out["timing"] = timing(20_000, 200, 49, args.baseline_src)
        if not args.skip_calibration:
            out["calibration"] = calibration(40, 10, 1000, 49)
    else:
        out["timing"] = timing(100_000, 1000, 199, args.baseline_src)
        if not args.skip_calibration:
            out["calibration"] = calibration(200, 50, 1000, 99)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = args.output or ("equilibrium_test_quick.json" if args.quick else "equilibrium_test.json")
    (RESULTS / name).write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
