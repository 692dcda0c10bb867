"""The gradient-noise diffusion matrix D(x): per-sample gradients, dense and matrix-free D, spectra."""

from .gradient_noise import GradientNoise, SpectrumMethod
from .layout import ParamLayout
from .operator import CovarianceOperator
from .spectrum import Spectrum

__all__ = ["CovarianceOperator", "GradientNoise", "ParamLayout", "Spectrum", "SpectrumMethod"]
