"""The temperature of SGD, β⁻¹ = η / (2b), and its corrections."""

from __future__ import annotations

from ._validation import check_int, check_real

__all__ = ["temperature"]


def temperature(
    lr: float,
    batch_size: int,
    n: int | None = None,
    replacement: bool = True,
    momentum: float = 0.0,
) -> float:
    r"""Temperature :math:`\beta^{-1}` of SGD with learning rate η and mini-batch size b.

    With replacement (Chaudhari & Soatto 2018, Lemma 2, eq. 3):

    .. math:: \beta^{-1} = \frac{\eta}{2b}.

    Without replacement the mini-batch gradient covariance carries the finite-population factor
    (1 − b/N) (Remark 12, App. A), so

    .. math:: \beta'^{-1} = \frac{\eta}{2b}\Big(1 - \frac{b}{N}\Big),

    which vanishes as b → N (full-batch gradient descent has no noise). Heavy-ball momentum μ is
    taken in its standard SDE limit, an effective learning rate η/(1 − μ), so β⁻¹ is divided by
    (1 − μ). That limit is not part of the paper, whose theory is for plain SGD, although all its
    experiments used μ = 0.9 (§IV; ``SGD(momentum=0.9)`` in the authors' code,
    github.com/pratikac/grad-info, commit 4e1bd82).

    Args:
        lr: Learning rate η > 0.
        batch_size: Mini-batch size b ≥ 1.
        n: Data-set size N; required when ``replacement=False`` (then b ≤ N).
        replacement: Whether mini-batches are drawn with replacement (the paper's eq. 2 model).
        momentum: Heavy-ball momentum μ in [0, 1).

    Returns:
        β⁻¹ as a float.

    Raises:
        ValueError: If an argument is out of range, or ``n`` is missing without replacement.

    Example:
        >>> temperature(0.1, 128)
        0.000390625
        >>> temperature(0.1, 64, n=128, replacement=False)
        0.000390625
    """
    where = "temperature"
    lr = check_real("lr", lr, where=where, low=0.0, low_open=True)
    b = check_int("batch_size", batch_size, where=where, low=1)
    mu = check_real("momentum", momentum, where=where, low=0.0, high=1.0, high_open=True)
    beta_inv = lr / (2.0 * b)
    if not replacement:
        if n is None:
            raise ValueError(
                "the 'n' parameter of temperature is required when replacement=False, got None. "
                "Pass the data-set size, e.g. temperature(lr, b, n=len(dataset), replacement=False)."
            )
        n = check_int("n", n, where=where, low=b, hint="Without replacement b cannot exceed N.")
        beta_inv *= 1.0 - b / n
    elif n is not None:
        check_int("n", n, where=where, low=1)
    return beta_inv / (1.0 - mu)
