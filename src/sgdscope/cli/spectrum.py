"""``sgdscope spectrum``: the eigenspectrum and rank of D(x), in one process or under torchrun.

The model is one of the paper's networks or a user's own; under ``torchrun`` the data is split
into one contiguous shard per rank (data parallelism).

A user's model comes from a *factory*, ``--model package.module:function``: a function of no
arguments that returns ``(model, loss_fn, data)``: an ``nn.Module``, a per-sample loss
(``reduction="none"``) and the whole data set in any form :class:`~sgdscope.GradientNoise`
takes (tensors, a dict with ``"labels"``, a Dataset or a DataLoader). Under ``torchrun`` every
rank calls it and keeps its contiguous shard of the data.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from datetime import timedelta
from fnmatch import fnmatchcase
from pathlib import Path

import click
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from ._options import check_device, check_mnist_dir, make_out

_METHODS = ["auto", "dense", "gram", "randomized"]
_MODELS = ["small-lenet", "small-fc", "tiny-fc"]
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}  # fmt: skip


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


def _check_model(ctx, param, value: str) -> str:
    """Click callback: a paper network's name, or ``package.module:function``."""
    if value in _MODELS or ":" in value:
        return value
    raise click.BadParameter(
        f"{value!r} is neither one of the paper's networks ({', '.join(_MODELS)}) nor a factory "
        "'package.module:function' (a function returning (model, loss_fn, data))."
    )


def _parse_bytes(ctx, param, value: str | None) -> int | None:
    """Click callback: '512MiB', '2GB', '1e9' → bytes."""
    if value is None:
        return None
    text = value.strip().lower().replace(" ", "")
    number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = text[len(number) :]
    try:
        size = float(number) * _UNITS[unit]
    except (ValueError, KeyError):
        raise click.BadParameter(
            f"{value!r} is not a size; write e.g. 512MiB, 2GiB or 4e9 (bytes)."
        ) from None
    if size < 1:
        raise click.BadParameter(f"{value!r} is not a positive size.")
    return int(size)


def load_factory(spec: str):
    """The model, loss and data of a factory ``package.module:function`` (usage errors named)."""
    import importlib
    import sys

    module_name, _, attr = spec.partition(":")
    hint = "--model"
    if os.getcwd() not in sys.path:  # as `python -m` does: modules beside the user come first
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise click.BadParameter(
            f"cannot import module {module_name!r} of {spec!r} ({err}); it must be importable "
            "from the current directory or the installed packages (check PYTHONPATH).",
            param_hint=hint,
        ) from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise click.BadParameter(
            f"{module_name!r} has no function {attr!r}; pass --model {module_name}:NAME with NAME "
            "a function that returns (model, loss_fn, data).",
            param_hint=hint,
        )
    built = factory()
    if isinstance(built, dict):
        built = tuple(built.get(k) for k in ("model", "loss_fn", "data"))
    if not (
        isinstance(built, tuple | list)
        and len(built) == 3
        and isinstance(built[0], torch.nn.Module)
        and callable(built[1])
    ):
        raise click.BadParameter(
            f"{spec} returned {type(built).__name__}; a factory must return (model, loss_fn, "
            "data): an nn.Module, a per-sample loss (reduction='none') and the data set.",
            param_hint=hint,
        )
    return tuple(built)


