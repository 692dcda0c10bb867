"""The CLI a new user meets: every bad invocation is a usage error that names the option, the value
and the fix (never a traceback), options work after the subcommand, a full run says what it costs
before it starts, and progress is readable in a log file."""

import dataclasses
import importlib
import io
import json
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from sgdscope import _progress
from sgdscope.cli import main
from sgdscope.reproduce import EXPERIMENTS

from .trajectory._analysis_processes import rotated_ou

cli_reproduce = importlib.import_module("sgdscope.cli.reproduce")  # the module, not the command


def _invoke(args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _usage_error(res, option, *words):
    """exit code 2, click's 'Invalid value for OPTION', each word, and no traceback."""
    assert res.exit_code == 2, res.output
    assert ("Traceback" not in res.output and res.exception is None) or isinstance(
        res.exception, SystemExit
    )
    assert f"Invalid value for '{option}'" in res.output or option in res.output, res.output
    text = " ".join(res.output.split())  # click wraps long messages
    for w in words:
        assert w in text, (w, res.output)


# ------------------------------------------------------------------------------------- spectrum
def test_spectrum_k_above_the_rank_of_d(tmp_path):
    res = _invoke(
        ["spectrum", "--model", "tiny-fc", "--n-samples", "100", "--k", "100000",
         "--out", tmp_path / "o"]
    )  # fmt: skip
    _usage_error(res, "--k", "100000", "min(N − 1, d) = 99", "Pass --k 99 or less")
    assert not (tmp_path / "o" / "summary.json").exists()


def test_spectrum_checkpoint_that_is_not_a_checkpoint(tmp_path):
    bad = tmp_path / "notes.pt"
    bad.write_text("these are my notes, not weights")
    res = _invoke(["spectrum", "--model", "tiny-fc", "--checkpoint", bad, "--out", tmp_path / "o"])
    _usage_error(res, "--checkpoint", "notes.pt", "torch.save(model.state_dict())")


def test_spectrum_truncated_checkpoint(tmp_path):
    from sgdscope.paper import models

    path = tmp_path / "ckpt.pt"
    torch.save(models.build("tiny-fc").state_dict(), path)
    path.write_bytes(path.read_bytes()[:-100])
    res = _invoke(["spectrum", "--model", "tiny-fc", "--checkpoint", path, "--out", tmp_path / "o"])
    _usage_error(res, "--checkpoint", "ckpt.pt", "damaged")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
@pytest.mark.parametrize("command", ["spectrum", "reproduce"])
def test_device_cuda_without_cuda(tmp_path, command):
    args = ["--device", "cuda", "--out", tmp_path / "o"]
    res = _invoke([command, *args] if command == "spectrum" else [command, *args, "toy"])
    _usage_error(res, "--device", "'cuda'", "torch sees no CUDA device", "use --device cpu")


@pytest.mark.parametrize("command", ["spectrum", "reproduce"])
def test_device_gpu_is_not_a_device(tmp_path, command):
    args = ["--device", "gpu", "--out", tmp_path / "o"]
    res = _invoke([command, *args] if command == "spectrum" else [command, *args, "toy"])
    _usage_error(res, "--device", "'gpu' is not a torch device", "use cpu, cuda or cuda:N")


def test_spectrum_data_dir_without_mnist(tmp_path):
    (tmp_path / "empty").mkdir()
    res = _invoke(["spectrum", "--data-dir", tmp_path / "empty", "--out", tmp_path / "o"])
    _usage_error(res, "--data-dir", "train-images-idx3-ubyte", "omit --data-dir")


# ------------------------------------------------------------------------------------ reproduce
def test_reproduce_data_dir_without_mnist(tmp_path):
    (tmp_path / "empty").mkdir()
    res = _invoke(["reproduce", "--data-dir", tmp_path / "empty", "--out", tmp_path / "o", "toy"])
    _usage_error(res, "--data-dir", str(tmp_path / "empty"), "omit --data-dir")
    assert not (tmp_path / "o").exists()  # refused before anything is written


def test_reproduce_cifar_dir_without_cifar(tmp_path):
    (tmp_path / "empty").mkdir()
    res = _invoke(
        ["reproduce", "--quick", "--cifar-dir", tmp_path / "empty", "--out", tmp_path / "o",
         "spectra"]
    )  # fmt: skip
    _usage_error(res, "--cifar-dir", "CIFAR-10 not found", "cifar-10-binary.tar.gz")


@pytest.mark.parametrize("command", ["reproduce", "analyze", "toy"])
def test_out_inside_a_file(tmp_path, command):
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "sub"
    if command == "analyze":
        np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((300, 2)))
        args = ["analyze", tmp_path / "x.npy", "--out", out]
    elif command == "toy":
        args = ["toy", "quadratic", "--out", out]
    else:
        args = ["reproduce", "--out", out, "toy"]
    res = _invoke(args)
    _usage_error(res, "--out", "afile", "choose a folder you can write to")


