"""TrajectoryRecorder: round trips against in-memory copies, full gradients against autograd on the
whole data, resume, crash safety under SIGKILL, and every error path."""

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

import sgdscope as sg
from sgdscope.trajectory import NonFinitePolicy


def _tiny_fc(seed=0, classes=5):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(49, 16),
        torch.nn.BatchNorm1d(16),
        torch.nn.ReLU(),
        torch.nn.Linear(16, classes),
    )


def _data(n=256, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 49, generator=g), torch.randint(0, 5, (n,), generator=g)


def _flat(model, names=None):
    return (
        torch.cat(
            [
                p.detach().reshape(-1)
                for n, p in model.named_parameters()
                if names is None or n in names
            ]
        )
        .numpy()
        .copy()
    )


def _train(model, rec, steps, x, y, lr=0.1, momentum=0.9, opt=None, extra=None):
    """Plain SGD on tiny data; returns the in-memory weights after each step (the oracle)."""
    opt = opt or torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    loss_fn = torch.nn.CrossEntropyLoss()
    ref, losses = [], []
    for t in range(steps):
        i = (t * 64) % len(x)
        loss = loss_fn(model(x[i : i + 64]), y[i : i + 64])
        opt.zero_grad()
        loss.backward()
        opt.step()
        rec.step(loss=loss, **(extra(t) if extra else {}))
        ref.append(_flat(model))
        losses.append(loss.item())
    return np.array(ref), np.array(losses)


def test_round_trip_of_a_real_training_run(tmp_path):
    model, (x, y) = _tiny_fc(), _data()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    with sg.TrajectoryRecorder(
        tmp_path / "run",
        model,
        optimizer=opt,
        batch_size=64,
        n=len(x),
        seed=42,
        chunk_size=7,
        meta={"note": "test"},
    ) as rec:
        ref, losses = _train(model, rec, 30, x, y, opt=opt)
    assert rec.step_count == 30 and "closed=True" in repr(rec)
    traj = sg.load_trajectory(tmp_path / "run")
    assert traj.complete and len(traj) == 30 and traj.dim == 917
    np.testing.assert_array_equal(traj.weights[:], ref)
    np.testing.assert_array_equal(traj.weights[10:20, 100:110], ref[10:20, 100:110])
    np.testing.assert_array_equal(traj.steps, np.arange(1, 31))
    np.testing.assert_allclose(traj.scalars["loss"], losses, rtol=1e-6)
    np.testing.assert_array_equal(traj.scalars["lr"], np.full(30, 0.05))
    m = traj.meta
    names = [n for n, _ in model.named_parameters()]
    assert m["layout"]["names"] == names
    assert m["layout"]["shapes"] == [list(p.shape) for p in model.parameters()]
    assert m["layout"]["offsets"] == [0, 784, 800, 816, 832, 912]
    assert (m["lr"], m["momentum"], m["batch_size"], m["n"], m["seed"], m["every"]) == (
        0.05,
        0.9,
        64,
        256,
        42,
        1,
    )
    # the temperature is eta / (2b) / (1 - mu) (sg.temperature, eq. 3), an independent closed form
    assert m["temperature"] == pytest.approx(0.05 / (2 * 64) / (1 - 0.9))
    assert m["user"] == {"note": "test"} and m["dtype"] == "float32" and m["format_version"] == 2


