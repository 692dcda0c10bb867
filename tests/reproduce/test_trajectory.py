"""``reproduce trajectory``: end to end, resume, and oracles for every number it computes itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sgdscope.paper.data import mnist
from sgdscope.paper.models import build
from sgdscope.paper.training import TrainConfig, epoch_batches
from sgdscope.report.results import RESULT_FILE, ExperimentResult, Verdict
from sgdscope.reproduce import trajectory as T
from sgdscope.reproduce.context import RunContext
from sgdscope.reproduce.trajectory.measure import (
    bartlett_outside,
    moving,
    spectral_shape,
    spectrum_numbers,
)
from sgdscope.reproduce.trajectory.record import (
    STATE,
    STORE,
    record_run,
    train_mode_gradient,
)
from sgdscope.trajectory import load_trajectory
from sgdscope.trajectory.analysis import power_spectrum

TINY = T.Settings(epochs=230, burnin=20, n=512, checkpoint_every=50, n_surrogates=19, embedded=True)
KEYS = {
    "fig3a.low_frequency",
    "fig3a.spread",
    "fig3b.long_lag_ac",
    "fig3c.grad_norm",
    "equilibrium.detailed_balance",
    "flux.circulation",
    "msd.exponent",
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[ExperimentResult, Path]:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("reproduce")
    result = T.run(RunContext(out=out, quick=True, progress=False), TINY)
    return result, out / T.NAME


def _data(n: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = mnist(None, n=n, classes=range(4), size=7).tensors()
    return x.reshape(n, -1), y


def _config(epochs: int, burnin: int) -> TrainConfig:
    return TrainConfig(epochs=epochs, schedule=((burnin, 0.1), (epochs, 0.1)), seed=3)


# ----------------------------------------------------------------------------------- end to end
def test_end_to_end_writes_result_figures_and_every_comparison(tiny_run):
    result, folder = tiny_run
    saved = ExperimentResult.load(folder / RESULT_FILE)
    assert saved.to_dict() == json.loads(json.dumps(result.to_dict(), default=str))
    assert result.name == "trajectory" and result.reduced
    assert result.reduced_note.startswith("230 epochs, burn-in 20, n 512 (full 2048)")
    assert result.reduced_note.endswith("; embedded MNIST subset")
    assert {c.key for c in result.comparisons} == KEYS
    assert all(isinstance(c.verdict, Verdict) and c.measured and c.note for c in result.comparisons)
    names = {f.path for f in result.figures}
    assert names == {
        "fig3a_spectrum.png",
        "fig3b_autocorrelation.png",
        "fig3c_gradient_norm.png",
        "msd.png",
        "flux.png",
        "equilibrium.png",
    }
    assert all((folder / name).stat().st_size > 1000 for name in names)
    nums = result.numbers
    assert nums["records"] == TINY.epochs - TINY.burnin
    assert nums["dim"] == 900
    assert nums["timing"]["epochs_done"] == TINY.epochs
    assert nums["timing"]["projected_full_run_hours"] > 0
    assert not nums["skipped"]
    # the pre-BN bias has a zero train-mode gradient and is left out (named in the numbers)
    assert nums["coordinates_excluded"].get("1.bias") == 16


# --------------------------------------------------------------------------- gradient oracles
def _load_row(model: nn.Module, row: np.ndarray) -> None:
    flat = torch.as_tensor(row)
    with torch.no_grad():
        i = 0
        for p in model.parameters():
            p.copy_(flat[i : i + p.numel()].reshape(p.shape))
            i += p.numel()


def test_recorded_eval_gradient_equals_autograd_at_the_final_state(tiny_run):
    _, folder = tiny_run
    traj = load_trajectory(folder / "run" / STORE)
    model = build("tiny-fc", 4)
    model.load_state_dict(torch.load(folder / "run" / STATE, weights_only=True)["model"])
    model.eval()
    x, y = _data(512)
    loss = nn.functional.cross_entropy(model(x), y)
    g = torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, list(model.parameters()))])
    assert traj.gradient_steps[-1] == traj.steps[-1]
    np.testing.assert_allclose(traj.gradients[len(traj.gradients) - 1], g.numpy(), atol=1e-6)


def test_recorded_train_mode_norm_equals_a_loop_over_the_epochs_batches(tiny_run):
    _, folder = tiny_run
    traj = load_trajectory(folder / "run" / STORE)
    x, y = _data(512)
    cfg = TrainConfig(epochs=TINY.epochs, schedule=((TINY.burnin, 0.1), (TINY.epochs, 0.1)), seed=0)
    for i in (0, len(traj) // 2, len(traj) - 1):
        model = build("tiny-fc", 4)
        _load_row(model, traj.weights[i])
        model.train()
        epoch = TINY.burnin + int(traj.steps[i]) - 1  # 0-based epoch whose batches were used
        grads = []
        for idx in epoch_batches(512, cfg, epoch):
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            grads.append(
                torch.cat(
                    [g.reshape(-1) for g in torch.autograd.grad(loss, list(model.parameters()))]
                )
            )
        expected = float(torch.stack(grads).mean(0).double().norm())
        assert traj.scalars["grad_norm_train"][i] == pytest.approx(expected, rel=1e-5)


def test_train_mode_gradient_handles_unequal_batches_and_leaves_buffers_alone():
    x, y = _data(300)
    model = build("tiny-fc", 4, seed=1)
    model.train()
    model(x)  # move the running statistics away from their initial values
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batches = list(torch.randperm(300, generator=torch.Generator().manual_seed(0)).split(128))
    got = train_mode_gradient(model)(x, y, batches)
    assert {k: v for k, v in model.state_dict().items()}.keys() == before.keys()
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k])
    loops = []
    for b in batches:
        loss = nn.functional.cross_entropy(model(x[b]), y[b])
        loops.append(
            torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(model.parameters()))])
        )
    torch.testing.assert_close(got, torch.stack(loops).mean(0), atol=1e-6, rtol=1e-5)


# ------------------------------------------------------------------------------------- resume
class _Stop(Exception):
    pass


def _record(folder: Path, stop_at: int | None = None, **kw):
    def stop(epoch: int) -> None:
        if epoch == stop_at:
            raise _Stop

    model = build("tiny-fc", 4, seed=0)
    return record_run(
        folder,
        model,
        _data(),
        _config(50, 5),
        burnin=5,
        checkpoint_every=10,
        run_settings={"case": "resume"},
        progress=False,
        on_epoch=stop if stop_at else None,
        **kw,
    )


@pytest.mark.parametrize("stop_at", [3, 37])
def test_an_interrupted_run_continued_records_the_same_weights(tmp_path, stop_at):
    whole = _record(tmp_path / "whole")
    with pytest.raises(_Stop):
        _record(tmp_path / "cut", stop_at=stop_at)
    cont = _record(tmp_path / "cut")
    assert cont.resumed_from == (stop_at // 10) * 10
    # the exception closed the recorder, so the store is ahead of state.pt: those are replayed
    assert cont.replayed == (stop_at - max(cont.resumed_from, 5) if stop_at > 5 else 0)
    a, b = load_trajectory(whole.store), load_trajectory(cont.store)
    assert len(a) == len(b) == 45
    np.testing.assert_array_equal(a.steps, b.steps)
    np.testing.assert_array_equal(a.weights[0:45], b.weights[0:45])
    np.testing.assert_array_equal(a.gradients[0:45], b.gradients[0:45])
    np.testing.assert_array_equal(a.scalars["grad_norm_train"], b.scalars["grad_norm_train"])
    assert whole.history == cont.history


def test_rerun_on_a_finished_run_trains_nothing(tmp_path):
    first = _record(tmp_path / "run")
    again = _record(tmp_path / "run")
    assert (again.epochs_this_session, again.resumed_from, again.epochs_done) == (0, 50, 50)
    assert again.history == first.history


def test_rerun_with_other_settings_is_refused(tmp_path):
    _record(tmp_path / "run", stop_at=None)
    model = build("tiny-fc", 4, seed=0)
    with pytest.raises(ValueError, match=r"other settings \(case differ\).*another output"):
        record_run(
            tmp_path / "run",
            model,
            _data(),
            _config(50, 5),
            burnin=5,
            checkpoint_every=10,
            run_settings={"case": "other"},
            progress=False,
        )


def test_a_store_behind_the_state_is_refused(tmp_path):
    with pytest.raises(_Stop):
        _record(tmp_path / "run", stop_at=37)
    for f in sorted((tmp_path / "run" / STORE).rglob("*"), reverse=True):
        f.unlink() if f.is_file() else f.rmdir()
    with pytest.raises(RuntimeError, match=r"holds 0 epochs but state.pt is at epoch 30"):
        _record(tmp_path / "run")


# ----------------------------------------------------------------------- oracles of own numbers
def _ar1(a: float, n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.zeros((n, d))
    e = rng.standard_normal((n, d))
    for t in range(1, n):
        x[t] = a * x[t - 1] + e[t]
    return x


def test_spectrum_numbers_flat_for_brownian_high_pass_for_ou_low_for_integrated_ou():
    n = 4096
    brown = np.cumsum(np.random.default_rng(1).standard_normal((n, 8)), axis=0)
    ou = _ar1(0.9, n, 8)
    integrated = np.cumsum(_ar1(0.9, n, 8, seed=2), axis=0)  # increments are AR(1): red
    r_brown = spectrum_numbers(power_spectrum(brown))
    r_ou = spectrum_numbers(power_spectrum(ou))
    r_int = spectrum_numbers(power_spectrum(integrated))
    assert 0.7 < r_brown["low_high_ratio"] < 1.4 and abs(r_brown["slope"]) < 0.1
    # closed forms: |1 − e^{−iω}|²/|1 − a e^{−iω}|² → 0 at low f; 1/|1 − a e^{−iω}|² is red
    assert r_ou["low_high_ratio"] < 1 / 1.5 and r_ou["slope"] > 0
    assert r_int["low_high_ratio"] > 1.5 and r_int["slope"] < 0


def test_spectral_shape_excess_is_small_for_identical_spectra_and_large_for_different():
    rng = np.random.default_rng(3)
    same = np.cumsum(rng.standard_normal((2000, 40)), axis=0)
    mixed = np.concatenate([np.cumsum(_ar1(a, 2000, 10, seed=4), axis=0) for a in (-0.8, 0.8)], 1)
    assert spectral_shape(same)["shape_cv_excess"] < 0.1
    assert spectral_shape(mixed)["shape_cv_excess"] > 0.5
    scaled = same * np.linspace(1, 10, 40)
    assert spectral_shape(scaled)["scale_ratio"] == pytest.approx(
        np.percentile(np.diff(scaled, axis=0).var(0), 90)
        / np.percentile(np.diff(scaled, axis=0).var(0), 10)
    )


def test_bartlett_band_equals_a_direct_numpy_computation():
    x = _ar1(0.7, 600, 5, seed=5)
    lags = np.array([3, 10, 40])
    got = bartlett_outside(x, lags)
    n = x.shape[0]
    hits = np.zeros(3)
    for i in range(5):
        c = x[:, i] - x[:, i].mean()
        rho = np.array([c[k:] @ c[: n - k] for k in range(41)]) / (c @ c)
        for j, k in enumerate(lags):
            se = np.sqrt((1 + 2 * np.sum(rho[1:k] ** 2)) / n)
            hits[j] += abs(rho[k]) > 2.576 * se
    assert got == {3: hits[0] / 5, 10: hits[1] / 5, 40: hits[2] / 5}
    assert got[3] > 0.5  # an AR(1) with a = 0.7 is still correlated at lag 3 (0.7³ = 0.34)


def test_moving_drops_coordinates_that_move_by_round_off_only():
    x = np.cumsum(np.random.default_rng(6).standard_normal((100, 4)), axis=0)
    x[:, 2] = 1.0 + 1e-9 * np.arange(100)
    assert moving(x).tolist() == [0, 1, 3]


# ------------------------------------------------------------------------------------ settings
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"burnin": -1},
            r"'burnin' parameter of sgdscope.reproduce.trajectory.Settings must be an int in \[0, inf\]",
        ),
        ({"epochs": 10, "burnin": 8}, r"'epochs' .* in \[11, inf\], got 10\. At least 3"),
        ({"lr": 0.0}, r"'lr' parameter of sgdscope.reproduce.trajectory.Settings"),
        ({"recording_lr": -1e-3}, r"'recording_lr' parameter"),
        (
            {"n": 3},
            r"'n' parameter of sgdscope.reproduce.trajectory.Settings must be an int in \[4, inf\]",
        ),
        ({"scale": "bytes"}, r"'scale' parameter of sgdscope.reproduce.trajectory.Settings"),
        ({"batch_size": 0}, r"'batch_size' parameter"),
        ({"momentum": 1.0}, r"'momentum' parameter"),
        ({"checkpoint_every": 0}, r"'checkpoint_every' parameter"),
        ({"n_surrogates": 5}, r"'n_surrogates' parameter .* \[19, inf\]"),
    ],
)
def test_settings_refuse_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        T.Settings(**kwargs)


def test_quick_and_full_settings():
    quick, full = T.Settings.quick(), T.Settings.full()
    assert (full.epochs, full.burnin, full.n, full.lr_after_burnin) == (100_000, 1_000, 2_048, 0.1)
    assert full.classes == (0, 1, 2, 3) and full.scale == "unit" and not full.embedded
    assert (quick.epochs, quick.burnin, quick.embedded) == (2_000, 200, True)
    assert T.Settings(recording_lr=1e-3).lr_after_burnin == 1e-3


# ------------------------------------------------------------------ Fig. 3a: the spectrum's shape
def _ar(n: int, a: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.zeros((n, a.size))
    for t in range(1, n):
        x[t] = a * x[t - 1] + rng.standard_normal(a.size)
    return x


def test_linear_spectrum_of_independent_ar1_is_the_sum_of_their_closed_forms():
    from sgdscope.reproduce.trajectory.spectrum_test import linear_spectrum
    from sgdscope.trajectory.analysis import fit_ou

    fit = fit_ou(_ar(4000, np.array([0.5, 0.9]), seed=0))
    f = np.linspace(0.01, 0.5, 40)
    z = np.exp(-2j * np.pi * f)
    sigma = fit.S - fit.A @ fit.S @ fit.A.T
    expected = np.zeros(f.size)
    for fi, zi in enumerate(z):  # brute force: the transfer matrix inverted frequency by frequency
        h = np.linalg.inv(np.eye(2) - fit.A * zi)
        expected[fi] = np.trace(h @ sigma @ h.conj().T).real * abs(1 - zi) ** 2
    np.testing.assert_allclose(linear_spectrum(fit, f), expected, rtol=1e-10)
    # and for a scalar AR(1), the textbook σ²|1 − z|²/|1 − a z|²
    one = fit_ou(_ar(4000, np.array([0.7]), seed=1))
    a, s2 = one.A[0, 0], one.S[0, 0] * (1 - one.A[0, 0] ** 2)
    np.testing.assert_allclose(
        linear_spectrum(one, f), s2 * np.abs(1 - z) ** 2 / np.abs(1 - a * z) ** 2, rtol=1e-10
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_spectrum_shape_test_accepts_the_true_model_and_rejects_the_wrong_one(seed):
    from sgdscope.reproduce.trajectory.spectrum_test import spectrum_shape_test

    ou = spectrum_shape_test(_ar(1500, np.array([0.8, 0.9, 0.95]), seed), n_components=3,
                             n_surrogates=39, seed=seed)  # fmt: skip
    assert ou.p_linear >= 0.05  # its own (known) spectrum: accepted
    assert ou.p_flat == pytest.approx(1 / 40)  # increments of an OU process are not white
    assert ou.tilt < 0  # high-pass: confined
    walk = np.random.default_rng(seed + 10).standard_normal((1500, 3)).cumsum(axis=0)
    bm = spectrum_shape_test(walk, n_components=3, n_surrogates=39, seed=seed)
    assert bm.p_flat >= 0.05  # Brownian motion: flat increments, accepted
    integrated = np.cumsum(_ar(1500, np.array([0.9, 0.95, 0.97]), seed), axis=0)
    low = spectrum_shape_test(integrated, n_components=3, n_surrogates=39, seed=seed)
    assert low.p_flat == pytest.approx(1 / 40) and low.tilt > 0  # low-frequency excess


def test_spectrum_shape_test_is_not_fooled_by_the_choice_of_subspace():
    from sgdscope.reproduce.trajectory.spectrum_test import spectrum_shape_test

    # a 50-dimensional random walk: the positions' top PCs are its slowest directions, whose
    # increments would look low-frequency; the increments' top PCs are not biased that way
    walk = np.random.default_rng(0).standard_normal((1500, 50)).cumsum(axis=0)
    res = spectrum_shape_test(walk, n_components=10, n_surrogates=39, seed=0)
    assert res.p_flat >= 0.05 and abs(res.tilt) < 0.2
