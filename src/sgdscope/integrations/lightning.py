"""sgdscope in PyTorch Lightning: :class:`SgdscopeCallback`, a thin layer over :class:`~sgdscope.Monitor`.

Install with ``pip install "sgdscope[lightning]"`` (pin torch in the same call when the
environment has none: ``pip install torch==2.13.0 "sgdscope[lightning]"``).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

try:
    from lightning.pytorch import LightningModule, Trainer
    from lightning.pytorch.callbacks import Callback
except ImportError as err:
    raise ImportError(
        "sgdscope.integrations.lightning needs PyTorch Lightning (the 'lightning' package): "
        "pip install 'sgdscope[lightning]'."
    ) from err

from .._params import LossFn
from ..monitor import Monitor
from ._common import (
    batch_rows,
    check_monitor_options,
    measurement_scalars,
    open_monitor,
    step_scalars,
)

__all__ = ["SgdscopeCallback"]

_WHERE = "sgdscope.integrations.lightning.SgdscopeCallback"


class SgdscopeCallback(Callback):
    """Record the trajectory, the temperature and the gradient noise D of a Lightning run.

    A thin layer over :class:`~sgdscope.Monitor` (see it for what is recorded, the memory rule
    and the measurements): after every optimizer step (``trainer.global_step`` advanced, so
    gradient accumulation is counted once) it calls ``Monitor.step`` with ``trainer.optimizers[0]``,
    the learning rate the step used (noted in ``on_before_optimizer_step``: Lightning steps a
    per-step scheduler before ``on_train_batch_end``), the training step's loss and the effective
    batch size (the batch's rows × accumulate_grad_batches × world size). Steps are the
    trainer's ``global_step``.

    Loggers: the temperature and gradient norm go through ``pl_module.log`` (``sgdscope/...``,
    at the trainer's ``log_every_n_steps``), and each measurement of D (tr D, B_simple, ‖g‖ and the
    top eigenvalues) to every logger in ``trainer.loggers`` at its step.

    Checkpoints and resuming: the record is flushed whenever Lightning saves a checkpoint
    (before the file is written). ``trainer.fit(model, ckpt_path=...)`` restarts at the
    checkpoint's ``global_step``, and the record continues from it: what the interrupted run
    recorded after the checkpoint is dropped, so the record has each step once and no gap. A run
    that starts at step 0 on a path that holds a record is refused unless ``overwrite=True``.

    Distributed training: a monitor runs on every rank; each measures D on its share of the
    probe set and the sums are taken across ranks (a measurement equals one process on the whole
    probe set), and global rank 0 alone writes the record and logs.

    Args:
        path: Directory of the record.
        probe_data: The fixed probe set D is measured on (as :class:`~sgdscope.Monitor` takes).
        loss_fn: Per-sample loss ``loss_fn(pl_module(inputs), targets) -> (b,)``.
        overwrite: Replace a record at ``path`` when training starts at step 0.
        log: Send the scalars to the trainer's loggers.
        prefix: Prefix of the logged names.
        **monitor_options: Passed to :class:`~sgdscope.Monitor`, which documents them:
            ``record_every`` (in optimizer steps, ``trainer.global_step``), ``measure_every``,
            ``overhead``, ``k``, ``params``, ``n``, ``replacement``, ``max_raw_dim``,
            ``projection_dim``, ``eigenvectors``, ``seed``, ``memory_budget``, ``chunk_size``,
            ``progress`` and ``meta``.

    Example:
        >>> import lightning.pytorch as pl  # doctest: +SKIP
        >>> from sgdscope.integrations.lightning import SgdscopeCallback  # doctest: +SKIP
        >>> cb = SgdscopeCallback("runs/sgd", probe_data=(x[:512], y[:512]),
        ...                       loss_fn=torch.nn.CrossEntropyLoss(reduction="none"))  # doctest: +SKIP
        >>> pl.Trainer(max_steps=10_000, callbacks=[cb]).fit(model, loader)  # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | os.PathLike,
        probe_data: Any,
        loss_fn: LossFn,
        *,
        overwrite: bool = False,
        log: bool = True,
        prefix: str = "sgdscope/",
        **monitor_options: Any,
    ) -> None:
        self.path = path
        self.probe_data = probe_data
        self.loss_fn = loss_fn
        self.overwrite = bool(overwrite)
        self.log = bool(log)
        self.prefix = str(prefix)
        self.settings = check_monitor_options(monitor_options, where=_WHERE)
        self.monitor: Monitor | None = None
        self._lr: float | None = None

    # ------------------------------------------------------------------------------- lifecycle
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Open the record at the trainer's step (0, or the restored checkpoint's), on every rank."""
        self.monitor = open_monitor(
            pl_module, self.loss_fn, self.probe_data, self.path, step=trainer.global_step,
            overwrite=self.overwrite, where=_WHERE, settings=self.settings,
        )  # fmt: skip

    def on_train_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Count the optimizer step that just happened (none while gradients accumulate)."""
        monitor = self.monitor
        if monitor is None or trainer.global_step == monitor.step_count:
            return
        if trainer.global_step != monitor.step_count + 1:
            raise RuntimeError(
                f"{_WHERE} saw the trainer's global_step go from {monitor.step_count} to "
                f"{trainer.global_step} in one batch; it counts one optimizer step per batch "
                "(automatic optimization, or manual optimization with one optimizer)."
            )
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        rows = batch_rows(batch)
        b = None if rows is None else rows * trainer.accumulate_grad_batches * trainer.world_size
        monitor.step(trainer.optimizers[0], loss=loss, batch_size=b, lr=self._lr)
        if not (self.log and trainer.is_global_zero):
            return
        for name, value in step_scalars(monitor, self.prefix).items():
            pl_module.log(name, value, on_step=True, on_epoch=False, rank_zero_only=True)
        m = monitor.last_measurement
        if m is not None and m.step == trainer.global_step:
            for logger in trainer.loggers:
                logger.log_metrics(measurement_scalars(m, self.prefix), step=trainer.global_step)

    def on_before_optimizer_step(
        self, trainer: Trainer, pl_module: LightningModule, optimizer: Any
    ) -> None:
        """Note the learning rate the step uses (the scheduler moves before the batch's end)."""
        self._lr = float(optimizer.param_groups[0]["lr"])

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Flush the record before the checkpoint is written, so a resume finds no gap."""
        if self.monitor is not None:
            self.monitor.flush()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Close the record (marked complete)."""
        self._close()

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        """Keep what was recorded; the training error is the one that propagates."""
        with contextlib.suppress(Exception):
            self._close()

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Close the record if training ended without ``on_train_end``."""
        self._close()

    def _close(self) -> None:
        monitor, self.monitor = self.monitor, None
        if monitor is not None:
            monitor.close()
