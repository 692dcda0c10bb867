#!/usr/bin/env bash
# The reproduction issue's GPU checks, as one script for the lent device machine:
#   1. the CUDA tests (training on CUDA follows the CPU run; D on CUDA equals D on CPU; the
#      recorder and SDE CUDA paths), which CI (no GPU) skips;
#   2. `sgdscope reproduce --quick --device cuda` end to end, then the same on the machine's CPUs;
#   3. the cost of the paper's full CIFAR-10 protocol on the GPU (bench_cifar_protocol.py).
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=src MPLBACKEND=Agg
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/summary.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cores', torch.get_num_threads())" | tee -a "$OUT/summary.txt"
python3 -m pytest -q -p no:cacheprovider -o addopts="" -k "cuda or CUDA" \
  tests/paper/test_training.py tests/noise/test_gradient_noise.py tests/dynamics/test_sde.py \
  tests/trajectory/test_recorder.py 2>&1 | tail -15 | tee "$OUT/cuda_tests.log"
for dev in cuda cpu; do
  start=$SECONDS
  python3 -c "import sgdscope.cli as c; c.main()" reproduce --quick --device $dev --no-progress \
    --out /tmp/quick_$dev > "$OUT/quick_$dev.log" 2>&1
  echo "reproduce --quick --device $dev: exit $?, $((SECONDS - start)) s" | tee -a "$OUT/summary.txt"
  tail -5 "$OUT/quick_$dev.log"
  cp /tmp/quick_$dev/report/results.json "$OUT/quick_${dev}_results.json"
done
timeout 200 python3 benchmarks/bench_cifar_protocol.py --device cuda 2>&1 | tee "$OUT/cifar_protocol.log"
cp benchmarks/results/cifar_protocol_cuda.json "$OUT/" 2>/dev/null
