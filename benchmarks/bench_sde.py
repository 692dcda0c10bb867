"""simulate_sde against torchsde (Euler, same dt): particle-steps per second.

Usage (torchsde is a benchmark-only dependency: ``pip install torch==2.13.0 torchsde``)::

    python benchmarks/bench_sde.py --device cpu --out benchmarks/results/sde_cpu.json
    python benchmarks/bench_sde.py --device cuda --out benchmarks/results/sde_cuda.json

Problem: Ornstein–Uhlenbeck dx = −x dt + √(2β⁻¹D) dW (cheap drift, so the integrator is measured),
float32, β = 1, dt = 0.01, in 2-D with a dense D and in 100-D with a dense D or a rank-10 D.
torchsde is run two ways, both with its default Brownian motion (BrownianInterval):
``plain``, the documented way (g returns the (n, d, m) matrix; here an expanded view of σ), and
``g_prod``, torchsde's fast path where the SDE supplies g·dW itself (the best torchsde can do).
Both sides run in the same process, one after the other, on the same inputs.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import time
from datetime import datetime, timezone

import torch
import torchsde

import sgdscope as sg


class OU(torch.nn.Module):
    noise_type = "general"
    sde_type = "ito"

    def __init__(self, sigma: torch.Tensor, beta: float, use_g_prod: bool) -> None:
        super().__init__()
        self.sigma = sigma * math.sqrt(2.0 / beta)  # (d, m)
        if use_g_prod:
            self.g_prod = self._g_prod

    def f(self, t, y):
        return -y

    def g(self, t, y):
        return self.sigma.expand(y.shape[0], *self.sigma.shape)

    def _g_prod(self, t, y, v):
        return v @ self.sigma.T


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeats):
    fn()  # warm-up (allocations, kernels)
    sync(device)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best, out


def make_case(dim, structure, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    if structure == "low-rank":
        L = torch.randn(dim, 10, generator=g) / math.sqrt(10)
        return sg.LowRankDiffusion(L.to(device)), L.to(device)
    B = torch.randn(dim, dim, generator=g) / math.sqrt(dim)
    D = B @ B.T + 0.1 * torch.eye(dim)
    sigma = torch.linalg.cholesky(D.double()).float()
    return D.to(device), sigma.to(device)


def run(device, sizes, cases, n_steps, dt, repeats, plain_cap, ts_threads=(0,)):
    rows = []
    for dim, structure in cases:
        diffusion, sigma = make_case(dim, structure, device)
        for n in sizes:
            x0 = torch.zeros(n, dim, device=device)
            row = {"dim": dim, "structure": structure, "n_particles": n, "n_steps": n_steps}

            def ours(check, diffusion=diffusion, x0=x0):
                return sg.simulate_sde(
                    lambda x: -x, diffusion, x0, dt, n_steps, 1.0, 0, n_steps, check_finite=check
                )

            t_ours, xs = timed(lambda: ours(False), device, repeats)
            t_chk, _ = timed(lambda: ours(True), device, repeats)
            row["ours_s"], row["ours_checked_s"] = t_ours, t_chk
            row["ours_var"] = float(xs[-1].var(0).mean())
            ts = torch.tensor([0.0, n_steps * dt], device=device)
            for mode in ("plain", "g_prod"):
                sde = OU(sigma, 1.0, use_g_prod=(mode == "g_prod"))
                if mode == "plain" and n * dim * sigma.shape[1] > plain_cap:
                    row[f"torchsde_{mode}_s"] = None
                    row[f"torchsde_{mode}_note"] = (
                        f"skipped: g would materialise n·d·m = {n * dim * sigma.shape[1]:.3g} floats"
                    )
                    continue
                best_t = math.inf
                before = torch.get_num_threads()
                for th in ts_threads:  # torchsde's best thread count, too
                    if th:
                        torch.set_num_threads(th)
                    with torch.no_grad():
                        t_ts, ys = timed(
                            lambda sde=sde, x0=x0, ts=ts: torchsde.sdeint(
                                sde, x0, ts, method="euler", dt=dt
                            ),
                            device,
                            repeats,
                        )
                    torch.set_num_threads(before)
                    row[f"torchsde_{mode}_s_threads{th or before}"] = t_ts
                    if t_ts < best_t:
                        best_t = t_ts
                        row[f"torchsde_{mode}_var"] = float(ys[-1].var(0).mean())
                row[f"torchsde_{mode}_s"] = best_t
            best = min(t for t in (row["torchsde_plain_s"], row["torchsde_g_prod_s"]) if t)
            row["ours_Mps"] = n * n_steps / t_ours / 1e6
            row["torchsde_best_Mps"] = n * n_steps / best / 1e6
            row["speedup_vs_best"] = best / t_ours
            row["speedup_checked_vs_best"] = best / t_chk
            if row["torchsde_plain_s"]:
                row["speedup_vs_plain"] = row["torchsde_plain_s"] / t_ours
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def run_interleaved(device, sizes, cases, n_steps, dt, rounds, plain_cap, ts_threads):
    """Like ``run``, but every method runs once per round, in turn, and keeps its best round.

    On a machine shared with other jobs the load changes over seconds; interleaving gives every
    method the same chances, so that the ratios measure the code, not the moment.
    """
    rows = []
    for dim, structure in cases:
        diffusion, sigma = make_case(dim, structure, device)
        for n in sizes:
            x0 = torch.zeros(n, dim, device=device)
            ts = torch.tensor([0.0, n_steps * dt], device=device)
            row = {"dim": dim, "structure": structure, "n_particles": n, "n_steps": n_steps}
            methods = {}
            for check in (False, True):
                methods["ours_checked" if check else "ours"] = (
                    0,
                    lambda check=check, diffusion=diffusion, x0=x0: sg.simulate_sde(
                        lambda x: -x,
                        diffusion,
                        x0,
                        dt,
                        n_steps,
                        1.0,
                        0,
                        n_steps,
                        check_finite=check,
                    ),
                )
            for mode in ("plain", "g_prod"):
                if mode == "plain" and n * dim * sigma.shape[1] > plain_cap:
                    row["torchsde_plain_note"] = (
                        f"skipped: g would materialise n·d·m = {n * dim * sigma.shape[1]:.3g} floats"
                    )
                    continue
                sde = OU(sigma, 1.0, use_g_prod=(mode == "g_prod"))
                for th in ts_threads:
                    methods[f"torchsde_{mode}_threads{th}"] = (
                        th,
                        lambda sde=sde, x0=x0, ts=ts: torchsde.sdeint(
                            sde, x0, ts, method="euler", dt=dt
                        ),
                    )
            best = dict.fromkeys(methods, math.inf)
            outs = {}
            before = torch.get_num_threads()
            with torch.no_grad():
                for r in range(rounds + 1):  # round 0 is the warm-up
                    for name, (th, fn) in methods.items():
                        if th:
                            torch.set_num_threads(th)
                        sync(device)
                        t0 = time.perf_counter()
                        out = fn()
                        sync(device)
                        t = time.perf_counter() - t0
                        torch.set_num_threads(before)
                        if r:
                            best[name] = min(best[name], t)
                        outs[name] = out
            row["rounds"] = rounds
            row.update({f"{k}_s": v for k, v in best.items()})
            row["ours_s"], row["ours_checked_s"] = best["ours"], best["ours_checked"]
            row["ours_var"] = float(outs["ours"][-1].var(0).mean())
            for mode in ("plain", "g_prod"):
                keys = [k for k in best if k.startswith(f"torchsde_{mode}_")]
                if keys:
                    k = min(keys, key=best.get)
                    row[f"torchsde_{mode}_s"] = best[k]
                    row[f"torchsde_{mode}_var"] = float(outs[k][-1].var(0).mean())
                else:
                    row[f"torchsde_{mode}_s"] = None
            t_best = min(t for t in (row["torchsde_plain_s"], row["torchsde_g_prod_s"]) if t)
            row["ours_Mps"] = n * n_steps / row["ours_s"] / 1e6
            row["torchsde_best_Mps"] = n * n_steps / t_best / 1e6
            row["speedup_vs_best"] = t_best / row["ours_s"]
            row["speedup_checked_vs_best"] = t_best / row["ours_checked_s"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def machine(device):
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchsde": torchsde.__version__,
        "threads": torch.get_num_threads(),
        "sgdscope_thread_policy": "simulate_sde's default (threads=None)",
    }
    try:
        info["lscpu"] = subprocess.run(
            ["lscpu"], capture_output=True, text=True
        ).stdout.splitlines()[:12]
        info["nproc"] = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--dims", default="2:dense,100:dense,100:low-rank")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--dt", type=float, default=0.01)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--plain-cap", type=float, default=2e9)
    ap.add_argument(
        "--max-particle-dims",
        type=float,
        default=2e8,
        help="skip sizes with n·dim above this (memory/time)",
    )
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    ap.add_argument(
        "--interleave",
        action="store_true",
        help="run every method once per round in turn (--repeats rounds) and keep its best",
    )
    ap.add_argument(
        "--torchsde-threads",
        default="0",
        help="comma-separated torch thread counts to time torchsde under (its best is kept; "
        "0: as set by --threads)",
    )
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    device = torch.device(a.device)
    if a.threads:
        torch.set_num_threads(a.threads)
    sizes = [int(s) for s in a.sizes.split(",")]
    cases = [(int(c.split(":")[0]), c.split(":")[1]) for c in a.dims.split(",")]
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": str(device),
        "machine": machine(device),
        "dt": a.dt,
        "dtype": "float32",
        "n_steps": a.steps,
        "interleaved_rounds": a.repeats if a.interleave else None,
        "rows": [],
    }
    for case in cases:
        ok = [n for n in sizes if n * case[0] <= a.max_particle_dims]
        ts_threads = tuple(int(t) for t in a.torchsde_threads.split(","))
        runner = run_interleaved if a.interleave else run
        result["rows"] += runner(
            device, ok, [case], a.steps, a.dt, a.repeats, a.plain_cap, ts_threads
        )
        with open(a.out, "w") as fh:  # after every case, so a cut-off run keeps what it has
            json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
