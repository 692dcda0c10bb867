"""_params.full_gradient against the closed-form least-squares gradient, and its edge cases."""

import numpy as np
import pytest
import torch
from torch import nn

from sgdscope._params import full_gradient


def _squared(out, target):
    return 0.5 * ((out - target) ** 2).sum(dim=1)


def test_full_gradient_is_the_closed_form_least_squares_gradient():
    """f(w) = (1/N) Σ ½ (wᵀx_k − y_k)²: ∇f = (1/N) Xᵀ(Xw − y), over batches of any size."""
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(37, 4, generator=g, dtype=torch.float64), torch.randn(37, 1, generator=g)
    y = y.double()
    model = nn.Linear(4, 1, bias=False).double()
    w = model.weight.detach().reshape(-1)
    expected = X.T @ (X @ w - y[:, 0]) / 37
    loss = (0.5 * (X @ w - y[:, 0]) ** 2).mean()
    batches = [(X[i : i + 10], y[i : i + 10]) for i in range(0, 37, 10)]
    grad, f = full_gradient(model, _squared, batches, list(model.parameters()))
    np.testing.assert_allclose(grad.numpy(), expected.numpy(), rtol=1e-12)
    assert f.item() == pytest.approx(loss.item(), rel=1e-12)
    assert model.weight.grad is None  # .grad untouched


def test_unused_parameters_get_zero_and_each_modules_mode_is_restored():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2), nn.Linear(2, 2))
    unused = nn.Linear(2, 2)
    model.add_module("unused", unused)
    model.train()
    model[1].eval()  # a frozen BatchNorm stays frozen
    params = [model[0].weight, unused.weight]
    x, t = torch.randn(8, 3), torch.randn(8, 2)
    grad, _ = full_gradient(nn.Sequential(*list(model)[:3]), _squared, (x, t), params)
    assert grad.shape == (6 + 4,) and torch.all(grad[6:] == 0)
    full_gradient(model[:3], _squared, (x, t), params)
    assert model.training and model[0].training and not model[1].training


def test_full_gradient_errors():
    model = nn.Linear(3, 2)
    x, t = torch.randn(4, 3), torch.randn(4, 2)
    with pytest.raises(ValueError, match=r"per-sample losses of shape \(4,\).*got shape \(\)"):
        full_gradient(model, nn.MSELoss(), (x, t), list(model.parameters()), where="here")
    with pytest.raises(ValueError, match=r"'gradient_data' parameter of here yielded no samples"):
        full_gradient(model, _squared, [], list(model.parameters()), where="here")
