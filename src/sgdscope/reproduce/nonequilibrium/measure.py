r"""What ``reproduce nonequilibrium`` measures: stationary SGD runs, their currents, and the linear theory.

For each setting (see :mod:`.settings`) the network is trained with heavy-ball SGD and recorded
once per epoch after the burn-in (:func:`train_and_record`: positions and momentum buffers, in
memory). :func:`examine` then chains the library's tests, stationarity first:

1. :func:`~sgdscope.trajectory.analysis.stationarity` in the top-k PCA subspace; a record that
   fails it is not tested further (no verdict either way);
2. :func:`~sgdscope.trajectory.analysis.equilibrium_test` in the top-2 PCA plane, in phase space
   for momentum runs: positions :math:`x_t + \eta b_t/2` and velocities :math:`b_t` (the
   heavy-ball pair of its docstring, exact for any snapshot spacing: a k-step kernel of a chain
   reversible with parity is reversible with parity);
3. :func:`~sgdscope.trajectory.analysis.subspace_currents` in the top-k PCA subspace and in the
   span of D's top-k eigenvectors (:meth:`sgdscope.GradientNoise.spectrum` at the last record);
4. the linear theory (Chaudhari & Soatto 2018, §V-A, Lemma 20): F, the Hessian of the loss plus
   weight decay restricted to each tested basis (Hessian-vector products, :func:`hessian_in_basis`),
   and D in the same basis (:meth:`sgdscope.GradientNoise.operator`) give through
   :func:`sgdscope.linear_decomposition` a predicted Q, its rotation rates and entropy
   production, compared with what :func:`~sgdscope.trajectory.analysis.subspace_currents`
   measured on the run (:func:`linear_theory`).

Setting c reads the Fig. 3 record of ``reproduce trajectory`` and tests it in scale-invariant
coordinates (:func:`scale_invariant`).
"""

from __future__ import annotations

import copy
import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from ..._progress import progress_bar
from ...dynamics.linear import linear_decomposition
from ...noise import GradientNoise
from ...paper import data, models
from ...paper.training import Sampling, TrainConfig, epoch_batches
from ...temperature import temperature
from ...trajectory import load_trajectory
from ...trajectory.analysis import (
    EquilibriumTest,
    Stationarity,
    SubspaceCurrents,
    equilibrium_test,
    stationarity,
    subspace_currents,
)
from ..context import RunContext
from .settings import NETWORKS, RunSetting, Settings

__all__ = [
    "CLASSES",
    "FIG3_STORE",
    "RESOLVED_RATE",
    "Record",
    "Tested",
    "Theory",
    "batchnorm_fed",
    "examine",
    "hessian_in_basis",
    "linear_theory",
    "moving",
    "rotation_rates",
    "scale_invariant",
    "train_and_record",
    "without_batchnorm",
]

CLASSES = (0, 1, 2, 3)  #: the digits of every setting (those of the Fig. 3 run).
#: Where ``reproduce trajectory`` leaves its record, relative to the output root.
FIG3_STORE = Path("trajectory") / "run" / "traj"
_BN = (nn.BatchNorm1d, nn.BatchNorm2d)
#: Fastest relaxation rate per record that a record resolves: a mode with rate 2 keeps a
#: correlation e⁻² ≈ 0.14 from one record to the next; faster ones look like white noise, and
#: their currents cannot be measured at that spacing.
RESOLVED_RATE = 2.0


# ------------------------------------------------------------------------------- networks
def without_batchnorm(model: nn.Sequential) -> nn.Sequential:
    """The same network with every BatchNorm layer replaced by the identity (setting b)."""
    return nn.Sequential(*[nn.Identity() if isinstance(m, _BN) else m for m in model])


def batchnorm_fed(model: nn.Module) -> dict[str, str]:
    """``{parameter name: "weight" | "bias"}`` of the layers whose output a BatchNorm normalises.

    In an ``nn.Sequential``, a Linear or Conv layer directly followed by BatchNorm: the loss is
    invariant to the scale of each of its output units' weight vectors, and its bias is removed
    by the batch mean (it never moves in training).

    Returns:
        The parameter names, each with its role.
    """
    children = list(model.named_children())
    out: dict[str, str] = {}
    for (name, layer), (_, nxt) in itertools.pairwise(children):
        if isinstance(layer, (nn.Linear, nn.Conv2d)) and isinstance(nxt, _BN):
            out[f"{name}.weight"] = "weight"
            if layer.bias is not None:
                out[f"{name}.bias"] = "bias"
    return out


