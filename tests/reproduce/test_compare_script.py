"""scripts/compare_reproduce_outputs.py: finds every changed number, verdict or text of two
``reproduce`` outputs, and only wall times pass as unchanged."""

import copy
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "scripts" / "compare_reproduce_outputs.py"
SAMPLE = {
    "name": "toy",
    "seconds": 12.5,
    "reduced_note": "grid 112²",
    "comparisons": [{"key": "a", "verdict": "reproduced", "measured": "x = 0.10"}],
    "numbers": {"wells": [{"chi2_p": 0.5, "sde_seconds": 1.0}], "nan": float("nan")},
    "notes": ["Measuring D took 27 s on cpu."],
}


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("compare_reproduce_outputs", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _out(root: Path, experiment: dict) -> Path:
    (root / "report").mkdir(parents=True)
    (root / "report" / "results.json").write_text(json.dumps({"experiments": [experiment]}))
    return root


def test_only_wall_times_differ(tmp_path, script, capsys):
    b = copy.deepcopy(SAMPLE)
    b["seconds"], b["numbers"]["wells"][0]["sde_seconds"] = 99.0, 7.0
    b["notes"] = ["Measuring D took 3,210 s on cpu."]
    assert script.main(_out(tmp_path / "a", SAMPLE), _out(tmp_path / "b", b)) == 0
    assert "0 differences; 3 wall-time fields differ" in capsys.readouterr().out


def test_a_changed_number_verdict_or_text_is_reported(tmp_path, script, capsys):
    b = copy.deepcopy(SAMPLE)
    b["numbers"]["wells"][0]["chi2_p"] = 0.5000001
    b["comparisons"][0]["verdict"] = "partly reproduced"
    b["reduced_note"] = "grid 112²; embedded MNIST subset"
    del b["notes"]
    assert script.main(_out(tmp_path / "a", SAMPLE), _out(tmp_path / "b", b)) == 1
    out = capsys.readouterr().out
    assert "4 differences" in out and "verdicts identical: False" in out
    for where in ("toy/numbers/wells/0/chi2_p", "toy/comparisons/0/verdict", "toy/reduced_note",
                  "toy/notes | 'only in A'"):  # fmt: skip
        assert where in out