def test_default_chunk_size_targets_one_mebibyte(tmp_path):
    small = sg.TrajectoryRecorder(tmp_path / "a", _tiny_fc())  # 917 float32 = 3,668 bytes a row
    big = sg.TrajectoryRecorder(tmp_path / "b", torch.nn.Linear(600, 600))  # 1.44 MB a row
    assert (small.chunk_size, big.chunk_size) == (2**20 // 3668, 1)
    small.close()
    big.close()


def test_every_and_scalars_given_sometimes(tmp_path):
    model, (x, y) = _tiny_fc(), _data()
    with sg.TrajectoryRecorder(tmp_path / "r", model, every=3, chunk_size=4) as rec:
        ref, _ = _train(model, rec, 20, x, y, extra=lambda t: {"acc": 0.5} if t == 5 else {})
    traj = sg.load_trajectory(tmp_path / "r")
    np.testing.assert_array_equal(traj.steps, np.arange(3, 21, 3))
    np.testing.assert_array_equal(traj.weights[:], ref[2::3])
    acc = traj.scalars["acc"]  # step 6 is the 2nd record; NaN elsewhere
    assert acc[1] == 0.5 and np.isnan(np.delete(acc, 1)).all()
    assert "lr" not in traj.scalars  # no optimizer given


@pytest.mark.parametrize("how", ["names", "dict", "tensors"])
def test_parameter_subset(tmp_path, how):
    model, (x, y) = _tiny_fc(), _data()
    chosen = ["3.weight", "1.bias"]
    by_name = dict(model.named_parameters())
    params = {
        "names": chosen,
        "dict": {n: by_name[n] for n in chosen},
        "tensors": [by_name[n] for n in chosen],
    }[how]
    with sg.TrajectoryRecorder(tmp_path / "s", model, params=params) as rec:
        _train(model, rec, 5, x, y)
    traj = sg.load_trajectory(tmp_path / "s")
    # model order is kept: 1.bias comes before 3.weight
    assert traj.meta["layout"] == {
        "names": ["1.bias", "3.weight"],
        "shapes": [[16], [5, 16]],
        "offsets": [0, 16],
    }
    np.testing.assert_array_equal(traj.weights[-1], _flat(model, chosen))


def test_projection_onto_random_and_given_directions(tmp_path):
    model, (x, y) = _tiny_fc(), _data()
    with sg.TrajectoryRecorder(tmp_path / "p", model, projection=3, seed=5) as rec:
        ref, _ = _train(model, rec, 12, x, y)
    traj = sg.load_trajectory(tmp_path / "p")
    basis = sg.random_projection(917, 3, seed=5).basis
    np.testing.assert_array_equal(traj.projection.basis, basis)
    np.testing.assert_allclose(traj.weights[:], ref @ basis.T, rtol=1e-4, atol=1e-5)
    assert traj.dim == 3 and traj.meta["projection"] == {"kind": "random", "k": 3}
    # a given basis with a centre (a Projection object), e.g. PCA of an earlier run
    pca = sg.pca_projection(ref, k=2)
    model2 = _tiny_fc()
    with sg.TrajectoryRecorder(tmp_path / "q", model2, projection=pca) as rec:
        ref2, _ = _train(model2, rec, 12, x, y)
    traj2 = sg.load_trajectory(tmp_path / "q")
    np.testing.assert_allclose(traj2.weights[:], pca.apply(ref2), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(traj2.projection.mean, pca.mean)
    assert traj2.projection.kind == "pca"
    # a raw (k, d) tensor of orthonormal rows
    e = torch.eye(917)[[0, 5]]
    with sg.TrajectoryRecorder(tmp_path / "e", _tiny_fc(), projection=e) as rec:
        rec.step()
    assert (
        sg.load_trajectory(tmp_path / "e").weights[0].tolist() == _flat(_tiny_fc())[[0, 5]].tolist()
    )


def test_full_gradient_matches_autograd_on_the_whole_data(tmp_path):
    """Oracle: grad of the mean loss over all N samples in one batch, in eval mode."""
    model, (x, y) = _tiny_fc(), _data(n=200)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64)
    per_sample = torch.nn.CrossEntropyLoss(reduction="none")
    with sg.TrajectoryRecorder(
        tmp_path / "g",
        model,
        gradient_data=loader,
        loss_fn=per_sample,
        gradient_every=4,
        dtype=torch.float64,
    ) as rec:
        expected, full_losses = [], []
        for t in range(12):
            model.train()
            loss = torch.nn.functional.cross_entropy(model(x[:64]), y[:64])
            model.zero_grad()
            loss.backward()
            with torch.no_grad():
                for p in model.parameters():
                    p -= 0.1 * p.grad
            if (t + 1) % 4 == 0:
                model.eval()
                mean_loss = torch.nn.functional.cross_entropy(model(x), y)
                g = torch.autograd.grad(mean_loss, list(model.parameters()))
                expected.append(torch.cat([v.reshape(-1) for v in g]).double().numpy())
                full_losses.append(mean_loss.item())
                model.train()
            grad_before = [p.grad.clone() for p in model.parameters()]
            rec.step(loss=loss)
            assert model.training  # the mode is restored
            for p, gb in zip(model.parameters(), grad_before, strict=True):
                assert torch.equal(p.grad, gb)  # .grad is left alone
    traj = sg.load_trajectory(tmp_path / "g")
    np.testing.assert_array_equal(traj.gradient_steps, [4, 8, 12])
    np.testing.assert_allclose(traj.gradients[:], np.array(expected), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(traj.gradient_scalars["loss"], full_losses, rtol=1e-6)
    assert traj.meta["gradient_every"] == 4 and traj.meta["gradient_mode"] == "eval"
    assert traj.weights.dtype == np.float64


def test_full_gradient_from_a_tensor_tuple_is_projected(tmp_path):
    model, (x, y) = _tiny_fc(), _data(n=64)
    per_sample = torch.nn.CrossEntropyLoss(reduction="none")
    with sg.TrajectoryRecorder(
        tmp_path / "gp",
        model,
        projection=2,
        gradient_data=(x, y),
        loss_fn=per_sample,
        gradient_every=1,
    ) as rec:
        rec.step()
    model.eval()
    g = torch.autograd.grad(
        torch.nn.functional.cross_entropy(model(x), y), list(model.parameters())
    )
    g = torch.cat([v.reshape(-1) for v in g]).numpy()
    traj = sg.load_trajectory(tmp_path / "gp")
    np.testing.assert_allclose(traj.gradients[0], traj.projection.basis @ g, rtol=1e-4, atol=1e-6)


def test_resume_continues_the_same_trajectory(tmp_path):
    model, (x, y) = _tiny_fc(), _data()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with sg.TrajectoryRecorder(tmp_path / "r", model, chunk_size=4) as rec:
        ref1, _ = _train(model, rec, 10, x, y, opt=opt)
    with sg.TrajectoryRecorder(tmp_path / "r", model, chunk_size=4, resume=True) as rec:
        assert rec.step_count == 10
        ref2, _ = _train(model, rec, 5, x, y, opt=opt)
    traj = sg.load_trajectory(tmp_path / "r")
    np.testing.assert_array_equal(traj.steps, np.arange(1, 16))
    np.testing.assert_array_equal(traj.weights[:], np.concatenate([ref1, ref2]))
    assert traj.meta["resumed_at_steps"] == [10] and traj.complete


def test_resume_on_a_new_path_starts_afresh(tmp_path):
    with sg.TrajectoryRecorder(tmp_path / "new", _tiny_fc(), resume=True) as rec:
        rec.step()
    assert len(sg.load_trajectory(tmp_path / "new")) == 1


def test_resume_after_a_kill_before_the_first_manifest(tmp_path):
    """A recorder killed between creating its directory and writing its manifest."""
    root = tmp_path / "early"
    (root / "weights").mkdir(parents=True)
    (root / ".manifest.json.abc.tmp").write_bytes(b"{partial")
    with sg.TrajectoryRecorder(root, _tiny_fc(), resume=True) as rec:
        rec.step()
    assert len(sg.load_trajectory(root)) == 1
    assert not (root / ".manifest.json.abc.tmp").exists()


def test_resume_refuses_a_different_layout_or_setting(tmp_path):
    with sg.TrajectoryRecorder(tmp_path / "r", _tiny_fc(), projection=2) as rec:
        rec.step()
    with pytest.raises(ValueError, match=r"cannot resume.*'layout'"):
        sg.TrajectoryRecorder(tmp_path / "r", _tiny_fc(classes=4), resume=True, projection=2)
    with pytest.raises(ValueError, match=r"cannot resume.*'every'"):
        sg.TrajectoryRecorder(tmp_path / "r", _tiny_fc(), every=2, resume=True, projection=2)
    with pytest.raises(ValueError, match=r"differs from the projection"):
        sg.TrajectoryRecorder(tmp_path / "r", _tiny_fc(), resume=True, projection=2, seed=9)
    with pytest.raises(ValueError, match=r"recorded with a projection, got none"):
        sg.TrajectoryRecorder(tmp_path / "r", _tiny_fc(), resume=True)
    x, y = _data(n=8)
    with pytest.raises(ValueError, match=r"recorded without gradients"):
        sg.TrajectoryRecorder(
            tmp_path / "r",
            _tiny_fc(),
            resume=True,
            projection=2,
            gradient_data=(x, y),
            loss_fn=torch.nn.CrossEntropyLoss(reduction="none"),
            gradient_every=1,
        )
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.txt").write_text("x")
    with pytest.raises(sg.TrajectoryFormatError, match=r"is not a trajectory"):
        sg.TrajectoryRecorder(tmp_path / "junk", _tiny_fc(), resume=True)


def test_existing_paths(tmp_path):
    with sg.TrajectoryRecorder(tmp_path / "r", _tiny_fc()) as rec:
        rec.step()
        rec.step()
    with pytest.raises(FileExistsError, match=r"Pass resume=True.*overwrite=True"):
        sg.TrajectoryRecorder(tmp_path / "r", _tiny_fc())
    with sg.TrajectoryRecorder(tmp_path / "r", _tiny_fc(), overwrite=True) as rec:
        rec.step()
    assert len(sg.load_trajectory(tmp_path / "r")) == 1
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match=r"not a trajectory"):
        sg.TrajectoryRecorder(other, _tiny_fc(), overwrite=True)
    assert (other / "keep.txt").read_text() == "precious"  # never deleted
    (tmp_path / "empty").mkdir()
    with sg.TrajectoryRecorder(tmp_path / "empty", _tiny_fc()) as rec:
        rec.step()


def test_nan_weights_are_recorded_and_flagged(tmp_path):
    model = _tiny_fc()
    rec = sg.TrajectoryRecorder(tmp_path / "n", model, chunk_size=1)
    rec.step()
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")
    rec.step()
    with pytest.warns(RuntimeWarning, match=r"recorded at step 2 hold NaN"):
        rec.flush()
    rec.step()  # warns once only
    rec.close()
    traj = sg.load_trajectory(tmp_path / "n")
    assert traj.first_nonfinite_step == 2 and np.isnan(traj.weights[1, 0]) and len(traj) == 3


def test_nan_weights_warn_at_close(tmp_path):
    model = _tiny_fc()
    with torch.no_grad():
        model[3].bias[0] = float("inf")
    rec = sg.TrajectoryRecorder(tmp_path / "n", model)
    rec.step()
    with pytest.warns(RuntimeWarning, match=r"step 1 hold NaN or inf"):
        rec.close()


def test_nan_weights_raise_when_asked(tmp_path):
    model = _tiny_fc()
    rec = sg.TrajectoryRecorder(tmp_path / "n", model, chunk_size=1, nonfinite="raise")
    assert rec.meta["nonfinite"] == NonFinitePolicy.RAISE.value
    with torch.no_grad():
        model[0].bias.fill_(float("nan"))
    rec.step()
    with pytest.raises(
        FloatingPointError, match=r"step 1 hold NaN or inf.*lower the learning rate"
    ):
        rec.flush()
    rec.close()  # already closed by the error: a no-op
    assert sg.load_trajectory(tmp_path / "n").first_nonfinite_step == 1


def test_writer_exception_surfaces_in_the_training_thread(tmp_path):
    rec = sg.TrajectoryRecorder(tmp_path / "w", _tiny_fc(), chunk_size=1)

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    rec._writer.append = disk_full
    rec.step()
    time.sleep(0.2)
    with pytest.raises(RuntimeError, match=r"writer thread .* failed.*No space left") as info:
        rec.step()
    assert isinstance(info.value.__cause__, OSError)
    with pytest.raises(RuntimeError, match=r"called after close"):
        rec.step()


def test_writer_exception_surfaces_at_close(tmp_path):
    rec = sg.TrajectoryRecorder(tmp_path / "w", _tiny_fc())
    rec._writer.append = lambda *a, **k: 1 / 0
    rec.step()
    with pytest.raises(RuntimeError, match=r"ZeroDivisionError"):
        rec.close()


def test_user_exception_passes_through_and_records_are_kept(tmp_path):
    with (
        pytest.raises(KeyError, match=r"mine"),
        sg.TrajectoryRecorder(tmp_path / "u", _tiny_fc()) as rec,
    ):
        rec.step()
        rec.step()
        raise KeyError("mine")
    assert len(sg.load_trajectory(tmp_path / "u")) == 2


def test_non_contiguous_parameters_are_recorded_in_logical_order(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 3), torch.nn.Flatten(), torch.nn.Linear(12, 2)
    )
    model = model.to(memory_format=torch.channels_last)
    assert not model[0].weight.is_contiguous()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ref = []
    with sg.TrajectoryRecorder(tmp_path / "cl", model, chunk_size=2) as rec:
        for _ in range(5):
            loss = model(torch.randn(4, 2, 4, 4).to(memory_format=torch.channels_last)).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            rec.step()
            ref.append(_flat(model))
    np.testing.assert_array_equal(sg.load_trajectory(tmp_path / "cl").weights[:], np.array(ref))


