"""Crash consistency, locking, checksums, linear commits and damaged-file detection of the store.

Every test here fails on the format-1 store: the gradient stream duplicated after a crash between
the two streams' commits, a second writer was accepted, a flipped byte loaded silently, each chunk
rewrote the whole manifest, a failed run was marked complete, and the reader trusted the files.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import sgdscope as sg
from sgdscope.trajectory import store
from sgdscope.trajectory.store import StoreWriter, TrajectoryLockedError

V1 = Path(__file__).parent / "data" / "v1_traj"

# ------------------------------------------------------------------ a known, replayable recording
# The weights after step k are a known function of k, so every stored row, and every full
# gradient (recomputed here with autograd at those weights), can be checked exactly.
GRAD_WORKER = textwrap.dedent(
    """
    import os, sys, time, torch
    import sgdscope as sg
    from sgdscope.trajectory import store

    torch.set_num_threads(1)
    path, total, pause, die_at = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    if die_at:  # die exactly between the gradients commit and the weights commit of one step
        orig = store.StoreWriter.append
        def append(self, stream, *a, **k):
            if stream == "weights" and self.manifest["streams"]["weights"]["length"] >= die_at:
                os._exit(9)
            return orig(self, stream, *a, **k)
        store.StoreWriter.append = append
    model = torch.nn.Linear(20, 3)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 20, generator=g), torch.randint(0, 3, (16,), generator=g)
    rec = sg.TrajectoryRecorder(
        path, model, every=2, chunk_size=5, resume=True, gradient_data=(x, y),
        loss_fn=torch.nn.CrossEntropyLoss(reduction="none"), gradient_every=GE,
    )
    print("START", rec.step_count, flush=True)
    while rec.step_count < total:
        k = rec.step_count + 1
        flat = torch.sin(0.001 * k * torch.arange(1, 64, dtype=torch.float32))
        with torch.no_grad():
            model.weight.copy_(flat[:60].view(3, 20)); model.bias.copy_(flat[60:])
        rec.step(loss=float(k))
        time.sleep(pause)
    rec.close()
    print("finished", flush=True)
    """
)


def _weights_at(k):
    return torch.sin(0.001 * int(k) * torch.arange(1, 64, dtype=torch.float32))


def _gradient_at(k):
    model = torch.nn.Linear(20, 3)
    flat = _weights_at(k)
    with torch.no_grad():
        model.weight.copy_(flat[:60].view(3, 20))
        model.bias.copy_(flat[60:])
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 20, generator=g), torch.randint(0, 3, (16,), generator=g)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, [model.weight, model.bias])
    return torch.cat([t.reshape(-1) for t in grads]).numpy(), float(loss.detach())


def _check_consistent(path, ge, total=None):
    """Both streams: no gap, no duplicate, every row equal to its step's known value."""
    traj = sg.load_trajectory(path)
    steps, gsteps = traj.steps, traj.gradient_steps
    np.testing.assert_array_equal(steps, 2 * np.arange(1, len(steps) + 1))
    np.testing.assert_array_equal(gsteps, ge * np.arange(1, len(gsteps) + 1))
    if total is not None:
        assert steps[-1] == total - total % 2 and gsteps[-1] == total - total % ge
    for i, k in enumerate(steps):
        np.testing.assert_array_equal(traj.weights[i], _weights_at(k).numpy())
    np.testing.assert_array_equal(traj.scalars.get("loss", np.zeros(0)), steps.astype(float))
    for i, k in enumerate(gsteps):
        grad, loss = _gradient_at(k)
        np.testing.assert_allclose(traj.gradients[i], grad, rtol=1e-4, atol=1e-6)
        assert traj.gradient_scalars["loss"][i] == pytest.approx(loss, rel=1e-5)
    return traj


def _worker(tmp_path, ge):
    script = tmp_path / "worker.py"
    script.write_text(GRAD_WORKER.replace("GE", str(ge)))
    return script


def _run(script, path, total, pause=0.0, die_at=0):
    return subprocess.run(
        [sys.executable, str(script), str(path), str(total), str(pause), str(die_at)],
        capture_output=True,
        timeout=120,
    )


