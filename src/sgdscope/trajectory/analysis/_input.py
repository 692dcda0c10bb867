"""One adapter for every analysis: a ``Trajectory`` or a plain array of shape (T, d).

It validates once (finite values, enough snapshots, no constant coordinate) and offers a streaming
projection (the trajectory package's PCA) shared by the analyses that work in a plane.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..projection import (
    _MAX_COV_DIM,
    Projection,
    _pca_from_scan,
    _power_of_two_scale,
    _Scan,
    _scan,
    basis_projection,
    pca_projection,
)

# Rows per chunk when streaming over time (about 32 MB of float64 at d = 10³).
_CHUNK = 4096


def positions(
    traj: Any,
    *,
    where: str,
    min_length: int = 2,
    why: str = "",
    check_values: bool = True,
    name: str = "traj",
) -> np.ndarray:
    """Return the weights of ``traj`` as an array of shape (T, d), validated.

    Args:
        traj: A ``Trajectory`` (anything with a ``weights`` attribute sliceable as
            ``weights[t0:t1]``) or an array-like of shape (T, d) (a 1-D array is one coordinate).
        where: Name of the calling function, for error messages.
        min_length: Smallest number of snapshots T the caller can work with.
        why: What the minimum is for (e.g. ``"the lags up to 50"``), appended to the message.
        check_values: Scan the values (finite, no constant coordinate) here; False when the
            caller goes on to :func:`project`, which checks them in its own single pass.
        name: The argument's name in error messages.

    Returns:
        A (T, d) array (float32 or float64; a view or memory map when possible, never upcast).

    Raises:
        TypeError: If ``traj`` is neither a Trajectory nor numeric.
        ValueError: If the shape is not (T, d), T < ``min_length``, a value is not finite, or a
            coordinate is constant.
    """
    if hasattr(traj, "weights") and not isinstance(traj, np.ndarray):
        x = traj.weights[0 : len(traj)]
    else:
        x = traj
    try:
        x = np.asarray(x)
    except (TypeError, ValueError) as exc:  # pragma: no cover - numpy message is kept
        raise TypeError(
            f"the '{name}' parameter of {where} must be a Trajectory or an array of shape (T, d), "
            f"got {type(traj).__name__}."
        ) from exc
    if x.dtype.kind not in "fiu" or x.dtype == np.float16:
        raise TypeError(
            f"the '{name}' parameter of {where} must hold real numbers, got dtype {x.dtype}."
        )
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(
            f"the '{name}' parameter of {where} must have shape (T, d), got shape {x.shape}."
        )
    if x.dtype.kind in "iu":
        x = x.astype(np.float64)
    n = x.shape[0]
    if n < min_length:
        tail = f" for {why}" if why else ""
        raise ValueError(
            f"the '{name}' parameter of {where} has {n} snapshots, but at least {min_length} are "
            f"needed{tail}. Record a longer trajectory or ask for fewer/shorter lags."
        )
    if not check_values:
        return x
    lo = np.full(x.shape[1], np.inf)
    hi = np.full(x.shape[1], -np.inf)
    for t0 in range(0, n, _CHUNK):
        blk = x[t0 : t0 + _CHUNK]
        if not np.isfinite(blk).all():
            bad = np.argwhere(~np.isfinite(blk))[0]
            raise ValueError(
                f"the '{name}' parameter of {where} contains a non-finite value (NaN or inf) at "
                f"snapshot {t0 + bad[0]}, coordinate {bad[1]}. Drop the diverged part of the run "
                "(e.g. traj.weights[:t]) before analysing it."
            )
        lo = np.minimum(lo, blk.min(axis=0))
        hi = np.maximum(hi, blk.max(axis=0))
    _refuse_constant(np.flatnonzero(hi <= lo), where, name)
    return x


def _refuse_constant(const: np.ndarray, where: str, name: str = "traj") -> None:
    if const.size:
        shown = ", ".join(str(i) for i in const[:5]) + (", ..." if const.size > 5 else "")
        raise ValueError(
            f"the '{name}' parameter of {where} has {const.size} constant coordinate(s) "
            f"(index {shown}); their statistics are undefined. Drop them first, e.g. "
            "x[:, x.std(axis=0) > 0], or record only the parameters that train."
        )


def _check_scan(scan: _Scan, where: str) -> None:
    """The checks of :func:`positions`, from the moments of one pass."""
    if scan.bad is not None:
        t, c = scan.bad
        raise ValueError(
            f"the 'traj' parameter of {where} contains a non-finite value (NaN or inf) at "
            f"snapshot {t}, coordinate {c}. Drop the diverged part of the run "
            "(e.g. traj.weights[:t]) before analysing it."
        )
    diag = scan.m2 if scan.m2.ndim == 1 else np.diag(scan.m2)
    _refuse_constant(np.flatnonzero(~(diag > 0)), where)


def project(
    x: np.ndarray, n_components: int, basis: Any, *, where: str
) -> tuple[np.ndarray, Projection | None, str]:
    """Validate and project (T, d) positions to centred float64 (T, k) coordinates.

    One streamed pass over x in its own dtype (:func:`sgdscope.trajectory.projection._scan`)
    checks the values (finite, no constant coordinate; :func:`positions` with
    ``check_values=False`` leaves them to it) and gives the mean, the total variance and, for PCA
    with d ≤ min(T, 4096), the covariance; a second, lighter pass applies the projection. PCA of
    positions takes the top ``n_components``; a given (k, d) ``basis`` is orthonormalised and
    centred on the mean position. When d ≤ ``n_components`` and no basis is given, the
    coordinates are kept. Values beyond 2^±64 (where squares overflow or underflow) are divided
    by a power of two (exact), and ``plane`` says so.

    Returns:
        ``(y, projection or None, plane)`` where ``plane`` says in words where y lives.

    Raises:
        ValueError: If ``basis`` is not (k, d) with the trajectory's d, or a value is not finite,
            or a coordinate is constant.
    """
    n, d = x.shape
    scale = _power_of_two_scale(x)
    pca = basis is None and d > n_components
    cross = pca and d <= _MAX_COV_DIM and n >= d
    scan = _scan(x, cross=cross, scale=scale)
    _check_scan(scan, where)
    if basis is None and d <= n_components:
        y = np.asarray(x, dtype=np.float64) - scan.mean
        proj, what = None, None
    else:
        if pca:
            proj = (
                _pca_from_scan(scan, n_components, center=True, where=where)
                if cross
                else pca_projection(x, k=n_components)
            )
            what = f"top-{proj.k} PCA plane" if proj.k == 2 else f"top-{proj.k} PCA subspace"
        else:
            b = np.asarray(basis, dtype=np.float64)
            if b.ndim != 2 or b.shape[1] != d:
                raise ValueError(
                    f"the 'basis' parameter of {where} must have shape (k, d) = (k, {d}), one "
                    f"direction per row, got shape {b.shape}."
                )
            proj = basis_projection(b, mean=scan.mean, orthonormalize=True)
            what = f"given {proj.k}-D basis"
        y = proj.apply(x)
    y = y - y.mean(axis=0)
    if scale != 1.0:
        y /= scale
    total = float(np.sum(scan.m2 if scan.m2.ndim == 1 else np.diag(scan.m2))) / n
    pct = 100.0 * float(y.var(axis=0).sum()) / max(total, 1e-300)
    plane = (
        f"the {d} original coordinates"
        if what is None
        else f"the {what} ({pct:.1f}% of the variance)"
    )
    if scale != 1.0:
        plane += f", in units of {scale:.3g} (the values were rescaled by this power of two)"
    return y, proj, plane


def project_velocities(
    velocities: Any, proj: Projection | None, shape: tuple[int, int], *, where: str
) -> np.ndarray:
    """Project velocities (T, d) onto the positions' directions: centred float64 (T, k).

    One streamed pass (:meth:`Projection.apply` with the positions' basis and no centre; the
    coordinates themselves when the positions were not projected), then the values are checked
    on the (T, k) result: a non-finite velocity gives a non-finite projection, and only then is
    the input searched for it. Projected values beyond 2^±64 are divided by a power of two.

    Returns:
        The projected velocities, centred, float64 (T, k).

    Raises:
        ValueError: If the velocities' shape differs from the positions', or a value is not
            finite, or a projected velocity is constant.
    """
    v = positions(velocities, where=where, check_values=False, name="velocities")
    if tuple(v.shape) != tuple(shape):
        raise ValueError(
            f"the 'velocities' parameter of {where} must have the positions' shape (T, d) = "
            f"{tuple(shape)}, one velocity per snapshot and weight, got shape {v.shape}."
        )
    if proj is None:
        yv = np.array(v, dtype=np.float64)
    else:
        yv = Projection(proj.basis, np.zeros(proj.dim), kind=proj.kind).apply(v)
    bad = ~np.isfinite(yv).all(axis=1)
    if bad.any():
        t = int(np.flatnonzero(bad)[0])
        cols = np.flatnonzero(~np.isfinite(np.asarray(v[t], dtype=np.float64)))
        if not cols.size:
            raise ValueError(
                f"the 'velocities' parameter of {where} overflows float64 when projected at "
                f"snapshot {t}; divide the velocities by a power of two first."
            )
        raise ValueError(
            f"the 'velocities' parameter of {where} contains a non-finite value (NaN or inf) at "
            f"snapshot {t}, coordinate {int(cols[0])}. Drop the diverged part of the run before "
            "analysing it."
        )
    yv -= yv.mean(axis=0)
    _refuse_constant(np.flatnonzero(~(yv.std(axis=0) > 0)), where, "velocities")
    top = float(np.abs(yv).max())
    if top > 2.0**64 or top < 2.0**-64:
        yv = np.ldexp(yv, -int(np.frexp(top)[1]))
    return yv


def as_generator(seed: int | np.random.Generator | None) -> np.random.Generator:
    """A dedicated numpy Generator (never the global RNG) from a seed or a Generator."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)