def scale_invariant(
    x: np.ndarray, names: list[str], shapes: list[list[int]], fed: dict[str, str]
) -> np.ndarray:
    """Positions (T, d) in scale-invariant coordinates (setting c).

    Each output unit's weight vector of a layer followed by BatchNorm is divided by its norm at
    every record; that layer's bias (which BatchNorm removes) is dropped; every other parameter
    is kept as it is.

    Args:
        x: (T, d) positions, parameters concatenated in ``names`` order.
        names: Parameter names.
        shapes: Their shapes.
        fed: :func:`batchnorm_fed` of the network.

    Returns:
        (T, d') float32 coordinates.
    """
    parts, start = [], 0
    for name, shape in zip(names, shapes, strict=True):
        size = int(np.prod(shape))
        block = np.asarray(x[:, start : start + size], dtype=np.float64)
        start += size
        role = fed.get(name)
        if role == "bias":
            continue
        if role == "weight":
            rows = block.reshape(len(block), shape[0], -1)
            block = (rows / np.linalg.norm(rows, axis=2, keepdims=True)).reshape(len(block), -1)
        parts.append(block.astype(np.float32))
    return np.concatenate(parts, axis=1)


def network(setting: RunSetting, seed: int) -> nn.Sequential:
    """The setting's network (4 outputs), BatchNorm removed for setting b."""
    model = models.build(setting.model, len(CLASSES), seed=seed)
    assert isinstance(model, nn.Sequential)
    return model if setting.batchnorm else without_batchnorm(model)


def training_data(model: str, s: Settings, ctx: RunContext) -> tuple[Tensor, Tensor]:
    """Class-balanced MNIST of digits 0–3 at the network's input size, pixels in [0, 1]."""
    n = s.n if model == "tiny-fc" else s.lenet_n
    return data.mnist(
        ctx.mnist_dir, n=n, classes=CLASSES, size=NETWORKS[model], scale="unit"
    ).tensors()


# ------------------------------------------------------------------------------- recording
@dataclass(frozen=True)
class Record:
    """One trained and recorded run.

    Attributes:
        positions: (T, d) float32 weights after each recorded epoch.
        velocities: (T, d) float32 momentum buffers b_t after the same epochs (x_t = x_{t−1} −
            η b_t for the last step of the epoch).
        lr: Learning rate while recording.
        steps_per_record: Optimizer steps per record (the steps of one epoch).
        model: The network at the last record (train-mode BatchNorm statistics kept).
        data: Its training data.
        seconds: Training wall time.
    """

    positions: np.ndarray
    velocities: np.ndarray
    lr: float
    steps_per_record: int
    model: nn.Module
    data: tuple[Tensor, Tensor]
    seconds: float

    def midpoints(self) -> np.ndarray:
        r"""Positions :math:`x_t + \eta b_t / 2` of the heavy-ball pair (see the module docstring)."""
        return self.positions + np.float32(self.lr / 2) * self.velocities


def _flat(tensors: Sequence[Tensor]) -> np.ndarray:
    return torch.cat([t.detach().reshape(-1) for t in tensors]).cpu().numpy().astype(np.float32)


