import pytest

import sgdscope as sg


def test_with_replacement_is_lr_over_2b():
    assert sg.temperature(0.1, 128) == pytest.approx(0.1 / 256)


def test_without_replacement_factor_remark_12():
    # (1 - b/N) = 1/2 at b/N = 1/2
    assert sg.temperature(0.2, 64, n=128, replacement=False) == pytest.approx(0.2 / 128 * 0.5)
    # b = N: full-batch gradient descent has zero temperature
    assert sg.temperature(0.2, 64, n=64, replacement=False) == 0.0


def test_momentum_divides_by_one_minus_mu():
    assert sg.temperature(0.1, 128, momentum=0.9) == pytest.approx(0.1 / 256 / 0.1)


def test_linear_scaling_keeps_temperature_remark_11():
    assert sg.temperature(0.1, 128) == pytest.approx(sg.temperature(0.4, 512))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"lr": 0.0, "batch_size": 1},
            r"'lr' parameter of temperature must be a real number in \(0",
        ),
        (
            {"lr": 0.1, "batch_size": 0},
            r"'batch_size' parameter of temperature must be an int in \[1, inf\], got 0",
        ),
        ({"lr": 0.1, "batch_size": 8, "momentum": 1.0}, r"'momentum'.*\[0, 1\), got 1.0"),
        (
            {"lr": 0.1, "batch_size": 8, "replacement": False},
            r"'n' parameter of temperature is required",
        ),
        (
            {"lr": 0.1, "batch_size": 8, "n": 4, "replacement": False},
            r"'n'.*\[8, inf\], got 4.*cannot exceed",
        ),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sg.temperature(**kwargs)
