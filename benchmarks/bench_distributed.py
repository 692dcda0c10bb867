"""Communication overhead of the distributed engine: 1 and 2 gloo processes, one thread each.

The same total data (N samples) is split over P ranks; each rank times the moments pass and
operator products D @ X (X: d × k) with the cache off (every product is a real data pass, as at
scale), the all-reduce of one product's d·k float64 alone, and the bytes it contributed.

    python benchmarks/bench_distributed.py            # launches torchrun for P = 1 and 2
    torchrun --nproc_per_node P benchmarks/bench_distributed.py --worker   # one configuration
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
import sgdscope as sg
from _common import RESULTS, machine
from sgdscope.noise.distributed import shard


def _model(width: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(784, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10)
    )


def worker(args) -> None:
    torch.set_num_threads(1)
    device = torch.device(args.device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(args.samples, 784, generator=g).to(device)
    y = torch.randint(0, 10, (args.samples,), generator=g).to(device)
    noise = sg.GradientNoise(
        _model(args.width).to(device).eval(), nn.CrossEntropyLoss(reduction="none"), shard((x, y)),
        cache=False, chunk_size=args.chunk,
    )  # fmt: skip
    red = noise._reducer
    dist.barrier()
    t0 = time.perf_counter()
    noise.trace()
    moments_s = time.perf_counter() - t0
    op = noise.operator()
    X = torch.randn(noise.dim, args.k, dtype=torch.float64, generator=g).to(device)
    times, comm, sent = [], [], []
    for _ in range(args.repeats):
        before = red.bytes_reduced
        dist.barrier()
        t0 = time.perf_counter()
        op.matmat(X)
        sync()
        times.append(time.perf_counter() - t0)
        sent.append(red.bytes_reduced - before)
        buf = torch.zeros(noise.dim, args.k, dtype=torch.float64, device=device)
        dist.barrier()
        t0 = time.perf_counter()
        if world > 1:
            dist.all_reduce(buf)
        sync()
        comm.append(time.perf_counter() - t0)
    if rank == 0:
        times.sort()
        comm.sort()
        print(json.dumps({
            "world_size": world, "n": args.samples, "d": noise.dim, "k": args.k,
            "moments_s": moments_s, "product_s": times[len(times) // 2],
            "all_reduce_s": comm[len(comm) // 2], "bytes_per_product": sent[0],
            "dk_float64_bytes": noise.dim * args.k * 8, "chunk": noise.chunk_size,
            "device": str(device), "backend": dist.get_backend(),
        }), flush=True)  # fmt: skip
    dist.destroy_process_group()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--worker", action="store_true")
    p.add_argument("--samples", type=int, default=1024)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--chunk", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--procs", default="1,2")
    p.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (NCCL, LOCAL_RANK's GPU)")
    p.add_argument("--tag", default="cpu", help="suffix of the results file")
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    rows, info = [], machine()
    for procs in [int(v) for v in args.procs.split(",")]:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={procs}", __file__, "--worker", f"--samples={args.samples}",
               f"--width={args.width}", f"--k={args.k}", f"--chunk={args.chunk}",
               f"--repeats={args.repeats}", f"--device={args.device}"]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    base = rows[0]["product_s"]
    for r in rows:
        r["efficiency"] = base / (r["world_size"] * r["product_s"])
        print(
            f"P = {r['world_size']}: moments {r['moments_s']:.2f} s, product {r['product_s']:.2f} s "
            f"(efficiency {100 * r['efficiency']:.0f} %), all-reduce alone {r['all_reduce_s']:.3f} s, "
            f"{r['bytes_per_product'] / 1e6:.1f} MB per product vs d·k·8 = "
            f"{r['dk_float64_bytes'] / 1e6:.1f} MB"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"distributed_{args.tag}.json").write_text(
        json.dumps({"machine": info, "rows": rows}, indent=2)
    )


if __name__ == "__main__":
    main()
