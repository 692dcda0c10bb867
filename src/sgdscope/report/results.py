"""What an experiment of ``sgdscope reproduce`` hands to the report: numbers, verdicts, figures.

Every experiment (``spectra``, ``trajectory``, ``toy``, ``scaling``) returns one
:class:`ExperimentResult` and saves it as ``OUT/<name>/result.json``. The HTML report and the
combined ``OUT/report/results.json`` are built from those files alone
(:func:`sgdscope.report.render_report`), so an experiment can be rerun on its own and the report
re-rendered from what is on disk (``sgdscope reproduce report``).

A :class:`Comparison` is one row of the "paper against measured" table: one number or claim of
the paper (§IV-A–B, Figs 1–4, Remarks 11–18; the paper's value as printed), what this run measured,
and a :class:`Verdict`.

A ``result.json`` is data from disk, not code: :meth:`ExperimentResult.load` checks the type of
every field and that the experiment's ``name`` is the folder the file lies in, so that a damaged
or crafted file is refused by name and can never point the report outside ``OUT``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "RESULT_FILE",
    "Comparison",
    "ExperimentResult",
    "FigureRef",
    "Verdict",
    "collect_results",
    "environment",
    "verdict_counts",
]

RESULT_FILE = "result.json"  #: file name of a saved ExperimentResult inside its experiment folder.


class Verdict(str, Enum):
    """How a measured number compares with the paper's claim."""

    REPRODUCED = "reproduced"
    PARTLY = "partly reproduced"
    NOT_REPRODUCED = "not reproduced"
    NOT_TESTABLE = "not testable here"


