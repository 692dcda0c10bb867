"""The package is type-clean: mypy, with the project's settings (``[tool.mypy]`` in pyproject.toml),
finds no error in ``src/sgdscope``.

sgdscope ships ``py.typed``, so its users' type checkers read its annotations as promises; an
annotation that the code does not keep is a bug they inherit. The second test is the check's
negative control: the same settings must report the errors a probe module is built to contain
(one in an unannotated function, which mypy skips unless ``check_untyped_defs`` is on).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy", reason="mypy is in the `test` extra: pip install -e '.[test]'")

ROOT = Path(__file__).resolve().parents[1]


def _mypy(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m mypy ARGS`` from the repository root (where pyproject.toml configures it)."""
    return subprocess.run(
        [sys.executable, "-m", "mypy", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_package_is_type_clean():
    run = _mypy()  # the targets (packages = ["sgdscope"]) and settings come from pyproject.toml
    report = run.stdout + run.stderr
    assert run.returncode == 0, f"mypy found errors in src/sgdscope:\n{report}"
    assert "Success: no issues found" in report
    assert "unused section" not in report, f"a [tool.mypy] section matches nothing:\n{report}"


def test_the_settings_report_the_errors_of_a_probe(tmp_path: Path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "def untyped():\n"
        "    count: int = 'three'\n"  # line 2: only seen with check_untyped_defs
        "    return count\n"
        "\n"
        "\n"
        "def first(values: list[int] | None) -> int:\n"
        "    return values[0]\n"  # line 7: None is not indexable
    )
    run = _mypy(
        "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", "/dev/null", str(probe)
    )
    report = run.stdout + run.stderr
    assert run.returncode == 1, report
    assert "probe.py:2: error" in report and "[assignment]" in report, report
    assert "probe.py:7: error" in report and "[index]" in report, report
