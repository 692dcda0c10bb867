import numpy as np
import pytest
import scipy.sparse.linalg
import torch

import sgdscope as sg
from sgdscope.noise.spectrum import FLOAT32_EPS

from .cases import cross_entropy, image_data, small_cnn, warm_up_batchnorm


def cnn_noise(n: int) -> sg.GradientNoise:
    X, y = image_data(n)
    model = warm_up_batchnorm(small_cnn(), X)
    return sg.GradientNoise(model, cross_entropy(), (X, y), chunk_size=64)


@pytest.fixture(scope="module", params=[120, 700], ids=["N<d", "N>d"])
def case(request):
    noise = cnn_noise(request.param)
    D = noise.dense().numpy()
    evals, evecs = np.linalg.eigh(D)
    return noise, D, evals[::-1].copy(), evecs[:, ::-1].copy()


def assert_same_subspace(V, W, atol=1e-6):
    """V and W (d × k) span the same subspace: ‖VᵀW‖_F² = k."""
    k = V.shape[1]
    assert np.linalg.norm(V.T @ W) ** 2 == pytest.approx(k, abs=atol * k)


def test_exact_methods_agree_with_numpy_eigh(case):
    noise, D, evals, evecs = case
    n = noise.n_samples
    for method in ["dense", "gram"]:
        spec = noise.spectrum(method=method)
        m = spec.eigenvalues.size
        np.testing.assert_allclose(
            spec.eigenvalues, np.clip(evals[:m], 0, None), rtol=1e-8, atol=1e-12 * evals[0]
        )
        assert np.all(evals[m:] <= 1e-10 * evals[0])  # whatever gram leaves out is zero
        assert spec.complete and spec.trace == pytest.approx(np.trace(D), rel=1e-10)
        top = 10  # well-separated top eigenvalues: eigenvectors agree
        assert_same_subspace(spec.eigenvectors[:, :top], evecs[:, :top])
    assert noise.spectrum(method="gram").eigenvalues.size == min(n - 1, noise.dim)


def test_randomized_top_k_agrees_with_dense(case):
    noise, _, evals, evecs = case
    spec = noise.spectrum(k=15, method="randomized", tol=1e-9)
    assert spec.converged and not spec.complete
    np.testing.assert_allclose(spec.eigenvalues, evals[:15], rtol=1e-8)
    # the residuals are error bars: |λ̃ − λ| ≤ ‖r‖
    assert np.all(
        np.abs(spec.eigenvalues - evals[:15]) <= spec.residuals + 1e-14 * evals[0]
    )  # + eigh round-off
    assert_same_subspace(spec.eigenvectors[:, :10], evecs[:, :10])


