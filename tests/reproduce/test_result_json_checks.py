"""A damaged or crafted result.json is refused with the file named, and its experiment name can
never point the report outside OUT (D15)."""

import json
import math
import shutil
from pathlib import Path

import pytest

from sgdscope.reproduce import html_report
from sgdscope.reproduce.results import ExperimentResult, FigureRef

FIGURE = Path(__file__).parents[2] / "docs" / "figures" / "spectrum_small_lenet_init.png"


def _write(out, d, folder="x"):
    (out / folder).mkdir(parents=True, exist_ok=True)
    (out / folder / "result.json").write_text(json.dumps(d))


def test_a_name_outside_out_is_refused_and_nothing_is_embedded(tmp_path):
    private = tmp_path / "private"
    private.mkdir()
    shutil.copy(FIGURE, private / "secret.png")
    r = ExperimentResult(
        name=str(private), title="t", reduced=False, figures=[FigureRef("secret.png", "c")]
    )
    out = tmp_path / "rep"
    _write(out, r.to_dict())
    with pytest.raises(ValueError, match=r"x/result\.json.*one folder name inside OUT"):
        html_report.render_report(out)
    for name in ("../private", "..", "a/b", ""):
        _write(out, {**r.to_dict(), "name": name})
        with pytest.raises(ValueError, match=r"result\.json"):
            html_report.render_report(out)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("seconds", "abc", r"'seconds' is str"),
        ("seconds", math.nan, r"'seconds' must be a finite number"),
        ("seconds", math.inf, r"'seconds' must be a finite number"),
        ("seconds", True, r"'seconds' is bool"),
        ("figures", [{"path": 1, "caption": "c"}], r"figure 0 must have a text 'path'"),
        ("config", [1, 2], r"'config' is list, not dict"),
        ("notes", [1], r"'notes' must be a list of text"),
        ("reduced", "yes", r"'reduced' is str"),
        ("comparisons", [{"key": 1}], r"comparison 0 is not an object"),
    ],
)
def test_field_types_are_checked_with_the_file_named(tmp_path, field, value, match):
    d = ExperimentResult(name="toy", title="t", reduced=False).to_dict()
    d[field] = value
    path = tmp_path / "toy" / "result.json"
    path.parent.mkdir()
    path.write_text(json.dumps(d))  # NaN and inf are written as the JSON extensions
    with pytest.raises(ValueError, match=r"toy/result\.json' is not a result") as info:
        ExperimentResult.load(path)
    assert info.match(match)
    with pytest.raises(ValueError, match="delete it or rerun"):
        html_report.render_report(tmp_path)


def test_a_valid_result_still_loads(tmp_path):
    r = ExperimentResult(name="toy", title="t", reduced=True, seconds=3, notes=["n"])
    path = r.save(tmp_path / "toy")
    assert ExperimentResult.load(path).seconds == 3
