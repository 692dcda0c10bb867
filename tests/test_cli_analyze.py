"""`sgdscope analyze` on a .npy array and on a recorded trajectory; clean errors on bad input."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from sgdscope.cli import main

from .trajectory._analysis_processes import rotated_ou


@pytest.fixture
def rotated_npy(tmp_path):
    x, *_ = rotated_ou(0.8, 2000, seed=0)
    rng = np.random.default_rng(1)
    wide = x @ np.linalg.qr(rng.standard_normal((6, 6)))[0][:2] + 0.01 * rng.standard_normal(
        (2000, 6)
    )
    path = tmp_path / "traj.npy"
    np.save(path, wide)
    return path


def test_analyze_npy_writes_figures_and_summary(rotated_npy, tmp_path):
    out = tmp_path / "out"
    res = CliRunner().invoke(
        main, ["analyze", str(rotated_npy), "--out", str(out), "--surrogates", "49"]
    )
    assert res.exit_code == 0, res.output
    assert "Out of equilibrium" in res.output
    for name in ("spectrum", "autocorrelation", "msd", "flux", "equilibrium"):
        assert (out / f"{name}.png").stat().st_size > 1000
    summary = json.loads((out / "summary.json").read_text())
    assert summary["snapshots"] == 2000 and summary["dim"] == 6
    assert summary["equilibrium"]["out_of_equilibrium"] is True
    assert summary["gradient_norm"] is None


def test_analyze_projected(rotated_npy, tmp_path):
    out = tmp_path / "out"
    res = CliRunner().invoke(
        main,
        [
            "analyze",
            str(rotated_npy),
            "--out",
            str(out),
            "--project",
            "pca:2",
            "--surrogates",
            "19",
        ],
    )
    assert res.exit_code == 0, res.output
    assert (
        json.loads((out / "summary.json").read_text())["coordinates"]
        == "top-2 principal components"
    )


def test_analyze_recorded_trajectory(tmp_path):
    from sgdscope import TrajectoryRecorder

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    data = torch.randn(64, 3), torch.randn(64, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    path = tmp_path / "run"
    gen = torch.Generator().manual_seed(0)
    with TrajectoryRecorder(path, model, lr=0.05, batch_size=8) as rec:
        for _ in range(400):
            idx = torch.randint(0, 64, (8,), generator=gen)
            opt.zero_grad()
            loss = ((model(data[0][idx]) - data[1][idx]) ** 2).mean()
            loss.backward()
            gnorm = torch.cat([p.grad.flatten() for p in model.parameters()]).norm().item()
            opt.step()
            rec.step(loss=loss.item(), grad_norm=gnorm)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["analyze", str(path), "--out", str(out), "--surrogates", "19"])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dim"] == 4 and summary["snapshots"] == 400
    # the recorded grad_norm scalar gives the Fig. 3c panel
    assert summary["gradient_norm"]["dim"] == 4
    assert (out / "gradient_norm.png").exists()


def test_analyze_errors(tmp_path):
    runner = CliRunner()
    notraj = tmp_path / "empty"
    notraj.mkdir()
    res = runner.invoke(main, ["analyze", str(notraj), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "neither a trajectory directory nor a .npy array" in res.output
    short = tmp_path / "short.npy"
    np.save(short, np.random.default_rng(0).standard_normal((15, 3)).cumsum(0))
    res = runner.invoke(main, ["analyze", str(short), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "snapshots, but at least" in res.output
    nan = tmp_path / "nan.npy"
    arr = np.random.default_rng(0).standard_normal((300, 3)).cumsum(0)
    arr[5, 1] = np.nan
    np.save(nan, arr)
    res = runner.invoke(main, ["analyze", str(nan), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "non-finite value" in res.output
    cube = tmp_path / "cube.npy"
    np.save(cube, np.zeros((3, 3, 3)))
    res = runner.invoke(main, ["analyze", str(cube), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "expected (T, d)" in res.output
    res = runner.invoke(
        main, ["analyze", str(short), "--out", str(tmp_path / "o"), "--project", "ica:2"]
    )
    assert res.exit_code == 2 and "expected 'none' or 'pca:K'" in res.output


def test_analyze_refuses_newer_format(tmp_path):
    from sgdscope import TrajectoryRecorder

    path = tmp_path / "run"
    with TrajectoryRecorder(path, torch.nn.Linear(2, 1), lr=0.1, batch_size=1) as rec:
        for _ in range(5):
            rec.step(loss=1.0)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = 99
    (path / "manifest.json").write_text(json.dumps(manifest))
    res = CliRunner().invoke(main, ["analyze", str(path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "Upgrade sgdscope" in res.output
