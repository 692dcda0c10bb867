"""Reading and writing torch checkpoints with clear errors and an integrity check.

``torch.save`` writes a zip archive whose members carry a CRC-32, but ``torch.load`` does not
verify it, so a flipped byte inside a tensor loads as a wrong weight. :func:`load_checkpoint`
verifies every member's CRC (``zipfile.ZipFile.testzip``) before loading, always with
``weights_only=True``, and turns every failure into a :class:`CheckpointError` that names the
file and says what to do.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointError", "atomic_save", "check_writable", "load_checkpoint"]


class CheckpointError(ValueError):
    """A checkpoint file cannot be used: missing, damaged, not a checkpoint, or unwritable."""


def load_checkpoint(path: str | os.PathLike, *, remedy: str = "delete it") -> Any:
    """``torch.load(path, weights_only=True)`` after checking the file and its zip CRCs.

    Args:
        path: A file written by ``torch.save``.
        remedy: What the user can do about a damaged file, appended to the message.

    Returns:
        The loaded object.

    Raises:
        CheckpointError: If ``path`` is not a file, is damaged (a zip member fails its CRC,
            truncated, empty), or does not hold a checkpoint that loads with ``weights_only``.
    """
    path = Path(path)
    name = os.fspath(path)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise CheckpointError(f"checkpoint {name!r} {what}; {remedy}.")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {name!r} is empty (0 bytes); {remedy}.")
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
            raise CheckpointError(f"checkpoint {name!r} is damaged ({err}); {remedy}.") from err
        if bad is not None:
            raise CheckpointError(
                f"checkpoint {name!r} is damaged: its member {bad!r} fails its CRC-32 check (a "
                f"changed byte); loading it would use wrong weights. {remedy[0].upper()}"
                f"{remedy[1:]}."
            )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{name!r} is not a checkpoint that can be loaded safely (weights only): {first}. "
            f"Only load files you trust; {remedy}."
        ) from err
    except Exception as err:  # torch's readers raise many types (IndexError for text, ...)
        raise CheckpointError(
            f"checkpoint {name!r} cannot be read: it is truncated, damaged or not written by "
            f"torch.save ({type(err).__name__}: {str(err).strip()[:200]}); {remedy}."
        ) from err


def check_writable(path: str | os.PathLike) -> None:
    """Make sure ``path`` can be replaced by :func:`atomic_save`, before any work is done.

    Raises:
        CheckpointError: If ``path`` is a directory or its folder refuses a new file.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(
            f"checkpoint {os.fspath(path)!r} is a directory, so it cannot be saved; remove it."
        )
    probe = path.with_name(path.name + ".tmp")
    try:
        with open(probe, "wb"):
            pass
        probe.unlink()
    except OSError as err:
        raise CheckpointError(
            f"cannot write checkpoints to {os.fspath(path.parent)!r} ({err.strerror or err}); "
            f"make the folder writable or choose another one."
        ) from err


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path.tmp``, then replace ``path``; the temporary file never stays.

    Raises:
        CheckpointError: If the file cannot be written (the message names it).
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(
            f"could not save checkpoint {os.fspath(path)!r}: {str(err).strip()[:200]} (disk "
            f"full, or the folder is not writable?); the previous {path.name} is unchanged."
        ) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
