r"""What a recorded run shows: :func:`diagnose_run` gathers the analyses of the run dashboard.

One call reads a record (written by :class:`~sgdscope.Monitor`, a training callback, or a plain
:class:`~sgdscope.TrajectoryRecorder`) and computes, from what it holds:

- for a monitor's record, the overlap matrix of D's top-k eigenvectors between measurements
  (:meth:`MonitorRecord.overlaps`; Chaudhari & Soatto 2018, Remark 13 asks how D's top subspace
  moves along training), on at most ``max_overlaps`` measurements spread over the run;
- the equilibrium test (:func:`sgdscope.analysis.equilibrium_test`, which diagnoses
  stationarity first) on sliding windows of the trajectory, the last one ending at the last
  record, so that a verdict can be followed while the run trains (Fig. 3: does SGD settle, or
  circulate?);
- the increment spectrum (Fig. 3a), the autocorrelation (Fig. 3b) and the mean squared
  displacement of the weights after the transient (the first ``transient`` of the record, at most
  the last ``max_snapshots`` records), and the gradient norm (Fig. 3c).

All trajectory analyses use the same ``max_coordinates`` single weights of the record, drawn
uniformly with ``seed`` (the per-weight view of the paper's Fig. 3), so the cost is bounded
whatever d. A coordinate constant over a span (a frozen weight) is left out of that span.

The record may still be growing: it is read once, through the loaders' crash-safe reading
(everything committed when it is opened), so calling :func:`diagnose_run` again while training
runs gives the newer picture. A panel that cannot be computed is left out with the reason in
:attr:`RunDiagnosis.notes`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._progress import progress_bar
from .._validation import check_int, check_real
from ..trajectory import Trajectory, TrajectoryFormatError, load_trajectory
from ..trajectory.analysis import (
    MSD,
    Autocorrelation,
    EquilibriumTest,
    GradientNorm,
    PowerSpectrum,
    autocorrelation,
    equilibrium_test,
    gradient_norm,
    msd,
    power_spectrum,
)
from .monitor import VECTORS_STREAM
from .record import MonitorRecord, monitor_record

__all__ = ["MIN_WINDOW", "Panel", "RunDiagnosis", "WindowVerdict", "diagnose_run"]

MIN_WINDOW = 200
"""Snapshots an equilibrium test needs (its flux component: 20 blocks of ≥ 10 steps)."""

_WHERE = "diagnose_run"


class Panel:
    """Names of the dashboard's panels (the keys of :attr:`RunDiagnosis.notes`)."""

    TRAJECTORY = "trajectory"
    NOISE = "noise"
    OVERLAP = "overlap"
    TEMPERATURE = "temperature"
    LOSS = "loss"
    GRADIENT_NORM = "gradient_norm"
    WINDOWS = "windows"
    SPECTRUM = "spectrum"
    AUTOCORRELATION = "autocorrelation"
    MSD = "msd"


@dataclass(frozen=True)
class WindowVerdict:
    """The equilibrium test on one window of the record.

    Attributes:
        start: First record of the window (0-based).
        stop: One past its last record.
        first_step: Optimizer step of its first record.
        last_step: Optimizer step of its last record.
        n_coordinates: Single weights tested (those not constant over the window).
        test: The :class:`~sgdscope.analysis.EquilibriumTest`, or None when it could not run.
        problem: Why it could not run (empty when it ran).
    """

    start: int
    stop: int
    first_step: int
    last_step: int
    n_coordinates: int
    test: EquilibriumTest | None
    problem: str = ""

    @property
    def status(self) -> str:
        """The test's conclusion (``"not testable: not stationary"`` included), or why none."""
        if self.test is None:
            return "not tested"
        return self.test.status.value


