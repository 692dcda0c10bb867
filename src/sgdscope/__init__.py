"""sgdscope: stochastic gradient descent as a physical process.

After Chaudhari & Soatto, "Stochastic gradient descent performs variational inference, converges
to limit cycles for deep networks" (ICLR 2018). The public names are flat and grouped by theme.
"""

from __future__ import annotations

from .temperature import temperature as temperature

# --- gradient noise (D(x), its spectrum and rank) ---
from .noise import ConvergenceError as ConvergenceError
from .noise import CovarianceOperator as CovarianceOperator
from .noise import GradientNoise as GradientNoise
from .noise import ParamLayout as ParamLayout
from .noise import SpectralDensity as SpectralDensity
from .noise import Spectrum as Spectrum

# --- dynamics (Fokker-Planck, linear theory, simulators) ---
from .dynamics.linear import LinearDecomposition as LinearDecomposition
from .dynamics.linear import linear_decomposition as linear_decomposition
from .dynamics.problems import AbstractFiniteSumProblem as AbstractFiniteSumProblem
from .dynamics.problems import LeastSquares as LeastSquares
from .dynamics.problems import LogisticRegression as LogisticRegression
from .dynamics.problems import MLPProblem as MLPProblem
from .dynamics.sde import DiagonalDiffusion as DiagonalDiffusion
from .dynamics.sde import EulerMaruyama as EulerMaruyama
from .dynamics.sde import LowRankDiffusion as LowRankDiffusion
from .dynamics.sde import simulate_sde as simulate_sde
from .dynamics.sgd import simulate_sgd as simulate_sgd
from .dynamics.grid import Grid as Grid
from .dynamics.fokker_planck import FokkerPlanck as FokkerPlanck
from .dynamics.fokker_planck import SteadyState as SteadyState
from .dynamics import examples as examples

# --- trajectories (recorder, analysis) ---
from .trajectory import Projection as Projection
from .trajectory import Trajectory as Trajectory
from .trajectory import TrajectoryFormatError as TrajectoryFormatError
from .trajectory import TrajectoryGapError as TrajectoryGapError
from .trajectory import TrajectoryLockedError as TrajectoryLockedError
from .trajectory import TrajectoryRecorder as TrajectoryRecorder
from .trajectory import basis_projection as basis_projection
from .trajectory import load_trajectory as load_trajectory
from .trajectory import pca_projection as pca_projection
from .trajectory import random_projection as random_projection
from .trajectory import analysis as analysis

# --- watching a training run (trajectory, temperature and D as it trains) ---
from .monitor import Monitor as Monitor
from .monitor import MonitorRecord as MonitorRecord
from .monitor import NoiseMeasurement as NoiseMeasurement
from .monitor import RunDiagnosis as RunDiagnosis
from .monitor import diagnose_run as diagnose_run
from .monitor import load_monitor as load_monitor

# --- the paper (its data, networks and experiments) ---
from . import paper as paper

__version__ = "0.1.0"

__all__ = [
    "paper",
    "temperature",
    # gradient noise
    "ConvergenceError",
    "CovarianceOperator",
    "GradientNoise",
    "ParamLayout",
    "SpectralDensity",
    "Spectrum",
    # dynamics
    "LinearDecomposition",
    "linear_decomposition",
    "AbstractFiniteSumProblem",
    "LeastSquares",
    "LogisticRegression",
    "MLPProblem",
    "DiagonalDiffusion",
    "EulerMaruyama",
    "LowRankDiffusion",
    "simulate_sde",
    "simulate_sgd",
    "Grid",
    "FokkerPlanck",
    "SteadyState",
    "examples",
    # trajectories
    "Projection",
    "Trajectory",
    "TrajectoryFormatError",
    "TrajectoryGapError",
    "TrajectoryLockedError",
    "TrajectoryRecorder",
    "basis_projection",
    "load_trajectory",
    "pca_projection",
    "random_projection",
    "analysis",
    # monitoring
    "Monitor",
    "MonitorRecord",
    "NoiseMeasurement",
    "RunDiagnosis",
    "diagnose_run",
    "load_monitor",
]
