"""MonitorRecord.overlaps, the streamed matrix of D's eigenvector overlaps, against the pairwise
``overlap(i, j)`` computed from whole eigenvector matrices, and against closed forms."""

import numpy as np
import pytest

import sgdscope as sg

from ._runs import monitored_run


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    return sg.load_monitor(
        monitored_run(tmp_path_factory.mktemp("r") / "run", 120, measure_every=20)
    )


@pytest.mark.parametrize("budget", [64 << 20, 8 * 6 * 4 * 5, 1])  # one block; blocks of 5; of 1
def test_overlaps_equal_the_pairwise_overlaps(record, budget):
    n = len(record)
    assert n == 6 and record.has_eigenvectors
    got = record.overlaps(memory_budget=budget)
    want = np.array([[record.overlap(i, j) for j in range(n)] for i in range(n)])
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.diag(got), 1.0, atol=1e-5)  # orthonormal eigenvectors
    assert np.all(got <= 1 + 1e-6) and np.all(got >= 0)


def test_overlaps_of_a_subset_and_of_fewer_eigenvectors(record):
    full = record.overlaps(k=2)
    chosen = [0, 3, 5]
    np.testing.assert_allclose(record.overlaps(chosen, k=2), full[np.ix_(chosen, chosen)])
    # k = 1: the squared cosine between the top eigenvectors
    v = [record.eigenvectors(i)[:, 0].astype(np.float64) for i in (0, 5)]
    np.testing.assert_allclose(record.overlaps([0, 5], k=1)[0, 1], (v[0] @ v[1]) ** 2, rtol=1e-9)


def test_overlaps_bad_arguments(record, tmp_path):
    with pytest.raises(
        ValueError, match=r"'measurements' parameter of MonitorRecord.overlaps .* \[0, 5\]"
    ):
        record.overlaps([0, 6])
    with pytest.raises(
        ValueError, match=r"'k' parameter of MonitorRecord.overlaps must be an int in \[1, 4\]"
    ):
        record.overlaps(k=5)
    with pytest.raises(ValueError, match=r"'memory_budget' parameter of MonitorRecord.overlaps"):
        record.overlaps(memory_budget=0)