@contextmanager
def _process_group(device: str, timeout: float):
    """Join the process group torchrun describes (WORLD_SIZE > 1), gloo on CPU, NCCL on CUDA."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or dist.is_initialized():
        yield device
        return
    if device.startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    dist.init_process_group(
        "nccl" if device.startswith("cuda") else "gloo", timeout=timedelta(seconds=timeout)
    )
    try:
        yield device
        # leave together: a rank that tears gloo down while rank 0 still writes its files can
        # abort at exit ("terminate called without an active exception", seen under load)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _select(model: torch.nn.Module, patterns: str | None) -> list[str] | None:
    """Parameter names matching the comma-separated globs of --params (None: all)."""
    if patterns is None:
        return None
    globs = [p.strip() for p in patterns.split(",") if p.strip()]
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    chosen = [n for n in names if any(fnmatchcase(n, g) for g in globs)]
    if not chosen:
        raise click.BadParameter(
            f"{patterns!r} matches none of the model's parameters: "
            f"{', '.join(names[:8])}{' …' if len(names) > 8 else ''}. Use globs such as "
            "'fc.*' or '*.weight' (comma-separated).",
            param_hint="--params",
        )
    return chosen


def _write(path: Path, write) -> None:
    """Write a file through a temporary name, so that a stopped run leaves no partial file."""
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")  # same suffix: same format
    write(tmp)
    os.replace(tmp, path)


@click.command()
@click.option(
    "--model",
    "model_name",
    default="small-lenet",
    show_default=True,
    callback=_check_model,
    help="One of the paper's MNIST networks (small-lenet, small-fc, tiny-fc), or your own: "
    "package.module:function, a function returning (model, loss_fn, data).",
)
@click.option(
    "--checkpoint",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A saved state_dict (or a dict holding one under 'state_dict'/'model'); default: the initial weights (Remark 16: D can be read before training).",
)
@click.option(
    "--data-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder with the MNIST IDX files (the paper's networks); default: the embedded subset.",
)
@click.option(
    "--n-samples",
    type=click.IntRange(min=2),
    help="Use N samples: a class-balanced subset for the paper's networks, the first N of a "
    "factory's data; default: all.",
)
@click.option(
    "--k",
    type=click.IntRange(min=1),
    help="Number of eigenpairs; default: all above the rank threshold.",
)
@click.option("--method", type=click.Choice(_METHODS), default="auto", show_default=True)
@click.option(
    "--params",
    help="Measure only the parameters whose names match these globs (comma-separated, e.g. "
    "'head.*,*.bias'); default: every parameter that requires grad.",
)
@click.option(
    "--per-group",
    type=click.Choice(["layer", "module"]),
    help="Also the spectrum of each layer's (or top-level module's) block of D: groups.json.",
)
@click.option(
    "--precision",
    type=click.Choice(["float64", "mixed"]),
    default="float64",
    show_default=True,
    help="Products inside a chunk in float64, or in the model's dtype (mixed).",
)
@click.option(
    "--memory-budget",
    callback=_parse_bytes,
    help="Bytes sgdscope may allocate per rank, e.g. 8GiB; default: half the device's memory.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the initial weights and of the randomized eigensolver.",
)
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    callback=check_device,
    help="cpu, cuda or cuda:N (under torchrun, cuda means each rank's LOCAL_RANK device).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=1800.0,
    show_default=True,
    help="Under torchrun: seconds a rank waits for the others in a collective before every "
    "rank stops (at least the longest difference between two ranks' data passes).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("out/spectrum"),
    show_default=True,
)
def spectrum(
    model_name, checkpoint, data_dir, n_samples, k, method, params, per_group, precision,
    memory_budget, seed, device, timeout, out,
) -> None:  # fmt: skip
    """Measure the eigenspectrum and rank of the gradient-noise matrix D(x) (paper §IV-A, Fig. 1).

    Prints a memory plan first (refusing one that does not fit), then rank (with its threshold),
    rank %, top eigenvalues and effective rank; writes OUT/summary.json, OUT/eigenvalues.npy and
    OUT/spectrum.png (and OUT/groups.json with --per-group). Run it under `torchrun
    --nproc_per_node P -m sgdscope spectrum ...` to spread the data over P processes: rank 0
    prints and writes.
    """
    check_mnist_dir(data_dir)
    make_out(out)
    with _process_group(device, timeout) as device:
        _run(model_name, checkpoint, data_dir, n_samples, k, method, params, per_group,
             precision, memory_budget, seed, device, out)  # fmt: skip


def _build(model_name, data_dir, n_samples, seed):
    """(model, loss, data, description of the data, the paper's threshold?) before sharding."""
    from ..noise.distributed import subset

    if ":" in model_name:
        model, loss_fn, data = load_factory(model_name)
        from ..noise._data import DataSource

        try:
            n = DataSource(data, where=model_name).n
        except (TypeError, ValueError) as err:
            raise click.BadParameter(f"{model_name} returned unusable data: {err}",
                                     param_hint="--model") from None  # fmt: skip
        if n_samples is not None and n_samples < n:
            data, n = subset(data, 0, n_samples), n_samples
        return model, loss_fn, data, f"{model_name} data, N = {n}", False
    from ..paper import data as paper_data
    from ..paper import models

    model = models.build(model_name, seed=seed)
    dataset = paper_data.mnist_for(model_name, data_dir, n=n_samples)
    inputs, targets = dataset.tensors()
    loss = torch.nn.CrossEntropyLoss(reduction="none")
    return model, loss, (inputs, targets), dataset_description(data_dir, len(targets)), True


def _run(model_name, checkpoint, data_dir, n_samples, k, method, params, per_group, precision,
         memory_budget, seed, device, out) -> None:  # fmt: skip
    from .._memory import MemoryBudgetError
    from ..noise import GradientNoise
    from ..noise.distributed import RankError, shard
    from ..report.fig_spectrum import plot_spectrum
    from ..report.style import save_figure

    t0 = time.perf_counter()
    model, loss_fn, data, description, paper = _build(model_name, data_dir, n_samples, seed)
    if checkpoint is not None:
        _load_checkpoint(model, checkpoint)
    names = _select(model, params)
    try:
        local = shard(data)
        noise = GradientNoise(
            model.to(device).eval(), loss_fn, local, params=names, device=device,
            progress=True, memory_budget=memory_budget,
        )  # fmt: skip
    except RankError as err:
        raise click.ClickException(str(err)) from err
    except (ValueError, TypeError) as err:
        raise click.UsageError(str(err)) from err
    console = Console(quiet=noise.rank != 0)  # rank 0 alone prints and writes
    if k is not None:  # D is a covariance of N centred gradients in d dimensions
        max_rank = max(min(noise.n_samples - 1, noise.dim), 1)
        if k > max_rank:
            raise click.BadParameter(
                f"{k} is more eigenpairs than D has: D of {model_name} on N = {noise.n_samples:,} "
                f"samples (d = {noise.dim:,}) has rank at most min(N − 1, d) = {max_rank:,}. Pass "
                f"--k {max_rank} or less, or omit --k for every eigenvalue above the threshold.",
                param_hint="--k",
            )
    weights = f"checkpoint {checkpoint}" if checkpoint else f"initial weights, seed {seed}"
    ranks = f", {noise.world_size} ranks" if noise.world_size > 1 else ""
    console.print(
        f"[bold]{model_name}[/]: d = {noise.dim:,} parameters, N = {noise.n_samples:,} samples "
        f"({weights}{ranks}), eval mode"
    )
    try:
        plan = noise.memory_plan(k=k, method=method, groups=per_group)
    except MemoryBudgetError as err:
        raise click.UsageError(str(err)) from err
    for line in plan.lines():
        console.print(line, highlight=False)
    if not plan.fits:
        advice = (
            f"pass --k {plan.largest_k} or less (randomized method)"
            if plan.largest_k >= 1
            else "measure fewer parameters (--params) or fewer samples (--n-samples)"
        )
        raise click.UsageError(
            f"the memory plan does not fit: {plan.method} with k = {k or 'all'} needs about "
            f"{plan.total:,} bytes per rank, over the budget of {plan.budget:,}; {advice}, or "
            f"raise --memory-budget to at least {plan.total:,}."
        )
    rtol = "paper" if paper else None  # the paper's networks: its threshold; else the noise floor
    try:
        spec = noise.spectrum(k=k, method=method, seed=seed, rtol=rtol, precision=precision)
        groups = noise.group_spectra(per_group, k=k, precision=precision) if per_group else None
    except RankError as err:
        raise click.ClickException(str(err)) from err
    seconds = time.perf_counter() - t0
    if noise.rank != 0:
        return
    summary = spec.summary(rtol)
    summary.update(
        model=model_name,
        checkpoint=str(checkpoint) if checkpoint else None,
        data=description,
        params=names,
        precision=precision,
        world_size=noise.world_size,
        seconds_total=seconds,
        memory_plan={
            "total": plan.total,
            "budget": plan.budget,
            "solver": plan.solver_bytes,
            "chunk": plan.chunk_bytes,
            "cache": plan.cache_bytes,
        },
        layout=noise.layout.to_dict(),
    )
    _write(out / "eigenvalues.npy", lambda p: np.save(p, spec.eigenvalues))
    label = model_name.rpartition(":")[2] if not paper else model_name
    figure = plot_spectrum(
        spec, labels=[label], title=f"D(x) of {label}, N = {noise.n_samples:,}", rtol=rtol
    )
    _write(out / "spectrum.png", lambda p: save_figure(figure, p))
    if groups is not None:
        per = {g: s.summary(rtol) for g, s in groups.items()}
        _write(out / "groups.json", lambda p: p.write_text(json.dumps(per, indent=2)))
    _write(out / "summary.json", lambda p: p.write_text(json.dumps(summary, indent=2)))
    _report(console, spec, groups, rtol, k, seconds, noise, out)


def _report(console, spec, groups, rtol, k, seconds, noise, out) -> None:
    table = Table(show_header=False, box=None)
    table.add_row("method", f"{spec.method} ({spec.reason})")
    try:
        rank = spec.rank(rtol)
        table.add_row("rank", f"{rank:,} of d = {spec.dim:,} ({100 * rank / spec.dim:.2f} %)")
        rule = "λ_max · d · ε_float32 (the paper's)" if rtol == "paper" else "the noise floor"
        table.add_row("threshold", f"{spec.threshold(rtol):.3e} = {rule}")
        if rtol == "paper" and spec.rank_known():
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
    if groups:
        top = sorted(groups.items(), key=lambda kv: -kv[1].trace)[:5]
        table.add_row("largest groups (tr D)", ", ".join(f"{g}: {s.trace:.3e}" for g, s in top))
    table.add_row(
        "time",
        f"{seconds:.1f} s ({noise.passes:g} data pass(es), {spec.iterations} eigensolver pass(es))",
    )
    written = "summary.json, eigenvalues.npy, spectrum.png" + (", groups.json" if groups else "")
    table.add_row("written", f"{out}/{written}")
    console.print(table)


def dataset_description(data_dir: Path | None, n: int) -> str:
    """Where the data came from, for the summary."""
    return (
        f"MNIST IDX files in {data_dir}, N = {n}" if data_dir else f"embedded MNIST subset, N = {n}"
    )
