"""sgdscope: stochastic gradient descent as a physical process.

After Chaudhari & Soatto, "Stochastic gradient descent performs variational inference, converges
to limit cycles for deep networks" (ICLR 2018). The public names are flat and grouped by theme.
"""

from __future__ import annotations

from .temperature import temperature as temperature

# --- gradient noise (D(x), its spectrum and rank) ---

# --- dynamics (Fokker-Planck, linear theory, simulators) ---
from .dynamics.linear import LinearDecomposition as LinearDecomposition
from .dynamics.linear import linear_decomposition as linear_decomposition

# --- trajectories (recorder, analysis) ---

__version__ = "0.1.0"

__all__ = [
    "temperature",
    # gradient noise
    # dynamics
    "LinearDecomposition",
    "linear_decomposition",
    # trajectories
]
