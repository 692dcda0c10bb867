"""Benchmark of the scale issue: D(x) on networks researchers train, memory independent of N.

For each model it measures, in one process:
  fwd_bwd_s     one plain forward + backward of the mean loss over the N samples (the baseline)
  product_s     one operator product D @ X with k probes over the N samples
  ratio         product_s / fwd_bwd_s (goal ≤ 3× at k = 64)
  peak_N, peak_4N   peak live tensor memory of one product over N and 4N samples
                (PeakTensorMemory on CPU, torch.cuda.max_memory_allocated on a GPU)
  gram          spectrum(method="gram", eigenvectors=m): every non-zero eigenvalue, rank at the
                noise floor and at the paper's threshold, tr D, B_simple, seconds, passes

Models (random weights; CIFAR-10 images from --cifar-dir when given, else random images):
  resnet18      torchvision's ResNet-18 architecture (11.2M parameters, 10 classes), written here
                (torchvision does not install beside the CPU wheel), eval-mode BatchNorm
  vit           transformers ViTForImageClassification, 32×32 images, 4×4 patches (~5M)
  gpt2          transformers GPT2LMHeadModel, GPT-2-shaped (≥ 30M parameters), T = 128 tokens

Anchors (``--anchors``, where they run): curvlinops' EFLinearOperator, the uncentred empirical
Fisher, on the same model and samples: one product with 1 and with 4 columns (its cost grows with
the columns; the k-column cost is extrapolated linearly and marked so), and eigsh for the top 16
(not with ``--no-eigsh``); and on ResNet-18 BackPACK: tr D from BatchL2Grad and the centred D @ X
from BatchGrad's per-sample gradients, timed and compared with sgdscope's results.
Install: pip install torch==2.13.0 einops unfoldNd einconv linear_operator tqdm &&
         pip install --no-deps backpack-for-pytorch curvlinops-for-pytorch

Usage: python benchmarks/bench_scale.py [--models resnet18,vit,gpt2] [--n 1024] [--k 64]
       [--vectors 16] [--device cpu|cuda] [--precision float64|mixed] [--anchors [--no-eigsh]]
       [--skip-4n] [--skip-gram | --skip-product] [--quick] [--out benchmarks/results/scale.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from datetime import date
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import sgdscope as sg
from sgdscope._memory import PeakTensorMemory
from sgdscope.noise.losses import sequence_cross_entropy


# ------------------------------------------------------------------------------------ models
class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu2 = nn.ReLU()
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + (x if self.down is None else self.down(x)))


class ResNet18(nn.Module):
    """The ResNet-18 of He et al. (2016) as torchvision builds it (7×7 stem, max-pool).

    Activations and pooling are modules (not functional calls), so that BackPACK's converter
    can rewrite the graph for the anchor; the function computed is the same.
    """

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.stem = nn.Sequential(nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        layers, cin = [], 64
        for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.layers(self.stem(self.bn1(self.conv1(x))))))


def cifar_images(n, cifar_dir, seed=0):
    if cifar_dir:  # real CIFAR-10 training images, scaled to [0, 1] and standardised per channel
        from sgdscope.paper.cifar import cifar

        data = cifar(cifar_dir, "train", n=n)
        x = data.images.float() / 255
        x = (x - x.mean((0, 2, 3), keepdim=True)) / x.std((0, 2, 3), keepdim=True)
        return x, data.labels.long()
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


def build(name, n, quick, cifar_dir):
    # the same random weights in every run, and in each process of a split run
    torch.manual_seed(0)
    ce = nn.CrossEntropyLoss(reduction="none")
    if name == "resnet18":
        model = ResNet18().eval()
        return model, ce, cifar_images(n, cifar_dir)
    import transformers

    if name == "vit":
        cfg = transformers.ViTConfig(
            image_size=32, patch_size=4, num_channels=3, num_labels=10,
            hidden_size=96 if quick else 384, num_hidden_layers=2 if quick else 3,
            num_attention_heads=4 if quick else 6, intermediate_size=192 if quick else 1536,
        )  # fmt: skip
        model = transformers.ViTForImageClassification(cfg).eval()
        x, y = cifar_images(n, cifar_dir)

        def loss(out, t):
            return F.cross_entropy(out.logits, t, reduction="none")

        return model, loss, ({"pixel_values": x}, y)
    vocab = 8192 if quick else 32768
    cfg = transformers.GPT2Config(
        vocab_size=vocab, n_positions=128, n_embd=128 if quick else 512,
        n_layer=2 if quick else 6, n_head=4 if quick else 8,
        bos_token_id=vocab - 1, eos_token_id=vocab - 1,  # GPT-2's 50256 is outside this vocabulary
    )  # fmt: skip
    model = transformers.GPT2LMHeadModel(cfg).eval()
    ids = torch.randint(
        0, cfg.vocab_size, (n, 32 if quick else 128), generator=torch.Generator().manual_seed(0)
    )
    return model, sequence_cross_entropy, {"input_ids": ids, "labels": ids}


# ---------------------------------------------------------------------------------- measures
def peak_of(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    with PeakTensorMemory() as mem:
        fn()
    return mem.peak


def subset(data, n):
    if isinstance(data, dict):
        return {k: v[:n] for k, v in data.items()}
    x, y = data
    x = {k: v[:n] for k, v in x.items()} if isinstance(x, dict) else x[:n]
    return x, y[:n]


def measure(name, args):
    device = torch.device(args.device)
    model, loss, data = build(name, 4 * args.n, args.quick, args.cifar_dir)
    model.to(device)
    d = sum(p.numel() for p in model.parameters())
    row = {"model": name, "d": d, "n": args.n, "k": args.k, "precision": args.precision}
    small = subset(data, args.n)
    budget = int(args.budget_gib * 2**30)
    noise = sg.GradientNoise(model, loss, small, device=device, progress=True, cache=False,
                             memory_budget=budget)  # fmt: skip
    row.update(backend=noise.backend, chunk_size=noise.chunk_size)
    if not args.skip_product:  # --skip-product: moments and the Gram spectrum only
        row.update(product_row(name, args, model, loss, data, noise, budget))
    row.update(trace=noise.trace(), b_simple=noise.noise_scale())
    if not args.skip_gram:
        row.update(gram_row(noise, args))
    if args.anchors and name in ("resnet18", "vit"):
        try:
            row.update(curvlinops_anchor(model, name, noise, args.k, device, not args.no_eigsh))
        except (NotImplementedError, RuntimeError) as err:  # recorded: where the anchor cannot run
            row["curvlinops_error"] = f"{type(err).__name__}: {str(err)[:160]}"
    import resource

    row["maxrss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps(row), flush=True)
    return row


def product_row(name, args, model, loss, data, noise, budget):
    """Baseline forward + backward, the moments pass, one product at N (and 4N), BackPACK."""
    from sgdscope.noise._data import call_model, to_device

    device, row = torch.device(args.device), {}

    def fwd_bwd():
        for chunk_start in range(0, args.n, noise.chunk_size):
            idx = torch.arange(chunk_start, min(chunk_start + noise.chunk_size, args.n))
            x, y = noise.source.get(idx)
            out = call_model(model, to_device(x, device))
            loss(out, y.to(device)).mean().backward()
        model.zero_grad(set_to_none=True)

    t0 = time.perf_counter()
    fwd_bwd()
    row["fwd_bwd_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    noise.mean_gradient()  # the moments pass: ḡ, tr D and B_simple
    row["moments_s"] = time.perf_counter() - t0
    probe_dtype = torch.float64 if args.precision == "float64" else torch.float32
    X = torch.randn(noise.dim, args.k, dtype=probe_dtype, device=device)
    op = noise.operator(precision=args.precision)
    t0 = time.perf_counter()  # one product, timed and measured together (the tracker's
    product = {}  # per-op cost is small against these ops)
    row["peak_N"] = peak_of(lambda: product.update(Y=op @ X), device)
    row["product_s"] = time.perf_counter() - t0
    row["ratio"] = row["product_s"] / row["fwd_bwd_s"]
    if args.anchors and name == "resnet18":
        try:
            row.update(backpack_anchor(model, noise, X, product.pop("Y"), device))
        except Exception as err:  # recorded: where the anchor cannot run
            row["backpack_error"] = f"{type(err).__name__}: {str(err)[:160]}"
    product.clear()
    if not args.skip_4n:
        big = sg.GradientNoise(model, loss, subset(data, 4 * args.n), device=device, cache=False,
                               chunk_size=noise.chunk_size, memory_budget=budget)  # fmt: skip
        big.mean_gradient()
        row["peak_4N"] = peak_of(lambda: big.operator(precision=args.precision) @ X, device)
        row["peak_ratio"] = row["peak_4N"] / row["peak_N"]
    return row


def gram_row(noise, args):
    """The whole non-zero spectrum by the Gram method, its time, peak, rank, tr D and B_simple."""
    device = torch.device(args.device)
    row = {}
    t0 = time.perf_counter()
    box = {}

    def gram():
        box["spec"] = noise.spectrum(
            method="gram", eigenvectors=args.vectors, precision=args.precision
        )

    row["gram_peak"] = peak_of(gram, device)
    spec = box["spec"]
    row.update(
        gram_s=time.perf_counter() - t0, passes=noise.passes, rank=spec.rank(),
        rank_paper=spec.summary().get("rank_paper"), noise_floor=spec.noise_floor,
        lambda_max=spec.lambda_max, n_eigenvalues=int(spec.eigenvalues.size),
    )  # fmt: skip
    return row


def backpack_anchor(model, noise, X, Y, device):
    """BackPACK on the same samples: tr D from BatchL2Grad and D @ X from BatchGrad's G.

    BackPACK hands over each chunk's per-sample gradients (BatchGrad) or their squared norms
    (BatchL2Grad) after one backward; the centred product is then G (X) − 1 ḡᵀX and Gᵀ P, as a
    user of BackPACK would write it. Both results are compared with sgdscope's.
    """
    from backpack import backpack, extend
    from backpack.extensions import BatchGrad, BatchL2Grad

    from sgdscope.noise._data import to_device

    net = extend(copy.deepcopy(model), use_converter=True)  # its hooks stay off ours
    loss = extend(nn.CrossEntropyLoss(reduction="sum"))
    params = [p for p in net.parameters() if p.requires_grad]
    n, c = noise.n_samples, noise.chunk_size

    def passes(extension, use):
        for s in range(0, n, c):
            x, y = noise.source.get(torch.arange(s, min(s + c, n)))
            net.zero_grad()
            with backpack(extension):
                loss(net(to_device(x, device)), y.to(device)).backward()
            use(params)

    out = {}
    total, sq = torch.zeros(noise.dim, dtype=torch.float64, device=device), [0.0]

    def norms(ps):
        total.add_(torch.cat([p.grad.reshape(-1) for p in ps]).double())
        sq[0] += float(sum(p.batch_l2.double().sum() for p in ps))

    t0 = time.perf_counter()
    passes(BatchL2Grad(), norms)
    mean = total / n
    trace = sq[0] / n - float(mean @ mean)
    out["backpack_trace_s"] = time.perf_counter() - t0
    out["backpack_trace_rel_diff"] = abs(trace - noise.trace()) / noise.trace()
    result = torch.zeros_like(X)
    gX = mean.to(X.dtype) @ X

    def product(ps):
        G = torch.cat([p.grad_batch.reshape(p.grad_batch.shape[0], -1) for p in ps], 1)
        P = G.to(X.dtype) @ X - gX
        result.addmm_(G.to(X.dtype).T, P)

    t0 = time.perf_counter()
    passes(BatchGrad(), product)
    result /= n
    out["backpack_product_s"] = time.perf_counter() - t0
    out["backpack_product_rel_diff"] = float((result - Y).norm() / Y.norm())
    net.zero_grad(set_to_none=True)
    return out


def curvlinops_anchor(model, name, noise, k, device, eigsh=True):
    """curvlinops' uncentred EF on the same samples: product times for 1 and 4 columns, eigsh."""
    import scipy.sparse.linalg
    from curvlinops import EFLinearOperator

    from sgdscope.noise._data import to_device

    class Logits(nn.Module):  # curvlinops wants a module that maps a tensor to logits
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, x):
            out = self.inner(pixel_values=x) if name == "vit" else self.inner(x)
            return out.logits if hasattr(out, "logits") else out

    model_func = Logits()

    idx = torch.arange(noise.n_samples)
    x, y = noise.source.get(idx)
    x = x["pixel_values"] if isinstance(x, dict) else x
    batches = [
        (to_device(x[s : s + noise.chunk_size], device), y[s : s + noise.chunk_size].to(device))
        for s in range(0, len(y), noise.chunk_size)
    ]
    params = [p for p in model.parameters() if p.requires_grad]
    model.eval()
    ef = EFLinearOperator(model_func, nn.CrossEntropyLoss(reduction="mean"), params, batches,
                          check_deterministic=False)  # fmt: skip
    d = sum(p.numel() for p in params)
    out = {}
    for cols in (1, 4):
        V = torch.randn(d, cols, device=device)
        t0 = time.perf_counter()
        ef @ V
        out[f"curvlinops_ef_{cols}col_s"] = time.perf_counter() - t0
    per_col = out["curvlinops_ef_4col_s"] / 4
    out["curvlinops_ef_kcol_s_extrapolated"] = per_col * k
    if not eigsh:
        return out
    t0 = time.perf_counter()
    scipy.sparse.linalg.eigsh(
        ef.to_scipy() if hasattr(ef, "to_scipy") else ef,
        k=16,
        which="LA",
        return_eigenvectors=False,
        tol=1e-5,
    )
    out["curvlinops_eigsh16_s"] = time.perf_counter() - t0
    return out


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--models", default="resnet18,vit,gpt2")
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--vectors", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="float64", choices=["float64", "mixed"])
    ap.add_argument("--budget-gib", type=float, default=8.0, help="memory_budget of GradientNoise")
    ap.add_argument("--skip-4n", action="store_true", help="skip the product over 4N samples")
    ap.add_argument("--skip-gram", action="store_true", help="skip the Gram spectrum")
    ap.add_argument("--no-eigsh", action="store_true", help="no eigsh on curvlinops' EF")
    ap.add_argument(
        "--skip-product",
        action="store_true",
        help="only the moments and the Gram spectrum (no baseline, product or anchors)",
    )
    ap.add_argument(
        "--anchors",
        action="store_true",
        help="curvlinops' EF (ResNet-18, ViT) and BackPACK (ResNet-18) side by side",
    )
    ap.add_argument("--cifar-dir", default=None)
    ap.add_argument("--quick", action="store_true", help="small sizes, to check the script")
    ap.add_argument("--out", default="benchmarks/results/scale.json")
    args = ap.parse_args()
    rows = [measure(m, args) for m in args.models.split(",")]
    meta = {"date": str(date.today()), "machine": platform.processor() or platform.machine(),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "args": vars(args)}  # fmt: skip
    if args.device == "cuda":
        meta["gpu"] = torch.cuda.get_device_name()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
