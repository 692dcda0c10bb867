"""Records for the tests of the run diagnosis and the dashboard: a given array recorded as a plain
trajectory, and a short monitored training run (a tiny MLP, d = 83, seconds on a CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

import sgdscope as sg

LOSS = nn.CrossEntropyLoss(reduction="none")


def record_array(path: Path, x: np.ndarray, **kwargs) -> Path:
    """Record the rows of ``x`` (T, d ≥ 2) as the weights of a linear model, one per step, with
    the first coordinate as the step's loss. The record holds ``x`` in float32."""
    model = nn.Linear(x.shape[1] - 1, 1)
    with sg.TrajectoryRecorder(path, model, **kwargs) as rec:
        for row in x:
            with torch.no_grad():
                model.weight.copy_(torch.as_tensor(row[:-1]).reshape(1, -1))
                model.bias.fill_(float(row[-1]))
            rec.step(loss=float(row[0]))
    return path


class TinyRun:
    """A tiny MLP trained by SGD with momentum and watched by ``sg.Monitor``; ``train(n)`` runs
    n more steps (the monitor stays open until ``close()``, as in a run that still trains)."""

    def __init__(self, path: Path, *, measure_every: int = 50, k: int = 4, seed: int = 0):
        torch.manual_seed(seed)
        g = torch.Generator().manual_seed(seed + 1)
        self.x, self.y = torch.randn(512, 6, generator=g), torch.randint(0, 3, (512,), generator=g)
        self.model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9)
        self.monitor = sg.Monitor(
            self.model, LOSS, (self.x[:48], self.y[:48]), path, measure_every=measure_every,
            k=k, batch_size=32,
        )  # fmt: skip
        self.step = 0

    def train(self, steps: int) -> TinyRun:
        for _ in range(steps):
            i = (self.step * 32) % 512
            loss = LOSS(self.model(self.x[i : i + 32]), self.y[i : i + 32]).mean()
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            self.monitor.step(self.opt, loss=loss)
            self.step += 1
        self.monitor.flush()
        return self

    def close(self) -> None:
        self.monitor.close()


def monitored_run(path: Path, steps: int, **kwargs) -> Path:
    """A finished monitored run of ``steps`` steps at ``path``."""
    run = TinyRun(path, **kwargs).train(steps)
    run.close()
    return path
