r"""Low-dimensional views of a trajectory: PCA of positions or increments, random directions, a basis.

A :class:`Projection` maps a weight vector :math:`x\in\mathbb R^d` to coordinates

.. math:: y = B\,(x - m) \in \mathbb R^k,

with orthonormal rows :math:`B \in \mathbb R^{k\times d}` (:math:`BB^\top = I_k`) and a centre
:math:`m`. The paper's trajectory evidence (Chaudhari & Soatto 2018, §IV-B, Fig. 3) is per
coordinate; the probability flux of non-equilibrium tests lives in 2-D projections (Battle et al.
2016), and the natural planes are the top principal components of the positions, of the increments
:math:`x_{t+1} - x_t`, or the top eigenvectors of the diffusion matrix D (eq. 2), given as a basis.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np
import scipy.sparse.linalg
import torch

from .._validation import check_int, check_real

__all__ = [
    "CoordinateProjection",
    "Projection",
    "ProjectionKind",
    "basis_projection",
    "coordinate_projection",
    "pca_projection",
    "random_projection",
]

_BLOCK = 4096  # rows per block when streaming over an in-memory array
_SCAN_ELEMENTS = 1 << 22  # elements per block of the one-pass scan (16 MiB of float32)
_MAX_COV_DIM = 4096  # above this d, PCA uses an SVD of the data instead of the d x d covariance


class ProjectionKind(str, Enum):
    """How a projection's directions were chosen."""

    PCA = "pca"
    """Top principal components of the positions x_t."""
    PCA_INCREMENTS = "pca_increments"
    """Top principal components of the increments x_{t+1} - x_t."""
    RANDOM = "random"
    """Directions drawn uniformly (Haar) from the Stiefel manifold."""
    BASIS = "basis"
    """A basis given by the user (for example D's top eigenvectors)."""
    COORDINATES = "coordinates"
    """k coordinates (single weights) drawn uniformly without replacement: the rows of B are
    rows of the identity (:class:`CoordinateProjection`)."""


