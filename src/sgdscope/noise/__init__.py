"""The gradient-noise diffusion matrix D(x): per-sample gradients, dense and matrix-free D, spectra."""

from .._params import ParamLayout
from .covariance import CovarianceOperator
from .density import SpectralDensity
from .eigensolvers import ConvergenceError
from .gradient_noise import GradientNoise, SpectrumMethod
from .memory_plan import MemoryPlan
from .spectrum import Spectrum

__all__ = [
    "ConvergenceError",
    "CovarianceOperator",
    "GradientNoise",
    "MemoryPlan",
    "ParamLayout",
    "SpectralDensity",
    "Spectrum",
    "SpectrumMethod",
]
