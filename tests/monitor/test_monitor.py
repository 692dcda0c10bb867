"""Monitor: the record against in-memory copies, D against the dense rank-one-update oracle on the
saved weights, the temperature against its closed form under a scheduler, the memory rule, the
"auto" cadence on a fake clock, no effect on training, and resume after SIGKILL with no gap."""

import copy
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from torch import nn

import sgdscope as sg
from sgdscope.monitor import monitor as monitor_module
from sgdscope.reference.noise import covariance_by_rank_one_updates

LOSS = nn.CrossEntropyLoss(reduction="none")


def _model(seed=0, dropout=0.0, batchnorm=True):
    torch.manual_seed(seed)
    norm = nn.BatchNorm1d(8) if batchnorm else nn.Identity()
    return nn.Sequential(nn.Linear(6, 8), norm, nn.ReLU(), nn.Dropout(dropout), nn.Linear(8, 3))


def _data(n=128, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g)


def _flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy().copy()


def _train(model, steps, x, y, monitor=None, opt=None, sched=None, b=32, seed=5):
    """SGD on fixed mini-batches; returns the weights after each step and the step gradients."""
    opt = opt or torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    torch.manual_seed(seed)  # dropout draws
    ref, grad_norms = [], []
    for t in range(steps):
        i = (t * b) % len(x)
        loss = LOSS(model(x[i : i + b]), y[i : i + b]).mean()
        opt.zero_grad()
        loss.backward()
        grad_norms.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]).norm())
        opt.step()
        if monitor is not None:
            monitor.step(opt, loss=loss)
        if sched is not None:
            sched.step()
        ref.append(_flat(model))
    return np.array(ref), torch.stack(grad_norms).numpy()


def test_monitoring_does_not_change_the_training_run(tmp_path):
    """Same seeds with and without the monitor: identical weights, modes, .grad and RNG state."""
    x, y = _data()
    plain, watched = _model(dropout=0.2), _model(dropout=0.2)
    ref, _ = _train(plain, 12, x, y)
    with sg.Monitor(watched, LOSS, (x[:48], y[:48]), tmp_path / "m", measure_every=5) as mon:
        got, _ = _train(watched, 12, x, y, monitor=mon)
        grads = [p.grad.clone() for p in watched.parameters()]
        state = torch.get_rng_state()
        mon.measure()  # an extra measurement, at step 12, touches nothing either
        assert all(torch.equal(g, p.grad) for g, p in zip(grads, watched.parameters(), strict=True))
        assert torch.equal(state, torch.get_rng_state())
        assert watched.training and all(m.training for m in watched.modules())
    np.testing.assert_array_equal(got, ref)
    rec = sg.load_monitor(tmp_path / "m")
    np.testing.assert_array_equal(rec.trajectory.weights[:], ref)  # the record is the run
    np.testing.assert_array_equal(rec.steps, [5, 10, 12])
    with pytest.raises(ValueError, match=r"already holds a row at step 12"):
        sg.Monitor(watched, LOSS, (x[:48], y[:48]), tmp_path / "m", resume=True).measure()


