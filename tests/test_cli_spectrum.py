import json

import numpy as np
import torch
from click.testing import CliRunner

from sgdscope.cli import main
from sgdscope.paper import models


def test_spectrum_command_writes_summary_figure_and_eigenvalues(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["spectrum", "--model", "tiny-fc", "--n-samples", "200", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "rank" in result.output and "λ_max · d · ε_float32" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dim"] == 917 and summary["n_samples"] == 200
    assert summary["method"] == "gram" and summary["reason"].startswith("auto")
    assert 0 < summary["rank"] <= 199
    assert summary["layout"]["params"][0]["name"] == "1.weight"
    eig = np.load(out / "eigenvalues.npy")
    assert eig.size == 199 and np.all(np.diff(eig) <= 0)
    assert (out / "spectrum.png").stat().st_size > 10_000


def test_spectrum_command_reads_a_checkpoint(tmp_path):
    model = models.build("tiny-fc", seed=3)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "ckpt.pt")
    args = [
        "spectrum",
        "--model",
        "tiny-fc",
        "--n-samples",
        "100",
        "--k",
        "5",
        "--method",
        "randomized",
    ]
    result = CliRunner().invoke(
        main, [*args, "--checkpoint", str(tmp_path / "ckpt.pt"), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["checkpoint"].endswith("ckpt.pt") and len(summary["top_eigenvalues"]) == 5


def test_spectrum_command_rejects_a_foreign_checkpoint(tmp_path):
    torch.save(models.build("small-fc").state_dict(), tmp_path / "other.pt")
    result = CliRunner().invoke(
        main,
        [
            "spectrum",
            "--model",
            "tiny-fc",
            "--checkpoint",
            str(tmp_path / "other.pt"),
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2
    assert "does not hold a state_dict of this network" in result.output