def test_replaced_parameters_are_detected(tmp_path):
    model = _tiny_fc()
    rec = sg.TrajectoryRecorder(tmp_path / "x", model)
    rec.step()
    model[0].weight.data = model[0].weight.data.clone()
    with pytest.raises(RuntimeError, match=r"were replaced.*Create the recorder after moving"):
        rec.flush()


def test_gradient_loss_must_be_per_sample(tmp_path):
    x, y = _data(n=16)
    rec = sg.TrajectoryRecorder(
        tmp_path / "l",
        _tiny_fc(),
        gradient_data=(x, y),
        loss_fn=torch.nn.CrossEntropyLoss(),
        gradient_every=1,
    )
    with pytest.raises(ValueError, match=r"per-sample losses of shape \(16,\).*reduction='none'"):
        rec.step()
    rec.close()


def test_gradient_data_must_not_be_empty(tmp_path):
    rec = sg.TrajectoryRecorder(
        tmp_path / "l",
        _tiny_fc(),
        gradient_data=[],
        loss_fn=torch.nn.CrossEntropyLoss(reduction="none"),
        gradient_every=1,
    )
    with pytest.raises(ValueError, match=r"yielded no samples"):
        rec.step()
    rec.close()


def test_writer_blocks_when_the_queue_is_full_then_resumes(tmp_path):
    """A slow disk makes step() wait for a free buffer; nothing is lost."""
    rec = sg.TrajectoryRecorder(tmp_path / "q", _tiny_fc(), chunk_size=1, queue_size=1)
    append = rec._writer.append

    def slow(*args, **kwargs):
        time.sleep(0.01)
        return append(*args, **kwargs)

    rec._writer.append = slow
    for _ in range(20):
        rec.step()
    rec.close()
    assert len(sg.load_trajectory(tmp_path / "q")) == 20


