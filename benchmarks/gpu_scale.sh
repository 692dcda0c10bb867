#!/usr/bin/env bash
# The scale issue's GPU check, as one script for a lent device machine (one H100/H200; under
# 8 minutes in all). The machine's image has torch and transformers; nothing is installed.
#   1. the CUDA tests of the noise engine (D on CUDA equals D on the CPU), which CI skips;
#   2. GPT-2 small (124M) from transformers, random weights, N = 2,048 sequences of 128 tokens:
#      the whole non-zero spectrum by the Gram method, rank (noise floor and paper's), tr D,
#      B_simple, the top-32 eigenvectors, seconds, passes and peak GPU memory (goal: < 5 min);
#   3. bench_scale.py on the GPU for ResNet-18 and the ViT (N = 1,024, k = 64), which also gives
#      the product's cost against a forward + backward and its peak memory at N and 4N.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=src MPLBACKEND=Agg
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/summary.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a "$OUT/summary.txt"
python3 -m pytest -q -p no:cacheprovider -o addopts="" -k "cuda or CUDA" tests/noise 2>&1 | tail -5 | tee "$OUT/cuda_tests.log"
timeout 330 python3 - <<'PY' 2>&1 | tee "$OUT/gpt2_small.log"
import json, os, time, torch, transformers, sgdscope as sg
from sgdscope.noise.losses import sequence_cross_entropy
torch.backends.cuda.matmul.allow_tf32 = True
dev = torch.device("cuda")
model = transformers.GPT2LMHeadModel(transformers.GPT2Config()).to(dev).eval()
ids = torch.randint(0, 50257, (2048, 128), generator=torch.Generator().manual_seed(0))
t0 = time.perf_counter()
noise = sg.GradientNoise(model, sequence_cross_entropy, {"input_ids": ids, "labels": ids},
                         device=dev, progress=True, cache=False)
row = {"gpu": torch.cuda.get_device_name(), "d": noise.dim, "n": noise.n_samples,
       "backend": noise.backend, "chunk": noise.chunk_size}
row["trace"], row["b_simple"] = noise.trace(), noise.noise_scale()
row["moments_s"] = time.perf_counter() - t0
spec = noise.spectrum(method="gram", eigenvectors=32, precision="mixed")
row.update(total_s=time.perf_counter() - t0, gram_s=spec.info["seconds"], passes=noise.passes,
           rank=spec.rank(), rank_paper=spec.summary()["rank_paper"],
           top=spec.eigenvalues[:8].tolist(), peak_gib=torch.cuda.max_memory_allocated() / 2**30)
print(json.dumps(row))
json.dump(row, open(os.path.join(os.environ.get("OUT", "/tmp/out"), "gpt2_small.json"), "w"))
PY
timeout 200 python3 benchmarks/bench_scale.py --device cuda --models resnet18,vit --n 1024 --k 64 \
  --vectors 16 --precision mixed --budget-gib 60 --out "$OUT/scale_cuda.json" 2>&1 | grep "^{" | tee "$OUT/scale_cuda.log"
