import numpy as np
import pytest

from sgdscope.dynamics.grid import Grid


def test_cell_centres_spacing_and_volume():
    grid = Grid(bounds=[(-2, 2), (0, 1)], shape=(4, 5))
    np.testing.assert_allclose(grid.spacing, [1.0, 0.2])
    np.testing.assert_allclose(grid.axes[0], [-1.5, -0.5, 0.5, 1.5])
    np.testing.assert_allclose(grid.axes[1], [0.1, 0.3, 0.5, 0.7, 0.9])
    assert grid.points.shape == (4, 5, 2)
    np.testing.assert_allclose(grid.points[2, 3], [0.5, 0.7])
    assert grid.cell_volume == pytest.approx(0.2)
    assert grid.dim == 2 and grid.size == 20


def test_face_points_between_cells():
    grid = Grid(bounds=[(0, 3)], shape=3)
    np.testing.assert_allclose(grid.face_points(0)[..., 0], [1.0, 2.0])
    np.testing.assert_allclose(grid.face_points(0, periodic=True)[..., 0], [1.0, 2.0, 3.0])
    grid2 = Grid(bounds=[(0, 1), (0, 2)], shape=(4, 3))
    assert grid2.face_points(1).shape == (4, 2, 2)


def test_midpoint_integral_matches_closed_form():
    # Midpoint rule: ∫_0^1 x^2 dx = 1/3 with error −h²/12 exactly for a quadratic.
    n = 10
    grid = Grid(bounds=[(0, 1)], shape=n)
    got = grid.integrate(grid.points[..., 0] ** 2)
    assert got == pytest.approx(1 / 3 - (1 / n) ** 2 / 12, rel=1e-12)
    grid3 = Grid(bounds=[(0, 1), (0, 2), (-1, 1)], shape=(3, 4, 5))
    assert grid3.integrate(np.ones(grid3.shape)) == pytest.approx(4.0)


def test_index_of_and_equality():
    grid = Grid(bounds=[(-1, 1), (-1, 1)], shape=(4, 4))
    assert grid.index_of([0.1, -0.9]) == (2, 0)
    assert grid.index_of([5.0, -5.0]) == (3, 0)
    assert grid == Grid(bounds=[(-1.0, 1.0), (-1.0, 1.0)], shape=4)


@pytest.mark.parametrize(
    ("bounds", "shape", "match"),
    [
        ([], (3,), "must be 1 to 3 \\(low, high\\) pairs"),
        ([(0, 1)] * 4, (3,) * 4, "must be 1 to 3"),
        ([(0, 1, 2)], (3,), "must be 1 to 3"),
        ([(1, 0)], (3,), "bounds\\[0\\]\\[1\\]' parameter of Grid must be a real number in \\(1"),
        ([(0, float("nan"))], (3,), "bounds\\[0\\]\\[1\\]"),
        ([(0, 1), (0, 1)], (3,), "must have one entry per dimension \\(2\\)"),
        ([(0, 1)], (2,), "shape\\[0\\]' parameter of Grid must be an int in \\[3, inf\\], got 2"),
    ],
)
def test_bad_arguments(bounds, shape, match):
    with pytest.raises(ValueError, match=match):
        Grid(bounds=bounds, shape=shape)


@pytest.mark.parametrize(
    ("bounds", "shape", "match"),
    [
        ([(0, 1e-300)], 10, r"cell width h = 1e-301 .* Rescale the coordinates"),
        ([(-1e300, 1e300)], 10, r"cell width h = 2e\+299 .* Rescale"),
        ([(1e12, 1e12 + 1e-3)], 10, r"h > 10⁴ ε max\(\|low\|, \|high\|\)"),
        (
            [(-1, 1)],
            10.5,
            r"'shape' parameter of Grid must be an int or a sequence of ints \(cells",
        ),
        ([(-float("inf"), 1)], 10, r"'bounds\[0\]\[0\]' .* must be a finite real number, got -inf"),
        ([(0, float("inf"))], 10, r"must be a finite real number in \(0, inf\), got inf"),
    ],
)
def test_degenerate_grids_are_refused(bounds, shape, match):
    with pytest.raises(ValueError, match=match):
        Grid(bounds, shape)
