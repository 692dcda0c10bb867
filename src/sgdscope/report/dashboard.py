"""The run dashboard: one self-contained HTML page of a recorded training run.

:func:`render_dashboard` renders a :class:`~sgdscope.monitor.RunDiagnosis` (what
:func:`sgdscope.diagnose_run` computed from a record) into one page, from the jinja2 template
``templates/dashboard.html.j2`` with autoescape on; it draws the figures and never recomputes an
analysis. ``sgdscope dashboard RUN`` is the command that does both.

The page holds, in order:

1. **Gradient noise D along training** (a record written by :class:`~sgdscope.Monitor` or a
   training callback): D's top-k eigenvalues at each measurement, coloured by step; the overlap
   matrix of D's top-k eigenvectors between measurements (Chaudhari & Soatto 2018, Remark 13);
   B_simple, tr D and the temperature η/(2b(1 − μ)) (eq. 3) against steps;
2. **Training**: the mini-batch loss and ‖∇f‖/√d (Fig. 3c);
3. **Equilibrium on sliding windows**: the equilibrium test's p-value and conclusion on each
   window (``not testable: not stationary`` where the window is not stationary), as a figure and
   a table, then the last tested window's statistic against its surrogates and its flux field;
4. **Fluctuations after the transient** (Fig. 3): the spectrum of the increments, the
   autocorrelation and the mean squared displacement of single weights.

A panel the record cannot fill (a plain :class:`~sgdscope.TrajectoryRecorder` record has no
measurement of D; a short record has no window) is shown as a note that says why. The page
carries the same load script as the reproduction report (``data-images-total``,
``data-images-loaded``, ``data-tables`` on ``<body>``) and every panel a ``data-panel`` name,
so that a headless browser can check it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from ..monitor import Panel, RunDiagnosis, WindowVerdict
from ..trajectory import TrajectoryFormatError
from ..trajectory.analysis import EquilibriumStatus
from .fig_run import (
    plot_noise_scale,
    plot_noise_spectra,
    plot_overlap,
    plot_training,
    plot_windows,
)
from .fig_trajectory import (
    plot_autocorrelation,
    plot_equilibrium,
    plot_flux,
    plot_msd,
    plot_power_spectrum,
)
from .page import CSP, asset, css_width, data_uri, readable_time, template, version, write_atomic
from .style import png_bytes

__all__ = ["DASHBOARD_FILE", "dashboard_page", "render_dashboard"]

DASHBOARD_FILE = "dashboard.html"  #: the page's name inside the record, by default.

#: CSS class of each conclusion of a window's test (its badge and row), as in ``dashboard.css``.
_STATUS_CLASS = {
    EquilibriumStatus.OUT_OF_EQUILIBRIUM.value: "s-out",
    EquilibriumStatus.NO_EVIDENCE.value: "s-no-evidence",
    EquilibriumStatus.NOT_STATIONARY.value: "s-not-stationary",
    "not tested": "s-not-tested",
}

_PAPER = (
    "P. Chaudhari and S. Soatto, “Stochastic gradient descent performs variational inference, "
    "converges to limit cycles for deep networks”, ICLR 2018 (arXiv:1710.11029)"
)


def render_dashboard(run: RunDiagnosis, out: str | os.PathLike[str] | None = None) -> Path:
    """Write the dashboard of ``run`` to ``out`` (atomically: a reader sees a whole page).

    Args:
        run: The diagnosis (:func:`sgdscope.diagnose_run`).
        out: The HTML file to write; None: ``dashboard.html`` inside the record.

    Returns:
        The path written.
    """
    path = Path(run.path) / DASHBOARD_FILE if out is None else Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return write_atomic(path, dashboard_page(run, generated))


def dashboard_page(run: RunDiagnosis, generated: str) -> str:
    """Return the whole HTML document of the dashboard of ``run``.

    Args:
        run: The diagnosis (:func:`sgdscope.diagnose_run`).
        generated: When the page is made, an ISO 8601 time with its offset.

    Returns:
        The HTML document.
    """
    traj = run.trajectory
    return template("dashboard.html.j2").render(
        csp=CSP,
        css=asset("report.css") + asset("dashboard.css"),
        script=asset("report.js"),
        paper=_PAPER,
        version=version(),
        generated=readable_time(generated),
        path=run.path,
        complete=traj.complete,
        facts=_facts(run),
        sections=_sections(run),
        windows=[_window_row(i, w) for i, w in enumerate(run.windows, start=1)],
        notes=sorted(run.notes.items()),
    )


# --------------------------------------------------------------------------------------------
# data shaping: plain text and figures only (the template escapes the text)


def _facts(run: RunDiagnosis) -> list[tuple[str, str]]:
    """The summary table: what was read, and what the analyses used."""
    traj, record, s = run.trajectory, run.record, run.settings
    steps = traj.steps
    facts = {"record": run.path}
    facts["state"] = (
        "complete (closed cleanly)"
        if traj.complete
        else "still being written, or interrupted: read up to its last committed chunk"
    )
    facts["records"] = f"{len(traj):,}"
    if len(steps):
        facts["records"] += f" (steps {steps[0]:,}–{steps[-1]:,})"
    with contextlib.suppress(TrajectoryFormatError):  # a trajectory without a layout
        facts["model parameters d"] = f"{traj.layout.dim:,}"
    if record is not None:
        facts["recorded"] = str(record.settings.get("record_rule", f"{traj.dim:,} coordinates"))
        k, probe = record.eigenvalues.shape[1], record.settings.get("probe_size", "?")
        facts["measurements of D"] = f"{len(record)} (top-{k}, on {probe} probe samples)"
    else:
        facts["recorded"] = f"{traj.dim:,} coordinates (a plain trajectory record)"
    facts["single weights analysed"] = (
        f"{run.coordinates.size:,} of {traj.dim:,}, drawn with seed {s['seed']}"
    )
    if run.windows:
        counts = ", ".join(f"{n} {status}" for status, n in run.verdict_counts().items())
        facts["windows"] = (
            f"{len(run.windows)} of {s['window']:,} records, every {s['stride']:,}: {counts}"
        )
    a, b = run.span
    if b > a:
        facts["after the transient"] = (
            f"records {a:,}–{b - 1:,} (steps {steps[a]:,}–{steps[b - 1]:,})"
        )
    return list(facts.items())


def _figure(fig: Figure) -> dict[str, Any]:
    raw = png_bytes(fig)
    return {"src": data_uri(raw, "image/png"), "width": css_width(raw)}


def _panel(
    panel_id: str,
    title: str,
    caption: str,
    draw: Callable[[], Figure] | None,
    absent: str | None,
    *,
    remark: str | None = None,
    wide: bool = False,
) -> dict[str, Any]:
    """A panel: its figure when ``draw`` (a callable) is given, else ``absent`` says why not.

    ``remark`` (what limits a drawn figure) ends its caption; a ``wide`` panel spans the page.

    Returns:
        The panel's fields for the template.
    """
    out: dict[str, Any] = {"id": panel_id, "title": title, "caption": caption, "src": None,
                           "width": None, "note": absent, "remark": remark, "wide": wide}  # fmt: skip
    if draw is not None:
        out.update(_figure(draw()))
    return out


def _sections(run: RunDiagnosis) -> list[dict[str, Any]]:
    notes, traj = run.notes, run.trajectory
    record = run.record if run.record is not None and len(run.record) > 0 else None
    no_noise = notes.get(Panel.NOISE)
    overlap = None
    if run.overlap is not None and record is not None:
        overlap = partial(plot_overlap, run.overlap, record.steps[run.overlap_measurements],
                          k=record.eigenvalues.shape[1], dim=_dim(run))  # fmt: skip
    noise = [
        _panel("noise-spectra", "D's spectrum at each measurement",
               "Top-k eigenvalues of D against their index, one line per measurement, coloured "
               "by step (Figs 1–2 show one such spectrum).",
               partial(plot_noise_spectra, record) if record is not None else None, no_noise),
        _panel("overlap", "Overlap of D's top eigenvectors across training",
               "‖V_aᵀV_b‖²_F / k between the top-k eigenvectors of two measurements: 1 when D's "
               "top subspace did not move (Remark 13), k/d for two random subspaces.",
               overlap, notes.get(Panel.OVERLAP) or no_noise, remark=notes.get(Panel.OVERLAP)),
        _panel("noise-scale", "B_simple, tr D and the temperature",
               "B_simple = tr D / ‖g‖² (McCandlish et al. 2018) and tr D on the probe set at "
               "each measurement; the temperature η/(2b(1 − μ)) of eq. 3 at each step, read from "
               "the optimizer (schedules included).",
               partial(plot_noise_scale, record) if record is not None else None, no_noise,
               remark=notes.get(Panel.TEMPERATURE), wide=True),
    ]  # fmt: skip
    training = [
        _panel("training", "Loss and gradient norm",
               "The mini-batch loss at each recorded step with its EWMA, and ‖∇f‖/√d with its "
               "EWMA (Fig. 3c).",
               partial(plot_training, traj, run.gradient_norm), None,
               remark=notes.get(Panel.LOSS) or notes.get(Panel.GRADIENT_NORM), wide=True),
    ]  # fmt: skip
    last = next((w.test for w in reversed(run.windows) if w.test is not None), None)
    untested = "no window could be tested."
    equilibrium = [
        _panel("windows", "Equilibrium verdicts on sliding windows",
               "The equilibrium test (detailed balance against a fitted reversible linear model, "
               "in the top-2 principal components of the single weights) on each window; a "
               "window that is not stationary is not testable.",
               partial(plot_windows, run.windows, run.settings["alpha"]) if run.windows else None,
               notes.get(Panel.WINDOWS), remark=notes.get(Panel.WINDOWS), wide=True),
        _panel("last-window", "The last tested window",
               "Its irreversibility statistic against the reversible surrogates.",
               partial(plot_equilibrium, last) if last is not None else None, untested),
        _panel("flux", "Probability flux of the last tested window",
               "Occupancy and coarse-grained probability flux in the window's top-2 principal "
               "components (Battle et al. 2016).",
               partial(plot_flux, last.flux) if last is not None else None, untested),
    ]  # fmt: skip
    a, b = run.span
    span = f"records {a:,}–{b - 1:,}" if b > a else "no records"
    fluctuations = [
        _panel("spectrum", "Spectrum of the increments (Fig. 3a)",
               f"Mean over the single weights of the spectrum of their increments, {span}.",
               partial(plot_power_spectrum, run.power_spectrum) if run.power_spectrum else None,
               notes.get(Panel.SPECTRUM)),
        _panel("autocorrelation", "Autocorrelation (Fig. 3b)",
               f"Autocorrelation of the single weights against lag, {span}.",
               partial(plot_autocorrelation, run.autocorrelation) if run.autocorrelation else None,
               notes.get(Panel.AUTOCORRELATION)),
        _panel("msd", "Mean squared displacement",
               f"MSD of the single weights against lag, with its power-law fit, {span}.",
               partial(plot_msd, run.msd) if run.msd else None,
               notes.get(Panel.MSD)),
    ]  # fmt: skip
    return [
        {"id": "noise", "title": "Gradient noise D along training", "panels": noise},
        {"id": "training", "title": "Training", "panels": training},
        {"id": "equilibrium", "title": "Equilibrium on sliding windows", "panels": equilibrium},
        {"id": "fluctuations", "title": "Fluctuations after the transient (Fig. 3)",
         "panels": fluctuations},
    ]  # fmt: skip


def _dim(run: RunDiagnosis) -> int:
    """The model's d (the trajectory's own dim when it records no layout)."""
    try:
        return run.trajectory.layout.dim
    except TrajectoryFormatError:
        return run.trajectory.dim


def _window_row(number: int, w: WindowVerdict) -> dict[str, Any]:
    test = w.test
    if test is None:
        why = w.problem
    elif not test.stationary:
        why = test.stationarity.message
    else:
        why = test.verdict
    return {
        "number": number,
        "steps": f"{w.first_step:,}–{w.last_step:,}",
        "records": f"{w.start:,}–{w.stop - 1:,}",
        "status": w.status,
        "css_class": _STATUS_CLASS[w.status],
        "p_value": "—" if test is None else f"{test.p_value:.3g}",
        "statistic": "—" if test is None else f"{test.statistic:.3g}",
        "effect_size": "—" if test is None else f"{test.effect_size:.3g}",
        "why": why,
        "coordinates": w.n_coordinates,
    }
