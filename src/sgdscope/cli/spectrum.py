"""``sgdscope spectrum``: the eigenspectrum and rank of D(x) for one of the paper's networks."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from ._options import check_device, check_mnist_dir, make_out

_METHODS = ["auto", "dense", "gram", "randomized"]
_MODELS = ["small-lenet", "small-fc", "tiny-fc"]


def _load_checkpoint(model: torch.nn.Module, path: Path) -> None:
    from .._checkpoint import CheckpointError, load_checkpoint

    try:
        state = load_checkpoint(
            path, remedy="pass a file written by torch.save(model.state_dict())"
        )
    except CheckpointError as err:
        raise click.BadParameter(str(err), param_hint="--checkpoint") from err
    if isinstance(state, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in state and isinstance(state[key], dict):
                state = state[key]
                break
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as err:
        raise click.BadParameter(
            f"{path} does not hold a state_dict of this network: {err}", param_hint="--checkpoint"
        ) from err


@click.command()
@click.option(
    "--model",
    "model_name",
    type=click.Choice(_MODELS),
    default="small-lenet",
    show_default=True,
    help="One of the paper's MNIST networks.",
)
@click.option(
    "--checkpoint",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A saved state_dict (or a dict holding one under 'state_dict'/'model'); default: the initial weights (Remark 16: D can be read before training).",
)
@click.option(
    "--data-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder with the MNIST IDX files; default: the embedded subset.",
)
@click.option(
    "--n-samples",
    type=click.IntRange(min=2),
    help="Class-balanced subset size N; default: all samples the network reads.",
)
@click.option(
    "--k",
    type=click.IntRange(min=1),
    help="Number of eigenpairs; default: all above the rank threshold.",
)
@click.option("--method", type=click.Choice(_METHODS), default="auto", show_default=True)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the initial weights and of the randomized eigensolver.",
)
@click.option(
    "--device", default="cpu", show_default=True, callback=check_device, help="cpu, cuda or cuda:N."
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("out/spectrum"),
    show_default=True,
)
def spectrum(model_name, checkpoint, data_dir, n_samples, k, method, seed, device, out) -> None:
    """Measure the eigenspectrum and rank of the gradient-noise matrix D(x) (paper §IV-A, Fig. 1).

    Prints rank (with its threshold), rank %, top eigenvalues and effective rank; writes
    OUT/summary.json, OUT/eigenvalues.npy and OUT/spectrum.png.
    """
    from ..noise import GradientNoise
    from ..paper import data, models
    from ..report.fig_spectrum import plot_spectrum

    console = Console()
    t0 = time.perf_counter()
    check_mnist_dir(data_dir)
    make_out(out)
    model = models.build(model_name, seed=seed)
    if checkpoint is not None:
        _load_checkpoint(model, checkpoint)
    dataset = data.mnist_for(model_name, data_dir, n=n_samples)
    inputs, targets = dataset.tensors()
    if k is not None:  # D is a covariance of N centred gradients in d dimensions
        dim = sum(p.numel() for p in model.parameters() if p.requires_grad)
        max_rank = max(min(len(targets) - 1, dim), 1)
        if k > max_rank:
            raise click.BadParameter(
                f"{k} is more eigenpairs than D has: D of {model_name} on N = {len(targets):,} "
                f"samples (d = {dim:,}) has rank at most min(N − 1, d) = {max_rank:,}. Pass "
                f"--k {max_rank} or less, or omit --k for every eigenvalue above the threshold.",
                param_hint="--k",
            )
    noise = GradientNoise(
        model.to(device).eval(), torch.nn.CrossEntropyLoss(reduction="none"), (inputs, targets),
        device=device, progress=True,
    )  # fmt: skip
    console.print(
        f"[bold]{model_name}[/]: d = {noise.dim:,} parameters, N = {noise.n_samples:,} samples "
        f"({'checkpoint ' + str(checkpoint) if checkpoint else f'initial weights, seed {seed}'}), eval mode"
    )
    # the paper's networks: the paper's threshold (d ≤ 27k here); the noise floor is printed too
    spec = noise.spectrum(k=k, method=method, seed=seed, rtol="paper")
    seconds = time.perf_counter() - t0
    summary = spec.summary("paper")
    summary.update(
        model=model_name,
        checkpoint=str(checkpoint) if checkpoint else None,
        data=dataset_description(data_dir, noise.n_samples),
        seconds_total=seconds,
        layout=noise.layout.to_dict(),
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    np.save(out / "eigenvalues.npy", spec.eigenvalues)
    plot_spectrum(
        spec,
        out / "spectrum.png",
        labels=[model_name],
        title=f"D(x) of {model_name}, N = {noise.n_samples:,}",
        rtol="paper",
    )

    table = Table(show_header=False, box=None)
    table.add_row("method", f"{spec.method} ({spec.reason})")
    try:
        rank = spec.rank("paper")
        table.add_row("rank", f"{rank:,} of d = {spec.dim:,} ({100 * rank / spec.dim:.2f} %)")
        table.add_row(
            "threshold", f"{spec.threshold('paper'):.3e} = λ_max · d · ε_float32 (the paper's)"
        )
        if spec.rank_known():
            table.add_row(
                "rank at the noise floor",
                f"{spec.rank():,} (threshold {spec.threshold():.3e}: rounding of float32 gradients)",
            )
    except ValueError as err:
        table.add_row("rank", f"undetermined with k = {k}: {err}")
    table.add_row("λ_max", f"{spec.lambda_max:.4e}")
    table.add_row("top eigenvalues", ", ".join(f"{v:.3e}" for v in spec.eigenvalues[:5]))
    table.add_row(
        "effective rank",
        f"{spec.effective_rank():.1f} (entropy), participation ratio {spec.participation_ratio():.1f}",
    )
    table.add_row("trace D", f"{spec.trace:.4e}")
    table.add_row(
        "time",
        f"{seconds:.1f} s ({noise.passes:g} data pass(es), {spec.iterations} eigensolver pass(es))",
    )
    table.add_row("written", f"{out}/summary.json, eigenvalues.npy, spectrum.png")
    console.print(table)


def dataset_description(data_dir: Path | None, n: int) -> str:
    """Where the data came from, for the summary."""
    return (
        f"MNIST IDX files in {data_dir}, N = {n}" if data_dir else f"embedded MNIST subset, N = {n}"
    )
