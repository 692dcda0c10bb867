"""sgdscope in the Hugging Face Trainer: :class:`SgdscopeCallback`, a thin layer over the monitor.

Install with ``pip install "sgdscope[transformers]"`` (transformers and accelerate, which its
``Trainer`` needs; pin torch in the same call when the environment has none).
"""

from __future__ import annotations

import os
from typing import Any

import torch

try:
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
except ImportError as err:
    raise ImportError(
        "sgdscope.integrations.transformers needs Hugging Face transformers: "
        "pip install 'sgdscope[transformers]'."
    ) from err

from .._params import LossFn
from ..monitor import Monitor
from ._common import check_monitor_options, measurement_scalars, open_monitor, step_scalars

__all__ = ["SgdscopeCallback"]

_WHERE = "sgdscope.integrations.transformers.SgdscopeCallback"


class SgdscopeCallback(TrainerCallback):
    """Record the trajectory, the temperature and the gradient noise D of a Hugging Face run.

    A thin layer over :class:`~sgdscope.Monitor` (see it for what is recorded, the memory rule
    and the measurements). It calls ``Monitor.step`` in ``on_optimizer_step``: after the
    optimizer's step and before the scheduler's, while the gradients are still there (their
    norm is taken after the Trainer's clipping), so the learning rate and temperature are the
    ones the step used. Steps are the Trainer's ``global_step``; the batch size is the
    effective one (per device × gradient accumulation × world size). The Trainer hands callbacks
    no loss: with ``trainer=`` the callback wraps that Trainer's ``training_step`` and records
    the step's loss as the Trainer counts it (the sum of ``training_step``'s values over the
    step's micro-batches, in this process: what the Trainer's logged ``loss`` averages over its
    logging steps); without it the record's ``loss`` column is empty.

    Loggers: pass ``trainer=`` (the Trainer the callback is added to) and the temperature and
    gradient norm go through ``trainer.log`` at the Trainer's logging steps, and every
    measurement of D (tr D, B_simple, ‖g‖, the top eigenvalues) at its step, to every
    ``report_to`` integration (TensorBoard, W&B, MLflow, ...) and ``state.log_history``.
    Callbacks receive no Trainer, and the integrations run before user callbacks in ``on_log``,
    so without it nothing reaches them.

    Checkpoints and resuming: the record is flushed in ``on_step_end`` whenever the Trainer is
    about to save (``control.should_save``), before the checkpoint is written.
    ``trainer.train(resume_from_checkpoint=...)`` restarts at the checkpoint's step and the
    record continues from it, dropping what the interrupted run recorded after it: each step
    once, no gap. A run that starts at step 0 on a path that holds a record is refused unless
    ``overwrite=True``.

    Distributed training: a monitor runs in every process; each measures D on its share of the
    probe set and the sums are taken across processes (a measurement equals one process on the
    whole probe set), and the world's process zero alone writes the record and logs.

    Args:
        path: Directory of the record.
        probe_data: The fixed probe set, e.g. a dict batch ``{"input_ids": ..., "labels": ...}``
            (the labels are the targets given to ``loss_fn``, the rest goes to the model).
        loss_fn: Per-sample loss ``loss_fn(model(**inputs), labels) -> (b,)``, e.g.
            :func:`sgdscope.noise.losses.sequence_cross_entropy` for a causal language model.
        trainer: The Trainer, for its loggers (optional).
        overwrite: Replace a record at ``path`` when training starts at step 0.
        prefix: Prefix of the logged names.
        **monitor_options: Passed to :class:`~sgdscope.Monitor`, which documents them:
            ``record_every`` (in optimizer steps, ``state.global_step``), ``measure_every``,
            ``overhead``, ``k``, ``params``, ``n``, ``replacement``, ``max_raw_dim``,
            ``projection_dim``, ``eigenvectors``, ``seed``, ``memory_budget``, ``chunk_size``,
            ``progress`` and ``meta``.

    Example:
        >>> from sgdscope.integrations.transformers import SgdscopeCallback  # doctest: +SKIP
        >>> trainer = Trainer(model=model, args=args, train_dataset=train)  # doctest: +SKIP
        >>> trainer.add_callback(SgdscopeCallback("runs/lm", probe, sequence_cross_entropy,
        ...                                       trainer=trainer))  # doctest: +SKIP
        >>> trainer.train()  # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | os.PathLike,
        probe_data: Any,
        loss_fn: LossFn,
        *,
        trainer: Any = None,
        overwrite: bool = False,
        prefix: str = "sgdscope/",
        **monitor_options: Any,
    ) -> None:
        self.path = path
        self.probe_data = probe_data
        self.loss_fn = loss_fn
        self.trainer = trainer
        self.overwrite = bool(overwrite)
        self.prefix = str(prefix)
        self.settings = check_monitor_options(monitor_options, where=_WHERE)
        self.monitor: Monitor | None = None
        self._losses: list[torch.Tensor] = []  # training_step's values since the last step
        if trainer is not None:
            self._count_losses(trainer)

    def _count_losses(self, trainer: Any) -> None:
        """Wrap ``trainer.training_step`` so that each micro-batch's loss is noted."""
        training_step = trainer.training_step
        losses = self._losses

        def counted(*args: Any, **kwargs: Any) -> Any:
            loss = training_step(*args, **kwargs)
            if isinstance(loss, torch.Tensor):
                losses.append(loss.detach())
            return loss

        trainer.training_step = counted

    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: Any = None,
        **kwargs: Any,
    ) -> None:
        """Open the record at the Trainer's step (0, or the restored checkpoint's), on every rank."""
        if model is None:
            raise ValueError(f"{_WHERE} was given no model in on_train_begin.")
        self.monitor = open_monitor(
            model, self.loss_fn, self.probe_data, self.path, step=state.global_step,
            overwrite=self.overwrite, where=_WHERE, settings=self.settings,
        )  # fmt: skip
        self._losses.clear()  # an interrupted train() may have left a step's micro-batches

    def on_optimizer_step(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        optimizer: Any = None,
        **kwargs: Any,
    ) -> None:
        """Count the step the optimizer just made (``state.global_step`` + 1)."""
        monitor = self.monitor
        if monitor is None:
            return
        if monitor.step_count != state.global_step:
            raise RuntimeError(
                f"{_WHERE} is at step {monitor.step_count} but the Trainer at step "
                f"{state.global_step}; it counts one optimizer step per on_optimizer_step."
            )
        per_device = state.train_batch_size or args.per_device_train_batch_size
        b = per_device * args.gradient_accumulation_steps * max(args.world_size, 1)
        loss = torch.stack(self._losses).sum() if self._losses else None
        self._losses.clear()
        monitor.step(optimizer, batch_size=b, loss=loss)

    def on_step_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        """Log (through ``trainer.log``) and flush before a checkpoint is written."""
        monitor = self.monitor
        if monitor is None:
            return
        if self.trainer is not None and state.is_world_process_zero:
            logs = step_scalars(monitor, self.prefix) if control.should_log else {}
            m = monitor.last_measurement
            if m is not None and m.step == state.global_step:
                logs.update(measurement_scalars(m, self.prefix))
            if logs:
                # trainer.log runs the on_log events, which clear control.should_log: without
                # restoring it the Trainer would skip its own log of this step (its loss)
                should_log = control.should_log
                self.trainer.log(logs)
                control.should_log = should_log
        if control.should_save:
            monitor.flush()

    def on_epoch_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        """Flush before an end-of-epoch checkpoint."""
        if self.monitor is not None and control.should_save:
            self.monitor.flush()

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        """Flush: a "best model" checkpoint may follow the evaluation."""
        if self.monitor is not None:
            self.monitor.flush()

    def on_train_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        """Close the record (marked complete)."""
        monitor, self.monitor = self.monitor, None
        if monitor is not None:
            monitor.close()
