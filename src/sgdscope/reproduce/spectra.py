"""``reproduce spectra``: Figs 1–2 of the paper, D(x)'s eigenspectrum at 20 %, 40 % and 100 % of training.

For each panel of §IV-A (Figs 1–2) the network is trained as the paper did
(:func:`sgdscope.paper.training.train`: momentum 0.9, batch 128, lr 0.1 with a step schedule,
checkpoints at 20/40/100 %), and at each checkpoint D(x) of eq. (2) is measured in eval mode from
per-sample gradients over the training set (:class:`sgdscope.GradientNoise`, exact rank without a
dense matrix). Reported per checkpoint: rank at the paper's threshold λ_max·d·ε_float32 and at
stricter ones (is D low-rank, or a power law cut off by the threshold?), mean ± std in three
readings (the paper's "±" is ambiguous), the overlap of
the top-k eigenvector subspaces between checkpoints (Remark 13), and the rank-ordered spectrum
(power law or low rank?).

Panels: ``fig1a`` small-lenet on MNIST; ``fig1b`` small-fc on 7×7 MNIST, digits 0 and 1, 10
outputs (the code's ``halfmnist`` defaults); ``fig2a`` / ``fig2b`` small-allcnn on CIFAR-10 /
CIFAR-100 (GCN + ZCA, no augmentation in training); ``fig2c`` the fig2a checkpoints re-evaluated
with one random flip + pad-4 + crop per sample. The CIFAR panels need ``--cifar-dir`` /
``--cifar100-dir``; without them they are reported as not testable here.

Everything measured is cached next to its checkpoint (``*.spectrum.npz``), and training resumes
from ``last.pt``, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import textwrap
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from torch import Tensor, nn

from .._progress import progress_bar
from ..noise import GradientNoise
from ..noise.spectrum import PAPER, Spectrum
from ..paper import cifar, data, models
from ..paper.training import TrainConfig, TrainResult, load_weights, train
from ..report.fig_spectrum import plot_spectrum
from ..report.results import ExperimentResult, FigureRef
from ..report.style import save_figure
from ._spectra_claims import PANELS, PanelSpec, compare, notes
from .context import RunContext

__all__ = ["NAME", "Settings", "run"]

NAME = "spectra"
RTOLS = (1e-3, 1e-6, 1e-9)  #: stricter relative thresholds reported beside the paper's.


@dataclass(frozen=True)
class Settings:
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
        reduced: Label the run as reduced (set by :meth:`quick`).
    """

    panels: tuple[str, ...] = ("fig1a", "fig1b", "fig2a", "fig2b", "fig2c")
    mnist_epochs: int = 50
    cifar_epochs: int = 50
    mnist_n_train: int | None = None
    cifar_n_train: int | None = None
    n_spectrum: int | None = None
    cifar_n_spectrum: int | None = None
    mnist_scale: str = "paper"
    overlap_k: int = 20
    reduced: bool = False

    @classmethod
    def quick(cls) -> Settings:
        """Embedded MNIST (10,000 images), 4 epochs, D on 2,000 samples; CIFAR on 5,000 images."""
        return cls(
            mnist_epochs=4, cifar_epochs=3, cifar_n_train=5_000, n_spectrum=2_000, reduced=True
        )

    @classmethod
    def full(cls) -> Settings:
        """The paper's protocol: 50 epochs, D over the whole training set."""
        return cls()

    def describe_reduction(self, cifar: bool = True) -> str:
        """What differs from the paper's protocol, for the report's label.

        Args:
            cifar: Whether CIFAR panels ran (their reductions are listed only then).
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


@dataclass(frozen=True)
class _Data:
    train: tuple[Tensor, Tensor]
    test: tuple[Tensor, Tensor]
    description: str


def _mnist_data(spec: PanelSpec, ctx: RunContext, s: Settings) -> _Data:
    size = models.input_shape(spec.model)[-1]
    # raw 0–255 for small-lenet (loader.mnist); halfmnist's ToTensor gave [0, 1] at 7 × 7
    scale = s.mnist_scale if size == 28 else "unit"
    common = {"scale": scale, "size": size, "classes": spec.classes}
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
    return _Data(tr.tensors(), te.tensors(), desc)


def _cifar_data(spec: PanelSpec, root: Path, s: Settings) -> _Data:
    tr = cifar.cifar(root, "train", classes=spec.num_classes, n=s.cifar_n_train)
    te = cifar.cifar(root, "test", classes=spec.num_classes)
    train_xy, test_xy = cifar.paper_inputs(tr, te)
    desc = (
        f"CIFAR-{spec.num_classes} from {tr.source}: {len(tr):,} train / {len(te):,} test, "
        "GCN (55) + ZCA (ε = 1e-2) fitted on train, no augmentation in training"
    )
    return _Data(train_xy, test_xy, desc)


def _cifar_root(spec: PanelSpec, ctx: RunContext) -> Path | None:
    return ctx.cifar_dir if spec.num_classes == 10 else ctx.cifar100_dir


def _run_dir(ctx: RunContext, spec: PanelSpec) -> Path:
    size = models.input_shape(spec.model)[-1]
    other = not spec.is_cifar and size != 28 and ctx.mnist_resize != "area"
    return ctx.folder(NAME) / (f"{spec.run}-{ctx.mnist_resize}" if other else spec.run)


def _train(spec: PanelSpec, d: _Data, ctx: RunContext, s: Settings) -> TrainResult:
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


def _load_spectrum(path: Path) -> tuple[Spectrum, float]:
    """The cached spectrum and the seconds its measurement took (its ``info["device"]`` says where)."""
    spec = Spectrum.load(path)
    return spec, float(spec.info.get("seconds", 0.0))


def _inputs_for_d(spec: PanelSpec, d: _Data, s: Settings, ctx: RunContext) -> tuple:
    x, y = d.train
    n = s.cifar_n_spectrum if spec.is_cifar and s.cifar_n_spectrum else s.n_spectrum
    if n is not None:
        x, y = x[:n], y[:n]
    if spec.augment:  # Fig. 2c: one random flip + pad-4 + crop per sample, seeded
        x = cifar.augment(x, seed=ctx.seed + 1)
    return x, y


def _measure(
    spec: PanelSpec, ckpt: Path, xy: tuple[Tensor, Tensor], ctx: RunContext, s: Settings
) -> tuple[Spectrum, float, bool]:
    """D's spectrum at a checkpoint, its measurement time, and whether it came from the cache."""
    tag = f".n{len(xy[1])}" + (f".augment{ctx.seed + 1}" if spec.augment else "")
    cache = ckpt.with_name(f"{ckpt.stem}{tag}.spectrum.npz")  # keyed by what D was measured on
    if cache.is_file():
        return *_load_spectrum(cache), True
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


