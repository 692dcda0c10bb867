"""``sgdscope reproduce``: rerun the paper's experiments and write the HTML report.

``sgdscope reproduce --quick`` runs everything on the embedded data in under 10 minutes on two
CPU cores; ``sgdscope reproduce [OPTIONS] spectra|trajectory|toy|scaling`` runs one experiment;
``report`` re-renders ``OUT/report/index.html`` from the results on disk. Every experiment saves
``OUT/<name>/result.json`` and resumes from its checkpoints when rerun on the same ``--out``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import click
import torch
from rich.console import Console
from rich.table import Table

EXPERIMENTS = ("spectra", "trajectory", "toy", "scaling")
_VERDICT_STYLE = {
    "reproduced": "green",
    "partly reproduced": "yellow",
    "not reproduced": "red",
    "not testable here": "dim",
}


def _module(name: str):
    from ..reproduce import scaling, spectra, toy, trajectory

    return {"spectra": spectra, "trajectory": trajectory, "toy": toy, "scaling": scaling}[name]


def _run(ctx_obj: dict, names: tuple[str, ...], overrides: dict | None = None) -> None:
    from ..reproduce.html_report import render_report
    from ..reproduce.markdown_report import render_markdown

    console: Console = ctx_obj["console"]
    run_ctx = ctx_obj["run"]
    if run_ctx.device.startswith("cuda") and not torch.cuda.is_available():
        raise click.BadParameter(
            f"{run_ctx.device!r} was asked for but torch sees no CUDA device; use --device cpu.",
            param_hint="--device",
        )
    t0 = time.perf_counter()
    for name in names:
        console.rule(f"[bold]reproduce {name}[/]" + (" (quick)" if run_ctx.quick else ""))
        module = _module(name)
        settings = None
        if overrides:
            base = module.Settings.quick() if run_ctx.quick else module.Settings.full()
            settings = dataclasses.replace(base, **overrides)
        result = module.run(run_ctx, settings)
        table = Table(show_header=True, header_style="bold", expand=False)
        for col in ("claim", "paper", "measured", "verdict"):
            table.add_column(col, overflow="fold", max_width=48 if col != "verdict" else 18)
        for c in result.comparisons:
            style = _VERDICT_STYLE.get(c.verdict.value, "")
            table.add_row(c.claim, c.paper, c.measured, f"[{style}]{c.verdict.value}[/]")
        console.print(table)
        console.print(f"{name}: {result.seconds:.0f} s, written to {run_ctx.out / name}")
        page = render_report(run_ctx.out)  # after each experiment: nothing finished is lost
        render_markdown(run_ctx.out)
    if not names:
        page = render_report(run_ctx.out)
        render_markdown(run_ctx.out)
    console.print(
        f"report: [bold]{page}[/] (results.json and results.md beside it); "
        f"total {time.perf_counter() - t0:.0f} s"
    )


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--quick",
    is_flag=True,
    help="Reduced sizes on the embedded data (< 10 min on 2 CPU cores); figures are labelled "
    "as reduced.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("out/reproduce"),
    show_default=True,
    help="Output folder; rerunning on the same folder resumes.",
)
@click.option(
    "--data-dir",
    "mnist_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder with the MNIST IDX files (e.g. ../shared/data/mnist); default: the embedded "
    "subset.",
)
@click.option(
    "--cifar-dir",
    type=click.Path(exists=True, path_type=Path),
    help="CIFAR-10 archive (binary or python version) or a folder holding it; without it the "
    "CIFAR-10 panels are reported as not testable here.",
)
@click.option(
    "--cifar100-dir",
    type=click.Path(exists=True, path_type=Path),
    help="The same for CIFAR-100 (Fig. 2b).",
)
@click.option(
    "--mnist-resize",
    type=click.Choice(["area", "authors"]),
    default="area",
    show_default=True,
    help="How the 7×7 MNIST of small-fc and tiny-fc is made: 4×4 block means, or the authors' "
    "halfmnist (byte overflow + bilinear resize; docs/data.md).",
)
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    help="cpu or cuda. cuda speeds up the lenet and allcnn training and D; the 917-weight "
    "tiny-fc trajectory runs faster on cpu (docs/benchmarks/reproduce.md).",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    help="torch CPU threads; default: torch's choice. On a busy machine 1 is often faster.",
)
@click.option("--no-progress", is_flag=True, help="Do not draw progress bars.")
@click.pass_context
def reproduce(
    ctx,
    quick,
    out,
    mnist_dir,
    cifar_dir,
    cifar100_dir,
    mnist_resize,
    device,
    seed,
    threads,
    no_progress,
):
    """Rerun the paper's experiments and compare them, number by number, with the paper.

    Without a subcommand, runs all four (spectra, trajectory, toy, scaling) and writes
    OUT/report/index.html (self-contained) and OUT/report/results.json.
    """
    from ..reproduce.context import RunContext

    if threads is not None:
        torch.set_num_threads(threads)
    ctx.obj = {
        "console": Console(),
        "run": RunContext(
            out=out,
            quick=quick,
            device=device,
            mnist_dir=mnist_dir,
            cifar_dir=cifar_dir,
            cifar100_dir=cifar100_dir,
            mnist_resize=mnist_resize,
            seed=seed,
            progress=not no_progress,
        ),
    }
    if ctx.invoked_subcommand is None:
        _run(ctx.obj, EXPERIMENTS)


def _subcommand(name: str, doc: str) -> click.Command:
    @click.pass_obj
    def command(obj) -> None:
        _run(obj, EXPERIMENTS if name == "all" else (name,))

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
@click.pass_obj
def spectra(obj, n_spectrum, cifar_n_spectrum) -> None:
    """Figures 1–2: D(x)'s eigenspectrum and rank at 20/40/100 % of training, per network."""
    overrides = {"n_spectrum": n_spectrum, "cifar_n_spectrum": cifar_n_spectrum}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides:  # fewer samples than the paper's: the report labels the run as reduced
        overrides["reduced"] = True
    _run(obj, ("spectra",), overrides)


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
    _subcommand("all", "Run spectra, trajectory, toy and scaling, then the report.")
)


@reproduce.command("report")
@click.pass_obj
def report(obj) -> None:
    """Re-render OUT/report/index.html, results.json and results.md from the results on disk."""
    _run(obj, ())