BAD = [
    ({"every": 0}, "'every' parameter of TrajectoryRecorder must be an int in \\[1, inf\\]"),
    ({"chunk_size": 0}, "'chunk_size' parameter"),
    ({"queue_size": 0}, "'queue_size' parameter"),
    ({"nonfinite": "ignore"}, "'nonfinite' parameter .* must be one of 'record', 'raise'"),
    ({"dtype": torch.int32}, "floating torch.dtype"),
    ({"params": ["nope"]}, r"names parameters the model does not have: \['nope'\]"),
    ({"params": [3]}, "parameter names or parameters of the model"),
    ({"params": []}, "selects no parameters"),
    ({"projection": "pca"}, "must be None, an int k, an array"),
    ({"projection": 1000}, "'projection' parameter .* must be an int in \\[1, 917\\]"),
    ({"projection": sg.random_projection(10, 2)}, "acts on d = 10 coordinates.*d = 917"),
    ({"lr": 0.0}, r"'lr' parameter of TrajectoryRecorder must be a real number in \(0, inf\]"),
    ({"batch_size": 0}, r"'batch_size' parameter of TrajectoryRecorder must be an int"),
    ({"n": -5}, r"'n' parameter of TrajectoryRecorder must be an int"),
    ({"meta": {"x": object()}}, "must be JSON-serialisable"),
    ({"loss_fn": torch.nn.MSELoss()}, "used only with 'gradient_data'"),
    ({"gradient_data": ([1], [2])}, "needs 'loss_fn'"),
    (
        {"gradient_data": ([1], [2]), "loss_fn": torch.nn.MSELoss(), "gradient_every": 0},
        "'gradient_every' parameter",
    ),
]


