"""The Hugging Face callback in a real Trainer on CPU (a tiny GPT-2 built from a config, random
weights, nothing downloaded): the record against the Trainer's steps and schedule, the loggers
through ``trainer.log``, and SIGKILL + ``resume_from_checkpoint`` against a clean resume."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import ClassVar

import numpy as np
import pytest
import torch

import sgdscope as sg

pytest.importorskip(
    "transformers", reason="needs Hugging Face transformers (sgdscope[transformers])"
)
pytest.importorskip("accelerate", reason="the transformers Trainer needs accelerate")

SETUP = textwrap.dedent(
    """
    import os, sys, time, warnings
    import torch
    import transformers
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments
    from sgdscope.integrations.transformers import SgdscopeCallback
    from sgdscope.noise.losses import sequence_cross_entropy

    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(1)
    CONFIG = GPT2Config(
        vocab_size=32, n_positions=8, n_embd=16, n_layer=1, n_head=2,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )
    g = torch.Generator().manual_seed(1)
    IDS = torch.randint(0, 32, (48, 8), generator=g)
    TRAIN = [{"input_ids": r, "labels": r} for r in IDS[:40]]
    PROBE = {"input_ids": IDS[:24], "labels": IDS[:24]}

    class Pause(TrainerCallback):
        def __init__(self, seconds, stop_at):
            self.seconds, self.stop_at = seconds, stop_at

        def on_step_end(self, args, state, control, **kw):
            time.sleep(self.seconds)
            if state.global_step == self.stop_at:  # a clean stop that keeps the schedule
                control.should_training_stop = True

    def make(out_dir, path, max_steps, pause=0.0, stop_at=None, **cb_kw):
        torch.manual_seed(0)
        model = GPT2LMHeadModel(CONFIG)
        args = TrainingArguments(
            output_dir=str(out_dir), max_steps=max_steps, per_device_train_batch_size=4,
            learning_rate=0.2, lr_scheduler_type="linear", optim="sgd", optim_args="momentum=0.9",
            save_strategy="steps", save_steps=5, logging_steps=2, report_to=[], use_cpu=True,
            seed=0, disable_tqdm=True, dataloader_num_workers=0,
        )
        trainer = Trainer(model=model, args=args, train_dataset=TRAIN, callbacks=[Pause(pause, stop_at)])
        cb = SgdscopeCallback(
            path, PROBE, sequence_cross_entropy, trainer=trainer, measure_every=4, k=3,
            chunk_size=1, **cb_kw,
        )
        trainer.add_callback(cb)
        return trainer

    def run(out_dir, path, max_steps, pause=0.0, stop_at=None):
        ckpts = [f for f in os.listdir(out_dir) if f.startswith("checkpoint-")] if os.path.isdir(out_dir) else []
        last = max(ckpts, key=lambda f: int(f.split("-")[1])) if ckpts else None
        trainer = make(out_dir, path, max_steps, pause, stop_at)
        trainer.train(resume_from_checkpoint=os.path.join(out_dir, last) if last else None)
        return trainer
    """
)
WORKER = SETUP + "\nrun(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))\n"


@pytest.fixture
def ns():
    """The worker's model, data, Trainer and ``run`` in this process (same threads: one)."""
    threads = torch.get_num_threads()
    namespace: dict = {}
    exec(SETUP, namespace)
    yield namespace
    torch.set_num_threads(threads)


def test_sigkill_then_resume_from_checkpoint_continues_the_record(tmp_path, ns):
    """Killed a few steps after its first checkpoint (save_steps=5), resumed through
    resume_from_checkpoint: steps 1..16 once each, and the same record (weights, lr,
    temperature, D) as a run that stopped cleanly at that checkpoint and was resumed from it."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out, path = tmp_path / "out", tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(out), str(path), "16", "0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline:
        if (out / "checkpoint-5" / "trainer_state.json").is_file():
            break
        time.sleep(0.02)
    time.sleep(0.25)  # a few steps past the checkpoint: those records must be dropped
    assert proc.poll() is None, proc.communicate()[1].decode()[-3000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    killed_at = len(sg.load_monitor(path).trajectory)
    assert killed_at > 5
    ns["run"](out, path, 16)
    got = sg.load_monitor(path)
    (resumed,) = got.trajectory.meta["resumed_at_steps"]
    assert resumed % 5 == 0 and resumed < killed_at
    ns["run"](tmp_path / "ref-out", tmp_path / "ref", 16, stop_at=resumed)  # at that checkpoint
    ns["run"](tmp_path / "ref-out", tmp_path / "ref", 16)
    want = sg.load_monitor(tmp_path / "ref")

    assert got.trajectory.complete and want.trajectory.meta["resumed_at_steps"] == [resumed]
    np.testing.assert_array_equal(got.trajectory.steps, np.arange(1, 17))
    np.testing.assert_array_equal(got.trajectory.weights[:], want.trajectory.weights[:])
    for name in ("lr", "temperature", "grad_norm", "batch_size"):
        np.testing.assert_array_equal(got.trajectory.scalars[name], want.trajectory.scalars[name])
    lr = 0.2 * (1 - np.arange(16) / 16)  # the linear schedule, read before the scheduler's step
    np.testing.assert_allclose(got.trajectory.scalars["lr"], lr, rtol=1e-12)
    np.testing.assert_allclose(got.trajectory.scalars["temperature"], lr / (2 * 4 * 0.1))
    np.testing.assert_array_equal(got.steps, [4, 8, 12, 16])
    np.testing.assert_array_equal(got.eigenvalues, want.eigenvalues)


def test_scalars_go_through_trainer_log_and_a_fresh_run_on_a_used_path_is_refused(tmp_path, ns):
    class Spy(ns["TrainerCallback"]):
        logs: ClassVar[list] = []

        def on_log(self, args, state, control, logs=None, **kw):
            self.logs.append((state.global_step, dict(logs)))

    trainer = ns["make"](tmp_path / "out", tmp_path / "rec", 8)
    trainer.add_callback(Spy())
    trainer.train()
    rec = sg.load_monitor(tmp_path / "rec")
    traces = {s: v["sgdscope/trace_D"] for s, v in Spy.logs if "sgdscope/trace_D" in v}
    assert sorted(traces) == [4, 8]
    np.testing.assert_allclose([traces[4], traces[8]], rec.trace)
    temps = {s: v["sgdscope/temperature"] for s, v in Spy.logs if "sgdscope/temperature" in v}
    assert sorted(temps) == [2, 4, 6, 8]  # logging_steps=2
    np.testing.assert_allclose(
        [temps[s] for s in (2, 4, 6, 8)], rec.trajectory.scalars["temperature"][1::2]
    )
    assert any("sgdscope/noise_scale" in entry for entry in trainer.state.log_history)
    # the step's loss, as the Trainer counts it: its logged loss is the mean over logging_steps=2
    loss = rec.trajectory.scalars["loss"]
    logged = {s: v["loss"] for s, v in Spy.logs if "loss" in v}
    assert sorted(logged) == [2, 4, 6, 8] and np.isfinite(loss).all()
    np.testing.assert_allclose(
        [logged[s] for s in (2, 4, 6, 8)], loss.reshape(4, 2).mean(1), rtol=1e-6, atol=1e-4
    )
    with pytest.raises(FileExistsError, match=r"holds the record of another run.*overwrite=True"):
        ns["make"](tmp_path / "out2", tmp_path / "rec", 2).train()
    ns["make"](tmp_path / "out3", tmp_path / "rec", 2, overwrite=True).train()
    assert len(sg.load_monitor(tmp_path / "rec").trajectory) == 2
