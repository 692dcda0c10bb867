"""``sgdscope reproduce``: rerun the paper's experiments and write the HTML report.

``sgdscope reproduce --quick`` runs everything on the embedded data in under 10 minutes on two
CPU cores; ``sgdscope reproduce [OPTIONS] spectra|trajectory|toy|scaling|nonequilibrium`` runs one experiment;
``report`` re-renders ``OUT/report/index.html`` from the results on disk. Every experiment saves
``OUT/<name>/result.json`` and resumes from its checkpoints when rerun on the same ``--out``.
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import torch
from rich.console import Console
from rich.table import Table

from ._options import check_cifar_dir, check_device, check_mnist_dir, make_out

_VERDICT_STYLE = {
    "reproduced": "green",
    "partly reproduced": "yellow",
    "not reproduced": "red",
    "not testable here": "dim",
}


# Wall times of the full protocol on the CPU, measured for docs/REPRODUCTION.md on 2026-11-26: two
# cores of an AMD EPYC, one torch thread, the cores shared with another full run (about twice a
# quiet machine's times). spectra: 35 min with D on 20,000 samples, about 60 min on all 60,000.
_FULL_CPU_MINUTES = {
    "spectra": 60.0,
    "trajectory": 76.0,
    "toy": 1.5,
    "scaling": 50.0,
    "nonequilibrium": 40.0,
}


def _minutes(m: float) -> str:
    return f"{m:.0f} min" if m < 90 else f"{m / 60:.1f} h"


def _full_cpu_estimate(run_ctx, names: tuple[str, ...], overrides: dict | None) -> str | None:
    """What a full-protocol CPU run of ``names`` will cost, said before it starts."""
    if run_ctx.quick or run_ctx.device != "cpu" or not names:
        return None
    parts = []
    for name in names:
        m = _FULL_CPU_MINUTES[name]
        if name == "spectra" and overrides and (overrides.get("n_spectrum") or 60_000) <= 20_000:
            m = 35.0
        parts.append((name, m))
    total = sum(m for _, m in parts)
    text = ", ".join(f"{n} ≈ {_minutes(m)}" for n, m in parts)
    cifar = (
        " Each CIFAR network adds about 1 h of training and hours of D on the CPU."
        if "spectra" in names and (run_ctx.cifar_dir or run_ctx.cifar100_dir)
        else ""
    )
    return (
        f"Full protocol on the CPU: expect about {_minutes(total)} ({text}; measured on 2 shared "
        f"cores, one torch thread).{cifar} Results already in {run_ctx.out} are reused; Ctrl-C "
        f"stops and a rerun resumes. For a first look: --quick (< 10 min)."
    )


def _print_result(console: Console, run_ctx, experiment, result) -> None:
    """The experiment's table of claims and what this call did."""
    table = Table(show_header=True, header_style="bold", expand=False)
    for col in ("claim", "paper", "measured", "verdict"):
        table.add_column(col, overflow="fold", max_width=48 if col != "verdict" else 18)
    for c in result.comparisons:
        style = _VERDICT_STYLE.get(c.verdict.value, "")
        table.add_row(c.claim, c.paper, c.measured, f"[{style}]{c.verdict.value}[/]")
    console.print(table)
    seconds, reused = experiment.this_call(result)
    took = f"{seconds:.0f} s this call" if seconds is not None else "done"
    console.print(
        f"{experiment.name}: {took}"
        + (f"; reused from earlier calls: {reused}" if reused else "")
        + f"; written to {run_ctx.out / experiment.name}"
    )


