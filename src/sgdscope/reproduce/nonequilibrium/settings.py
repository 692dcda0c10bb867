"""Sizes of ``reproduce nonequilibrium`` and the stationary settings it trains.

The settings are the paper's two small MNIST networks (§IV) trained so that the weights can reach
a stationary state, which the Fig. 3 run could not (BatchNorm makes the loss invariant to the
norm of the pre-BN weights, and without weight decay SGD only grows it; Wan et al. 2021,
"spherical motion dynamics"):

- ``a``: tiny-fc and small-lenet with BatchNorm and weight decay (the norm then has an
  equilibrium of its own), at each of :attr:`Settings.weight_decays`;
- ``b``: the same networks without BatchNorm (no scale invariance at all);
- ``c``: the Fig. 3 run of ``reproduce trajectory`` itself, read from its output folder, in
  scale-invariant coordinates (each pre-BN weight vector divided by its norm);
- ``d``: the paper's text protocol for Fig. 3, tiny-fc with lr 10⁻³ after the burn-in ("fixed
  to 10⁻³ after this", §IV-B).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..._validation import check_int, check_option, check_real
from .._experiment import AbstractSettings

__all__ = ["NETWORKS", "RunSetting", "Settings"]

#: The networks trained here (sgdscope.paper.models), and the input side of their MNIST.
NETWORKS = {"tiny-fc": 7, "small-lenet": 28}


@dataclass(frozen=True)
class RunSetting:
    """One trained setting: a network, BatchNorm or not, weight decay and the recording lr.

    Attributes:
        key: Row key (e.g. ``"a.tiny-fc.wd1e-03"``).
        group: ``"a"``, ``"b"`` or ``"d"`` (see the module docstring).
        model: Name in :func:`sgdscope.paper.models.build`.
        batchnorm: Whether the network keeps its BatchNorm layers.
        weight_decay: L2 coefficient of the optimiser.
        recording_lr: Learning rate after the burn-in.
    """

    key: str
    group: str
    model: str
    batchnorm: bool
    weight_decay: float
    recording_lr: float

    @property
    def label(self) -> str:
        """The setting in words."""
        bn = "with BatchNorm" if self.batchnorm else "without BatchNorm"
        return (
            f"{self.model} {bn}, weight decay {self.weight_decay:g}, lr {self.recording_lr:g} "
            "while recording"
        )


@dataclass(frozen=True)
class Settings(AbstractSettings):
    """Sizes of the non-equilibrium experiment.

    Attributes:
        networks: Networks trained in settings a and b (``tiny-fc``, ``small-lenet``).
        weight_decays: Weight decays of setting a (with BatchNorm).
        no_bn_weight_decays: Weight decays of setting b (without BatchNorm).
        text_protocol: Whether to run setting d (tiny-fc, lr 10⁻³ after the burn-in).
        fig3_record: Whether to test setting c, the record of ``reproduce trajectory`` in the
            same output folder (not testable when that experiment has not run there).
        epochs: Epochs per tiny-fc run, burn-in included (the record must span 20 of the
            slowest relaxation times to be tested; tiny-fc's reach 10³ epochs).
        lenet_epochs: The same for small-lenet (about 5× slower per epoch on the CPU).
        burnin: Epochs before the first record (one record per epoch after it).
        n: Training images of tiny-fc, class-balanced, digits 0–3 (7 × 7, as in Fig. 3).
        lenet_n: The same for small-lenet (28 × 28).
        lr: Learning rate (0.1, the paper's) during the burn-in and, in settings a–b, after it.
        text_lr: The recording lr of setting d (10⁻³, the paper's text).
        batch_size: Mini-batch size b (128).
        momentum: Heavy-ball momentum (0.9, the paper's).
        sampling: ``"with"`` replacement (default; see below) or ``"without"``.
        n_components: Dimension k of the tested subspaces (top-k PCA and D's top k).
        n_surrogates: Reversible surrogates of every test (≥ 60 for a p-value below α/3).
        n_bootstrap: Bootstrap replicates of the entropy-production interval.

    With one record per epoch and sampling without replacement, the mini-batch noise of an
    epoch sums to almost zero (the batches partition the data), so the recorded process would
    not be the SDE with diffusion D/b per step whose linear theory is tested; sampling with
    replacement keeps it (Remark 12).
    """

    WHERE: ClassVar[str] = "sgdscope.reproduce.nonequilibrium.Settings"

    networks: tuple[str, ...] = ("tiny-fc", "small-lenet")
    weight_decays: tuple[float, ...] = (1e-3, 1e-2, 1e-1)
    no_bn_weight_decays: tuple[float, ...] = (0.0, 1e-2)
    text_protocol: bool = True
    fig3_record: bool = True
    epochs: int = 11_000
    lenet_epochs: int = 2_200
    burnin: int = 1_000
    n: int = 2_048
    lenet_n: int = 512
    lr: float = 0.1
    text_lr: float = 1e-3
    batch_size: int = 128
    momentum: float = 0.9
    sampling: str = "with"
    n_components: int = 10
    n_surrogates: int = 199
    n_bootstrap: int = 199

    def validate(self) -> None:
        """Check every field (called at construction); tuples of names and floats normalised."""
        w = self.WHERE
        for net in self.networks:
            check_option("networks", net, list(NETWORKS), where=w)
        object.__setattr__(self, "networks", tuple(self.networks))
        for name in ("weight_decays", "no_bn_weight_decays"):
            values = tuple(float(v) for v in getattr(self, name))
            for v in values:
                check_real(name, v, where=w, low=0)
            object.__setattr__(self, name, values)
        check_int("burnin", self.burnin, where=w, low=0)
        for name in ("epochs", "lenet_epochs"):
            check_int(
                name,
                getattr(self, name),
                where=w,
                low=self.burnin + max(200, 20 * self.n_components),
                hint="The tests need 200 records, and 20 per tested dimension, after the burn-in.",
            )
        check_int("n", self.n, where=w, low=4)
        check_int("lenet_n", self.lenet_n, where=w, low=4)
        for name in ("lr", "text_lr"):
            check_real(name, getattr(self, name), where=w, low=0, low_open=True)
        check_int("batch_size", self.batch_size, where=w, low=1)
        check_real("momentum", self.momentum, where=w, low=0, high=1, high_open=True)
        check_option("sampling", self.sampling, ["with", "without"], where=w)
        check_int("n_components", self.n_components, where=w, low=2)
        check_int("n_surrogates", self.n_surrogates, where=w, low=19)
        check_int("n_bootstrap", self.n_bootstrap, where=w, low=19)

    @classmethod
    def quick(cls) -> Settings:
        """tiny-fc only, 1,300 epochs (300 burn-in): about 2 min on 2 busy cores.

        99 surrogates, not fewer: the smallest p-value, 1/100, must stay below the Bonferroni
        level α/3 of a setting's three tests.

        Returns:
            The quick settings.
        """
        return cls(
            networks=("tiny-fc",),
            no_bn_weight_decays=(1e-2,),
            epochs=1_300,
            burnin=300,
            n_surrogates=99,
            n_bootstrap=49,
        )

    @classmethod
    def full(cls) -> Settings:
        """Both networks, three weight decays, 10,000 tiny-fc and 1,200 small-lenet records."""
        return cls()

    def epochs_of(self, model: str) -> int:
        """Epochs of a run of ``model``, burn-in included."""
        return self.lenet_epochs if model == "small-lenet" else self.epochs

    def runs(self) -> tuple[RunSetting, ...]:
        """The trained settings (a, b, d), in report order."""
        out = []
        for net in self.networks:
            for wd in self.weight_decays:
                out.append(RunSetting(f"a.{net}.wd{wd:.0e}", "a", net, True, wd, self.lr))
        for net in self.networks:
            for wd in self.no_bn_weight_decays:
                out.append(RunSetting(f"b.{net}.wd{wd:.0e}", "b", net, False, wd, self.lr))
        if self.text_protocol:
            key = f"d.tiny-fc.lr{self.text_lr:.0e}"
            out.append(RunSetting(key, "d", "tiny-fc", True, 0.0, self.text_lr))
        return tuple(out)
