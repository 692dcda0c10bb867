import json

import pytest
from click.testing import CliRunner

from sgdscope.cli import main


def _run(args, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        ["toy", *args, "--grid", "40", "--time", "0.5", "--particles", "50", "--out", str(out)],
    )
    return result, out


def test_toy_double_well_writes_figures_and_summary(tmp_path):
    result, out = _run(["double_well", "--lam", "0.5"], tmp_path)
    assert result.exit_code == 0, result.output
    assert (out / "drift.png").stat().st_size > 0 and (out / "toy.png").stat().st_size > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["params"] == {"lam": 0.5}
    ss = summary["steady_state"]
    assert ss["detailed_balance"] is False and ss["assumption4"] is False
    kinds = sorted(p["kind"] for p in ss["critical_points_potential"])
    assert kinds == ["min", "min", "saddle"]
    # Φ = (x1²−1)²/4 + x2²/2 for every λ (Example 19), to the accuracy of a 40² grid.
    assert summary["known_potential_max_error"] < 0.05
    fe = summary["free_energy"]
    assert fe["monotone"] and fe["max_mass_error"] < 1e-12
    assert summary["sde"]["particles"] == 50
    assert "Assumption 4: False" in result.output


def test_toy_state_dependent_reports_the_shift(tmp_path):
    result, out = _run(["state_dependent", "--beta", "2"], tmp_path)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    (cp,) = summary["steady_state"]["critical_points_potential"]
    (known,) = summary["known_critical_points_potential"]
    assert cp["kind"] == known["kind"] == "min"
    assert abs(cp["location"][0] - known["location"][0]) < 0.02


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["quadratic", "--lam", "1"], "--lam applies to double_well and accel"),
        (["mexican_hat"], "is not one of 'double_well'"),
        (["accel", "--lam", "10"], "too coarse for the drift"),
    ],
)
def test_toy_bad_input(args, match, tmp_path):
    result, _ = _run(args, tmp_path)
    assert result.exit_code != 0
    assert match in result.output