@pytest.mark.parametrize(
    ("kwargs", "match"), BAD, ids=[next(iter(k)) + str(i) for i, (k, _) in enumerate(BAD)]
)
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sg.TrajectoryRecorder(tmp_path / "b", _tiny_fc(), **kwargs)


def test_model_must_be_a_module(tmp_path):
    with pytest.raises(ValueError, match=r"must be a torch.nn.Module, got dict"):
        sg.TrajectoryRecorder(tmp_path / "b", {})


# --------------------------------------------------------------------------------- crash safety
WORKER = textwrap.dedent(
    """
    import sys, time, torch
    import sgdscope as sg

    torch.set_num_threads(1)
    path, total, pause = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    model = torch.nn.Sequential(torch.nn.Linear(30, 20), torch.nn.Linear(20, 3))
    d = sum(p.numel() for p in model.parameters())
    with sg.TrajectoryRecorder(path, model, chunk_size=5, every=2, resume=True) as rec:
        while rec.step_count < total:
            k = rec.step_count + 1
            target = torch.sin(0.001 * k * torch.arange(1, d + 1, dtype=torch.float32))
            with torch.no_grad():  # in place, as optimizers do
                off = 0
                for p in model.parameters():
                    p.copy_(target[off : off + p.numel()].view_as(p))
                    off += p.numel()
            rec.step(loss=float(k))
            time.sleep(pause)
    print("finished", flush=True)
    """
)


