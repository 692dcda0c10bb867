"""Overhead of ``sg.Monitor`` at its default cadence against the same training loop without it.

Run: ``python benchmarks/bench_monitor.py [--models small-lenet,resnet18,gpt2] [--rounds 6]
[--block 10] [--cifar-dir DIR] [--out benchmarks/results/monitor.json]``.

Loop: SGD (lr 0.05, momentum 0.9) on fixed mini-batches; two copies of the model with the same
weights, one plain and one watched by ``sg.Monitor`` at its defaults (every step recorded,
``measure_every="auto"`` with ``overhead=0.05``, k = 8, the memory rule for raw or single
weights), on a probe set of ``--probe`` samples. Timings on a shared machine drift, so the two
variants run in interleaved blocks of ``--block`` steps (one block of each per round) and the
slowdown is the median over rounds of the paired ratio (monitored block / plain block − 1) over the
blocks with no measurement in them: the cost of recording. On a loaded machine that ratio drifts by
tens of percent either way, so the time spent inside ``Monitor.step`` on the steps without a
measurement is also timed directly (``monitor_step_share``: its median over the plain step's mean). A first round warms both up (it holds
the first measurement, at step 1) and counts only in the totals; the order alternates by round. The measurements' own cost is reported
separately, with their number and their share of the monitored run's time ("auto" keeps that
share near 5 % once the run is long against one measurement; a short run pays its first one).

Models (random weights):
  small-lenet   sgdscope.paper.models small-lenet (d = 13,338) on the embedded MNIST, batch 128
  resnet18      the ResNet-18 of benchmarks/bench_scale.py (11.2M) on CIFAR-10 (``--cifar-dir``;
                random images otherwise), batch 64, train-mode BatchNorm
  gpt2          the GPT-2-shaped model of bench_scale.py at its quick size (2 layers, width 128,
                vocabulary 8,192, 32 tokens), batch 16
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

import sgdscope as sg

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, write_results


def build(name, cifar_dir):
    """Model, per-sample loss, training data (inputs, targets) and batch size."""
    ce = nn.CrossEntropyLoss(reduction="none")
    if name == "small-lenet":
        model = sg.paper.models.build("small-lenet", seed=0)
        x, y = sg.paper.data.mnist(n=2048).tensors()
        return model, ce, (x, y), 128
    from bench_scale import ResNet18, cifar_images

    if name == "resnet18":
        torch.manual_seed(0)
        return ResNet18(), ce, cifar_images(1024, cifar_dir), 64
    import transformers

    from sgdscope.noise.losses import sequence_cross_entropy

    cfg = transformers.GPT2Config(vocab_size=8192, n_positions=32, n_embd=128, n_layer=2, n_head=4)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg)
    ids = torch.randint(0, 8192, (512, 32), generator=torch.Generator().manual_seed(0))
    return model, sequence_cross_entropy, ({"input_ids": ids}, ids), 16


def batch(data, i, b):
    x, y = data
    n = y.shape[0]
    idx = torch.arange(i * b, (i + 1) * b) % n
    xs = {k: v[idx] for k, v in x.items()} if isinstance(x, dict) else x[idx]
    return xs, y[idx]


def forward(model, x):
    return model(**x) if isinstance(x, dict) else model(x)


def run(name, args):
    model, loss_fn, data, b = build(name, args.cifar_dir)
    watched = copy.deepcopy(model)
    probe = batch(data, 10_000, args.probe)
    opts = {
        v: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
        for v, m in (("plain", model), ("monitor", watched))
    }
    path = Path(tempfile.mkdtemp()) / "run"
    mon = sg.Monitor(watched, loss_fn, probe, path, batch_size=b)
    step = 0
    rounds, in_step = [], []
    for r in range(args.rounds + 1):  # round 0 warms both up (it holds the first measurement)
        times = {"warmup": r == 0}
        order = [("plain", model), ("monitor", watched)]
        for variant, m in order if r % 2 else order[::-1]:
            t0 = time.perf_counter()
            for j in range(args.block):
                x, y = batch(data, step + j, b)
                loss = loss_fn(forward(m, x), y).mean()
                opts[variant].zero_grad()
                loss.backward()
                opts[variant].step()
                if variant == "monitor":
                    t1 = time.perf_counter()
                    mon.step(opts[variant], loss=loss)
                    if mon.last_measurement is None or mon.last_measurement.step != step + j + 1:
                        in_step.append(time.perf_counter() - t1)
            times[variant] = time.perf_counter() - t0
            if variant == "monitor":
                measured = mon.last_measurement is not None and mon.last_measurement.step > step
                times["measured"] = measured
        step += args.block
        rounds.append(times)
        print(f"{name}: round {len(rounds)}: {times}", flush=True)
    mon.close()
    rec = sg.load_monitor(path)
    clean = [r["monitor"] / r["plain"] - 1 for r in rounds if not (r["measured"] or r["warmup"])]
    plain_total = sum(r["plain"] for r in rounds)
    monitor_total = sum(r["monitor"] for r in rounds)
    return {
        "model": name,
        "d": mon.full_dim,
        "record_rule": mon.record_rule,
        "batch_size": b,
        "probe": args.probe,
        "steps": step,
        "plain_step_s": plain_total / step,
        "recording_slowdown_paired_median": statistics.median(clean) if clean else None,
        "monitor_step_s_median": statistics.median(in_step),
        "monitor_step_share": statistics.median(in_step) / (plain_total / step),
        "rounds_without_measurement": len(clean),
        "measurements": len(rec),
        "measurement_steps": rec.steps.tolist(),
        "measurement_seconds": rec.seconds.tolist(),
        "total_slowdown": monitor_total / plain_total - 1,
        "measurement_share_of_monitored_time": float(rec.seconds.sum()) / monitor_total,
        "rounds": rounds,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="small-lenet,resnet18,gpt2")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--block", type=int, default=10)
    ap.add_argument("--probe", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cifar-dir", default=None)
    ap.add_argument("--out", default="monitor")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    info = machine()
    results = [run(name, args) for name in args.models.split(",")]
    payload = {"machine": info, "args": vars(args), "results": results}
    path = write_results(args.out, payload)
    print(json.dumps([{k: v for k, v in r.items() if k != "rounds"} for r in results], indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
