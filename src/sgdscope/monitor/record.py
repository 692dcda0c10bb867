"""Reading what a :class:`~sgdscope.Monitor` wrote: :func:`load_monitor` and :class:`MonitorRecord`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._validation import check_int
from ..trajectory import ChunkedArray, Trajectory, TrajectoryFormatError, load_trajectory
from .monitor import NOISE_STREAM, VECTORS_STREAM, NoiseMeasurement

__all__ = ["OVERLAP_BUDGET", "MonitorRecord", "load_monitor", "monitor_record"]

OVERLAP_BUDGET = 64 << 20
"""Default bytes of eigenvectors :meth:`MonitorRecord.overlaps` holds at once (64 MiB)."""


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
        row = self._vectors()[i]
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

    def overlaps(
        self,
        measurements: Any = None,
        k: int | None = None,
        *,
        memory_budget: int = OVERLAP_BUDGET,
    ) -> np.ndarray:
        r"""The matrix of :meth:`overlap` between every pair of the given measurements.

        Entry (a, b) is ‖V_aᵀ V_b‖_F² / k for the a-th and b-th measurement asked for (Remark
        13: how D's top subspace moves along training). The eigenvectors are streamed by blocks
        of coordinates, so that at most ``memory_budget`` bytes of them are held at once
        whatever d and the number of measurements.

        Args:
            measurements: Indices of the measurements (None: all of them).
            k: Number of top eigenvectors (None: all kept).
            memory_budget: Bytes of eigenvectors held at once (float64).

        Returns:
            A float64 array (m, m), symmetric, for the m measurements asked for.

        Raises:
            ValueError: If the eigenvectors were not kept, an index is out of range or ``k``
                is not in [1, kept].
        """
        where = "MonitorRecord.overlaps"
        vectors = self._vectors()
        kept = self.eigenvalues.shape[1]
        k = kept if k is None else check_int("k", k, where=where, low=1, high=kept)
        n = min(len(self), len(vectors))
        index = np.arange(n) if measurements is None else np.asarray(measurements, dtype=np.int64)
        if index.ndim != 1 or (index.size and not (0 <= index.min() and index.max() < n)):
            raise ValueError(
                f"the 'measurements' parameter of {where} must be indices in [0, {n - 1}] (the "
                f"record's measurements with eigenvectors), got {index.tolist()!r}."
            )
        budget = check_int("memory_budget", memory_budget, where=where, low=1)
        d = vectors.shape[1] // kept
        m = index.size
        gram = np.zeros((m * k, m * k))
        block = max(1, budget // (8 * max(m * k, 1)))
        for c0 in range(0, d, block):
            columns = np.arange(c0, min(d, c0 + block))
            rows = vectors[index, (np.arange(k)[:, None] * d + columns).ravel()]
            w = np.asarray(rows, dtype=np.float64).reshape(m * k, columns.size)
            gram += w @ w.T
        blocks = gram.reshape(m, k, m, k)
        return np.einsum("aibj,aibj->ab", blocks, blocks) / k

    def _vectors(self) -> ChunkedArray:
        if not self.has_eigenvectors:
            raise ValueError(
                f"the record {str(self.trajectory.path)!r} holds no eigenvectors: the monitor "
                "keeps them for models recorded as raw weights, or with eigenvectors=True."
            )
        return self.trajectory.stream(VECTORS_STREAM).data

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
    record = monitor_record(traj)
    if record is None:
        raise TrajectoryFormatError(
            f"{str(path)!r} is a trajectory but not a monitor's record (it has no {NOISE_STREAM!r} "
            "stream); open it with sgdscope.load_trajectory."
        )
    return record


def monitor_record(traj: Trajectory) -> MonitorRecord | None:
    """The monitor's record held by an opened trajectory, or None for a plain trajectory.

    Args:
        traj: A trajectory opened with :func:`sgdscope.load_trajectory`.

    Returns:
        The :class:`MonitorRecord` over ``traj``, or None when a plain
        :class:`~sgdscope.TrajectoryRecorder` wrote it (no measurement of D).
    """
    settings: Any = traj.meta.get("user", {}).get("monitor")
    if NOISE_STREAM not in traj.streams or not isinstance(settings, dict):
        return None
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
