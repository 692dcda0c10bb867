"""Projections against numpy: PCA vs np.linalg.svd, Haar random directions, given bases."""

import numpy as np
import pytest
import torch
from scipy import stats

import sgdscope as sg
from sgdscope.trajectory import projection as projection_module
from sgdscope.trajectory.store import StoreWriter


def _data(T=300, d=6, seed=0):
    rng = np.random.default_rng(seed)
    scales = np.array([5.0, 3.0, 2.0, 1.0, 0.5, 0.1])[:d]
    mix = np.linalg.qr(rng.normal(size=(d, d)))[0]
    return rng.normal(size=(T, d)) * scales @ mix.T + rng.normal(size=d) * 10


def _svd_oracle(z, k, center=True):
    zc = z - z.mean(axis=0) if center else z
    _, s, vt = np.linalg.svd(zc, full_matrices=False)
    return vt[:k], s[:k] ** 2 / (len(z) - 1)


def _same_up_to_sign(a, b, atol=1e-8):
    signs = np.sign(np.sum(a * b, axis=1))
    np.testing.assert_allclose(a * signs[:, None], b, atol=atol)


@pytest.mark.parametrize("increments", [False, True], ids=["positions", "increments"])
def test_pca_matches_svd_of_centred_data(increments):
    x = _data()
    proj = sg.pca_projection(x, k=3, increments=increments)
    z = np.diff(x, axis=0) if increments else x
    vt, var = _svd_oracle(z, 3)
    _same_up_to_sign(proj.basis, vt)
    np.testing.assert_allclose(proj.explained_variance, var, rtol=1e-10)
    np.testing.assert_allclose(proj.mean, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(proj.basis @ proj.basis.T, np.eye(3), atol=1e-12)
    assert proj.kind == ("pca_increments" if increments else "pca") and proj.k == 3
    # the coordinates are centred and their variances are the explained variances
    y = proj.apply(x)
    if not increments:
        np.testing.assert_allclose(y.var(axis=0, ddof=1), var, rtol=1e-10)
        np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-9)


def test_pca_uncentred_is_svd_of_raw_data():
    x = _data(seed=3)
    proj = sg.pca_projection(x, k=2, center=False)
    vt, _ = _svd_oracle(x, 2, center=False)
    _same_up_to_sign(proj.basis, vt)
    assert np.all(proj.mean == 0)


def test_pca_sign_convention_largest_entry_positive():
    proj = sg.pca_projection(_data(seed=4), k=4)
    rows = np.arange(4)
    assert np.all(proj.basis[rows, np.abs(proj.basis).argmax(axis=1)] > 0)


def test_pca_svd_path_agrees_with_covariance_path(monkeypatch):
    x = _data(T=50, seed=5)
    a = sg.pca_projection(x, k=3, increments=True)
    monkeypatch.setattr(projection_module, "_MAX_COV_DIM", 2)
    b = sg.pca_projection(x, k=3, increments=True)
    np.testing.assert_allclose(a.basis, b.basis, atol=1e-10)
    np.testing.assert_allclose(a.explained_variance, b.explained_variance, rtol=1e-10)


def test_pca_streams_over_a_chunked_trajectory(tmp_path, monkeypatch):
    """Increments across chunk borders and blocks are carried over (equal to the in-memory PCA)."""
    x = _data(T=100, seed=6)
    w = StoreWriter(tmp_path / "t", {}, {"weights": {"dim": 6, "dtype": "float64"}})
    for lo, hi in [(0, 7), (7, 8), (8, 60), (60, 100)]:
        w.append("weights", x[lo:hi], np.arange(lo, hi) + 1, {})
    traj = sg.load_trajectory(tmp_path / "t")
    for inc in (False, True):
        a, b = (
            sg.pca_projection(x, k=2, increments=inc),
            sg.pca_projection(traj, k=2, increments=inc),
        )
        np.testing.assert_allclose(a.basis, b.basis, atol=1e-10)
        np.testing.assert_allclose(a.apply(x), b.apply(traj), atol=1e-9)
    monkeypatch.setattr(projection_module, "_BLOCK", 9)  # in-memory arrays streamed in blocks too
    c = sg.pca_projection(x, k=2, increments=True)
    np.testing.assert_allclose(c.basis, sg.pca_projection(traj, k=2, increments=True).basis)


def test_pca_bad_input():
    with pytest.raises(
        ValueError, match=r"'k' parameter of pca_projection must be an int in \[1, 6\]"
    ):
        sg.pca_projection(_data(), k=7)
    with pytest.raises(ValueError, match=r"at least 3 rows"):
        sg.pca_projection(_data()[:2], k=1, increments=True)
    with pytest.raises(ValueError, match=r"at least 2 rows"):
        sg.pca_projection(_data()[:1], k=1)
    with pytest.raises(ValueError, match=r"shape \(T, d\)"):
        sg.pca_projection(np.zeros(5), k=1)


