"""A damaged or crafted result.json is refused with the file named, and its experiment name can
never point the report outside OUT; an ExperimentResult is frozen once built."""

import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest

from sgdscope.report import render_report
from sgdscope.report.results import (
    Comparison,
    ExperimentResult,
    FigureRef,
    Verdict,
    collect_results,
)

FIGURE = Path(__file__).parents[2] / "docs" / "figures" / "spectrum_small_lenet_init.png"


def _write(out, d, folder="x"):
    (out / folder).mkdir(parents=True, exist_ok=True)
    (out / folder / "result.json").write_text(json.dumps(d))


def test_a_name_outside_out_is_refused_and_nothing_is_embedded(tmp_path):
    private = tmp_path / "private"
    private.mkdir()
    shutil.copy(FIGURE, private / "secret.png")
    crafted = {
        **ExperimentResult("x", "t", False, figures=[FigureRef("secret.png", "c")]).to_dict(),
        "name": str(private),
    }
    out = tmp_path / "rep"
    _write(out, crafted)
    with pytest.raises(ValueError, match=r"x/result\.json.*one folder name inside OUT"):
        render_report(out)
    for name in ("../private", "..", "a/b", "a\\b", "", "x\x00"):
        _write(out, {**crafted, "name": name})
        with pytest.raises(ValueError, match=r"result\.json"):
            render_report(out)
    assert not (out / "report" / "index.html").exists()


@pytest.mark.parametrize("name", ["../private", "..", ".", "a/b", "a\\b", ""])
def test_a_result_with_a_name_that_is_not_one_folder_cannot_be_built(name):
    with pytest.raises(ValueError, match=r"'name' must be one folder name inside OUT"):
        ExperimentResult(name, "t", False)


def test_a_result_is_read_only_from_its_own_folder(tmp_path):
    """A valid result copied into another folder would show that folder's figures as its own."""
    _write(tmp_path, ExperimentResult("toy", "t", False).to_dict(), folder="toy_old")
    with pytest.raises(
        ValueError,
        match=r"toy_old/result\.json' holds the result of experiment "
        r"'toy'.*rename the folder to 'toy'",
    ):
        collect_results(tmp_path)
    with pytest.raises(ValueError, match=r"toy_old/result\.json"):
        render_report(tmp_path)


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
        (
            "comparisons",
            [
                {
                    **dict.fromkeys(("key", "claim", "paper", "measured"), "t"),
                    "verdict": "reproduced",
                    "note": {"__html__": "<script>"},
                }
            ],
            r"comparison 0 is not an object of text fields",
        ),
        ("title", {"__html__": "<b>"}, r"'title' is dict, not str"),
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
        render_report(tmp_path)


def test_a_valid_result_still_loads(tmp_path):
    r = ExperimentResult(name="toy", title="t", reduced=True, seconds=3, notes=["n"])
    path = r.save(tmp_path / "toy")
    assert ExperimentResult.load(path).seconds == 3


def test_a_result_is_frozen_and_keeps_what_it_was_built_with():
    figures = [FigureRef("a.png", "a")]
    config = {"epochs": 2}
    r = ExperimentResult("toy", "t", False, config=config, figures=figures, notes=["n"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.seconds = 3.0  # type: ignore[misc]
    figures.append(FigureRef("b.png", "b"))
    config["epochs"] = 5
    assert r.figures == (FigureRef("a.png", "a"),) and r.config == {"epochs": 2}
    assert isinstance(r.notes, tuple) and isinstance(r.comparisons, tuple)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"seconds": math.nan}, ValueError, r"'seconds' must be a finite number >= 0, got nan"),
        ({"seconds": -1.0}, ValueError, r"'seconds' must be a finite number >= 0, got -1.0"),
        ({"seconds": "3"}, TypeError, r"'seconds' is str, not a number"),
        ({"notes": [1]}, TypeError, r"item 0 of 'notes' is int, not str"),
        ({"figures": ["a.png"]}, TypeError, r"item 0 of 'figures' is str, not FigureRef"),
        ({"comparisons": [{"key": "k"}]}, TypeError, r"item 0 of 'comparisons' is dict"),
    ],
)
def test_a_result_checks_its_fields_when_built(kwargs, error, match):
    with pytest.raises(error, match=match):
        ExperimentResult("toy", "t", False, **kwargs)


def test_round_trip_through_json_and_the_environment_of_the_run(tmp_path):
    row = Comparison("k", "claim", "1 %", "2 %", Verdict.PARTLY, "note")
    r = ExperimentResult("toy", "t", True, "half", {"a": [1, 2]}, 2.5, [row], [], {"x": 1.5})
    assert r.environment["python"] and "torch" in r.environment  # the process that built it
    assert ExperimentResult.load(r.save(tmp_path / "toy")) == r
    bare = {k: v for k, v in r.to_dict().items() if k != "environment"}
    # an old file without an environment does not get this machine's
    assert ExperimentResult.from_dict(bare).environment == {}
