"""End to end: ``sgdscope reproduce --quick`` at sizes reduced further for CI."""

import json
import re

import pytest
import torch
from click.testing import CliRunner

from sgdscope.cli import main
from sgdscope.reproduce import nonequilibrium, scaling, spectra, toy, trajectory

TINY = {
    spectra: spectra.Settings(
        panels=("fig1a", "fig1b", "fig2a"), mnist_epochs=2, mnist_n_train=300,
        n_spectrum=80, overlap_k=5,
    ),
    trajectory: trajectory.Settings(
        epochs=120, burnin=20, n=256, checkpoint_every=40, n_surrogates=19, embedded=True
    ),
    toy: toy.Settings(
        lams=(0.0, 1.5), grid=48, particles=400, t_max=3.0, dt=0.01, bins=4,
        shift_betas=(1.0, 2.0), linear_grid=64,
    ),
    scaling: scaling.Settings(
        batch_sizes=(16, 64), epochs=1, n_train=256, n_test=100, replacement_n=128,
        replacement_batches=(8, 32), replacement_steps=8, noise_samples=32, projections=16,
        noise_epochs=20,
    ),
    nonequilibrium: nonequilibrium.Settings(
        networks=("tiny-fc",), weight_decays=(1e-2,), no_bn_weight_decays=(),
        text_protocol=False, epochs=240, burnin=20, n=256, n_components=4, n_surrogates=19,
        n_bootstrap=19,
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def quick_out(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    for module, settings in TINY.items():
        mp.setattr(module.Settings, "quick", classmethod(lambda cls, s=settings: s))
    out = tmp_path_factory.mktemp("reproduce")
    threads = torch.get_num_threads()
    try:
        res = CliRunner().invoke(
            main,
            ["reproduce", "--quick", "--no-progress", "--out", str(out)],
            catch_exceptions=False,
        )
    finally:
        mp.undo()
        torch.set_num_threads(threads)
    return out, res


def test_quick_runs_everything_and_writes_the_report(quick_out):
    out, res = quick_out
    assert res.exit_code == 0, res.output
    page = (out / "report" / "index.html").read_text()
    combined = json.loads((out / "report" / "results.json").read_text())
    names = [e["name"] for e in combined["experiments"]]
    assert names == ["spectra", "trajectory", "toy", "scaling", "nonequilibrium"]
    n_rows = sum(len(e["comparisons"]) for e in combined["experiments"])
    assert sum(combined["verdicts"].values()) == n_rows
    n_figs = sum(len(e["figures"]) for e in combined["experiments"])
    assert page.count("data:image/png;base64,") == n_figs > 0
    for e in combined["experiments"]:
        assert e["reduced"], e["name"]  # every quick experiment is labelled as reduced
        for c in e["comparisons"]:
            assert c["verdict"] in res.output or c["verdict"] in page
    assert not re.search(r"""(src|href)=["']https?:""", page)
    assert "report:" in res.output and "index.html" in res.output
    md = (out / "report" / "results.md").read_text()
    assert all(e["title"] in md for e in combined["experiments"])
    assert md.count("**reduced run**") == len(names)
    assert md.count("\n| ") - len(names) == n_rows  # a header line + one line per row


def test_report_subcommand_rerenders_from_disk(quick_out):
    out, _ = quick_out
    (out / "report" / "index.html").unlink()
    res = CliRunner().invoke(main, ["reproduce", "--out", str(out), "report"])
    assert res.exit_code == 0, res.output
    assert (out / "report" / "index.html").is_file()


def test_cuda_without_gpu_is_refused(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    res = CliRunner().invoke(main, ["reproduce", "--device", "cuda", "--out", str(tmp_path), "toy"])
    assert res.exit_code != 0
    assert "torch sees no CUDA device; use --device cpu" in res.output


def test_missing_data_dir_is_named(tmp_path):
    res = CliRunner().invoke(
        main, ["reproduce", "--data-dir", str(tmp_path / "nope"), "--out", str(tmp_path), "toy"]
    )
    assert res.exit_code == 2 and "--data-dir" in res.output and "does not exist" in res.output


def test_spectra_n_spectrum_override(quick_out, monkeypatch):
    out, _ = quick_out
    monkeypatch.setattr(spectra.Settings, "quick", classmethod(lambda cls: TINY[spectra]))
    res = CliRunner().invoke(
        main,
        [
            "reproduce",
            "--quick",
            "--no-progress",
            "--out",
            str(out),
            "spectra",
            "--n-spectrum",
            "50",
        ],
    )
    assert res.exit_code == 0, res.output
    saved = json.loads((out / "spectra" / "result.json").read_text())
    ckpts = saved["numbers"]["panels"]["fig1b"]["checkpoints"].values()
    assert {c["n_samples"] for c in ckpts} == {50}
    assert "D on the first 50 training samples" in saved["reduced_note"]


def test_a_rerun_says_what_it_reused_instead_of_old_times(quick_out, monkeypatch):
    out, first = quick_out
    assert "this call" in first.output and "reused from earlier calls" not in first.output
    monkeypatch.setattr(spectra.Settings, "quick", classmethod(lambda cls: TINY[spectra]))
    monkeypatch.setattr(trajectory.Settings, "quick", classmethod(lambda cls: TINY[trajectory]))
    res = CliRunner().invoke(
        main, ["reproduce", "--quick", "--no-progress", "--out", str(out), "spectra"]
    )
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert re.search(r"spectra: \d+ s this call; reused from earlier calls: ", text), text
    assert "D of fig1a, fig1b from the *.spectrum.npz caches" in text
    saved = json.loads((out / "spectra" / "result.json").read_text())
    assert saved["numbers"]["seconds_this_call"] < saved["seconds"]  # the old total is not printed
    res = CliRunner().invoke(
        main, ["reproduce", "trajectory", "--quick", "--no-progress", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "reused from earlier calls: epochs 1–120 from state.pt" in text, text
