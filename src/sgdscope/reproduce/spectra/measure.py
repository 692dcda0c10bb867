"""What ``reproduce spectra`` measures: each panel's network trained, and D(x) at its checkpoints.

The network of each panel is trained as the paper did (:func:`sgdscope.paper.training.train`),
and at each checkpoint D(x) of eq. (2) is measured in eval mode from per-sample gradients
(:class:`sgdscope.GradientNoise`). Every spectrum is cached next to its checkpoint
(``*.spectrum.npz``, keyed by the samples D was measured on) and training resumes from
``last.pt``. A measured panel is a :class:`PanelRun`; the claims read its typed summary,
:class:`Panel`, and ``result.json`` receives :meth:`PanelRun.numbers`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor, nn

from ..._progress import progress_bar
from ...noise import GradientNoise
from ...noise.spectrum import PAPER, Spectrum
from ...paper import cifar, data, models
from ...paper.training import TrainConfig, TrainResult, load_weights, train
from ..context import RunContext
from .settings import PANELS, PanelSpec, Settings

__all__ = [
    "RTOLS",
    "Checkpoint",
    "Data",
    "Knee",
    "Measured",
    "Overlap",
    "Panel",
    "PanelRun",
    "Reading",
    "inputs_for_d",
    "knee",
    "load_spectrum",
    "measure_panels",
    "measure_spectrum",
]

RTOLS = (1e-3, 1e-6, 1e-9)  #: stricter relative thresholds reported beside the paper's.
NAME = "spectra"


# ----------------------------------------------------------------------- typed records
@dataclass(frozen=True)
class Reading:
    """Mean and standard deviation of D's eigenvalues in one reading of the paper's "±".

    Attributes:
        mean: The mean.
        std: The standard deviation (raw reading of a partial spectrum: the midpoint of its
            bounds).
    """

    mean: float
    std: float


@dataclass(frozen=True)
class Knee:
    """The gap after the first C − 1 eigenvalues (Papyan 2019), against its neighbours.

    Attributes:
        position: p = C − 1: the gap tested is λ_p/λ_{p+1} (1-based).
        log_ratio: log(λ_p/λ_{p+1}).
        neighbours: log(λ_i/λ_{i+1}) for the i within ``window`` of p, p excluded.
        z: (log_ratio − median(neighbours)) / (1.4826 · MAD(neighbours)), a robust z-score.
        largest: Whether log_ratio exceeds every neighbouring ratio.
    """

    position: int
    log_ratio: float
    neighbours: tuple[float, ...]
    z: float
    largest: bool

    @property
    def found(self) -> bool:
        """A knee: the largest gap of its neighbourhood and z ≥ :data:`KNEE_Z`."""
        return self.largest and self.z >= KNEE_Z


#: Robust z-score a gap must reach to count as a knee (3 MADs: about 1 in 700 for normal noise).
KNEE_Z = 3.0


def knee(eigenvalues: np.ndarray, position: int, window: int = 4) -> Knee | None:
    r"""Test for a knee after the first ``position`` eigenvalues of a descending spectrum.

    The log-gaps :math:`r_i = \log(\lambda_i/\lambda_{i+1})` of a smooth (power-law)
    spectrum change slowly with i; a knee after C − 1 eigenvalues (the class-mean directions of
    the gradient covariance, Papyan 2019, "Measurements of three-level hierarchical structure
    in the outliers in the spectrum of deepnet Hessians") makes :math:`r_{C-1}` stand out from
    its ``window`` neighbours on each side.

    Args:
        eigenvalues: Descending eigenvalues.
        position: p = C − 1 (1-based: the gap between λ_p and λ_{p+1}).
        window: Neighbouring gaps on each side.

    Returns:
        The :class:`Knee`, or None when fewer than p + window + 1 eigenvalues are positive or
        p ≤ window.
    """
    lam = np.asarray(eigenvalues, dtype=np.float64)
    lam = lam[lam > 0]
    if position <= window or lam.size < position + window + 1:
        return None
    r = np.log(lam[:-1] / lam[1:])  # r[i - 1] = log(λ_i/λ_{i+1})
    idx = [i for i in range(position - window, position + window + 1) if i != position]
    nb = r[np.array(idx) - 1]
    at, med = float(r[position - 1]), float(np.median(nb))
    mad = 1.4826 * float(np.median(np.abs(nb - med)))
    z = (at - med) / mad if mad > 0 else (np.inf if at > med else -np.inf if at < med else 0.0)
    return Knee(position, at, tuple(float(v) for v in nb), float(z), bool(at > nb.max()))


@dataclass(frozen=True)
class Checkpoint:
    """D(x) at one checkpoint, as the claims read it (all at the paper's threshold).

    Attributes:
        epoch: The checkpoint's epoch.
        dim: d, the number of parameters.
        n_samples: N, the samples D was measured on.
        rank: Eigenvalues above λ_max·d·ε_float32 (None: not determined).
        rank_percent: ``100 · rank / d`` (None: not determined).
        rank_is_certain: Whether the rank is certified (None: not determined).
        trace: tr D.
        readings: ``{"raw" | "clipped" | "above": Reading}`` (see
            :meth:`sgdscope.Spectrum.stats`); empty when the rank is not determined.
        ranks_at_rtol: ``{f"{rtol:g}": rank}`` at :data:`RTOLS`.
        power_law_slope: Slope s of λ_i ∝ i^(−s) above the threshold (None: under 5 values).
        knee: The gap after C − 1 eigenvalues (None: not asked for, or too few eigenvalues).
    """

    epoch: int
    dim: int
    n_samples: int
    rank: int | None
    rank_percent: float | None
    rank_is_certain: bool | None
    trace: float
    readings: dict[str, Reading]
    ranks_at_rtol: dict[str, int]
    power_law_slope: float | None
    knee: Knee | None = None

    @classmethod
    def of(cls, epoch: int, sp: Spectrum, knee_at: int | None = None) -> Checkpoint:
        """Read a measured spectrum at the paper's threshold (and its knee after ``knee_at``)."""
        known = sp.rank_known(PAPER)
        r = sp.rank(PAPER) if known else None
        return cls(
            epoch=epoch,
            dim=sp.dim,
            n_samples=sp.n_samples,
            rank=r,
            rank_percent=None if r is None else 100.0 * r / sp.dim,
            rank_is_certain=sp.rank_is_certain(PAPER) if known else None,
            trace=sp.trace,
            readings=_readings(sp.stats(PAPER)) if known else {},
            ranks_at_rtol={f"{t:g}": sp.rank(t) for t in RTOLS if sp.rank_known(t)},
            power_law_slope=power_law_slope(sp),
            knee=None if knee_at is None else knee(sp.eigenvalues, knee_at),
        )

    def mean(self, reading: str = "raw") -> float:
        """The mean eigenvalue in ``reading`` (nan when not known)."""
        return self.readings[reading].mean if reading in self.readings else float("nan")

    def std(self, reading: str = "above") -> float:
        """The standard deviation in ``reading`` (nan when not known)."""
        return self.readings[reading].std if reading in self.readings else float("nan")

    def std_over_mean(self) -> dict[str, float]:
        """std/mean in each reading with a non-zero mean: the scale-free form of mean ± std."""
        return {k: r.std / r.mean for k, r in self.readings.items() if r.mean}


def _readings(stats: dict[str, Any]) -> dict[str, Reading]:
    out = {}
    for reading in ("raw", "clipped", "above"):
        r = stats.get(reading)
        if not r:
            continue
        std = r.get("std")
        if std is None:
            std = 0.5 * (r["std_low"] + r["std_high"])
        out[reading] = Reading(r["mean"], std)
    return out


def power_law_slope(sp: Spectrum) -> float | None:
    """Slope s of log λ_i = c − s log i over the eigenvalues above the threshold.

    A power law λ_i ∝ i^(−s), as Xie et al. (NeurIPS 2023) report for gradient-noise covariances.

    Returns:
        s, or None when fewer than 5 eigenvalues are above the threshold.
    """
    r = sp.rank(PAPER) if sp.rank_known(PAPER) else sp.eigenvalues.size
    lam = sp.eigenvalues[: max(r, 0)]
    lam = lam[lam > 0]
    if lam.size < 5:
        return None
    i = np.arange(1, lam.size + 1)
    return float(-np.polyfit(np.log(i), np.log(lam), 1)[0])


@dataclass(frozen=True)
class Overlap:
    """Overlap of the top-k eigenvector subspaces of two checkpoints (Remark 13).

    Attributes:
        k: Subspace size.
        overlap: ‖V_aᵀV_b‖²_F / k (1: the same subspace).
        chance: k/d, its value for random subspaces.
    """

    k: int
    overlap: float
    chance: float


@dataclass(frozen=True)
class Panel:
    """One measured panel, as the claims read it.

    Attributes:
        checkpoints: D at each checkpoint, by ascending epoch.
        overlaps: ``{"a-b": Overlap}`` for every pair of checkpoints a < b.
        spectrum_seconds: Seconds all its spectra took to measure (over all calls).
        devices: Where they were measured.
    """

    checkpoints: tuple[Checkpoint, ...]
    overlaps: dict[str, Overlap]
    spectrum_seconds: float
    devices: frozenset[str]

    @property
    def final(self) -> Checkpoint:
        """The last (100 %) checkpoint."""
        return self.checkpoints[-1]


# ----------------------------------------------------------------------- data and training
@dataclass(frozen=True)
class Data:
    """A panel's training and test tensors, and their description for the report."""

    train: tuple[Tensor, Tensor]
    test: tuple[Tensor, Tensor] | None
    description: str


def _mnist_data(spec: PanelSpec, ctx: RunContext, s: Settings) -> Data:
    size = models.input_shape(spec.model)[-1]
    # raw 0–255 for small-lenet (loader.mnist); halfmnist's ToTensor gave [0, 1] at 7 × 7
    scale = s.mnist_scale if size == 28 else "unit"
    common: dict[str, Any] = {"scale": scale, "size": size, "classes": spec.classes}
    if size != 28:
        common["resize"] = ctx.mnist_resize
    tr = data.mnist(ctx.mnist_dir, "train", n=s.mnist_n_train, **common)
    te = data.mnist(ctx.mnist_dir, "test", **common)
    where = "embedded MNIST subset" if ctx.mnist_dir is None else f"MNIST in {ctx.mnist_dir}"
    desc = (
        f"{where}: {len(tr):,} train / {len(te):,} test images, {size}×{size}, digits "
        f"{','.join(map(str, spec.classes))}, scale {scale!r}"
        + (f", resize {ctx.mnist_resize!r}" if size != 28 else "")
    )
    return Data(tr.tensors(), te.tensors(), desc)


def _cifar_data(spec: PanelSpec, root: Path, s: Settings) -> Data:
    tr = cifar.cifar(root, "train", classes=spec.num_classes, n=s.cifar_n_train)
    te = cifar.cifar(root, "test", classes=spec.num_classes)
    train_xy, test_xy = cifar.paper_inputs(tr, te)
    desc = (
        f"CIFAR-{spec.num_classes} from {tr.source}: {len(tr):,} train / {len(te):,} test, "
        "GCN (55) + ZCA (ε = 1e-2) fitted on train, no augmentation in training"
    )
    return Data(train_xy, test_xy, desc)


def cifar_root(spec: PanelSpec, ctx: RunContext) -> Path | None:
    """The CIFAR folder a CIFAR panel reads (None: not given)."""
    return ctx.cifar_dir if spec.num_classes == 10 else ctx.cifar100_dir


def _run_dir(ctx: RunContext, spec: PanelSpec) -> Path:
    size = models.input_shape(spec.model)[-1]
    other = not spec.is_cifar and size != 28 and ctx.mnist_resize != "area"
    return ctx.folder(NAME) / (f"{spec.run}-{ctx.mnist_resize}" if other else spec.run)


def _train(spec: PanelSpec, d: Data, ctx: RunContext, s: Settings) -> TrainResult:
    epochs = s.cifar_epochs if spec.is_cifar else s.mnist_epochs
    config = TrainConfig(
        epochs=epochs, weight_decay=models.info(spec.model).weight_decay, seed=ctx.seed
    )
    model = models.build(spec.model, spec.num_classes, seed=ctx.seed)
    return train(
        model,
        d.train,
        config,
        _run_dir(ctx, spec) / "train",
        test_data=d.test,
        device=ctx.device,
        progress=ctx.progress,
        data_tag=d.description,
    )


# ----------------------------------------------------------------------------- D(x)
def load_spectrum(path: Path) -> tuple[Spectrum, float]:
    """The cached spectrum and the seconds its measurement took (its ``info["device"]`` says where)."""
    spec = Spectrum.load(path)
    return spec, float(spec.info.get("seconds", 0.0))


def inputs_for_d(spec: PanelSpec, d: Data, s: Settings, ctx: RunContext) -> tuple:
    """The samples D is measured on: the first ``n_spectrum``, augmented for Fig. 2c."""
    x, y = d.train
    n = s.cifar_n_spectrum if spec.is_cifar and s.cifar_n_spectrum else s.n_spectrum
    if n is not None:
        x, y = x[:n], y[:n]
    if spec.augment:  # Fig. 2c: one random flip + pad-4 + crop per sample, seeded
        x = cifar.augment(x, seed=ctx.seed + 1)
    return x, y


def _vectors(sp: Spectrum) -> int:
    """Number of eigenvectors the spectrum kept."""
    return 0 if sp.eigenvectors is None else sp.eigenvectors.shape[1]


def measure_spectrum(
    spec: PanelSpec, ckpt: Path, xy: tuple[Tensor, Tensor], ctx: RunContext, s: Settings
) -> tuple[Spectrum, float, bool]:
    """D's spectrum at a checkpoint, its measurement time, and whether it came from the cache."""
    tag = f".n{len(xy[1])}" + (f".augment{ctx.seed + 1}" if spec.augment else "")
    cache = ckpt.with_name(f"{ckpt.stem}{tag}.spectrum.npz")  # keyed by what D was measured on
    if cache.is_file():
        return *load_spectrum(cache), True
    t0 = time.perf_counter()
    model = models.build(spec.model, spec.num_classes, seed=ctx.seed)
    load_weights(model, ckpt)
    noise = GradientNoise(
        model.to(ctx.device).eval(),  # the paper measured D in eval mode
        nn.CrossEntropyLoss(reduction="none"),
        xy,
        device=ctx.device,
        progress=ctx.progress,
    )
    result = noise.spectrum(k=None, method="auto", seed=ctx.seed, rtol=PAPER)
    if result.eigenvectors is not None and result.eigenvectors.shape[1] < s.overlap_k:
        k = min(s.overlap_k, max(min(noise.n_samples - 1, noise.dim), 1))
        result = noise.spectrum(k=k, method="auto", seed=ctx.seed)
    seconds = time.perf_counter() - t0
    result = replace(result, info={**result.info, "device": str(ctx.device), "seconds": seconds})
    result.save(cache, eigenvectors=s.overlap_k, eigenvector_dtype=np.float32)
    return result, seconds, False


# ----------------------------------------------------------------------------- a panel
@dataclass(frozen=True)
class PanelRun:
    """One panel trained and measured.

    Attributes:
        spec: The panel.
        data: Its data.
        train: The training run (checkpoints at 20/40/100 %).
        spectra: D's spectrum at each checkpoint, by epoch.
        spectrum_seconds: Seconds the spectra took to measure, over all calls.
        spectrum_seconds_reused: The part of it spent by earlier calls (read from the cache).
        overlap_k: Size of the top eigenvector subspaces compared.
    """

    spec: PanelSpec
    data: Data
    train: TrainResult
    spectra: dict[int, Spectrum]
    spectrum_seconds: float
    spectrum_seconds_reused: float
    overlap_k: int

    def _overlaps(self) -> dict[str, Overlap]:
        epochs = sorted(self.spectra)
        out = {}
        for i, a in enumerate(epochs):
            for b in epochs[i + 1 :]:
                sa, sb = self.spectra[a], self.spectra[b]
                k = min(self.overlap_k, _vectors(sa), _vectors(sb))
                if k:
                    out[f"{a}-{b}"] = Overlap(k, sa.subspace_overlap(sb, k), k / sa.dim)
        return out

    def panel(self) -> Panel:
        """The typed summary the claims read."""
        return Panel(
            checkpoints=tuple(
                Checkpoint.of(e, self.spectra[e], self.spec.knee_at) for e in sorted(self.spectra)
            ),
            overlaps=self._overlaps(),
            spectrum_seconds=self.spectrum_seconds,
            devices=frozenset(str(sp.info.get("device")) for sp in self.spectra.values()),
        )

    def numbers(self) -> dict[str, Any]:
        """Every number of the panel, JSON-ready, for ``result.json``."""
        epochs = sorted(self.spectra)
        per_ckpt = {}
        for e in epochs:
            sp = self.spectra[e]
            summary = sp.summary(PAPER)
            summary.pop("info", None)
            summary["ranks_at_rtol"] = {f"{t:g}": sp.rank(t) for t in RTOLS if sp.rank_known(t)}
            summary["power_law_slope"] = power_law_slope(sp)
            k = None if self.spec.knee_at is None else knee(sp.eigenvalues, self.spec.knee_at)
            summary["knee"] = None if k is None else {**asdict(k), "found": k.found}
            per_ckpt[str(e)] = summary
        return {
            "model": self.spec.model,
            "parameters": self.spectra[epochs[-1]].dim,
            "checkpoints": per_ckpt,
            "overlaps": {k: asdict(o) for k, o in self._overlaps().items()},
            "final_train_error": self.train.final.train_error,
            "final_test_error": self.train.final.test_error,
            "train_seconds": self.train.seconds,
            "history": [asdict(r) for r in self.train.history],
            "data": self.data.description,
            "spectrum_seconds": self.spectrum_seconds,
            "spectrum_seconds_this_call": self.spectrum_seconds - self.spectrum_seconds_reused,
            "spectrum_devices": {str(e): self.spectra[e].info.get("device") for e in epochs},
        }


def _measure_panel(
    spec: PanelSpec, d: Data, tr: TrainResult, ctx: RunContext, s: Settings
) -> PanelRun:
    xy = inputs_for_d(spec, d, s, ctx)
    spectra, seconds, reused = {}, 0.0, 0.0
    for epoch, ckpt in sorted(tr.checkpoints.items()):
        spectra[epoch], dt, cached = measure_spectrum(spec, ckpt, xy, ctx, s)
        seconds += dt
        reused += dt if cached else 0.0
    return PanelRun(spec, d, tr, spectra, seconds, reused, s.overlap_k)


@dataclass(frozen=True)
class Measured:
    """Every panel of one ``reproduce spectra`` call.

    Attributes:
        runs: The panels measured, in the order of ``Settings.panels``.
        skipped: ``{panel: why}`` for the panels whose data was not given.
        seconds_reused: Seconds of training and of D spent by earlier calls, reused from disk.
    """

    runs: dict[str, PanelRun]
    skipped: dict[str, str]
    seconds_reused: float


def measure_panels(ctx: RunContext, s: Settings) -> Measured:
    """Train each panel's network (once per training folder) and measure D at its checkpoints."""
    runs: dict[str, PanelRun] = {}
    skipped: dict[str, str] = {}
    earlier = 0.0  # training epochs and spectra done by earlier calls, reused from disk
    trained: dict[str, tuple[Data, TrainResult]] = {}
    with progress_bar("spectra: panels", len(s.panels), enabled=ctx.progress) as advance:
        for key in s.panels:
            spec = PANELS[key]
            root = cifar_root(spec, ctx) if spec.is_cifar else None
            if spec.is_cifar and root is None:
                flag = "--cifar-dir" if spec.num_classes == 10 else "--cifar100-dir"
                skipped[key] = f"no CIFAR-{spec.num_classes} data given (pass {flag})"
                advance(1)
                continue
            if spec.run not in trained:
                d = _cifar_data(spec, root, s) if root is not None else _mnist_data(spec, ctx, s)
                tr = _train(spec, d, ctx, s)
                trained[spec.run] = d, tr
                earlier += sum(r.seconds for r in tr.history[: tr.resumed_from])
            runs[key] = _measure_panel(spec, *trained[spec.run], ctx, s)
            earlier += runs[key].spectrum_seconds_reused
            advance(1)
    return Measured(runs, skipped, earlier)
