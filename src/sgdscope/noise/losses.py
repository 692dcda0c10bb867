"""Per-sample losses for models whose natural loss is reduced over tokens (sequence models).

sgdscope's convention is one sample = one row of the data as the loss sees it; for a language
model that is one *sequence*, not one token (curvlinops' empirical Fisher, by contrast, treats
every token as a sample). These helpers return one loss per sequence from a model's output.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ._data import primary_output

__all__ = ["sequence_cross_entropy"]


def sequence_cross_entropy(
    outputs: Any,
    labels: torch.Tensor,
    *,
    shift: bool = True,
    ignore_index: int = -100,
) -> torch.Tensor:
    """Mean token cross-entropy of each sequence, shape (n,).

    Args:
        outputs: Logits (n, T, V), or a model output holding them (a Hugging Face
            ``ModelOutput`` / dict with ``logits``, or a tuple whose first tensor they are).
        labels: Token ids (n, T); positions equal to ``ignore_index`` do not count.
        shift: Predict token t + 1 from position t (a causal language model, with ``labels`` the
            input ids, as Hugging Face's ``labels=input_ids`` convention); False for a
            token-classification head whose position t predicts ``labels[:, t]``.
        ignore_index: Label value that is ignored (Hugging Face uses -100).

    Returns:
        One loss per sequence: the mean over its counted tokens (0 for a sequence with none).

    Raises:
        ValueError: If the logits are not (n, T, V) or the labels not (n, T).

    Example:
        >>> logits = torch.zeros(2, 4, 3)
        >>> sequence_cross_entropy(logits, torch.tensor([[0, 1, 2, 0], [1, 1, -100, -100]]))
        tensor([1.0986, 1.0986])
    """
    logits = primary_output(outputs)
    if logits.ndim != 3 or labels.shape != logits.shape[:2]:
        raise ValueError(
            "the 'outputs' and 'labels' parameters of sequence_cross_entropy must be logits of "
            f"shape (n, T, V) and labels of shape (n, T), got {tuple(logits.shape)} and "
            f"{tuple(labels.shape)}."
        )
    if shift:
        logits, labels = logits[:, :-1], labels[:, 1:]
    tokens = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        labels.reshape(-1),
        reduction="none",
        ignore_index=ignore_index,
    ).reshape(labels.shape)
    counted = (labels != ignore_index).sum(1).clamp_min(1).to(tokens.dtype)
    return tokens.sum(1) / counted
