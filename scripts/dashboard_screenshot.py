"""Draw the picture of the run dashboard in docs/integrations.md from a real small run.

Run: ``python scripts/dashboard_screenshot.py [--steps 1200] [--out docs/figures/dashboard_small_lenet.png]``
(needs ``chromium`` on PATH; a few minutes on a CPU).

small-lenet (d = 13,338) trains by SGD (lr 0.05, momentum 0.9, batch 64) on the embedded MNIST
subset, watched by ``sg.Monitor`` (D measured every 100 steps on 128 probe images, k = 8); then
``sgdscope dashboard`` writes the page and headless Chromium takes a screenshot of its top, which
is reduced to a palette PNG under 300 KB.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch
from PIL import Image
from torch import nn

import sgdscope as sg
from sgdscope.report.dashboard import render_dashboard


def train(path: Path, steps: int) -> None:
    model = sg.paper.models.build("small-lenet", seed=0)
    x, y = sg.paper.data.mnist(n=4096).tensors()
    loss_fn = nn.CrossEntropyLoss(reduction="none")
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    with sg.Monitor(model, loss_fn, (x[:128], y[:128]), path, measure_every=100, batch_size=64,
                    n=len(x), progress=True) as mon:  # fmt: skip
        for step in range(steps):
            idx = order[(step * 64) % len(x) :][:64]
            loss = loss_fn(model(x[idx]), y[idx]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            mon.step(opt, loss=loss)


def screenshot(page: Path, out: Path, width: int = 1200, height: int = 1900) -> None:
    browser = next(b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b))
    with tempfile.TemporaryDirectory() as tmp:
        shot = Path(tmp) / "shot.png"
        subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--disable-background-networking", "--disable-component-update",
             "--disable-default-apps", "--disable-extensions", "--disable-sync", "--no-first-run",
             "--hide-scrollbars", "--virtual-time-budget=5000", f"--user-data-dir={tmp}/profile",
             f"--screenshot={shot}", f"--window-size={width},{height}", page.as_uri()],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        image = Image.open(shot).convert("RGB")
    image = image.resize((width * 3 // 4, height * 3 // 4), Image.Resampling.LANCZOS)
    image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--out", type=Path, default=Path("docs/figures/dashboard_small_lenet.png"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = args.out.resolve()
    here = Path.cwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # the page shows the record's path as given: runs/small-lenet
        try:
            run = Path("runs/small-lenet")
            train(run, args.steps)
            page = render_dashboard(sg.diagnose_run(run, progress=True)).resolve()
            screenshot(page, out)
        finally:
            os.chdir(here)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