def _expected(steps, d=683):
    i = torch.arange(1, d + 1, dtype=torch.float32)
    return np.stack([torch.sin(0.001 * int(k) * i).numpy() for k in steps])


def _check_valid(path, total):
    traj = sg.load_trajectory(path)
    steps = traj.steps
    np.testing.assert_array_equal(steps, np.arange(2, 2 * len(steps) + 1, 2))  # no gap, no dup
    assert len(steps) == 0 or steps[-1] <= total
    np.testing.assert_array_equal(traj.weights[:], _expected(steps))  # nothing corrupted
    np.testing.assert_array_equal(traj.scalars.get("loss", np.zeros(0)), steps.astype(float))
    json.loads((path / "manifest.json").read_text())
    return traj


def _run_and_kill(script, path, total, rng, pause):
    proc = subprocess.Popen(
        [sys.executable, str(script), str(path), str(total), str(pause)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    before = len(sg.load_trajectory(path)) if (path / "manifest.json").exists() else 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:  # wait for a new chunk
        try:
            if len(sg.load_trajectory(path)) > before:
                break
        except (FileNotFoundError, sg.TrajectoryFormatError):
            pass
        time.sleep(0.01)
    time.sleep(rng.uniform(0.0, 0.3))
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert killed or proc.returncode == 0, err.decode()
    return killed


def _sigkill_campaign(tmp_path, kills, total, seed):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    path = tmp_path / "crash"
    rng = np.random.default_rng(seed)
    n_killed, lengths = 0, []
    for _ in range(kills):
        n_killed += _run_and_kill(script, path, total, rng, pause=0.003)
        traj = _check_valid(path, total)
        lengths.append(len(traj))
        assert not traj.complete or len(traj) == total // 2
    assert n_killed >= 1 and lengths == sorted(lengths)  # resume appends, never loses commits
    out = subprocess.run(
        [sys.executable, str(script), str(path), str(total), "0"],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert b"finished" in out.stdout
    traj = _check_valid(path, total)
    assert traj.complete and len(traj) == total // 2
    assert traj.meta["resumed_at_steps"][:n_killed] == sorted(
        traj.meta["resumed_at_steps"][:n_killed]
    )


def test_sigkill_mid_run_leaves_readable_chunks_and_resume_continues(tmp_path):
    _sigkill_campaign(tmp_path, kills=3, total=600, seed=0)


@pytest.mark.slow
def test_sigkill_many_times(tmp_path):
    _sigkill_campaign(tmp_path, kills=15, total=20000, seed=1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_model_round_trip_with_projection_and_gradients(tmp_path):
    """Buffers live on the GPU; copies to the host happen in the writer thread."""
    model, (x, y) = _tiny_fc(), _data(n=128)
    model, x, y = model.cuda(), x.cuda(), y.cuda()
    per_sample = torch.nn.CrossEntropyLoss(reduction="none")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    kw = {"gradient_data": (x, y), "loss_fn": per_sample, "gradient_every": 5, "chunk_size": 4}
    with sg.TrajectoryRecorder(tmp_path / "c", model, optimizer=opt, **kw) as rec:
        ref, _ = _train_cuda(model, rec, 20, x, y, opt)
    traj = sg.load_trajectory(tmp_path / "c")
    np.testing.assert_array_equal(traj.weights[:], ref)
    model.eval()
    g = torch.autograd.grad(
        torch.nn.functional.cross_entropy(model(x), y), list(model.parameters())
    )
    g = torch.cat([v.reshape(-1) for v in g]).cpu().numpy()
    np.testing.assert_allclose(traj.gradients[-1], g, rtol=1e-4, atol=1e-6)
    assert np.isfinite(traj.scalars["loss"]).all() and len(traj.scalars["loss"]) == 20


def _train_cuda(model, rec, steps, x, y, opt):
    ref = []
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x[:64]), y[:64])
        opt.zero_grad()
        loss.backward()
        opt.step()
        rec.step(loss=loss)
        ref.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]).cpu().numpy())
    return np.array(ref), None


