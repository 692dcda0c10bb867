"""What the framework callbacks share: opening the monitor at the trainer's step, and scalars."""

from __future__ import annotations

import inspect
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._params import LossFn
from ..monitor import Monitor, NoiseMeasurement
from ..trajectory.store import MANIFEST

__all__ = [
    "MONITOR_OPTIONS",
    "batch_rows",
    "check_monitor_options",
    "measurement_scalars",
    "open_monitor",
    "step_scalars",
]

# What a callback decides for the Monitor itself: the batch size of each step, whether the record
# resumes and from which step (the trainer's), and the process group (the trainer's world).
_SET_BY_CALLBACK = ("batch_size", "resume", "resume_step", "overwrite", "process_group")

#: The :class:`~sgdscope.Monitor` keyword arguments a framework callback passes through, with
#: their defaults (the callback sets the others from the trainer).
MONITOR_OPTIONS: dict[str, Any] = {
    name: p.default
    for name, p in inspect.signature(Monitor.__init__).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY and name not in _SET_BY_CALLBACK
}


def check_monitor_options(options: dict[str, Any], *, where: str) -> dict[str, Any]:
    """A callback's Monitor options, checked by name before training starts.

    Their values are checked by the Monitor when training starts, with the model at hand.

    Returns:
        A copy of ``options``.

    Raises:
        TypeError: On a name the Monitor does not take, or one the callback sets itself.
    """
    for name in options:
        if name in _SET_BY_CALLBACK:
            raise TypeError(
                f"{where} sets the Monitor's '{name}' itself (from the trainer: the batch size "
                "of each step, the checkpoint it resumes from, its process group); leave "
                f"{name}={options[name]!r} out."
            )
        if name not in MONITOR_OPTIONS:
            raise TypeError(
                f"{where} got an unexpected keyword argument '{name}' (= {options[name]!r}). "
                f"It passes these to sgdscope.Monitor: {', '.join(MONITOR_OPTIONS)}."
            )
    return dict(options)


def open_monitor(
    model: nn.Module,
    loss_fn: LossFn,
    probe_data: Any,
    path: str | os.PathLike,
    *,
    step: int,
    overwrite: bool,
    where: str,
    settings: dict[str, Any],
) -> Monitor:
    """The monitor of a run that starts (or restarts from a checkpoint) at optimizer step ``step``.

    At step 0 a new record is begun: a record already at ``path`` is replaced only with
    ``overwrite`` (never silently). At a later step (the framework restored a checkpoint of that
    step) the record continues from it: what the interrupted run recorded after the checkpoint is
    dropped, so the record has no gap and no step twice.

    Returns:
        The :class:`~sgdscope.Monitor`, new or continuing the record.

    Raises:
        FileExistsError: If a record is at ``path``, the run starts at step 0 and ``overwrite``
        is False.
    """
    if step > 0:
        return Monitor(model, loss_fn, probe_data, path, resume=True, resume_step=step, **settings)
    if (Path(path) / MANIFEST).is_file() and not overwrite:
        raise FileExistsError(
            f"the 'path' parameter of {where} names {str(path)!r}, which holds the record of "
            "another run, and this one starts at step 0. Pass overwrite=True to replace it, or "
            "record to a new path (a run resumed from a checkpoint continues its record)."
        )
    return Monitor(model, loss_fn, probe_data, path, overwrite=overwrite, **settings)


def _value(v: Any) -> float:
    if isinstance(v, torch.Tensor):
        return float(v.detach().float().cpu())
    return float(v)


def step_scalars(monitor: Monitor, prefix: str) -> dict[str, float]:
    """The temperature and gradient norm of the last recorded step, for a trainer's loggers."""
    out = {}
    for name in ("temperature", "grad_norm"):
        if name in monitor.last_scalars:
            v = _value(monitor.last_scalars[name])
            if math.isfinite(v):
                out[prefix + name] = v
    return out


def measurement_scalars(m: NoiseMeasurement, prefix: str) -> dict[str, float]:
    """A measurement of D as named scalars, for a trainer's loggers."""
    return {prefix + name: float(v) for name, v in m.scalars().items() if math.isfinite(v)}


def batch_rows(batch: Any) -> int | None:
    """The number of samples in a batch: the first dimension of its first tensor."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.ndim else None
    if isinstance(batch, dict):
        batch = list(batch.values())
    if isinstance(batch, list | tuple):
        for item in batch:
            rows = batch_rows(item)
            if rows is not None:
                return rows
    return None
