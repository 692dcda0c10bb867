"""Sizes of ``reproduce scaling``: the batch sizes of Remark 11 and the subsets of Remark 12."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..._validation import check_int, check_option, check_real
from .._experiment import AbstractSettings

__all__ = ["MODEL", "Settings", "scaled_lr"]

MODEL = "small-lenet"  #: the network of both remarks (§IV-A's MNIST network).


@dataclass(frozen=True)
class Settings(AbstractSettings):
    """Sizes of the scaling experiment.

    Attributes:
        batch_sizes: Batch sizes b of Remark 11 (the paper's range around its b = 128).
        epochs: Epochs of every Remark 11 run (the same for every b, as in Goyal et al. 2017).
        n_train: Class-balanced MNIST training subset of Remark 11; None for the whole split.
        n_test: Class-balanced test subset; None for the whole test split.
        base_lr: η at ``base_batch`` (0.1 at 128, §IV).
        base_batch: The batch size at which η = ``base_lr``.
        lr_cap: Largest η of the linear rule (1, as the authors' ``train_dual_batch.py``).
        replacement_n: N, the training subset of Remark 12.
        replacement_batches: Batch sizes of Remark 12: one small and one large b/N.
        replacement_steps: At least this many SGD steps per Remark 12 run (the epochs follow).
        steady_fraction: The last fraction of a Remark 12 run's epochs averaged as steady state
            (at least two epochs when the run has two).
        noise_samples: Training samples on which tr D(x) is measured (0 skips it).
        projections: Random directions the per-sample gradients are projected on in
            :func:`~sgdscope.reproduce.scaling.batch_noise` (an unbiased estimate of squared
            norms).
        noise_epochs: Sampler epochs drawn by :func:`~sgdscope.reproduce.scaling.batch_noise`.
        scale: MNIST input scaling; ``"paper"`` is the authors' raw 0–255 pixels.
    """

    WHERE: ClassVar[str] = "sgdscope.reproduce.scaling.Settings"

    batch_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)
    epochs: int = 10
    n_train: int | None = None
    n_test: int | None = None
    base_lr: float = 0.1
    base_batch: int = 128
    lr_cap: float = 1.0
    replacement_n: int = 4096
    replacement_batches: tuple[int, ...] = (64, 1024)
    replacement_steps: int = 1500
    steady_fraction: float = 0.25
    noise_samples: int = 2000
    projections: int = 256
    noise_epochs: int = 200
    scale: str = "paper"

    def validate(self) -> None:
        """Check every field (called at construction); sorts ``batch_sizes``."""
        w = self.WHERE
        sizes = tuple(check_int("batch_sizes", b, where=w, low=1) for b in self.batch_sizes)
        if len(sizes) < 2 or len(set(sizes)) != len(sizes):
            raise ValueError(
                f"the 'batch_sizes' parameter of {w} must hold at least two distinct sizes, got "
                f"{self.batch_sizes!r}; e.g. (32, 128, 512)."
            )
        object.__setattr__(self, "batch_sizes", tuple(sorted(sizes)))
        check_int("epochs", self.epochs, where=w, low=1)
        for name in ("n_train", "n_test"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), where=w, low=10, hint="None uses all.")
        if self.n_train is not None and max(sizes) > self.n_train:
            raise ValueError(
                f"the 'batch_sizes' parameter of {w} must not exceed n_train = {self.n_train}, "
                f"got {max(sizes)}; drop that size or enlarge n_train."
            )
        check_real("base_lr", self.base_lr, where=w, low=0, low_open=True)
        check_int("base_batch", self.base_batch, where=w, low=1)
        check_real("lr_cap", self.lr_cap, where=w, low=0, low_open=True)
        self._validate_remark12()
        check_int("noise_samples", self.noise_samples, where=w, low=0)
        check_int("projections", self.projections, where=w, low=1)
        check_int("noise_epochs", self.noise_epochs, where=w, low=1)
        check_option("scale", self.scale, ["unit", "raw", "paper", "standard"], where=w)

    def _validate_remark12(self) -> None:
        w = self.WHERE
        n = check_int("replacement_n", self.replacement_n, where=w, low=10)
        pair = tuple(
            check_int("replacement_batches", b, where=w, low=1, high=n)
            for b in self.replacement_batches
        )
        if len(pair) != 2 or pair[0] >= pair[1]:
            raise ValueError(
                f"the 'replacement_batches' parameter of {w} must be (small b, large b) with "
                f"small < large ≤ replacement_n, got {self.replacement_batches!r}; e.g. "
                f"({n // 64}, {n // 4})."
            )
        check_int("replacement_steps", self.replacement_steps, where=w, low=1)
        check_real("steady_fraction", self.steady_fraction, where=w, low=0, high=1, low_open=True)

    @classmethod
    def quick(cls) -> Settings:
        """Reduced sizes for ``--quick`` (embedded data; about 2 minutes on 2 CPU cores)."""
        return cls(
            batch_sizes=(32, 128, 512),
            epochs=2,
            replacement_n=2048,
            replacement_batches=(32, 512),
            replacement_steps=200,
            noise_samples=500,
            projections=128,
            noise_epochs=100,
        )

    @classmethod
    def full(cls) -> Settings:
        """The paper's range of b on the full MNIST split, 10 epochs per run."""
        return cls()

    def describe_reduction(self) -> str:
        """What this run reduced against :meth:`full`, in words."""
        return (
            f"b ∈ {{{', '.join(map(str, self.batch_sizes))}}}, {self.epochs} epoch(s) per run, "
            f"Remark 12 on N = {self.replacement_n} with b ∈ {set(self.replacement_batches)} "
            f"for ≥ {self.replacement_steps} steps"
        )


def scaled_lr(batch_size: int, settings: Settings) -> float:
    r"""Learning rate of the linear rule, :math:`\min(\eta_0\,b/b_0,\ \eta_{\max})` (Remark 11).

    Keeps the temperature :math:`\beta^{-1}=\eta/(2b)` of Lemma 2 (eq. 3) fixed up to the cap,
    which the authors' ``train_dual_batch.py`` set at 1 (github.com/pratikac/grad-info, commit
    4e1bd82).

    Returns:
        η for batch size ``batch_size``.

    Example:
        >>> scaled_lr(512, Settings())
        0.4
    """
    return min(settings.base_lr * batch_size / settings.base_batch, settings.lr_cap)
