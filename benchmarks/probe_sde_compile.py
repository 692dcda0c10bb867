"""Was torch.compile worth it for the Euler–Maruyama step on CPU? One measurement, side by side.

The fused candidate: ``torch.compile`` of a whole step (normals, drift −x, the noise product and
the update) for a 2-D dense D, 10⁵ particles, float32, one torch thread, against the same step in
eager mode and against ``torch.randn`` alone. Inductor generates its random numbers in the
kernel (Philox); on this machine that made the compiled step slower than the eager one, which is
why simulate_sde fuses by blocking (arrays that stay in cache, reused buffers) instead.

Run: ``python benchmarks/probe_sde_compile.py`` (needs a C++ compiler for inductor).
"""

from __future__ import annotations

import json
import time

import torch


def best(fn, repeats=5):
    fn()
    t = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        t = min(t, time.perf_counter() - t0)
    return t


def main() -> None:
    torch.set_num_threads(1)
    n = 100_000
    x = torch.zeros(n, 2)
    s = torch.eye(2) * 0.1

    def step(x, s, dt: float):
        z = torch.randn(x.shape[0], 2, dtype=x.dtype)
        return x + dt * (-x) + z @ s

    t0 = time.perf_counter()
    compiled = torch.compile(step, dynamic=False)
    compiled(x, s, 0.01)
    compile_s = time.perf_counter() - t0
    out = {
        "particles": n,
        "dim": 2,
        "compile_s": compile_s,
        "compiled_step_ms": 1e3 * best(lambda: compiled(x, s, 0.01)),
        "eager_step_ms": 1e3 * best(lambda: step(x, s, 0.01)),
        "randn_only_ms": 1e3 * best(lambda: torch.randn(n, 2)),
    }
    out["compiled_over_eager"] = out["compiled_step_ms"] / out["eager_step_ms"]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
