"""D(x) as a matrix-free operator (matvec/matmat over the data, ``.to_scipy()``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .._operator import BaseOperator

if TYPE_CHECKING:
    from .gradient_noise import GradientNoise

__all__ = ["CovarianceOperator"]


class CovarianceOperator(BaseOperator):
    r"""The centred gradient covariance D = (1/N) Σ (g_k − g)(g_k − g)ᵀ without forming it (eq. 2).

    Each product D @ X makes one pass over the data (or over the in-memory gradients when the
    :class:`~sgdscope.GradientNoise` caches them): X is projected onto the centred gradients of a
    chunk, P = Gᶜ X, and accumulated as Gᶜᵀ P. Memory O(d · k + chunk · d).

    Unlike curvlinops' ``EFLinearOperator`` (the uncentred Σ g_k g_kᵀ), the mean is removed.

    Args:
        noise: The :class:`~sgdscope.GradientNoise` whose D this is.
    """

    SELF_ADJOINT = True

    def __init__(self, noise: GradientNoise) -> None:
        super().__init__(noise.dim, noise.dtype, noise.device)
        self.noise = noise

    @property
    def layout(self):
        """The :class:`~sgdscope.ParamLayout` of the d coordinates."""
        return self.noise.layout

    def _matmat(self, X: torch.Tensor) -> torch.Tensor:
        return self.noise._centred_products(X)
