"""Recorder overhead against plain training, and against Cockpit's "economy" configuration.

Run: ``python benchmarks/bench_recorder.py [--quick]``. Writes ``benchmarks/results/recorder.json``
and prints a markdown table.

Loop: SGD (lr 0.1, momentum 0.9, batch 128; the paper's settings) on synthetic data (nothing is
downloaded) for tiny-fc (49→16→BN1d→ReLU→5, d = 917) and small-lenet (d = 13,338). Variants:

- ``plain``: the loop alone;
- ``rec-1`` / ``rec-10``: the loop with ``TrajectoryRecorder(every=1 / 10)`` recording all weights;
- ``cockpit-economy``: the loop instrumented by Cockpit (``configuration("economy")``), the anchor
  (needs ``pip install torch==2.13.0 'setuptools<81' cockpit-for-pytorch backpack-for-pytorch
  --no-deps json-tricks einops unfoldNd pandas seaborn``); skipped with the reason if it fails.

Timings on a shared machine are noisy, so the variants are interleaved block by block (each block
runs every variant for the same number of steps) and medians over blocks are reported. The
recorder's own cost is also timed directly: the time spent inside ``rec.step()`` and the slowdown
of the whole step (which includes the writer thread competing for the CPU).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import torch

import sgdscope as sg

HERE = Path(__file__).parent


def _model(name: str) -> torch.nn.Module:
    try:
        from sgdscope.paper.models import build

        return build(name, seed=0)
    except ImportError:  # pragma: no cover - before sgdscope.paper.models existed
        torch.manual_seed(0)
        return torch.nn.Sequential(
            torch.nn.Flatten(),
            torch.nn.Linear(49, 16),
            torch.nn.BatchNorm1d(16),
            torch.nn.ReLU(),
            torch.nn.Linear(16, 5),
        )


def _data(name: str, n: int = 1024):
    g = torch.Generator().manual_seed(0)
    shape = (n, 1, 7, 7) if name == "tiny-fc" else (n, 1, 28, 28)
    classes = 5 if name == "tiny-fc" else 10
    return torch.randn(shape, generator=g), torch.randint(0, classes, (n,), generator=g)


class Plain:
    label = "plain"

    def __init__(self, name: str, tmp: Path):
        self.model = _model(name)
        self.x, self.y = _data(name)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9)
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.i = 0
        self.in_hook = 0.0

    def batch(self):
        i = (self.i * 128) % len(self.x)
        self.i += 1
        return self.x[i : i + 128], self.y[i : i + 128]

    def step(self) -> None:
        x, y = self.batch()
        loss = self.loss_fn(self.model(x), y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self.hook(loss)

    def hook(self, loss) -> None:
        pass

    def close(self) -> None:
        pass


class Recorded(Plain):
    def __init__(self, name: str, tmp: Path, every: int):
        super().__init__(name, tmp)
        self.label = f"rec-{every}"
        path = Path(tempfile.mkdtemp(dir=tmp)) / "traj"
        self.rec = sg.TrajectoryRecorder(
            path, self.model, every=every, optimizer=self.opt, batch_size=128, n=len(self.x)
        )

    def hook(self, loss) -> None:
        t = time.perf_counter()
        self.rec.step(loss=loss)
        self.in_hook += time.perf_counter() - t

    def close(self) -> None:
        self.rec.close()


class CockpitEconomy(Plain):
    label = "cockpit-economy"

    def __init__(self, name: str, tmp: Path):
        super().__init__(name, tmp)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from backpack import extend
            from cockpit import Cockpit
            from cockpit.utils.configuration import configuration

        self.model = extend(self.model)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9)
        self.loss_fn = extend(torch.nn.CrossEntropyLoss(reduction="mean"))
        self.individual = torch.nn.CrossEntropyLoss(reduction="none")
        self.cockpit = Cockpit(self.model.parameters(), quantities=configuration("economy"))
        self.global_step = 0

    def step(self) -> None:
        x, y = self.batch()
        out = self.model(x)
        loss = self.loss_fn(out, y)
        losses = self.individual(out, y)
        self.opt.zero_grad()
        info = {
            "batch_size": len(x),
            "individual_losses": losses,
            "loss": loss,
            "optimizer": self.opt,
        }
        with self.cockpit(self.global_step, info=info):
            loss.backward(create_graph=self.cockpit.create_graph(self.global_step))
        self.opt.step()
        self.global_step += 1


def bench(name: str, steps: int, blocks: int, tmp: Path) -> dict:
    makers = {
        "plain": lambda: Plain(name, tmp),
        "rec-1": lambda: Recorded(name, tmp, 1),
        "rec-10": lambda: Recorded(name, tmp, 10),
        "cockpit-economy": lambda: CockpitEconomy(name, tmp),
    }
    runners, errors = {}, {}
    for label, make in makers.items():
        try:
            r = make()
            for _ in range(5):  # warm-up, and a check that the variant runs at all
                r.step()
            runners[label] = r
        except Exception as err:  # reported in the results
            errors[label] = f"{type(err).__name__}: {err}"
    times: dict[str, list[float]] = {k: [] for k in runners}
    hook: dict[str, list[float]] = {k: [] for k in runners}
    cpu: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(blocks):
        for label, r in runners.items():
            r.in_hook = 0.0
            t, c = time.perf_counter(), time.process_time()
            for _ in range(steps):
                r.step()
            times[label].append((time.perf_counter() - t) / steps)
            cpu[label].append((time.process_time() - c) / steps)
            hook[label].append(r.in_hook / steps)
    close = {}
    for label, r in runners.items():
        t = time.perf_counter()
        r.close()
        close[label] = time.perf_counter() - t
    base = statistics.median(times["plain"])
    base_cpu = statistics.median(cpu["plain"])
    res = {}
    for label in runners:
        med = statistics.median(times[label])
        ratios = [a / b - 1 for a, b in zip(times[label], times["plain"], strict=True)]
        res[label] = {
            "step_ms_median": 1e3 * med,
            "step_ms_blocks": [1e3 * t for t in times[label]],
            "overhead_vs_plain_median": med / base - 1,
            "overhead_paired_blocks_median": statistics.median(ratios),
            "in_step_call_ms_median": 1e3 * statistics.median(hook[label]),
            "in_step_call_fraction": statistics.median(hook[label]) / base,
            "close_s": close[label],
            "cpu_ms_median": 1e3 * statistics.median(cpu[label]),
            "cpu_overhead_vs_plain_median": statistics.median(cpu[label]) / base_cpu - 1,
        }
    d = sum(p.numel() for p in _model(name).parameters())
    return {
        "model": name,
        "d": d,
        "steps_per_block": steps,
        "blocks": blocks,
        "results": res,
        "errors": errors,
    }


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--blocks", type=int, default=None, help="blocks per model (default 9/7)")
    parser.add_argument("--out", default=str(HERE / "results" / "recorder.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    plan = {"tiny-fc": (200, 9), "small-lenet": (30, 7)}
    if args.quick:
        plan = {"tiny-fc": (50, 3), "small-lenet": (10, 3)}
    if args.blocks is not None:
        plan = {name: (steps, args.blocks) for name, (steps, _) in plan.items()}
    out = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "torch": torch.__version__,
        "threads": args.threads,
        "machine": platform.machine(),
        "cpu": _cpu_name(),
        "nproc": subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip(),
        "load_before": open("/proc/loadavg").read().split()[:3],
        "benchmarks": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, (steps, blocks) in plan.items():
            out["benchmarks"].append(bench(name, steps, blocks, Path(tmp)))
    out["load_after"] = open("/proc/loadavg").read().split()[:3]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(
        "| model | d | variant | wall step (ms) | wall slowdown (paired) | CPU step (ms) "
        "| CPU overhead | time in rec.step() |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for b in out["benchmarks"]:
        for label, r in b["results"].items():
            print(
                f"| {b['model']} | {b['d']} | {label} | {r['step_ms_median']:.3f} | "
                f"{100 * r['overhead_paired_blocks_median']:+.1f} % | "
                f"{r['cpu_ms_median']:.3f} | {100 * r['cpu_overhead_vs_plain_median']:+.1f} % | "
                f"{100 * r['in_step_call_fraction']:.2f} % |"
            )
        for label, err in b["errors"].items():
            print(f"| {b['model']} | {b['d']} | {label} | failed: {err[:120]} | | | | |")


if __name__ == "__main__":
    main()
