"""sgdscope.monitor: watch a training run (trajectory, temperature, gradient noise D) as it trains.

- :class:`Monitor`: one call after each optimizer step of a plain loop.
- :func:`load_monitor` opens what it wrote as a :class:`MonitorRecord`.
- :func:`diagnose_run` computes what the run dashboard (``sgdscope dashboard``) shows of a
  record: D's overlaps, equilibrium verdicts on sliding windows, spectra, MSD.
- The callbacks of :mod:`sgdscope.integrations` drive a monitor from PyTorch Lightning and the
  Hugging Face Trainer.
"""

from __future__ import annotations

from .diagnosis import Panel, RunDiagnosis, WindowVerdict, diagnose_run
from .monitor import MAX_RAW_DIM, NOISE_STREAM, VECTORS_STREAM, Monitor, NoiseMeasurement
from .record import MonitorRecord, load_monitor

__all__ = [
    "MAX_RAW_DIM",
    "NOISE_STREAM",
    "VECTORS_STREAM",
    "Monitor",
    "MonitorRecord",
    "NoiseMeasurement",
    "Panel",
    "RunDiagnosis",
    "WindowVerdict",
    "diagnose_run",
    "load_monitor",
]