def test_measurements_agree_with_the_dense_oracle_on_the_saved_weights(tmp_path):
    """tr D, B_simple, ‖g‖ and the top-k eigenpairs of each measurement, recomputed from the
    recorded weights by the authors' rank-one-update loop (an independent algorithm). No
    BatchNorm: its running statistics are buffers, which the weights do not hold."""
    x, y = _data()
    px, py = x[:40], y[:40]
    model = _model(batchnorm=False)
    with sg.Monitor(model, LOSS, (px, py), tmp_path / "m", measure_every=4, k=5) as mon:
        _train(model, 9, x, y, monitor=mon)
    rec = sg.load_monitor(tmp_path / "m")
    assert rec.steps.tolist() == [4, 8] and rec.eigenvalues.shape == (2, 5) and rec.converged.all()
    layout = rec.trajectory.layout
    for i, step in enumerate(rec.steps):
        w = rec.trajectory.weights[int(np.searchsorted(rec.trajectory.steps, step))]
        oracle = copy.deepcopy(model)
        for name, piece in layout.split(torch.from_numpy(w)).items():
            oracle.get_parameter(name).data.copy_(piece)
        oracle.eval()
        D = covariance_by_rank_one_updates(oracle, LOSS, px, py).numpy()
        evals, evecs = np.linalg.eigh(D)
        # per-sample gradients are float32 in both: agreement to float32 round-off
        np.testing.assert_allclose(rec.trace[i], np.trace(D), rtol=1e-6)
        np.testing.assert_allclose(
            rec.eigenvalues[i], evals[::-1][:5], rtol=1e-5, atol=1e-6 * evals[-1]
        )
        params = list(oracle.parameters())
        g = torch.autograd.grad(LOSS(oracle(px), py).mean(), params)
        g_norm = torch.cat([t.reshape(-1) for t in g]).double().norm().item()
        np.testing.assert_allclose(rec.grad_norm[i], g_norm, rtol=1e-5)
        np.testing.assert_allclose(rec.noise_scale[i], np.trace(D) / g_norm**2, rtol=1e-5)
        v = rec.eigenvectors(i).astype(np.float64)
        top = evecs[:, ::-1][:, :5]
        np.testing.assert_allclose(np.abs(np.sum(v * top, axis=0)), 1.0, atol=1e-4)
    assert rec.overlap(0, 0) == pytest.approx(1.0, abs=1e-6)
    assert 0.0 <= rec.overlap(0, 1) <= 1.0
    m = rec.measurement(1)
    assert m.step == 8 and m.eigenvectors.shape == (layout.dim, 5)
    assert set(m.scalars()) == {"trace_D", "noise_scale", "probe_grad_norm"} | {
        f"lambda_{j}" for j in (1, 2, 3)
    }


