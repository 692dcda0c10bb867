r"""The long tiny-fc run of Fig. 3, recorded epoch by epoch and resumable (§IV-B).

One call of :func:`record_run` trains tiny-fc (49–16–BN–ReLU–C) with heavy-ball SGD on 7 × 7
MNIST: ``burnin`` epochs, then one record per epoch through
:class:`~sgdscope.trajectory.TrajectoryRecorder` (all weights, the eval-mode full gradient, the
epoch's loss and error, and the train-mode full gradient norm). The mini-batches come from
:func:`sgdscope.paper.training.epoch_batches` (per-epoch reshuffle seeded by ``(seed, epoch)``),
so every epoch does the same thing whether the run was interrupted before it or not.

**Resume.** Every ``checkpoint_every`` epochs the recorder is flushed, *then* ``state.pt``
(model with BN buffers, optimizer, epoch, history) is replaced atomically. The trajectory store is
therefore never behind the state; when it is ahead (a crash between the two writes, or an
exception that closed the recorder mid-interval), the epochs it already holds are replayed
without recording, which on the CPU reproduces the recorded weights bit for bit.

**Two full gradients.** The recorder stores the eval-mode gradient of
:math:`f(x)=\frac1N\sum_k\ell_k(x)` (BatchNorm running statistics): the loss whose D the spectra
experiment measures (eq. 2). The authors' ``full_dw`` (``prob_current.py``,
github.com/pratikac/grad-info, commit 4e1bd82) was the mean of the epoch's mini-batch gradients in
*train* mode (BN batch statistics), i.e. the mean drift that SGD actually follows (the ∇f of eq. 3
and Thm 22); its norm is recorded as the scalar ``grad_norm_train``, computed on the epoch's own
partition without touching the running statistics.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, replace_all_batch_norm_modules_, vmap

from ..._checkpoint import load_checkpoint
from ..._params import model_mode
from ..._progress import progress_bar
from ...paper.training import TrainConfig, changed_settings, epoch_batches, lr_at
from ...trajectory import TrajectoryRecorder, load_trajectory

STATE = "state.pt"  #: the resume point of the run (model, optimizer, epoch, burn-in history).
STORE = "traj"  #: the trajectory store inside the run folder.
PROGRESS = "progress.json"  #: epoch, rate and projected time, rewritten at every checkpoint.


@dataclass(frozen=True)
class RunInfo:
    """What :func:`record_run` did.

    Attributes:
        store: The trajectory directory (open it with :func:`sgdscope.load_trajectory`).
        history: Per-epoch burn-in series: ``epoch`` (1-based), ``loss``, ``error``,
            ``grad_norm_eval``, ``grad_norm_train`` (lists of equal length).
        epochs_done: Epochs finished in total (burn-in included).
        epochs_this_session: Epochs trained by this call (replayed ones included).
        seconds: Training wall time summed over all sessions.
        rate: Epochs per second over all sessions (training, recording and both gradients).
        resumed_from: Epoch of ``state.pt`` when this call started (0 for a fresh run).
        replayed: Epochs replayed without recording because the store was ahead of the state.
    """

    store: Path
    history: dict[str, list[float]]
    epochs_done: int
    epochs_this_session: int
    seconds: float
    rate: float
    resumed_from: int
    replayed: int


def _per_sample_ce(out: Tensor, target: Tensor) -> Tensor:
    return nn.functional.cross_entropy(out, target, reduction="none")


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train_mode_gradient(
    model: nn.Module,
) -> Callable[[Tensor, Tensor, list[Tensor]], Tensor]:
    r"""Return ``g(x, y, batches)``: the authors' full gradient at the model's current weights.

    :math:`\bar g = \frac1B\sum_{b}\nabla f_b(x)`, the mean over the epoch's B mini-batches of the
    mini-batch-mean cross-entropy gradient, with BatchNorm in train mode (batch statistics),
    flattened in ``named_parameters()`` order (as the authors' ``full_dw``). It runs on a copy of
    the model whose BatchNorm keeps no running statistics, so the model's buffers are untouched;
    equal-size batches are vectorised with :func:`torch.func.vmap`.
    """
    ghost = copy.deepcopy(model)
    replace_all_batch_norm_modules_(ghost)
    ghost.train()
    names = [n for n, p in model.named_parameters() if p.requires_grad]

    def loss(params: dict[str, Tensor], xb: Tensor, yb: Tensor) -> Tensor:
        return nn.functional.cross_entropy(functional_call(ghost, params, (xb,)), yb)

    one, many = grad(loss), vmap(grad(loss), in_dims=(None, 0, 0))

    def compute(x: Tensor, y: Tensor, batches: list[Tensor]) -> Tensor:
        params = {n: p.detach() for n, p in model.named_parameters() if n in names}
        if len({len(b) for b in batches}) == 1:
            idx = torch.stack(batches)
            g = many(params, x[idx], y[idx])
            return torch.cat([g[n].mean(0).reshape(-1) for n in names])
        parts = [one(params, x[b], y[b]) for b in batches]
        return torch.cat([torch.stack([p[n] for p in parts]).mean(0).reshape(-1) for n in names])

    return compute


def eval_gradient_norm(model: nn.Module, x: Tensor, y: Tensor) -> float:
    r""":math:`\|\nabla f(x)\|` of the mean cross-entropy in eval mode (BN running statistics)."""
    with model_mode(model, eval_mode=True):  # every module's own flag restored afterwards
        params = [p for p in model.parameters() if p.requires_grad]
        gs = torch.autograd.grad(nn.functional.cross_entropy(model(x), y), params)
    return math.sqrt(float(sum((g.double() ** 2).sum() for g in gs)))  # sqrt: correctly rounded


def _train_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
    batches: list[Tensor],
    lr: float,
) -> tuple[float, float]:
    """One epoch of heavy-ball SGD over ``batches``; the running (train-mode) loss and error."""
    for group in opt.param_groups:
        group["lr"] = lr
    model.train()
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    wrong = torch.zeros((), dtype=torch.int64, device=x.device)
    for idx in batches:
        xb, yb = x[idx], y[idx]
        out = model(xb)
        loss = nn.functional.cross_entropy(out, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.detach().double() * len(yb)
        wrong += (out.detach().argmax(1) != yb).sum()
    return float(total) / len(y), int(wrong) / len(y)


@dataclass
class _Session:
    """The state of one :func:`record_run` call, which its steps share and update."""

    folder: Path
    model: nn.Module
    opt: torch.optim.Optimizer
    x: Tensor
    y: Tensor
    config: TrainConfig
    burnin: int
    checkpoint_every: int
    run_settings: dict[str, Any]
    history: dict[str, list[float]]
    start: int = 0  # epoch of state.pt when the call started
    seconds: float = 0.0  # training time of earlier calls
    timed: int = 0  # epochs trained by earlier calls
    rec: TrajectoryRecorder | None = None
    recorded: int = 0  # records in the store when it was opened
    replayed: int = 0
    epochs_this_session: int = 0
    t_session: float = 0.0

    @property
    def n(self) -> int:
        return len(self.y)


def _new_session(
    folder: Path,
    model: nn.Module,
    data: tuple[Tensor, Tensor],
    config: TrainConfig,
    device: torch.device,
    **fixed: Any,
) -> _Session:
    """Move model and data to ``device`` and resume from ``state.pt`` when the folder has one."""
    folder.mkdir(parents=True, exist_ok=True)
    model.to(device)
    opt = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, nesterov=config.nesterov
    )
    history: dict[str, list[float]] = {
        k: [] for k in ("epoch", "loss", "error", "grad_norm_eval", "grad_norm_train")
    }
    x, y = data[0].to(device), data[1].to(device)
    s = _Session(folder, model, opt, x, y, config, history=history, **fixed)
    state_path = folder / STATE
    if state_path.is_file():
        state = load_checkpoint(
            state_path, remedy=f"delete {os.fspath(folder)!r} to start the run afresh"
        )
        diff = changed_settings(state["settings"], s.run_settings)
        if diff:
            raise ValueError(
                f"{os.fspath(state_path)!r} belongs to a trajectory run with other settings "
                f"({', '.join(diff)} differ); write to another output folder, or delete "
                f"{os.fspath(folder)!r} to start afresh."
            )
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        s.start, s.seconds, s.timed = state["epoch"], state["seconds"], state["epochs_timed"]
        s.history = state["history"]
    return s


def _open_recorder(s: _Session) -> TrajectoryRecorder:
    """The store ``traj/``, resumed; refuse it when it holds fewer epochs than ``state.pt``."""
    config = s.config
    rec = TrajectoryRecorder(
        s.folder / STORE,
        s.model,
        every=1,
        optimizer=s.opt,
        lr=lr_at(config.lr_schedule, s.burnin),
        batch_size=config.batch_size,
        momentum=config.momentum,
        n=s.n,
        seed=config.seed,
        replacement=config.sampling.value == "with",
        gradient_data=(s.x, s.y),
        loss_fn=_per_sample_ce,
        gradient_every=1,
        chunk_size=min(s.checkpoint_every, 2048),
        queue_size=1,
        resume=True,
        meta={
            "experiment": "reproduce trajectory (Fig. 3)",
            "record_unit": "epoch",
            "burnin": s.burnin,
            "epoch_of_step": "record with step s holds the weights after epoch burnin + s",
            "scalars": "loss, error: running train-mode averages over the epoch; "
            "grad_norm_train: norm of the mean mini-batch gradient (BN batch statistics)",
        },
    )
    s.recorded = rec.step_count
    if s.burnin + s.recorded < s.start:
        rec.close()
        raise RuntimeError(
            f"the trajectory store {os.fspath(s.folder / STORE)!r} holds {s.recorded} epochs "
            f"but {STATE} is at epoch {s.start}; the store was altered. Delete "
            f"{os.fspath(s.folder)!r} to start afresh."
        )
    return rec


def _checkpoint(s: _Session, epoch: int) -> None:
    """Flush the store, then replace ``state.pt`` and ``progress.json`` atomically."""
    if s.rec is not None:
        s.rec.flush()  # the store first: it may be ahead of the state, never behind
    elapsed = s.seconds + time.perf_counter() - s.t_session
    done = s.timed + s.epochs_this_session
    _atomic_save(
        {
            "model": s.model.state_dict(),
            "optimizer": s.opt.state_dict(),
            "epoch": epoch,
            "settings": s.run_settings,
            "history": s.history,
            "seconds": elapsed,
            "epochs_timed": done,
        },
        s.folder / STATE,
    )
    rate = done / elapsed if elapsed > 0 else float("nan")
    epochs = s.config.epochs
    info = {
        "epoch": epoch,
        "epochs": epochs,
        "epochs_per_second": rate,
        "eta_seconds": (epochs - epoch) / rate if rate > 0 else None,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    tmp = s.folder / ("." + PROGRESS + ".tmp")
    tmp.write_text(json.dumps(info, indent=2))
    os.replace(tmp, s.folder / PROGRESS)


def _epoch(s: _Session, epoch: int, g_train: Callable[..., Tensor]) -> None:
    """Train one epoch; then note it (burn-in), replay it (already stored) or record it."""
    if epoch >= s.burnin and s.rec is None:
        s.rec = _open_recorder(s)
    batches = [b.to(s.x.device) for b in epoch_batches(s.n, s.config, epoch)]
    lr = lr_at(s.config.lr_schedule, epoch)
    loss, err = _train_epoch(s.model, s.opt, s.x, s.y, batches, lr)
    if epoch < s.burnin:
        for key, value in (
            ("epoch", epoch + 1),
            ("loss", loss),
            ("error", err),
            ("grad_norm_eval", eval_gradient_norm(s.model, s.x, s.y)),
            ("grad_norm_train", float(g_train(s.x, s.y, batches).double().norm())),
        ):
            s.history[key].append(value)
    elif epoch - s.burnin < s.recorded:  # already in the store: replay only
        s.replayed += 1
        if epoch - s.burnin == s.recorded - 1:
            _check_replay(s.model, s.folder / STORE, s.rec)
    else:
        assert s.rec is not None  # opened above, at the first epoch after the burn-in
        g = float(g_train(s.x, s.y, batches).double().norm())
        s.rec.step(loss=loss, error=err, grad_norm_train=g)
    s.epochs_this_session += 1


def record_run(
    folder: str | os.PathLike[str],
    model: nn.Module,
    data: tuple[Tensor, Tensor],
    config: TrainConfig,
    *,
    burnin: int,
    checkpoint_every: int,
    run_settings: dict[str, Any],
    device: str | torch.device = "cpu",
    progress: bool = True,
    on_epoch: Callable[[int], None] | None = None,
) -> RunInfo:
    """Train ``model`` for ``config.epochs`` epochs and record every epoch after ``burnin``.

    Args:
        folder: Run folder: ``state.pt``, ``progress.json`` and the store ``traj/`` (created).
        model: tiny-fc, freshly built; its weights are replaced by ``state.pt`` on resume.
        data: ``(inputs (N, 49), int64 targets (N,))``.
        config: Sampling, batch size, momentum, seed and the lr schedule
            ``((burnin, lr), (epochs, recording_lr))``.
        burnin: Epochs before the first record (the paper's 10³).
        checkpoint_every: Epochs between resume points.
        run_settings: JSON-ready settings that must match to resume.
        device: ``"cpu"`` or ``"cuda"``.
        progress: Draw a progress bar over epochs.
        on_epoch: Called with the 1-based epoch after each epoch (e.g. to stop a test run).

    Returns:
        A :class:`RunInfo`.

    Raises:
        ValueError: If ``state.pt`` was written with other settings (the message names them).
        RuntimeError: If the store holds fewer epochs than ``state.pt`` (it was altered).
    """
    folder = Path(folder)
    s = _new_session(
        folder, model, data, config, torch.device(device),
        burnin=burnin, checkpoint_every=checkpoint_every, run_settings=run_settings,
    )  # fmt: skip
    g_train = train_mode_gradient(model)
    s.t_session = time.perf_counter()
    epochs = config.epochs
    try:
        with progress_bar(f"tiny-fc trajectory ({s.n:,} samples)", epochs, enabled=progress) as adv:
            adv(s.start)
            for epoch in range(s.start, epochs):
                _epoch(s, epoch, g_train)
                done = epoch + 1
                if done % checkpoint_every == 0 or done in (burnin, epochs):
                    _checkpoint(s, done)
                adv(1)
                if on_epoch is not None:
                    on_epoch(done)
    finally:
        if s.rec is not None:
            s.rec.close()
    state = load_checkpoint(folder / STATE)
    return RunInfo(
        store=folder / STORE,
        history=s.history,
        epochs_done=state["epoch"],
        epochs_this_session=s.epochs_this_session,
        seconds=state["seconds"],
        rate=state["epochs_timed"] / state["seconds"] if state["seconds"] > 0 else float("nan"),
        resumed_from=s.start,
        replayed=s.replayed,
    )


def _check_replay(model: nn.Module, store: Path, rec: TrajectoryRecorder | None) -> None:
    """Warn when replayed weights differ from the last record (non-deterministic kernels)."""
    if rec is None:
        return
    traj = load_trajectory(store)
    last = np.asarray(traj.weights[len(traj) - 1], dtype=np.float64)
    now = torch.cat([p.detach().reshape(-1) for p in model.parameters() if p.requires_grad])
    diff = float(np.abs(now.double().cpu().numpy() - last).max())
    if diff > 1e-5 * max(1.0, float(np.abs(last).max())):
        warnings.warn(
            f"replaying the epochs already in {os.fspath(store)!r} gave weights that differ from "
            f"the recorded ones by up to {diff:.3g} (non-deterministic kernels, e.g. on CUDA); "
            "the trajectory continues from the replayed weights.",
            RuntimeWarning,
            stacklevel=3,
        )