def _run(
    ctx_obj: dict, run_ctx, names: tuple[str, ...] | None, overrides: dict | None = None
) -> None:
    """Run the experiments ``names`` (None: all, in report order) and render the report."""
    from .._checkpoint import CheckpointError
    from ..paper.cifar import CifarFormatError
    from ..paper.idx import IdxFormatError
    from ..report import render_report
    from ..reproduce import EXPERIMENTS

    console: Console = ctx_obj["console"]
    names = tuple(EXPERIMENTS) if names is None else names
    estimate = _full_cpu_estimate(run_ctx, names, overrides)
    if estimate:
        console.print(estimate)
    t0 = time.perf_counter()
    try:
        for name in names:
            console.rule(f"[bold]reproduce {name}[/]" + (" (quick)" if run_ctx.quick else ""))
            experiment = EXPERIMENTS[name]
            settings = experiment.settings_for(run_ctx, overrides) if overrides else None
            _print_result(console, run_ctx, experiment, experiment.run(run_ctx, settings))
            page = render_report(run_ctx.out)  # after each experiment: nothing finished is lost
        if not names:
            page = render_report(run_ctx.out)
    except (OSError, CheckpointError, CifarFormatError, IdxFormatError) as err:
        raise click.ClickException(f"{type(err).__name__}: {err}") from err
    console.print(
        f"report: [bold]{page}[/] (results.json and results.md beside it); "
        f"total {time.perf_counter() - t0:.0f} s"
    )


def _shared_options(sub: bool):
    """The options of ``reproduce``, accepted before the subcommand and after it.

    After the subcommand they default to None ("not given"), so that a value given before it
    stays in force (``reproduce --quick spectra`` and ``reproduce spectra --quick`` agree).

    Returns:
        A decorator that adds the options to a click command.
    """

    def default(value):
        return None if sub else value

    options = [
        click.option(
            "--quick",
            is_flag=True,
            default=False,
            help="Reduced sizes on the embedded data (< 10 min on 2 CPU cores); figures are "
            "labelled as reduced.",
        ),
        click.option(
            "--out",
            type=click.Path(file_okay=False, path_type=Path),
            default=default(Path("out/reproduce")),
            show_default=not sub,
            help="Output folder; rerunning on the same folder resumes.",
        ),
        click.option(
            "--data-dir",
            "mnist_dir",
            type=click.Path(exists=True, file_okay=False, path_type=Path),
            help="Folder with the MNIST IDX files (train and t10k, .gz or not); default: the "
            "embedded subset.",
        ),
        click.option(
            "--cifar-dir",
            type=click.Path(exists=True, path_type=Path),
            help="CIFAR-10 archive (binary or python version) or a folder holding it; without it "
            "the CIFAR-10 panels are reported as not testable here.",
        ),
        click.option(
            "--cifar100-dir",
            type=click.Path(exists=True, path_type=Path),
            help="The same for CIFAR-100 (Fig. 2b).",
        ),
        click.option(
            "--mnist-resize",
            type=click.Choice(["area", "authors"]),
            default=default("area"),
            show_default=not sub,
            help="How the 7×7 MNIST of small-fc and tiny-fc is made: 4×4 block means, or the "
            "authors' halfmnist (byte overflow + bilinear resize; docs/data.md).",
        ),
        click.option(
            "--device",
            default=default("cpu"),
            show_default=not sub,
            callback=check_device,
            help="cpu, cuda or cuda:N. cuda speeds up the lenet and allcnn training and D; the "
            "917-weight tiny-fc trajectory runs faster on cpu (docs/benchmarks/reproduce.md).",
        ),
        click.option(
            "--seed", type=click.IntRange(min=0), default=default(0), show_default=not sub
        ),
        click.option(
            "--threads",
            type=click.IntRange(min=1),
            help="torch CPU threads; default: torch's choice. On a busy machine 1 is often faster.",
        ),
        click.option("--no-progress", is_flag=True, default=False, help="Do not draw progress."),
    ]

    def apply(f):
        for option in reversed(options):
            f = option(f)
        return f

    return apply


_FLAGS = ("quick", "no_progress")


def _merge(obj: dict, given: dict) -> dict:
    """The group's options overridden by those given after the subcommand."""
    params = dict(obj["params"])
    for key, value in given.items():
        if value is not None and not (key in _FLAGS and value is False):
            params[key] = value
    return params


