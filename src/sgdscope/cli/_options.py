"""Checks shared by the commands: usage errors that name the option, the value and the fix.

Every check runs before any work starts, so a mistyped option costs nothing and never ends in a
Python traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

import click
import torch

__all__ = ["check_cifar_dir", "check_device", "check_mnist_dir", "make_out"]


def check_device(ctx: click.Context | None, param: click.Parameter | None, value: str | None):
    """Click callback: ``value`` must be a torch device this machine has (cpu, cuda, cuda:N)."""
    if value is None:
        return value
    try:
        device = torch.device(value)
    except (RuntimeError, ValueError):
        raise click.BadParameter(
            f"{value!r} is not a torch device; use cpu, cuda or cuda:N (N: the GPU's number)."
        ) from None
    if device.type not in ("cpu", "cuda"):
        raise click.BadParameter(f"{value!r} is not supported here; use cpu, cuda or cuda:N.")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else "built with CUDA"
            raise click.BadParameter(
                f"{value!r} was asked for but torch sees no CUDA device; use --device cpu "
                f"(torch {torch.__version__} is {build})."
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise click.BadParameter(
                f"{value!r} was asked for but torch sees {count} CUDA device(s), numbered from "
                f"0; use cuda:0{f' to cuda:{count - 1}' if count > 1 else ''}."
            )
    return value


def check_mnist_dir(value: Path | None, option: str = "--data-dir") -> None:
    """Usage error unless folder ``value`` holds the MNIST IDX files (train and test)."""
    if value is None:
        return
    from ..paper.data import find_mnist_files

    try:
        find_mnist_files(value)
    except FileNotFoundError as err:
        raise click.BadParameter(
            f"{os.fspath(value)!r} holds no usable MNIST files: {err}".replace(
                "or pass data_dir=None to use the embedded subset",
                f"or omit {option} to use the embedded subset",
            ),
            param_hint=option,
        ) from None


def check_cifar_dir(value: Path | None, classes: int, option: str) -> None:
    """Usage error unless ``value`` is (or holds) a CIFAR archive or its extracted folder."""
    if value is None:
        return
    from ..paper.cifar import find_cifar

    try:
        find_cifar(value, classes)
    except FileNotFoundError as err:
        raise click.BadParameter(
            str(err).replace(
                "or pass the archive's path as data_dir",
                f"or pass the archive's path as {option}",
            ),
            param_hint=option,
        ) from None


def make_out(path: Path, option: str = "--out") -> Path:
    """Create output folder ``path`` (and parents) now, or raise a usage error naming it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".sgdscope-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        reason = err.strerror or str(err)
        raise click.BadParameter(
            f"cannot write to {os.fspath(path)!r} ({reason}); choose a folder you can write to "
            f"(not inside a file).",
            param_hint=option,
        ) from None
    return path
