import os

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _deterministic_threads():
    """One torch thread per test process: `pytest -n 2` runs two workers on two cores."""
    torch.set_num_threads(1)  # tests run under `pytest -n 2`: one thread per worker
    yield
