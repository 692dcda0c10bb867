"""Reading what a :class:`~sgdscope.Monitor` wrote: :func:`load_monitor` and :class:`MonitorRecord`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..trajectory import Trajectory, TrajectoryFormatError, load_trajectory
from .monitor import NOISE_STREAM, VECTORS_STREAM, NoiseMeasurement

__all__ = ["MonitorRecord", "load_monitor"]


@dataclass(frozen=True)
class MonitorRecord:
    """A monitored training run: its trajectory and its measurements of the gradient noise D.

    The per-step scalars (``loss``, ``grad_norm``, ``lr``, ``momentum``, ``batch_size``,
    ``temperature``) are in ``trajectory.scalars``, aligned with ``trajectory.steps``.

    Attributes:
        trajectory: The :class:`~sgdscope.Trajectory` (weights or single weights, per-step
            scalars, metadata).
        steps: Int array (M,), the step of each measurement of D.
        eigenvalues: Float64 array (M, k), D's top-k eigenvalues at each measurement.
        trace: Float64 array (M,), tr D.
        noise_scale: Float64 array (M,), B_simple = tr D / ‖g‖².
        grad_norm: Float64 array (M,), ‖g‖ on the probe set.
        seconds: Float64 array (M,), the time each measurement took.
        converged: Bool array (M,), whether the eigensolver met its tolerance.
        settings: The monitor's settings (probe size, k, cadence, the record rule, ...).
    """

    trajectory: Trajectory
    steps: np.ndarray
    eigenvalues: np.ndarray
    trace: np.ndarray
    noise_scale: np.ndarray
    grad_norm: np.ndarray
    seconds: np.ndarray
    converged: np.ndarray
    settings: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def has_eigenvectors(self) -> bool:
        """Whether D's top-k eigenvectors were kept with the measurements."""
        return VECTORS_STREAM in self.trajectory.streams

    def eigenvectors(self, i: int) -> np.ndarray:
        """The top-k eigenvectors of measurement ``i``, a float32 array (d, k).

        Returns:
            The eigenvectors, one per column, λ descending.

        Raises:
            ValueError: If they were not kept (a large model; ``eigenvectors=True`` keeps them).
        """
        if not self.has_eigenvectors:
            raise ValueError(
                f"the record {str(self.trajectory.path)!r} holds no eigenvectors: the monitor "
                "keeps them for models recorded as raw weights, or with eigenvectors=True."
            )
        row = self.trajectory.stream(VECTORS_STREAM).data[i]
        k = self.eigenvalues.shape[1]
        return np.ascontiguousarray(row.reshape(k, -1).T)

    def overlap(self, i: int, j: int, k: int | None = None) -> float:
        r"""Overlap ‖V_iᵀ V_j‖_F² / k ∈ [0, 1] of the top-k eigenvectors of two measurements.

        1 when D's top-k subspace did not move between them (Remark 13 asks how it evolves
        along training); k/d is the level of two random subspaces.

        Args:
            i: Index of the first measurement.
            j: Index of the second.
            k: Number of top eigenvectors (None: all kept).

        Returns:
            The overlap.
        """
        vi, vj = self.eigenvectors(i), self.eigenvectors(j)
        k = vi.shape[1] if k is None else int(k)
        m = vi[:, :k].astype(np.float64).T @ vj[:, :k].astype(np.float64)
        return float((m**2).sum() / k)

    def measurement(self, i: int) -> NoiseMeasurement:
        """Measurement ``i`` as a :class:`NoiseMeasurement` (with its eigenvectors if kept)."""
        return NoiseMeasurement(
            step=int(self.steps[i]),
            eigenvalues=self.eigenvalues[i].copy(),
            trace=float(self.trace[i]),
            noise_scale=float(self.noise_scale[i]),
            grad_norm=float(self.grad_norm[i]),
            seconds=float(self.seconds[i]),
            converged=bool(self.converged[i]),
            eigenvectors=self.eigenvectors(i) if self.has_eigenvectors else None,
        )

    def __repr__(self) -> str:
        return (
            f"MonitorRecord({str(self.trajectory.path)!r}, records={len(self.trajectory)}, "
            f"measurements={len(self)}, complete={self.trajectory.complete})"
        )


def load_monitor(path: str | os.PathLike, *, verify: bool = True) -> MonitorRecord:
    """Open the record a :class:`~sgdscope.Monitor` (or a training callback) wrote at ``path``.

    A record whose run was killed opens normally, with everything committed before the crash.

    Args:
        path: The monitor's directory.
        verify: Check each chunk's CRC-32 on its first read (see
            :func:`sgdscope.load_trajectory`).

    Returns:
        The :class:`MonitorRecord`.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        TrajectoryFormatError: If ``path`` is not a monitor's record, or is damaged.
    """
    traj = load_trajectory(path, verify=verify)
    settings: Any = traj.meta.get("user", {}).get("monitor")
    if NOISE_STREAM not in traj.streams or not isinstance(settings, dict):
        raise TrajectoryFormatError(
            f"{str(path)!r} is a trajectory but not a monitor's record (it has no {NOISE_STREAM!r} "
            "stream); open it with sgdscope.load_trajectory."
        )
    noise = traj.stream(NOISE_STREAM)
    m = len(noise)

    def column(name: str) -> np.ndarray:
        return noise.scalars.get(name, np.full(m, np.nan))

    return MonitorRecord(
        trajectory=traj,
        steps=noise.steps,
        eigenvalues=np.asarray(noise.data[:], dtype=np.float64),
        trace=column("trace"),
        noise_scale=column("noise_scale"),
        grad_norm=column("grad_norm"),
        seconds=column("seconds"),
        converged=column("converged") == 1.0,
        settings=dict(settings),
    )