@dataclass(frozen=True)
class RunDiagnosis:
    """The analyses of one recorded run, as :func:`diagnose_run` computed them.

    Attributes:
        path: The record's directory.
        trajectory: The trajectory as it was read (``trajectory.complete`` is False while the
            run still trains, or after a crash).
        record: The monitor's record (D's measurements), or None for a plain trajectory.
        coordinates: Int array (c,), the recorded coordinates the trajectory analyses use.
        span: ``(start, stop)``, the records the spectrum, autocorrelation and MSD use.
        overlap: Float64 array (m, m), the overlap ‖V_aᵀV_b‖²_F / k of D's top-k eigenvectors
            between measurements, or None (no eigenvectors kept, or no measurement).
        overlap_measurements: Int array (m,), the measurements ``overlap`` is about (indices
            into ``record.steps``).
        windows: The equilibrium test on each sliding window, oldest first.
        power_spectrum: Spectrum of the increments (Fig. 3a), or None.
        autocorrelation: Autocorrelation (Fig. 3b), or None.
        msd: Mean squared displacement, or None.
        gradient_norm: ‖∇f‖/√d and its EWMA (Fig. 3c), or None.
        notes: Panel name (:class:`Panel`) → why it is absent or what limits it.
        settings: The parameters of the diagnosis (window, stride, surrogates, ...).
    """

    path: str
    trajectory: Trajectory
    record: MonitorRecord | None
    coordinates: np.ndarray
    span: tuple[int, int]
    overlap: np.ndarray | None
    overlap_measurements: np.ndarray
    windows: tuple[WindowVerdict, ...]
    power_spectrum: PowerSpectrum | None
    autocorrelation: Autocorrelation | None
    msd: MSD | None
    gradient_norm: GradientNorm | None
    notes: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def usable(self) -> int:
        """Records before the first non-finite one (all of them when the run did not diverge)."""
        return int(self.settings["usable_records"])

    def verdict_counts(self) -> dict[str, int]:
        """How many windows ended with each status, in the order first met."""
        counts: dict[str, int] = {}
        for w in self.windows:
            counts[w.status] = counts.get(w.status, 0) + 1
        return counts


def diagnose_run(
    path: str | os.PathLike,
    *,
    window: int | None = None,
    stride: int | None = None,
    transient: float = 0.5,
    max_coordinates: int = 256,
    max_snapshots: int = 20_000,
    max_overlaps: int = 40,
    n_surrogates: int = 199,
    alpha: float = 0.05,
    seed: int = 0,
    verify: bool = True,
    progress: bool = False,
) -> RunDiagnosis:
    """Read the record at ``path`` and compute every analysis of the run dashboard.

    Args:
        path: A record's directory (from :class:`~sgdscope.Monitor`, a training callback, or a
            :class:`~sgdscope.TrajectoryRecorder`); it may still be written to.
        window: Records per window of the equilibrium test (≥ 200); None: a quarter of the
            record, at least 200.
        stride: Records between the starts of two windows (≥ 1); None: half a window.
        transient: Share of the record, from its start, left out of the spectrum,
            autocorrelation and MSD (in [0, 1)).
        max_coordinates: Single weights the trajectory analyses use (≥ 2).
        max_snapshots: Most records the spectrum, autocorrelation and MSD use (the last ones).
        max_overlaps: Most measurements in the overlap matrix (≥ 2; spread evenly, first and
            last included).
        n_surrogates: Surrogates of each equilibrium test (≥ 19).
        alpha: Level of each equilibrium test, in (0, 1).
        seed: Seed of the choice of coordinates and of the tests' surrogates.
        verify: Check each chunk's CRC-32 when it is read.
        progress: Report the progress of the windows' tests (on standard error).

    Returns:
        A :class:`RunDiagnosis`.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        TrajectoryFormatError: If ``path`` is not a record, or is damaged.
        ValueError: If an argument is out of range.

    Example:
        >>> import tempfile, torch
        >>> import sgdscope as sg
        >>> model, g = torch.nn.Linear(3, 1), torch.Generator().manual_seed(0)
        >>> path = tempfile.mkdtemp() + "/run"
        >>> with sg.TrajectoryRecorder(path, model) as rec:  # weights that relax and fluctuate
        ...     for _ in range(300):
        ...         with torch.no_grad():
        ...             for p in model.parameters():
        ...                 _ = p.mul_(0.9).add_(torch.randn(p.shape, generator=g))
        ...         rec.step()
        >>> run = sg.diagnose_run(path, n_surrogates=19)
        >>> run.record is None, [(w.first_step, w.last_step) for w in run.windows]
        (True, [(1, 200), (101, 300)])
        >>> run.notes["noise"][:27]
        'D was not measured: this is'
    """
    settings = _check(
        window=window, stride=stride, transient=transient, max_coordinates=max_coordinates,
        max_snapshots=max_snapshots, max_overlaps=max_overlaps, n_surrogates=n_surrogates,
        alpha=alpha, seed=seed,
    )  # fmt: skip
    traj = load_trajectory(path, verify=verify)
    record = monitor_record(traj)
    notes: dict[str, str] = {}
    usable = _usable_records(traj, notes)
    rng = np.random.default_rng(seed)
    d = traj.dim
    coordinates = np.sort(rng.choice(d, size=min(d, max_coordinates), replace=False))
    settings.update(usable_records=usable, records=len(traj))
    _scalar_notes(traj, record, notes)
    overlap, chosen = _overlap(record, max_overlaps, notes)
    windows = _windows(traj, usable, coordinates, settings, notes, progress)
    start = min(max(int(usable * transient), usable - max_snapshots), usable)
    spectral = _spectral(traj, (start, usable), coordinates, seed, notes)
    return RunDiagnosis(
        path=os.fspath(path),
        trajectory=traj,
        record=record,
        coordinates=coordinates,
        span=(start, usable),
        overlap=overlap,
        overlap_measurements=chosen,
        windows=windows,
        power_spectrum=spectral[0],
        autocorrelation=spectral[1],
        msd=spectral[2],
        gradient_norm=_gradient_norm(traj, notes),
        notes=notes,
        settings=settings,
    )


