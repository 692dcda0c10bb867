"""Argument checks shared by the whole package.

Every check raises with one message shape: the argument, where it was
given, the constraint, the value received, and how to fix it when the fix is known::

    the 'k' parameter of GradientNoise.spectrum must be an int in [1, 13338], got 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from enum import Enum
from typing import Any, TypeVar, overload

E = TypeVar("E", bound=Enum)


def _fmt(name: str, where: str) -> str:
    return f"the '{name}' parameter of {where}" if where else f"the '{name}' parameter"


def check_int(
    name: str,
    value: Any,
    *,
    where: str = "",
    low: int | None = None,
    high: int | None = None,
    hint: str = "",
) -> int:
    """Return ``value`` as an int, or raise if it is not an int in ``[low, high]``.

    Args:
        name: Name of the argument, as the user wrote it.
        value: The value received.
        where: The function or class that received it (e.g. ``"GradientNoise.spectrum"``).
        low: Smallest allowed value, or None for no bound.
        high: Largest allowed value, or None for no bound.
        hint: A sentence appended to the message that says how to fix it.

    Returns:
        The value as a Python int.

    Raises:
        ValueError: If ``value`` is not an integer in the interval.
    """
    lo = "-inf" if low is None else str(low)
    hi = "inf" if high is None else str(high)
    ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok and hasattr(value, "__index__") and not isinstance(value, bool | float):
        value, ok = int(value), True
    if not ok or (low is not None and value < low) or (high is not None and value > high):
        msg = f"{_fmt(name, where)} must be an int in [{lo}, {hi}], got {value!r}."
        raise ValueError(f"{msg} {hint}".strip())
    return int(value)


def check_real(
    name: str,
    value: Any,
    *,
    where: str = "",
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    hint: str = "",
) -> float:
    """Return ``value`` as a float, or raise if it is not a finite real in the interval.

    ``low_open``/``high_open`` make the corresponding end exclusive.

    Args:
        name: Name of the argument.
        value: The value received.
        where: The function or class that received it.
        low: Lower bound, or None.
        high: Upper bound, or None.
        low_open: Exclude ``low`` itself.
        high_open: Exclude ``high`` itself.
        hint: A sentence appended to the message that says how to fix it.

    Returns:
        The value as a Python float.

    Raises:
        ValueError: If ``value`` is not a finite real number in the interval.
    """
    lb = "(" if low_open else "["
    rb = ")" if high_open else "]"
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    try:
        x = float(value)
        bad = isinstance(value, bool) or not math.isfinite(x)
    except (TypeError, ValueError):
        x, bad = math.nan, True
    if not bad and low is not None:
        bad = x <= low if low_open else x < low
    if not bad and high is not None:
        bad = x >= high if high_open else x > high
    if bad:
        if (not math.isfinite(x) and not math.isnan(x)) or (math.isnan(x) and _is_number(value)):
            # ±inf or NaN: say "finite" (an interval such as [-inf, inf] would contradict it)
            lb = "(" if low is None else lb
            rb = ")" if high is None else rb
            span = "" if low is None and high is None else f" in {lb}{lo}, {hi}{rb}"
            msg = f"{_fmt(name, where)} must be a finite real number{span}, got {value!r}."
        else:
            msg = f"{_fmt(name, where)} must be a real number in {lb}{lo}, {hi}{rb}, got {value!r}."
        raise ValueError(f"{msg} {hint}".strip())
    return x


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return not isinstance(value, bool)


@overload
def check_option(name: str, value: Any, options: type[E], *, where: str = "") -> E: ...
@overload
def check_option(name: str, value: Any, options: Iterable[str], *, where: str = "") -> str: ...
def check_option(
    name: str, value: Any, options: type[E] | Iterable[str], *, where: str = ""
) -> E | str:
    """Return the option ``value`` (an Enum member when ``options`` is an Enum), or raise.

    Args:
        name: Name of the argument.
        value: The value received (a string or an Enum member).
        options: A str-Enum class or an iterable of allowed strings.
        where: The function or class that received it.

    Returns:
        The matching Enum member, or the string itself.

    Raises:
        ValueError: If ``value`` is not one of the options; the message lists them.
    """
    if isinstance(options, type) and issubclass(options, Enum):
        allowed = [m.value for m in options]
        for m in options:
            if value is m or value == m.value:
                return m
    else:
        allowed = list(options)
        if value in allowed:
            return value
    raise ValueError(
        f"{_fmt(name, where)} must be one of {', '.join(repr(a) for a in allowed)}, got {value!r}."
    )