@pytest.fixture
def captured(monkeypatch):
    """Replace the experiment runner: record the RunContext each invocation would run with."""
    calls = []

    def fake(ctx_obj, run_ctx, names, overrides=None):
        calls.append((run_ctx, names, overrides))

    monkeypatch.setattr(cli_reproduce, "_run", fake)
    return calls


@pytest.mark.parametrize(
    "args",
    [
        ["reproduce", "spectra", "--quick", "--out", "OUT", "--seed", "3"],
        ["reproduce", "--quick", "spectra", "--out", "OUT", "--seed", "3"],
        ["reproduce", "--quick", "--out", "OUT", "--seed", "3", "spectra"],
        ["reproduce", "--out", "elsewhere", "spectra", "--out", "OUT", "--quick", "--seed", "3"],
    ],
)
def test_options_after_the_subcommand(tmp_path, captured, args):
    res = _invoke([str(tmp_path / "out") if a == "OUT" else a for a in args])
    assert res.exit_code == 0, res.output
    ((ctx, names, _),) = captured
    assert names == ("spectra",) and ctx.quick and ctx.seed == 3 and ctx.out == tmp_path / "out"
    assert ctx.device == "cpu" and ctx.progress


def test_spectra_subcommand_options_and_shared_options_together(tmp_path, captured):
    res = _invoke(
        ["reproduce", "spectra", "--n-spectrum", "50", "--no-progress", "--quick",
         "--out", tmp_path]
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    ((ctx, _, overrides),) = captured
    assert overrides == {"n_spectrum": 50} and not ctx.progress and ctx.quick


def test_a_full_cpu_run_says_how_long_it_takes_before_it_starts(tmp_path, monkeypatch):
    class Started(Exception):
        pass

    def run(ctx, settings=None):
        raise Started

    monkeypatch.setitem(EXPERIMENTS, "toy", dataclasses.replace(EXPERIMENTS["toy"], run=run))
    res = _invoke(["reproduce", "--out", tmp_path, "toy"])
    assert isinstance(res.exception, Started)  # the estimate came before the work
    text = " ".join(res.output.split())
    assert re.search(r"Full protocol on the CPU: expect about \d+ min \(toy ≈ 2 min", text), text
    assert "--quick" in text
    res = _invoke(["reproduce", "--quick", "--out", tmp_path, "toy"])
    assert "Full protocol" not in res.output  # not for a quick run


def test_the_estimate_of_all_five_experiments():
    from sgdscope.reproduce.context import RunContext

    text = cli_reproduce._full_cpu_estimate(RunContext(out="o"), tuple(EXPERIMENTS), None)
    assert "about 3.8 h" in text and "trajectory ≈ 76 min" in text  # 60 + 76 + 1.5 + 50 + 40 min
    assert (
        cli_reproduce._full_cpu_estimate(RunContext(out="o", device="cuda"), ("toy",), None) is None
    )


# -------------------------------------------------------------------------------------- analyze
@pytest.fixture(scope="module")
def series(tmp_path_factory):
    x, *_ = rotated_ou(0.8, 1600, seed=0)
    path = tmp_path_factory.mktemp("a") / "x.npy"
    np.save(path, x)
    return path, x


def test_analyze_window_equals_analysing_the_sliced_array(series, tmp_path):
    path, x = series
    np.save(tmp_path / "w.npy", x[400:1400:2])
    common = ["--surrogates", "19", "--seed", "1"]
    res = _invoke(["analyze", path, "--out", tmp_path / "a", "--start", "400", "--stop", "1400",
                   "--every", "2", *common])  # fmt: skip
    assert res.exit_code == 0, res.output
    ref = _invoke(["analyze", tmp_path / "w.npy", "--out", tmp_path / "b", *common])
    assert ref.exit_code == 0, ref.output
    a = json.loads((tmp_path / "a" / "summary.json").read_text())
    b = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert a["snapshots"] == 500 and a["window"]["start"] == 400 and a["window"]["every"] == 2
    assert a["equilibrium"] == b["equilibrium"] and a["msd"] == b["msd"]


def test_analyze_negative_start_counts_from_the_end(series, tmp_path):
    path, _ = series
    res = _invoke(["analyze", path, "--out", tmp_path / "a", "--start", "-600",
                   "--surrogates", "19"])  # fmt: skip
    assert res.exit_code == 0, res.output
    w = json.loads((tmp_path / "a" / "summary.json").read_text())["window"]
    assert (w["start"], w["stop"], w["snapshots"]) == (1000, 1600, 600)


def test_analyze_empty_window_is_a_usage_error(series, tmp_path):
    path, _ = series
    res = _invoke(["analyze", path, "--out", tmp_path / "a", "--start", "900", "--stop", "100"])
    _usage_error(res, "--start/--stop/--every", "select 0 of the 1,600 snapshots")


def test_analyze_a_text_file_named_npy(tmp_path):
    (tmp_path / "t.npy").write_text("hello\n")
    res = _invoke(["analyze", tmp_path / "t.npy", "--out", tmp_path / "o"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    text = " ".join(res.output.split())
    assert "is not a .npy array of shape (T, d)" in text and "numpy.save" in text
    assert "allow_pickle" not in text  # never invite unsafe loading


def test_analyze_window_of_a_recorded_trajectory_keeps_gradient_norms_aligned(tmp_path):
    import sgdscope as sg

    model = torch.nn.Linear(3, 2)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 3, generator=g), torch.randint(0, 2, (32,), generator=g)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with sg.TrajectoryRecorder(
        tmp_path / "t", model, gradient_data=(x, y), gradient_every=1,
        loss_fn=torch.nn.CrossEntropyLoss(reduction="none"),
    ) as rec:  # fmt: skip
        for _ in range(600):
            b = torch.randint(0, 32, (4,), generator=g)
            loss = torch.nn.functional.cross_entropy(model(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            rec.step(loss=loss)
    res = _invoke(["analyze", tmp_path / "t", "--out", tmp_path / "a", "--start", "300",
                   "--surrogates", "19"])  # fmt: skip
    assert res.exit_code == 0, res.output
    s = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert s["snapshots"] == 300 and s["window"]["first_step"] == 301
    assert s["gradient_norm"] is not None


# ------------------------------------------------------------------------------------- progress
def test_progress_in_a_log_is_plain_lines_with_counts(monkeypatch):
    monkeypatch.setattr(_progress, "_LOG_EVERY", 0.0)
    log = io.StringIO()
    with _progress.progress_bar("D products", 3, stream=log) as advance:
        for _ in range(3):
            advance(1)
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("D products: 0/3 started")
    assert any(line.startswith("D products: 2/3 done") and "left" in line for line in lines)
    assert lines[-1].startswith("D products: 3/3 done (finished)")
    assert all(line.strip() for line in lines) and "\x1b" not in log.getvalue()


def test_progress_in_a_log_is_rate_limited():
    log = io.StringIO()
    with _progress.progress_bar("passes", None, stream=log) as advance:
        for _ in range(1000):
            advance(1)
    assert log.getvalue().splitlines() == [
        line for line in log.getvalue().splitlines() if line.startswith("passes: ")
    ]
    assert len(log.getvalue().splitlines()) == 2  # started and finished, nothing in between
    assert "1,000 done (finished)" in log.getvalue()