# --------------------------------------------------------------------------------------------


def _check(**given: Any) -> dict[str, Any]:
    """The validated parameters (the record is read after them: a typo costs nothing)."""
    w = _WHERE
    out: dict[str, Any] = {
        "window": None
        if given["window"] is None
        else check_int("window", given["window"], where=w, low=MIN_WINDOW),
        "stride": None
        if given["stride"] is None
        else check_int("stride", given["stride"], where=w, low=1),
        "transient": check_real("transient", given["transient"], where=w, low=0.0, high=1.0,
                                high_open=True),
        "max_coordinates": check_int("max_coordinates", given["max_coordinates"], where=w, low=2),
        "max_snapshots": check_int("max_snapshots", given["max_snapshots"], where=w, low=16),
        "max_overlaps": check_int("max_overlaps", given["max_overlaps"], where=w, low=2),
        "n_surrogates": check_int("n_surrogates", given["n_surrogates"], where=w, low=19),
        "alpha": check_real("alpha", given["alpha"], where=w, low=0.0, high=1.0, low_open=True,
                            high_open=True),
        "seed": check_int("seed", given["seed"], where=w, low=0),
    }  # fmt: skip
    return out


def _scalar_notes(traj: Trajectory, record: MonitorRecord | None, notes: dict[str, str]) -> None:
    """Notes for the panels of per-step scalars and measurements that the record lacks."""
    if record is None:
        notes[Panel.NOISE] = (
            "D was not measured: this is a plain trajectory record. Record the run with "
            "sg.Monitor or a training callback to see D's spectrum, the overlap of its top "
            "eigenvectors, B_simple, tr D and the temperature along training."
        )
    elif len(record) == 0:
        notes[Panel.NOISE] = "no measurement of D yet."
    if len(traj) == 0:
        notes[Panel.TEMPERATURE] = notes[Panel.LOSS] = "no step recorded yet."
        return
    if not _recorded(traj, "temperature"):
        start = traj.meta.get("temperature")
        at_start = "" if start is None else f" (the recorder's metadata gives {start:.4g})"
        why = "." if record is None else ": the optimizer is not SGD, or no batch size was given."
        notes[Panel.TEMPERATURE] = f"not recorded per step{at_start}{why}"
    if not _recorded(traj, "loss"):
        notes[Panel.LOSS] = "no loss was recorded (pass loss= to step())."


def _recorded(traj: Trajectory, name: str) -> bool:
    values = traj.scalars.get(name)
    return values is not None and bool(np.isfinite(values).any())


def _usable_records(traj: Trajectory, notes: dict[str, str]) -> int:
    """Records before the first non-finite one; a note when the run diverged."""
    bad = traj.first_nonfinite_step
    if bad is None:
        return len(traj)
    usable = int(np.searchsorted(traj.steps, bad))
    notes[Panel.TRAJECTORY] = (
        f"the weights are not finite from step {bad} on (the run diverged); the trajectory "
        f"analyses use the {usable:,} records before it."
    )
    return usable


