"""Sizes of ``reproduce spectra``, and the five panels of Figs 1–2 it can run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..._validation import check_int, check_option
from .._experiment import AbstractSettings

__all__ = ["PANELS", "PanelSpec", "Settings"]


@dataclass(frozen=True)
class PanelSpec:
    """One panel of Figs 1–2 (§IV-A): the network, its data and what the paper printed.

    Attributes:
        key: ``"fig1a"`` … ``"fig2c"``.
        figure: The figure as cited (``"Fig. 1a"``).
        model: Name in :func:`sgdscope.paper.models.build`.
        num_classes: Outputs of the network.
        classes: MNIST digits kept (empty: all, or CIFAR).
        data_label: The data, in words.
        run: Training folder; panels sharing it share the checkpoints (fig2a and fig2c).
        paper_mean: The paper's mean eigenvalue.
        paper_std: The paper's standard deviation of the eigenvalues.
        paper_rank_percent: The paper's rank as a percentage of d.
        paper_mean_text: The paper's "mean ± std", as printed.
        is_cifar: Whether the panel needs CIFAR data.
        augment: Whether D is measured on augmented inputs (Fig. 2c).
    """

    key: str
    figure: str
    model: str
    num_classes: int
    classes: tuple[int, ...]
    data_label: str
    run: str
    paper_mean: float
    paper_std: float
    paper_rank_percent: float
    paper_mean_text: str
    is_cifar: bool = False
    augment: bool = False

    @property
    def knee_at(self) -> int | None:
        """C − 1 for a panel with C ≥ 3 classes in its data (where a knee is tested), else None."""
        c = len(self.classes) if self.classes else self.num_classes
        return c - 1 if c >= 3 else None


#: The five panels of Figs 1–2, with the numbers the paper printed for each.
PANELS: dict[str, PanelSpec] = {
    p.key: p
    for p in (
        PanelSpec("fig1a", "Fig. 1a", "small-lenet", 10, tuple(range(10)), "MNIST",
                  "small-lenet-mnist", 0.3e-3, 2.11e-3, 1.8, "(0.3 ± 2.11)×10⁻³"),
        PanelSpec("fig1b", "Fig. 1b", "small-fc", 10, (0, 1), "7×7 MNIST, digits 0 and 1",
                  "small-fc-mnist7", 0.9e-3, 18.5e-3, 0.6, "(0.9 ± 18.5)×10⁻³"),
        PanelSpec("fig2a", "Fig. 2a", "small-allcnn", 10, (), "CIFAR-10", "small-allcnn-cifar10",
                  0.27, 0.84, 0.34, "0.27 ± 0.84", is_cifar=True),
        PanelSpec("fig2b", "Fig. 2b", "small-allcnn", 100, (), "CIFAR-100",
                  "small-allcnn-cifar100", 0.98, 2.16, 0.47, "0.98 ± 2.16", is_cifar=True),
        PanelSpec("fig2c", "Fig. 2c", "small-allcnn", 10, (), "CIFAR-10, D with augmentation",
                  "small-allcnn-cifar10", 0.43, 1.32, 0.32, "0.43 ± 1.32", is_cifar=True,
                  augment=True),
    )
}  # fmt: skip


@dataclass(frozen=True)
class Settings(AbstractSettings):
    """Sizes of the spectra experiment.

    Attributes:
        panels: Which panels to run (``fig1a``, ``fig1b``, ``fig2a``, ``fig2b``, ``fig2c``).
        mnist_epochs: Training epochs of the MNIST networks (the paper's are unknown; 50 as
            for small-allcnn).
        cifar_epochs: Training epochs of small-allcnn (50, as in the paper §IV).
        mnist_n_train: Class-balanced MNIST training subset; None for all selected images.
        cifar_n_train: First images of the CIFAR training split; None for all 50,000.
        n_spectrum: Samples D is measured on (the first of the training set); None for the whole
            training set, as the paper did.
        cifar_n_spectrum: The same for the CIFAR panels; None follows ``n_spectrum``.
        mnist_scale: Input scaling of the 28 × 28 MNIST of small-lenet; ``"paper"`` is the
            authors' raw 0–255 pixels. The 7 × 7 inputs of small-fc are always ``"unit"``, as
            the authors' ``halfmnist`` (``ToTensor`` divides by 255) gave them.
        overlap_k: Size of the top eigenvector subspaces compared across checkpoints.
    """

    WHERE: ClassVar[str] = "sgdscope.reproduce.spectra.Settings"

    panels: tuple[str, ...] = ("fig1a", "fig1b", "fig2a", "fig2b", "fig2c")
    mnist_epochs: int = 50
    cifar_epochs: int = 50
    mnist_n_train: int | None = None
    cifar_n_train: int | None = None
    n_spectrum: int | None = None
    cifar_n_spectrum: int | None = None
    mnist_scale: str = "paper"
    overlap_k: int = 20

    def validate(self) -> None:
        """Check every field (called at construction)."""
        w = self.WHERE
        if not self.panels:
            raise ValueError(
                f"the 'panels' parameter of {w} must name at least one panel, got (); e.g. "
                "('fig1a', 'fig1b')."
            )
        for key in self.panels:
            check_option("panels", key, PANELS, where=w)
        check_int("mnist_epochs", self.mnist_epochs, where=w, low=1)
        check_int("cifar_epochs", self.cifar_epochs, where=w, low=1)
        for name in ("mnist_n_train", "cifar_n_train"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), where=w, low=10, hint="None uses all.")
        for name in ("n_spectrum", "cifar_n_spectrum"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), where=w, low=2, hint="None uses all.")
        check_option("mnist_scale", self.mnist_scale, ["unit", "raw", "paper", "standard"], where=w)
        check_int("overlap_k", self.overlap_k, where=w, low=1)

    @classmethod
    def quick(cls) -> Settings:
        """Embedded MNIST (10,000 images), 4 epochs, D on 2,000 samples; CIFAR on 5,000 images."""
        return cls(mnist_epochs=4, cifar_epochs=3, cifar_n_train=5_000, n_spectrum=2_000)

    @classmethod
    def full(cls) -> Settings:
        """The paper's protocol: 50 epochs, D over the whole training set."""
        return cls()

    def describe_reduction(self, cifar: bool = True) -> str:
        """What differs from the paper's protocol, for the report's label.

        Args:
            cifar: Whether CIFAR panels ran (their reductions are listed only then).

        Returns:
            The differences, comma-separated (``""`` for none).
        """
        parts = [f"{self.mnist_epochs} MNIST epochs"]
        if self.mnist_n_train:
            parts.append(f"MNIST subset of {self.mnist_n_train:,}")
        if cifar:
            parts.append(f"{self.cifar_epochs} CIFAR epochs")
            if self.cifar_n_train:
                parts.append(f"first {self.cifar_n_train:,} CIFAR images")
        if self.n_spectrum:
            parts.append(f"D on the first {self.n_spectrum:,} training samples")
        if cifar and self.cifar_n_spectrum:
            parts.append(f"CIFAR D on the first {self.cifar_n_spectrum:,} training samples")
        return "; ".join(parts)
