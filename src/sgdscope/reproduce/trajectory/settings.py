"""Sizes of ``reproduce trajectory`` (defaults: the authors' Oct-12 run of Fig. 3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..._validation import check_int, check_option, check_real
from .._experiment import AbstractSettings

__all__ = ["Settings"]


@dataclass(frozen=True)
class Settings(AbstractSettings):
    """Sizes of the trajectory run (defaults: the authors' Oct-12 run).

    Attributes:
        epochs: Total epochs, burn-in included (10⁵).
        burnin: Epochs before the first record (10³).
        lr: Learning rate of the burn-in (0.1, the code's default).
        recording_lr: Learning rate after burn-in; None keeps ``lr`` (the code's constant 0.1);
            1e-3 is the paper's text ("fixed to 10⁻³ after this").
        n: Training images, class-balanced, first in file order (2,048 = 512 × 4).
        classes: Digits kept (0–3).
        scale: Input scaling of :func:`sgdscope.paper.data.mnist`: ``"unit"`` (pixels / 255,
            default) or ``"paper"`` (raw 0–255; the authors' 7 × 7 inputs also went through a
            byte overflow that is not reproduced).
        batch_size: Mini-batch size b (128).
        momentum: Heavy-ball momentum (0.9).
        checkpoint_every: Epochs between resume points.
        n_surrogates: Surrogates of the equilibrium test's reversible null.
        embedded: Use the embedded MNIST subset even when ``ctx.mnist_dir`` is given.
    """

    WHERE: ClassVar[str] = "sgdscope.reproduce.trajectory.Settings"
    # how often the run saves a resume point changes nothing measured; the embedded data is
    # reported by the data rule of AbstractSettings.reduction
    NOT_REDUCING: ClassVar[frozenset[str]] = frozenset({"checkpoint_every", "embedded"})

    epochs: int = 100_000
    burnin: int = 1_000
    lr: float = 0.1
    recording_lr: float | None = None
    n: int = 2_048
    classes: tuple[int, ...] = (0, 1, 2, 3)
    scale: str = "unit"
    batch_size: int = 128
    momentum: float = 0.9
    checkpoint_every: int = 1_000
    n_surrogates: int = 199
    embedded: bool = False

    def validate(self) -> None:
        """Check every field (called at construction); ``classes`` becomes a tuple of ints."""
        w = self.WHERE
        check_int("burnin", self.burnin, where=w, low=0)
        check_int(
            "epochs",
            self.epochs,
            where=w,
            low=self.burnin + 3,
            hint="At least 3 epochs must be recorded after the burn-in.",
        )
        check_real("lr", self.lr, where=w, low=0, low_open=True)
        if self.recording_lr is not None:
            check_real("recording_lr", self.recording_lr, where=w, low=0, low_open=True)
        check_int("n", self.n, where=w, low=len(self.classes))
        check_option("scale", self.scale, ["unit", "raw", "paper", "standard"], where=w)
        check_int("batch_size", self.batch_size, where=w, low=1)
        check_real("momentum", self.momentum, where=w, low=0, high=1, high_open=True)
        check_int("checkpoint_every", self.checkpoint_every, where=w, low=1)
        check_int("n_surrogates", self.n_surrogates, where=w, low=19)
        object.__setattr__(self, "classes", tuple(int(c) for c in self.classes))

    @classmethod
    def quick(cls) -> Settings:
        """2,000 epochs with a 200-epoch burn-in on the embedded data (≈2 min on 2 busy cores).

        3,000 epochs took 186 s under shared load (17.5 epochs/s), over this experiment's share
        of the 10-minute quick budget; 2,000 reach lags of 900 epochs in Fig. 3b (T/2).

        Returns:
            The quick settings.
        """
        return cls(epochs=2_000, burnin=200, checkpoint_every=200, n_surrogates=99, embedded=True)

    @classmethod
    def full(cls) -> Settings:
        """The authors' protocol: 10⁵ epochs, 10³ burn-in, lr 0.1 throughout (the code's lr)."""
        return cls()

    @property
    def lr_after_burnin(self) -> float:
        """The learning rate in force while recording."""
        return self.lr if self.recording_lr is None else self.recording_lr

    def describe_reduction(self) -> str:
        """What these settings change against :meth:`full`: epochs and burn-in, then the rest."""
        full = self.full()
        parts = [f"{self.epochs:,} epochs", f"burn-in {self.burnin:,}"]
        parts += [
            f"{name} {getattr(self, name)!r} (full {getattr(full, name)!r})"
            for name in self.changed()
            if name not in ("epochs", "burnin")
        ]
        return ", ".join(parts)