def test_random_directions_are_orthonormal_and_seeded():
    p = sg.random_projection(50, k=5, seed=3)
    np.testing.assert_allclose(p.basis @ p.basis.T, np.eye(5), atol=1e-12)
    np.testing.assert_array_equal(p.basis, sg.random_projection(50, k=5, seed=3).basis)
    assert not np.allclose(p.basis, sg.random_projection(50, k=5, seed=4).basis)
    assert p.kind == "random" and np.all(p.mean == 0) and p.explained_variance is None


def test_random_directions_are_uniform_on_the_sphere():
    """Archimedes: a coordinate of a uniform point on S² is uniform on [-1, 1] (KS test)."""
    first = np.array([sg.random_projection(3, k=1, seed=s).basis[0, 0] for s in range(2000)])
    assert stats.kstest(first, stats.uniform(loc=-1, scale=2).cdf).pvalue > 0.01
    # and for k = 2 in d = 3 the second row is uniform on the sphere too, orthogonal to the first
    second = np.array([sg.random_projection(3, k=2, seed=s).basis[1, 2] for s in range(2000)])
    assert stats.kstest(second, stats.uniform(loc=-1, scale=2).cdf).pvalue > 0.01


def test_random_projection_bad_input():
    with pytest.raises(
        ValueError, match=r"'k' parameter of random_projection must be an int in \[1, 4\]"
    ):
        sg.random_projection(4, k=5)
    with pytest.raises(ValueError, match=r"'dim' parameter of random_projection"):
        sg.random_projection(0)


def test_given_basis_selects_coordinates_and_lifts_back():
    rng = np.random.default_rng(7)
    q = np.linalg.qr(rng.normal(size=(6, 6)))[0]
    basis = q[:, :2].T  # e.g. the top eigenvectors of D, passed as rows
    mean = rng.normal(size=6)
    p = sg.basis_projection(torch.as_tensor(basis), mean=mean)
    x = rng.normal(size=(10, 6))
    np.testing.assert_allclose(p.apply(x), (x - mean) @ basis.T, atol=1e-12)
    # lift(apply(x)) is the orthogonal projection of x - m onto the span, plus m
    proj_matrix = basis.T @ basis
    np.testing.assert_allclose(p.lift(p.apply(x)), (x - mean) @ proj_matrix + mean, atol=1e-12)
    e = sg.basis_projection(np.eye(6)[[4, 1]])
    np.testing.assert_array_equal(e.apply(x), x[:, [4, 1]])


def test_given_basis_orthonormalize_keeps_the_span():
    b = np.array([[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0]])
    p = sg.basis_projection(b, orthonormalize=True)
    np.testing.assert_allclose(p.basis @ p.basis.T, np.eye(2), atol=1e-12)
    proj_b = b.T @ np.linalg.inv(b @ b.T) @ b
    np.testing.assert_allclose(p.basis.T @ p.basis, proj_b, atol=1e-12)
    np.testing.assert_allclose(p.basis[0], b[0] / np.sqrt(2), atol=1e-12)  # first direction kept


def test_given_basis_bad_input():
    with pytest.raises(ValueError, match=r"must have orthonormal rows.*orthonormalize=True"):
        sg.basis_projection(np.array([[1.0, 1.0, 0.0]]))
    with pytest.raises(ValueError, match=r"shape \(k, d\) with 1 <= k <= d.*transpose"):
        sg.basis_projection(np.eye(3)[:, :2])
    with pytest.raises(ValueError, match=r"must be finite"):
        sg.basis_projection(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match=r"linearly dependent"):
        sg.basis_projection(np.array([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0]]), orthonormalize=True)
    with pytest.raises(ValueError, match=r"'atol' parameter of basis_projection"):
        sg.basis_projection(np.eye(2), atol=-1.0)


def test_projection_shape_checks():
    p = sg.random_projection(5, k=2)
    with pytest.raises(ValueError, match=r"last dimension d = 5"):
        p.apply(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"shapes \(k, d\) and \(d,\)"):
        sg.Projection(basis=np.eye(3), mean=np.zeros(2))
    assert p.apply(np.ones(5)).shape == (2,) and p.dim == 5
    with pytest.raises(ValueError):
        p.basis[0, 0] = 1.0  # frozen arrays


