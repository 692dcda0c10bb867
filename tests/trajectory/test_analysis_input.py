"""The shared adapter: arrays and Trajectory-likes, bad input named with its fix."""

import numpy as np
import pytest

from sgdscope.trajectory.analysis import autocorrelation, equilibrium_test, probability_flux
from sgdscope.trajectory.analysis._input import positions, project


class FakeTrajectory:
    """The recorder's Trajectory contract: lazy ``weights[t0:t1]``, ``len``, ``dim``."""

    def __init__(self, x):
        self._x = x
        self.dim = x.shape[1]
        self.scalars = {}
        self.gradients = None

    class _W:
        def __init__(self, x):
            self.x = x

        def __getitem__(self, sl):
            return self.x[sl].copy()

    @property
    def weights(self):
        return self._W(self._x)

    def __len__(self):
        return len(self._x)


def test_trajectory_and_array_agree():
    x = np.random.default_rng(0).standard_normal((300, 3)).cumsum(0)
    a = autocorrelation(x, lags=[0, 1, 4])
    b = autocorrelation(FakeTrajectory(x), lags=[0, 1, 4])
    np.testing.assert_array_equal(a.per_coordinate, b.per_coordinate)


def test_float32_is_not_upcast_and_1d_is_one_coordinate():
    x = np.ones((10, 2), dtype=np.float32).cumsum(0)
    assert positions(x, where="f").dtype == np.float32
    assert positions(np.arange(5.0), where="f").shape == (5, 1)


def test_projection_is_pca_of_positions():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2000, 5)) * np.array([5.0, 3.0, 1.0, 0.5, 0.1])
    y, proj, plane = project(x, 2, None, where="f")
    np.testing.assert_allclose(np.abs(proj.basis), np.eye(5)[:2], atol=0.05)
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-10)
    assert plane.startswith("the top-2 PCA plane (96.")
    y2, proj2, plane2 = project(x, 2, np.eye(5)[[1, 0]], where="f")
    np.testing.assert_allclose(y2[:, 0], x[:, 1] - x[:, 1].mean(), atol=1e-10)
    assert proj2 is not None and plane2.startswith("the given 2-D basis")
    _y3, proj3, plane3 = project(x[:, :2], 2, None, where="f")
    assert proj3 is None and plane3 == "the 2 original coordinates"


def test_bad_input():
    x = np.random.default_rng(0).standard_normal((200, 3)).cumsum(0)
    bad = x.copy()
    bad[17, 2] = np.nan
    with pytest.raises(ValueError, match=r"non-finite value .* at snapshot 17, coordinate 2"):
        equilibrium_test(bad)
    const = x.copy()
    const[:, 1] = 3.0
    with pytest.raises(ValueError, match=r"1 constant coordinate\(s\) \(index 1\)"):
        probability_flux(const)
    with pytest.raises(ValueError, match=r"must have shape \(T, d\), got shape \(2, 3, 4\)"):
        autocorrelation(np.zeros((2, 3, 4)))
    with pytest.raises(TypeError, match="must hold real numbers, got dtype <U1"):
        autocorrelation(np.array([["a", "b"]]))
    with pytest.raises(
        ValueError, match=r"'basis' parameter of f must have shape \(k, d\) = \(k, 3\)"
    ):
        project(x, 2, np.eye(4)[:2], where="f")
