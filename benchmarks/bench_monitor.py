"""Overhead of ``sg.Monitor`` at its default cadence against the same training loop without it,
and against Cockpit's "economy" configuration on the same model, in the same run.

Run: ``python benchmarks/bench_monitor.py [--models small-lenet,resnet18,gpt2] [--rounds 6]
[--block 10] [--threads 1] [--cifar-dir DIR] [--no-cockpit] [--out monitor]``.

Loop: SGD (lr 0.05, momentum 0.9) on fixed mini-batches; copies of the model with the same
weights: one plain, one watched by ``sg.Monitor`` at its defaults (every step recorded,
``measure_every="auto"`` with ``overhead=0.05``, k = 8, the memory rule for raw or single
weights), on a probe set of ``--probe`` samples, and one instrumented by Cockpit (Schneider et al.,
NeurIPS 2021) in its ``configuration("economy")`` with a BackPACK-extended model and loss, tracked
at every step (its default schedule), as ``bench_recorder.py`` runs it. Cockpit needs
``cockpit-for-pytorch`` (and ``setuptools<81``); it relies on BackPACK, so it does not run on
every model: where its set-up or first steps fail, the error is recorded and the other variants
go on.

Timings on a shared machine drift, so the variants run in interleaved blocks of ``--block`` steps
(one block of each per round, the order rotating by round) and each slowdown is the median over
rounds of the paired ratio (variant block / plain block − 1); for the monitor, over the blocks with
no measurement in them (the cost of recording). On a loaded machine that ratio drifts by tens of
percent either way, so the time spent inside ``Monitor.step`` on the steps without a measurement
is also timed directly (``monitor_step_share``: its median over the plain step's mean). A first
round warms every variant up (it holds the first measurement, at step 1) and counts only in the
totals. The measurements' own cost is reported separately, with their number and their share of
the monitored run's time ("auto" keeps that share near 5 % once the run is long against one
measurement; a short run pays its first one). The load average is recorded before and after each
model.

Models (random weights):
  small-lenet   sgdscope.paper.models small-lenet (d = 13,338) on the embedded MNIST, batch 128
  resnet18      the ResNet-18 of benchmarks/bench_scale.py (11.2M) on CIFAR-10 (``--cifar-dir``;
                random images otherwise), batch 64, train-mode BatchNorm (its ReLUs are
                out-of-place modules: with in-place ReLUs BackPACK fails, "Output 0 of
                BackwardHookFunction is a view and is being modified inplace")
  gpt2          the GPT-2-shaped model of bench_scale.py at its quick size (2 layers, width 128,
                vocabulary 8,192, 32 tokens), batch 16
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
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

    cfg = transformers.GPT2Config(
        vocab_size=8192, n_positions=32, n_embd=128, n_layer=2, n_head=4,
        bos_token_id=8191, eos_token_id=8191,  # GPT-2's 50256 is outside this vocabulary
    )  # fmt: skip
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


class CockpitStep:
    """One training step instrumented by Cockpit's economy configuration (the anchor).

    The model and a mean cross-entropy over its (flattened) logits are extended by BackPACK, as
    Cockpit requires; the per-sample losses it also asks for are the benchmark's own.
    """

    def __init__(self, model, loss_fn, opt):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from backpack import extend
            from cockpit import Cockpit
            from cockpit.utils.configuration import configuration

        self.model, self.loss_fn, self.opt = extend(model), loss_fn, opt
        self.mean_loss = extend(nn.CrossEntropyLoss())
        self.cockpit = Cockpit(self.model.parameters(), quantities=configuration("economy"))
        self.global_step = 0

    def __call__(self, x, y):
        out = forward(self.model, x)
        logits = getattr(out, "logits", out)
        if logits.ndim == 3:  # a language model: next-token prediction over every position
            loss = self.mean_loss(
                logits[:, :-1].reshape(-1, logits.shape[-1]), y[:, 1:].reshape(-1)
            )
        else:
            loss = self.mean_loss(logits, y)
        info = {
            "batch_size": y.shape[0],
            "individual_losses": self.loss_fn(out, y),
            "loss": loss,
            "optimizer": self.opt,
        }
        self.opt.zero_grad()
        with self.cockpit(self.global_step, info=info):
            loss.backward(create_graph=self.cockpit.create_graph(self.global_step))
        self.opt.step()
        self.global_step += 1


def run(name, args):
    model, loss_fn, data, b = build(name, args.cifar_dir)
    load_before = os.getloadavg()[0]
    models = {"plain": model, "monitor": copy.deepcopy(model)}
    opts = {v: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for v, m in models.items()}
    probe = batch(data, 10_000, args.probe)
    path = Path(tempfile.mkdtemp()) / "run"
    mon = sg.Monitor(models["monitor"], loss_fn, probe, path, batch_size=b)

    def plain_step(variant):
        def step(x, y):
            loss = loss_fn(forward(models[variant], x), y).mean()
            opts[variant].zero_grad()
            loss.backward()
            opts[variant].step()
            return loss

        return step

    steps = {"plain": plain_step("plain"), "monitor": plain_step("monitor")}
    cockpit_error = None
    if args.cockpit:
        try:
            models["cockpit"] = copy.deepcopy(model)
            opts["cockpit"] = torch.optim.SGD(models["cockpit"].parameters(), lr=0.05, momentum=0.9)
            steps["cockpit"] = CockpitStep(models["cockpit"], loss_fn, opts["cockpit"])
        except Exception as err:  # the anchor's own failure is a result, not a crash
            cockpit_error = f"{type(err).__name__}: {err}"
    step, rounds, in_step = 0, [], []
    for r in range(args.rounds + 1):  # round 0 warms every variant up (and holds a measurement)
        times = {"warmup": r == 0}
        order = list(steps)
        order = order[r % len(order) :] + order[: r % len(order)]
        for variant in order:
            t0 = time.perf_counter()
            try:
                for j in range(args.block):
                    x, y = batch(data, step + j, b)
                    loss = steps[variant](x, y)
                    if variant == "monitor":
                        t1 = time.perf_counter()
                        mon.step(opts[variant], loss=loss)
                        last = mon.last_measurement
                        if last is None or last.step != step + j + 1:
                            in_step.append(time.perf_counter() - t1)
            except Exception as err:
                if variant != "cockpit":
                    raise
                cockpit_error = f"{type(err).__name__}: {str(err)[:500]}"
                del steps["cockpit"]
                continue
            times[variant] = time.perf_counter() - t0
            if variant == "monitor":
                times["measured"] = (
                    mon.last_measurement is not None and mon.last_measurement.step > step
                )
        step += args.block
        rounds.append(times)
        print(f"{name}: round {len(rounds)}: {times}", flush=True)
    mon.close()
    rec = sg.load_monitor(path)
    timed = [r for r in rounds if not r["warmup"]]
    clean = [r["monitor"] / r["plain"] - 1 for r in timed if not r["measured"]]
    cockpit = [r["cockpit"] / r["plain"] for r in timed if "cockpit" in r]
    plain_total = sum(r["plain"] for r in rounds)
    monitor_total = sum(r["monitor"] for r in rounds)
    median = statistics.median
    return {
        "model": name,
        "d": mon.full_dim,
        "record_rule": mon.record_rule,
        "batch_size": b,
        "probe": args.probe,
        "steps": step,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
        "plain_step_s": plain_total / step,
        "plain_step_s_median": median(r["plain"] for r in timed) / args.block,
        "monitor_step_s_median_unmeasured": median(r["monitor"] for r in timed if not r["measured"])
        / args.block
        if clean
        else None,
        "recording_slowdown_paired_median": median(clean) if clean else None,
        "monitor_step_s_median": median(in_step),
        "monitor_step_share": median(in_step) / (plain_total / step),
        "rounds_without_measurement": len(clean),
        "measurements": len(rec),
        "measurement_steps": rec.steps.tolist(),
        "measurement_seconds": rec.seconds.tolist(),
        "total_slowdown": monitor_total / plain_total - 1,
        "measurement_share_of_monitored_time": float(rec.seconds.sum()) / monitor_total,
        "cockpit_step_s_median": median(r["cockpit"] for r in timed if "cockpit" in r) / args.block
        if cockpit
        else None,
        "cockpit_ratio_paired_median": median(cockpit) if cockpit else None,
        "cockpit_rounds": len(cockpit),
        "cockpit_error": cockpit_error,
        "rounds": rounds,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="small-lenet,resnet18,gpt2")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--block", type=int, default=10)
    ap.add_argument("--probe", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cifar-dir", default=None)
    ap.add_argument("--out", default="monitor")
    ap.add_argument(
        "--no-cockpit",
        dest="cockpit",
        action="store_false",
        help="Leave Cockpit's economy configuration out.",
    )
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