def test_recording_gradients_leaves_a_frozen_eval_mode_batchnorm_frozen(tmp_path):
    """Regression: the gradient pass used to call model.train(True) on the whole model afterwards,
    switching a deliberately frozen (eval-mode) BatchNorm back to batch statistics."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6), torch.nn.ReLU(), torch.nn.Linear(6, 2)
    )
    model.train()
    model[1].eval()  # frozen statistics, as in fine-tuning
    X, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    rec = sg.TrajectoryRecorder(
        tmp_path / "run",
        model,
        loss_fn=torch.nn.CrossEntropyLoss(reduction="none"),
        gradient_data=(X, y),
        gradient_every=1,
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X), y).backward()
        opt.step()
        rec.step()
        assert model.training and not model[1].training and model[0].training
    rec.close()


def test_trajectory_layout_splits_records_per_parameter(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    rec = sg.TrajectoryRecorder(tmp_path / "run", model)
    rec.step()
    rec.close()
    traj = sg.load_trajectory(tmp_path / "run")
    layout = traj.layout
    assert layout.names == ("0.weight", "0.bias", "2.weight", "2.bias") and layout.dim == traj.dim
    pieces = layout.split(np.asarray(traj.weights[0]))
    np.testing.assert_array_equal(pieces["2.weight"], model[2].weight.detach().numpy())


# ------------------------------------------------------------------- further streams and resume_step
def test_further_streams_round_trip_and_resume_with_them(tmp_path):
    model = _tiny_fc()
    spec = {"probe": 3, "vec": (5, torch.float32)}
    with sg.TrajectoryRecorder(tmp_path / "r", model, streams=spec, chunk_size=4) as rec:
        for t in range(1, 7):
            rec.step()
            if t % 2 == 0:
                rec.append("probe", torch.tensor([t, t + 0.5, -t], dtype=torch.float64), acc=t / 10)
            if t == 3:
                rec.append("vec", np.arange(5.0))
    traj = sg.load_trajectory(tmp_path / "r")
    assert traj.streams == ("weights", "probe", "vec") and traj.meta["format_version"] == 3
    probe = traj.stream("probe")
    np.testing.assert_array_equal(probe.steps, [2, 4, 6])
    np.testing.assert_array_equal(probe.data[:], [[t, t + 0.5, -t] for t in (2, 4, 6)])
    np.testing.assert_allclose(probe.scalars["acc"], [0.2, 0.4, 0.6])
    assert probe.data.dtype == np.float64 and traj.stream("vec").data.dtype == np.float32
    np.testing.assert_array_equal(traj.stream("weights").steps, np.arange(1, 7))
    with pytest.raises(KeyError, match=r"no stream 'nope'; its streams are \['weights', 'probe'"):
        traj.stream("nope")
    # a resume at step 4 drops the rows after it; the next row goes to step 5
    with sg.TrajectoryRecorder(
        tmp_path / "r", model, streams=spec, chunk_size=4, resume=True, resume_step=4
    ) as rec:
        with pytest.raises(ValueError, match=r"already holds a row at step 4"):
            rec.append("probe", np.zeros(3))
        rec.step()
        rec.append("probe", np.ones(3))
    traj = sg.load_trajectory(tmp_path / "r")
    np.testing.assert_array_equal(traj.steps, np.arange(1, 6))
    np.testing.assert_array_equal(traj.stream("probe").steps, [2, 4, 5])
    assert len(traj.stream("vec")) == 1


def test_append_errors(tmp_path):
    rec = sg.TrajectoryRecorder(tmp_path / "r", _tiny_fc(), streams={"probe": 3})
    with pytest.raises(KeyError, match=r"names 'other', which was not declared.*\['probe'\]"):
        rec.append("other", np.zeros(3))
    with pytest.raises(ValueError, match=r"length of stream 'probe', 3, got 4 values"):
        rec.append("probe", np.zeros(4))
    rec.close()
    with pytest.raises(RuntimeError, match=r"append was called after close"):
        rec.append("probe", np.zeros(3))


@pytest.mark.parametrize(
    ("streams", "match"),
    [
        ({"Bad-Name": 2}, "stream name 'Bad-Name'"),
        ({"weights": 2}, "names 'weights', which the recorder writes itself"),
        ({"probe": 0}, r"'streams\['probe'\]' parameter"),
        ({"probe": (2, torch.int64)}, "expected a floating torch.dtype"),
    ],
)
def test_bad_streams(tmp_path, streams, match):
    with pytest.raises(ValueError, match=match):
        sg.TrajectoryRecorder(tmp_path / "r", _tiny_fc(), streams=streams)


def test_resume_step_drops_later_records_of_every_stream(tmp_path):
    """A checkpoint at step 6, a crash at step 11: the resumed record is steps 1..6 then 7.., with
    the gradients after step 6 dropped too."""
    model, (x, y) = _tiny_fc(), _data()
    kw = {
        "gradient_data": (x[:32], y[:32]),
        "loss_fn": torch.nn.CrossEntropyLoss(reduction="none"),
        "gradient_every": 2,
        "chunk_size": 4,
    }
    with sg.TrajectoryRecorder(tmp_path / "r", model, **kw) as rec:
        _train(model, rec, 11, x, y)
    with sg.TrajectoryRecorder(tmp_path / "r", model, resume=True, resume_step=6, **kw) as rec:
        assert rec.step_count == 6
        _train(model, rec, 1, x, y)
    traj = sg.load_trajectory(tmp_path / "r")
    np.testing.assert_array_equal(traj.steps, np.arange(1, 8))
    np.testing.assert_array_equal(traj.gradient_steps, [2, 4, 6])
    assert traj.meta["resumed_at_steps"] == [6]
    with pytest.raises(sg.TrajectoryGapError, match=r"steps 8..9 would be missing"):
        sg.TrajectoryRecorder(tmp_path / "r", model, resume=True, resume_step=9, **kw)


def test_resume_step_on_a_new_path_starts_after_it(tmp_path):
    """A recorder added when training resumes from a checkpoint at step 40: steps are the
    optimizer's, 41 onwards; a crash before its first chunk resumes at 40 again."""
    model = _tiny_fc()
    rec = sg.TrajectoryRecorder(tmp_path / "r", model, resume=True, resume_step=40)
    rec.close()
    with sg.TrajectoryRecorder(tmp_path / "r", model, resume=True) as rec:
        assert rec.step_count == 40
        rec.step()
    np.testing.assert_array_equal(sg.load_trajectory(tmp_path / "r").steps, [41])


