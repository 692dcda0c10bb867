"""The on-disk format and the lazy reader, against in-memory numpy arrays (the oracle)."""

import json

import numpy as np
import pytest

import sgdscope as sg
from sgdscope.trajectory import store
from sgdscope.trajectory.store import FORMAT_NAME, FORMAT_VERSION, StoreWriter

D = 7
SIZES = [5, 3, 8, 1, 4]  # uneven chunks, including a single-row one


def _write(root, rng, sizes=SIZES, dim=D, scalars=True):
    """Write chunks of known random data; return the (T, d) array, steps and the loss column."""
    w = StoreWriter(root, {"lr": 0.1, "every": 2}, {"weights": {"dim": dim, "dtype": "float64"}})
    rows, steps, losses, step = [], [], [], 0
    for c, size in enumerate(sizes):
        data = rng.normal(size=(size, dim))
        st = np.arange(step + 2, step + 2 * size + 1, 2)
        step = int(st[-1])
        sc = {"loss": rng.normal(size=size)} if scalars else {}
        if scalars and c == 2:  # a scalar present only in one chunk
            sc["batch_size"] = np.full(size, 64.0)
        w.append("weights", data, st, sc)
        rows.append(data)
        steps.append(st)
        losses.append(sc.get("loss", np.full(size, np.nan)))
    w.commit(complete=True)
    return np.concatenate(rows), np.concatenate(steps), np.concatenate(losses)


@pytest.fixture
def stored(tmp_path):
    x, steps, loss = _write(tmp_path / "t", np.random.default_rng(0))
    return sg.load_trajectory(tmp_path / "t"), x, steps, loss


def test_round_trip_weights_steps_scalars_meta(stored):
    traj, x, steps, loss = stored
    assert len(traj) == len(x) == sum(SIZES) and traj.dim == D
    np.testing.assert_array_equal(traj.weights[:], x)
    np.testing.assert_array_equal(np.asarray(traj.weights), x)
    np.testing.assert_array_equal(traj.steps, steps)
    np.testing.assert_array_equal(traj.scalars["loss"], loss)
    bs = traj.scalars["batch_size"]
    start = sum(SIZES[:2])
    assert np.all(bs[start : start + SIZES[2]] == 64.0)
    assert np.isnan(np.delete(bs, np.arange(start, start + SIZES[2]))).all()
    assert traj.meta["lr"] == 0.1 and traj.meta["format_version"] == 2  # weights only: version 2
    assert traj.complete and traj.gradients is None and traj.projection is None
    assert traj.first_nonfinite_step is None
    assert "records=21" in repr(traj) and "ChunkedArray" in repr(traj.weights)
    assert traj.weights.ndim == 2 and traj.weights.dtype == np.float64


KEYS = [
    0,
    -1,
    7,
    slice(None),
    slice(2, 9),
    slice(4, 17, 3),
    slice(None, None, -1),
    slice(15, 2, -2),
    slice(30, 40),
    [0, 20, 5, 5, 13],
    np.array([3, 4, 5, 6]),
    (slice(3, 12), slice(1, 4)),
    (slice(None), 2),
    (5, slice(None)),
    (5, -1),
    (slice(0, 21, 4), [6, 0, 3]),
    (np.arange(21) % 3 == 0, slice(None)),
    (slice(1, 2),),
]


@pytest.mark.parametrize("key", KEYS, ids=[repr(k)[:30] for k in KEYS])
def test_slicing_by_time_and_coordinate_matches_numpy(stored, key):
    traj, x, _, _ = stored
    got = traj.weights[key]
    want = x[key]
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_iter_chunks_covers_the_array(stored):
    traj, x, _, _ = stored
    parts = list(traj.weights.iter_chunks())
    assert [s for s, _ in parts] == list(np.cumsum([0, *SIZES[:-1]]))
    np.testing.assert_array_equal(np.concatenate([p for _, p in parts]), x)


def test_bad_indices_raise(stored):
    traj, _, _, _ = stored
    with pytest.raises(IndexError, match=r"at most 2"):
        traj.weights[1, 2, 3]
    with pytest.raises(IndexError, match=r"1-D set of rows"):
        traj.weights[np.zeros((2, 2), dtype=int)]
    with pytest.raises(IndexError):
        traj.weights[100]


def test_empty_trajectory_loads(tmp_path):
    StoreWriter(tmp_path / "e", {}, {"weights": {"dim": 3, "dtype": "float32"}})
    traj = sg.load_trajectory(tmp_path / "e")
    assert len(traj) == 0 and traj.weights[:].shape == (0, 3) and not traj.complete
    assert traj.steps.shape == (0,) and traj.scalars == {}


