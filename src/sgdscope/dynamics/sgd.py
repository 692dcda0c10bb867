r"""Real mini-batch SGD on finite-sum problems, many independent chains at once.

The discrete process whose continuous-time limit is Chaudhari & Soatto's eq. (3),
:math:`dx = -\nabla f\,dt + \sqrt{2\beta^{-1}D(x)}\,dW` with β⁻¹ = η/(2b) (Lemma 2), or
η/(2b)·(1 − b/N) without replacement (Remark 12). Use :func:`sgdscope.temperature` for β⁻¹.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._validation import check_int, check_real
from .problems import AbstractFiniteSumProblem
from .sde import _allocate_records, n_records

__all__ = ["simulate_sgd"]

_WHERE = "simulate_sgd"


class _BatchSampler:
    """Draws (chains, b) index batches; one of three schemes, chosen once."""

    def __init__(
        self,
        n: int,
        b: int,
        chains: int,
        replacement: bool,
        reshuffle: bool,
        gen: torch.Generator,
        device: torch.device,
    ) -> None:
        self.n, self.b, self.chains = n, b, chains
        self.replacement, self.reshuffle = replacement, reshuffle
        self.gen, self.device = gen, device
        self.per_epoch = n // b
        self._perm: Tensor | None = None
        self._pos = self.per_epoch

    def _random_permutations(self) -> Tensor:
        keys = torch.rand((self.chains, self.n), generator=self.gen, device=self.device)
        return keys.argsort(dim=1)

    def __call__(self) -> Tensor:
        if self.replacement:
            return torch.randint(
                self.n, (self.chains, self.b), generator=self.gen, device=self.device
            )
        if not self.reshuffle:
            return self._random_permutations()[:, : self.b]
        if self._pos == self.per_epoch:
            self._perm, self._pos = self._random_permutations(), 0
        assert self._perm is not None
        idx = self._perm[:, self._pos * self.b : (self._pos + 1) * self.b]
        self._pos += 1
        return idx


def simulate_sgd(
    problem: AbstractFiniteSumProblem,
    lr: float,
    batch_size: int,
    n_steps: int,
    replacement: bool = True,
    chains: int = 1,
    seed: int | None = 0,
    momentum: float = 0.0,
    record_every: int = 1,
    x0: Tensor | None = None,
    *,
    reshuffle: bool = True,
) -> Tensor:
    r"""Run mini-batch SGD, :math:`x_{k+1} = x_k - \eta\,\nabla f_{b_k}(x_k)`, on many chains at once.

    Chaudhari & Soatto, Def. 1: ∇f_b = (1/b) Σ_{k∈b} ∇ℓ_k. The mini-batch gradient covariance is
    D(x)/b with replacement, and (1/b)(1 − b/N)·N/(N−1)·D(x) when the b indices of a step are
    distinct (App. A, eq. A2), which gives the temperatures of Lemma 2 and Remark 12.

    Sampling (each chain independently):

    * ``replacement=True``: b indices i.i.d. uniform on {0..N−1} at every step (the paper's model).
    * ``replacement=False, reshuffle=True`` (default): a fresh random permutation per epoch, cut
      into ⌊N/b⌋ consecutive batches (the last N mod b samples of each epoch are dropped), as a
      shuffling ``DataLoader(drop_last=True)`` does. Batches within an epoch are then dependent:
      near a minimum the noise of an epoch nearly cancels, and the stationary spread is O(η²),
      far below the β'⁻¹ = η/(2b)(1 − b/N) of Remark 12.
    * ``replacement=False, reshuffle=False``: b distinct indices drawn afresh at every step, the
      without-replacement model of App. A for which Remark 12's (1 − b/N) factor is exact.

    Heavy-ball momentum μ in PyTorch's convention: v ← μ v + ∇f_b, x ← x − η v (v₀ = 0); its SDE
    limit has β⁻¹ divided by (1 − μ) (:func:`sgdscope.temperature`; not part of the paper's
    theory).

    Randomness: one dedicated ``torch.Generator`` on the problem's device; the global RNG is
    never touched.

    Args:
        problem: A finite-sum problem (:class:`LeastSquares`, :class:`LogisticRegression`,
            :class:`MLPProblem`, or a subclass of :class:`AbstractFiniteSumProblem`).
        lr: Learning rate η > 0.
        batch_size: b in [1, N].
        n_steps: Number of SGD steps ≥ 0.
        replacement: Draw batch indices with replacement (see above).
        chains: Number of independent chains C ≥ 1 (vectorised).
        seed: Seed, or None for a fresh random seed.
        momentum: Heavy-ball μ in [0, 1).
        record_every: Record every this many steps.
        x0: Start, (dim,) for every chain or (chains, dim); None: ``problem.initial_point()``.
        reshuffle: Without replacement, per-epoch permutations (True) or fresh distinct indices at
            each step (False). Must stay True with replacement.

    Returns:
        A tensor (n_records, chains, dim), as :func:`sgdscope.simulate_sde`: record 0 is x0, then
        the iterates after steps k, 2k, … (k = ``record_every``), and the final iterate always last.

    Raises:
        ValueError: On a bad argument or an x0 of the wrong shape.
        TypeError: If ``problem`` is not a finite-sum problem.
        FloatingPointError: If the iterates become NaN/inf (names the step; lower ``lr``).
        MemoryError: If the record buffer would not fit.

    Example:
        >>> from sgdscope import LeastSquares
        >>> p = LeastSquares.synthetic(n_samples=32, dim=2, seed=0)
        >>> xs = simulate_sgd(p, lr=0.05, batch_size=4, n_steps=400, chains=8, record_every=100)
        >>> xs.shape
        torch.Size([5, 8, 2])
        >>> bool((xs[-1] - p.minimizer()).norm(dim=1).max() < 1.0)
        True
    """
    if not isinstance(problem, AbstractFiniteSumProblem):
        raise TypeError(
            f"the 'problem' parameter of {_WHERE} must be a finite-sum problem (LeastSquares, "
            f"LogisticRegression, MLPProblem or an AbstractFiniteSumProblem), got "
            f"{type(problem).__name__}."
        )
    n = problem.n_samples
    lr = check_real("lr", lr, where=_WHERE, low=0.0, low_open=True)
    b = check_int("batch_size", batch_size, where=_WHERE, low=1, high=n)
    n_steps = check_int("n_steps", n_steps, where=_WHERE, low=0)
    chains = check_int("chains", chains, where=_WHERE, low=1)
    mu = check_real("momentum", momentum, where=_WHERE, low=0.0, high=1.0, high_open=True)
    record_every = check_int("record_every", record_every, where=_WHERE, low=1)
    if replacement and not reshuffle:
        raise ValueError(
            f"the 'reshuffle' parameter of {_WHERE} applies only without replacement, got "
            "reshuffle=False with replacement=True. Pass replacement=False for fresh distinct "
            "indices at each step."
        )
    ref = problem.inputs
    dim = problem.dim
    start = problem.initial_point() if x0 is None else x0
    if not isinstance(start, Tensor) or tuple(start.shape) not in {(dim,), (chains, dim)}:
        got = tuple(start.shape) if isinstance(start, Tensor) else type(start).__name__
        raise ValueError(
            f"the 'x0' parameter of {_WHERE} must be a tensor of shape (dim,) = ({dim},) or "
            f"(chains, dim) = ({chains}, {dim}), got {got}."
        )
    x = start.to(dtype=ref.dtype, device=ref.device).expand(chains, dim).clone()

    out = _allocate_records(n_records(n_steps, record_every), (chains, dim), x, _WHERE, "chains")
    gen = torch.Generator(device=ref.device)
    gen.manual_seed(seed if seed is not None else int(torch.Generator().seed()))
    sampler = _BatchSampler(n, b, chains, replacement, reshuffle, gen, ref.device)
    v = torch.zeros_like(x) if mu > 0 else None
    out[0] = x
    i_rec = 1
    for k in range(1, n_steps + 1):
        g = problem.batch_gradient(x, sampler())
        if v is not None:
            g = v.mul_(mu).add_(g)
        x = x - lr * g
        if not bool(torch.isfinite(x).all()):
            c = int((~torch.isfinite(x)).any(1).nonzero()[0])
            raise FloatingPointError(
                f"the iterates of {_WHERE} became NaN or inf at step {k} in chain {c}: SGD "
                f"diverged at lr = {lr:g}. Lower 'lr' (on a quadratic, below 2 / λ_max(H))."
            )
        if k % record_every == 0 or k == n_steps:
            out[i_rec] = x
            i_rec += 1
    return out