@dataclass(frozen=True)
class Projection:
    """A linear map y = B (x - m) from weights to k coordinates.

    Attributes:
        basis: Array (k, d) whose rows are the directions (orthonormal unless the user passed a
            non-orthonormal basis to :func:`basis_projection`).
        mean: Array (d,), the centre m (zeros when uncentred).
        kind: How the directions were chosen.
        explained_variance: Array (k,) of the variance of the data along each direction (PCA
            only: eigenvalues of the sample covariance with the 1/(T-1) normalisation), else None.
    """

    basis: np.ndarray
    mean: np.ndarray
    kind: ProjectionKind = ProjectionKind.BASIS
    explained_variance: np.ndarray | None = field(default=None)

    def __post_init__(self) -> None:
        basis = np.array(self.basis, dtype=np.float64)
        mean = np.array(self.mean, dtype=np.float64)
        if basis.ndim != 2 or mean.shape != (basis.shape[1],):
            raise ValueError(
                f"the 'basis' and 'mean' parameters of Projection must have shapes (k, d) and "
                f"(d,), got {basis.shape} and {mean.shape}."
            )
        basis.flags.writeable = False
        mean.flags.writeable = False
        object.__setattr__(self, "basis", basis)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "kind", ProjectionKind(self.kind))

    @property
    def k(self) -> int:
        """Number of directions."""
        return self.basis.shape[0]

    @property
    def dim(self) -> int:
        """d, the dimension of the weight space."""
        return self.basis.shape[1]

    def apply(self, data: Any) -> np.ndarray:
        """Project weights: y = (x - m) Bᵀ.

        Args:
            data: Array (..., d), or a :class:`~sgdscope.Trajectory` or its ``weights``
                (streamed chunk by chunk, so it needs not fit in memory).

        Returns:
            Float64 array (..., k); (T, k) for a trajectory.

        Raises:
            ValueError: If the last dimension of ``data`` is not d.
        """
        source = getattr(data, "weights", data)
        if hasattr(source, "iter_chunks") or (
            isinstance(source, np.ndarray) and source.ndim == 2 and source.size > _BLOCK * 64
        ):
            self._check_dim(source.shape[-1])
            rows = max(_SCAN_ELEMENTS // max(self.dim, 1), 64)
            offset = self.mean @ self.basis.T
            parts = []
            for blk in _row_blocks(source, rows):  # float64 per block, never the whole array
                y = np.asarray(blk, dtype=np.float64) @ self.basis.T
                y -= offset
                parts.append(y)
            return np.concatenate(parts) if parts else np.zeros((0, self.k))
        x = np.asarray(data, dtype=np.float64)
        self._check_dim(x.shape[-1] if x.ndim else -1)
        return (x - self.mean) @ self.basis.T

    def lift(self, coords: Any) -> np.ndarray:
        """Map coordinates back to weight space: x = m + y B (exact on the span of B).

        Args:
            coords: Array (..., k).

        Returns:
            Float64 array (..., d).
        """
        return self.mean + np.asarray(coords, dtype=np.float64) @ self.basis

    def _check_dim(self, d: int) -> None:
        if d != self.dim:
            raise ValueError(
                f"the 'data' parameter of Projection.apply must have last dimension d = "
                f"{self.dim} (the projection's), got {d}."
            )


@dataclass(frozen=True)
class CoordinateProjection:
    """The projection onto k coordinate axes: y = x[indices].

    Its matrix B has rows of the identity (orthonormal), so it is a :class:`Projection` with
    zero centre in all but storage: it keeps the k indices instead of a dense k × d basis, so
    it costs O(k) memory and one gather per record at any d (a dense basis for a
    ResNet-18, d = 11.2M, at k = 256 would take 23 GB in float64). Single weights are also
    the view of the paper's trajectory figures (Chaudhari & Soatto 2018, §IV-B, Fig. 3: the
    FFT and autocorrelation of individual weights).

    Attributes:
        indices: Int64 array (k,) of strictly increasing coordinates in [0, d).
        dim: d, the dimension of the weight space.
    """

    indices: np.ndarray
    dim: int

    def __post_init__(self) -> None:
        idx = np.array(self.indices, dtype=np.int64).reshape(-1)
        dim = check_int("dim", self.dim, where="CoordinateProjection", low=1)
        if idx.size == 0 or idx.min() < 0 or idx.max() >= dim or np.any(np.diff(idx) <= 0):
            raise ValueError(
                f"the 'indices' parameter of CoordinateProjection must be a non-empty, strictly "
                f"increasing array of coordinates in [0, {dim}), got {self.indices!r}."
            )
        idx.flags.writeable = False
        object.__setattr__(self, "indices", idx)
        object.__setattr__(self, "dim", dim)

    @property
    def kind(self) -> ProjectionKind:
        """Always :attr:`ProjectionKind.COORDINATES`."""
        return ProjectionKind.COORDINATES

    @property
    def k(self) -> int:
        """Number of coordinates."""
        return int(self.indices.size)

    def apply(self, data: Any) -> np.ndarray:
        """Select the coordinates: y = x[..., indices].

        Args:
            data: Array (..., d), or a :class:`~sgdscope.Trajectory` or its ``weights``
                (read chunk by chunk).

        Returns:
            Float64 array (..., k); (T, k) for a trajectory.

        Raises:
            ValueError: If the last dimension of ``data`` is not d.
        """
        source = getattr(data, "weights", data)
        if hasattr(source, "iter_chunks"):
            self._check_dim(source.shape[-1])
            parts = [
                np.asarray(rows[:, self.indices], np.float64) for _, rows in source.iter_chunks()
            ]
            return np.concatenate(parts) if parts else np.zeros((0, self.k))
        x = np.asarray(source)
        self._check_dim(x.shape[-1] if x.ndim else -1)
        return np.asarray(x[..., self.indices], dtype=np.float64)

    def lift(self, coords: Any) -> np.ndarray:
        """Map coordinates back to weight space: zeros except at ``indices``.

        Args:
            coords: Array (..., k).

        Returns:
            Float64 array (..., d).
        """
        y = np.asarray(coords, dtype=np.float64)
        out = np.zeros((*y.shape[:-1], self.dim))
        out[..., self.indices] = y
        return out

    def _check_dim(self, d: int) -> None:
        if d != self.dim:
            raise ValueError(
                f"the 'data' parameter of CoordinateProjection.apply must have last dimension "
                f"d = {self.dim} (the projection's), got {d}."
            )


def coordinate_projection(dim: int, k: int = 2, *, seed: int | None = 0) -> CoordinateProjection:
    """k coordinates of the weight space drawn uniformly without replacement.

    Args:
        dim: d, the dimension of the weight space.
        k: Number of coordinates, in [1, d].
        seed: Seed of a dedicated ``numpy.random.Generator`` (None: fresh entropy).

    Returns:
        A :class:`CoordinateProjection` with sorted indices.

    Raises:
        ValueError: If ``dim`` or ``k`` is out of range.

    Example:
        >>> proj = coordinate_projection(10, k=3, seed=0)
        >>> proj.apply(np.arange(10.0)).tolist() == proj.indices.tolist()
        True
    """
    dim = check_int("dim", dim, where="coordinate_projection", low=1)
    k = check_int("k", k, where="coordinate_projection", low=1, high=dim)
    rng = np.random.default_rng(seed)
    return CoordinateProjection(np.sort(rng.choice(dim, size=k, replace=False)), dim)


def _blocks(data: Any) -> Iterator[np.ndarray]:
    """Yield consecutive float64 row blocks of a (T, d) array, ChunkedArray or Trajectory."""
    source = getattr(data, "weights", data)
    if hasattr(source, "iter_chunks"):
        for _, rows in source.iter_chunks():
            yield np.asarray(rows, dtype=np.float64)
        return
    x = np.asarray(source, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(
            f"the 'data' parameter of pca_projection must be an array of shape (T, d) or a "
            f"Trajectory, got an array of shape {x.shape}."
        )
    for i in range(0, len(x), _BLOCK):
        yield x[i : i + _BLOCK]


@dataclass(frozen=True)
class _Scan:
    """What one streamed pass over (T, d) rows gives: count, mean, covariance, validity.

    Attributes:
        n: T, the number of rows.
        mean: (d,) float64 mean.
        m2: (d, d) float64 Σ_t (x_t − x̄)(x_t − x̄)ᵀ, or only its diagonal (d,) when the pass
            was asked for no cross products.
        scale: The power of two the data were divided by before the products (1.0 unless the
            values were beyond 2^±64, where float products would overflow or underflow).
        bad: (row, column) of the first non-finite value, or None.
    """

    n: int
    mean: np.ndarray
    m2: np.ndarray
    scale: float
    bad: tuple[int, int] | None

    @property
    def variance(self) -> np.ndarray:
        """(d,) per-coordinate sample variance (1/(T − 1)), in the data's own units."""
        diag = self.m2 if self.m2.ndim == 1 else np.diag(self.m2)
        return diag / max(self.n - 1, 1) * self.scale**2


def _row_blocks(data: Any, rows: int) -> Iterator[np.ndarray]:
    """Consecutive row blocks in the data's own float dtype (float32 stays float32)."""
    source = getattr(data, "weights", data)
    if hasattr(source, "iter_chunks"):
        for _, blk in source.iter_chunks():
            blk = np.asarray(blk)
            yield blk if blk.dtype in (np.float32, np.float64) else blk.astype(np.float64)
        return
    x = np.asarray(source)
    if x.ndim != 2:
        raise ValueError(
            f"the 'data' parameter of pca_projection must be an array of shape (T, d) or a "
            f"Trajectory, got an array of shape {x.shape}."
        )
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    for i in range(0, len(x), rows):
        yield x[i : i + rows]


def _scan(data: Any, *, cross: bool, scale: float = 1.0) -> _Scan:
    r"""One streamed pass: row count, mean, centred second moments, first non-finite value.

    Each block B (rows in the data's dtype, float32 kept) is shifted by its own first row,
    :math:`Z = (B - b_0)/s` (exact for s a power of two), and gives its mean :math:`\bar z` and
    :math:`Z^\top Z` (one BLAS product in the block's dtype, accumulated in float64); the blocks
    are combined by the pairwise update of Chan, Golub & LeVeque (1983),
    :math:`M_{ab} = M_a + M_b + \frac{n_a n_b}{n_a+n_b}\delta\delta^\top`, which keeps the
    round-off of the centred moments small when the mean is far from zero (weights are).
    With ``cross=False`` only the diagonal (per-coordinate sums of squares) is kept.

    Returns:
        The :class:`_Scan`.
    """
    n = 0
    mean: np.ndarray | None = None
    g: np.ndarray | None = None
    bad: tuple[int, int] | None = None
    d = None
    source = getattr(data, "weights", data)
    width = tuple(getattr(source, "shape", np.shape(source)))[-1:] or (1,)
    # the rank-one terms of the merges, applied at the end in one product: Σ c_b r_b r_bᵀ
    vecs: list[np.ndarray] = []
    coefs: list[float] = []
    for blk in _row_blocks(data, max(_SCAN_ELEMENTS // max(width[0], 1), 64)):
        nb = blk.shape[0]
        if nb == 0:
            continue
        d = blk.shape[1]
        with np.errstate(invalid="ignore", over="ignore"):  # NaN/inf are reported below
            if scale != 1.0:  # scale first (exact): differences of huge values could overflow
                z = blk * blk.dtype.type(1.0 / scale)
                z -= z[0].copy()
            else:
                z = blk - blk[0]
            sb = z.sum(axis=0, dtype=np.float64)
        if bad is None and not np.isfinite(sb).all():
            rows, cols = np.nonzero(~np.isfinite(blk))
            if rows.size:
                bad = (n + int(rows[0]), int(cols[0]))
        zb = sb / nb
        if bad is not None:  # the caller refuses the data: skip the products
            n += nb
            continue
        gb = z.T @ z if cross else np.einsum("ij,ij->j", z, z, dtype=np.float64)
        vecs.append(zb)
        coefs.append(-float(nb))
        mb = np.asarray(blk[0], dtype=np.float64) / scale + zb  # exact for a power of two
        if mean is None:
            mean, g = mb, gb.astype(np.float64)
        else:
            g += gb
            delta = mb - mean
            vecs.append(delta)
            coefs.append(n * nb / (n + nb))
            mean = mean + delta * (nb / (n + nb))
        n += nb
    if d is None or bad is not None:
        m = 0 if d is None else d
        return _Scan(n, np.zeros(m), np.zeros((m, m) if cross else m), scale, bad)
    assert mean is not None and g is not None  # set by the first block (d is set, none bad)
    r = np.array(vecs)
    c = np.array(coefs)
    m2 = g + ((r.T * c) @ r if cross else (c[:, None] * r**2).sum(axis=0))
    return _Scan(n, mean * scale, m2, scale, bad)


def _power_of_two_scale(data: Any) -> float:
    """1.0, or the power of two near the data's magnitude when it is beyond 2^±64."""
    source = getattr(data, "weights", data)
    first = np.asarray(source[0:64], dtype=np.float64)
    finite = np.abs(first[np.isfinite(first)])
    top = float(finite.max()) if finite.size else 0.0
    if top == 0.0 or 2.0**-64 <= top <= 2.0**64:
        return 1.0
    return float(2.0 ** np.round(np.log2(top)))


def _differences(blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """Increments x_{t+1} - x_t of a stream of row blocks, carried across block borders."""
    prev = None
    for b in blocks:
        if len(b) == 0:
            continue
        joined = b if prev is None else np.concatenate([prev, b])
        if len(joined) > 1:
            yield np.diff(joined, axis=0)
        prev = b[-1:]


def _sign_fix(vectors: np.ndarray) -> np.ndarray:
    """Flip each row so that its entry of largest magnitude is positive (a deterministic sign)."""
    idx = np.argmax(np.abs(vectors), axis=1)
    signs = np.sign(vectors[np.arange(len(vectors)), idx])
    signs[signs == 0] = 1.0
    return vectors * signs[:, None]


def pca_projection(
    data: Any, k: int = 2, *, increments: bool = False, center: bool = True
) -> Projection:
    r"""Principal directions of a trajectory's positions or increments.

    With rows :math:`z_t` (positions :math:`x_t`, or increments :math:`x_{t+1}-x_t` when
    ``increments=True``), the directions are the top-k eigenvectors of the sample covariance
    :math:`\frac{1}{T-1}\sum_t (z_t-\bar z)(z_t-\bar z)^\top`, i.e. the top right singular vectors
    of the centred data matrix. For positions with d ≤ min(T, 4096) it takes one streamed
    pass in the data's own dtype (a float32 memory map stays float32): each block, shifted by its
    first row, gives its mean and ZᵀZ (BLAS in the block's dtype, accumulated in float64), and the
    blocks are combined by the pairwise update of Chan, Golub & LeVeque (1983); then the top k
    eigenpairs of the covariance. Increments use two float64 passes; when d > min(T, 4096) the
    data are loaded and an SVD of the (T, d) matrix is used (cheaper when T < d). The projection's centre is the mean position (or zero with ``center=False``), so
    ``proj.apply(traj)`` gives centred coordinates in either case. Each direction's sign is fixed so
    that its largest entry is positive.

    Args:
        data: Array (T, d), a :class:`~sgdscope.Trajectory`, or its ``weights``.
        k: Number of directions, in [1, d].
        increments: Use the increments x_{t+1} - x_t (the paper's Fig. 3a studies their spectrum)
            rather than the positions.
        center: Subtract the mean; with ``center=False`` the directions are those of the
            uncentred second moment and the centre is zero.

    Returns:
        A :class:`Projection` with ``explained_variance`` set.

    Raises:
        ValueError: If ``data`` is not (T, d), has too few rows, or ``k`` is out of range.

    Example:
        >>> x = np.random.default_rng(0).normal(size=(500, 3)) * [3.0, 1.0, 0.1]
        >>> proj = pca_projection(x, k=2)
        >>> np.round(np.abs(proj.basis), 1)
        array([[1., 0., 0.],
               [0., 1., 0.]])
    """
    where = "pca_projection"
    kind = ProjectionKind.PCA_INCREMENTS if increments else ProjectionKind.PCA
    source = getattr(data, "weights", data)
    shape = tuple(getattr(source, "shape", np.shape(source)))
    if not increments and len(shape) == 2 and shape[0] >= shape[1] and shape[1] <= _MAX_COV_DIM:
        scan = _scan(data, cross=True, scale=_power_of_two_scale(data))
        if scan.bad is not None:
            raise ValueError(
                f"the 'data' parameter of {where} contains a non-finite value (NaN or inf) at "
                f"row {scan.bad[0]}, column {scan.bad[1]}."
            )
        return _pca_from_scan(scan, k, center=center, where=where)

    def stream() -> Iterator[np.ndarray]:
        return _differences(_blocks(data)) if increments else _blocks(data)

    # first pass: count, mean of z, mean position
    count, pos_count, dim = 0, 0, None
    total: np.ndarray | None = None
    pos_total: np.ndarray | None = None
    for b in _blocks(data):
        pos_total = b.sum(axis=0) if pos_total is None else pos_total + b.sum(axis=0)
        pos_count += len(b)
        dim = b.shape[1]
    for z in stream():
        total = z.sum(axis=0) if total is None else total + z.sum(axis=0)
        count += len(z)
    if dim is None or count < 2:
        raise ValueError(
            f"the 'data' parameter of {where} must have at least {3 if increments else 2} rows "
            f"(records) to estimate a covariance, got {pos_count}."
        )
    assert total is not None and pos_total is not None  # rows were read
    k = check_int("k", k, where=where, low=1, high=dim)
    z_mean = total / count if center else np.zeros(dim)
    pos_mean = pos_total / pos_count if center else np.zeros(dim)
    if count >= dim and dim <= _MAX_COV_DIM:
        cov = np.zeros((dim, dim))
        for z in stream():
            zc = z - z_mean
            cov += zc.T @ zc
        cov /= count - 1
        values, vectors = _top_eigh(cov, k)
    else:
        zc = np.concatenate(list(stream())) - z_mean
        _, s, vt = np.linalg.svd(zc, full_matrices=False)
        values, vectors = s[:k] ** 2 / (count - 1), vt[:k]
    return Projection(
        basis=_sign_fix(vectors),
        mean=pos_mean,
        kind=kind,
        explained_variance=np.maximum(values, 0.0),
    )


def _top_eigh(cov: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top-k eigenpairs of a symmetric matrix, descending: (values (k,), vectors (k, d))."""
    d = cov.shape[0]
    evals = None
    if d > 64 and 4 * k < d:  # Lanczos (ARPACK) to machine precision: ~20× a full eigh at d = 10³
        v0 = np.random.default_rng(0).standard_normal(d)  # fixed start: deterministic
        try:
            evals, evecs = scipy.sparse.linalg.eigsh(cov, k=k, which="LA", v0=v0, tol=0)
        except scipy.sparse.linalg.ArpackError:
            evals = None
    if evals is None:
        evals, evecs = np.linalg.eigh(cov)
    order = np.argsort(evals)[::-1][:k]
    return evals[order], evecs[:, order].T


def _pca_from_scan(scan: _Scan, k: int, *, center: bool, where: str) -> Projection:
    """PCA of positions from the moments of one :func:`_scan` (cross products kept)."""
    if scan.n < 2:
        raise ValueError(
            f"the 'data' parameter of {where} must have at least 2 rows (records) to estimate a "
            f"covariance, got {scan.n}."
        )
    dim = scan.mean.shape[0]
    k = check_int("k", k, where=where, low=1, high=dim)
    m2 = scan.m2
    if not center:
        m = scan.mean / scan.scale
        m2 = m2 + scan.n * np.outer(m, m)
    values, vectors = _top_eigh(m2 / (scan.n - 1), k)
    return Projection(
        basis=_sign_fix(vectors),
        mean=scan.mean if center else np.zeros(dim),
        kind=ProjectionKind.PCA,
        explained_variance=np.maximum(values, 0.0) * scan.scale**2,
    )


def random_projection(dim: int, k: int = 2, *, seed: int | None = 0) -> Projection:
    r"""k orthonormal directions drawn uniformly at random (Haar measure on the Stiefel manifold).

    Draws :math:`G\in\mathbb R^{d\times k}` with i.i.d. N(0, 1) entries, takes :math:`G = QR`, and
    returns the rows of :math:`Q\,\mathrm{diag}(\mathrm{sign}\,R_{ii})`, which makes the law exactly
    uniform (Mezzadri 2007). The centre is zero. The global random state is never touched.

    Args:
        dim: d, the dimension of the weight space.
        k: Number of directions, in [1, d].
        seed: Seed of a dedicated ``numpy.random.Generator`` (None: fresh entropy).

    Returns:
        A :class:`Projection` of kind ``"random"``.

    Raises:
        ValueError: If ``dim`` or ``k`` is out of range.

    Example:
        >>> proj = random_projection(100, k=3, seed=1)
        >>> np.allclose(proj.basis @ proj.basis.T, np.eye(3))
        True
    """
    dim = check_int("dim", dim, where="random_projection", low=1)
    k = check_int("k", k, where="random_projection", low=1, high=dim)
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((dim, k)))
    q = q * np.where(np.diag(r) < 0, -1.0, 1.0)
    return Projection(basis=q.T, mean=np.zeros(dim), kind=ProjectionKind.RANDOM)


def basis_projection(
    basis: Any,
    *,
    mean: Any = None,
    orthonormalize: bool = False,
    atol: float = 1e-6,
) -> Projection:
    """A projection onto given directions, such as the top eigenvectors of D.

    The rows of ``basis`` are the directions: pass ``spectrum.eigenvectors.T`` for eigenvectors
    stored as columns. Distances, areas and fluxes in the projected plane are those of weight space
    only for an orthonormal basis, so a non-orthonormal one is refused unless
    ``orthonormalize=True`` (then it is replaced by the Q of its QR decomposition, which spans the
    same subspace and keeps the first direction).

    Args:
        basis: Array or tensor (k, d).
        mean: Centre (d,), or None for zero.
        orthonormalize: Orthonormalise the rows (Gram-Schmidt order) instead of refusing.
        atol: Tolerance on max |B Bᵀ - I| for the basis to count as orthonormal.

    Returns:
        A :class:`Projection` of kind ``"basis"``.

    Raises:
        ValueError: If ``basis`` is not a finite (k, d) array with k ≤ d, is rank-deficient, or is
            not orthonormal and ``orthonormalize`` is False.

    Example:
        >>> proj = basis_projection(np.eye(4)[:2])
        >>> proj.apply(np.arange(4.0)).tolist()
        [0.0, 1.0]
    """
    where = "basis_projection"
    atol = check_real("atol", atol, where=where, low=0.0)
    raw = basis.detach().cpu().numpy() if isinstance(basis, torch.Tensor) else basis
    b = np.array(raw, dtype=np.float64)
    if b.ndim != 2 or b.shape[0] > b.shape[1] or b.shape[0] == 0:
        raise ValueError(
            f"the 'basis' parameter of {where} must be an array of shape (k, d) with "
            f"1 <= k <= d (one direction per row), got shape {b.shape}. For eigenvectors stored "
            f"as columns pass their transpose."
        )
    if not np.isfinite(b).all():
        raise ValueError(f"the 'basis' parameter of {where} must be finite, got NaN or inf.")
    err = float(np.abs(b @ b.T - np.eye(len(b))).max())
    if err > atol:
        if not orthonormalize:
            raise ValueError(
                f"the 'basis' parameter of {where} must have orthonormal rows (max |B Bᵀ - I| <= "
                f"{atol:g}), got max |B Bᵀ - I| = {err:.3g}. Pass orthonormalize=True to use an "
                f"orthonormal basis of the same span."
            )
        q, r = np.linalg.qr(b.T)
        if np.abs(np.diag(r)).min() <= 1e-12 * np.abs(np.diag(r)).max():
            raise ValueError(
                f"the 'basis' parameter of {where} has linearly dependent rows; it spans fewer "
                f"than k = {len(b)} directions."
            )
        b = (q * np.where(np.diag(r) < 0, -1.0, 1.0)).T
    m = np.zeros(b.shape[1]) if mean is None else np.asarray(mean, dtype=np.float64)
    return Projection(basis=b, mean=m, kind=ProjectionKind.BASIS)