def train_and_record(
    setting: RunSetting,
    xy: tuple[Tensor, Tensor],
    s: Settings,
    *,
    seed: int,
    progress: bool = False,
) -> Record:
    """Train the setting's network with heavy-ball SGD and record every epoch after the burn-in.

    lr ``s.lr`` during the burn-in, ``setting.recording_lr`` after it; weight decay is the
    optimiser's (its gradient is part of the momentum buffer); mini-batches from
    :func:`sgdscope.paper.training.epoch_batches` (seeded by ``(seed, epoch)``).

    Returns:
        The :class:`Record`.
    """
    t0 = time.perf_counter()
    model = network(setting, seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=setting.weight_decay)
    epochs = s.epochs_of(setting.model)
    config = TrainConfig(
        epochs=epochs, batch_size=s.batch_size, lr=s.lr, momentum=s.momentum,
        sampling=Sampling(s.sampling), seed=seed,
    )  # fmt: skip
    x, y = xy
    n_rec = epochs - s.burnin
    pos = np.empty((n_rec, sum(p.numel() for p in params)), dtype=np.float32)
    vel = np.empty_like(pos)
    model.train()
    with progress_bar(f"nonequilibrium {setting.key}", epochs, enabled=progress) as advance:
        for epoch in range(epochs):
            lr = s.lr if epoch < s.burnin else setting.recording_lr
            for group in opt.param_groups:
                group["lr"] = lr
            for idx in epoch_batches(len(y), config, epoch):
                loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if epoch >= s.burnin:
                pos[epoch - s.burnin] = _flat(params)
                vel[epoch - s.burnin] = _flat([opt.state[p]["momentum_buffer"] for p in params])
            advance(1)
    steps = len(epoch_batches(len(y), config, 0))
    return Record(pos, vel, setting.recording_lr, steps, model, xy, time.perf_counter() - t0)


# ------------------------------------------------------------------------------- curvature
def hessian_in_basis(
    model: nn.Module, xy: tuple[Tensor, Tensor], basis: np.ndarray, weight_decay: float = 0.0
) -> np.ndarray:
    r""":math:`B (H + \lambda I) B^\top` for a (k, d) basis B, from k Hessian-vector products.

    H is the Hessian of the mean cross-entropy over ``xy`` in eval mode (BatchNorm running
    statistics, no dropout: the loss whose D is measured, eq. 2), in float64, by double
    backward (the gradient's graph kept, then one more backward pass per direction); λ the
    weight decay. The parameters are concatenated in ``named_parameters()`` order.

    Returns:
        The (k, k) symmetric matrix.
    """
    m = copy.deepcopy(model).double().eval()
    named = [(n, p) for n, p in m.named_parameters() if p.requires_grad]
    shapes = {n: p.shape for n, p in named}
    sizes = [p.numel() for _, p in named]
    x0 = torch.cat([p.detach().reshape(-1) for _, p in named]).requires_grad_(True)
    parts = {n: t.reshape(shapes[n]) for (n, _), t in zip(named, x0.split(sizes), strict=True)}
    out = functional_call(m, parts, (xy[0].double(),))
    loss = nn.functional.cross_entropy(out, xy[1]) + 0.5 * weight_decay * x0 @ x0
    (g,) = torch.autograd.grad(loss, x0, create_graph=True)
    b = torch.as_tensor(np.asarray(basis), dtype=torch.float64)
    hv = torch.stack([torch.autograd.grad(g @ v, x0, retain_graph=True)[0] for v in b])
    h = (b @ hv.T).detach().numpy()
    return 0.5 * (h + h.T)


@dataclass(frozen=True)
class NoiseInBasis:
    """D at the last record, restricted to the coordinates that move in training.

    Attributes:
        noise: The :class:`~sgdscope.GradientNoise` over the moving parameters (eval mode).
        keep: (d,) bool, the coordinates of those parameters among all d.
        top: (k, d) D's top-k eigenvectors as rows (zero on the other coordinates).
        eigenvalues: (k,) their eigenvalues.
    """

    noise: GradientNoise
    keep: np.ndarray
    top: np.ndarray
    eigenvalues: np.ndarray

    def restricted(self, basis: np.ndarray) -> np.ndarray:
        r""":math:`B D B^\top` (k, k) for a (k, d) basis (its other coordinates ignored)."""
        b = np.asarray(basis, dtype=np.float64)[:, self.keep]
        dv = self.noise.operator().matmat(torch.as_tensor(b.T)).cpu().numpy()
        out = b @ dv
        return 0.5 * (out + out.T)


