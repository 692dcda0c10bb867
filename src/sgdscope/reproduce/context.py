"""Where and how an experiment of ``sgdscope reproduce`` runs: one small frozen record."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunContext"]


@dataclass(frozen=True)
class RunContext:
    """Settings shared by every experiment of one ``sgdscope reproduce`` call.

    Attributes:
        out: Output root; experiment ``name`` writes into ``out/name``, the report into
            ``out/report``.
        quick: Reduced sizes on the embedded data (each reduced figure is labelled).
        device: ``"cpu"`` or ``"cuda"``.
        mnist_dir: Folder with the MNIST IDX files; None uses the embedded subset.
        cifar_dir: Folder with a CIFAR-10 archive (binary or python version) or its extracted
            folder; None skips the CIFAR panels (reported as not testable here).
        cifar100_dir: The same for CIFAR-100.
        mnist_resize: How 7 × 7 MNIST is made: ``"area"`` (4 × 4 block means) or ``"authors"``
            (the byte wrap + bilinear resize of the authors' ``halfmnist``,
            github.com/pratikac/grad-info, commit 4e1bd82).
        seed: Seed of weights, data order and estimators.
        progress: Draw rich progress bars.
    """

    out: Path
    quick: bool = False
    device: str = "cpu"
    mnist_dir: Path | None = None
    cifar_dir: Path | None = None
    cifar100_dir: Path | None = None
    mnist_resize: str = "area"
    seed: int = 0
    progress: bool = True

    def folder(self, name: str) -> Path:
        """Create and return ``out/name``."""
        path = Path(self.out) / name
        path.mkdir(parents=True, exist_ok=True)
        return path