def test_uncommitted_orphan_files_are_ignored(tmp_path):
    x, _, _ = _write(tmp_path / "t", np.random.default_rng(1))
    # a chunk whose files landed but whose manifest update did not (killed in between)
    np.save(tmp_path / "t" / "weights" / f"{len(SIZES):08d}.npy", np.ones((9, D)))
    (tmp_path / "t" / "weights" / ".00000009.npy.x.tmp").write_bytes(b"partial")
    traj = sg.load_trajectory(tmp_path / "t")
    np.testing.assert_array_equal(traj.weights[:], x)


def test_nonfinite_rows_are_flagged(tmp_path):
    w = StoreWriter(tmp_path / "n", {}, {"weights": {"dim": 2, "dtype": "float64"}})
    w.append("weights", np.ones((3, 2)), np.array([1, 2, 3]), {})
    chunk = w.append("weights", np.array([[1.0, 1.0], [np.nan, 0.0]]), np.array([4, 5]), {})
    assert chunk.nonfinite == 1 and chunk.first_nonfinite_step == 5
    traj = sg.load_trajectory(tmp_path / "n")
    assert traj.first_nonfinite_step == 5 and np.isnan(traj.weights[4, 0])


def test_atomic_write_leaves_old_file_when_interrupted(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")

    def fail(fh):
        fh.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store._atomic_write(target, fail, fsync=False)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_fsync_mode_writes_readable_store(tmp_path):
    w = StoreWriter(tmp_path / "s", {}, {"weights": {"dim": 2, "dtype": "float32"}}, fsync=True)
    w.append("weights", np.ones((2, 2), np.float32), np.array([1, 2]), {})
    assert sg.load_trajectory(tmp_path / "s").weights[:].sum() == 4


# ----------------------------------------------------------------------------------- bad input
def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"does not exist"):
        sg.load_trajectory(tmp_path / "nowhere")


def test_path_that_is_not_a_trajectory(tmp_path):
    (tmp_path / "file.txt").write_text("hello")
    with pytest.raises(sg.TrajectoryFormatError, match=r"is not a trajectory"):
        sg.load_trajectory(tmp_path / "file.txt")
    with pytest.raises(sg.TrajectoryFormatError, match=r"is not a trajectory"):
        sg.load_trajectory(tmp_path)  # a directory without a manifest
    assert issubclass(sg.TrajectoryFormatError, ValueError)


def _manifest(tmp_path, content):
    root = tmp_path / "m"
    root.mkdir()
    (root / "manifest.json").write_text(content)
    return root


def test_manifest_of_another_format(tmp_path):
    root = _manifest(tmp_path, json.dumps({"format": "zarr", "format_version": 1}))
    with pytest.raises(sg.TrajectoryFormatError, match=r"does not declare format"):
        sg.load_trajectory(root)


def test_manifest_not_json(tmp_path):
    root = _manifest(tmp_path, "{not json")
    with pytest.raises(sg.TrajectoryFormatError, match=r"not valid JSON"):
        sg.load_trajectory(root)


def test_newer_format_version_is_refused(tmp_path):
    StoreWriter(tmp_path / "v", {}, {"weights": {"dim": 2, "dtype": "float32"}})
    file = tmp_path / "v" / "manifest.json"
    manifest = json.loads(file.read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    file.write_text(json.dumps(manifest))
    with pytest.raises(
        sg.TrajectoryFormatError, match=rf"newer trajectory format version {FORMAT_VERSION + 1}"
    ):
        sg.load_trajectory(tmp_path / "v")


def test_invalid_format_version(tmp_path):
    root = _manifest(tmp_path, json.dumps({"format": FORMAT_NAME, "format_version": "one"}))
    with pytest.raises(sg.TrajectoryFormatError, match=r"invalid format_version"):
        sg.load_trajectory(root)


def test_damaged_chunk_is_reported(tmp_path):
    _write(tmp_path / "t", np.random.default_rng(2))
    np.save(tmp_path / "t" / "weights" / "00000001.npy", np.ones((2, D)))
    traj = sg.load_trajectory(tmp_path / "t")
    np.testing.assert_array_equal(traj.weights[0:5].shape, (5, D))  # other chunks still load
    with pytest.raises(sg.TrajectoryFormatError, match=r"is damaged"):
        traj.weights[6]