def noise_in_basis(model: nn.Module, xy: tuple[Tensor, Tensor], k: int, seed: int) -> NoiseInBasis:
    """D(x) of eq. (2) at the model's weights (eval mode, per-sample cross-entropy), top k.

    The biases that BatchNorm removes (:func:`batchnorm_fed`) are left out: their eval-mode
    gradient is not zero, but SGD never moves them, so directions along them are not tested.

    Returns:
        The :class:`NoiseInBasis`.
    """
    fed = batchnorm_fed(model)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    keep = np.concatenate([np.full(p.numel(), fed.get(n) != "bias") for n, p in named])
    noise = GradientNoise(
        model.eval(),
        nn.CrossEntropyLoss(reduction="none"),
        xy,
        params={n: p for n, p in named if fed.get(n) != "bias"},
    )
    sp = noise.spectrum(k=k, seed=seed)
    assert sp.eigenvectors is not None
    top = np.zeros((k, keep.size))
    top[:, keep] = np.asarray(sp.eigenvectors, dtype=np.float64)[:, :k].T
    return NoiseInBasis(noise, keep, top, np.asarray(sp.eigenvalues[:k], dtype=np.float64))


# ------------------------------------------------------------------------------- linear theory
def rotation_rates(Q: np.ndarray, S: np.ndarray) -> np.ndarray:
    r"""Rates ω of the rotations of a linear current (0 at detailed balance).

    The moduli of the eigenvalue pairs ±iω of :math:`S^{-1/2}QS^{-1/2}`, in decreasing order.

    Returns:
        The (k // 2,) rates.
    """
    w, v = np.linalg.eigh(S)
    wh = (v / np.sqrt(w)) @ v.T
    k = S.shape[0]
    return np.sort(np.abs(np.linalg.eigvals(wh @ Q @ wh).imag))[::-1][: 2 * (k // 2) : 2]


@dataclass(frozen=True)
class Theory:
    """The linear theory of one run in one basis, against what the run showed.

    Attributes:
        basis: ``"pca"`` or ``"noise"`` (D's top eigenvectors).
        stable: Whether F has eigenvalues with positive real parts only (else no prediction).
        resolved: Whether F's fastest rate is at most :data:`RESOLVED_RATE` per record (else
            the record is too coarse to measure what the theory predicts).
        commute: Whether F and D commute in the basis (then the theory predicts Q = 0).
        predicted_entropy: tr(QᵀD⁻¹QU) of :func:`sgdscope.linear_decomposition` (per record).
        predicted_rates: (k // 2,) rotation rates of the predicted Q (per record).
        measured_entropy: σ̂ of :func:`~sgdscope.trajectory.analysis.subspace_currents`.
        interval: Its confidence interval.
        measured_rates: (k // 2,) rotation rates of the fitted model.
        variance_ratio: tr(S_predicted) / tr(S_measured), the scale check of F and D.
        agrees: Whether the predicted σ lies in the measured interval.
    """

    basis: str
    stable: bool
    resolved: bool
    commute: bool
    predicted_entropy: float
    predicted_rates: np.ndarray
    measured_entropy: float
    interval: tuple[float, float]
    measured_rates: np.ndarray
    variance_ratio: float
    agrees: bool

    def summary(self) -> dict[str, Any]:
        """JSON-ready numbers."""
        return {
            "basis": self.basis,
            "stable": self.stable,
            "resolved": self.resolved,
            "commute": self.commute,
            "predicted_entropy": self.predicted_entropy,
            "predicted_rates": [float(w) for w in self.predicted_rates],
            "measured_entropy": self.measured_entropy,
            "interval": list(self.interval),
            "measured_rates": [float(w) for w in self.measured_rates],
            "variance_ratio": self.variance_ratio,
            "agrees": self.agrees,
        }


def drift_and_diffusion(
    hessian: np.ndarray,
    noise: np.ndarray,
    *,
    lr: float,
    momentum: float,
    batch_size: int,
    n: int,
    steps: int,
    replacement: bool,
) -> tuple[np.ndarray, np.ndarray]:
    r"""F and D of the SDE (3) per record, from B(H + λI)Bᵀ and BDBᵀ.

    Heavy-ball SGD at lr η and momentum μ is, over times long against 1/(1 − μ) steps, the SDE
    with time :math:`t = \eta_\mathrm{eff}\cdot\text{steps}`, :math:`\eta_\mathrm{eff} =
    \eta/(1-\mu)`, and temperature β⁻¹ of :func:`sgdscope.temperature` (η/(2b(1 − μ)), times
    1 − b/N without replacement). Per record of ``steps`` steps:
    :math:`F = \text{steps}\cdot\eta_\mathrm{eff}(H + \lambda I)` and
    :math:`D_\text{SDE} = \text{steps}\cdot\eta_\mathrm{eff}\,\beta^{-1}D`.

    Returns:
        ``(F, D_SDE)``, each (k, k).
    """
    unit = steps * lr / (1.0 - momentum)
    t = temperature(lr, batch_size, n, replacement=replacement, momentum=momentum)
    return unit * hessian, unit * t * noise


def linear_theory(basis: str, F: np.ndarray, D: np.ndarray, measured: SubspaceCurrents) -> Theory:
    """Predicted Q, rotation rates and entropy production (Lemma 20) against a measured run.

    Returns:
        The :class:`Theory`; an unstable F (a direction of negative curvature in the basis)
        predicts nothing (``stable`` False, nan predictions).
    """
    lo, hi = measured.entropy.interval or (float("nan"), float("nan"))
    fit = measured.fit
    base: dict[str, Any] = dict(
        basis=basis, measured_entropy=measured.entropy.rate, interval=(lo, hi),
        measured_rates=measured.rotation_rates,
    )  # fmt: skip
    rates = np.linalg.eigvals(F).real
    if not np.all(rates > 0):
        nan = np.full(measured.rotation_rates.shape, np.nan)
        return Theory(
            **base, stable=False, resolved=False, commute=False, predicted_entropy=float("nan"),
            predicted_rates=nan, variance_ratio=float("nan"), agrees=False,
        )  # fmt: skip
    dec = linear_decomposition(F, D)
    dinv = np.linalg.pinv(D, rcond=1e-12, hermitian=True)
    sigma = float(max(np.trace(dec.Q.T @ dinv @ dec.Q @ dec.U), 0.0))
    return Theory(
        **base,
        stable=True,
        resolved=bool(rates.max() <= RESOLVED_RATE),
        commute=dec.commute,
        predicted_entropy=sigma,
        predicted_rates=rotation_rates(dec.Q, dec.S),
        variance_ratio=float(np.trace(dec.S) / np.trace(fit.S)),
        agrees=bool(lo <= sigma <= hi),
    )


# ------------------------------------------------------------------------------- the tests
@dataclass(frozen=True)
class Tested:
    """Every test of one setting (None where it did not run; ``skipped`` says why).

    Attributes:
        key: The setting's key.
        label: The setting in words.
        records: T, the records tested.
        dim: d, the coordinates of the record.
        stationarity: The diagnosis in the top-k PCA subspace (None: the record is too short).
        equilibrium: The top-2 test (phase space for momentum runs).
        currents: ``{"pca" | "noise": SubspaceCurrents}``.
        theory: ``{"pca" | "noise": Theory}``.
        skipped: ``{test: why}``.
        seconds: Training and testing wall time.
    """

    key: str
    label: str
    records: int
    dim: int
    stationarity: Stationarity | None
    equilibrium: EquilibriumTest | None
    currents: dict[str, SubspaceCurrents]
    theory: dict[str, Theory]
    skipped: dict[str, str]
    seconds: float

    @property
    def stationary(self) -> bool:
        """Whether the record passed the stationarity diagnosis."""
        return self.stationarity is not None and self.stationarity.stationary

    def numbers(self) -> dict[str, Any]:
        """Every number, JSON-ready."""
        return {
            "label": self.label,
            "records": self.records,
            "dim": self.dim,
            "stationarity": None if self.stationarity is None else self.stationarity.summary(),
            "equilibrium_top2": None if self.equilibrium is None else self.equilibrium.summary(),
            "currents": {k: c.summary() for k, c in self.currents.items()},
            "theory": {k: t.summary() for k, t in self.theory.items()},
            "skipped": dict(self.skipped),
            "seconds": self.seconds,
        }


def moving(x: np.ndarray, rtol: float = 1e-4) -> np.ndarray:
    """Indices of the coordinates whose increment RMS exceeds ``rtol`` × the median RMS.

    A weight from a pixel that is 0 in every image, or a bias that BatchNorm removes, moves by
    round-off at most; its normalised statistics would be noise (and the tests refuse constant
    coordinates).

    Returns:
        The indices, ascending.
    """
    rms = np.sqrt(np.mean(np.diff(np.asarray(x, dtype=np.float64), axis=0) ** 2, axis=0))
    return np.flatnonzero(rms > rtol * np.median(rms))


def _currents_and_theory(
    rec: Record,
    cols: np.ndarray,
    s: Settings,
    setting: RunSetting,
    seed: int,
    skipped: dict[str, str],
) -> tuple[dict[str, SubspaceCurrents], dict[str, Theory]]:
    """subspace_currents in the top-k PCA and D's top-k subspaces, and the linear theory in each."""
    k = s.n_components
    x = rec.positions[:, cols]
    kw: dict[str, Any] = dict(n_surrogates=s.n_surrogates, n_bootstrap=s.n_bootstrap, seed=seed)
    currents = {"pca": subspace_currents(x, n_components=k, **kw)}
    nib = noise_in_basis(rec.model, rec.data, k, seed)
    bases = {"noise": nib.top}
    try:
        currents["noise"] = subspace_currents(x, basis=nib.top[:, cols], **kw)
    except ValueError as err:  # e.g. a direction of D along which the record does not move
        skipped["currents.noise"] = str(err)
    pca = currents["pca"].projection
    assert pca is not None
    bases["pca"] = np.zeros((k, rec.positions.shape[1]))
    bases["pca"][:, cols] = pca.basis
    theory = {}
    for name, res in currents.items():
        if not res.stationarity.stationary:
            skipped[f"theory.{name}"] = "the record is not stationary in this subspace"
            continue
        basis = np.where(nib.keep[None, :], bases[name], 0.0)
        h = hessian_in_basis(rec.model, rec.data, basis, setting.weight_decay)
        F, D = drift_and_diffusion(
            h, nib.restricted(basis), lr=rec.lr, momentum=s.momentum,
            batch_size=s.batch_size, n=len(rec.data[1]), steps=rec.steps_per_record,
            replacement=s.sampling == "with",
        )  # fmt: skip
        theory[name] = linear_theory(name, F, D, res)
    return currents, theory


def examine(
    key: str,
    label: str,
    positions: np.ndarray,
    s: Settings,
    *,
    seed: int,
    rec: Record | None = None,
    setting: RunSetting | None = None,
) -> Tested:
    """Stationarity, the top-2 test, the subspace tests and, where stationary, the linear theory.

    Each test diagnoses stationarity in its own subspace and gives no verdict where it fails;
    the diagnosis in the top-k PCA subspace is reported first.

    Args:
        key: The setting's key.
        label: The setting in words.
        positions: (T, d) coordinates to test (for setting c, the scale-invariant ones); those
            that do not move are left out (:func:`moving`).
        s: The experiment's sizes.
        seed: Seed of the surrogates and of D's eigensolver.
        rec: The trained run (None for setting c: no velocities, no network for the theory).
        setting: Its setting (with ``rec``).

    Returns:
        The :class:`Tested`.
    """
    t0 = time.perf_counter()
    spent = rec.seconds if rec is not None else 0.0
    skipped: dict[str, str] = {}
    n, d = positions.shape
    none: dict[str, Any] = dict(equilibrium=None, currents={}, theory={}, skipped=skipped)
    if n < max(200, 20 * s.n_components):
        skipped["all"] = f"{n} records, fewer than 200 or 20 per tested dimension"
        return Tested(key, label, n, d, None, **none, seconds=spent)
    cols = moving(positions)
    x = positions[:, cols]
    st = stationarity(x, n_components=s.n_components)
    if rec is not None and setting is not None:
        eq = equilibrium_test(
            rec.midpoints()[:, cols], velocities=rec.velocities[:, cols],
            n_surrogates=s.n_surrogates, seed=seed,
        )  # fmt: skip
        currents, theory = _currents_and_theory(rec, cols, s, setting, seed, skipped)
    else:
        eq = equilibrium_test(x, n_surrogates=s.n_surrogates, seed=seed)
        currents = {"pca": subspace_currents(
            x, n_components=s.n_components, n_surrogates=s.n_surrogates,
            n_bootstrap=s.n_bootstrap, seed=seed,
        )}  # fmt: skip
        theory = {}
        skipped["theory"] = "no network at the record's end (the Fig. 3 record holds weights only)"
    seconds = time.perf_counter() - t0 + spent
    return Tested(key, label, n, d, st, eq, currents, theory, skipped, seconds)


# ------------------------------------------------------------------------------- the settings
def fig3_record(ctx: RunContext) -> tuple[np.ndarray, str] | str:
    """Setting c: the Fig. 3 record in scale-invariant coordinates, or why it is not available.

    Returns:
        ``(coordinates (T, d'), where)`` or the reason as a string.
    """
    store = Path(ctx.out) / FIG3_STORE
    if not store.is_dir():
        return (
            f"no Fig. 3 record in {store} (run `sgdscope reproduce trajectory` with the same "
            "--out first)"
        )
    traj = load_trajectory(store)
    lay = traj.meta["layout"]
    model = models.build("tiny-fc", len(CLASSES))
    x = np.asarray(traj.weights[0 : len(traj)], dtype=np.float32)
    where = str(store)
    result = store.parent.parent / "result.json"
    if result.is_file():
        note = json.loads(result.read_text()).get("reduced_note")
        where += f" (a reduced run: {note})" if note else " (the authors' protocol)"
    return scale_invariant(x, lay["names"], lay["shapes"], batchnorm_fed(model)), where


def recorded(
    setting: RunSetting, xy: tuple[Tensor, Tensor], s: Settings, ctx: RunContext
) -> Record:
    """The setting's record, read back from ``OUT/nonequilibrium/records/`` or trained and saved.

    It is read back when an earlier call trained it with the same settings and seed. Each record is written atomically as soon as its training ends, so an interrupted run keeps
    every setting it finished and the next call trains only the others.

    Returns:
        The :class:`Record`.
    """
    path = ctx.folder("nonequilibrium") / "records" / f"{setting.key}.pt"
    key = json.dumps({"settings": asdict(s), "setting": asdict(setting), "seed": ctx.seed},
                     sort_keys=True, default=str)  # fmt: skip
    if path.exists():
        saved = torch.load(path, weights_only=False)
        if saved.get("key") == key:
            model = network(setting, ctx.seed)
            model.load_state_dict(saved["state"])
            return Record(saved["positions"], saved["velocities"], setting.recording_lr,
                          saved["steps"], model, xy, saved["seconds"])  # fmt: skip
    rec = train_and_record(setting, xy, s, seed=ctx.seed, progress=ctx.progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"key": key, "positions": rec.positions, "velocities": rec.velocities,
                "steps": rec.steps_per_record, "seconds": rec.seconds,
                "state": rec.model.state_dict()}, tmp)  # fmt: skip
    tmp.replace(path)
    return rec


def measure(ctx: RunContext, s: Settings) -> list[Tested]:
    """Train and test every setting of ``s`` (a, b, d), then setting c when asked for."""
    out: list[Tested] = []
    cache: dict[str, tuple[Tensor, Tensor]] = {}
    runs = s.runs()
    with progress_bar("nonequilibrium: settings", len(runs) + 1, enabled=ctx.progress) as adv:
        for setting in runs:
            if setting.model not in cache:
                cache[setting.model] = training_data(setting.model, s, ctx)
            xy = cache[setting.model]
            rec = recorded(setting, xy, s, ctx)
            out.append(examine(
                setting.key, setting.label, rec.positions, s, seed=ctx.seed, rec=rec,
                setting=setting,
            ))  # fmt: skip
            adv(1)
        if s.fig3_record:
            got = fig3_record(ctx)
            label = "the Fig. 3 run (reproduce trajectory) in scale-invariant coordinates"
            if isinstance(got, str):
                out.append(Tested("c.fig3", label, 0, 0, None, None, {}, {}, {"all": got}, 0.0))
            else:
                out.append(examine("c.fig3", f"{label}, from {got[1]}", got[0], s, seed=ctx.seed))
        adv(1)
    return out
