import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import sgdscope as sg
from sgdscope._memory import MemoryBudgetError
from sgdscope.reference.noise import covariance_by_rank_one_updates, per_sample_gradients_loop

from .cases import cross_entropy, image_data, mlp, small_cnn, tabular_data, warm_up_batchnorm

F64 = torch.float64
HYP = settings(
    max_examples=8, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


# ------------------------------------------------------------------ least squares, closed form
def least_squares(n=40, p=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, p, generator=g, dtype=torch.float64)
    y = torch.randn(n, generator=g, dtype=torch.float64)
    model = nn.Linear(p, 1, dtype=torch.float64)

    def loss(out, t):
        return 0.5 * (out.squeeze(-1) - t) ** 2

    return model, loss, X, y


def test_least_squares_per_sample_gradients_and_D_in_closed_form():
    model, loss, X, y = least_squares()
    w, b = model.weight.detach()[0], model.bias.detach()[0]
    r = X @ w + b - y  # residuals; ℓ_k = r_k²/2, ∇_w ℓ_k = r_k x_k, ∇_b ℓ_k = r_k
    G_true = torch.cat([r[:, None] * X, r[:, None]], dim=1)
    Gc = G_true - G_true.mean(0)
    D_true = Gc.T @ Gc / X.shape[0]

    noise = sg.GradientNoise(model, loss, (X, y), chunk_size=7)
    torch.testing.assert_close(noise.per_sample_gradients(), G_true, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(noise.mean_gradient(), G_true.mean(0), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(noise.dense(), D_true, rtol=1e-12, atol=1e-12)
    assert noise.trace() == pytest.approx(float(D_true.trace()), rel=1e-12)
    ev = np.linalg.eigvalsh(D_true.numpy())[::-1]
    spec = noise.spectrum()
    np.testing.assert_allclose(spec.eigenvalues, np.clip(ev, 0, None), rtol=1e-10, atol=1e-14)


def test_correction_one_is_n_over_n_minus_one():
    model, loss, X, y = least_squares(n=20)
    d0 = sg.GradientNoise(model, loss, (X, y)).dense()
    d1 = sg.GradientNoise(model, loss, (X, y), correction=1).dense()
    torch.testing.assert_close(d1, d0 * 20 / 19)


# ----------------------------------------------------------------------- against the references
def test_per_sample_gradients_match_the_batch_size_one_loop():
    X, y = image_data(12)
    model = warm_up_batchnorm(small_cnn(), X)
    noise = sg.GradientNoise(model, cross_entropy(), (X, y), chunk_size=5)
    G = noise.per_sample_gradients()
    assert model.training  # mode restored
    model.eval()
    G_ref = per_sample_gradients_loop(model, cross_entropy(), X, y)
    torch.testing.assert_close(G, G_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        noise.per_sample_gradients([3, 7]), G_ref[[3, 7]], rtol=1e-5, atol=1e-6
    )


def test_dense_matches_the_papers_rank_one_loop():
    X, y = image_data(30)
    model = small_cnn().eval()
    D = sg.GradientNoise(model, cross_entropy(), (X, y)).dense()
    D_ref = covariance_by_rank_one_updates(model, cross_entropy(), X, y)
    # float32 per-sample gradients on both sides: agreement to float32 round-off of D's scale
    torch.testing.assert_close(D, D_ref, rtol=1e-5, atol=1e-6 * D.abs().max().item())


# ------------------------------------------------------------------------------- invariances
@HYP
@given(c=st.floats(min_value=0.1, max_value=10.0), seed=st.integers(0, 10_000))
def test_scaling_the_loss_by_c_scales_D_by_c_squared(c, seed):
    X, y = tabular_data(25, seed=seed, dtype=F64)
    model = mlp(seed, dtype=F64)
    D = sg.GradientNoise(model, cross_entropy(), (X, y)).dense()
    Dc = sg.GradientNoise(model, lambda o, t: c * cross_entropy()(o, t), (X, y)).dense()
    torch.testing.assert_close(Dc, c**2 * D, rtol=1e-10, atol=1e-14)


@HYP
@given(seed=st.integers(0, 10_000), n=st.integers(2, 30))
def test_D_is_positive_semidefinite(seed, n):
    X, y = tabular_data(n, seed=seed, dtype=F64)
    D = sg.GradientNoise(mlp(seed, dtype=F64), cross_entropy(), (X, y)).dense()
    assert torch.linalg.eigvalsh(D).min() >= -1e-12 * max(1.0, D.abs().max().item())
    torch.testing.assert_close(D, D.T)


@HYP
@given(seed=st.integers(0, 10_000), chunk=st.integers(1, 40))
def test_invariant_to_data_order_and_chunk_size(seed, chunk):
    X, y = tabular_data(37, seed=1, dtype=F64)
    perm = torch.randperm(37, generator=torch.Generator().manual_seed(seed))
    model = mlp(dtype=F64)
    D = sg.GradientNoise(model, cross_entropy(), (X, y), chunk_size=37).dense()
    D2 = sg.GradientNoise(model, cross_entropy(), (X[perm], y[perm]), chunk_size=chunk).dense()
    torch.testing.assert_close(D2, D, rtol=1e-10, atol=1e-12)


def test_per_layer_block_equals_block_of_whole_D():
    X, y = image_data(40)
    model = small_cnn().eval()
    full = sg.GradientNoise(model, cross_entropy(), (X, y))
    D = full.dense()
    for name in ["0.weight", "5.bias"]:
        sub = sg.GradientNoise(model, cross_entropy(), (X, y), params=[name])
        torch.testing.assert_close(sub.dense(), full.layout.block(D, name), rtol=1e-10, atol=1e-12)
    # parameters given as tensors or as a dict select the same block
    by_tensor = sg.GradientNoise(model, cross_entropy(), (X, y), params=[model[5].bias])
    by_dict = sg.GradientNoise(model, cross_entropy(), (X, y), params={"5.bias": model[5].bias})
    torch.testing.assert_close(by_tensor.dense(), full.layout.block(D, "5.bias"))
    torch.testing.assert_close(by_dict.dense(), full.layout.block(D, "5.bias"))


def test_dataset_and_dataloader_give_the_same_D_as_tensors():
    X, y = tabular_data(33)
    model = mlp()
    D = sg.GradientNoise(model, cross_entropy(), (X, y)).dense()
    ds = TensorDataset(X, y)
    torch.testing.assert_close(
        sg.GradientNoise(model, cross_entropy(), ds, chunk_size=8).dense(), D
    )
    loader = DataLoader(ds, batch_size=4, shuffle=True)
    torch.testing.assert_close(sg.GradientNoise(model, cross_entropy(), loader).dense(), D)


def test_layernorm_and_attention_models_are_supported():
    torch.manual_seed(0)

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(4, 2, batch_first=True)
            self.norm = nn.LayerNorm(4)
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            h, _ = self.attn(x, x, x, need_weights=False)
            return self.head(self.norm(h + x).mean(1))

    X = torch.randn(10, 3, 4)
    y = torch.randint(0, 2, (10,))
    model = Tiny().eval()
    # nn.MultiheadAttention calls its out_proj without the module: the per-layer engine takes the
    # whole attention module as one unit, with its own batched rule (no vmap, no per-sample loop)
    noise = sg.GradientNoise(model, cross_entropy(), (X, y), chunk_size=4)
    assert noise.backend == "hooks"
    G_ref = per_sample_gradients_loop(model, cross_entropy(), X, y)
    G = noise.per_sample_gradients()
    torch.testing.assert_close(G, G_ref, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------------- bad input
def test_scalar_loss_is_refused():
    X, y = tabular_data(8)
    with pytest.raises(
        ValueError,
        match=r"'loss_fn' .* per-sample losses of shape \(n,\) = \(2,\), got a scalar.*reduction='none'",
    ):
        sg.GradientNoise(mlp(), nn.CrossEntropyLoss(), (X, y))


def test_train_mode_batchnorm_is_refused():
    X, y = image_data(8)
    model = small_cnn().train()
    with pytest.raises(ValueError, match=r"BatchNorm in training mode \(1\).*eval_mode=True"):
        sg.GradientNoise(model, cross_entropy(), (X, y), eval_mode=False)


def test_forward_that_couples_samples_is_refused():
    class Coupled(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(5, 3)

        def forward(self, x):
            return self.lin(x - x.mean(0))

    X, y = tabular_data(8)
    with pytest.raises(ValueError, match="forward that is not per-sample"):
        sg.GradientNoise(Coupled(), cross_entropy(), (X, y))


def test_nan_gradient_names_the_parameter_and_the_sample():
    X, y = tabular_data(20)
    X[13, 2] = float("nan")
    noise = sg.GradientNoise(mlp(), cross_entropy(), (X, y), chunk_size=6)
    with pytest.raises(FloatingPointError, match=r"sample 13 is nan in parameter '0.weight'"):
        noise.dense()


def test_inf_gradient_is_reported():
    X, y = tabular_data(10)
    model = nn.Linear(5, 1)
    X[4] = 1000 * torch.sign(
        model.weight.detach()[0]
    )  # exp(w·x + b) overflows float32 for sample 4 only

    def loss(out, t):
        return torch.exp(out[:, 0])

    noise = sg.GradientNoise(model, loss, (X, y), chunk_size=3)
    with pytest.raises(
        FloatingPointError, match=r"sample 4 is -?inf in parameter 'weight' \(coordinate 0\)"
    ):
        noise.mean_gradient()


def test_dense_over_budget_says_what_it_needs_and_what_to_call():
    X, y = image_data(8)
    noise = sg.GradientNoise(small_cnn().eval(), cross_entropy(), (X, y), memory_budget=100_000)
    with pytest.raises(
        MemoryBudgetError,
        match=r"d = 483: 1\.8 MiB, over the memory budget of 97\.7 KiB.*operator\(\)",
    ):
        noise.dense()


def test_empty_data_set_is_refused():
    with pytest.raises(ValueError, match=r"'data' parameter of GradientNoise holds no samples"):
        sg.GradientNoise(
            mlp(), cross_entropy(), (torch.zeros(0, 5), torch.zeros(0, dtype=torch.long))
        )


def test_unknown_parameter_names_are_refused():
    X, y = tabular_data(8)
    with pytest.raises(ValueError, match=r"names parameters the model does not have: \['nope'\]"):
        sg.GradientNoise(mlp(), cross_entropy(), (X, y), params=["nope"])


def test_mismatched_inputs_and_targets_are_refused():
    with pytest.raises(ValueError, match="same number of samples, got 4 inputs and 3 targets"):
        sg.GradientNoise(
            mlp(), cross_entropy(), (torch.zeros(4, 5), torch.zeros(3, dtype=torch.long))
        )


def test_k_larger_than_the_rank_allows_is_refused():
    X, y = tabular_data(10)
    noise = sg.GradientNoise(mlp(), cross_entropy(), (X, y))
    with pytest.raises(
        ValueError,
        match=r"'k' parameter of GradientNoise.spectrum must be an int in \[1, 9\], got 10.*min\(N − 1, d\) = 9",
    ):
        noise.spectrum(k=10)


def test_unknown_method_lists_the_options():
    X, y = tabular_data(10)
    noise = sg.GradientNoise(mlp(), cross_entropy(), (X, y))
    with pytest.raises(
        ValueError, match=r"'method' .* one of 'auto', 'dense', 'gram', 'randomized', got 'eig'"
    ):
        noise.spectrum(method="eig")


def test_per_sample_gradients_over_budget_and_out_of_range():
    X, y = tabular_data(50)
    noise = sg.GradientNoise(mlp(), cross_entropy(), (X, y), memory_budget=2000, cache=False)
    with pytest.raises(MemoryBudgetError, match=r"at most 8 samples fit"):
        noise.per_sample_gradients()
    with pytest.raises(IndexError, match=r"indices in \[0, 50\), got values in \[0, 50\]"):
        noise.per_sample_gradients([0, 50])


def test_check_finite_false_skips_the_check():
    X, y = tabular_data(20)
    X[13, 2] = float("nan")
    noise = sg.GradientNoise(mlp(), cross_entropy(), (X, y), chunk_size=6, check_finite=False)
    assert torch.isnan(noise.per_sample_gradients([13])).any()


def _bad_constructor_cases():
    from torch.utils.data import IterableDataset

    class Stream(IterableDataset):
        def __iter__(self):
            yield torch.zeros(5), 0

    X, y = tabular_data(8)
    frozen = mlp()
    for p in frozen.parameters():
        p.requires_grad_(False)
    return [
        (
            {"model": "not a module"},
            TypeError,
            r"'model' parameter of GradientNoise must be an nn.Module, got str",
        ),
        (
            {"data": [1, 2, 3]},
            TypeError,
            r"'data' parameter of GradientNoise must be a tuple \(inputs, targets\)",
        ),
        ({"data": DataLoader(Stream())}, TypeError, r"over an IterableDataset"),
        (
            {"dtype": torch.float16},
            ValueError,
            r"'dtype' parameter of GradientNoise must be torch.float32 or torch.float64",
        ),
        (
            {"cache": "yes"},
            ValueError,
            r"'cache' parameter of GradientNoise must be 'auto', True or False, got 'yes'",
        ),
        (
            {"cache": True, "memory_budget": 1000},
            MemoryBudgetError,
            r"'cache' parameter .* over the memory budget",
        ),
        (
            {"params": [torch.zeros(3)]},
            ValueError,
            r"'params' parameter of GradientNoise must hold parameter names or parameters",
        ),
        ({"model": frozen}, ValueError, r"selects no parameters \(none require grad\?\)"),
        (
            {"correction": 2},
            ValueError,
            r"'correction' parameter of GradientNoise must be an int in \[0, 1\], got 2",
        ),
        (
            {"data": (X[:1], y[:1]), "correction": 1},
            ValueError,
            r"holds 1 sample\(s\); D with correction=1 needs at least 2",
        ),
        (
            {"chunk_size": 0},
            ValueError,
            r"'chunk_size' parameter of GradientNoise must be an int in \[1, inf\], got 0",
        ),
    ]


@pytest.mark.parametrize(("override", "error", "match"), _bad_constructor_cases())
def test_bad_constructor_arguments(override, error, match):
    X, y = tabular_data(8)
    kwargs = {"model": mlp(), "loss_fn": cross_entropy(), "data": (X, y), **override}
    with pytest.raises(error, match=match):
        sg.GradientNoise(**kwargs)


def test_operator_and_spectrum_bad_arguments():
    X, y = tabular_data(12)
    noise = sg.GradientNoise(mlp(), cross_entropy(), (X, y))
    with pytest.raises(
        ValueError,
        match=r"'X' parameter of CovarianceOperator must have shape \(d,\) or \(d, k\) with d = 57, got \(5, 2\)",
    ):
        noise.operator() @ torch.zeros(5, 2)
    spec = noise.spectrum()
    with pytest.raises(
        ValueError, match=r"'rtol' parameter of Spectrum.threshold must be a number > 0.*got 0"
    ):
        spec.threshold(0)
    with pytest.raises(
        ValueError,
        match=r"'rtol' parameter of GradientNoise.spectrum must be a real number in \(0, inf\]",
    ):
        noise.spectrum(rtol=-1.0)
    other = sg.GradientNoise(nn.Linear(5, 3), cross_entropy(), (X, y)).spectrum()
    with pytest.raises(
        ValueError,
        match=r"'other' parameter of Spectrum.subspace_overlap must have the same d = 57, got d = 18",
    ):
        spec.subspace_overlap(other, 2)


def test_exact_methods_over_budget_are_refused_before_allocating():
    X, y = image_data(40)
    # The Gram method never holds the N × d gradients (40 × 483 × 4 B = 77 kB here): 60 kB suffice.
    roomy = sg.GradientNoise(small_cnn().eval(), cross_entropy(), (X, y), memory_budget=60_000)
    dense = sg.GradientNoise(small_cnn().eval(), cross_entropy(), (X, y)).spectrum(method="dense")
    np.testing.assert_allclose(
        roomy.spectrum(method="gram").eigenvalues, dense.eigenvalues[:39], rtol=1e-5, atol=1e-9
    )
    noise = sg.GradientNoise(small_cnn().eval(), cross_entropy(), (X, y), memory_budget=40_000)
    with pytest.raises(
        MemoryBudgetError,
        match=r"spectrum\(method='gram'\) with N = 40, d = 483 .*needs .*method='randomized'",
    ):
        noise.spectrum(method="gram")
    with pytest.raises(
        MemoryBudgetError,
        match=r"spectrum\(method='dense'\) with d = 483 needs",
    ):
        noise.spectrum(method="dense")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_D_on_cuda_equals_D_on_cpu():
    X, y = image_data(30)
    model = small_cnn().eval()
    cpu = sg.GradientNoise(model, cross_entropy(), (X, y))
    gpu = sg.GradientNoise(small_cnn().eval().cuda(), cross_entropy(), (X, y), device="cuda")
    D, D_gpu = cpu.dense(), gpu.dense()
    assert D_gpu.is_cuda
    torch.testing.assert_close(D_gpu.cpu(), D, rtol=1e-4, atol=1e-5 * D.abs().max().item())
    a, b = cpu.spectrum(method="gram"), gpu.spectrum(method="gram")
    np.testing.assert_allclose(b.eigenvalues[:10], a.eigenvalues[:10], rtol=1e-4)
    assert b.rank() == a.rank()
