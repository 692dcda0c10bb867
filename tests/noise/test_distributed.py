"""Distributed measurement on gloo processes equals one process on the concatenated data.

Each test spawns 2 or 3 CPU processes (one thread each) that join a gloo group; every rank gets
an uneven, contiguous shard. Models are float64, so that per-sample gradients do not depend on
how the samples are batched (float32 batched kernels round differently per batch). The oracle is the single-process result on all the data, computed
in the test process: every statistic must agree to float64 round-off, and every rank must hold
bit-identical results.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

import sgdscope as sg
from sgdscope.noise.distributed import Reducer, shard, shard_bounds

from .cases import cross_entropy, image_data, small_cnn
from .ranks import run_ranks

COUNTS = [7, 12, 5]  # uneven shards of N = 24
RTOL = 1e-10


def _bounds(counts):
    starts = np.cumsum([0, *counts])
    return list(itertools.pairwise(starts))


def _aligned(V, ref):
    """Eigenvectors up to sign: flip each column of V onto ref's."""
    signs = np.sign(np.sum(V * ref, axis=0))
    return V * np.where(signs == 0, 1, signs)


def _statistics(noise, X):
    """Everything global that the issue lists, as numpy arrays (picklable)."""
    out = {
        "mean": noise.mean_gradient().numpy(),
        "trace": noise.trace(),
        "noise_scale": noise.noise_scale(),
        "product": noise.operator().matmat(X).numpy(),
        "dense": noise.dense().numpy(),
        "n_samples": noise.n_samples,
    }
    spec = noise.spectrum(method="dense")
    out["dense_values"] = spec.eigenvalues
    gram = noise.spectrum(method="gram", eigenvectors=3)
    out["gram_values"], out["gram_vectors"] = gram.eigenvalues, gram.eigenvectors
    rand = noise.spectrum(k=4, method="randomized", seed=0, tol=1e-10)
    out["rand_values"], out["rand_vectors"] = rand.eigenvalues, rand.eigenvectors
    groups = noise.group_spectra("layer", eigenvectors=2)
    out["groups"] = {g: (s.eigenvalues, s.eigenvectors, s.trace) for g, s in groups.items()}
    dens = noise.spectral_density(n_probes=3, steps=6, seed=1)
    out["density"] = (dens.nodes, dens.weights)
    return out


