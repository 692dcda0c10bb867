"""The protocol every experiment of ``sgdscope reproduce`` follows.

An experiment (``spectra``, ``trajectory``, ``toy``, ``scaling``) is a sub-package with the same
rooms: ``settings`` (a frozen :class:`AbstractSettings` subclass), ``measure`` (the computation,
returning typed records), ``claims`` (the paper's claims as :class:`Claim` data and the functions
that judge the records against them) and ``figures``; its ``__init__`` holds ``run(ctx,
settings)`` and the :class:`Experiment` entry that the registry of
:mod:`sgdscope.reproduce` lists and the CLI iterates.

This module holds what the four share:

- :class:`Claim`: one number or statement of the paper, as data (key, claim, the paper's value),
  turned into a table row by :meth:`Claim.judge` or :meth:`Claim.skipped`;
- :func:`grade`: the one "all checks / some checks / none" ladder of the verdicts;
- :class:`AbstractSettings`: validation at construction, :meth:`~AbstractSettings.quick` /
  :meth:`~AbstractSettings.full`, and one rule for a reduced run
  (:attr:`~AbstractSettings.is_reduced`, :meth:`~AbstractSettings.reduction`);
- :class:`Experiment`: the registry entry.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from ..report.results import Comparison, ExperimentResult, Verdict
from .context import RunContext

__all__ = ["EMBEDDED_DATA", "AbstractSettings", "Claim", "Experiment", "grade"]

_S = TypeVar("_S", bound="AbstractSettings")

#: How a run on the embedded MNIST subset (no ``--data-dir``) is described as reduced.
EMBEDDED_DATA = "embedded MNIST subset"


@dataclass(frozen=True)
class Claim:
    """One claim of the paper, as data: the row's key, what is compared and the paper's value.

    Attributes:
        key: Stable identifier of the row in ``results.json`` (e.g. ``"fig1a.rank_percent"``).
        claim: What is compared, citing the paper's figure, remark or theorem.
        paper: The paper's value or statement, as printed.
    """

    key: str
    claim: str
    paper: str

    def judge(
        self, measured: str, verdict: Verdict, note: str = "", *, paper: str | None = None
    ) -> Comparison:
        """The table row of this claim for what was measured.

        Args:
            measured: What this run measured, with units and the setting it depends on.
            verdict: The verdict (usually from :func:`grade`).
            note: Why the verdict, and what differs from the paper's setting.
            paper: The paper's value when it depends on the run (e.g. a rank "≈ 62 of 3,474"
                for the measured d); None keeps :attr:`paper`.

        Returns:
            The :class:`Comparison` row.
        """
        return Comparison(
            self.key, self.claim, self.paper if paper is None else paper, measured, verdict, note
        )

    def skipped(self, why: str, *, measured: str = "—", paper: str | None = None) -> Comparison:
        """The row of a claim this run could not test (``Verdict.NOT_TESTABLE``), saying why."""
        return self.judge(measured, Verdict.NOT_TESTABLE, why, paper=paper)


def grade(*checks: bool, partly: bool | None = None) -> Verdict:
    """The verdict of a claim judged by several checks.

    Reproduced when every check holds; partly reproduced when ``partly`` holds (by default: when
    some check holds); not reproduced otherwise.

    Args:
        *checks: What must all hold for the claim to be reproduced.
        partly: What suffices for "partly reproduced" when not all checks hold; None means "any
            check holds".

    Returns:
        The :class:`Verdict`.

    Example:
        >>> grade(True, True).value, grade(True, False).value, grade(False, False).value
        ('reproduced', 'partly reproduced', 'not reproduced')
        >>> grade(True, False, partly=False).value
        'not reproduced'
    """
    if all(checks):
        return Verdict.REPRODUCED
    if any(checks) if partly is None else partly:
        return Verdict.PARTLY
    return Verdict.NOT_REPRODUCED


@dataclass(frozen=True)
class AbstractSettings(abc.ABC):
    """Base of every experiment's settings: frozen, validated when built, quick or full.

    A subclass is a frozen dataclass whose fields are the sizes of the experiment; it writes
    :meth:`validate` (called at construction: a bad value raises ``ValueError`` naming the field,
    the value and the fix), :meth:`quick` and, where words say it better than the list of changed
    fields, :meth:`describe_reduction`. :meth:`full` is the paper's protocol, the defaults.

    One rule decides whether a run is reduced, for every experiment: its settings differ from
    :meth:`full` in a field that changes what is measured (:attr:`is_reduced`; the fields that
    do not are listed in :attr:`NOT_REDUCING`), or it read the embedded MNIST subset instead of
    the whole data set (:meth:`reduction`).
    """

    #: Where the settings are given, for error messages (e.g. ``"sgdscope.reproduce.toy.Settings"``).
    WHERE: ClassVar[str]
    #: Fields that do not change what is measured (e.g. how often a run saves a resume point).
    NOT_REDUCING: ClassVar[frozenset[str]] = frozenset()

    def __post_init__(self) -> None:
        self.validate()

    @abc.abstractmethod
    def validate(self) -> None:
        """Check every field; raise ``ValueError`` naming the field, the value and the fix."""

    @classmethod
    @abc.abstractmethod
    def quick(cls: type[_S]) -> _S:
        """Reduced sizes for ``--quick`` (embedded data, a few minutes on two CPU cores)."""

    @classmethod
    def full(cls: type[_S]) -> _S:
        """The paper's protocol: the defaults."""
        return cls()

    @classmethod
    def for_run(cls: type[_S], ctx: RunContext) -> _S:
        """:meth:`quick` for a ``--quick`` run, else :meth:`full`."""
        return cls.quick() if ctx.quick else cls.full()

    def changed(self) -> list[str]:
        """The fields that differ from :meth:`full`, except those in :attr:`NOT_REDUCING`."""
        full = type(self).full()
        return [
            f.name
            for f in dataclasses.fields(self)
            if f.name not in self.NOT_REDUCING and getattr(self, f.name) != getattr(full, f.name)
        ]

    @property
    def is_reduced(self) -> bool:
        """Whether these settings change what is measured against :meth:`full` (the paper's)."""
        return bool(self.changed())

    def describe_reduction(self) -> str:
        """What these settings change against :meth:`full`, in words (each field and its full value)."""
        full = type(self).full()
        return ", ".join(
            f"{name} {getattr(self, name)!r} (full {getattr(full, name)!r})"
            for name in self.changed()
        )

    def reduction(self, *, embedded_data: bool = False, **detail: Any) -> str:
        """What makes a run with these settings reduced, in words; ``""`` for the paper's protocol.

        Args:
            embedded_data: Whether the run read the embedded MNIST subset.
            **detail: Passed to :meth:`describe_reduction` (e.g. which panels ran).

        Returns:
            The reduction in words, or ``""``.
        """
        parts = [self.describe_reduction(**detail)] if self.is_reduced else []
        if embedded_data:
            parts.append(EMBEDDED_DATA)
        return "; ".join(parts)


@dataclass(frozen=True)
class Experiment:
    """One experiment of ``sgdscope reproduce``, as the registry lists it.

    Attributes:
        name: Folder and CLI name (``"spectra"``, ``"trajectory"``, ``"toy"``, ``"scaling"``).
        title: Heading in the report, citing the paper's figures or remarks.
        settings: Its settings class.
        run: ``run(ctx, settings=None) -> ExperimentResult``; None settings means
            ``settings.for_run(ctx)``. Saves ``OUT/<name>/result.json`` and resumes from what an
            earlier call on the same folder left.
        this_call: ``this_call(result) -> (seconds, reused)``: the wall time of this call and
            what it reused from earlier calls (None: nothing), for the CLI's summary line.
    """

    name: str
    title: str
    settings: type[AbstractSettings]
    run: Callable[..., ExperimentResult]
    this_call: Callable[[ExperimentResult], tuple[float | None, str | None]]

    def settings_for(
        self, ctx: RunContext, overrides: dict[str, Any] | None = None
    ) -> AbstractSettings:
        """The settings of a run: quick or full from ``ctx``, with ``overrides`` replaced."""
        base = self.settings.for_run(ctx)
        return dataclasses.replace(base, **overrides) if overrides else base
