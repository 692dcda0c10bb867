r"""Finite-sum problems f(x) = (1/N) Σ_k ℓ_k(x) for :func:`sgdscope.simulate_sgd`.

Each problem evaluates per-sample losses for many parameter vectors (chains) at once, and also
exposes a ``torch.nn.Module`` view (:meth:`AbstractFiniteSumProblem.module`), a per-sample
``loss_fn`` and ``data`` so that :class:`sgdscope.GradientNoise` can measure D(x) on it:
``GradientNoise(p.module(x), p.loss_fn, data=p.data)``. The flat parameter vector x follows the
module's ``named_parameters()`` order (the convention of README.md and docs/noise.md).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
import torch.nn.functional as tF
from torch import Tensor, nn

from .._validation import check_int, check_real

__all__ = ["AbstractFiniteSumProblem", "LeastSquares", "LogisticRegression", "MLPProblem"]


def _check_data(cls: str, inputs: Tensor, targets: Tensor, target_float: bool) -> None:
    if not isinstance(inputs, Tensor) or inputs.ndim != 2 or not inputs.is_floating_point():
        got = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
        raise ValueError(
            f"the 'inputs' parameter of {cls} must be a float tensor of shape (N, p), got {got}."
        )
    n = inputs.shape[0]
    if not isinstance(targets, Tensor) or tuple(targets.shape) != (n,):
        got = tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
        raise ValueError(
            f"the 'targets' parameter of {cls} must be a tensor of shape (N,) = ({n},), got {got}."
        )
    if target_float and not targets.is_floating_point():
        raise ValueError(
            f"the 'targets' parameter of {cls} must be a float tensor, got dtype {targets.dtype}."
        )
    if not bool(torch.isfinite(inputs).all()):
        raise ValueError(f"the 'inputs' parameter of {cls} must be finite, got NaN or inf.")


class AbstractFiniteSumProblem(ABC):
    r"""A loss :math:`f(x) = \frac1N\sum_{k=1}^N \ell_k(x)` over a flat parameter vector x ∈ ℝ^dim.

    Subclasses write :meth:`per_sample_losses` (batched over chains) and :meth:`module`;
    everything else (mini-batch gradients, full loss, gradient, Hessian, per-sample gradients)
    is derived here by autograd. Attributes ``inputs`` (N, p) and ``targets`` (N,) hold the data.
    """

    inputs: Tensor
    targets: Tensor

    @property
    @abstractmethod
    def dim(self) -> int:
        """The number of parameters d."""

    @property
    def n_samples(self) -> int:
        """N, the number of terms in the finite sum."""
        return self.inputs.shape[0]

    @property
    def data(self) -> tuple[Tensor, Tensor]:
        """``(inputs, targets)``, the form :class:`sgdscope.GradientNoise` takes."""
        return self.inputs, self.targets

    @abstractmethod
    def per_sample_losses(self, x: Tensor, idx: Tensor) -> Tensor:
        """ℓ_k(x_c) for chains x (C, dim) and sample indices idx (C, b); returns (C, b)."""

    @abstractmethod
    def module(self, x: Tensor) -> nn.Module:
        """A fresh ``nn.Module`` whose flattened ``named_parameters()`` equal x (dim,)."""

    @staticmethod
    @abstractmethod
    def loss_fn(outputs: Tensor, targets: Tensor) -> Tensor:
        """Per-sample losses (n,) from ``module(x)(inputs)`` and targets (``reduction='none'``)."""

    @abstractmethod
    def initial_point(self, seed: int = 0) -> Tensor:
        """A reasonable starting point (dim,)."""

    def batch_gradient(self, x: Tensor, idx: Tensor) -> Tensor:
        """Mini-batch gradients ∇f_b(x_c) = (1/b) Σ_{k∈b_c} ∇ℓ_k(x_c); x (C, dim), idx (C, b) → (C, dim).

        Chains are independent, so one backward pass of Σ_c mean_b ℓ gives every chain's gradient.

        Returns:
            The chains' mini-batch gradients, shape (C, dim).
        """
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.per_sample_losses(xg, idx).mean(dim=1).sum(), xg)
        return g

    def loss(self, x: Tensor) -> Tensor:
        """The full loss f(x) for x (dim,) (a 0-d tensor)."""
        idx = torch.arange(self.n_samples, device=self.inputs.device)[None]
        return self.per_sample_losses(x[None], idx).mean()

    def gradient(self, x: Tensor) -> Tensor:
        """∇f(x), shape (dim,)."""
        idx = torch.arange(self.n_samples, device=self.inputs.device)[None]
        return self.batch_gradient(x[None], idx)[0]

    def hessian(self, x: Tensor) -> Tensor:
        """∇²f(x), shape (dim, dim), by autograd (for small dim)."""
        return torch.autograd.functional.hessian(self.loss, x.detach())

    def per_sample_gradients(self, x: Tensor) -> Tensor:
        """g_k = ∇ℓ_k(x) for every k, shape (N, dim), by autograd (for small problems)."""
        idx = torch.arange(self.n_samples, device=self.inputs.device)[None]
        jac = torch.autograd.functional.jacobian(
            lambda z: self.per_sample_losses(z[None], idx)[0], x.detach()
        )
        return jac


def _linear_module(x: Tensor) -> nn.Module:
    m = nn.Linear(x.shape[0], 1, bias=False).to(dtype=x.dtype, device=x.device)
    with torch.no_grad():
        m.weight.copy_(x[None])
    return m


@dataclass(frozen=True, eq=False)
class LeastSquares(AbstractFiniteSumProblem):
    r"""Least squares, :math:`\ell_k(x) = \tfrac12 (a_k^\top x - y_k)^2`.

    Everything is in closed form: ∇ℓ_k = a_k r_k with r_k = a_kᵀx − y_k, the Hessian
    H = AᵀA/N (constant), and D(x) = (1/N) Σ_k (a_k r_k − g)(a_k r_k − g)ᵀ (eq. 2).

    Attributes:
        inputs: A, the (N, d) design matrix.
        targets: y, the (N,) responses.
    """

    inputs: Tensor
    targets: Tensor

    def __post_init__(self) -> None:
        _check_data("LeastSquares", self.inputs, self.targets, target_float=True)

    @classmethod
    def synthetic(
        cls,
        n_samples: int = 64,
        dim: int = 2,
        noise: float = 1.0,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
    ) -> LeastSquares:
        """A ~ N(0, 1), y = A x_true + noise·ε with x_true ~ N(0, 1), all from ``seed``.

        Args:
            n_samples: N.
            dim: d.
            noise: Standard deviation of ε (sets the size of D at the minimum).
            seed: Seed of a dedicated generator.
            dtype: Float dtype.

        Returns:
            The problem.
        """
        n = check_int("n_samples", n_samples, where="LeastSquares.synthetic", low=1)
        d = check_int("dim", dim, where="LeastSquares.synthetic", low=1)
        s = check_real("noise", noise, where="LeastSquares.synthetic", low=0.0)
        g = torch.Generator().manual_seed(seed)
        A = torch.randn((n, d), generator=g, dtype=dtype)
        x_true = torch.randn(d, generator=g, dtype=dtype)
        y = A @ x_true + s * torch.randn(n, generator=g, dtype=dtype)
        return cls(A, y)

    @property
    def dim(self) -> int:
        """d, the number of columns of A."""
        return self.inputs.shape[1]

    def per_sample_losses(self, x: Tensor, idx: Tensor) -> Tensor:
        """½ (a_kᵀ x_c − y_k)² for x (C, d), idx (C, b) → (C, b)."""
        r = torch.einsum("cbd,cd->cb", self.inputs[idx], x) - self.targets[idx]
        return 0.5 * r**2

    def batch_gradient(self, x: Tensor, idx: Tensor) -> Tensor:
        """(1/b) Σ_k a_k (a_kᵀ x_c − y_k), in closed form; (C, d)."""
        A = self.inputs[idx]
        r = torch.einsum("cbd,cd->cb", A, x) - self.targets[idx]
        return torch.einsum("cbd,cb->cd", A, r) / idx.shape[1]

    def hessian(self, x: Tensor | None = None) -> Tensor:
        """H = AᵀA / N (independent of x)."""
        return self.inputs.T @ self.inputs / self.n_samples

    def minimizer(self) -> Tensor:
        """x* = argmin f, by least squares."""
        return torch.linalg.lstsq(self.inputs, self.targets[:, None]).solution[:, 0]

    def module(self, x: Tensor) -> nn.Module:
        """``nn.Linear(d, 1, bias=False)`` with weight x."""
        return _linear_module(x)

    @staticmethod
    def loss_fn(outputs: Tensor, targets: Tensor) -> Tensor:
        """½ (output − y)², per sample."""
        return 0.5 * (outputs.reshape(targets.shape) - targets) ** 2

    def initial_point(self, seed: int = 0) -> Tensor:
        """Zero."""
        return torch.zeros(self.dim, dtype=self.inputs.dtype, device=self.inputs.device)


@dataclass(frozen=True, eq=False)
class LogisticRegression(AbstractFiniteSumProblem):
    r"""Logistic regression, :math:`\ell_k(x) = \log(1 + e^{z_k}) - y_k z_k` with z_k = a_kᵀ x.

    Add a column of ones to the inputs for an intercept.

    Attributes:
        inputs: The (N, d) features.
        targets: The (N,) labels in {0, 1}, float.
    """

    inputs: Tensor
    targets: Tensor

    def __post_init__(self) -> None:
        _check_data("LogisticRegression", self.inputs, self.targets, target_float=True)
        if not bool(((self.targets == 0) | (self.targets == 1)).all()):
            raise ValueError(
                "the 'targets' parameter of LogisticRegression must hold labels 0 or 1, got "
                f"values {torch.unique(self.targets)[:5].tolist()}."
            )

    @classmethod
    def synthetic(
        cls,
        n_samples: int = 256,
        dim: int = 2,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
    ) -> LogisticRegression:
        """Features ~ N(0, 1); labels ~ Bernoulli(σ(a_kᵀ x_true)) with x_true ~ N(0, 1).

        Args:
            n_samples: N.
            dim: d.
            seed: Seed of a dedicated generator.
            dtype: Float dtype.

        Returns:
            The problem (not separable with high probability, so a minimiser exists).
        """
        n = check_int("n_samples", n_samples, where="LogisticRegression.synthetic", low=1)
        d = check_int("dim", dim, where="LogisticRegression.synthetic", low=1)
        g = torch.Generator().manual_seed(seed)
        X = torch.randn((n, d), generator=g, dtype=dtype)
        x_true = torch.randn(d, generator=g, dtype=dtype)
        y = torch.bernoulli(torch.sigmoid(X @ x_true), generator=g)
        return cls(X, y)

    @property
    def dim(self) -> int:
        """d, the number of features."""
        return self.inputs.shape[1]

    def per_sample_losses(self, x: Tensor, idx: Tensor) -> Tensor:
        """Binary cross-entropy with logits a_kᵀ x_c; (C, b)."""
        z = torch.einsum("cbd,cd->cb", self.inputs[idx], x)
        return tF.softplus(z) - self.targets[idx] * z

    def module(self, x: Tensor) -> nn.Module:
        """``nn.Linear(d, 1, bias=False)`` with weight x."""
        return _linear_module(x)

    @staticmethod
    def loss_fn(outputs: Tensor, targets: Tensor) -> Tensor:
        """Binary cross-entropy with logits, per sample."""
        return tF.binary_cross_entropy_with_logits(
            outputs.reshape(targets.shape), targets, reduction="none"
        )

    def initial_point(self, seed: int = 0) -> Tensor:
        """Zero."""
        return torch.zeros(self.dim, dtype=self.inputs.dtype, device=self.inputs.device)


@dataclass(frozen=True, eq=False)
class MLPProblem(AbstractFiniteSumProblem):
    """A one-hidden-layer tanh network with cross-entropy loss on (inputs, integer labels).

    The module is ``Sequential(Linear(p, hidden), Tanh(), Linear(hidden, n_classes))`` and x is
    the concatenation of ``0.weight, 0.bias, 2.weight, 2.bias`` (``named_parameters()`` order),
    so d = hidden·(p + 1) + n_classes·(hidden + 1).

    Attributes:
        inputs: The (N, p) features.
        targets: The (N,) integer labels in [0, n_classes).
        hidden: Width of the hidden layer.
        n_classes: Number of classes.
    """

    inputs: Tensor
    targets: Tensor
    hidden: int = 8
    n_classes: int = 2

    def __post_init__(self) -> None:
        _check_data("MLPProblem", self.inputs, self.targets, target_float=False)
        check_int("hidden", self.hidden, where="MLPProblem", low=1)
        check_int("n_classes", self.n_classes, where="MLPProblem", low=2)
        t = self.targets
        if (
            t.is_floating_point()
            or t.is_complex()
            or int(t.min()) < 0
            or int(t.max()) >= self.n_classes
        ):
            raise ValueError(
                "the 'targets' parameter of MLPProblem must hold integer labels in "
                f"[0, {self.n_classes}), got dtype {t.dtype} and range "
                f"[{float(t.min()):g}, {float(t.max()):g}]."
            )

    @classmethod
    def synthetic(
        cls,
        n_samples: int = 128,
        in_dim: int = 2,
        hidden: int = 4,
        n_classes: int = 2,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
    ) -> MLPProblem:
        """Gaussian blobs: class c centred at 2·e_c (cyclically), unit noise; balanced labels.

        Args:
            n_samples: N.
            in_dim: Input dimension p.
            hidden: Hidden width.
            n_classes: Number of classes.
            seed: Seed of a dedicated generator.
            dtype: Float dtype.

        Returns:
            The problem.
        """
        n = check_int("n_samples", n_samples, where="MLPProblem.synthetic", low=1)
        p = check_int("in_dim", in_dim, where="MLPProblem.synthetic", low=1)
        g = torch.Generator().manual_seed(seed)
        y = torch.arange(n) % n_classes
        centres = 2.0 * torch.eye(max(n_classes, p), dtype=dtype)[:n_classes, :p]
        X = centres[y] + torch.randn((n, p), generator=g, dtype=dtype)
        return cls(X, y, hidden=hidden, n_classes=n_classes)

    @property
    def dim(self) -> int:
        """hidden·(p + 1) + n_classes·(hidden + 1)."""
        p = self.inputs.shape[1]
        return self.hidden * (p + 1) + self.n_classes * (self.hidden + 1)

    def _unflatten(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        p, h, c = self.inputs.shape[1], self.hidden, self.n_classes
        sizes = [h * p, h, c * h, c]
        W1, b1, W2, b2 = torch.split(x, sizes, dim=-1)
        lead = x.shape[:-1]
        return W1.reshape(*lead, h, p), b1, W2.reshape(*lead, c, h), b2

    def per_sample_losses(self, x: Tensor, idx: Tensor) -> Tensor:
        """Cross-entropy of the network with parameters x_c on samples idx_c; (C, b)."""
        W1, b1, W2, b2 = self._unflatten(x)
        hid = torch.tanh(torch.einsum("cbp,chp->cbh", self.inputs[idx], W1) + b1[:, None])
        logits = torch.einsum("cbh,cqh->cbq", hid, W2) + b2[:, None]
        logp = torch.log_softmax(logits, dim=-1)
        return -logp.gather(-1, self.targets[idx][..., None])[..., 0]

    def module(self, x: Tensor) -> nn.Module:
        """The ``nn.Sequential`` network with parameters x."""
        p = self.inputs.shape[1]
        m = nn.Sequential(
            nn.Linear(p, self.hidden), nn.Tanh(), nn.Linear(self.hidden, self.n_classes)
        )
        m = m.to(dtype=x.dtype, device=x.device)
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(x.detach(), m.parameters())
        return m

    @staticmethod
    def loss_fn(outputs: Tensor, targets: Tensor) -> Tensor:
        """Cross-entropy, per sample."""
        return tF.cross_entropy(outputs, targets, reduction="none")

    def initial_point(self, seed: int = 0) -> Tensor:
        """N(0, 1/fan_in) weights and zero biases, from a dedicated generator."""
        g = torch.Generator().manual_seed(seed)
        p, h, c = self.inputs.shape[1], self.hidden, self.n_classes
        dt = self.inputs.dtype
        parts = [
            torch.randn(h * p, generator=g, dtype=dt) / p**0.5,
            torch.zeros(h, dtype=dt),
            torch.randn(c * h, generator=g, dtype=dt) / h**0.5,
            torch.zeros(c, dtype=dt),
        ]
        return torch.cat(parts).to(self.inputs.device)
