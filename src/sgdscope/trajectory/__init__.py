"""sgdscope.trajectory: record training trajectories to disk, read them back, project them.

- :class:`TrajectoryRecorder` writes the weights of a training run into a crash-safe chunked store
  (:mod:`sgdscope.trajectory.store`) from a background thread.
- :func:`load_trajectory` opens it as a lazy :class:`Trajectory`.
- :func:`pca_projection`, :func:`random_projection` and :func:`basis_projection` build
  :class:`Projection` objects (low-dimensional views); :func:`coordinate_projection` picks k
  single weights (:class:`CoordinateProjection`, no dense basis).
"""

from __future__ import annotations

from .projection import (
    CoordinateProjection,
    Projection,
    ProjectionKind,
    basis_projection,
    coordinate_projection,
    pca_projection,
    random_projection,
)
from .recorder import NonFinitePolicy, TrajectoryRecorder
from .store import (
    FORMAT_VERSION,
    TrajectoryFormatError,
    TrajectoryGapError,
    TrajectoryLockedError,
)
from .trajectory import ChunkedArray, Stream, Trajectory, load_trajectory

__all__ = [
    "FORMAT_VERSION",
    "ChunkedArray",
    "CoordinateProjection",
    "NonFinitePolicy",
    "Projection",
    "ProjectionKind",
    "Stream",
    "Trajectory",
    "TrajectoryFormatError",
    "TrajectoryGapError",
    "TrajectoryLockedError",
    "TrajectoryRecorder",
    "basis_projection",
    "coordinate_projection",
    "load_trajectory",
    "pca_projection",
    "random_projection",
]
