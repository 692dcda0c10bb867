"""The Lightning callback in a real Trainer on CPU: the record against the trainer's own steps and
weights, the trainer's loggers, gradient accumulation, and SIGKILL + ``ckpt_path`` resume against
an uninterrupted run."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

import sgdscope as sg

pl = pytest.importorskip(
    "lightning.pytorch", reason="needs PyTorch Lightning (sgdscope[lightning])"
)
SgdscopeCallback = pytest.importorskip("sgdscope.integrations.lightning").SgdscopeCallback

# The module, data and trainer of every run here (also the subprocess worker's).
SETUP = textwrap.dedent(
    """
    import os, sys, time, warnings
    import torch
    from torch import nn
    import lightning.pytorch as pl
    from sgdscope.integrations.lightning import SgdscopeCallback

    warnings.filterwarnings("ignore")  # Lightning's advice about workers and loggers
    torch.set_num_threads(1)
    LOSS = nn.CrossEntropyLoss(reduction="none")

    class Net(pl.LightningModule):
        def __init__(self, pause=0.0):
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 3))
            self.pause = pause

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            time.sleep(self.pause)
            x, y = batch
            return LOSS(self(x), y).mean()

        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=4, gamma=0.5)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    g = torch.Generator().manual_seed(1)
    X, Y = torch.randn(80, 6, generator=g), torch.randint(0, 3, (80,), generator=g)
    LOADER = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, Y), batch_size=16)

    def trainer(max_steps, ckpt_dir, callbacks, **kw):
        ckpt = pl.callbacks.ModelCheckpoint(
            dirpath=ckpt_dir, every_n_epochs=1, save_top_k=-1, save_on_train_epoch_end=True
        )
        return pl.Trainer(
            max_steps=max_steps, accelerator="cpu", devices=1, callbacks=[*callbacks, ckpt],
            enable_progress_bar=False, enable_model_summary=False, logger=False,
            log_every_n_steps=1, **kw,
        )
    """
)

RUN = textwrap.dedent(
    """
    def run(path, ckpt_dir, pause, max_steps):
        ckpts = sorted(
            (f for f in os.listdir(ckpt_dir) if f.endswith(".ckpt")) if os.path.isdir(ckpt_dir) else [],
            key=lambda f: int(f.split("step=")[1].split(".")[0]),
        )
        resume = os.path.join(ckpt_dir, ckpts[-1]) if ckpts else None
        cb = SgdscopeCallback(
            path, (X[:40], Y[:40]), LOSS, measure_every=3, k=4, log=False, chunk_size=1
        )
        trainer(max_steps, ckpt_dir, [cb]).fit(Net(pause), LOADER, ckpt_path=resume)
    """
)
WORKER = (
    SETUP
    + RUN
    + textwrap.dedent(
        """
    run(sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))
    """
    )
)


@pytest.fixture
def ns():
    """The worker's module, data, trainer and ``run`` in this process (same threads: one)."""
    threads = torch.get_num_threads()
    namespace: dict = {}
    exec(SETUP + RUN, namespace)
    yield namespace
    torch.set_num_threads(threads)