def _conv_worker(rank, world, counts, chunk_size, budget):
    x, y = image_data(sum(counts))
    x = x.double()
    a, b = _bounds(counts)[rank]
    shard_data = (x[a:b], y[a:b])
    noise = sg.GradientNoise(
        small_cnn().double().eval(), cross_entropy(), shard_data, chunk_size=chunk_size, cache=False
    )
    X = torch.randn(noise.dim, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    out = _statistics(noise, X)
    if budget is not None:  # the Gram matrices in several panel rounds
        out["small"] = _gram_only(
            sg.GradientNoise(
                small_cnn().double().eval(), cross_entropy(), shard_data, memory_budget=budget
            )
        )
    return out


def _gram_only(noise):
    spec = noise.spectrum(method="gram", eigenvectors=2)
    groups = noise.group_spectra("layer")
    return spec.eigenvalues, spec.eigenvectors, {g: s.eigenvalues for g, s in groups.items()}


def _reference(model, loss, data, **kwargs):
    noise = sg.GradientNoise(model, loss, data, **kwargs)
    X = torch.randn(noise.dim, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    return _statistics(noise, X)


def _compare(got, ref, rtol=RTOL):
    scale = abs(ref["dense_values"][0])
    assert got["n_samples"] == ref["n_samples"]
    np.testing.assert_allclose(
        got["mean"], ref["mean"], rtol=rtol, atol=rtol * abs(ref["mean"]).max()
    )
    assert got["trace"] == pytest.approx(ref["trace"], rel=rtol)
    assert got["noise_scale"] == pytest.approx(ref["noise_scale"], rel=rtol)
    for key in ("product", "dense"):
        np.testing.assert_allclose(got[key], ref[key], rtol=0, atol=rtol * abs(ref[key]).max())
    for key in ("dense_values", "gram_values", "rand_values"):
        np.testing.assert_allclose(got[key], ref[key], rtol=0, atol=rtol * scale)
    for key in ("gram_vectors", "rand_vectors"):
        np.testing.assert_allclose(_aligned(got[key], ref[key]), ref[key], rtol=0, atol=1e-7)
    assert got["groups"].keys() == ref["groups"].keys()
    for g, (values, vectors, trace) in ref["groups"].items():
        v, V, t = got["groups"][g]
        np.testing.assert_allclose(v, values, rtol=0, atol=rtol * values[0])
        np.testing.assert_allclose(_aligned(V, vectors), vectors, rtol=0, atol=1e-7)
        assert t == pytest.approx(trace, rel=rtol)
    for a, b in zip(got["density"], ref["density"], strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-9 * max(abs(b).max(), 1))


def _identical(results):
    """Every rank's result is bit-for-bit rank 0's."""
    first = results[0]

    def same(a, b):
        if isinstance(a, dict):
            return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
        if isinstance(a, tuple | list):
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
        if isinstance(a, np.ndarray):
            return np.array_equal(a, b)
        return a == b

    return all(same(first, r) for r in results[1:])


def _values(results):
    bad = [r for r in results if r[0] != "ok"]
    assert not bad, bad[0][-1] if len(bad[0]) > 3 else bad
    return [r[1] for r in results]


@pytest.mark.parametrize(
    ("counts", "chunk_size", "budget"),
    [
        (COUNTS, 4, None),  # 3 uneven shards, several chunks each, one Gram panel
        ([9, 15], None, 120_000),  # 2 shards, Gram panels of 5 samples: 3 rounds per shard
    ],
)
def test_conv_net_every_statistic_equals_one_process(tmp_path, counts, chunk_size, budget):
    results = _values(run_ranks(_conv_worker, len(counts), tmp_path, counts, chunk_size, budget))
    assert _identical(results)
    x, y = image_data(sum(counts))
    x = x.double()
    ref = _reference(
        small_cnn().double().eval(), cross_entropy(), (x, y), chunk_size=chunk_size, cache=False
    )
    if budget is not None:
        # 120 kB: Gram panels of (93 kB − 30 kB) / (3 · 483 · 8 B) = 5 samples, so 3 rounds
        values, vectors, groups = results[0]["small"]
        np.testing.assert_allclose(values, ref["gram_values"], rtol=0, atol=RTOL * values[0])
        np.testing.assert_allclose(_aligned(vectors, ref["gram_vectors"][:, :2]),
                                   ref["gram_vectors"][:, :2], rtol=0, atol=1e-7)  # fmt: skip
        for g, v in groups.items():
            np.testing.assert_allclose(v, ref["groups"][g][0], rtol=0, atol=RTOL * v[0])
    _compare(results[0], ref)


# --------------------------------------------------------------------------- transformer, DDP
class TinyTransformer(nn.Module):
    """Embedding, one encoder layer (attention, LayerNorm, MLP), a mean-pooled linear head."""

    def __init__(self, vocab: int = 12, width: int = 8, classes: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.encoder = nn.TransformerEncoderLayer(
            width, nhead=2, dim_feedforward=12, dropout=0.0, batch_first=True
        )
        self.head = nn.Linear(width, classes)

    def forward(self, ids):
        return self.head(self.encoder(self.embed(ids)).mean(1))


def sequence_data(n: int):
    g = torch.Generator().manual_seed(3)
    return torch.randint(0, 12, (n, 5), generator=g), torch.randint(0, 4, (n,), generator=g)


def tiny_transformer():
    torch.manual_seed(0)
    return TinyTransformer().double().eval()


def _ddp_worker(rank, world, counts):
    from torch.nn.parallel import DistributedDataParallel

    ids, y = sequence_data(sum(counts))
    a, b = _bounds(counts)[rank]
    ddp = DistributedDataParallel(tiny_transformer())
    noise = sg.GradientNoise(ddp, cross_entropy(), (ids[a:b], y[a:b]), chunk_size=3)
    X = torch.randn(noise.dim, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    out = _statistics(noise, X)
    out["grad_untouched"] = all(p.grad is None for p in ddp.parameters())
    # DDP still trains afterwards: one step's gradients are all-reduced (equal on every rank)
    cross_entropy()(ddp(ids[a:b]), y[a:b]).sum().backward()
    out["ddp_grad"] = torch.cat([p.grad.reshape(-1) for p in ddp.parameters()]).numpy()
    return out


def test_ddp_transformer_equals_one_process_and_ddp_still_trains(tmp_path):
    counts = [4, 9]
    results = _values(run_ranks(_ddp_worker, 2, tmp_path, counts))
    assert _identical(results)
    assert results[0]["grad_untouched"]
    ids, y = sequence_data(sum(counts))
    ref = _reference(tiny_transformer(), cross_entropy(), (ids, y), chunk_size=3)
    _compare(results[0], ref)
    # DDP's averaged gradient of the per-rank sums: the full-batch sum over the world size
    model = tiny_transformer()
    cross_entropy()(model(ids), y).sum().backward()
    full = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).numpy()
    np.testing.assert_allclose(results[0]["ddp_grad"], full / 2, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------------- faults
def _nan_worker(rank, world):
    x, y = image_data(12)
    a, b = _bounds([4, 4, 4])[rank]
    x = x[a:b].clone()
    if rank == 1:
        x[2] = float("nan")  # bad data on one shard
    noise = sg.GradientNoise(small_cnn().eval(), cross_entropy(), (x, y[a:b]))
    return noise.trace()


def test_an_error_on_one_rank_stops_every_rank_with_its_message(tmp_path):
    results = run_ranks(_nan_worker, 3, tmp_path, deadline=120)
    assert [r[0] for r in results] == ["error"] * 3, results
    assert {r[1] for r in results} == {"RankError"}
    messages = {r[2] for r in results}
    assert len(messages) == 1
    (message,) = messages
    assert message.startswith("rank 1 of 3 stopped in the mean gradient and trace")
    assert "FloatingPointError" in message and "sample 2" in message


def _crash_worker(rank, world, how):
    import os
    import time

    x, y = image_data(12)
    a, b = _bounds([4, 4, 4])[rank]
    noise = sg.GradientNoise(small_cnn().eval(), cross_entropy(), (x[a:b], y[a:b]))
    if rank == 2:
        if how == "exit":
            os._exit(3)  # killed without a word
        time.sleep(8)  # stuck beyond the group's 2 s timeout
    return noise.trace()


@pytest.mark.parametrize("how", ["exit", "stuck"])
def test_a_rank_that_dies_or_hangs_stops_the_others_within_the_timeout(tmp_path, how):
    results = run_ranks(_crash_worker, 3, tmp_path, how, collective_timeout=2.0, deadline=90)
    assert "hung" not in [r[0] for r in results]
    for r in results[:2]:
        assert r[0] == "error" and r[1] == "RankError", r
        assert "stopped without reporting" in r[2]


def _alone_worker(rank, world):
    x, y = image_data(12)
    if rank != 0:
        return None  # the other rank makes no collective call: any would hang rank 0
    noise = sg.GradientNoise(small_cnn().eval(), cross_entropy(), (x, y), process_group=False)
    return noise.trace(), noise.spectrum(method="gram", eigenvectors=False).eigenvalues


def test_process_group_false_measures_on_one_rank_of_a_distributed_job(tmp_path):
    results = run_ranks(_alone_worker, 2, tmp_path, collective_timeout=10.0, deadline=90)
    assert results[0][0] == "ok", results[0]
    trace, eigenvalues = results[0][1]
    x, y = image_data(12)
    ref = sg.GradientNoise(small_cnn().eval(), cross_entropy(), (x, y))
    assert trace == pytest.approx(ref.trace(), rel=1e-12)
    np.testing.assert_allclose(
        eigenvalues, ref.spectrum(method="gram", eigenvectors=False).eigenvalues, rtol=1e-10
    )


# ------------------------------------------------------------------------- one process
def test_shards_concatenate_to_the_data_and_differ_by_at_most_one():
    assert shard_bounds(10, 3) == [(0, 4), (4, 7), (7, 10)]
    x, y = torch.arange(10.0)[:, None], torch.arange(10)
    parts = [shard((x, y), r, 3) for r in range(3)]
    assert torch.equal(torch.cat([p[1] for p in parts]), y)
    d = {"input_ids": x, "labels": y}
    assert torch.equal(shard(d, 2, 3)["labels"], y[7:])
    ds = torch.utils.data.TensorDataset(x, y)
    assert [int(ds_y) for _, ds_y in shard(ds, 1, 3)] == [4, 5, 6]
    loader = shard(torch.utils.data.DataLoader(ds), 0, 3)
    assert len(loader.dataset) == 4


def test_shard_refuses_more_ranks_than_samples_and_a_bad_rank():
    data = (torch.zeros(2, 1), torch.zeros(2))
    with pytest.raises(ValueError, match="fewer than the 3 ranks"):
        shard(data, 0, 3)
    with pytest.raises(ValueError, match=r"'rank' parameter of shard must be in \[0, 2\), got 2"):
        shard(data, 2, 2)


def test_a_process_group_without_torch_distributed_is_refused():
    with pytest.raises(ValueError, match=r"torch\.distributed is not initialised"):
        Reducer(object())


@pytest.mark.parametrize("group", [None, False])
def test_one_process_reducer_is_the_identity(group):
    red = Reducer(group)
    red.set_count(5)
    t = torch.ones(3)
    red.sum_("x", t)
    assert red.n_total == 5 and red.offset == 0 and torch.equal(t, torch.ones(3))
    assert red.run("x", lambda: 4) == 4 and red.common_seed(None) is None
    with pytest.raises(KeyError):  # in one process the error itself comes out
        red.run("x", lambda: {}["missing"])