def test_temperature_loss_and_gradient_norm_follow_the_optimizer_at_each_step(tmp_path):
    """A StepLR schedule with momentum and dampening: η_t(1 − τ)/(2b(1 − μ)), the closed form."""
    x, y = _data()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.5, dampening=0.25)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    with sg.Monitor(
        model, LOSS, (x[:32], y[:32]), tmp_path / "m", measure_every=100, batch_size=32
    ) as mon:
        _, norms = _train(model, 7, x, y, monitor=mon, opt=opt, sched=sched)
    s = sg.load_monitor(tmp_path / "m").trajectory.scalars
    lr = 0.2 * 0.5 ** (np.arange(7) // 3)
    np.testing.assert_allclose(s["lr"], lr)
    np.testing.assert_allclose(s["temperature"], lr * 0.75 / (2 * 32 * 0.5))
    np.testing.assert_array_equal(s["momentum"], 0.5)
    np.testing.assert_allclose(s["grad_norm"], norms, rtol=1e-6)
    assert np.isfinite(s["loss"]).all() and mon.temperature_note == ""


def test_temperature_without_replacement_and_per_step_batch_sizes(tmp_path):
    x, y = _data()
    model = _model(batchnorm=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = sg.Monitor(
        model, LOSS, (x[:32], y[:32]), tmp_path / "m", measure_every=100, n=128, replacement=False
    )
    for b in (16, 64):
        opt.step()
        mon.step(opt, batch_size=b)
    mon.close()
    s = sg.load_monitor(tmp_path / "m").trajectory.scalars
    expected = [sg.temperature(0.1, b, n=128, replacement=False) for b in (16, 64)]
    np.testing.assert_allclose(s["temperature"], expected)
    np.testing.assert_array_equal(s["batch_size"], [16, 64])


def test_the_lr_a_step_used_can_be_given_when_the_scheduler_already_moved(tmp_path):
    x, y = _data()
    model = _model(batchnorm=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    mon = sg.Monitor(model, LOSS, (x[:32], y[:32]), tmp_path / "m", measure_every=9)
    mon.step(opt, batch_size=8, lr=0.3)
    mon.close()
    s = sg.load_monitor(tmp_path / "m").trajectory.scalars
    assert s["lr"][0] == 0.3 and s["temperature"][0] == pytest.approx(0.3 / (2 * 8 * 0.5))


@pytest.mark.parametrize(
    ("make", "note"),
    [
        (lambda ps: torch.optim.Adam(ps, lr=1e-3), "Adam is not SGD"),
        (
            lambda ps: torch.optim.SGD(
                [{"params": ps[:2], "lr": 0.1}, {"params": ps[2:], "lr": 0.2}]
            ),
            "different lr",
        ),
    ],
    ids=["adam", "groups"],
)
def test_temperature_is_nan_where_it_is_not_defined(tmp_path, make, note):
    x, y = _data()
    model = _model()
    opt = make(list(model.parameters()))
    mon = sg.Monitor(model, LOSS, (x[:32], y[:32]), tmp_path / "m", measure_every=9, batch_size=8)
    mon.step(opt)
    mon.close()
    s = sg.load_monitor(tmp_path / "m").trajectory.scalars
    assert np.isnan(s["temperature"]).all() and note in mon.temperature_note
    assert s["lr"][0] == opt.param_groups[0]["lr"]


def test_above_max_raw_dim_single_weights_are_recorded(tmp_path):
    x, y = _data()
    model = _model()
    mon = sg.Monitor(
        model, LOSS, (x[:32], y[:32]), tmp_path / "m", measure_every=2, max_raw_dim=50,
        projection_dim=7, seed=3,
    )  # fmt: skip
    assert mon.recorded_dim == 7 and mon.full_dim == 99 and not mon.eigenvectors
    assert (
        mon.record_rule.startswith("7 single weights")
        and "99 > max_raw_dim = 50" in mon.record_rule
    )
    ref, _ = _train(model, 4, x, y, monitor=mon)
    mon.close()
    rec = sg.load_monitor(tmp_path / "m")
    proj = rec.trajectory.projection
    assert isinstance(proj, sg.trajectory.CoordinateProjection) and proj.k == 7
    np.testing.assert_array_equal(
        proj.indices, sg.trajectory.coordinate_projection(99, 7, seed=3).indices
    )
    np.testing.assert_array_equal(rec.trajectory.weights[:], ref[:, proj.indices])
    assert not rec.has_eigenvectors and rec.settings["record_rule"] == mon.record_rule
    with pytest.raises(ValueError, match="holds no eigenvectors"):
        rec.eigenvectors(0)


def test_auto_cadence_keeps_measurements_under_the_overhead(tmp_path, monkeypatch):
    """On a fake clock (1 s per training step, 3 s per measurement, overhead 0.25): measure at
    step 1, then whenever the training time since the last one reaches 3 / 0.25 = 12 s."""
    clock = [0.0]
    monkeypatch.setattr(monitor_module.time, "perf_counter", lambda: clock[0])
    real_noise = monitor_module.Monitor._noise

    def slow_noise(self):
        clock[0] += 3.0
        return real_noise(self)

    x, y = _data()
    model = _model(batchnorm=False)  # steps without data: no BatchNorm statistics to update
    mon = sg.Monitor(model, LOSS, (x[:32], y[:32]), tmp_path / "m", overhead=0.25)
    monkeypatch.setattr(monitor_module.Monitor, "_noise", slow_noise)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(40):
        clock[0] += 1.0
        opt.step()
        mon.step(opt)
    mon.close()
    rec = sg.load_monitor(tmp_path / "m")
    assert rec.steps.tolist() == [1, 13, 25, 37]
    np.testing.assert_array_equal(rec.seconds, 3.0)
    assert rec.seconds.sum() <= 0.25 * 40 + 3.0


def test_resume_step_drops_the_interrupted_runs_later_records(tmp_path):
    x, y = _data()
    model = _model()
    path = tmp_path / "m"
    with sg.Monitor(model, LOSS, (x[:32], y[:32]), path, measure_every=2) as mon:
        _train(model, 9, x, y, monitor=mon)
    # training restarts from a checkpoint at step 5: steps 6..9 are redone
    with sg.Monitor(
        model, LOSS, (x[:32], y[:32]), path, measure_every=2, resume=True, resume_step=5
    ) as mon:
        assert mon.step_count == 5
        _train(model, 3, x, y, monitor=mon)
    rec = sg.load_monitor(path)
    np.testing.assert_array_equal(rec.trajectory.steps, np.arange(1, 9))
    assert rec.steps.tolist() == [2, 4, 6, 8]
    assert rec.trajectory.meta["resumed_at_steps"] == [5]
    with pytest.raises(sg.TrajectoryGapError, match=r"steps 9..12 would be missing"):
        sg.Monitor(
            model, LOSS, (x[:32], y[:32]), path, measure_every=2, resume=True, resume_step=12
        )
    with pytest.raises(ValueError, match=r"cannot resume.*'streams'"):
        sg.Monitor(model, LOSS, (x[:32], y[:32]), path, k=3, resume=True)


def test_load_monitor_refuses_a_plain_trajectory(tmp_path):
    with sg.TrajectoryRecorder(tmp_path / "t", _model()) as rec:
        rec.step()
    with pytest.raises(sg.TrajectoryFormatError, match="not a monitor's record"):
        sg.load_monitor(tmp_path / "t")


BAD = [
    (
        {"measure_every": "often"},
        r"'measure_every' parameter of Monitor must be an int ≥ 1 or 'auto'",
    ),
    ({"measure_every": 0}, r"'measure_every' parameter of Monitor must be an int in \[1, inf\]"),
    ({"record_every": 0}, r"'record_every' parameter of Monitor must be an int"),
    ({"overhead": 0.0}, r"'overhead' parameter of Monitor must be a real number in \(0, inf\]"),
    ({"k": 40}, r"'k' parameter of Monitor must be an int in \[1, 31\].*probe samples"),
    ({"max_raw_dim": 0}, r"'max_raw_dim' parameter"),
    ({"max_raw_dim": 10, "projection_dim": 500}, r"'projection_dim' parameter .* \[1, 99\]"),
    ({"batch_size": 0}, r"'batch_size' parameter of Monitor"),
    ({"params": ["nope"]}, r"names parameters the model does not have"),
    ({"resume_step": 3}, r"'resume_step' parameter .* only with resume=True"),
]


@pytest.mark.parametrize(("kwargs", "match"), BAD, ids=[next(iter(k)) for k, _ in BAD])
def test_bad_arguments(tmp_path, kwargs, match):
    x, y = _data()
    with pytest.raises(ValueError, match=match):
        sg.Monitor(_model(), LOSS, (x[:32], y[:32]), tmp_path / "b", **kwargs)


def test_bad_model_loss_and_optimizer(tmp_path):
    x, y = _data()
    with pytest.raises(ValueError, match=r"'model' parameter of Monitor must be a torch.nn.Module"):
        sg.Monitor({}, LOSS, (x, y), tmp_path / "b")
    with pytest.raises(ValueError, match=r"per-sample losses"):
        sg.Monitor(_model(), nn.CrossEntropyLoss(), (x, y), tmp_path / "b")
    mon = sg.Monitor(_model(), LOSS, (x[:32], y[:32]), tmp_path / "c")
    with pytest.raises(ValueError, match=r"'optimizer' parameter of Monitor.step must be a torch"):
        mon.step(object())
    mon.close()


# ----------------------------------------------------------------------------- crash and resume
RUN = textwrap.dedent(
    """
    import os, time, torch
    from torch import nn
    import sgdscope as sg


    def run(path, ckpt, total, pause):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        g = torch.Generator().manual_seed(1)
        x, y = torch.randn(256, 6, generator=g), torch.randint(0, 3, (256,), generator=g)
        loss_fn = nn.CrossEntropyLoss(reduction="none")
        start = 0
        if os.path.exists(ckpt):
            state = torch.load(ckpt)
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            start = state["step"]
        mon = sg.Monitor(model, loss_fn, (x[:64], y[:64]), path, measure_every=7, k=4,
                         chunk_size=3, resume=True, resume_step=start)
        for step in range(start + 1, total + 1):
            i = (step * 16) % 256
            loss = loss_fn(model(x[i : i + 16]), y[i : i + 16]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            mon.step(opt, loss=loss, batch_size=16)
            if step % 10 == 0:  # checkpoint: flush the record first, then save atomically
                mon.flush()
                state = {"model": model.state_dict(), "opt": opt.state_dict(), "step": step}
                torch.save(state, str(ckpt) + ".tmp")
                os.replace(str(ckpt) + ".tmp", ckpt)
            time.sleep(pause)
        mon.close()
    """
)
WORKER = RUN + textwrap.dedent(
    """
    import sys

    torch.set_num_threads(1)
    run(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    print("finished", flush=True)
    """
)


def _run(script, path, ckpt, total, pause):
    return subprocess.Popen(
        [sys.executable, str(script), str(path), str(ckpt), str(total), str(pause)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_sigkill_then_resume_from_the_checkpoint_continues_with_no_gap(tmp_path):
    """Killed twice mid-run, resumed from its own checkpoints: the record equals an uninterrupted
    run's, step for step (steps 1..T once each, the same weights and measurements)."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    total = 60
    namespace: dict = {}
    exec(RUN, namespace)  # the uninterrupted reference, in this process (one thread, as the worker)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        namespace["run"](tmp_path / "ref", tmp_path / "ref.pt", total, 0.0)
    finally:
        torch.set_num_threads(threads)
    path, ckpt = tmp_path / "run", tmp_path / "run.pt"
    rng = np.random.default_rng(0)
    killed = 0
    for _ in range(2):
        proc = _run(script, path, ckpt, total, 0.02)
        deadline = time.monotonic() + 60
        while not ckpt.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.05, 0.4))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            killed += 1
        proc.communicate(timeout=60)
        partial = sg.load_monitor(path)  # a killed run's record opens
        steps = partial.trajectory.steps
        np.testing.assert_array_equal(steps, np.arange(1, len(steps) + 1))
    assert killed >= 1
    out = _run(script, path, ckpt, total, 0.0).communicate(timeout=120)
    assert b"finished" in out[0], out[1].decode()
    ref, got = sg.load_monitor(tmp_path / "ref"), sg.load_monitor(path)
    assert got.trajectory.complete and len(got.trajectory.meta["resumed_at_steps"]) >= 1
    np.testing.assert_array_equal(got.trajectory.steps, np.arange(1, total + 1))
    np.testing.assert_array_equal(got.trajectory.weights[:], ref.trajectory.weights[:])
    np.testing.assert_array_equal(got.trajectory.scalars["loss"], ref.trajectory.scalars["loss"])
    np.testing.assert_array_equal(got.steps, np.arange(7, total + 1, 7))
    np.testing.assert_allclose(got.eigenvalues, ref.eigenvalues, rtol=1e-12)
    np.testing.assert_allclose(got.trace, ref.trace, rtol=1e-12)
    json.loads((path / "manifest.json").read_text())


def test_a_ddp_wrapped_model_is_watched_through_its_module(tmp_path):
    """One gloo process: DDP's wrapper is unwrapped, the names are the module's own."""
    import torch.distributed as dist

    x, y = _data()
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1
    )
    try:
        model = _model(batchnorm=False)
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
        with sg.Monitor(ddp, LOSS, (x[:32], y[:32]), tmp_path / "m", measure_every=2) as mon:
            for t in range(2):
                loss = LOSS(ddp(x[t * 16 : (t + 1) * 16]), y[t * 16 : (t + 1) * 16]).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                mon.step(opt, loss=loss)
    finally:
        dist.destroy_process_group()
    rec = sg.load_monitor(tmp_path / "m")
    assert rec.trajectory.layout.names[0] == "0.weight" and rec.steps.tolist() == [2]
    np.testing.assert_array_equal(rec.trajectory.weights[-1], _flat(model))