@pytest.mark.parametrize("ge", [1, 3])
def test_kill_between_the_two_streams_commits_then_resume_keeps_streams_consistent(tmp_path, ge):
    """D1: the gradients chunk is committed, the process dies before the weights chunk."""
    script, path = _worker(tmp_path, ge), tmp_path / "t"
    out = _run(script, path, 200, die_at=10)
    assert out.returncode == 9, out.stderr.decode()
    traj = sg.load_trajectory(path)
    assert len(traj) == 10 and not traj.complete
    assert traj.gradient_steps[-1] > traj.steps[-1]  # the state the crash leaves
    out = _run(script, path, 60)
    assert out.returncode == 0, out.stderr.decode()
    traj = _check_consistent(path, ge, total=60)
    assert traj.complete and traj.meta["resumed_at_steps"] == [20]


def test_resume_drops_weights_that_the_gradient_stream_does_not_cover(tmp_path):
    """A crash inside flush(): weights committed, the gradient chunk of the same steps not."""
    script, path = _worker(tmp_path, 1), tmp_path / "t"
    assert _run(script, path, 37).returncode == 0
    manifest = store.read_manifest(path)
    last_grad = manifest["streams"]["gradients"]["chunks"][-1]
    index = path / store.INDEX
    lines = index.read_bytes().splitlines(keepends=True)
    (kept,) = [i for i, line in enumerate(lines) if json.loads(line)["start"] == last_grad.start]
    index.write_bytes(b"".join(lines[:kept] + lines[kept + 1 :]))  # as if never committed
    assert _run(script, path, 50).returncode == 0
    traj = _check_consistent(path, 1, total=50)
    assert traj.meta["resumed_at_steps"] == [last_grad.first_step - 1]  # G + ge - 1 < W


def _kill_campaign(tmp_path, kills, ge, seed, total=10**6):
    script, path = _worker(tmp_path, ge), tmp_path / "k"
    rng = np.random.default_rng(seed)
    killed = 0
    for _ in range(kills):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(path), str(total), "0", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        if rng.random() < 0.15:  # during start-up (import, lock, resume truncation)
            time.sleep(rng.uniform(0.3, 2.5))
        else:
            proc.stdout.readline()
            time.sleep(rng.choice([0.0, rng.uniform(0, 0.05), rng.uniform(0.05, 0.5)]))
        killed += proc.poll() is None
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode in (0, -signal.SIGKILL), err.decode()
        if (path / store.MANIFEST).exists():
            _check_consistent(path, ge)
    assert killed >= kills // 2
    n = len(sg.load_trajectory(path)) * 2 if (path / store.MANIFEST).exists() else 0
    out = _run(script, path, n + 31)
    assert out.returncode == 0, out.stderr.decode()
    traj = _check_consistent(path, ge, total=n + 31)
    assert traj.complete


def test_random_sigkills_leave_both_streams_consistent(tmp_path):
    """D1 with real SIGKILLs at random moments (the slow variant does 25)."""
    _kill_campaign(tmp_path, kills=3, ge=1, seed=3)


@pytest.mark.slow
@pytest.mark.parametrize("ge", [1, 3])
def test_many_random_sigkills_leave_both_streams_consistent(tmp_path, ge):
    _kill_campaign(tmp_path, kills=25, ge=ge, seed=7 + ge)


def test_clean_close_with_every_above_gradient_every_resumes_without_duplicates(tmp_path):
    """every=2, gradient_every=1: the last gradient is past the last record; resume must not
    compute it twice."""
    model = torch.nn.Linear(2, 1)
    x, y = torch.randn(4, 2), torch.randn(4)

    def loss(out, t):
        return (out[:, 0] - t) ** 2

    for total in (5, 9):
        with sg.TrajectoryRecorder(
            tmp_path / "t",
            model,
            every=2,
            chunk_size=3,
            resume=True,
            gradient_data=(x, y),
            loss_fn=loss,
            gradient_every=1,
        ) as rec:
            while rec.step_count < total:
                rec.step()
    traj = sg.load_trajectory(tmp_path / "t")
    assert traj.steps.tolist() == [2, 4, 6, 8]
    assert traj.gradient_steps.tolist() == list(range(1, 10))


# ------------------------------------------------------------------------------------ D2: lock
def test_a_second_recorder_on_the_same_path_is_refused(tmp_path):
    a = sg.TrajectoryRecorder(tmp_path / "t", torch.nn.Linear(3, 1), chunk_size=2)
    with pytest.raises(TrajectoryLockedError, match=r"another TrajectoryRecorder \(pid \d+"):
        sg.TrajectoryRecorder(tmp_path / "t", torch.nn.Linear(3, 1), resume=True)
    with pytest.raises(TrajectoryLockedError):
        sg.TrajectoryRecorder(tmp_path / "t", torch.nn.Linear(3, 1), overwrite=True)
    for _ in range(5):
        a.step()
    a.close()
    with sg.TrajectoryRecorder(tmp_path / "t", torch.nn.Linear(3, 1), resume=True) as b:
        b.step()  # released by close()
    assert sg.load_trajectory(tmp_path / "t").steps.tolist() == [1, 2, 3, 4, 5, 6]


