"""sgdscope.monitor: watch a training run (trajectory, temperature, gradient noise D) as it trains.

- :class:`Monitor`: one call after each optimizer step of a plain loop.
- :func:`load_monitor` opens what it wrote as a :class:`MonitorRecord`.
- The callbacks of :mod:`sgdscope.integrations` drive a monitor from PyTorch Lightning and the
  Hugging Face Trainer.
"""

from __future__ import annotations

from .monitor import MAX_RAW_DIM, NOISE_STREAM, VECTORS_STREAM, Monitor, NoiseMeasurement
from .record import MonitorRecord, load_monitor

__all__ = [
    "MAX_RAW_DIM",
    "NOISE_STREAM",
    "VECTORS_STREAM",
    "Monitor",
    "MonitorRecord",
    "NoiseMeasurement",
    "load_monitor",
]