@dataclass(frozen=True)
class Comparison:
    """One row of the paper-against-measured table.

    Attributes:
        key: Stable identifier, e.g. ``"fig1a.rank_percent"`` (used in ``results.json``).
        claim: What is compared, in words, with the paper's figure or remark
            (e.g. ``"Fig. 1a: rank(D) as % of d, small-lenet on MNIST"``).
        paper: The paper's value or statement, as printed (e.g. ``"1.8 %"``).
        measured: What this run measured, with units and the setting it depends on.
        verdict: Reproduced, partly, not reproduced, or not testable here.
        note: Why the verdict, and what differs from the paper's setting.
    """

    key: str
    claim: str
    paper: str
    measured: str
    verdict: Verdict
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the row as a JSON-ready dict (the verdict as its text)."""
        d = asdict(self)
        d["verdict"] = self.verdict.value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Comparison:
        """Rebuild a row written by :meth:`to_dict`."""
        return cls(**{**d, "verdict": Verdict(d["verdict"])})


@dataclass(frozen=True)
class FigureRef:
    """A figure an experiment drew: a file inside its folder and a caption for the report."""

    path: str  # relative to the experiment folder
    caption: str


def environment() -> dict[str, Any]:
    """Versions and machine, for the report's configuration section.

    Returns:
        ``sgdscope``, ``python``, ``torch``, ``numpy``, ``scipy`` and ``matplotlib`` versions, the
        platform, processor, CPU count, torch's thread count and the CUDA device (or None).
    """
    import torch

    def version(pkg: str) -> str | None:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    return {
        "sgdscope": version("sgdscope"),
        "python": sys.version.split()[0],
        **{pkg: version(pkg) for pkg in ("torch", "numpy", "scipy", "matplotlib")},
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


@dataclass(frozen=True)
class ExperimentResult:
    """Everything one experiment of ``sgdscope reproduce`` reports; built once, never changed.

    The sequences are stored as tuples and the mappings as copies of what was passed, so a
    result does not change after construction (build the lists first, then the result).

    Attributes:
        name: Folder and key: ``"spectra"``, ``"trajectory"``, ``"toy"`` or ``"scaling"``; one
            plain folder name (no separator, not ``.`` or ``..``).
        title: Heading in the report, citing the paper's figures (e.g. ``"Figs 1–2: ..."``).
        reduced: True when run at reduced sizes (``--quick``); every figure and table of a
            reduced run is labelled as such in the report.
        reduced_note: What was reduced against the paper's protocol (sizes, epochs).
        config: The settings the experiment ran with (JSON-ready).
        seconds: Wall time of the experiment (finite, ≥ 0).
        comparisons: Rows of the paper-against-measured table.
        figures: Figures drawn, relative to the experiment folder.
        numbers: Every measured number, JSON-ready, for ``results.json``.
        notes: Free-text findings worth reading (one paragraph each).
        environment: Versions and machine (:func:`environment`); by default those of the
            process that builds the result, i.e. the one that ran the experiment.

    Raises:
        ValueError: If ``name`` is not one plain folder name or ``seconds`` is not a finite
            number ≥ 0.
        TypeError: If a comparison is not a :class:`Comparison` or a figure not a
            :class:`FigureRef`.
    """

    name: str
    title: str
    reduced: bool
    reduced_note: str = ""
    config: Mapping[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    comparisons: Sequence[Comparison] = ()  # stored as a tuple
    figures: Sequence[FigureRef] = ()  # stored as a tuple
    numbers: Mapping[str, Any] = field(default_factory=dict)
    notes: Sequence[str] = ()  # stored as a tuple
    environment: Mapping[str, Any] = field(default_factory=environment)

    def __post_init__(self) -> None:
        _check_name(self.name)
        if isinstance(self.seconds, bool) or not isinstance(self.seconds, int | float):
            raise TypeError(f"'seconds' is {type(self.seconds).__name__}, not a number")
        if not math.isfinite(self.seconds) or self.seconds < 0:
            raise ValueError(f"'seconds' must be a finite number >= 0, got {self.seconds!r}")
        for attr, kind in (("comparisons", Comparison), ("figures", FigureRef), ("notes", str)):
            items = tuple(getattr(self, attr))
            for i, item in enumerate(items):
                if not isinstance(item, kind):
                    raise TypeError(
                        f"item {i} of '{attr}' is {type(item).__name__}, not {kind.__name__}"
                    )
            object.__setattr__(self, attr, items)
        for attr in ("config", "numbers", "environment"):
            object.__setattr__(self, attr, dict(getattr(self, attr)))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (verdicts as text, sequences as lists)."""
        d = asdict(self)
        d["comparisons"] = [c.to_dict() for c in self.comparisons]
        d["figures"] = [asdict(f) for f in self.figures]
        d["notes"] = list(self.notes)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ExperimentResult:
        """Rebuild a result written by :meth:`to_dict`, checking every field's type first.

        Args:
            d: The dict (as read from ``result.json``).

        Returns:
            The result; a missing ``environment`` stays empty (it is not this machine's).

        Raises:
            TypeError: If ``d`` is not a dict or a field has the wrong type.
            ValueError: If a field has a value out of range (see the class).
        """
        if not isinstance(d, dict):
            raise TypeError(f"expected a JSON object, got {type(d).__name__}")
        d = dict(d)
        _check_fields(d)
        d["comparisons"] = tuple(Comparison.from_dict(c) for c in d.get("comparisons", []))
        d["figures"] = tuple(FigureRef(**f) for f in d.get("figures", []))
        d.setdefault("environment", {})
        return cls(**d)

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``directory/result.json`` atomically (a crash leaves the old file or the new).

        Args:
            directory: The experiment's folder (created if missing).

        Returns:
            The path written.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / RESULT_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, default=_jsonable))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ExperimentResult:
        """Read a ``result.json`` written by :meth:`save`.

        Args:
            path: The file.

        Returns:
            The result.

        Raises:
            ValueError: If the file is not JSON or not a result (wrong field types or values),
                with the file named and what to do.
        """
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError, KeyError, ValueError) as err:
            raise ValueError(
                f"{os.fspath(path)!r} is not a result written by sgdscope reproduce ({err}); "
                "delete it or rerun that experiment."
            ) from err