def test_operator_products_agree_with_dense(case):
    noise, D, evals, _ = case
    op = noise.operator()
    g = torch.Generator().manual_seed(3)
    X = torch.randn(noise.dim, 4, generator=g, dtype=torch.float64)
    v = X[:, 0]
    Dt = torch.from_numpy(D)
    for _ in range(2):  # twice: products are deterministic
        torch.testing.assert_close(op @ X, Dt @ X, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(op.matvec(v), Dt @ v, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(op.rmatmat(X), Dt.T @ X, rtol=1e-9, atol=1e-12)
    sp = op.to_scipy()
    np.testing.assert_allclose(sp @ X.numpy(), D @ X.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sp.rmatvec(v.numpy()), D @ v.numpy(), rtol=1e-9, atol=1e-12)
    top = scipy.sparse.linalg.eigsh(sp, k=5, which="LA", return_eigenvectors=False)
    np.testing.assert_allclose(np.sort(top)[::-1], evals[:5], rtol=1e-8)


def decaying_least_squares(d=300, n=1000):
    """Least squares whose feature scales decay so that λ_j(D) ≈ 10^(−j/20): the rank at the paper's
    threshold (≈ 90) is well below min(N − 1, d), so k must grow 32 → 64 → 128 to reach it."""
    g = torch.Generator().manual_seed(0)
    scales = 10 ** (-torch.arange(d, dtype=torch.float64) / 40)
    X = torch.randn(n, d, generator=g, dtype=torch.float64) * scales
    y = torch.randn(n, generator=g, dtype=torch.float64)
    model = torch.nn.Linear(d, 1, bias=False, dtype=torch.float64)
    return sg.GradientNoise(model, lambda o, t: 0.5 * (o[:, 0] - t) ** 2, (X, y))


def test_rank_without_a_dense_matrix_is_exact():
    noise = decaying_least_squares()
    dense = noise.spectrum(method="dense")
    spec = noise.spectrum(method="randomized", rtol="paper")  # k=None: grow k to the threshold
    assert spec.converged and not spec.complete
    assert 64 < spec.eigenvalues.size <= 128  # it had to grow twice
    assert spec.eigenvalues[-1] <= spec.threshold("paper")
    assert spec.rank("paper") == dense.rank("paper") and 50 < dense.rank("paper") < 128
    assert spec.rank_is_certain("paper")
    D = noise.dense().numpy()
    thr = np.linalg.eigvalsh(D).max() * D.shape[0] * FLOAT32_EPS
    assert dense.rank("paper") == np.linalg.matrix_rank(D, tol=thr, hermitian=True)
    for rtol in [1e-3, 1e-2]:
        assert noise.spectrum(method="randomized", rtol=rtol).rank(rtol) == dense.rank(rtol)


def test_full_rank_stops_at_the_rank_bound():
    noise = cnn_noise(120)
    spec = noise.spectrum(method="randomized")
    assert spec.complete and spec.eigenvalues.size == 119  # N − 1
    assert spec.rank() == noise.spectrum(method="dense").rank()


def test_auto_says_what_it_chose():
    noise = cnn_noise(120)
    spec = noise.spectrum()
    assert spec.method == "gram" and spec.reason.startswith("auto: min(N, d) = 120")
    assert noise.spectrum(method="dense").reason == "requested"
    X, y = image_data(120)
    tight = sg.GradientNoise(small_cnn().eval(), cross_entropy(), (X, y), memory_budget=400_000)
    spec = tight.spectrum(k=5)
    assert spec.method == "randomized"
    assert spec.reason == (
        "auto: the 120² matrix does not fit the memory budget; the randomized method needs O(d·k) memory"
    )


def test_statistics_against_direct_formulas():
    noise = cnn_noise(120)
    spec = noise.spectrum(method="dense")
    lam = np.clip(np.linalg.eigvalsh(noise.dense().numpy()), 0, None)[::-1]
    d = lam.size
    thr = lam[0] * d * FLOAT32_EPS
    r = int((lam > thr).sum())
    assert spec.rank("paper") == r and spec.rank_fraction("paper") == pytest.approx(r / d)
    p = lam[lam > 0] / lam.sum()
    assert spec.effective_rank() == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-9)
    assert spec.participation_ratio() == pytest.approx(lam.sum() ** 2 / (lam**2).sum(), rel=1e-9)
    assert spec.top_k_share(5) == pytest.approx(lam[:5].sum() / lam.sum(), rel=1e-9)
    s = spec.stats("paper")
    clipped = np.maximum(lam, thr)
    assert s["raw"]["mean"] == pytest.approx(lam.mean(), rel=1e-9)
    assert s["raw"]["std"] == pytest.approx(lam.std(), rel=1e-7)
    assert s["clipped"]["mean"] == pytest.approx(clipped.mean(), rel=1e-9)
    assert s["clipped"]["std"] == pytest.approx(clipped.std(), rel=1e-7)
    assert s["above"]["mean"] == pytest.approx(lam[:r].mean(), rel=1e-9)
    assert s["above"]["count"] == r
    counts, _ = spec.histogram(bins=12, rtol="paper")
    assert counts.sum() == d and counts[0] >= d - r
    counts, _ = spec.histogram(
        bins=np.logspace(-9, 2, 10), rtol="paper"
    )  # the authors' style of fixed edges
    assert counts.sum() <= d


def test_partial_spectrum_statistics_bracket_the_exact_ones():
    noise = decaying_least_squares()
    exact = noise.spectrum(method="dense").stats("paper")
    partial = noise.spectrum(method="randomized", rtol="paper")
    s = partial.stats("paper")
    assert s["raw"]["mean"] == pytest.approx(exact["raw"]["mean"], rel=1e-9)
    assert s["raw"]["std_low"] - 1e-12 <= exact["raw"]["std"] <= s["raw"]["std_high"] + 1e-12
    assert s["clipped"]["mean"] == pytest.approx(exact["clipped"]["mean"], rel=1e-6)
    assert s["above"]["count"] == exact["above"]["count"]


def test_partial_spectrum_refuses_an_undetermined_rank():
    noise = cnn_noise(120)
    spec = noise.spectrum(k=5, method="randomized")
    with pytest.raises(
        ValueError,
        match=r"rank at threshold .* is not determined: all 5 computed eigenvalues.*k=None",
    ):
        spec.rank()
    with pytest.raises(
        ValueError, match=r"'k' parameter of Spectrum.top_k_share must be an int in \[1, 5\]"
    ):
        spec.top_k_share(6)


def test_subspace_overlap():
    noise = cnn_noise(120)
    a = noise.spectrum(k=8, method="randomized")
    b = noise.spectrum(method="dense")
    assert a.subspace_overlap(b, 5) == pytest.approx(1.0, abs=1e-6)
    X, y = image_data(120, seed=99)
    other = sg.GradientNoise(small_cnn(seed=5).eval(), cross_entropy(), (X, y)).spectrum(
        k=5, method="randomized"
    )
    overlap = a.subspace_overlap(other, 5)
    assert 0.0 <= overlap < 0.9
    with pytest.raises(
        ValueError,
        match=r"'k' parameter of Spectrum.subspace_overlap must be at most .* \(8\), got 9",
    ):
        a.subspace_overlap(b, 9)


def test_summary_is_json_ready():
    import json

    json.dumps(
        decaying_least_squares().spectrum(method="randomized").summary()
    )  # numpy scalars cast
    summary = cnn_noise(120).spectrum().summary()
    text = json.dumps(summary)
    assert '"threshold_rule": "noise floor of the computation (float64)"' in text
    assert summary["rank_paper"] == cnn_noise(120).spectrum().rank("paper")
    assert summary["rank_percent"] == pytest.approx(100 * summary["rank"] / summary["dim"])


@pytest.mark.slow
def test_small_lenet_on_real_mnist_randomized_rank_equals_gram_rank():
    """The paper's network on 1,500 embedded MNIST images: the threshold search without a dense
    matrix finds the same rank and top eigenvalues as the exact Gram method."""
    from sgdscope.paper import data, models

    x, y = data.mnist_for("small-lenet", n=1500).tensors()
    noise = sg.GradientNoise(models.build("small-lenet", seed=0).eval(), cross_entropy(), (x, y))
    exact = noise.spectrum(method="gram")
    fast = noise.spectrum(method="randomized")
    assert fast.rank() == exact.rank() and fast.rank_is_certain()
    assert (
        0.002 < exact.rank_fraction() < 0.05
    )  # the paper's regime: 0.3–2 % (here at initialisation)
    np.testing.assert_allclose(fast.eigenvalues[:20], exact.eigenvalues[:20], rtol=1e-6)


def test_save_and_load_round_trip(tmp_path):
    noise = cnn_noise(120)
    spec = noise.spectrum(k=6, method="randomized")
    path = spec.save(tmp_path / "s.npz")
    back = sg.Spectrum.load(path)
    np.testing.assert_array_equal(back.eigenvalues, spec.eigenvalues)
    np.testing.assert_array_equal(back.eigenvectors, spec.eigenvectors)
    np.testing.assert_array_equal(back.residuals, spec.residuals)
    for field in ("dim", "n_samples", "trace", "complete", "method", "reason", "iterations",
                  "converged", "noise_floor", "precision", "info"):  # fmt: skip
        assert getattr(back, field) == getattr(spec, field), field
    assert back.summary() == spec.summary()
    top2 = sg.Spectrum.load(
        spec.save(tmp_path / "t.npz", eigenvectors=2, eigenvector_dtype=np.float32)
    )
    assert top2.eigenvectors.shape == (spec.dim, 2)
    assert sg.Spectrum.load(spec.save(tmp_path / "u.npz", eigenvectors=False)).eigenvectors is None
    (tmp_path / "bad.npz").write_bytes(b"not a spectrum")
    with pytest.raises(ValueError, match=r"bad.npz: not a saved sgdscope spectrum"):
        sg.Spectrum.load(tmp_path / "bad.npz")
