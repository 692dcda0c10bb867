#!/usr/bin/env bash
# simulate_sde on a lent GPU against torchsde, the same cases and sizes as the recorded H200 rows
# of docs/benchmarks/sde.md (100 steps, 1e4–1e6 particles), so that "GPU speed not made worse"
# can be read off on the same card kind. On CUDA simulate_sde runs all particles as one block
# (block_size), i.e. the same kernels per step as before the CPU blocking.
# torchsde is pure Python: put its wheel (and trampoline's) in .whl/ if the machine is offline.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=src
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
if ! python3 -c "import torchsde" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-cache-dir --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=src:/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
timeout 540 python3 benchmarks/bench_sde.py --device cuda --steps 100 --repeats 2 \
  --sizes 10000,100000,1000000 --max-particle-dims 2e8 --plain-cap 2e9 \
  --out "$OUT/sde_cuda.json" 2>&1 | tee "$OUT/sde_cuda.log"
