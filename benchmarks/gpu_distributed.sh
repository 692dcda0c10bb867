#!/usr/bin/env bash
# The distributed path on one lent GPU (NCCL, one process; the multi-GPU path is covered by the CPU
# gloo tests and the cost model in docs/distributed.md). Prepared for the device machine:
#   (a) `sgdscope spectrum` on a factory model, alone and under torchrun (NCCL): same eigenvalues;
#   (b) bench_distributed.py with one NCCL process: product time, all-reduce time, bytes.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=src:. OMP_NUM_THREADS=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import sgdscope.cli as c; c.main()" spectrum --model tests.factories:tiny_mlp \
  --device cuda --method randomized --k 4 --out "$OUT/alone" 2>&1 | tee "$OUT/alone.log"
python3 -m torch.distributed.run --standalone --nproc_per_node 1 -m sgdscope spectrum \
  --model tests.factories:tiny_mlp --device cuda --method randomized --k 4 --out "$OUT/nccl" \
  2>&1 | tee "$OUT/nccl.log"
python3 - "$OUT" <<'PY' 2>&1 | tee "$OUT/compare.txt"
import json, sys
a = json.load(open(f"{sys.argv[1]}/alone/summary.json"))
b = json.load(open(f"{sys.argv[1]}/nccl/summary.json"))
diff = max(abs(x - y) / abs(x) for x, y in zip(a["top_eigenvalues"], b["top_eigenvalues"]))
print("world_size", b["world_size"], "max relative difference of the top eigenvalues", diff)
PY
python3 benchmarks/bench_distributed.py --procs 1 --device cuda --samples 4096 --k 32 \
  --chunk 1024 --tag cuda 2>&1 | tee "$OUT/bench_cuda.log"
cp benchmarks/results/distributed_cuda.json "$OUT/" 2>/dev/null
rm -rf "$OUT/alone" "$OUT/nccl"
