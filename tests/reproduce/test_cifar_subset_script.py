"""scripts/cifar_subset_spectra.py: the packed subset rebuilds the paper's inputs, and its caches
are the ones `reproduce spectra` would write on the full pipeline's inputs."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sgdscope.paper import cifar, models
from sgdscope.reproduce.context import RunContext
from sgdscope.reproduce.spectra import PANELS, Settings
from sgdscope.reproduce.spectra.measure import load_spectrum, measure_spectrum

from ..paper.test_cifar import _build

SCRIPT = Path(__file__).parents[2] / "scripts" / "cifar_subset_spectra.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("cifar_subset_spectra", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_packed_subset_rebuilds_the_pipelines_inputs_and_its_spectra(tmp_path, script):
    _build(tmp_path, 10, binary=True, archive=False, per=10)  # 50 train images
    packed = tmp_path / "subset.npz"
    script.pack(tmp_path, packed, n=24)
    train = cifar.cifar(tmp_path, "train", classes=10)
    (x, y), *_ = cifar.paper_inputs(train)
    z = np.load(packed)
    assert z["images"].shape == (24, 3, 32, 32) and z["w_upper"].dtype == np.float32
    rebuilt = script.whiten(torch.from_numpy(z["images"]), z)
    torch.testing.assert_close(rebuilt, x[:24], rtol=0, atol=1e-4 * float(x.abs().max()))

    ckpts = tmp_path / "ckpt"
    ckpts.mkdir()
    model = models.build("small-allcnn", 10, seed=0)
    torch.save({"model": model.state_dict()}, ckpts / "epoch_0001.pt")
    work = tmp_path / "work"
    script.measure(packed, ckpts, work, [12], "cpu")
    rows = json.loads((work / "summary.json").read_text())
    assert [(r["panel"], r["n"]) for r in rows] == [("fig2a", 12), ("fig2c", 12)]
    caches = sorted(p.name for p in (work / "train").glob("*.spectrum.npz"))
    assert caches == ["epoch_0001.n12.augment1.spectrum.npz", "epoch_0001.n12.spectrum.npz"]

    # oracle: the same panel measured by the pipeline itself on its own (unpacked) inputs
    ref_dir = tmp_path / "ref" / "train"
    ref_dir.mkdir(parents=True)
    (ref_dir / "epoch_0001.pt").write_bytes((ckpts / "epoch_0001.pt").read_bytes())
    ctx = RunContext(out=tmp_path / "ref", progress=False)
    ref, _, _ = measure_spectrum(PANELS["fig2a"], ref_dir / "epoch_0001.pt", (x[:12], y[:12]), ctx,
                                 Settings.full())  # fmt: skip
    got, _ = load_spectrum(work / "train" / "epoch_0001.n12.spectrum.npz")
    assert got.rank() == ref.rank()
    np.testing.assert_allclose(got.eigenvalues[:5], ref.eigenvalues[:5], rtol=1e-3)
    assert got.info["device"] == "cpu"