def test_sigkill_then_ckpt_path_resume_continues_the_record(tmp_path, ns):
    """Killed a few steps after a checkpoint (epochs of 5 steps), resumed with ckpt_path: steps
    1..20 once each, and the same record (weights, lr, temperature, D) as a run that stopped
    cleanly at that checkpoint and was resumed from it; so the killed run's records after the
    checkpoint were dropped and replaced."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    path, ckpt_dir = tmp_path / "run", tmp_path / "run-ckpt"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(path), str(ckpt_dir), "0.05", "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if ckpt_dir.is_dir() and any(f.endswith(".ckpt") for f in os.listdir(ckpt_dir)):
            break
        time.sleep(0.02)
    time.sleep(0.12)  # a few steps past the checkpoint: those records must be dropped
    assert proc.poll() is None, proc.communicate()[1].decode()[-3000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    partial = sg.load_monitor(path)
    killed_at = len(partial.trajectory)
    assert not partial.trajectory.complete and killed_at >= 5
    ns["run"](path, ckpt_dir, 0.0, 20)
    got = sg.load_monitor(path)
    (resumed,) = got.trajectory.meta["resumed_at_steps"]
    assert resumed % 5 == 0 and resumed < killed_at
    ns["run"](tmp_path / "ref", tmp_path / "ref-ckpt", 0.0, resumed)  # stops at the checkpoint
    ns["run"](tmp_path / "ref", tmp_path / "ref-ckpt", 0.0, 20)
    want = sg.load_monitor(tmp_path / "ref")

    assert got.trajectory.complete and want.trajectory.meta["resumed_at_steps"] == [resumed]
    np.testing.assert_array_equal(got.trajectory.steps, np.arange(1, 21))
    np.testing.assert_array_equal(got.trajectory.weights[:], want.trajectory.weights[:])
    for name in ("loss", "lr", "temperature", "grad_norm", "batch_size"):
        np.testing.assert_array_equal(got.trajectory.scalars[name], want.trajectory.scalars[name])
    np.testing.assert_allclose(
        got.trajectory.scalars["lr"][:9],
        [0.1] * 4 + [0.05] * 4 + [0.025],  # the step's own lr
    )
    np.testing.assert_allclose(
        got.trajectory.scalars["temperature"], got.trajectory.scalars["lr"] / (2 * 16 * 0.1)
    )
    np.testing.assert_array_equal(got.steps, np.arange(3, 21, 3))
    np.testing.assert_array_equal(got.eigenvalues, want.eigenvalues)
    # the oracle: GradientNoise on the recorded weights of the last measurement
    x, y = ns["X"][:40], ns["Y"][:40]
    model = torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.Tanh(), torch.nn.Linear(12, 3))
    w = got.trajectory.weights[int(got.steps[-1]) - 1]
    torch.nn.utils.vector_to_parameters(torch.from_numpy(w), model.parameters())
    noise = sg.GradientNoise(model, torch.nn.CrossEntropyLoss(reduction="none"), (x, y))
    np.testing.assert_allclose(got.trace[-1], noise.trace(), rtol=1e-12)
    np.testing.assert_allclose(got.eigenvalues[-1], noise.spectrum(k=4).eigenvalues, rtol=1e-10)


def test_scalars_reach_the_trainers_loggers_and_accumulation_counts_optimizer_steps(tmp_path, ns):
    csv = pl.loggers.CSVLogger(tmp_path / "logs", name="", version="")
    cb = SgdscopeCallback(
        tmp_path / "rec", (ns["X"][:40], ns["Y"][:40]), ns["LOSS"], measure_every=2, k=3
    )
    trainer = ns["trainer"](6, tmp_path / "ckpt", [cb], accumulate_grad_batches=2)
    trainer.loggers = [csv]
    trainer.fit(ns["Net"](), ns["LOADER"])
    rec = sg.load_monitor(tmp_path / "rec")
    np.testing.assert_array_equal(rec.trajectory.steps, np.arange(1, 7))
    np.testing.assert_array_equal(rec.trajectory.scalars["batch_size"], 32.0)
    np.testing.assert_array_equal(rec.steps, [2, 4, 6])
    import csv as csv_module

    rows = list(csv_module.DictReader(open(tmp_path / "logs" / "metrics.csv")))
    traces = {
        int(r["step"]): float(r["sgdscope/trace_D"]) for r in rows if r.get("sgdscope/trace_D")
    }
    assert sorted(traces) == [2, 4, 6]
    np.testing.assert_allclose([traces[s] for s in (2, 4, 6)], rec.trace)
    temps = [float(r["sgdscope/temperature"]) for r in rows if r.get("sgdscope/temperature")]
    assert len(temps) == 6 and np.allclose(temps, rec.trajectory.scalars["temperature"])


def test_a_fresh_run_on_a_used_path_is_refused_unless_overwrite(tmp_path, ns):
    data = (ns["X"][:40], ns["Y"][:40])
    ns["trainer"](
        2, tmp_path / "c1", [SgdscopeCallback(tmp_path / "rec", data, ns["LOSS"], measure_every=9)]
    ).fit(ns["Net"](), ns["LOADER"])
    with pytest.raises(FileExistsError, match=r"holds the record of another run.*overwrite=True"):
        ns["trainer"](
            2, tmp_path / "c2", [SgdscopeCallback(tmp_path / "rec", data, ns["LOSS"])]
        ).fit(ns["Net"](), ns["LOADER"])
    cb = SgdscopeCallback(tmp_path / "rec", data, ns["LOSS"], measure_every=9, overwrite=True)
    ns["trainer"](3, tmp_path / "c3", [cb]).fit(ns["Net"](), ns["LOADER"])
    assert len(sg.load_monitor(tmp_path / "rec").trajectory) == 3


DDP = textwrap.dedent(
    """
    import sys, warnings
    import torch
    from torch import nn
    import lightning.pytorch as pl
    from sgdscope.integrations.lightning import SgdscopeCallback

    warnings.filterwarnings("ignore")
    LOSS = nn.CrossEntropyLoss(reduction="none")

    class Net(pl.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 3))

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            return LOSS(self(batch[0]), batch[1]).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)

    if __name__ == "__main__":
        torch.set_num_threads(1)
        g = torch.Generator().manual_seed(1)
        X, Y = torch.randn(80, 6, generator=g), torch.randint(0, 3, (80,), generator=g)
        data = torch.utils.data.TensorDataset(X, Y)
        cb = SgdscopeCallback(sys.argv[1], (X[:40], Y[:40]), LOSS, measure_every=2, k=3)
        pl.Trainer(
            max_steps=6, accelerator="cpu", devices=2, strategy="ddp_spawn", callbacks=[cb],
            enable_progress_bar=False, enable_model_summary=False, logger=False,
            enable_checkpointing=False,
        ).fit(Net(), torch.utils.data.DataLoader(data, batch_size=8))
        print("finished", flush=True)
    """
)


@pytest.mark.slow
def test_under_ddp_every_rank_measures_and_global_rank_zero_records(tmp_path):
    """Two CPU processes (gloo): one record (a second writer would meet the lock and fail), every
    step once, the batch size of both ranks, and each measurement, made by both ranks on their
    halves of the probe set, equal to one process's GradientNoise on the whole probe set at the
    recorded weights."""
    script = tmp_path / "ddp.py"
    script.write_text(DDP)
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "rec")], capture_output=True, timeout=600
    )
    assert b"finished" in out.stdout, out.stderr.decode()[-3000:]
    rec = sg.load_monitor(tmp_path / "rec")
    assert rec.trajectory.complete and rec.trajectory.meta["resumed_at_steps"] == []
    np.testing.assert_array_equal(rec.trajectory.steps, np.arange(1, 7))
    np.testing.assert_array_equal(rec.steps, [2, 4, 6])
    np.testing.assert_array_equal(rec.trajectory.scalars["batch_size"], 16.0)
    assert rec.settings["ranks"] == 2
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(80, 6, generator=g), torch.randint(0, 3, (80,), generator=g)
    model = torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.Tanh(), torch.nn.Linear(12, 3))
    for i, step in enumerate(rec.steps):
        w = rec.trajectory.weights[int(step) - 1]
        torch.nn.utils.vector_to_parameters(torch.from_numpy(w), model.parameters())
        noise = sg.GradientNoise(
            model, torch.nn.CrossEntropyLoss(reduction="none"), (x[:40], y[:40])
        )
        np.testing.assert_allclose(rec.trace[i], noise.trace(), rtol=1e-9)
        np.testing.assert_allclose(
            rec.eigenvalues[i], noise.spectrum(k=3).eigenvalues, rtol=1e-7, atol=1e-12
        )
