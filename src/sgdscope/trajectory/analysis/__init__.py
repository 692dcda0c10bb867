"""Statistical diagnostics of SGD trajectories: spectra, diffusion, currents, equilibrium tests.

Every function accepts a ``Trajectory`` or a plain array of shape (T, d) and returns a frozen
dataclass. See ``docs/analysis.md`` for what each statistic means, its null and its bias.
"""

from __future__ import annotations

from .currents import SubspaceCurrents as SubspaceCurrents
from .currents import subspace_currents as subspace_currents
from .diffusion import MSD as MSD
from .diffusion import msd as msd
from .equilibrium import EquilibriumStatus as EquilibriumStatus
from .equilibrium import EquilibriumTest as EquilibriumTest
from .equilibrium import equilibrium_test as equilibrium_test
from .flux import ProbabilityFlux as ProbabilityFlux
from .flux import probability_flux as probability_flux
from .irreversibility import EntropyProduction as EntropyProduction
from .irreversibility import Irreversibility as Irreversibility
from .irreversibility import entropy_production as entropy_production
from .irreversibility import irreversibility as irreversibility
from .ou import GaussianChain as GaussianChain
from .ou import OUFit as OUFit
from .ou import fit_ou as fit_ou
from .spectral import Autocorrelation as Autocorrelation
from .spectral import GradientNorm as GradientNorm
from .spectral import PowerSpectrum as PowerSpectrum
from .spectral import autocorrelation as autocorrelation
from .spectral import ewma as ewma
from .spectral import gradient_norm as gradient_norm
from .spectral import power_spectrum as power_spectrum
from .stationarity import Stationarity as Stationarity
from .stationarity import stationarity as stationarity

__all__ = [
    "MSD",
    "Autocorrelation",
    "EntropyProduction",
    "EquilibriumStatus",
    "EquilibriumTest",
    "GaussianChain",
    "GradientNorm",
    "Irreversibility",
    "OUFit",
    "PowerSpectrum",
    "ProbabilityFlux",
    "Stationarity",
    "SubspaceCurrents",
    "autocorrelation",
    "entropy_production",
    "equilibrium_test",
    "ewma",
    "fit_ou",
    "gradient_norm",
    "irreversibility",
    "msd",
    "power_spectrum",
    "probability_flux",
    "stationarity",
    "subspace_currents",
]
