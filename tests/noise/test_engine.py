"""The per-layer engine against the vmap path, closed forms and dense linear algebra."""

import re
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sgdscope as sg
from sgdscope._memory import MemoryBudgetError, PeakTensorMemory
from sgdscope.noise.blocks import EmbeddingFactors, LinearFactors, Materialised, gram_block
from sgdscope.noise.losses import sequence_cross_entropy
from sgdscope.reference.noise import per_sample_gradients_loop

from .cases import cross_entropy, image_data, small_cnn

F64 = torch.float64


# ------------------------------------------------------------------------------ test networks
class ResidualNet(nn.Module):
    """Conv stem, one residual block with in-place ReLU and a strided 1×1 shortcut, pooled head."""

    def __init__(self, dtype=torch.float32):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv1 = nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1, dilation=1)
        self.short = nn.Conv2d(4, 6, 1, stride=2)
        self.head = nn.Linear(6, 3)
        self.to(dtype)

    def forward(self, x):
        h = F.relu(self.bn(self.stem(x)), inplace=True)
        r = self.conv2(F.relu(self.conv1(h), inplace=True))
        return self.head(F.relu(r + self.short(h)).mean((2, 3)))


class Embeddings(nn.Module):
    """Token + position embeddings and a learned offset owned by this (non-leaf) module."""

    def __init__(self, vocab, dim, length):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim, padding_idx=0)
        self.pos = nn.Embedding(length, dim)
        self.offset = nn.Parameter(torch.randn(dim) * 0.1)

    def forward(self, ids):
        t = torch.arange(ids.shape[1], device=ids.device)
        return self.tok(ids) + self.pos(t[None]) + self.offset  # positions shared: (1, T)


class TinyTransformer(nn.Module):
    """Embeddings, one pre-LN attention block with fused SDPA, an MLP, a tied LM head."""

    def __init__(self, vocab=11, dim=8, length=6, dtype=torch.float32):
        super().__init__()
        self.emb = Embeddings(vocab, dim, length)
        self.ln1, self.ln2, self.lnf = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        self.lm_head.weight = self.emb.tok.weight  # tied, as GPT-2
        self.to(dtype)

    def forward(self, ids):
        h = self.emb(ids)
        q, k, v = self.qkv(self.ln1(h)).unflatten(-1, (3, 2, -1)).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        h = h + self.proj(a.transpose(1, 2).flatten(2))
        h = h + self.mlp(self.ln2(h))
        return self.lm_head(self.lnf(h))