def test_the_lock_holds_across_processes_and_dies_with_its_process(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time, torch, sgdscope as sg\n"
            f"r = sg.TrajectoryRecorder({str(tmp_path / 't')!r}, torch.nn.Linear(3, 1))\n"
            "print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout.readline().strip() == b"held"
        with pytest.raises(TrajectoryLockedError, match=rf"pid {holder.pid}"):
            sg.TrajectoryRecorder(tmp_path / "t", torch.nn.Linear(3, 1), resume=True)
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    with sg.TrajectoryRecorder(tmp_path / "t", torch.nn.Linear(3, 1), resume=True) as rec:
        rec.step()


def test_a_failed_constructor_releases_the_lock(tmp_path):
    with sg.TrajectoryRecorder(tmp_path / "t", torch.nn.Linear(3, 1)) as rec:
        rec.step()
    with pytest.raises(ValueError, match="layout"):
        sg.TrajectoryRecorder(tmp_path / "t", torch.nn.Linear(4, 1), resume=True)
    sg.TrajectoryRecorder(tmp_path / "t", torch.nn.Linear(3, 1), resume=True).close()


# ------------------------------------------------------------------------------- D4: checksums
def _recorded(tmp_path, n=32, chunk=16):
    m = torch.nn.Linear(9, 1)
    with sg.TrajectoryRecorder(tmp_path / "t", m, chunk_size=chunk) as rec:
        for s in range(1, n + 1):
            with torch.no_grad():
                m.weight.fill_(s)
            rec.step(loss=float(s))
    return tmp_path / "t"


def test_a_flipped_byte_in_a_chunk_is_detected(tmp_path):
    path = _recorded(tmp_path)
    f = path / "weights" / "00000001.npy"
    b = bytearray(f.read_bytes())
    b[-20] ^= 0x40
    f.write_bytes(bytes(b))
    traj = sg.load_trajectory(path)
    np.testing.assert_array_equal(traj.weights[:16, 0], np.arange(1, 17))  # chunk 0 is fine
    with pytest.raises(sg.TrajectoryFormatError, match=r"weights/00000001.npy.*CRC-32"):
        traj.weights[20]
    assert sg.load_trajectory(path, verify=False).weights[20].shape == (10,)


def test_swapped_chunk_files_are_detected(tmp_path):
    path = _recorded(tmp_path)
    shutil.copy(path / "weights" / "00000000.npy", path / "weights" / "00000001.npy")
    with pytest.raises(sg.TrajectoryFormatError, match=r"00000001\.npy"):
        sg.load_trajectory(path).weights[:]


def test_a_flipped_byte_in_a_records_file_is_detected(tmp_path):
    path = _recorded(tmp_path)
    f = path / "weights" / "00000000.records.npz"
    b = bytearray(f.read_bytes())
    b[60] ^= 0x01
    f.write_bytes(bytes(b))
    with pytest.raises(sg.TrajectoryFormatError, match=r"00000000.records.npz"):
        sg.load_trajectory(path)


# ---------------------------------------------------------------------- D5: commits stay linear
def test_a_chunk_commit_appends_one_index_line_and_never_rewrites_the_manifest(
    tmp_path, monkeypatch
):
    writes = []
    orig = store._atomic_write

    def spy(path, write, *, fsync):
        writes.append(Path(path).name)
        return orig(path, write, fsync=fsync)

    monkeypatch.setattr(store, "_atomic_write", spy)
    m = torch.nn.Linear(3, 1)
    with sg.TrajectoryRecorder(tmp_path / "t", m, chunk_size=1) as rec:
        rec.flush()
        sizes = []
        for i in range(1, 301):
            rec.step()
            if i % 100 == 0:
                rec.flush()
                sizes.append((tmp_path / "t" / store.INDEX).stat().st_size)
        assert writes.count(store.MANIFEST) == 1  # written once when opened, never per chunk
    assert writes.count(store.MANIFEST) == 2  # and once at close (complete=True)
    # the index grows by the same amount per 100 chunks (up to the digits of steps and CRCs)
    assert abs((sizes[2] - sizes[1]) - (sizes[1] - sizes[0])) <= 0.02 * (sizes[1] - sizes[0])
    assert len((tmp_path / "t" / store.INDEX).read_bytes().splitlines()) == 300


# --------------------------------------------------------------------- D6: failed is not complete
def test_a_failed_write_is_not_marked_complete(tmp_path):
    rec = sg.TrajectoryRecorder(tmp_path / "t", torch.nn.Linear(3, 1), chunk_size=4)
    with pytest.raises(RuntimeError, match="could not convert"):
        for s in range(1, 41):
            rec.step(loss="oops" if s == 6 else 1.0)
    rec.close()
    traj = sg.load_trajectory(tmp_path / "t")
    assert not traj.complete and len(traj) == 4


def test_nonfinite_raise_is_not_marked_complete(tmp_path):
    m = torch.nn.Linear(2, 1)
    rec = sg.TrajectoryRecorder(tmp_path / "t", m, chunk_size=2, nonfinite="raise")
    with pytest.raises(FloatingPointError):
        for s in range(10):
            with torch.no_grad():
                m.bias.fill_(float("nan") if s == 3 else 0.0)
            rec.step()
        rec.close()  # raises here if the writer had not checked the chunk before
    assert not sg.load_trajectory(tmp_path / "t").complete


def test_a_short_write_is_explained_as_disk_full(tmp_path, monkeypatch):
    def short(self, *a, **k):
        raise OSError("80000 requested and 31712 written")

    rec = sg.TrajectoryRecorder(tmp_path / "t", torch.nn.Linear(3, 1), chunk_size=2)
    monkeypatch.setattr(store, "_CrcWriter", type("W", (), {"__init__": short}))
    with pytest.raises(RuntimeError, match=r"disk is full or a file-size limit") as info:
        for _ in range(10):
            rec.step()
        rec.flush()
    assert "00000000.npy" in str(info.value)
    rec.close()
    assert not sg.load_trajectory(tmp_path / "t").complete


# ------------------------------------------------------------------ D12: the reader checks files
def _copy(path, name):
    return Path(shutil.copytree(path, path.parent / name))


def _edit_index(path, fn):
    index = path / store.INDEX
    lines = [json.loads(line) for line in index.read_bytes().splitlines()]
    fn(lines)
    index.write_text("".join(json.dumps(e) + "\n" for e in lines))


def test_records_with_the_wrong_number_of_steps_are_refused(tmp_path):
    path = _recorded(tmp_path, n=48)
    np.savez(path / "weights/00000001.records.npz", steps=np.array([17, 18, 19]), loss=np.zeros(3))
    with pytest.raises(sg.TrajectoryFormatError, match=r"00000001\.records\.npz"):
        sg.load_trajectory(path, verify=False)


def test_records_with_steps_out_of_order_are_refused(tmp_path):
    path = _recorded(tmp_path, n=48)
    steps = np.arange(17, 33)[::-1]
    np.savez(path / "weights/00000001.records.npz", steps=steps, loss=np.zeros(16))
    with pytest.raises(sg.TrajectoryFormatError, match=r"records\.npz"):
        sg.load_trajectory(path, verify=False)


@pytest.mark.parametrize("cut", [40, "all"])
def test_a_truncated_chunk_names_the_file(tmp_path, cut):
    path = _recorded(tmp_path, n=48)
    f = path / "weights/00000002.npy"
    f.write_bytes(b"" if cut == "all" else f.read_bytes()[:-cut])
    with pytest.raises(sg.TrajectoryFormatError, match=r"00000002\.npy"):
        sg.load_trajectory(path, verify=False).weights[:]


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda ls: ls[2].update(start=10), "starts at record 10"),
        (lambda ls: ls[1].update(start=10), "starts at record 10"),
        (lambda ls: ls[1].update(extra=1), "unknown keys"),
        (lambda ls: ls[1].update(count="16"), "expected an int"),
        (lambda ls: ls[2].update(first_step=5, last_step=6), "not after the previous"),
        (lambda ls: ls[0].pop("stream"), "does not name its stream"),
    ],
)
def test_a_damaged_index_is_refused(tmp_path, edit, match):
    path = _recorded(tmp_path, n=48)
    _edit_index(path, edit)
    with pytest.raises(sg.TrajectoryFormatError, match=match):
        sg.load_trajectory(path)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: m.pop("meta"), "no 'meta'"),
        (lambda m: m["streams"].pop("weights"), "no 'weights' stream"),
        (lambda m: m["streams"]["weights"].update(dim=0), "dim 0"),
        (lambda m: m["streams"]["weights"].update(dtype="int8"), "float dtype"),
        (lambda m: m["streams"].update(extra={"dim": 1, "dtype": "float32"}), "unknown stream"),
    ],
)
def test_a_damaged_manifest_is_refused(tmp_path, edit, match):
    path = _recorded(tmp_path)
    manifest = json.loads((path / store.MANIFEST).read_text())
    edit(manifest)
    (path / store.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(sg.TrajectoryFormatError, match=match):
        sg.load_trajectory(path)


def test_an_unterminated_last_index_line_is_ignored(tmp_path):
    path = _recorded(tmp_path, n=48)
    with open(path / store.INDEX, "ab") as fh:
        fh.write(b'{"stream":"weights","index":3,"sta')  # a write cut by a crash
    assert len(sg.load_trajectory(path)) == 48
    with sg.TrajectoryRecorder(path, torch.nn.Linear(9, 1), chunk_size=16, resume=True) as rec:
        rec.step()  # the resumed writer drops the torn line before appending
    assert sg.load_trajectory(path).steps.tolist() == list(range(1, 50))


def test_a_stray_projection_file_is_ignored(tmp_path):
    path = _recorded(tmp_path)
    np.savez(path / "projection.npz", basis=np.eye(2), mean=np.zeros(2))
    assert sg.load_trajectory(path).projection is None
    with sg.TrajectoryRecorder(path, torch.nn.Linear(9, 1), chunk_size=16, resume=True) as rec:
        rec.step()  # resuming reads no projection from it either
    assert sg.load_trajectory(path).projection is None and rec.projection is None


# ------------------------------------------------------------------- format 1 is still readable
def test_a_format_1_trajectory_loads_and_resumes_into_format_2(tmp_path):
    traj = sg.load_trajectory(V1)
    assert traj.meta["format_version"] == 1 and traj.complete
    assert traj.steps.tolist() == list(range(1, 11))
    assert traj.gradient_steps.tolist() == [2, 4, 6, 8, 10]
    base = (torch.arange(6, dtype=torch.float32) * 0.1).numpy()  # as the writer computed it
    for i, s in enumerate(traj.steps):
        np.testing.assert_array_equal(
            traj.weights[i], np.r_[base + np.float32(s), -s, -s].astype(np.float32)
        )
    path = Path(shutil.copytree(V1, tmp_path / "v1"))
    m = torch.nn.Linear(3, 2)
    x = torch.arange(24, dtype=torch.float32).reshape(8, 3) / 10
    y = torch.tensor([0, 1] * 4)
    with sg.TrajectoryRecorder(
        path,
        m,
        chunk_size=4,
        resume=True,
        gradient_data=(x, y),
        loss_fn=torch.nn.CrossEntropyLoss(reduction="none"),
        gradient_every=2,
    ) as rec:
        for s in range(11, 15):
            with torch.no_grad():
                m.weight.copy_(torch.arange(6, dtype=torch.float32).reshape(2, 3) * 0.1 + s)
                m.bias.fill_(-s)
            rec.step(loss=float(s))
    traj = sg.load_trajectory(path)
    assert traj.meta["format_version"] == 2 and traj.meta["resumed_at_steps"] == [10]
    assert traj.steps.tolist() == list(range(1, 15))
    assert traj.gradient_steps.tolist() == [2, 4, 6, 8, 10, 12, 14]
    for i, s in enumerate(traj.steps):
        np.testing.assert_array_equal(
            traj.weights[i], np.r_[base + np.float32(s), -s, -s].astype(np.float32)
        )
    np.testing.assert_array_equal(traj.scalars["loss"], np.arange(1, 15))


def test_storewriter_truncation_rewrites_a_straddling_chunk(tmp_path):
    w = StoreWriter(tmp_path / "s", {}, {"weights": {"dim": 2, "dtype": "float64"}})
    w.append("weights", np.ones((3, 2)), np.array([1, 2, 3]), {"loss": np.array([1.0, 2, 3])})
    w.append("weights", 2 * np.ones((3, 2)), np.array([4, 5, 6]), {"loss": np.array([4.0, 5, 6])})
    w.close()
    manifest = store.read_manifest(tmp_path / "s")
    StoreWriter(tmp_path / "s", {}, {}, manifest=manifest, truncate_after=4).close()
    traj = sg.load_trajectory(tmp_path / "s")
    assert traj.steps.tolist() == [1, 2, 3, 4] and traj.scalars["loss"].tolist() == [1, 2, 3, 4]
    np.testing.assert_array_equal(traj.weights[:], np.r_[np.ones((3, 2)), 2 * np.ones((1, 2))])
