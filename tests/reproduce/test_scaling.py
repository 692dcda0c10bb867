"""Tests of ``reproduce scaling`` (Remarks 11 and 12): end to end on a tiny setting, and oracles.

The sampler oracle: on least squares the per-sample gradients are g_k = x_k (x_kᵀw − y_k), so
tr D = (1/N) Σ ‖g_k − g‖² is known in closed form, and App. A gives the variance of the
mini-batch gradient: tr D / b with replacement, tr D / b · (N − b)/(N − 1) without, and for a
sum of w successive batches of one epoch w tr D / b · (N − wb)/(N − 1) (zero over an epoch).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sgdscope.paper.training import TrainConfig
from sgdscope.report.results import ExperimentResult, Verdict
from sgdscope.reproduce.context import RunContext
from sgdscope.reproduce.scaling import NAME, Settings, batch_noise, run, scaled_lr

TINY = dict(
    batch_sizes=(16, 64),
    epochs=1,
    n_train=256,
    n_test=100,
    replacement_n=128,
    replacement_batches=(8, 32),
    replacement_steps=8,
    noise_samples=32,
    projections=16,
    noise_epochs=20,
)


def _least_squares(n: int = 64, p: int = 20, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p))
    y = x @ rng.standard_normal(p) + 0.5 * rng.standard_normal(n)
    w = rng.standard_normal(p)  # any point: D(x) is defined everywhere
    r = x @ w - y
    grads = x * r[:, None]
    g = grads.mean(0)
    trace_d = float(np.mean(r**2 * (x**2).sum(1)) - g @ g)  # (1/N) Σ ‖g_k‖² − ‖g‖²
    return torch.from_numpy(grads), trace_d


@pytest.mark.parametrize("window", [1, 2, 4])
@pytest.mark.parametrize("sampling", ["with", "without"])
def test_batch_noise_matches_app_a_closed_forms(sampling, window):
    grads, trace_d = _least_squares()
    n, b = grads.shape[0], 8
    config = TrainConfig(batch_size=b, sampling=sampling, seed=3)
    measured = batch_noise(grads, config, epochs=1500, window=window)
    factor = 1.0 if sampling == "with" else (n - window * b) / (n - 1)
    expected = window * trace_d / b * factor
    assert measured == pytest.approx(expected, rel=0.05)


def test_batch_noise_without_replacement_vanishes_over_an_epoch():
    grads, trace_d = _least_squares()
    config = TrainConfig(batch_size=16, sampling="without", seed=1)
    assert batch_noise(grads, config, epochs=50, window=4) < 1e-20 * trace_d
    with_r = batch_noise(grads, TrainConfig(batch_size=16, sampling="with", seed=1), 1500, 4)
    assert with_r == pytest.approx(4 * trace_d / 16, rel=0.05)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(window=0), r"'window' parameter of batch_noise must be an int in \[1, 8\], got 0"),
        (dict(window=9), r"'window' parameter of batch_noise must be an int in \[1, 8\], got 9"),
        (dict(epochs=0), r"'epochs' parameter of batch_noise must be an int in \[1, inf\]"),
    ],
)
def test_batch_noise_rejects_bad_arguments(kwargs, match):
    grads, _ = _least_squares()
    args = dict(epochs=1, window=1) | kwargs
    with pytest.raises(ValueError, match=match):
        batch_noise(grads, TrainConfig(batch_size=8), **args)


def test_scaled_lr_is_linear_then_capped():
    s = Settings()
    assert [scaled_lr(b, s) for b in (32, 128, 512)] == pytest.approx([0.025, 0.1, 0.4])
    assert scaled_lr(4096, s) == 1.0  # train_dual_batch.py: min(lr·b/128, 1)


def test_quick_and_full_settings():
    quick, full = Settings.quick(), Settings.full()
    assert quick.is_reduced and not full.is_reduced
    assert full.batch_sizes == (32, 64, 128, 256, 512)
    assert "b ∈ {32, 128, 512}" in quick.describe_reduction()


W = "sgdscope.reproduce.scaling.Settings"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(batch_sizes=(0, 8)), rf"'batch_sizes' parameter of {W} must be an int in \[1, inf\]"),
        (dict(batch_sizes=(8,)), "must hold at least two distinct sizes, got"),
        (dict(batch_sizes=(8, 8)), "must hold at least two distinct sizes, got"),
        (dict(epochs=0), "'epochs' parameter"),
        (dict(n_train=5), r"'n_train' parameter .* got 5. None uses all."),
        (dict(n_test=5), r"'n_test' parameter .* got 5. None uses all."),
        (dict(n_train=100, batch_sizes=(8, 128)), "must not exceed n_train = 100, got 128"),
        (dict(base_lr=0.0), "'base_lr' parameter"),
        (dict(base_batch=0), "'base_batch' parameter"),
        (dict(lr_cap=-1.0), "'lr_cap' parameter"),
        (dict(replacement_n=5), "'replacement_n' parameter"),
        (dict(replacement_batches=(8, 8192)), r"'replacement_batches' .* \[1, 4096\], got 8192"),
        (dict(replacement_batches=(64,)), r"must be \(small b, large b\)"),
        (dict(replacement_batches=(1024, 64)), r"e.g. \(64, 1024\)"),
        (dict(replacement_steps=0), "'replacement_steps' parameter"),
        (dict(steady_fraction=0.0), "'steady_fraction' parameter"),
        (dict(noise_samples=-1), "'noise_samples' parameter"),
        (dict(projections=0), "'projections' parameter"),
        (dict(noise_epochs=0), "'noise_epochs' parameter"),
        (dict(scale="bytes"), "'scale' parameter .* must be one of 'unit', 'raw'"),
    ],
)
def test_settings_reject_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Settings(**kwargs)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("out")
    ctx = RunContext(out=out, quick=True, progress=False)
    return ctx, run(ctx, Settings(**TINY))


def test_tiny_run_end_to_end(tiny_run):
    ctx, _ = tiny_run
    folder = ctx.out / NAME
    saved = ExperimentResult.load(folder / "result.json")
    assert saved.name == NAME and saved.reduced and saved.reduced_note
    assert [c.key for c in saved.comparisons] == [
        "remark11.fixed_ratio_spread",
        "remark12.with_vs_without",
        "remark12.noise_factor",
    ]
    assert all(isinstance(c.verdict, Verdict) and c.note for c in saved.comparisons)
    for fig in saved.figures:
        assert (folder / fig.path).stat().st_size > 10_000
    r11 = saved.numbers["remark11"]
    assert [r["batch_size"] for r in r11["fixed_ratio"]] == [16, 64]
    assert [r["lr"] for r in r11["fixed_ratio"]] == pytest.approx([0.0125, 0.05])
    assert [r["lr"] for r in r11["fixed_lr"]] == [0.1, 0.1]
    for r in r11["fixed_ratio"] + r11["fixed_lr"]:
        assert 0 <= r["test_error"] <= 1 and r["trace_d"] > 0
        assert r["gap_loss"] == pytest.approx(r["test_loss"] - r["train_loss"])
        assert r["temperature"] == pytest.approx(r["lr"] / (2 * r["batch_size"]))
    runs = saved.numbers["remark12"]["runs"]
    assert set(runs) == {"8", "32"} and set(runs["32"]) == {"with", "without"}
    assert runs["32"]["with"]["steps"] == runs["32"]["without"]["steps"] >= 8
    sampler = saved.numbers["remark12"]["sampler"]
    assert sampler["ratio_one_epoch"] < 1e-12  # one epoch of batches partitions the data
    assert sampler["exact_one_batch"] == pytest.approx(96 / 127)
    json.dumps(saved.to_dict())  # JSON-ready, no NaN surprises
    assert "NaN" not in (folder / "result.json").read_text()


def test_rerun_resumes_from_checkpoints(tiny_run):
    ctx, first = tiny_run
    again = run(ctx, Settings(**TINY))
    runs = again.numbers["remark11"]["fixed_ratio"]
    assert all(r["resumed_from"] == r["epochs"] for r in runs)  # nothing retrained
    before = first.numbers["remark11"]["fixed_ratio"]
    assert [r["test_error"] for r in runs] == [r["test_error"] for r in before]
    assert [r["curve"] for r in runs] == [r["curve"] for r in before]
