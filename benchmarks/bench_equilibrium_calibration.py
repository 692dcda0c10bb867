"""Calibration of the non-equilibrium statistics on processes with known answers (issue 13).

Run from the repository root:  python benchmarks/bench_equilibrium_calibration.py [--quick]

Every statistic is run on simulated processes whose answer is known, each written independently
of the library (tests/trajectory/_analysis_processes.py: exact OU/underdamped sampling from
scipy.linalg, heavy-ball SGD by a loop over steps):

1. Stationarity (``stationarity``, and the status of ``equilibrium_test``): the rate at which
   stationary records (overdamped OU with and without a current, underdamped phase space,
   heavy-ball SGD) are called non-stationary; the rate at which random walks and OU processes
   with a linear trend are; the fraction of each that ``equilibrium_test`` leaves untested, and
   how the old verdict would have read.
2. Momentum (``equilibrium_test(x, velocities)``): false-positive rate of the parity-aware test
   on underdamped processes at equilibrium and on heavy-ball SGD on a quadratic whose noise
   commutes with the Hessian, against the parity-blind test on the same records; power on
   driven underdamped processes and on heavy-ball SGD with non-commuting noise; the measured
   entropy-production rate of heavy-ball SGD against the linear theory (Kunin et al. 2021).
3. Currents beyond one plane (``subspace_currents``, k = 10 and 20): false-positive rate of the
   omnibus test and family-wise error over the planes; power against a current in one plane
   outside the top-2 PCA plane (with ``equilibrium_test`` in the top-2 plane for contrast);
   coverage of the entropy-production interval.

Results: benchmarks/results/equilibrium_calibration[_quick].json; the tables are in
docs/benchmarks/equilibrium_test.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy.linalg
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from tests.trajectory._analysis_processes import (  # noqa: E402
    J,
    brownian,
    heavy_ball,
    ou,
    rotated_ou,
    underdamped,
)

from _common import machine  # noqa: E402
from sgdscope.trajectory.analysis import (  # noqa: E402
    equilibrium_test,
    stationarity,
    subspace_currents,
)
from sgdscope.trajectory.analysis.ou import _kl_rate  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
_T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - _T0:7.1f} s] {msg}", flush=True)


def rate(flags) -> float:
    return float(np.mean(flags))


def null_summary(ps) -> dict:
    ps = np.asarray(ps)
    return {
        "seeds": int(ps.size),
        "rejection_0.05": rate(ps < 0.05),
        "rejection_0.01": rate(ps < 0.01),
        "ks_uniform_p": float(stats.kstest(ps, "uniform").pvalue),
    }


# --- processes ------------------------------------------------------------------------------

K2 = np.array([[1.0, 0.3], [0.3, 0.5]])
GAMMA = 0.4 * np.eye(2)


def oscillator(T, seed, drive=0.0):
    """Underdamped 2-D oscillator at temperature 1; ``drive`` c adds the force c·J x to dv."""
    f = np.zeros((4, 4))
    f[2:, :2] = drive * J
    return underdamped(K2, GAMMA, np.eye(2), 0.3, T, seed, drive=f)


H_HB, LR, MU = np.diag([1.0, 0.3]), 0.1, 0.9


def hb_noise(rho):
    """Gradient-noise covariance with correlation ρ: commutes with diag H only at ρ = 0."""
    return np.array([[1.0, rho * np.sqrt(0.5)], [rho * np.sqrt(0.5), 0.5]])


def heavy_ball_phase(rho, T, seed):
    """Heavy-ball SGD as (midpoint positions, buffers): exactly odd buffers (see equilibrium_test)."""
    x, b = heavy_ball(H_HB, hb_noise(rho), LR, MU, T, seed)
    return x + LR * b / 2, b


def heavy_ball_theory(rho):
    """KL entropy rate per step of the exact heavy-ball chain in (midpoint, step) coordinates.

    State s_t = (x_t, x_{t−1}): x_{t+1} = x_t + μ(x_t − x_{t−1}) − ηHx_t − ηξ_t, stationary
    covariance by the discrete Lyapunov equation; the map to ((x_t + x_{t−1})/2, x_t − x_{t−1})
    is linear, and time reversal swaps x_t and x_{t−1}, i.e. flips the step.
    """
    k = 2
    eye, z = np.eye(k), np.zeros((k, k))
    a = np.block([[(1 + MU) * eye - LR * H_HB, -MU * eye], [eye, z]])
    q = np.block([[LR**2 * hb_noise(rho), z], [z, z]])
    s = scipy.linalg.solve_discrete_lyapunov(a, q)
    m = np.block([[0.5 * eye, 0.5 * eye], [eye, -eye]])
    a2 = m @ a @ np.linalg.inv(m)
    s2 = m @ s @ m.T
    return _kl_rate(a2, s2, np.array([False, False, True, True]))


def plane_ou(q, T, seed, m, plane, dt=0.2):
    """OU in m dimensions, D = ½I, U = diag(1..3) (PC order = index order), current in one plane."""
    D = 0.5 * np.eye(m)
    U = np.diag(np.linspace(1.0, 3.0, m))
    Q = np.zeros((m, m))
    Q[plane] = q / 2
    Q[plane[::-1]] = -q / 2
    return ou((D + Q) @ U, D, dt, T, seed), float(np.trace(Q.T @ np.linalg.inv(D) @ Q @ U))


# --- 1. stationarity --------------------------------------------------------------------------


def calibrate_stationarity(n: int, n_power: int) -> dict:
    out = {}
    cases = {
        "overdamped OU, Q = 0 (T = 1000)": lambda s: rotated_ou(0.0, 1000, seed=s)[0],
        "overdamped OU, q = 0.8 (T = 1000)": lambda s: rotated_ou(0.8, 1000, seed=s)[0],
        "underdamped oscillator, phase space (T = 2000)": lambda s: np.hstack(oscillator(2000, s)),
        "heavy-ball SGD, phase space (T = 3000)": lambda s: np.hstack(heavy_ball_phase(0, 3000, s)),
    }
    for name, gen in cases.items():
        flags = [not stationarity(gen(s), n_components=4).stationary for s in range(n)]
        out[name] = {"seeds": n, "called_non_stationary": rate(flags)}
        log(f"stationarity: {name}: {out[name]}")
    for ratio in (30, 50, 100):
        tau = 1000 / ratio
        flags = [
            not stationarity(ou(np.eye(2) / tau, np.eye(2) / tau, 1.0, 1000, s)).stationary
            for s in range(n_power)
        ]
        out[f"slow OU, T = {ratio} relaxation times (T = 1000)"] = {
            "seeds": n_power,
            "called_non_stationary": rate(flags),
        }
    walks, old = [], []
    for s in range(n):
        r = equilibrium_test(brownian(1000, 2, seed=s), n_surrogates=49, seed=s)
        walks.append(not r.testable)
        old.append(r.p_value < 0.05)
    out["random walk 2-D (T = 1000), equilibrium_test"] = {
        "seeds": n,
        "not_testable": rate(walks),
        "irreversibility_p_below_0.05": rate(old),
    }
    log(f"stationarity: random walks: {out['random walk 2-D (T = 1000), equilibrium_test']}")
    flags = []
    for s in range(n):
        r = subspace_currents(
            brownian(2000, 10, seed=s), n_components=10, n_surrogates=19, n_bootstrap=19, seed=s
        )
        flags.append(not r.stationarity.stationary)
    out["random walk 10-D (T = 2000), subspace_currents"] = {
        "seeds": n,
        "not_testable": rate(flags),
    }
    flags = []
    for s in range(n):
        x, v = oscillator(2000, s)
        drift = np.outer(np.linspace(0.0, 1.0, 2000), [2.0, 0.0])  # positions drift 2 sd
        flags.append(not equilibrium_test(x + drift, v, n_surrogates=19, seed=s).testable)
    out["underdamped oscillator + drift of 2 sd (T = 2000), with velocities"] = {
        "seeds": n,
        "not_testable": rate(flags),
    }
    log(f"stationarity: drifting 10-D walks and drifting oscillators: {out}")
    sd = float(np.sqrt(np.linalg.inv(np.array([[2.0, 0.5], [0.5, 1.0]]))[0, 0]))
    for amp in (0.25, 0.5, 1.0, 2.0):
        ramp = np.outer(np.linspace(0.0, 1.0, 2000), [amp * sd, 0.0])
        flags, old = [], []
        for s in range(n_power):
            r = equilibrium_test(rotated_ou(0.0, 2000, seed=s)[0] + ramp, n_surrogates=49, seed=s)
            flags.append(not r.testable)
            old.append(r.p_value < 0.05)
        out[f"OU (Q = 0) + trend of {amp} sd over T = 2000"] = {
            "seeds": n_power,
            "not_testable": rate(flags),
            "irreversibility_p_below_0.05": rate(old),
        }
        log(f"stationarity: trend {amp} sd: {out[f'OU (Q = 0) + trend of {amp} sd over T = 2000']}")
    return out


# --- 2. momentum ------------------------------------------------------------------------------


def calibrate_momentum(n: int, n_power: int, n_surrogates: int) -> dict:
    out = {}
    par, blind, st = [], [], []
    for s in range(n):
        x, v = oscillator(2000, s)
        r = equilibrium_test(x, v, n_surrogates=n_surrogates, seed=s)
        par.append(r.p_value)
        st.append(r.testable)
        blind.append(
            equilibrium_test(np.c_[x, v], n_components=4, n_surrogates=n_surrogates, seed=s).p_value
        )
    out["underdamped equilibrium, parity-aware"] = {**null_summary(par), "testable": rate(st)}
    out["underdamped equilibrium, parity-blind (x, v as positions)"] = null_summary(blind)
    log(
        f"momentum: oscillator null: {out['underdamped equilibrium, parity-aware']}, blind "
        f"{out['underdamped equilibrium, parity-blind (x, v as positions)']['rejection_0.05']}"
    )
    mid, cen, pos, sig = [], [], [], []
    for s in range(n):
        x, b = heavy_ball(H_HB, hb_noise(0.0), LR, MU, 3000, 1000 + s)
        r = equilibrium_test(x + LR * b / 2, b, n_surrogates=n_surrogates, seed=s)
        mid.append(r.p_value)
        sig.append(r.entropy.rate)
        cen.append(
            equilibrium_test(
                x[1:-1], (x[2:] - x[:-2]) / 2, n_surrogates=n_surrogates, seed=s
            ).p_value
        )
        pos.append(equilibrium_test(x, n_surrogates=n_surrogates, seed=s).p_value)
    out["heavy-ball SGD, commuting noise, (midpoint, buffer)"] = null_summary(mid)
    out["heavy-ball SGD, commuting noise, (x_t, central difference)"] = null_summary(cen)
    out["heavy-ball SGD, commuting noise, positions only"] = null_summary(pos)
    log(f"momentum: heavy-ball null midpoint {null_summary(mid)} central {null_summary(cen)}")
    power = {}
    for c in (0.05, 0.1, 0.2, 0.4):
        rej = [
            equilibrium_test(
                *oscillator(2000, 5000 + s, drive=c), n_surrogates=n_surrogates, seed=s
            ).p_value
            < 0.05
            for s in range(n_power)
        ]
        power[str(c)] = rate(rej)
    out["power, underdamped with rotational force c·Jx (seeds per c)"] = {
        "seeds": n_power,
        "rejection_0.05": power,
    }
    log(f"momentum: oscillator power {power}")
    power, theory = {}, {"0.0": heavy_ball_theory(0.0)}
    measured = {"0.0": {"rate_mean": float(np.mean(sig)), "rate_sd": float(np.std(sig))}}
    for rho in (0.1, 0.2, 0.4):
        rej, rates, corr = [], [], []
        for s in range(n_power):
            r = equilibrium_test(
                *heavy_ball_phase(rho, 3000, 7000 + s), n_surrogates=n_surrogates, seed=s
            )
            rej.append(r.p_value < 0.05)
            rates.append(r.entropy.rate)
            corr.append(r.entropy.corrected)
        power[str(rho)] = rate(rej)
        theory[str(rho)] = heavy_ball_theory(rho)
        measured[str(rho)] = {
            "rate_mean": float(np.mean(rates)),
            "rate_sd": float(np.std(rates)),
            "corrected_mean": float(np.mean(corr)),
        }
    out["power, heavy-ball SGD with noise correlation rho (seeds per rho)"] = {
        "seeds": n_power,
        "rejection_0.05": power,
    }
    out["heavy-ball entropy rate per step: linear theory vs measured (T = 3000)"] = {
        "theory": theory,
        "measured": measured,
    }
    log(f"momentum: heavy-ball power {power}; theory {theory}; measured {measured}")
    return out


# --- 3. subspace currents ---------------------------------------------------------------------


def calibrate_currents(n: int, n_power: int, n_surrogates: int, n_cover: int) -> dict:
    out = {}
    for m, T in ((10, 2000), (20, 4000)):
        ps, fw = [], []
        for s in range(n):
            x, _ = plane_ou(0.0, T, 2000 + s, m, (2, 7))
            r = subspace_currents(
                x, n_components=m, n_surrogates=n_surrogates, n_bootstrap=19, dt=0.2, seed=s
            )
            ps.append(r.p_value)
            fw.append(bool(r.significant_planes))
        out[f"null, k = {m} (T = {T})"] = {
            **null_summary(ps),
            "n_planes": m * (m - 1) // 2,
            "family_wise_error_0.05": rate(fw),
        }
        log(f"currents: null k = {m}: {out[f'null, k = {m} (T = {T})']}")
    power = {}
    for q in (0.1, 0.2, 0.4, 0.8):
        omni, plane, eq2 = [], [], []
        for s in range(n_power):
            x, _ = plane_ou(q, 2000, 3000 + s, 10, (2, 7))
            r = subspace_currents(
                x, n_components=10, n_surrogates=n_surrogates, n_bootstrap=19, dt=0.2, seed=s
            )
            omni.append(r.p_value < 0.05)
            plane.append((2, 7) in r.significant_planes)
            eq2.append(equilibrium_test(x, n_surrogates=n_surrogates, seed=s).p_value < 0.05)
        power[str(q)] = {
            "omnibus": rate(omni),
            "plane (2, 7) significant (family-wise)": rate(plane),
            "equilibrium_test in the top-2 PCA plane": rate(eq2),
        }
        log(f"currents: power q = {q}: {power[str(q)]}")
    out["power, current in plane (2, 7) of k = 10 (T = 2000)"] = {"seeds": n_power, **power}
    cover = {}
    for q in (0.0, 0.3, 0.6, 1.0):
        hits, width = [], []
        for s in range(n_cover):
            x, sigma = plane_ou(q, 3000, 4000 + s, 6, (1, 4))
            r = subspace_currents(
                x, n_components=6, n_surrogates=19, n_bootstrap=199, dt=0.2, seed=s
            )
            lo, hi = r.entropy.interval
            hits.append(lo <= sigma <= hi + 1e-12)
            width.append(hi - lo)
        cover[str(q)] = {
            "true_sigma": sigma,
            "coverage_90": rate(hits),
            "mean_width": float(np.mean(width)),
        }
        log(f"currents: coverage q = {q}: {cover[str(q)]}")
    out["entropy interval, 90 % basic bootstrap, k = 6 (T = 3000)"] = {"seeds": n_cover, **cover}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a few seeds per case (minutes)")
    ap.add_argument("--only", choices=["stationarity", "momentum", "currents"], default=None)
    args = ap.parse_args()
    n, n_power, n_sur, n_cover = (20, 10, 49, 10) if args.quick else (200, 50, 99, 100)
    out = {"machine": machine(), "seeds_null": n, "seeds_power": n_power, "n_surrogates": n_sur}
    parts = {
        "stationarity": lambda: calibrate_stationarity(n, n_power),
        "momentum": lambda: calibrate_momentum(n, n_power, n_sur),
        "currents": lambda: calibrate_currents(n, n_power, n_sur, n_cover),
    }
    name = "equilibrium_calibration" + ("_quick" if args.quick else "")
    if args.only:
        name += f"_{args.only}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    for key, run in parts.items():
        if args.only and key != args.only:
            continue
        t0 = time.perf_counter()
        out[key] = run()
        out[key]["seconds"] = time.perf_counter() - t0
        (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