def _overlap(
    record: MonitorRecord | None, max_overlaps: int, notes: dict[str, str]
) -> tuple[np.ndarray | None, np.ndarray]:
    none = np.zeros(0, dtype=np.int64)
    if record is None:
        return None, none
    if not record.has_eigenvectors:
        notes[Panel.OVERLAP] = (
            "D's eigenvectors were not kept (the monitor keeps them when it records the raw "
            "weights, or with eigenvectors=True), so their overlap cannot be shown."
        )
        return None, none
    n = min(len(record), len(record.trajectory.stream(VECTORS_STREAM)))
    if n == 0:
        notes[Panel.OVERLAP] = "no measurement of D yet."
        return None, none
    chosen = np.unique(np.linspace(0, n - 1, min(n, max_overlaps)).round().astype(np.int64))
    if chosen.size < n:
        notes[Panel.OVERLAP] = (
            f"{chosen.size} of the {n} measurements, spread evenly over the run (first and last "
            f"included)."
        )
    return record.overlaps(chosen), chosen


def _columns(x: np.ndarray) -> np.ndarray:
    """The columns of ``x`` that are not constant (a frozen weight has no statistics)."""
    return x[:, np.ptp(x, axis=0) > 0] if len(x) else x


def _windows(
    traj: Trajectory,
    usable: int,
    coordinates: np.ndarray,
    settings: dict[str, Any],
    notes: dict[str, str],
    progress: bool,
) -> tuple[WindowVerdict, ...]:
    """The equilibrium test on sliding windows, the last ending at the last usable record."""
    if usable < MIN_WINDOW:
        notes[Panel.WINDOWS] = (
            f"the record has {usable:,} usable records; an equilibrium test needs a window of at "
            f"least {MIN_WINDOW}."
        )
        return ()
    window = settings["window"] or max(MIN_WINDOW, usable // 4)
    window = min(window, usable)
    stride = settings["stride"] or max(1, window // 2)
    settings.update(window=window, stride=stride)
    starts = list(range(usable - window, -1, -stride))[::-1]
    out = []
    with progress_bar("equilibrium tests on windows", len(starts), enabled=progress) as advance:
        for a in starts:
            out.append(_window(traj, a, a + window, coordinates, settings))
            advance()
    return tuple(out)


def _window(
    traj: Trajectory, a: int, b: int, coordinates: np.ndarray, settings: dict[str, Any]
) -> WindowVerdict:
    x = _columns(np.asarray(traj.weights[a:b, coordinates], dtype=np.float64))
    steps = (int(traj.steps[a]), int(traj.steps[b - 1]))
    test, problem = None, ""
    if x.shape[1] < 2:
        problem = f"{x.shape[1]} of the single weights vary over this window; the test needs 2."
    else:
        try:
            test = equilibrium_test(
                x, n_surrogates=settings["n_surrogates"], alpha=settings["alpha"],
                seed=settings["seed"],
            )  # fmt: skip
        except ValueError as err:
            problem = str(err)
    return WindowVerdict(a, b, *steps, n_coordinates=x.shape[1], test=test, problem=problem)


def _spectral(
    traj: Trajectory,
    span: tuple[int, int],
    coordinates: np.ndarray,
    seed: int,
    notes: dict[str, str],
) -> tuple[PowerSpectrum | None, Autocorrelation | None, MSD | None]:
    """Spectrum, autocorrelation and MSD of the span; each None with a note when impossible."""
    a, b = span
    x = _columns(np.asarray(traj.weights[a:b, coordinates], dtype=np.float64))
    if x.shape[1] == 0 or b - a < 16:
        why = (
            f"the span after the transient holds {b - a} records; at least 16 are needed."
            if b - a < 16
            else "no single weight varies over the span after the transient."
        )
        for panel in (Panel.SPECTRUM, Panel.AUTOCORRELATION, Panel.MSD):
            notes[panel] = why
        return None, None, None
    results: list[Any] = []
    for panel, analysis in (
        (Panel.SPECTRUM, lambda: power_spectrum(x, seed=seed)),
        (Panel.AUTOCORRELATION, lambda: autocorrelation(x)),
        (Panel.MSD, lambda: msd(x, seed=seed)),
    ):
        try:
            results.append(analysis())
        except ValueError as err:
            results.append(None)
            notes[panel] = str(err)
    return results[0], results[1], results[2]


def _gradient_norm(traj: Trajectory, notes: dict[str, str]) -> GradientNorm | None:
    """‖∇f‖/√d over the whole run, d the model's parameters (not the recorded coordinates)."""
    try:
        dim = traj.layout.dim
    except TrajectoryFormatError:
        dim = traj.dim
    try:
        return gradient_norm(traj, dim=dim)
    except ValueError as err:
        notes[Panel.GRADIENT_NORM] = str(err)
        return None