def _panel_numbers(
    spec: PanelSpec, spectra: dict[int, Spectrum], tr: TrainResult, s: Settings
) -> dict:
    epochs = sorted(spectra)
    per_ckpt = {}
    for e in epochs:
        sp = spectra[e]
        summary = sp.summary(PAPER)
        summary.pop("info", None)
        summary["ranks_at_rtol"] = {f"{t:g}": sp.rank(t) for t in RTOLS if sp.rank_known(t)}
        summary["power_law_slope"] = _power_law_slope(sp)
        per_ckpt[str(e)] = summary
    overlaps = {}
    for i, a in enumerate(epochs):
        for b in epochs[i + 1 :]:
            k = min(s.overlap_k, spectra[a].eigenvectors.shape[1], spectra[b].eigenvectors.shape[1])
            if k:
                overlaps[f"{a}-{b}"] = {
                    "k": k,
                    "overlap": spectra[a].subspace_overlap(spectra[b], k),
                    "chance": k / spectra[a].dim,
                }
    hist = [asdict(r) for r in tr.history]
    return {
        "model": spec.model,
        "parameters": spectra[epochs[-1]].dim,
        "checkpoints": per_ckpt,
        "overlaps": overlaps,
        "final_train_error": tr.final.train_error,
        "final_test_error": tr.final.test_error,
        "train_seconds": tr.seconds,
        "history": hist,
    }


def _power_law_slope(sp: Spectrum) -> float | None:
    """Slope s of log λ_i = c − s log i over the eigenvalues above the threshold.

    A power law λ_i ∝ i^(−s), as Xie et al. (NeurIPS 2023) report for gradient-noise covariances.
    """
    r = sp.rank(PAPER) if sp.rank_known(PAPER) else sp.eigenvalues.size
    lam = sp.eigenvalues[: max(r, 0)]
    lam = lam[lam > 0]
    if lam.size < 5:
        return None
    i = np.arange(1, lam.size + 1)
    return float(-np.polyfit(np.log(i), np.log(lam), 1)[0])


