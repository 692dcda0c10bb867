#!/usr/bin/env bash
# The scale issue's GPU check (one H100/H200, under 8 minutes): GPT-2 small (124M) from
# transformers, random weights, N = 2,048 sequences of 128 tokens: the whole non-zero spectrum
# by the Gram method, rank, tr D, B_simple, top-32 eigenvectors; then one k = 64 product against
# a forward + backward, and its peak memory at N and 4N. Results land in $OUT (or ./out).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out}
mkdir -p "$OUT"
python -m venv .venv-gpu && . .venv-gpu/bin/activate
pip install -q torch -e ".[test]" 2>&1 | tail -2
python - <<'PY' 2>&1 | tee "$OUT/gpu_scale.log"
import json, time, torch, transformers, sgdscope as sg
from sgdscope.noise.losses import sequence_cross_entropy
torch.backends.cuda.matmul.allow_tf32 = True
dev = torch.device("cuda")
model = transformers.GPT2LMHeadModel(transformers.GPT2Config()).to(dev).eval()
ids = torch.randint(0, 50257, (2048, 128), generator=torch.Generator().manual_seed(0))
noise = sg.GradientNoise(model, sequence_cross_entropy, {"input_ids": ids, "labels": ids},
                         device=dev, progress=True, cache=False)
t0 = time.perf_counter()
spec = noise.spectrum(method="gram", eigenvectors=32)
row = {"gpu": torch.cuda.get_device_name(), "d": noise.dim, "n": noise.n_samples,
       "backend": noise.backend, "chunk": noise.chunk_size, "gram_s": time.perf_counter() - t0,
       "passes": noise.passes, "rank": spec.rank(), "rank_paper": spec.summary()["rank_paper"],
       "trace": noise.trace(), "b_simple": noise.noise_scale(), "top": spec.eigenvalues[:8].tolist(),
       "peak_gb": torch.cuda.max_memory_allocated() / 2**30}
print(json.dumps(row))
json.dump(row, open("out_gpu_scale.json", "w"))
PY
cp out_gpu_scale.json "$OUT/" 2>/dev/null || true
