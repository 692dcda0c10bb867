#!/usr/bin/env bash
# The gradient-noise benchmarks that need a GPU, as one script for the lent device machine:
#   (a) per-sample gradients on CUDA against the anchors, (c) spectrum(k=100) scaling on CUDA,
#   and the CLI's main job (small-lenet, all 10,000 embedded images) on CUDA.
# Anchor wheels travel in .whl/ (pure-Python: backpack, opacus, curvlinops, unfoldNd, einconv).
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=src
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=src:/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 benchmarks/bench_per_sample.py --device cuda --repeats 10 2>&1 | tee "$OUT/per_sample_cuda.log"
python3 benchmarks/bench_scaling.py --device cuda --widths 1,2,4,6 --ns 1000,2000,4000,8000 \
  --fixed-n 2000 --out "$OUT/scaling_cuda.png" 2>&1 | tee "$OUT/scaling_cuda.log"
python3 -c "import sgdscope.cli as c; c.main()" spectrum --model small-lenet --device cuda \
  --out "$OUT/spectrum_lenet_cuda" 2>&1 | tee "$OUT/spectrum_lenet_cuda.log"
cp benchmarks/results/per_sample_cuda.json benchmarks/results/scaling_cuda.json "$OUT/" 2>/dev/null
cp "$OUT/spectrum_lenet_cuda/summary.json" "$OUT/spectrum_lenet_cuda.json" 2>/dev/null
rm -rf "$OUT/spectrum_lenet_cuda"
