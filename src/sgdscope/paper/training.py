"""Train the paper's networks as the authors did: momentum SGD, batch 128, lr 0.1, step schedule.

§IV and the authors' ``train.py`` (github.com/pratikac/grad-info, commit 4e1bd82): cross-entropy,
``SGD(momentum=0.9)`` (heavy ball: the code has no ``nesterov=True`` although the paper says
Nesterov), batch 128, base lr 0.1 "with appropriate annealing" (the schedule itself is not
recoverable), weight decay only where the model sets it (1e-4 for small-allcnn). Checkpoints are
kept at 20 %, 40 % and 100 % of training, the points at which the paper measured D(x) (Figs 1–2,
Remark 13).

**Resumable and reproducible.** Every epoch draws its sample order from a generator seeded by
``(seed, epoch)`` and reseeds torch's global RNG (dropout) the same way, so an epoch does the same
thing whether the run was interrupted before it or not. After each epoch ``last.pt`` (model,
optimiser, history) is replaced atomically; :func:`train` started again on the same folder
continues after the last finished epoch, and on the CPU the final weights equal those of an
uninterrupted run bit for bit. An interruption loses at most the epoch in progress.

**Sampling** (Remark 12): ``"without"`` replacement shuffles once per epoch and walks through the
data in batches (what the authors' ``train_full`` loader and every PyTorch ``DataLoader`` with
``shuffle=True`` do); ``"with"`` draws every batch of b indices independently and uniformly from
all N samples, the with-replacement model under which the mini-batch noise covariance is D/b
(eq. 2, App. A).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .._checkpoint import atomic_save, check_writable, load_checkpoint
from .._progress import progress_bar
from .._validation import check_int, check_option, check_real

__all__ = [
    "EpochRecord",
    "Sampling",
    "TrainConfig",
    "TrainResult",
    "changed_settings",
    "default_schedule",
    "epoch_batches",
    "evaluate",
    "load_weights",
    "lr_at",
    "train",
]

_WHERE = "sgdscope.paper.training.train"
LAST = "last.pt"  #: the resume point, replaced after every epoch.


class Sampling(str, Enum):
    """How mini-batches are drawn (Remark 12)."""

    WITHOUT = "without"  # reshuffle once per epoch, then consecutive batches
    WITH = "with"  # every batch drawn i.i.d. uniformly from all N samples


def default_schedule(epochs: int, lr: float) -> tuple[tuple[int, float], ...]:
    """Step schedule used when none is given: lr until 50 %, lr/10 until 75 %, then lr/100.

    Written in the authors' ``--lrs`` format ``((epoch_end, lr), ...)``: the first entry with
    ``epoch < epoch_end`` applies (the authors' ``exptutils.schedule``). The paper's own schedule
    is unknown (it is not in the paper, and run names omit it); this is the common "divide by 10
    twice" choice.

    Returns:
        ``((epoch_end, lr), ...)`` ending at ``epochs``.
    """
    return ((max(1, epochs // 2), lr), (max(1, (3 * epochs) // 4), lr / 10), (epochs, lr / 100))


def lr_at(schedule: tuple[tuple[int, float], ...], epoch: int) -> float:
    """Learning rate of 0-based ``epoch``: first entry with ``epoch < epoch_end``, else the last."""
    for end, lr in schedule:
        if epoch < end:
            return lr
    return schedule[-1][1]


@dataclass(frozen=True)
class TrainConfig:
    """How to train (defaults: §IV and the authors' ``train.py``).

    Attributes:
        epochs: Number of passes over the training set (the authors' B; 50 for small-allcnn).
        batch_size: Mini-batch size b (128).
        lr: Base learning rate η (0.1).
        momentum: Heavy-ball momentum (0.9; 0 gives plain SGD, the theory's setting).
        nesterov: Nesterov momentum (the paper's text; the authors' code did not use it).
        weight_decay: L2 coefficient given to the optimiser; the paper's per network is
            ``sgdscope.paper.models.info(name).weight_decay`` (1e-4 for small-allcnn, else 0).
        schedule: ``((epoch_end, lr), ...)``; None uses :func:`default_schedule`.
        checkpoint_at: Fractions of training after which weights are kept (20/40/100 %).
        sampling: ``"without"`` (per-epoch reshuffle) or ``"with"`` replacement (Remark 12).
        seed: Seeds the sample order and dropout of every epoch.
    """

    epochs: int = 50
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: tuple[tuple[int, float], ...] | None = None
    checkpoint_at: tuple[float, ...] = (0.2, 0.4, 1.0)
    sampling: Sampling = Sampling.WITHOUT
    seed: int = 0

    def __post_init__(self) -> None:
        w = "TrainConfig"
        check_int("epochs", self.epochs, where=w, low=1)
        check_int("batch_size", self.batch_size, where=w, low=1)
        check_real("lr", self.lr, where=w, low=0, low_open=True)
        check_real("momentum", self.momentum, where=w, low=0, high=1, high_open=True)
        check_real("weight_decay", self.weight_decay, where=w, low=0)
        check_int("seed", self.seed, where=w, low=0)
        object.__setattr__(
            self, "sampling", Sampling(check_option("sampling", self.sampling, Sampling, where=w))
        )
        if not self.checkpoint_at or any(not 0 < f <= 1 for f in self.checkpoint_at):
            raise ValueError(
                f"the 'checkpoint_at' parameter of {w} must hold fractions in (0, 1], "
                f"got {self.checkpoint_at!r}; the paper's are (0.2, 0.4, 1.0)."
            )
        if self.schedule is not None:
            sched = tuple((int(e), float(lr)) for e, lr in self.schedule)
            if not sched or any(lr <= 0 for _, lr in sched):
                raise ValueError(
                    f"the 'schedule' parameter of {w} must be ((epoch_end, lr), ...) with "
                    f"positive lr, got {self.schedule!r}; e.g. ((25, 0.1), (40, 0.01), (50, 0.001))."
                )
            object.__setattr__(self, "schedule", sched)

    @property
    def lr_schedule(self) -> tuple[tuple[int, float], ...]:
        """The schedule in force: :attr:`schedule` or :func:`default_schedule`."""
        return self.schedule or default_schedule(self.epochs, self.lr)

    @property
    def checkpoint_epochs(self) -> tuple[int, ...]:
        """Epochs (1-based, after which) weights are kept: ``round(f · epochs)``, at least 1."""
        return tuple(sorted({max(1, round(f * self.epochs)) for f in self.checkpoint_at}))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the resume check compares it)."""
        d = asdict(self)
        d["sampling"] = self.sampling.value
        d["schedule"] = [list(s) for s in self.lr_schedule]
        d["checkpoint_at"] = list(self.checkpoint_at)
        return d


@dataclass(frozen=True)
class EpochRecord:
    """What one epoch did: its lr, train loss/error (running, train mode), test loss/error."""

    epoch: int  # 1-based: the number of epochs finished
    lr: float
    train_loss: float
    train_error: float
    test_loss: float | None
    test_error: float | None
    seconds: float


@dataclass(frozen=True)
class TrainResult:
    """A finished (or resumed-and-finished) training run.

    Attributes:
        directory: Folder holding ``last.pt`` and the checkpoints.
        checkpoints: ``{epoch: path}`` of the kept weights (20/40/100 % of training).
        history: One :class:`EpochRecord` per epoch.
        resumed_from: Epochs already done when this call started (0 for a fresh run).
        seconds: Training time of all epochs, summed over interrupted sessions.
    """

    directory: Path
    checkpoints: dict[int, Path]
    history: list[EpochRecord] = field(default_factory=list)
    resumed_from: int = 0

    @property
    def seconds(self) -> float:
        """Training time of all epochs, summed over sessions."""
        return sum(r.seconds for r in self.history)

    @property
    def final(self) -> EpochRecord:
        """The last epoch's record."""
        return self.history[-1]


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919 + 12_345) % (2**63 - 1)


def changed_settings(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Names of the settings whose saved value differs from the current one (resume checks)."""
    return sorted(k for k in current if saved.get(k) != current[k])


def _atomic_save(obj: Any, path: Path) -> None:
    atomic_save(obj, path)


def load_weights(model: nn.Module, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint written by :func:`train` into ``model``; return its metadata.

    Returns:
        The checkpoint's other entries (epoch, settings, history).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file does not hold this network's weights, or is damaged
            (:class:`sgdscope._checkpoint.CheckpointError`: a zip member fails its CRC,
            truncated, not a checkpoint).
    """  # noqa: DOC501 (the TypeError raised inside is caught: it becomes the ValueError)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {os.fspath(path)!r} does not exist.")
    state = load_checkpoint(path, remedy="train it again")
    try:
        if not isinstance(state, dict):
            raise TypeError(f"it holds a {type(state).__name__}, not a dict")
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError, TypeError) as err:
        raise ValueError(
            f"checkpoint {os.fspath(path)!r} does not hold weights of this network ({err}); "
            "build the same model (name and num_classes) it was trained as."
        ) from err
    return {k: v for k, v in state.items() if k not in ("model", "optimizer")}


def _resume(
    last: Path, settings: dict[str, Any], model: nn.Module, opt: torch.optim.Optimizer
) -> list[EpochRecord]:
    """Load ``last.pt`` into ``model`` and ``opt``; return its history. Every error names it."""
    fix = "delete it to start afresh, or pass resume=False"
    state = load_checkpoint(last, remedy=fix)
    keys = ("model", "optimizer", "history", "settings")
    if not isinstance(state, dict) or any(k not in state for k in keys):
        found = sorted(state)[:8] if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"{os.fspath(last)!r} is not a resume point written by train() (expected a dict "
            f"with {list(keys)}, found {found}); {fix}."
        )
    diff = changed_settings(state["settings"], settings)
    if diff:
        raise ValueError(
            f"{os.fspath(last)!r} was written by a run with other settings ({', '.join(diff)} "
            f"differ); use another directory, or pass resume=False to start afresh there."
        )
    try:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        return [EpochRecord(**r) for r in state["history"]]
    except (RuntimeError, TypeError, ValueError, KeyError) as err:
        raise ValueError(
            f"{os.fspath(last)!r} does not fit this network or optimizer "
            f"({type(err).__name__}: {str(err)[:300]}); {fix}."
        ) from err


@torch.no_grad()
def evaluate(
    model: nn.Module, data: tuple[Tensor, Tensor], batch_size: int = 1024
) -> tuple[float, float]:
    """Return ``(mean cross-entropy, error rate)`` of ``model`` in eval mode on ``data``."""
    was_training = model.training
    model.eval()
    x, y = data
    device = next(model.parameters()).device
    loss, wrong = 0.0, 0
    for i in range(0, len(y), batch_size):
        xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
        out = model(xb)
        loss += float(nn.functional.cross_entropy(out, yb, reduction="sum"))
        wrong += int((out.argmax(1) != yb).sum())
    model.train(was_training)
    return loss / len(y), wrong / len(y)


def epoch_batches(n: int, config: TrainConfig, epoch: int) -> list[Tensor]:
    """Index tensors of the mini-batches of 0-based ``epoch``, drawn from ``(seed, epoch)`` alone.

    ``ceil(n / b)`` batches: a fresh permutation split into batches of b (the last one smaller)
    for ``"without"`` replacement, or independent uniform draws of b indices for ``"with"``.

    Returns:
        ``ceil(n / b)`` int64 index tensors.
    """
    g = torch.Generator().manual_seed(_epoch_seed(config.seed, epoch))
    b = min(config.batch_size, n)
    steps = math.ceil(n / b)
    if config.sampling is Sampling.WITH:
        return list(torch.randint(n, (steps, b), generator=g))
    return list(torch.randperm(n, generator=g).split(b))


def _check_data(name: str, data: Any) -> tuple[Tensor, Tensor]:
    ok = isinstance(data, tuple | list) and len(data) == 2
    ok = ok and all(isinstance(t, Tensor) for t in data)
    if not ok or len(data[0]) != len(data[1]) or len(data[1]) == 0:
        raise ValueError(
            f"the '{name}' parameter of {_WHERE} must be a pair (inputs, int64 targets) of "
            f"tensors with the same, non-zero first dimension, got {type(data).__name__}."
        )
    return data[0], data[1]


def train(
    model: nn.Module,
    train_data: tuple[Tensor, Tensor],
    config: TrainConfig,
    directory: str | os.PathLike[str],
    *,
    test_data: tuple[Tensor, Tensor] | None = None,
    device: str | torch.device = "cpu",
    augment: Callable[[Tensor, torch.Generator], Tensor] | None = None,
    on_epoch: Callable[[int, nn.Module, torch.optim.Optimizer], None] | None = None,
    progress: bool = True,
    resume: bool = True,
    data_tag: str | None = None,
) -> TrainResult:
    """Train ``model`` with momentum SGD and keep checkpoints at 20/40/100 % (Remark 13).

    Args:
        model: The network (e.g. ``sgdscope.paper.models.build("small-lenet", seed=0)``); it is
            trained in place and moved to ``device``.
        train_data: ``(inputs, targets)`` of the training set.
        config: Optimiser, schedule, checkpoints, sampling, seed (:class:`TrainConfig`).
        directory: Folder for ``last.pt`` (resume point) and ``epoch_XXXX.pt`` checkpoints.
        test_data: Optional ``(inputs, targets)`` evaluated (eval mode) after every epoch.
        device: ``"cpu"`` or ``"cuda"``.
        augment: Optional ``f(batch, generator) -> batch`` applied to each training batch.
        on_epoch: Optional ``f(epoch, model, optimizer)`` called after each epoch (1-based).
        progress: Draw a rich progress bar over epochs.
        resume: Continue from ``directory/last.pt`` when it exists (its configuration must match).
        data_tag: A description of the data (source, preprocessing); stored with the run and
            compared on resume, so that a folder trained on other inputs is not continued.

    Returns:
        A :class:`TrainResult` with the checkpoint paths and the per-epoch history.

    Raises:
        ValueError: If the data are malformed, or ``last.pt`` was written with another
            configuration (the message names the differing settings and how to start fresh).
    """
    x, y = _check_data("train_data", train_data)
    if test_data is not None:
        _check_data("test_data", test_data)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    model.to(device)
    x, y = x.to(device), y.to(device)
    opt = torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov,
        weight_decay=config.weight_decay,
    )
    settings = {**config.to_dict(), "n_train": len(y)}
    if data_tag is not None:
        settings["data"] = data_tag
    history: list[EpochRecord] = []
    last = directory / LAST
    if resume and last.exists():
        history = _resume(last, settings, model, opt)
    check_writable(last)  # before an epoch is spent, not after
    for epoch in config.checkpoint_epochs:
        if epoch > len(history):
            check_writable(directory / f"epoch_{epoch:04d}.pt")
    start = len(history)
    keep = set(config.checkpoint_epochs)
    checkpoints = {
        e: directory / f"epoch_{e:04d}.pt" for e in config.checkpoint_epochs if e <= start
    }
    with progress_bar(f"training ({len(y):,} samples)", config.epochs, enabled=progress) as adv:
        adv(start)
        for epoch in range(start, config.epochs):
            t0 = time.perf_counter()
            lr = lr_at(config.lr_schedule, epoch)
            for group in opt.param_groups:
                group["lr"] = lr
            torch.manual_seed(_epoch_seed(config.seed, epoch) + 1)
            gen = torch.Generator(device=device).manual_seed(_epoch_seed(config.seed, epoch) + 2)
            model.train()
            total, wrong, seen = 0.0, 0, 0
            for idx in epoch_batches(len(y), config, epoch):
                idx = idx.to(device)
                xb, yb = x[idx], y[idx]
                if augment is not None:
                    xb = augment(xb, gen)
                out = model(xb)
                loss = nn.functional.cross_entropy(out, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(yb)
                wrong += int((out.argmax(1) != yb).sum())
                seen += len(yb)
            test_loss, test_error = (
                evaluate(model, test_data) if test_data is not None else (None, None)
            )
            record = EpochRecord(
                epoch + 1, lr, total / seen, wrong / seen, test_loss, test_error,
                time.perf_counter() - t0,
            )  # fmt: skip
            history.append(record)
            meta = {"epoch": epoch + 1, "settings": settings}
            if epoch + 1 in keep:
                path = directory / f"epoch_{epoch + 1:04d}.pt"
                _atomic_save({"model": model.state_dict(), **meta}, path)
                checkpoints[epoch + 1] = path
            _atomic_save(
                {
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "history": [asdict(r) for r in history],
                    **meta,
                },
                last,
            )
            if on_epoch is not None:
                on_epoch(epoch + 1, model, opt)
            adv(1)
    return TrainResult(directory, checkpoints, history, start)