class Twice(nn.Module):
    """One Linear called twice per forward: its per-sample gradient is the sum of both uses."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.out = nn.Linear(4, 3)

    def forward(self, x):
        return self.out(torch.tanh(self.lin(torch.tanh(self.lin(x)))))


def token_data(n, vocab=11, length=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (n, length), generator=g)
    ids[: n // 3, -2:] = 0  # some padding
    return ids, ids.clone()


def pair(model, loss, data, **kw):
    """The same D through the per-layer engine and through vmap."""
    hooks = sg.GradientNoise(model, loss, data, backend="hooks", **kw)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="There is a performance drop")
        ref = sg.GradientNoise(model, loss, data, backend="vmap", **kw)
        G = ref.per_sample_gradients()
    return hooks, ref, G


CASES = {
    "cnn+bn": lambda: (small_cnn().eval(), cross_entropy(), image_data(23)),
    "residual": lambda: (
        ResidualNet().eval(),
        cross_entropy(),
        (torch.randn(19, 1, 8, 8), torch.randint(0, 3, (19,))),
    ),
    "transformer": lambda: (TinyTransformer().eval(), sequence_cross_entropy, token_data(17)),
    "linear-twice": lambda: (
        Twice(),
        cross_entropy(),
        (torch.randn(15, 4), torch.randint(0, 3, (15,))),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hooks_reproduce_vmap_per_sample_gradients_products_and_gram(name):
    torch.manual_seed(0)
    model, loss, data = CASES[name]()
    hooks, ref, G = pair(model, loss, data, chunk_size=5)
    assert hooks.backend == "hooks" and ref.backend == "vmap"
    scale = G.abs().max()
    torch.testing.assert_close(hooks.per_sample_gradients(), G, rtol=1e-5, atol=1e-6 * scale)
    G = G.double()
    Gc = G - G.mean(0)
    D = Gc.T @ Gc / G.shape[0]
    X = torch.randn(G.shape[1], 4, dtype=F64, generator=torch.Generator().manual_seed(2))
    dscale = D.abs().max()
    torch.testing.assert_close(hooks.operator() @ X, D @ X, rtol=1e-5, atol=1e-6 * dscale * 4)
    assert hooks.trace() == pytest.approx(float(D.trace()), rel=1e-5)
    spec = hooks.spectrum(method="gram")
    lam = torch.linalg.eigvalsh(D).flip(0).clamp_min(0)[: spec.eigenvalues.size].numpy()
    np.testing.assert_allclose(spec.eigenvalues, lam, rtol=1e-4, atol=1e-6 * lam[0])
    v = torch.from_numpy(spec.eigenvectors[:, 0])
    torch.testing.assert_close(D @ v, spec.eigenvalues[0] * v, rtol=1e-3, atol=1e-5 * lam[0])


def test_float64_transformer_matches_to_round_off():
    """In float64 every path (factored Gram, tied weights, embeddings, generic units) is exact."""
    torch.manual_seed(0)
    model = TinyTransformer(dtype=F64).eval()
    hooks, _, G = pair(model, sequence_cross_entropy, token_data(21), chunk_size=4)
    torch.testing.assert_close(hooks.per_sample_gradients(), G, rtol=1e-10, atol=1e-12)
    Gc = G - G.mean(0)
    K = Gc @ Gc.T / G.shape[0]
    spec = hooks.spectrum(method="gram")
    lam = torch.linalg.eigvalsh(K).flip(0)[: spec.eigenvalues.size].clamp_min(0).numpy()
    np.testing.assert_allclose(spec.eigenvalues, lam, rtol=1e-9, atol=1e-13 * lam[0])


def test_factored_blocks_equal_materialised_ones_on_sequences():
    """Ghost products (a sequence of T positions, with bias) against the materialised rows."""
    g = torch.Generator().manual_seed(0)
    n, m, T, d_in, d_out = 5, 4, 3, 7, 6
    A1, B1 = (
        torch.randn(n, T, d_in, generator=g, dtype=F64),
        torch.randn(n, T, d_out, generator=g, dtype=F64),
    )
    A2, B2 = (
        torch.randn(m, T, d_in, generator=g, dtype=F64),
        torch.randn(m, T, d_out, generator=g, dtype=F64),
    )
    for transposed in (False, True):
        f1 = LinearFactors(A1, B1, d_in, transposed=transposed)
        f2 = LinearFactors(A2, B2, d_in, transposed=transposed)
        G1, G2 = f1.materialise(F64), f2.materialise(F64)
        loop = torch.stack([(B1[i].T @ A1[i]).reshape(-1) for i in range(n)])  # Σ_t b_t a_tᵀ
        if transposed:
            loop = torch.stack([(A1[i].T @ B1[i]).reshape(-1) for i in range(n)])
        torch.testing.assert_close(G1, loop)
        torch.testing.assert_close(f1.self_gram(f2, F64), G1 @ G2.T)
        mean = torch.randn(d_in * d_out, generator=g, dtype=F64)
        assert not f1.factored_gram_cheaper()  # T²(d_in + d_out) = 117 > d_in·d_out = 42
        f1.factored_gram_cheaper = f2.factored_gram_cheaper = lambda: True  # force the ghost path
        rep1 = f1.gram_rep(mean, F64)
        rep2 = f2.gram_rep(mean, F64)
        assert rep1.factors is not None
        torch.testing.assert_close(gram_block(rep1, rep2, F64), (G1 - mean) @ (G2 - mean).T)
        X = torch.randn(d_in * d_out, 3, generator=g, dtype=F64)
        torch.testing.assert_close(f1.project(X), G1 @ X)
        P = torch.randn(n, 3, generator=g, dtype=F64)
        torch.testing.assert_close(f1.backproject(P), G1.T @ P)
        torch.testing.assert_close(f1.sums(F64), G1.sum(0))
        bias = Materialised(B1.sum(1))
        torch.testing.assert_close(bias.G, torch.stack([B1[i].sum(0) for i in range(n)]))


def test_embedding_factors_equal_materialised_ones():
    g = torch.Generator().manual_seed(0)
    V, D, T = 9, 4, 5
    ids1, ids2 = torch.randint(0, V, (3, T), generator=g), torch.randint(0, V, (4, T), generator=g)
    ids1[0, :3] = 2  # repeated tokens within a sequence
    B1, B2 = (
        torch.randn(3, T, D, generator=g, dtype=F64),
        torch.randn(4, T, D, generator=g, dtype=F64),
    )
    e1, e2 = EmbeddingFactors(ids1, B1, V), EmbeddingFactors(ids2, B2, V)
    G1, G2 = e1.materialise(F64), e2.materialise(F64)
    loop = torch.zeros(3, V, D, dtype=F64)
    for i in range(3):
        for t in range(T):
            loop[i, ids1[i, t]] += B1[i, t]
    torch.testing.assert_close(G1, loop.reshape(3, -1))
    torch.testing.assert_close(e1.self_gram(e2, F64), G1 @ G2.T)
    X = torch.randn(V * D, 2, generator=g, dtype=F64)
    torch.testing.assert_close(e1.project(X), G1 @ X)
    P = torch.randn(3, 2, generator=g, dtype=F64)
    torch.testing.assert_close(e1.backproject(P), G1.T @ P)
    s = torch.randn(V * D, generator=g, dtype=F64)
    torch.testing.assert_close(e1.sq_dist(s), ((G1 - s) ** 2).sum(1))
    torch.testing.assert_close(e1.sums(F64), G1.sum(0))


def test_gram_in_several_panels_equals_one_panel():
    X, y = image_data(60)
    model = small_cnn().eval()
    whole = sg.GradientNoise(model, cross_entropy(), (X, y), chunk_size=8, cache=False)
    one = whole.spectrum(method="gram", eigenvectors=3)
    tight = sg.GradientNoise(
        model, cross_entropy(), (X, y), chunk_size=8, cache=False, memory_budget=200_000
    )
    many = tight.spectrum(method="gram", eigenvectors=3)
    assert tight.passes > 2.5  # the panels made several (partial) passes
    np.testing.assert_allclose(many.eigenvalues, one.eigenvalues, rtol=1e-9, atol=1e-14)
    assert abs(np.sum(many.eigenvectors[:, 0] * one.eigenvectors[:, 0])) == pytest.approx(
        1, abs=1e-8
    )


def test_operator_memory_does_not_grow_with_N():
    """Peak tensor memory of one D @ X over N and over 4N samples: the same within 10 %."""
    torch.manual_seed(0)
    model = ResidualNet().eval()

    def peak(n):
        X, y = torch.randn(n, 1, 8, 8), torch.randint(0, 3, (n,))
        noise = sg.GradientNoise(model, cross_entropy(), (X, y), chunk_size=16, cache=False)
        noise.mean_gradient()
        V = torch.randn(noise.dim, 8, dtype=F64)
        with PeakTensorMemory() as mem:
            noise.operator() @ V
        return mem.peak, noise.dim

    (small, d), (large, _) = peak(64), peak(256)
    assert large <= 1.1 * small
    # and it is far below the N × d gradients the old path kept (N = 256)
    assert large < 256 * d * 4


def test_noise_scale_against_least_squares_closed_form():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(50, 3, generator=g, dtype=F64)
    y = torch.randn(50, generator=g, dtype=F64)
    model = nn.Linear(3, 1, dtype=F64)
    w, b = model.weight.detach()[0], model.bias.detach()[0]
    r = X @ w + b - y
    G = torch.cat([r[:, None] * X, r[:, None]], 1)  # ∇ of r²/2
    gbar = G.mean(0)
    trD = ((G - gbar) ** 2).sum() / 50
    noise = sg.GradientNoise(model, lambda o, t: 0.5 * (o[:, 0] - t) ** 2, (X, y), chunk_size=7)
    assert noise.trace() == pytest.approx(float(trD), rel=1e-12)
    assert noise.noise_scale() == pytest.approx(float(trD / (gbar @ gbar)), rel=1e-12)


def test_unconverged_eigensolver_raises_or_is_flagged():
    X, y = image_data(40)
    noise = sg.GradientNoise(small_cnn().eval(), cross_entropy(), (X, y))
    with pytest.raises(sg.ConvergenceError, match=r"did not converge in 2 passes.*max_iter"):
        noise.spectrum(k=5, method="randomized", max_iter=2, tol=1e-12)
    spec = noise.spectrum(k=5, method="randomized", max_iter=2, tol=1e-12, throw=False)
    assert not spec.converged and spec.iterations == 2


def test_mixed_precision_within_the_noise_floor():
    X, y = image_data(80)
    noise = sg.GradientNoise(ResidualNet().eval(), cross_entropy(), (X, y), chunk_size=16)
    exact = noise.spectrum(method="gram", eigenvectors=False)
    mixed = noise.spectrum(method="gram", eigenvectors=False, precision="mixed")
    assert mixed.precision == "mixed"
    assert np.max(np.abs(mixed.eigenvalues - exact.eigenvalues)) <= exact.noise_floor
    assert mixed.rank() == exact.rank()


def test_a_float32_probe_block_is_multiplied_in_float32_without_a_float64_copy():
    """float32 X: the result is float32, equal to dense D X within float32 round-off, and the
    product never holds a float64 d × k block (neither the input cast nor the result)."""
    torch.manual_seed(0)
    X, y = image_data(40)
    noise = sg.GradientNoise(ResidualNet().eval(), cross_entropy(), (X, y), chunk_size=16)
    G = noise.per_sample_gradients().double()
    Gc = G - G.mean(0)
    D = Gc.T @ Gc / G.shape[0]
    d, k = G.shape[1], 1024  # wide enough that d × k blocks dominate the peak
    P = torch.randn(d, k, generator=torch.Generator().manual_seed(1))
    op = noise.operator(precision="mixed")
    with PeakTensorMemory() as mem:
        Y = op @ P
    assert Y.dtype == torch.float32 and Y.shape == (d, k)
    ref = D @ P.double()
    err = (Y.double() - ref).abs().max() / ref.abs().max()
    assert err < 1e-5  # float32 products, float64 accumulation of P
    # X and the result, float32: 8 bytes per entry (a float64 cast of X or result: ≥ 16)
    assert mem.peak < d * k * 10
    Y64 = noise.operator() @ P.double()
    assert Y64.dtype == torch.float64
    torch.testing.assert_close(Y64, ref, rtol=1e-10, atol=1e-12 * float(ref.abs().max()))


def test_mixed_precision_eigenvectors_are_float32_and_match_float64():
    torch.manual_seed(0)
    X, y = image_data(60)
    noise = sg.GradientNoise(ResidualNet().eval(), cross_entropy(), (X, y), chunk_size=16)
    exact = noise.spectrum(method="gram", eigenvectors=4)
    mixed = noise.spectrum(method="gram", eigenvectors=4, precision="mixed")
    assert exact.eigenvectors.dtype == np.float64 and mixed.eigenvectors.dtype == np.float32
    lam = exact.eigenvalues
    assert (lam[3] - lam[4]) / lam[0] > 1e-3  # the top-4 subspace is well separated
    # the subspaces agree: all principal angles ≈ 0 (robust to near-equal λ inside the top 4)
    cosines = np.linalg.svd(exact.eigenvectors.T @ mixed.eigenvectors.astype(np.float64))[1]
    np.testing.assert_allclose(cosines, 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(mixed.eigenvectors, axis=0), 1.0, atol=1e-5)


def test_default_threshold_is_the_noise_floor_and_the_paper_warns_at_scale():
    X, y = image_data(40)
    spec = sg.GradientNoise(small_cnn().eval(), cross_entropy(), (X, y)).spectrum()
    assert spec.threshold() == spec.noise_floor > 0
    assert spec.threshold("paper") == pytest.approx(spec.lambda_max * spec.dim * 2**-23)
    big = sg.Spectrum(
        eigenvalues=np.array([2.0, 1.0, 1e-3]), eigenvectors=None, dim=11_000_000, n_samples=4,
        trace=3.001, complete=True, method="gram", noise_floor=1e-6,
    )  # fmt: skip
    assert big.rank() == 3
    with pytest.warns(UserWarning, match="rank is 0 by construction"):
        assert big.rank("paper") == 0


def test_dict_batches_and_their_errors():
    torch.manual_seed(0)

    class KW(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 3)

        def forward(self, features, scale):
            return {"logits": self.lin(features) * scale[:, None]}

    feats, scale, labels = torch.randn(12, 4), torch.rand(12) + 0.5, torch.randint(0, 3, (12,))

    def loss(out, t):
        return F.cross_entropy(out["logits"], t, reduction="none")

    batch = {"features": feats, "scale": scale, "labels": labels}
    model = KW()
    a = sg.GradientNoise(model, loss, batch)
    b = sg.GradientNoise(model, loss, ({"features": feats, "scale": scale}, labels), backend="vmap")
    torch.testing.assert_close(a.dense(), b.dense())
    with pytest.raises(ValueError, match=r"dict without a 'labels' entry .*labels=input_ids"):
        sg.GradientNoise(KW(), loss, {"features": feats, "scale": scale})


def test_group_spectra_are_the_spectra_of_the_diagonal_blocks_of_D():
    X, y = image_data(30)
    model = ResidualNet(dtype=F64).eval()
    noise = sg.GradientNoise(model, cross_entropy(), (X.double(), y), chunk_size=7)
    D = noise.dense()
    specs = noise.group_spectra("layer", eigenvectors=2)
    assert set(specs) == {"stem", "bn", "conv1", "conv2", "short", "head"}
    for spec in specs.values():
        idx = torch.cat(
            [torch.arange(noise.dim)[noise.layout.slice(p)] for p in spec.info["params"]]
        )
        block = D[idx][:, idx]
        lam = torch.linalg.eigvalsh(block).flip(0).clamp_min(0)[: spec.eigenvalues.size].numpy()
        np.testing.assert_allclose(spec.eigenvalues, lam, rtol=1e-9, atol=1e-12 * lam[0])
        assert spec.dim == block.shape[0] and spec.trace == pytest.approx(float(block.trace()))
        v = torch.from_numpy(spec.eigenvectors[:, 0])
        torch.testing.assert_close(block @ v, spec.eigenvalues[0] * v, rtol=1e-8, atol=1e-12)
    custom = noise.group_spectra({"convs": ["conv*.weight", "short.*"], "all": ["*"]}, k=3)
    assert custom["all"].eigenvalues == pytest.approx(noise.spectrum(k=3).eigenvalues, rel=1e-9)
    with pytest.raises(ValueError, match=r"group 'none' \(\['zzz\*'\]\) matches none"):
        noise.group_spectra({"none": ["zzz*"]})


def test_slq_quadrature_is_exact_for_low_degree_moments_and_estimates_the_density():
    """Gauss quadrature: Σ τ θ^j = vᵀ D^j v / vᵀv for j ≤ 2m − 1, probe by probe (full reorth)."""
    from sgdscope.noise.density import rademacher_probes

    X, y = image_data(90)
    noise = sg.GradientNoise(small_cnn().eval(), cross_entropy(), (X, y))
    D = noise.dense()
    m, nv = 6, 5
    dens = noise.spectral_density(n_probes=nv, steps=m, seed=3, reorthogonalize=True)
    V = rademacher_probes(noise.dim, nv, torch.Generator().manual_seed(3))
    Dj = torch.eye(noise.dim, dtype=F64)
    for j in range(1, 2 * m):
        Dj = Dj @ D
        exact = ((V * (Dj @ V)).sum(0) / (V * V).sum(0)).numpy()
        quad = (dens.weights * dens.nodes**j).sum(1)
        np.testing.assert_allclose(quad, exact, rtol=1e-6)
    np.testing.assert_allclose(dens.weights.sum(1), 1.0, rtol=1e-12)
    # with many steps the quadrature resolves the rank: D has 89 non-zero eigenvalues of 483
    full = noise.spectral_density(n_probes=30, steps=120, seed=0)
    lam = torch.linalg.eigvalsh(D).numpy()
    thr = 1e-6 * lam.max()
    assert full.count_above(thr) == pytest.approx((lam > thr).sum(), rel=0.25)
    assert full.moment(1) * noise.dim == pytest.approx(noise.trace(), rel=0.1)
    grid = np.logspace(-6, 1, 200)
    assert np.all(full.density(grid) >= 0)


def test_activation_checkpointing_works_with_hooks_and_vmap_says_why_not():
    from torch.utils.checkpoint import checkpoint

    class Checkpointed(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh())
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            return self.head(checkpoint(self.body, x, use_reentrant=False))

    torch.manual_seed(0)
    X, y = torch.randn(20, 5), torch.randint(0, 3, (20,))
    model = Checkpointed()
    noise = sg.GradientNoise(model, cross_entropy(), (X, y), chunk_size=6)
    assert noise.backend == "hooks"
    G = per_sample_gradients_loop(model, cross_entropy(), X, y)
    torch.testing.assert_close(noise.per_sample_gradients(), G, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"activation checkpointing .* backend='hooks'"):
        sg.GradientNoise(model, cross_entropy(), (X, y), backend="vmap").dense()


def test_a_never_updated_train_mode_batchnorm_is_said_not_silently_switched():
    X, y = image_data(10)
    model = small_cnn().train()  # fresh: running statistics never updated
    with pytest.warns(
        UserWarning,
        match=r"BatchNorm 1 is in training mode and its running statistics were never updated",
    ):
        sg.GradientNoise(model, cross_entropy(), (X, y))


def test_block_krylov_needs_fewer_passes_than_subspace_iteration():
    from sgdscope.noise.eigensolvers import block_krylov, subspace_iteration

    X, y = image_data(120)
    D = sg.GradientNoise(small_cnn().eval(), cross_entropy(), (X, y)).dense()
    lam = torch.linalg.eigvalsh(D).flip(0).numpy()
    for k, tol in [(5, 1e-9), (15, 1e-9), (40, 1e-9)]:
        kry = block_krylov(
            lambda V: D @ V, D.shape[0], k, tol=tol, generator=torch.Generator().manual_seed(0)
        )
        sub = subspace_iteration(
            lambda V: D @ V, D.shape[0], k, tol=tol, generator=torch.Generator().manual_seed(0)
        )
        assert kry.converged and sub.converged
        np.testing.assert_allclose(kry.values, lam[:k], rtol=1e-8, atol=1e-12 * lam[0])
        assert np.all(np.abs(kry.values - lam[:k]) <= kry.residuals + 1e-13 * lam[0])
        assert kry.iterations < sub.iterations


def test_auto_beyond_the_small_sizes_compares_measured_costs(monkeypatch):
    import sgdscope.noise._spectrum_methods as methods

    X, y = image_data(120)
    noise = sg.GradientNoise(small_cnn().eval(), cross_entropy(), (X, y))
    monkeypatch.setattr(methods, "EXACT_MAX", 50)  # as if N = 120 were large
    spec = noise.spectrum(k=5)
    assert spec.method in ("gram", "randomized")
    assert (
        "estimated cheaper" in spec.reason
        and "one pass" in spec.reason
        and "measured" in spec.reason
    )
    monkeypatch.setattr(methods, "RANDOMIZED_PASSES", 10**6)  # randomized hopeless: Gram
    assert noise.spectrum(k=5).method == "gram"
    monkeypatch.setattr(methods, "RANDOMIZED_PASSES", 0)  # randomized free: randomized
    assert noise.spectrum(k=5).method == "randomized"


def test_torch_transformer_encoder_with_padding_mask_stays_batched():
    """nn.TransformerEncoder (MultiheadAttention inside, key padding mask): the MHA rule, no vmap."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(20, 8)
            self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            self.head = nn.Linear(8, 3)

        def forward(self, ids, mask):
            return self.head(self.enc(self.emb(ids), src_key_padding_mask=mask).mean(1))

    model = Encoder().eval()
    ids = torch.randint(0, 20, (9, 5), generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(9, 5, dtype=torch.bool)
    mask[:3, -2:] = True
    y = torch.randint(0, 3, (9,), generator=torch.Generator().manual_seed(2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no vmap fallback warning: attention stays batched
        noise = sg.GradientNoise(model, cross_entropy(), ((ids, mask), y), chunk_size=4)
        G_hooks = noise.per_sample_gradients()
    assert noise.backend == "hooks"
    G = per_sample_gradients_loop(model, cross_entropy(), (ids, mask), y)
    torch.testing.assert_close(G_hooks, G, rtol=1e-4, atol=1e-6 * G.abs().max())


def test_a_module_without_a_rule_whose_kernel_vmap_loops_over_is_named_once():
    class OwnAttention(nn.Module):  # its own parameter, used directly: the generic vmap path
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(4, 4) * 0.3)

        def forward(self, x):
            q = (x @ self.w).unsqueeze(1)  # (batch, heads, length, dim): the fused CPU kernel
            return F.scaled_dot_product_attention(q, q, q).mean((1, 2))

    model = nn.Sequential(OwnAttention(), nn.Linear(4, 2))
    X, y = torch.randn(8, 3, 4), torch.randint(0, 2, (8,))
    with pytest.warns(UserWarning, match=r"module '0' \(OwnAttention\) has no per-layer rule"):
        noise = sg.GradientNoise(model, cross_entropy(), (X, y), chunk_size=4)
    G = per_sample_gradients_loop(model, cross_entropy(), X, y)
    torch.testing.assert_close(noise.per_sample_gradients(), G, rtol=1e-5, atol=1e-6)


def test_a_product_over_the_budget_is_refused_before_it_starts():
    X, y = image_data(20)
    noise = sg.GradientNoise(small_cnn().eval(), cross_entropy(), (X, y), memory_budget=200_000)
    with pytest.raises(
        sg.noise.gradient_noise.MemoryBudgetError, match=r"D @ X with X of shape \(483, 64\)"
    ):
        noise.operator() @ torch.zeros(483, 64, dtype=F64)
    assert noise.passes == 0  # refused before any pass over the data


def test_gram_eigenvectors_stay_in_the_budget_and_do_not_shrink_the_panels():
    """The d × r eigenvectors are allocated after K is complete: they share the budget with K,
    not with the panels (one more pass, not more panels), and the back-projection adds into
    them in place (no d_p × r temporary per parameter)."""
    X, y = image_data(48)
    model = small_cnn().eval()
    budget = 260_000  # the 32 float64 eigenvectors (124 kB) take half of it
    runs = {}
    for vectors in (False, 32):
        noise = sg.GradientNoise(
            model, cross_entropy(), (X, y), chunk_size=8, cache=False, memory_budget=budget
        )
        noise.mean_gradient()
        before = noise.passes
        with PeakTensorMemory() as mem:
            spec = noise.spectrum(method="gram", eigenvectors=vectors)
        runs[vectors] = (noise.passes - before, mem.peak, spec)
    assert runs[32][0] == pytest.approx(runs[False][0] + 1)  # the eigenvector pass only
    assert runs[32][1] <= budget
    np.testing.assert_allclose(runs[32][2].eigenvalues, runs[False][2].eigenvalues, rtol=1e-12)


class TinyLM(nn.Module):
    """Token embedding → tanh → a vocabulary-wide head: a chunk's logits and the head's rows
    dominate its working memory, as in a language model."""

    def __init__(self, vocab: int = 2048, width: int = 32) -> None:
        super().__init__()
        self.emb, self.act, self.head = (
            nn.Embedding(vocab, width),
            nn.Tanh(),
            nn.Linear(width, vocab),
        )

    def forward(self, ids):
        return self.head(self.act(self.emb(ids)))


@pytest.mark.parametrize("budget", [12_000_000, 20_000_000])
def test_every_pass_stays_in_the_budget_when_chunks_dominate(budget):
    """The moments pass, a product and the Gram spectrum with panels and eigenvectors keep one
    chunk's working memory at a time: a chunk is dropped before the next one is computed (the
    loop variable once kept it alive, and the Gram's peak went 10-20 % over the budget here and
    on a 36M-parameter GPT-2). The spectrum equals the one computed without a budget."""
    torch.manual_seed(0)
    model = TinyLM().eval()
    ids = torch.randint(0, 2048, (48, 16), generator=torch.Generator().manual_seed(0))
    ref = sg.GradientNoise(model, sequence_cross_entropy, (ids, ids), cache=False)
    ref = ref.spectrum(method="gram", eigenvectors=False)
    noise = sg.GradientNoise(
        model, sequence_cross_entropy, (ids, ids), cache=False, memory_budget=budget
    )
    assert noise.chunk_size >= 2  # one sample's working memory is the floor of any chunk rule
    with PeakTensorMemory() as mem:
        noise.trace()
    assert mem.peak <= budget
    with PeakTensorMemory() as mem:
        noise.operator(precision="mixed") @ torch.randn(noise.dim, 8)
    assert mem.peak <= budget
    before = noise.passes
    with PeakTensorMemory() as mem:
        spec = noise.spectrum(method="gram", eigenvectors=4)
    assert noise.passes - before > 2.5  # several panels
    assert mem.peak <= budget
    np.testing.assert_allclose(spec.eigenvalues, ref.eigenvalues, rtol=1e-9, atol=1e-14)


def test_a_gram_spectrum_over_the_budget_says_how_many_eigenvectors_fit():
    X, y = image_data(48)
    noise = sg.GradientNoise(small_cnn().eval(), cross_entropy(), (X, y), memory_budget=200_000)
    with pytest.raises(MemoryBudgetError, match=r"at most eigenvectors=\d+ \(of the 40") as err:
        noise.spectrum(method="gram", eigenvectors=40)
    fit = int(re.search(r"eigenvectors=(\d+) \(of", str(err.value)).group(1))
    noise.spectrum(method="gram", eigenvectors=fit)  # the advice holds
    with pytest.raises(MemoryBudgetError, match=f"at most eigenvectors={fit} "):
        noise.spectrum(method="gram", eigenvectors=fit + 1)


def test_a_product_takes_chunks_whose_rows_all_stay_and_gives_the_same_D_X():
    """Rows that do not fit the keep budget would be formed twice, so a product shrinks its
    chunks until a chunk's rows fit a quarter of the budget (at least 8 samples)."""
    X, y = image_data(48)
    model = small_cnn().eval()
    ref = sg.GradientNoise(model, cross_entropy(), (X, y))
    G = ref.per_sample_gradients().double()
    Gc = G - G.mean(0)
    V = torch.randn(G.shape[1], 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    expected = Gc.T @ (Gc @ V) / 48
    d = G.shape[1]
    for rows, chunk in ((12, 12), (3, 8), (100, 48)):  # rows that fit → chunk of the product
        noise = sg.GradientNoise(
            model, cross_entropy(), (X, y), chunk_size=48, cache=False,
            memory_budget=4 * rows * d * 8 + 3,
        )  # fmt: skip
        op = noise.operator()
        assert op.product_chunk_size() == chunk
        torch.testing.assert_close(op @ V, expected, rtol=1e-10, atol=1e-13)


def test_the_rows_a_product_keeps_are_noted_from_the_chunks_already_computed():
    """A factored embedding's rows are not kept (gather / scatter is cheaper); the stream notes
    that from its first chunk, so sizing a product's chunks costs no extra pass."""
    model = TinyLM().eval()
    ids = torch.randint(0, 2048, (24, 16), generator=torch.Generator().manual_seed(0))
    noise = sg.GradientNoise(model, sequence_cross_entropy, (ids, ids), cache=False)
    noise.trace()
    passes = noise.passes
    assert noise.operator().stream.rows_kept_per_sample() == noise.dim - model.emb.weight.numel()
    noise.operator() @ torch.randn(noise.dim, 2, dtype=F64)
    assert noise.passes == pytest.approx(passes + 1)  # the product's pass only


def test_gram_shrinks_its_chunks_when_one_chunk_of_pieces_would_not_fit():
    X, y = image_data(48)
    model = small_cnn().eval()
    ref = sg.GradientNoise(model, cross_entropy(), (X, y), cache=False).spectrum(method="gram")
    # one chunk of all 48 samples, but a budget that holds the Gram pieces of only a few
    tight = sg.GradientNoise(
        model, cross_entropy(), (X, y), chunk_size=48, cache=False, memory_budget=160_000
    )
    spec = tight.spectrum(method="gram", eigenvectors=2)
    np.testing.assert_allclose(spec.eigenvalues, ref.eigenvalues, rtol=1e-9, atol=1e-14)
