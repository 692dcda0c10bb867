"""`sgdscope spectrum --model package.module:function`: a user's own model, alone or under torchrun."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import sgdscope as sg
from sgdscope.cli import main

from .factories import tiny_mlp
from .noise.ranks import run_ranks

ROOT = Path(__file__).resolve().parents[1]


def _invoke(args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _reference(**kwargs):
    model, loss, data = tiny_mlp()
    return sg.GradientNoise(model.eval(), loss, data, **kwargs)


def test_factory_model_writes_results_that_equal_the_library(tmp_path):
    out = tmp_path / "o"
    res = _invoke(["spectrum", "--model", "tests.factories:tiny_mlp", "--method", "gram",
                   "--per-group", "layer", "--out", out])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "memory plan" in res.output and "(fits)" in " ".join(res.output.split())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_samples"] == 30 and summary["dim"] == 51 and summary["world_size"] == 1
    ref = _reference().spectrum(method="gram")
    np.testing.assert_allclose(np.load(out / "eigenvalues.npy"), ref.eigenvalues, rtol=1e-12)
    groups = json.loads((out / "groups.json").read_text())
    assert set(groups) == {"0", "2"}
    assert (out / "spectrum.png").stat().st_size > 10_000
    assert not list(out.glob(".*partial*"))


def test_factory_returning_a_dict_and_a_params_glob(tmp_path):
    res = _invoke(["spectrum", "--model", "tests.factories:as_dict", "--params", "2.*",
                   "--n-samples", "20", "--out", tmp_path])  # fmt: skip
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["dim"] == 6 * 3 + 3 and summary["n_samples"] == 20
    assert summary["params"] == ["2.weight", "2.bias"]


def _usage(res, *words):
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    assert "Traceback" not in text
    for w in words:
        assert w in text, (w, res.output)


@pytest.mark.parametrize(
    ("model", "words"),
    [
        ("resnet", ["neither one of the paper's networks", "package.module:function"]),
        ("no_such_module:f", ["cannot import module 'no_such_module'", "PYTHONPATH"]),
        ("tests.factories:missing", ["has no function 'missing'", "tests.factories:NAME"]),
        ("tests.factories:NOT_CALLABLE", ["has no function 'NOT_CALLABLE'"]),
        ("tests.factories:not_a_triple", ["returned int", "(model, loss_fn, data)"]),
        ("tests.factories:scalar_loss", ["per-sample losses", "reduction='none'"]),
    ],
)
def test_bad_factories_are_usage_errors(tmp_path, model, words):
    _usage(_invoke(["spectrum", "--model", model, "--out", tmp_path / "o"]), *words)
    assert not (tmp_path / "o" / "summary.json").exists()


def test_params_that_match_nothing_and_a_bad_size(tmp_path):
    res = _invoke(["spectrum", "--model", "tests.factories:tiny_mlp", "--params", "fc.*",
                   "--out", tmp_path])  # fmt: skip
    _usage(res, "--params", "'fc.*' matches none", "0.weight")
    res = _invoke(["spectrum", "--model", "tests.factories:tiny_mlp", "--memory-budget", "lots",
                   "--out", tmp_path])  # fmt: skip
    _usage(res, "--memory-budget", "'lots' is not a size", "2GiB")


def test_a_plan_over_the_budget_is_refused_with_numbers_before_any_pass(tmp_path):
    res = _invoke(["spectrum", "--model", "tests.factories:tiny_mlp", "--method", "gram",
                   "--memory-budget", "40KiB", "--out", tmp_path])  # fmt: skip
    _usage(res, "the memory plan does not fit", "budget of 40,960", "pass --k",
           "raise --memory-budget to at least")  # fmt: skip
    assert "does NOT fit" in res.output and "mean gradient" not in res.output
    assert not (tmp_path / "summary.json").exists()


def test_torchrun_two_processes_equal_one(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "-m", "sgdscope", "spectrum", "--model", "tests.factories:tiny_mlp",
           "--method", "randomized", "--k", "4", "--out", str(tmp_path)]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("memory plan per rank, 2 ranks") == 1  # rank 0 alone prints
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["n_samples"] == 30
    ref = _reference().spectrum(k=4, method="randomized", seed=0)
    np.testing.assert_allclose(summary["top_eigenvalues"], ref.eigenvalues, rtol=1e-8)


def _cli_rank(rank, world, out):
    torch.set_num_threads(1)
    res = CliRunner().invoke(main, ["spectrum", "--model", "tests.factories:nan_on_rank_1",
                                    "--out", out])  # fmt: skip
    return res.exit_code, " ".join(res.output.split())


def test_a_failing_rank_stops_the_cli_on_every_rank_and_writes_nothing(tmp_path):
    results = run_ranks(_cli_rank, 2, tmp_path / "ranks", str(tmp_path / "o"))
    assert [r[0] for r in results] == ["ok", "ok"], results
    (code0, text0), (code1, text1) = (r[1] for r in results)
    assert code0 == code1 == 1
    assert "rank 1 of 2 stopped in the mean gradient and trace" in text0
    assert "FloatingPointError" in text1
    assert not any((tmp_path / "o").iterdir())
