"""Build the class-balanced MNIST subset embedded in sgdscope (src/sgdscope/paper/_embedded/).

Run once from the repository root::

    python scripts/build_embedded_mnist.py --source path/to/mnist

It reads the four standard IDX(.gz) files, draws PER_CLASS[split] images of every digit without
replacement with a fixed seed, keeps them in their original file order, and writes one
deterministic ``.npz`` (fixed zip timestamps, so the sha256 is reproducible). Arrays stored:
``{split}_images`` (uint8, N x 28 x 28), ``{split}_labels`` (uint8, N) and ``{split}_index``
(int32, N: the row of each image in the original IDX file), for split in train/test.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np

from sgdscope.paper.idx import read_idx

SEED = 20180430  # fixed: the subset must not change between builds
PER_CLASS = {"train": 1000, "test": 200}
FILES = {"train": "train", "test": "t10k"}
OUT = Path(__file__).resolve().parents[1] / "src/sgdscope/paper/_embedded/mnist_subset.npz"


def _find(source: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (source / name).is_file():
            return source / name
    raise SystemExit(f"{stem}[.gz] not found in {source}")


def _select(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    picks = []
    for digit in range(10):
        rows = np.flatnonzero(labels == digit)
        picks.append(rng.choice(rows, size=per_class, replace=False))
    return np.sort(np.concatenate(picks))


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for key, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue(), compresslevel=9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path("/work/shared/data/mnist"))
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    rng = np.random.default_rng(SEED)
    arrays: dict[str, np.ndarray] = {}
    for split, prefix in FILES.items():
        images = read_idx(_find(args.source, f"{prefix}-images-idx3-ubyte"), magic=0x00000803)
        labels = read_idx(_find(args.source, f"{prefix}-labels-idx1-ubyte"), magic=0x00000801)
        index = _select(labels, PER_CLASS[split], rng)
        arrays[f"{split}_images"] = images[index]
        arrays[f"{split}_labels"] = labels[index]
        arrays[f"{split}_index"] = index.astype(np.int32)
        print(split, len(index), np.bincount(labels[index], minlength=10).tolist())

    args.out.parent.mkdir(parents=True, exist_ok=True)
    _write_npz(args.out, arrays)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.2f} MiB) sha256 {digest}")


if __name__ == "__main__":
    main()
