"""Cost of committing many small chunks: recording must stay linear in the number of records.

Run: ``python benchmarks/bench_store_commits.py [N ...]`` (default 2000 8000 16000). Records a
``Linear(3, 1)`` with ``chunk_size=1`` (every record is a chunk, as for models over 131,072 float32
parameters with the default chunk size) into a temporary folder and prints the wall time and the
time per record for each N. Format 1 rewrote the whole manifest per chunk (quadratic); format 2
appends one line to the chunk index (linear). Results: docs/benchmarks/recorder.md.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

import sgdscope as sg


def main(sizes: list[int]) -> None:
    torch.set_num_threads(1)
    model = torch.nn.Linear(3, 1)
    root = Path(tempfile.mkdtemp(prefix="sgdscope-commits-"))
    try:
        for n in sizes:
            t0 = time.perf_counter()
            with sg.TrajectoryRecorder(root / str(n), model, chunk_size=1) as rec:
                for _ in range(n):
                    rec.step(loss=1.0)
            dt = time.perf_counter() - t0
            assert len(sg.load_trajectory(root / str(n))) == n
            print(
                f"{n} records, chunk_size=1: {dt:.1f} s ({1e3 * dt / n:.2f} ms/record)", flush=True
            )
            shutil.rmtree(root / str(n))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [2000, 8000, 16000])