def run(ctx: RunContext, settings: Settings | None = None) -> ExperimentResult:
    """Run the spectra experiment (Figs 1–2) and save ``OUT/spectra/result.json``.

    Args:
        ctx: Output folder, data folders, device, seed.
        settings: Sizes; None takes :meth:`Settings.quick` or :meth:`Settings.full` from
            ``ctx.quick``.

    Returns:
        The :class:`ExperimentResult` (also written to disk with its figures).
    """
    s = settings or (Settings.quick() if ctx.quick else Settings.full())
    if ctx.quick and not s.reduced:
        s = replace(s, reduced=True)
    t0 = time.perf_counter()
    folder = ctx.folder(NAME)
    figures: list[FigureRef] = []
    numbers: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    earlier_work = 0.0  # training epochs and spectra done by earlier calls, reused from disk
    loaded: dict[str, _Data] = {}
    trained: dict[str, TrainResult] = {}
    with progress_bar("spectra: panels", len(s.panels), enabled=ctx.progress) as advance:
        for key in s.panels:
            spec = PANELS[key]
            if spec.is_cifar and _cifar_root(spec, ctx) is None:
                flag = "--cifar-dir" if spec.num_classes == 10 else "--cifar100-dir"
                skipped[key] = f"no CIFAR-{spec.num_classes} data given (pass {flag})"
                advance(1)
                continue
            if spec.run not in loaded:
                loaded[spec.run] = (
                    _cifar_data(spec, _cifar_root(spec, ctx), s)
                    if spec.is_cifar
                    else _mnist_data(spec, ctx, s)
                )
                trained[spec.run] = _train(spec, loaded[spec.run], ctx, s)
                done = trained[spec.run].history[: trained[spec.run].resumed_from]
                earlier_work += sum(r.seconds for r in done)
            d, tr = loaded[spec.run], trained[spec.run]
            xy = _inputs_for_d(spec, d, s, ctx)
            spectra, seconds, reused = {}, 0.0, 0.0
            for epoch, ckpt in sorted(tr.checkpoints.items()):
                spectra[epoch], dt, cached = _measure(spec, ckpt, xy, ctx, s)
                seconds += dt
                reused += dt if cached else 0.0
            numbers[key] = _panel_numbers(spec, spectra, tr, s)
            numbers[key].update(
                data=d.description,
                spectrum_seconds=seconds,
                spectrum_seconds_this_call=seconds - reused,
                spectrum_devices={str(e): spectra[e].info.get("device") for e in spectra},
            )
            earlier_work += reused
            frac = {e: round(100 * e / max(spectra)) for e in spectra}
            reduced = f"(reduced: {s.describe_reduction(spec.is_cifar)})" if s.reduced else ""
            png = f"{key}_{spec.run}.png"
            figure = plot_spectrum(
                [spectra[e] for e in sorted(spectra)],
                labels=[f"epoch {e} ({frac[e]} %)" for e in sorted(spectra)],
                rtol=PAPER,
                title=f"{spec.figure}: D(x) of {spec.model}, {spec.data_label}",
                banner="\n".join(textwrap.wrap(reduced, 90)),
            )
            save_figure(figure, folder / png)
            figures.append(
                FigureRef(
                    png,
                    f"{spec.figure}: {spec.model} on {spec.data_label}, N = "
                    f"{spectra[max(spectra)].n_samples:,}; left, eigenvalues clipped at the "
                    "threshold (darker is later); right, λ_i against i with the threshold.",
                )
            )
            advance(1)
    this_call = time.perf_counter() - t0
    result = ExperimentResult(
        name=NAME,
        title="Figs 1–2: the eigenspectrum of D(x) at 20 %, 40 % and 100 % of training",
        reduced=s.reduced,
        reduced_note=(
            s.describe_reduction(any(PANELS[k].is_cifar for k in numbers)) if s.reduced else ""
        ),
        config={**asdict(s), "device": ctx.device, "seed": ctx.seed},
        seconds=this_call + earlier_work,  # what the experiment cost, over all its calls
        comparisons=compare(numbers, skipped),
        figures=figures,
        numbers={
            "panels": numbers,
            "skipped": skipped,
            "rtols": list(RTOLS),
            "seconds_this_call": this_call,
            "seconds_reused_from_earlier_calls": earlier_work,
        },
        notes=notes(numbers),
    )
    result.save(folder)
    return result
