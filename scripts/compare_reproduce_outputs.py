"""Compare two ``sgdscope reproduce`` output folders number by number.

Reads ``OUT/report/results.json`` of both and compares every experiment's fields exactly: numbers,
verdicts, measured texts, notes, configuration. Wall times (fields whose name holds ``seconds``,
``per_second``, ``hours``, ``eta``, ``updated``, ``generated`` or ``environment``, and texts that
differ only in such times) are counted apart, since they change from run to run. Used to check
that a refactoring of ``reproduce`` leaves ``--quick`` unchanged (same seeds, same numbers).

Usage:
    python scripts/compare_reproduce_outputs.py OUT_BEFORE OUT_AFTER

Exits 0 when nothing but wall times differs, 1 otherwise.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import Any

TIMING = ("seconds", "per_second", "hours", "generated", "environment", "updated", "eta")
Diff = tuple[tuple[Any, ...], Any, Any]


def _untimed(text: str) -> str:
    """The text with wall times (``12 s``, ``3.4 epochs/s``, ``about 1.2 h``) blanked."""
    text = re.sub(r"[\d.,]+ s\b", "T s", text)
    text = re.sub(r"[\d.,]+ epochs/s", "T epochs/s", text)
    return re.sub(r"about [\d.,]+ h", "about T h", text)


def _is_timing(path: tuple[Any, ...]) -> bool:
    return any(t in str(k) for k in path for t in TIMING)


def walk(a: Any, b: Any, path: tuple[Any, ...], diffs: list[Diff], timing: list[Diff]) -> None:
    """Append every leaf where ``a`` and ``b`` differ to ``diffs`` (wall times to ``timing``)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k in a and k in b:
                walk(a[k], b[k], (*path, k), diffs, timing)
            else:
                where = "only in A" if k in a else "only in B"
                (timing if _is_timing((*path, k)) else diffs).append(
                    ((*path, k), where, a.get(k, b.get(k)))
                )
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            (timing if _is_timing(path) else diffs).append((path, len(a), len(b)))
        for i, (x, y) in enumerate(zip(a, b, strict=False)):  # a length change is noted above
            walk(x, y, (*path, i), diffs, timing)
    elif not (
        a == b
        or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
    ):
        if isinstance(a, str) and isinstance(b, str) and _untimed(a) == _untimed(b):
            timing.append((path, a, b))
        else:
            (timing if _is_timing(path) else diffs).append((path, a, b))


def _experiments(out: Path) -> dict[str, Any]:
    combined = json.loads((out / "report" / "results.json").read_text())
    return {e["name"]: e for e in combined["experiments"]}


def main(before: Path, after: Path) -> int:
    """Print the differences between two outputs; 1 if anything but wall times differs."""
    ea, eb = _experiments(before), _experiments(after)
    diffs: list[Diff] = []
    timing: list[Diff] = []
    walk(ea, eb, (), diffs, timing)
    print(f"{len(diffs)} differences; {len(timing)} wall-time fields differ")
    for path, x, y in diffs:
        print("DIFF", "/".join(map(str, path)), "|", repr(x)[:300], "|", repr(y)[:300])

    def verdicts(e: dict[str, Any]) -> dict[tuple[str, str], str]:
        return {(n, c["key"]): c["verdict"] for n, x in e.items() for c in x["comparisons"]}

    same = verdicts(ea) == verdicts(eb)
    print(f"verdicts identical: {same} ({len(verdicts(ea))} rows)")
    return 0 if not diffs else 1


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
