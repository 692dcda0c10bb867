r"""What ``reproduce scaling`` measures: training runs at several (η, b), and the sampler's noise.

Every training run goes through :func:`sgdscope.paper.training.train` into its own folder under
``OUT/scaling/runs`` and resumes from its ``last.pt``. The records (:class:`TrainingRun`,
:class:`Remark11`, :class:`Remark12`, :class:`SamplerNoise`) are frozen; the claims read them
and their fields go to ``result.json`` as they are.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..._validation import check_int
from ...noise import GradientNoise
from ...paper import data, models
from ...paper.training import (
    Sampling,
    TrainConfig,
    epoch_batches,
    evaluate,
    load_weights,
    train,
)
from ..context import RunContext
from .settings import MODEL, Settings, scaled_lr

__all__ = [
    "Remark11",
    "Remark12",
    "SamplerNoise",
    "TrainingRun",
    "WithMinusWithout",
    "batch_noise",
    "load_mnist",
    "measure_remark11",
    "measure_remark12",
    "measure_sampler",
]


def batch_noise(grads: Tensor, config: TrainConfig, epochs: int, window: int = 1) -> float:
    r"""Mean squared deviation of sums of ``window`` consecutive mini-batch gradients.

    Draws the mini-batches exactly as :func:`sgdscope.paper.training.train` does
    (:func:`sgdscope.paper.training.epoch_batches`, epochs ``0 .. epochs − 1``), forms
    :math:`S = \sum_{j=1}^{w} (\bar g_{B_j} - g)` over non-overlapping groups of ``window``
    successive batches inside each epoch (incomplete groups and batches smaller than b are
    skipped) and returns the mean of :math:`\|S\|^2`. Closed forms (App. A), with
    :math:`\operatorname{tr}D = \frac1N\sum_k\|g_k-g\|^2`:

    - with replacement: :math:`w\,\operatorname{tr}D/b`;
    - without replacement (one permutation per epoch):
      :math:`w\,\operatorname{tr}D/b\cdot(N-wb)/(N-1)`; for w = 1 the factor is Remark 12's
      :math:`1-(b-1)/(N-1)`, and over a whole epoch (wb = N) the sum vanishes exactly.

    Args:
        grads: Per-sample gradients (or a fixed linear projection of them), shape (N, p).
        config: Supplies ``batch_size``, ``sampling`` and ``seed``.
        epochs: Sampler epochs to draw.
        window: Consecutive batches summed, 1 ≤ window ≤ N // b.

    Returns:
        The mean of :math:`\|S\|^2` over all complete groups, as a float.

    Raises:
        ValueError: If ``window`` is outside [1, N // b], or ``epochs`` < 1.
    """
    n = grads.shape[0]
    b = min(config.batch_size, n)
    window = check_int("window", window, where="batch_noise", low=1, high=n // b)
    epochs = check_int("epochs", epochs, where="batch_noise", low=1)
    centred = grads.to(torch.float64) - grads.to(torch.float64).mean(0)
    sums = []
    for epoch in range(epochs):
        batches = [idx for idx in epoch_batches(n, config, epoch) if len(idx) == b]
        groups = len(batches) // window
        if groups:
            means = centred[torch.stack(batches[: groups * window])].mean(1)  # (groups·w, p)
            sums.append(means.view(groups, window, -1).sum(1))
    s = torch.cat(sums)
    return float((s * s).sum(1).mean())


# ------------------------------------------------------------------------------ training runs
@dataclass(frozen=True)
class TrainingRun:
    """One finished training run and what was measured on it.

    Attributes:
        tag: Its folder under ``OUT/scaling/runs`` (every setting that changes the run).
        batch_size: b.
        lr: η.
        sampling: ``"with"`` or ``"without"`` replacement.
        n_train: Training images.
        epochs: Epochs trained.
        steps: SGD steps.
        test_error: Final test error (eval mode).
        test_loss: Final test loss (eval mode).
        train_error: Error on the whole training set of the run (eval mode).
        train_loss: Loss on it (eval mode).
        steady_loss: Mean running (train-mode) loss over the last epochs.
        steady_loss_se: Its standard error across those epochs (None: one epoch).
        curve: Running train loss per epoch.
        seconds: Training wall time over all calls.
        resumed_from: Epoch of the ``last.pt`` this call started from (0: a fresh run).
        trace_d: tr D at the 40 % checkpoint (None: not measured).
        temperature: η/(2b) (Lemma 2).
        noise_scale: η/(2b) · tr D / d (Remark 15, eq. 14; None: not measured).
    """

    tag: str
    batch_size: int
    lr: float
    sampling: str
    n_train: int
    epochs: int
    steps: int
    test_error: float
    test_loss: float
    train_error: float
    train_loss: float
    steady_loss: float
    steady_loss_se: float | None
    curve: list[float] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from: int = 0
    trace_d: float | None = None
    temperature: float | None = None
    noise_scale: float | None = None

    @property
    def gap_loss(self) -> float:
        """Generalisation gap in loss: test − train (both eval mode)."""
        return self.test_loss - self.train_loss

    @property
    def gap_error(self) -> float:
        """Generalisation gap in error rate: test − train."""
        return self.test_error - self.train_error

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready fields, with both gaps."""
        return {**asdict(self), "gap_loss": self.gap_loss, "gap_error": self.gap_error}


def load_mnist(ctx: RunContext, split: str, n: int | None, s: Settings) -> tuple[Tensor, Tensor]:
    """The class-balanced MNIST ``split`` (first ``n`` images, None: all) of small-lenet."""
    return data.mnist_for(MODEL, ctx.mnist_dir, split, n=n, scale=s.scale).tensors()


def _train_run(
    tag: str,
    root: Path,
    train_xy: tuple[Tensor, Tensor],
    test_xy: tuple[Tensor, Tensor],
    config: TrainConfig,
    ctx: RunContext,
    s: Settings,
    *,
    steady: bool,
) -> tuple[TrainingRun, nn.Module]:
    model = models.build(MODEL, seed=ctx.seed)
    result = train(
        model,
        train_xy,
        config,
        root / tag,
        test_data=None,
        device=ctx.device,
        progress=ctx.progress,
    )
    test_loss, test_error = evaluate(model, test_xy)
    train_loss, train_error = evaluate(model, train_xy)
    curve = [r.train_loss for r in result.history]
    keep = max(min(2, len(curve)), math.ceil(s.steady_fraction * len(curve)))
    tail = curve[-keep:] if steady else curve[-1:]
    se = float(np.std(tail, ddof=1) / math.sqrt(len(tail))) if len(tail) > 1 else None
    n = len(train_xy[1])
    run = TrainingRun(
        tag=tag,
        batch_size=config.batch_size,
        lr=config.lr,
        sampling=config.sampling.value,
        n_train=n,
        epochs=config.epochs,
        steps=config.epochs * math.ceil(n / min(config.batch_size, n)),
        test_error=test_error,
        test_loss=test_loss,
        train_error=train_error,
        train_loss=train_loss,
        steady_loss=float(np.mean(tail)),
        steady_loss_se=se,
        curve=curve,
        seconds=result.seconds,
        resumed_from=result.resumed_from,
        temperature=config.lr / (2 * config.batch_size),
    )
    return run, model


def _trace_at(path: Path, xy: tuple[Tensor, Tensor], ctx: RunContext) -> float:
    """tr D(x) (eq. 2, eval mode) of the checkpoint at ``path`` on the samples ``xy``."""
    model = models.build(MODEL, seed=ctx.seed).to(ctx.device)
    load_weights(model, path)
    loss = nn.CrossEntropyLoss(reduction="none")
    return GradientNoise(model, loss, xy, device=ctx.device).trace()


# ---------------------------------------------------------------------------------- Remark 11
@dataclass(frozen=True)
class Remark11:
    """Remark 11's runs: fixed η/b against fixed η, the same epochs for every b.

    Attributes:
        scaled: One run per b at η = :func:`~sgdscope.reproduce.scaling.scaled_lr` (fixed η/b).
        fixed: One run per b at η = ``base_lr`` (fixed η, the control).
        n_train: Training images.
        n_test: Test images.
        noise_samples: Training samples tr D was measured on (0: not measured).
    """

    scaled: list[TrainingRun]
    fixed: list[TrainingRun]
    n_train: int
    n_test: int
    noise_samples: int

    @property
    def distinct_runs(self) -> int:
        """Runs trained (the b = base_batch run is shared by both sets)."""
        return len({r.tag for r in self.scaled + self.fixed})

    @property
    def spread_fixed_ratio(self) -> float:
        """Range (max − min) of the test error over b at fixed η/b."""
        return _spread(self.scaled)

    @property
    def spread_fixed_lr(self) -> float:
        """Range of the test error over b at fixed η."""
        return _spread(self.fixed)

    @property
    def spread_ratio(self) -> float:
        """:attr:`spread_fixed_ratio` / :attr:`spread_fixed_lr` (inf when the latter is 0)."""
        sp = self.spread_fixed_lr
        return self.spread_fixed_ratio / sp if sp > 0 else math.inf

    @property
    def test_error_se(self) -> float:
        """Binomial standard error of one test error, at the mean error of all runs."""
        p = float(np.mean([r.test_error for r in self.scaled + self.fixed]))
        return math.sqrt(max(p * (1 - p), 1e-12) / self.n_test)

    @property
    def noise_floor(self) -> float:
        """Two standard errors of a difference of two test errors."""
        return 2 * math.sqrt(2) * self.test_error_se

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready numbers of ``result.json``: the spreads and every run."""
        return {
            "spread_fixed_ratio": self.spread_fixed_ratio,
            "spread_fixed_lr": self.spread_fixed_lr,
            "spread_ratio": self.spread_ratio,
            "std_fixed_ratio": float(np.std([r.test_error for r in self.scaled])),
            "std_fixed_lr": float(np.std([r.test_error for r in self.fixed])),
            "test_error_se": self.test_error_se,
            "fixed_ratio": [r.to_dict() for r in self.scaled],
            "fixed_lr": [r.to_dict() for r in self.fixed],
        }


def _spread(runs: list[TrainingRun]) -> float:
    errors = [r.test_error for r in runs]
    return max(errors) - min(errors)


def measure_remark11(
    ctx: RunContext, s: Settings, root: Path, test_xy: tuple[Tensor, Tensor]
) -> Remark11:
    """Train small-lenet at every b, at fixed η/b and at fixed η, and measure tr D at 40 %."""
    train_xy = load_mnist(ctx, "train", s.n_train, s)
    n = len(train_xy[1])
    noise_xy = (train_xy[0][: s.noise_samples], train_xy[1][: s.noise_samples])
    done: dict[str, TrainingRun] = {}

    def run(b: int, lr: float) -> TrainingRun:
        tag = f"r11-n{n}-b{b}-lr{lr:g}-e{s.epochs}-s{ctx.seed}"
        if tag not in done:
            config = TrainConfig(epochs=s.epochs, batch_size=b, lr=lr, seed=ctx.seed)
            r, _ = _train_run(tag, root, train_xy, test_xy, config, ctx, s, steady=False)
            if s.noise_samples:
                at = max(1, round(0.4 * s.epochs))
                tr = _trace_at(root / tag / f"epoch_{at:04d}.pt", noise_xy, ctx)
                d = models.info(MODEL).parameters
                assert r.temperature is not None  # _train_run sets it
                r = replace(r, trace_d=tr, noise_scale=r.temperature * tr / d)
            done[tag] = r
        return done[tag]

    scaled = [run(b, scaled_lr(b, s)) for b in s.batch_sizes]
    fixed = [run(b, s.base_lr) for b in s.batch_sizes]
    return Remark11(scaled, fixed, n, len(test_xy[1]), len(noise_xy[1]))


# ---------------------------------------------------------------------------------- Remark 12
@dataclass(frozen=True)
class Remark12:
    """Remark 12's runs: with against without replacement at equal (η, b), small and large b/N.

    Attributes:
        pairs: ``{b: {"with": run, "without": run}}`` for the small and the large b.
        n: N, the training subset.
    """

    pairs: dict[int, dict[str, TrainingRun]]
    n: int

    def _diff(self, b: int) -> tuple[float, float]:
        """steady_loss(with) − steady_loss(without) at ``b`` and its standard error."""
        a, c = self.pairs[b]["with"], self.pairs[b]["without"]
        return a.steady_loss - c.steady_loss, math.hypot(
            a.steady_loss_se or 0.0, c.steady_loss_se or 0.0
        )

    def _gap(self, b: int) -> float:
        return self.pairs[b]["with"].gap_loss - self.pairs[b]["without"].gap_loss

    @property
    def small(self) -> int:
        """The small b."""
        return min(self.pairs)

    @property
    def large(self) -> int:
        """The large b."""
        return max(self.pairs)

    def differences(self) -> WithMinusWithout:
        """With − without: steady train loss (± s.e.), loss gap, and test error at the large b."""
        d_small, se_small = self._diff(self.small)
        d_large, se_large = self._diff(self.large)
        pair = self.pairs[self.large]
        return WithMinusWithout(
            steady_loss_diff_small=d_small,
            steady_loss_diff_small_se=se_small,
            steady_loss_diff_large=d_large,
            steady_loss_diff_large_se=se_large,
            gap_diff_small=self._gap(self.small),
            gap_diff_large=self._gap(self.large),
            test_error_diff_large=pair["with"].test_error - pair["without"].test_error,
        )


@dataclass(frozen=True)
class WithMinusWithout:
    """Remark 12's differences, sampling with replacement minus without, at equal (η, b).

    Attributes:
        steady_loss_diff_small: Steady-state train loss difference at the small b/N.
        steady_loss_diff_small_se: Its standard error (from the epochs averaged).
        steady_loss_diff_large: The same at the large b/N.
        steady_loss_diff_large_se: Its standard error.
        gap_diff_small: Generalisation-gap (test − train loss) difference at the small b/N.
        gap_diff_large: The same at the large b/N.
        test_error_diff_large: Test-error difference at the large b/N.
    """

    steady_loss_diff_small: float
    steady_loss_diff_small_se: float
    steady_loss_diff_large: float
    steady_loss_diff_large_se: float
    gap_diff_small: float
    gap_diff_large: float
    test_error_diff_large: float


def measure_remark12(
    ctx: RunContext, s: Settings, root: Path, test_xy: tuple[Tensor, Tensor]
) -> tuple[Remark12, nn.Module, tuple[Tensor, Tensor]]:
    """Train with and without replacement at both b; also return the last model and its data.

    η = 0.1·b/128 is constant through each run (a steady state to average over), so β⁻¹ is the
    same at both b and only b/N differs; both samplers run the same number of steps.

    Returns:
        ``(record, last model, its training data)``.
    """
    n = s.replacement_n
    sub_xy = load_mnist(ctx, "train", n, s)
    pairs: dict[int, dict[str, TrainingRun]] = {}
    last_model = None
    for b in s.replacement_batches:
        lr = scaled_lr(b, s)
        epochs = math.ceil(s.replacement_steps / math.ceil(n / b))
        for sampling in ("with", "without"):
            tag = f"r12-n{n}-b{b}-lr{lr:g}-{sampling}-e{epochs}-s{ctx.seed}"
            config = TrainConfig(
                epochs=epochs, batch_size=b, lr=lr, schedule=((epochs, lr),),
                sampling=Sampling(sampling),
                checkpoint_at=(1.0,), seed=ctx.seed,
            )  # fmt: skip
            r, last_model = _train_run(tag, root, sub_xy, test_xy, config, ctx, s, steady=True)
            pairs.setdefault(b, {})[sampling] = r
    assert last_model is not None  # replacement_batches holds two sizes (Settings checks it)
    return Remark12(pairs, n), last_model, sub_xy


# ---------------------------------------------------------------------------------- the sampler
@dataclass(frozen=True)
class SamplerNoise:
    """Variance of the mini-batch gradient with and without replacement (App. A, Remark 12).

    Measured on the network's per-sample gradients (projected on random directions) at the end
    of the large-b/N run, with the sampler that :func:`sgdscope.paper.training.train` uses.

    Attributes:
        projections: Random directions the gradients were projected on.
        batch_size: b.
        n: N.
        with_one_batch: Mean ‖ḡ_B − g‖² of one batch, with replacement.
        with_one_epoch: The same for the sum over the N // b batches of an epoch.
        without_one_batch: One batch, without replacement.
        without_one_epoch: One epoch, without replacement (0 up to round-off).
        trace_d_projected: tr D of the projected gradients.
        ratio_one_batch: without/with, one batch.
        ratio_one_epoch: without/with, one epoch.
        model_factor: Remark 12's (1 − b/N).
        exact_one_batch: App. A's (N − b)/(N − 1).
        exact_one_epoch: App. A's (N − (N // b)·b)/(N − 1).
    """

    projections: int
    batch_size: int
    n: int
    with_one_batch: float
    with_one_epoch: float
    without_one_batch: float
    without_one_epoch: float
    trace_d_projected: float
    ratio_one_batch: float
    ratio_one_epoch: float
    model_factor: float
    exact_one_batch: float
    exact_one_epoch: float


def _projected_gradients(model: nn.Module, xy: tuple, ctx: RunContext, s: Settings) -> Tensor:
    """Per-sample gradients at the model's weights, projected on random Gaussian directions.

    With P of i.i.d. N(0, 1/p) entries, E‖Pᵀv‖² = ‖v‖², so every squared norm in
    :func:`batch_noise` is estimated without bias and the ratios are unaffected.

    Returns:
        The projections, shape (N, ``s.projections``), float64, on the CPU.
    """
    noise = GradientNoise(
        model, nn.CrossEntropyLoss(reduction="none"), xy, device=ctx.device, cache=False
    )
    gen = torch.Generator().manual_seed(ctx.seed + 17)
    proj = torch.randn(noise.dim, s.projections, generator=gen, dtype=torch.float64)
    proj = (proj / math.sqrt(s.projections)).to(ctx.device)
    n = noise.n_samples
    out = []
    for start in range(0, n, 256):
        g = noise.per_sample_gradients(torch.arange(start, min(n, start + 256)))
        out.append((g.to(torch.float64) @ proj).cpu())
    return torch.cat(out)


def measure_sampler(
    model: nn.Module, xy: tuple[Tensor, Tensor], ctx: RunContext, s: Settings
) -> SamplerNoise:
    """The sampler's noise on ``model``'s gradients at the large b of Remark 12."""
    b, n = s.replacement_batches[1], s.replacement_n
    grads = _projected_gradients(model.eval(), xy, ctx, s)
    var: dict[str, float] = {}
    for sampling in ("with", "without"):
        config = TrainConfig(batch_size=b, sampling=Sampling(sampling), seed=ctx.seed + 1)
        var[f"{sampling}_one_batch"] = batch_noise(grads, config, s.noise_epochs)
        var[f"{sampling}_one_epoch"] = batch_noise(grads, config, s.noise_epochs, window=n // b)
    return SamplerNoise(
        projections=s.projections,
        batch_size=b,
        n=n,
        **var,
        trace_d_projected=float(((grads - grads.mean(0)) ** 2).sum(1).mean()),
        ratio_one_batch=var["without_one_batch"] / var["with_one_batch"],
        ratio_one_epoch=var["without_one_epoch"] / var["with_one_epoch"],
        model_factor=1 - b / n,
        exact_one_batch=(n - b) / (n - 1),
        exact_one_epoch=(n - (n // b) * b) / (n - 1),
    )
