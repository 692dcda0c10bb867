"""The paper's data and networks (Chaudhari & Soatto, ICLR 2018, §IV).

Rebuilt from the paper and the authors' code (github.com/pratikac/grad-info, commit 4e1bd82).

- :mod:`sgdscope.paper.data`: :func:`~sgdscope.paper.data.mnist`, MNIST from IDX files or the
  embedded class-balanced subset (10,000 train / 2,000 test images).
- :mod:`sgdscope.paper.models`: :func:`~sgdscope.paper.models.build`, the four networks
  small-lenet, small-fc, tiny-fc and small-allcnn with the authors' exact architectures.
- :mod:`sgdscope.paper.idx`: reader and writer of the IDX file format.
- :mod:`sgdscope.paper.cifar`: CIFAR-10/100 from the official archives (binary or python version,
  safe unpickling), GCN + ZCA and the flip/pad/crop augmentation.
"""

from __future__ import annotations

from . import cifar, data, idx, models

__all__ = ["cifar", "data", "idx", "models"]
