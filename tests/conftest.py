import os

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _deterministic_threads():
    """Tests are stricter than users: float64 defaults are never changed globally; threads fixed."""
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    yield