def test_resume_step_needs_resume(tmp_path):
    with pytest.raises(ValueError, match=r"'resume_step' parameter .* only with resume=True"):
        sg.TrajectoryRecorder(tmp_path / "r", _tiny_fc(), resume_step=3)
    with pytest.raises(ValueError, match=r"'resume_step' parameter .* \[0, inf\]"):
        sg.TrajectoryRecorder(tmp_path / "r", _tiny_fc(), resume=True, resume_step=-1)


def test_coordinate_projection_records_single_weights_and_their_gradients(tmp_path):
    model, (x, y) = _tiny_fc(), _data()
    proj = sg.trajectory.coordinate_projection(917, 9, seed=4)
    per_sample = torch.nn.CrossEntropyLoss(reduction="none")
    kw = {"gradient_data": (x, y), "loss_fn": per_sample, "gradient_every": 3, "chunk_size": 4}
    with sg.TrajectoryRecorder(tmp_path / "c", model, projection=proj, **kw) as rec:
        ref, _ = _train(model, rec, 6, x, y)
    traj = sg.load_trajectory(tmp_path / "c")
    assert isinstance(traj.projection, sg.trajectory.CoordinateProjection)
    np.testing.assert_array_equal(traj.projection.indices, proj.indices)
    np.testing.assert_array_equal(traj.weights[:], ref[:, proj.indices])
    model.eval()
    g = torch.autograd.grad(per_sample(model(x), y).mean(), list(model.parameters()))
    g = torch.cat([v.reshape(-1) for v in g]).numpy()
    np.testing.assert_allclose(traj.gradients[-1], g[proj.indices], rtol=1e-5, atol=1e-7)
    with sg.TrajectoryRecorder(tmp_path / "c", model, projection=proj, resume=True, **kw) as rec:
        rec.step()
    other = sg.trajectory.coordinate_projection(917, 9, seed=5)
    with pytest.raises(ValueError, match="differs from the projection"):
        sg.TrajectoryRecorder(tmp_path / "c", model, projection=other, resume=True, **kw)
