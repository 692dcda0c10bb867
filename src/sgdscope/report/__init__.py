"""Figures and the report of ``sgdscope reproduce``. Renders result objects; never recomputes them.

- The figures: each ``plot_*`` function draws a result of the library (a
  :class:`~sgdscope.Spectrum`, a :class:`~sgdscope.SteadyState`, an analysis of
  :mod:`sgdscope.analysis`) into the axes it is given (``ax=``/``axes=``) or into a new figure, and
  returns the matplotlib ``Figure``; :func:`save_figure` writes it in the package's style.
- The report: :func:`render_report` reads the saved :class:`ExperimentResult` of every experiment
  (``OUT/<name>/result.json``) and writes ``OUT/report/index.html`` (one self-contained page, from
  a jinja2 template with autoescape), ``results.json`` and ``results.md``.
"""

from __future__ import annotations

from .fig_spectrum import plot_spectrum as plot_spectrum
from .fig_toy import plot_drift as plot_drift
from .fig_toy import plot_toy as plot_toy
from .fig_trajectory import plot_autocorrelation as plot_autocorrelation
from .fig_trajectory import plot_equilibrium as plot_equilibrium
from .fig_trajectory import plot_flux as plot_flux
from .fig_trajectory import plot_gradient_norm as plot_gradient_norm
from .fig_trajectory import plot_msd as plot_msd
from .fig_trajectory import plot_power_spectrum as plot_power_spectrum
from .render import REPORT_DIR as REPORT_DIR
from .render import render_report as render_report
from .results import Comparison as Comparison
from .results import ExperimentResult as ExperimentResult
from .results import FigureRef as FigureRef
from .results import Verdict as Verdict
from .results import collect_results as collect_results
from .style import legend as legend
from .style import new_figure as new_figure
from .style import save_figure as save_figure

__all__ = [
    "REPORT_DIR",
    "Comparison",
    "ExperimentResult",
    "FigureRef",
    "Verdict",
    "collect_results",
    "legend",
    "new_figure",
    "plot_autocorrelation",
    "plot_drift",
    "plot_equilibrium",
    "plot_flux",
    "plot_gradient_norm",
    "plot_msd",
    "plot_power_spectrum",
    "plot_spectrum",
    "plot_toy",
    "render_report",
    "save_figure",
]
