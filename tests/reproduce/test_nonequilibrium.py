"""``reproduce nonequilibrium``: oracles for what it computes itself, verdicts, end to end."""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from sgdscope.paper.models import build
from sgdscope.report.results import RESULT_FILE, ExperimentResult, Verdict
from sgdscope.reproduce import nonequilibrium as N
from sgdscope.reproduce.context import RunContext
from sgdscope.reproduce.nonequilibrium import claims
from sgdscope.reproduce.nonequilibrium.measure import (
    Record,
    batchnorm_fed,
    drift_and_diffusion,
    examine,
    hessian_in_basis,
    linear_theory,
    noise_in_basis,
    rotation_rates,
    scale_invariant,
    train_and_record,
    without_batchnorm,
)
from sgdscope.reproduce.nonequilibrium.settings import RunSetting, Settings
from sgdscope.temperature import temperature
from sgdscope.trajectory.analysis import subspace_currents

TINY = Settings(
    networks=("tiny-fc",), weight_decays=(1e-2,), no_bn_weight_decays=(), text_protocol=False,
    epochs=240, burnin=20, n=256, n_components=4, n_surrogates=19, n_bootstrap=19,
)  # fmt: skip


def _small_bn_net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).double()


def _ou(F: np.ndarray, D: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Exact discretisation (Δ = 1) of dx = −Fx dt + √(2D) dW, started stationary."""
    S = scipy.linalg.solve_continuous_lyapunov(F, 2 * D)
    A = scipy.linalg.expm(-F)
    L = np.linalg.cholesky(S - A @ S @ A.T)
    rng = np.random.default_rng(seed)
    x = np.empty((n, F.shape[0]))
    x[0] = np.linalg.cholesky(S) @ rng.standard_normal(F.shape[0])
    for t in range(1, n):
        x[t] = A @ x[t - 1] + L @ rng.standard_normal(F.shape[0])
    return x


# ----------------------------------------------------------------------------- networks
def test_batchnorm_fed_and_its_removal():
    model = build("tiny-fc", 4, seed=0)
    assert batchnorm_fed(model) == {"1.weight": "weight", "1.bias": "bias"}
    plain = without_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in plain.modules())
    assert sum(p.numel() for p in plain.parameters()) == 900 - 32
    assert batchnorm_fed(plain) == {}


def test_scale_invariant_divides_each_unit_and_drops_the_removed_bias():
    rng = np.random.default_rng(0)
    names, shapes = ["w", "b", "v"], [[3, 2], [3], [2]]
    x = rng.standard_normal((5, 11))
    got = scale_invariant(x, names, shapes, {"w": "weight", "b": "bias"})
    expected = []
    for row in x:
        w = row[:6].reshape(3, 2)
        expected.append(np.concatenate([(w / np.linalg.norm(w, axis=1)[:, None]).ravel(), row[9:]]))
    np.testing.assert_allclose(got, np.array(expected), rtol=1e-6)


# ----------------------------------------------------------------------------- curvature, D
def test_hessian_in_basis_equals_finite_differences_of_the_gradient():
    model = _small_bn_net()
    model.train()(torch.randn(16, 3, dtype=torch.float64))  # non-trivial running statistics
    model.eval()
    x = torch.randn(20, 3, dtype=torch.float64)
    y = torch.randint(0, 2, (20,))
    params = list(model.parameters())
    flat0 = torch.cat([p.detach().reshape(-1) for p in params])

    def gradient(flat: torch.Tensor) -> np.ndarray:
        chunks, i = {}, 0
        for name, p in model.named_parameters():
            chunks[name] = flat[i : i + p.numel()].reshape(p.shape).requires_grad_(True)
            i += p.numel()
        out = torch.func.functional_call(model, chunks, (x,))
        loss = nn.functional.cross_entropy(out, y)
        grads = torch.autograd.grad(loss, list(chunks.values()))
        return torch.cat([g.reshape(-1) for g in grads]).numpy() + 0.3 * flat.numpy()

    basis = np.linalg.qr(np.random.default_rng(1).standard_normal((flat0.numel(), 3)))[0].T
    eps = 1e-5
    fd = np.array(
        [
            (
                gradient(flat0 + eps * torch.as_tensor(v))
                - gradient(flat0 - eps * torch.as_tensor(v))
            )
            / (2 * eps)
            for v in basis
        ]
    )
    expected = basis @ fd.T
    got = hessian_in_basis(model, (x, y), basis, weight_decay=0.3)
    np.testing.assert_allclose(got, 0.5 * (expected + expected.T), rtol=1e-6, atol=1e-8)


def test_noise_in_basis_equals_a_per_sample_loop_without_the_removed_bias():
    model = _small_bn_net(1).float()
    model.train()(torch.randn(16, 3))
    model.eval()
    x, y = torch.randn(30, 3), torch.randint(0, 2, (30,))
    nib = noise_in_basis(model, (x, y), 2, seed=0)
    grads = []
    for i in range(30):
        model.zero_grad()
        nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]).double().numpy())
    g = np.array(grads)
    g[:, 12:16] = 0.0  # the bias of the layer BatchNorm normalises: left out
    gc = g - g.mean(0)
    dense = gc.T @ gc / 30
    assert not nib.keep[12:16].any() and nib.keep.sum() == g.shape[1] - 4
    basis = np.random.default_rng(2).standard_normal((3, g.shape[1]))
    np.testing.assert_allclose(nib.restricted(basis), basis @ dense @ basis.T, rtol=1e-5, atol=1e-9)
    lam, vec = np.linalg.eigh(dense)
    np.testing.assert_allclose(nib.eigenvalues, lam[::-1][:2], rtol=1e-5)
    assert abs(abs(nib.top[0] @ vec[:, -1]) - 1) < 1e-5


# ----------------------------------------------------------------------------- linear theory
def test_rotation_rates_of_a_pure_rotation():
    Q = np.array([[0.0, 0.7], [-0.7, 0.0]])
    np.testing.assert_allclose(rotation_rates(Q, np.eye(2)), [0.7])
    np.testing.assert_allclose(rotation_rates(Q, 4 * np.eye(2)), [0.7 / 4])


def test_drift_and_diffusion_per_record():
    h, d = np.diag([1.0, 2.0]), np.eye(2)
    F, D = drift_and_diffusion(
        h, d, lr=0.1, momentum=0.9, batch_size=8, n=64, steps=4, replacement=True
    )
    np.testing.assert_allclose(F, 4 * 1.0 * h)
    np.testing.assert_allclose(D, 4 * 1.0 * temperature(0.1, 8, momentum=0.9) * d)


@pytest.mark.parametrize("r", [0.0, 0.8])
def test_linear_theory_on_an_ou_process_with_known_q(r):
    a, b = 0.05, 0.4
    F, D = np.diag([a, b]), np.array([[1.0, r], [r, 1.0]])
    # closed form (Lemma 20 for diagonal F): S_ii = D_ii/F_ii, S_12 = 2r/(a + b), Q_12 = r(a−b)/(a+b)
    S = np.array([[1 / a, 2 * r / (a + b)], [2 * r / (a + b), 1 / b]])
    Q = np.array([[0.0, r * (a - b) / (a + b)], [-r * (a - b) / (a + b), 0.0]])
    sigma = float(np.trace(Q.T @ np.linalg.inv(D) @ Q @ np.linalg.inv(S)))
    measured = subspace_currents(_ou(F, D, 20_000, seed=3), n_surrogates=39, n_bootstrap=99)
    th = linear_theory("pca", F, D, measured)
    assert th.stable
    assert th.predicted_entropy == pytest.approx(sigma, rel=1e-8, abs=1e-12)
    assert th.commute == (r == 0.0)
    np.testing.assert_allclose(th.predicted_rates, rotation_rates(Q, S), rtol=1e-8, atol=1e-12)
    assert th.agrees  # the run's interval holds the closed form
    assert th.variance_ratio == pytest.approx(1.0, abs=0.15)


def test_linear_theory_predicts_nothing_for_negative_curvature():
    x = _ou(np.diag([0.2, 0.3]), np.eye(2), 2000, seed=0)
    measured = subspace_currents(x, n_surrogates=19, n_bootstrap=19)
    th = linear_theory("noise", np.diag([-0.1, 0.3]), np.eye(2), measured)
    assert not th.stable and not th.agrees and np.isnan(th.predicted_entropy)


# ----------------------------------------------------------------------------- verdicts
def test_a_random_walk_is_not_testable_never_not_reproduced():
    walk = np.random.default_rng(0).standard_normal((1500, 6)).cumsum(axis=0)
    t = examine("c.walk", "a random walk", walk, TINY, seed=0)
    assert not t.stationary
    row = claims._balance_row(t, TINY.n_components)
    assert row.verdict is Verdict.NOT_TESTABLE
    assert row.note.startswith("not testable: not stationary")


def test_a_stationary_record_gets_a_verdict_each_way():
    F0 = np.diag([0.3, 0.35, 0.5, 0.6, 0.8, 1.0])
    J = np.zeros((6, 6))
    J[0, 1], J[1, 0] = 0.6, -0.6
    rows = {}
    for name, F in (("reversible", F0), ("rotating", F0 + J)):
        x = _ou(F, np.eye(6), 3000, seed=1)
        t = examine(name, name, x, dataclasses.replace(TINY, n_surrogates=99), seed=0)
        assert t.stationary
        rows[name] = claims._balance_row(t, TINY.n_components).verdict
    assert rows == {"reversible": Verdict.NOT_REPRODUCED, "rotating": Verdict.REPRODUCED}


# ----------------------------------------------------------------------------- recording
def test_recorded_velocities_are_the_heavy_ball_steps():
    s = dataclasses.replace(TINY, n=128, epochs=230, burnin=10)  # one step per epoch
    setting = RunSetting("a", "a", "tiny-fc", True, 1e-2, 0.05)
    from sgdscope.reproduce.nonequilibrium.measure import training_data

    xy = training_data("tiny-fc", s, RunContext(out="o"))
    rec = train_and_record(setting, xy, s, seed=0)
    assert isinstance(rec, Record) and rec.steps_per_record == 1
    step = np.diff(rec.positions.astype(np.float64), axis=0)
    np.testing.assert_allclose(step, -0.05 * rec.velocities[1:], atol=2e-6)
    np.testing.assert_allclose(rec.midpoints(), rec.positions + 0.025 * rec.velocities, rtol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"networks": ("small-fc",)}, "'networks' parameter"),
        ({"weight_decays": (-1.0,)}, "'weight_decays' parameter"),
        ({"epochs": 100, "burnin": 50}, "'epochs' parameter"),
        ({"sampling": "sometimes"}, "'sampling' parameter"),
        ({"n_surrogates": 5}, "'n_surrogates' parameter"),
    ],
)
def test_settings_refuse_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Settings(**kwargs)


def test_quick_and_full_settings():
    full, quick = Settings.full(), Settings.quick()
    assert not full.is_reduced and quick.is_reduced
    assert {r.group for r in full.runs()} == {"a", "b", "d"}
    assert len(full.runs()) == 2 * 3 + 2 * 2 + 1
    assert len({r.key for r in full.runs()}) == len(full.runs())


# ----------------------------------------------------------------------------- end to end
def test_end_to_end_writes_rows_for_every_setting(tmp_path):
    torch.set_num_threads(1)
    result = N.run(RunContext(out=tmp_path, quick=True, progress=False), TINY)
    saved = ExperimentResult.load(tmp_path / N.NAME / RESULT_FILE)
    assert saved.to_dict() == json.loads(json.dumps(result.to_dict(), default=str))
    keys = [c.key for c in result.comparisons]
    assert keys == [
        "title.out_of_equilibrium",
        "a.tiny-fc.wd1e-02.detailed_balance",
        "a.tiny-fc.wd1e-02.linear_theory",
        "c.fig3.detailed_balance",
    ]
    fig3 = result.comparisons[-1]
    assert fig3.verdict is Verdict.NOT_TESTABLE and "no Fig. 3 record" in fig3.note
    numbers = result.numbers["settings"]["a.tiny-fc.wd1e-02"]
    assert numbers["records"] == 220 and numbers["stationarity"] is not None
    assert set(numbers["currents"]) <= {"pca", "noise"}
    assert result.reduced and all(c.measured and c.note for c in result.comparisons)


def test_a_second_call_reads_the_saved_records_back_instead_of_training(tmp_path, monkeypatch):
    """An interrupted or repeated run keeps each finished setting: the next call with the same
    settings reads its record back (no training) and reaches the same verdicts; other settings
    are trained again."""
    torch.set_num_threads(1)
    ctx = RunContext(out=tmp_path, quick=True, progress=False)
    first = N.run(ctx, TINY)
    assert (tmp_path / N.NAME / "records" / "a.tiny-fc.wd1e-02.pt").exists()

    def no_training(*_a, **_k):
        raise AssertionError("trained again")

    module = sys.modules["sgdscope.reproduce.nonequilibrium.measure"]  # (the package's
    monkeypatch.setattr(module, "train_and_record", no_training)  # `measure` is the function)
    second = N.run(ctx, TINY)
    assert [(c.key, c.verdict, c.measured) for c in second.comparisons] == [
        (c.key, c.verdict, c.measured) for c in first.comparisons
    ]
    with pytest.raises(AssertionError, match="trained again"):  # other settings: trained afresh
        N.run(ctx, dataclasses.replace(TINY, weight_decays=(1e-3,)))
