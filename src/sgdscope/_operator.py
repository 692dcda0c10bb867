"""A small base for matrix-free symmetric operators with a scipy face (after curvlinops)."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import scipy.sparse.linalg
import torch

__all__ = ["BaseOperator"]


class BaseOperator(ABC):
    """A linear operator on flat d-vectors; subclasses write only :meth:`_matmat`.

    The base owns ``shape``, ``dtype``, ``device``, ``@``, :meth:`matvec`, :meth:`matmat`,
    :meth:`rmatmat` and :meth:`to_scipy`. ``SELF_ADJOINT = True`` declares the operator symmetric,
    so the adjoint product reuses ``_matmat``.

    Args:
        dim: The operator is ``dim × dim``.
        dtype: Dtype of the products (an input in one of ``INPUT_DTYPES`` keeps its own).
        device: Device of the products.
    """

    SELF_ADJOINT: bool = False
    INPUT_DTYPES: tuple[torch.dtype, ...] = ()
    """Dtypes an input keeps (the product is then in that dtype); any other is cast to ``dtype``."""

    def __init__(self, dim: int, dtype: torch.dtype, device: torch.device) -> None:
        self.shape = (dim, dim)
        self.dtype = dtype
        self.device = torch.device(device)

    @abstractmethod
    def _matmat(self, X: torch.Tensor) -> torch.Tensor:
        """Apply the operator to ``X`` of shape (d, k) (already on the right dtype and device)."""

    def _rmatmat(self, X: torch.Tensor) -> torch.Tensor:
        if self.SELF_ADJOINT:
            return self._matmat(X)
        raise NotImplementedError(f"{type(self).__name__} does not implement the adjoint product.")

    def _prepare(self, X: torch.Tensor | np.ndarray, name: str) -> tuple[torch.Tensor, bool]:
        X = torch.as_tensor(X)
        dtype = X.dtype if X.dtype in self.INPUT_DTYPES else self.dtype
        X = X.to(dtype=dtype, device=self.device)
        vector = X.ndim == 1
        if vector:
            X = X[:, None]
        if X.ndim != 2 or X.shape[0] != self.shape[1]:
            raise ValueError(
                f"the '{name}' parameter of {type(self).__name__} must have shape (d,) or (d, k) with "
                f"d = {self.shape[1]}, got {tuple(X.shape)}."
            )
        return X, vector

    def matmat(self, X: torch.Tensor | np.ndarray) -> torch.Tensor:
        """A @ X for X of shape (d, k)."""
        X, vector = self._prepare(X, "X")
        Y = self._matmat(X)
        return Y[:, 0] if vector else Y

    def matvec(self, v: torch.Tensor | np.ndarray) -> torch.Tensor:
        """A @ v for v of shape (d,)."""
        v, _ = self._prepare(v, "v")
        return self._matmat(v)[:, 0]

    def rmatmat(self, X: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Aᵀ @ X for X of shape (d, k)."""
        X, vector = self._prepare(X, "X")
        Y = self._rmatmat(X)
        return Y[:, 0] if vector else Y

    def __matmul__(self, X: torch.Tensor | np.ndarray) -> torch.Tensor:
        return self.matmat(X)

    def to_scipy(self, dtype: np.dtype | None = None) -> scipy.sparse.linalg.LinearOperator:
        """This operator as a ``scipy.sparse.linalg.LinearOperator`` acting on numpy arrays."""
        np_dtype = (
            np.dtype(dtype)
            if dtype is not None
            else torch.empty((), dtype=self.dtype).numpy().dtype
        )

        def mm(X: np.ndarray) -> np.ndarray:
            return self.matmat(np.asarray(X)).cpu().numpy().astype(np_dtype, copy=False)

        def rmm(X: np.ndarray) -> np.ndarray:
            return self.rmatmat(np.asarray(X)).cpu().numpy().astype(np_dtype, copy=False)

        return scipy.sparse.linalg.LinearOperator(
            shape=self.shape,
            matvec=mm,
            rmatvec=rmm,
            matmat=mm,
            rmatmat=rmm,
            dtype=np_dtype,
        )