def _context(params: dict):
    """The RunContext of these options, after every check that can fail before work starts."""
    from ..reproduce.context import RunContext

    check_mnist_dir(params["mnist_dir"])
    check_cifar_dir(params["cifar_dir"], 10, "--cifar-dir")
    check_cifar_dir(params["cifar100_dir"], 100, "--cifar100-dir")
    make_out(params["out"])
    if params["threads"] is not None:
        torch.set_num_threads(params["threads"])
    return RunContext(
        out=params["out"],
        quick=params["quick"],
        device=params["device"],
        mnist_dir=params["mnist_dir"],
        cifar_dir=params["cifar_dir"],
        cifar100_dir=params["cifar100_dir"],
        mnist_resize=params["mnist_resize"],
        seed=params["seed"],
        progress=not params["no_progress"],
    )


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@_shared_options(sub=False)
@click.pass_context
def reproduce(ctx, **params):
    """Rerun the paper's experiments and compare them, number by number, with the paper.

    Without a subcommand, runs all five (spectra, trajectory, toy, scaling, nonequilibrium) and
    writes OUT/report/index.html (self-contained) and OUT/report/results.json. The options may be
    given before or after the subcommand (``reproduce --quick spectra`` = ``reproduce spectra --quick``).
    """
    ctx.obj = {"console": Console(), "params": params}
    if ctx.invoked_subcommand is None:
        _run(ctx.obj, _context(params), None)


def _subcommand(name: str, doc: str) -> click.Command:
    @_shared_options(sub=True)
    @click.pass_obj
    def command(obj, **given) -> None:
        _run(obj, _context(_merge(obj, given)), None if name == "all" else (name,))

    command.__doc__ = doc
    return click.command(name)(command)


@reproduce.command("spectra")
@click.option(
    "--n-spectrum",
    type=click.IntRange(min=2),
    help="Measure D on the first N training samples (default: all, as the paper; quick: 2,000).",
)
@click.option(
    "--cifar-n-spectrum",
    type=click.IntRange(min=2),
    help="The same for the CIFAR panels only (default: follows --n-spectrum).",
)
@_shared_options(sub=True)
@click.pass_obj
def spectra(obj, n_spectrum, cifar_n_spectrum, **given) -> None:
    """Figures 1–2: D(x)'s eigenspectrum and rank at 20/40/100 % of training, per network."""
    overrides = {"n_spectrum": n_spectrum, "cifar_n_spectrum": cifar_n_spectrum}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    _run(obj, _context(_merge(obj, given)), ("spectra",), overrides)


reproduce.add_command(
    _subcommand(
        "trajectory",
        "Figure 3: the long tiny-fc run; FFT, autocorrelation, gradient norm, equilibrium test, "
        "flux, MSD.",
    )
)
reproduce.add_command(
    _subcommand("toy", "Figure 4: Example 19 for λ ∈ {0, 0.5, 1.5}, solved and simulated.")
)
reproduce.add_command(
    _subcommand(
        "scaling",
        "Remarks 11–12: fixed η/b across batch sizes; with against without replacement.",
    )
)
reproduce.add_command(
    _subcommand(
        "nonequilibrium",
        "Beyond the paper: detailed balance tested on stationary runs (weight decay, no "
        "BatchNorm, the Fig. 3 record in scale-invariant coordinates), currents in subspaces "
        "and the linear theory.",
    )
)
reproduce.add_command(
    _subcommand("all", "Run spectra, trajectory, toy, scaling and nonequilibrium, then the report.")
)


@reproduce.command("report")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder of the results (default: the one given before the subcommand).",
)
@click.pass_obj
def report(obj, out) -> None:
    """Re-render OUT/report/index.html, results.json and results.md from the results on disk."""
    _run(obj, _context(_merge(obj, {"out": out})), ())