def test_one_pass_float32_memmap_matches_float64_svd(tmp_path, monkeypatch):
    """The one streamed float32 pass (several blocks, Chan merges) against a float64 SVD.

    Weights sit far from zero (mean 10³, fluctuations O(1)): a float32 uncentred XᵀX would lose
    the covariance; the per-block shift keeps it at float32 resolution of the fluctuations.
    """
    monkeypatch.setattr(projection_module, "_SCAN_ELEMENTS", 40 * 97)  # 97-row blocks
    rng = np.random.default_rng(3)
    T, d = 2000, 40
    x64 = rng.standard_normal((T, d)) * np.linspace(3.0, 0.1, d) @ np.linalg.qr(
        rng.standard_normal((d, d))
    )[0] + 1e3 * rng.standard_normal(d)
    path = tmp_path / "w.npy"
    np.save(path, x64.astype(np.float32))
    x32 = np.load(path, mmap_mode="r")
    ref64 = np.asarray(x32, dtype=np.float64)  # the same float32 values, in float64
    proj = sg.pca_projection(x32, k=3)
    vecs, vals = _svd_oracle(ref64, 3)
    np.testing.assert_allclose(proj.explained_variance, vals, rtol=1e-5)
    _same_up_to_sign(proj.basis, vecs, atol=1e-4)
    np.testing.assert_allclose(proj.mean, ref64.mean(axis=0), rtol=1e-10, atol=1e-8)
    scan = projection_module._scan(x32, cross=True)
    np.testing.assert_allclose(scan.variance, ref64.var(axis=0, ddof=1), rtol=1e-5)
    # apply streams in float64 blocks and agrees with the in-memory float64 product
    monkeypatch.setattr(projection_module, "_BLOCK", 4)
    np.testing.assert_allclose(proj.apply(x32), (ref64 - proj.mean) @ proj.basis.T, atol=1e-9)


def test_scan_reports_the_first_non_finite_value(monkeypatch):
    monkeypatch.setattr(projection_module, "_SCAN_ELEMENTS", 5 * 10)
    x = np.ones((40, 5), dtype=np.float32) + np.arange(40, dtype=np.float32)[:, None]
    x[23, 2] = np.nan
    x[31, 0] = np.inf
    assert projection_module._scan(x, cross=True).bad == (23, 2)
    with pytest.raises(ValueError, match=r"non-finite value .* row 23, column 2"):
        sg.pca_projection(x, k=1)


def test_top_eigh_lanczos_matches_full_eigh():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((500, 200)) * np.linspace(5, 0.1, 200)
    cov = a.T @ a / 500
    vals, vecs = projection_module._top_eigh(cov, 3)
    w, v = np.linalg.eigh(cov)
    np.testing.assert_allclose(vals, w[::-1][:3], rtol=1e-12)
    _same_up_to_sign(vecs, v[:, ::-1][:, :3].T, atol=1e-9)


def test_coordinate_projection_is_the_projection_onto_rows_of_the_identity():
    proj = sg.trajectory.coordinate_projection(50, k=6, seed=2)
    dense = sg.basis_projection(np.eye(50)[proj.indices])
    x = np.random.default_rng(0).normal(size=(7, 50))
    np.testing.assert_array_equal(proj.apply(x), dense.apply(x))
    y = proj.apply(x)
    np.testing.assert_array_equal(proj.lift(y), dense.lift(y))
    assert proj.kind == "coordinates" and proj.k == 6 and proj.dim == 50
    assert np.all(np.diff(proj.indices) > 0) and not proj.indices.flags.writeable


def test_coordinate_projection_draws_uniformly():
    """Every coordinate is equally likely: chi-square over 2,000 draws of k = 5 from d = 20."""
    counts = np.zeros(20)
    for seed in range(2000):
        counts[sg.trajectory.coordinate_projection(20, 5, seed=seed).indices] += 1
    assert stats.chisquare(counts).pvalue > 0.001


def test_coordinate_projection_applies_to_a_trajectory_chunk_by_chunk(tmp_path):
    writer = StoreWriter(tmp_path / "t", {}, {"weights": {"dim": 8, "dtype": "float64"}})
    x = np.arange(48.0).reshape(6, 8)
    writer.append("weights", x[:4], np.arange(1, 5), {})
    writer.append("weights", x[4:], np.arange(5, 7), {})
    writer.close()
    writer.commit(complete=True)
    proj = sg.trajectory.CoordinateProjection(indices=[1, 6], dim=8)
    np.testing.assert_array_equal(proj.apply(sg.load_trajectory(tmp_path / "t")), x[:, [1, 6]])
    with pytest.raises(ValueError, match=r"last dimension d = 8"):
        proj.apply(np.zeros((2, 5)))


@pytest.mark.parametrize("indices", [[], [3, 3], [5, 2], [-1], [8]])
def test_coordinate_projection_refuses_bad_indices(indices):
    with pytest.raises(ValueError, match=r"strictly increasing array of coordinates in \[0, 8\)"):
        sg.trajectory.CoordinateProjection(indices=indices, dim=8)
