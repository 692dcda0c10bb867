import dataclasses
import json

import numpy as np
import pytest
import torch

from sgdscope.paper import data, models
from sgdscope.paper.training import load_weights
from sgdscope.reference.noise import per_sample_gradients_loop
from sgdscope.report.results import ExperimentResult, Verdict
from sgdscope.reproduce import spectra
from sgdscope.reproduce.context import RunContext
from sgdscope.reproduce.spectra.claims import compare
from sgdscope.reproduce.spectra.measure import Checkpoint, Overlap, Panel, Reading
from sgdscope.reproduce.spectra.settings import PANELS

TINY = spectra.Settings(
    panels=("fig1b", "fig2a"),
    mnist_epochs=2,
    mnist_n_train=400,
    n_spectrum=120,
    overlap_k=5,
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("spectra")
    ctx = RunContext(out=out, quick=True, progress=False)
    return ctx, spectra.run(ctx, TINY)


def test_tiny_run_writes_result_figures_and_rows(tiny_run):
    ctx, result = tiny_run
    saved = ExperimentResult.load(ctx.out / "spectra" / "result.json")
    assert saved.to_dict()["comparisons"] == result.to_dict()["comparisons"]
    assert saved.reduced and "D on the first 120" in saved.reduced_note
    for fig in saved.figures:
        assert (ctx.out / "spectra" / fig.path).stat().st_size > 1000
    keys = {c.key: c for c in saved.comparisons}
    assert keys["fig1b.rank_percent"].verdict is not Verdict.NOT_TESTABLE
    assert keys["fig2a.rank_percent"].verdict is Verdict.NOT_TESTABLE  # no --cifar-dir
    assert "--cifar-dir" in keys["fig2a.rank_percent"].note
    assert keys["remark14.cifar_vs_mnist"].verdict is Verdict.NOT_TESTABLE
    panel = saved.numbers["panels"]["fig1b"]
    assert sorted(panel["checkpoints"], key=int) == ["1", "2"]
    json.dumps(saved.numbers)  # JSON-ready
    assert any("depends on the threshold" in n for n in saved.notes)


def test_rank_equals_an_independent_loop_and_gram_eigh(tiny_run):
    """Oracle: the authors' batch-1 loop, centred, and numpy's eigvalsh of the Gram matrix."""
    ctx, result = tiny_run
    ckpt = ctx.out / "spectra" / "small-fc-mnist7" / "train" / "epoch_0002.pt"
    model = models.build("small-fc", seed=0)
    load_weights(model, ckpt)
    x, y = data.mnist(None, n=400, scale="unit", size=7, classes=(0, 1)).tensors()
    x, y = x[:120].double(), y[:120]
    g = per_sample_gradients_loop(
        model.double().eval(), torch.nn.CrossEntropyLoss(reduction="none"), x, y
    ).numpy()
    gc = g - g.mean(0)
    lam = np.sort(np.linalg.eigvalsh(gc @ gc.T / len(gc)))[::-1]  # non-zero spectrum of D
    d = g.shape[1]
    thr = lam[0] * d * np.finfo(np.float32).eps
    measured = result.numbers["panels"]["fig1b"]["checkpoints"]["2"]
    assert measured["rank"] == int((lam > thr).sum())
    assert measured["lambda_max"] == pytest.approx(lam[0], rel=1e-6)
    assert measured["trace"] == pytest.approx(lam.sum(), rel=1e-6)


def test_rerun_reuses_cached_spectra(tiny_run):
    ctx, first = tiny_run
    again = spectra.run(ctx, TINY)
    panel = again.numbers["panels"]["fig1b"]
    assert panel["spectrum_seconds_this_call"] == 0.0  # all from *.spectrum.npz
    assert panel["spectrum_seconds"] == first.numbers["panels"]["fig1b"]["spectrum_seconds"] > 0
    # where each cached D was measured travels with it (a cache made on a GPU says so)
    assert set(panel["spectrum_devices"].values()) == {"cpu"}
    assert any("s on cpu" in n for n in again.notes)
    assert again.numbers["seconds_reused_from_earlier_calls"] > 0
    assert again.seconds >= again.numbers["seconds_this_call"]
    assert again.numbers["panels"]["fig1b"]["checkpoints"] == json.loads(
        json.dumps(first.numbers["panels"]["fig1b"]["checkpoints"])
    )


def _panel(rank_pcts, ratios=(7.0,), overlap=0.9, d=1000, raw_mean=1.0):
    ckpts = []
    for e, pct in zip((2, 4, 10), rank_pcts, strict=True):
        mean = 1.0
        readings = {
            "raw": Reading(raw_mean, ratios[0] * mean),
            "clipped": Reading(mean, ratios[0] * mean / 2),
            "above": Reading(mean, 1.0),
        }
        ckpts.append(Checkpoint(
            epoch=e, dim=d, n_samples=500, rank=round(pct * d / 100), rank_percent=pct,
            rank_is_certain=True, trace=pct, readings=readings, ranks_at_rtol={},
            power_law_slope=None,
        ))  # fmt: skip
    return Panel(tuple(ckpts), {"2-10": Overlap(5, overlap, 5 / d)}, 0.0, frozenset({"cpu"}))


def test_verdict_logic_on_known_cases():
    rows = {c.key: c for c in compare({"fig1a": _panel((1.8, 1.7, 1.6))}, {})}
    assert rows["fig1a.rank_percent"].verdict is Verdict.REPRODUCED
    assert rows["fig1a.std_over_mean"].verdict is Verdict.REPRODUCED  # raw reading 7.0
    assert rows["low_rank"].verdict is Verdict.REPRODUCED
    assert rows["remark13"].verdict is Verdict.REPRODUCED
    rows = {c.key: c for c in compare({"fig1a": _panel((0.2, 0.5, 4.0), (50.0,), 0.1)}, {})}
    assert rows["fig1a.rank_percent"].verdict is Verdict.PARTLY  # low rank, off by > 2×
    assert rows["fig1a.std_over_mean"].verdict is Verdict.NOT_REPRODUCED
    assert rows["remark13"].verdict is Verdict.NOT_REPRODUCED  # rank, trace ×20, overlap 0.1
    rows = {c.key: c for c in compare({"fig1a": _panel((1.0, 1.0, 5.0), overlap=0.9)}, {})}
    assert rows["remark13"].verdict is Verdict.PARTLY  # the same directions, rank and trace ×5
    rows = {c.key: c for c in compare({"fig1a": _panel((9.0, 9.0, 9.0))}, {})}
    assert rows["fig1a.rank_percent"].verdict is Verdict.NOT_REPRODUCED
    assert rows["low_rank"].verdict is Verdict.NOT_REPRODUCED


def test_cross_panel_claims():
    fc, le = _panel((0.6, 0.6, 0.6), (20.0,)), _panel((1.8, 1.8, 1.8), (7.0,))
    rows = {c.key: c for c in compare({"fig1a": le, "fig1b": fc}, {})}
    assert rows["fig1.caption"].verdict is Verdict.REPRODUCED
    rows = {c.key: c for c in compare({"fig1a": fc, "fig1b": le}, {})}
    assert rows["fig1.caption"].verdict is Verdict.NOT_REPRODUCED
    close = _panel((1.5, 1.5, 1.5), (20.0,))  # larger spread, but rank not much smaller
    rows = {c.key: c for c in compare({"fig1a": le, "fig1b": close}, {})}
    assert rows["fig1.caption"].verdict is Verdict.PARTLY
    cifar = _panel((0.34, 0.34, 0.34), raw_mean=100.0)
    rows = {c.key: c for c in compare({"fig1a": le, "fig2a": cifar}, {})}
    assert rows["remark14.cifar_vs_mnist"].verdict is Verdict.REPRODUCED
    assert rows["remark14.augment"].verdict is Verdict.NOT_TESTABLE


def test_every_panel_has_the_papers_numbers():
    assert {k: p.paper_rank_percent for k, p in PANELS.items()} == {
        "fig1a": 1.8, "fig1b": 0.6, "fig2a": 0.34, "fig2b": 0.47, "fig2c": 0.32,
    }  # fmt: skip
    assert PANELS["fig2c"].augment and PANELS["fig2c"].run == PANELS["fig2a"].run


def test_cache_is_keyed_by_the_samples_d_was_measured_on(tiny_run):
    ctx, _ = tiny_run
    other = spectra.run(ctx, dataclasses.replace(TINY, panels=("fig1b",), n_spectrum=100))
    panel = other.numbers["panels"]["fig1b"]
    assert panel["spectrum_seconds_this_call"] > 0  # not the N = 120 spectra from the cache
    assert {c["n_samples"] for c in panel["checkpoints"].values()} == {100}


def test_authors_resize_trains_in_its_own_folder(tmp_path):
    ctx = RunContext(out=tmp_path, quick=True, progress=False, mnist_resize="authors")
    tiny = dataclasses.replace(TINY, panels=("fig1b",), mnist_epochs=1)
    r = spectra.run(ctx, tiny)
    assert (tmp_path / "spectra" / "small-fc-mnist7-authors" / "train" / "last.pt").is_file()
    assert "resize 'authors'" in r.numbers["panels"]["fig1b"]["data"]
    assert "scale 'unit'" in r.numbers["panels"]["fig1b"]["data"]


# ------------------------------------------------------------------------------- knee (C − 1)
def _power_law(n: int = 60, s: float = 1.2) -> np.ndarray:
    return np.arange(1, n + 1, dtype=float) ** -s


def test_knee_found_where_it_was_planted_and_nowhere_else():
    from sgdscope.reproduce.spectra.measure import knee

    lam = _power_law()
    lam[9:] /= 8.0  # a gap between λ_9 and λ_10
    k = knee(lam, 9)
    assert k is not None and k.found and k.largest
    assert k.log_ratio == pytest.approx(np.log(lam[8] / lam[9]))
    assert len(k.neighbours) == 8
    assert not knee(lam, 12).found  # the gap is not after 12
    smooth = knee(_power_law(), 9)
    assert smooth is not None and not smooth.found and not smooth.largest
    noisy = _power_law() * np.exp(0.05 * np.random.default_rng(0).standard_normal(60))
    assert not knee(np.sort(noisy)[::-1], 9).found
    assert knee(_power_law(12), 9) is None  # too few eigenvalues for the window
    assert knee(lam, 3) is None  # no full window below p


def test_knee_row_reads_every_checkpoint():
    from sgdscope.reproduce.spectra.measure import knee

    lam = _power_law()
    lam[9:] /= 8.0
    base = _panel((1.8, 1.7, 1.6))
    ck = [dataclasses.replace(c, knee=knee(lam if i else _power_law(), 9)) for i, c in
          enumerate(base.checkpoints)]  # fmt: skip
    rows = {
        c.key: c for c in compare({"fig1a": dataclasses.replace(base, checkpoints=tuple(ck))}, {})
    }
    assert rows["fig1a.knee"].verdict is Verdict.PARTLY  # found at 2 of 3 checkpoints
    ck = [dataclasses.replace(c, knee=knee(lam, 9)) for c in base.checkpoints]
    rows = {
        c.key: c for c in compare({"fig1a": dataclasses.replace(base, checkpoints=tuple(ck))}, {})
    }
    assert rows["fig1a.knee"].verdict is Verdict.REPRODUCED
    assert f"λ_9/λ_10 = {8 * (10 / 9) ** 1.2:.3g}" in rows["fig1a.knee"].measured
    assert PANELS["fig2a"].knee_at == 9 and PANELS["fig2b"].knee_at == 99
    assert PANELS["fig1b"].knee_at is None  # two digits: no C − 1 gap to test