_TYPES: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "title": str,
    "reduced": bool,
    "reduced_note": str,
    "config": dict,
    "seconds": (int, float),
    "comparisons": list,
    "figures": list,
    "numbers": dict,
    "notes": list,
    "environment": dict,
}


def _check_name(name: object) -> None:
    """The experiment ``name`` becomes a folder of OUT: one plain path component."""
    if not isinstance(name, str):
        raise TypeError(f"'name' is {type(name).__name__}, not str")
    if not name or name in (".", "..") or any(c in name for c in "/\\\x00"):
        raise ValueError(f"'name' must be one folder name inside OUT, got {name!r}")


def _check_fields(d: dict[str, Any]) -> None:
    """Types of a result.json's fields, so that a damaged or crafted file is refused by name."""
    for key, kind in _TYPES.items():
        if key in d and (
            not isinstance(d[key], kind) or (kind is not bool and isinstance(d[key], bool))
        ):
            raise TypeError(f"field {key!r} is {type(d[key]).__name__}, not {_type_name(kind)}")
    for i, c in enumerate(d.get("comparisons", [])):
        if (
            not isinstance(c, dict)
            or not all(
                isinstance(c.get(k), str) for k in ("key", "claim", "paper", "measured", "verdict")
            )
            or not isinstance(c.get("note", ""), str)
        ):
            raise TypeError(f"comparison {i} is not an object of text fields")
    for i, f in enumerate(d.get("figures", [])):
        if not isinstance(f, dict) or not all(
            isinstance(f.get(k), str) for k in ("path", "caption")
        ):
            raise TypeError(f"figure {i} must have a text 'path' and 'caption'")
    if not all(isinstance(n, str) for n in d.get("notes", [])):
        raise TypeError("'notes' must be a list of text")


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _jsonable(value: Any) -> Any:
    """``json.dumps`` fallback: numpy scalars and arrays, paths, enums."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


#: Order of the experiments in the report (unknown names follow, alphabetically).
ORDER = ("spectra", "trajectory", "toy", "scaling")


def collect_results(out: str | os.PathLike[str]) -> list[ExperimentResult]:
    """Read every ``OUT/<name>/result.json`` under ``out``, in report order.

    A result is read only from its own folder: the ``name`` inside ``OUT/<folder>/result.json``
    must be ``<folder>``, so the report's figures (``OUT/<name>/<figure>``) always come from the
    folder where the result was found.

    Args:
        out: The output folder of ``sgdscope reproduce``.

    Returns:
        The results, ``spectra``, ``trajectory``, ``toy``, ``scaling`` first, then the others
        by name.

    Raises:
        ValueError: If a ``result.json`` is not a result (see :meth:`ExperimentResult.load`) or
            names another folder than its own.
    """
    found = []
    for path in sorted(Path(out).glob(f"*/{RESULT_FILE}")):
        result = ExperimentResult.load(path)
        if result.name != path.parent.name:
            raise ValueError(
                f"{os.fspath(path)!r} holds the result of experiment {result.name!r}, but a "
                f"result is read only from its own folder OUT/<name>: rename the folder to "
                f"{result.name!r}, move it out of {os.fspath(out)!r}, or rerun that experiment."
            )
        found.append(result)
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(found, key=lambda r: (rank.get(r.name, len(ORDER)), r.name))


def verdict_counts(results: Iterable[ExperimentResult]) -> dict[str, int]:
    """Count the comparison rows per verdict, every verdict listed (zeros included).

    Args:
        results: The experiments' results.

    Returns:
        ``{verdict text: count}`` in the order of :class:`Verdict`.
    """
    counts = Counter(c.verdict for r in results for c in r.comparisons)
    return {v.value: counts.get(v, 0) for v in Verdict}
