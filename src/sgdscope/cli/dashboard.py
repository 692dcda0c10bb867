"""``sgdscope dashboard``: one self-contained HTML page of a recorded (or still training) run."""

from __future__ import annotations

import os
from pathlib import Path

import click
from rich.console import Console

from ..monitor import diagnose_run
from ..report.dashboard import DASHBOARD_FILE, render_dashboard
from ..trajectory import TrajectoryFormatError

__all__ = ["dashboard", "write_dashboard"]


def write_dashboard(
    run: Path,
    out: Path | None,
    *,
    window: int | None = None,
    stride: int | None = None,
    surrogates: int = 199,
    alpha: float = 0.05,
    coordinates: int = 256,
    seed: int = 0,
    param_hint: str = "RUN",
) -> Path:
    """Diagnose the record ``run`` and write its dashboard to ``out``; progress on the console.

    Returns:
        The page written.

    Raises:
        click.BadParameter: If ``run`` is not a record (a usage error, not a traceback).
    """
    console = Console(stderr=True)
    console.print(f"reading {os.fspath(run)} and testing its windows for equilibrium")
    try:
        diagnosis = diagnose_run(
            run, window=window, stride=stride, n_surrogates=surrogates, alpha=alpha,
            max_coordinates=coordinates, seed=seed, progress=True,
        )  # fmt: skip
    except (FileNotFoundError, TrajectoryFormatError) as err:
        raise click.BadParameter(
            f"{os.fspath(run)!r} is not a record written by sg.Monitor, a training callback or "
            f"sg.TrajectoryRecorder ({err}). Pass the directory given as their path.",
            param_hint=param_hint,
        ) from None
    console.print(
        f"{len(diagnosis.trajectory):,} records, "
        f"{0 if diagnosis.record is None else len(diagnosis.record)} measurements of D, "
        f"{len(diagnosis.windows)} windows tested; drawing the figures"
    )
    return render_dashboard(diagnosis, out)


@click.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"The HTML file to write [default: RUN/{DASHBOARD_FILE}].",
)
@click.option(
    "--window",
    type=click.IntRange(min=200),
    help="Records per window of the equilibrium test [default: a quarter of the record, ≥ 200].",
)
@click.option(
    "--stride",
    type=click.IntRange(min=1),
    help="Records between two windows' starts [default: half a window].",
)
@click.option(
    "--surrogates",
    type=click.IntRange(min=19),
    default=199,
    show_default=True,
    help="Surrogates of each window's equilibrium test.",
)
@click.option(
    "--alpha",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.05,
    show_default=True,
    help="Level of each window's equilibrium test.",
)
@click.option(
    "--coordinates",
    type=click.IntRange(min=2),
    default=256,
    show_default=True,
    help="Single weights the trajectory panels use (drawn with --seed).",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the single weights and of the surrogates.")  # fmt: skip
def dashboard(run, out, window, stride, surrogates, alpha, coordinates, seed):
    """Write one self-contained HTML page of the recorded training run RUN.

    RUN is the directory of sg.Monitor, of a Lightning or Hugging Face SgdscopeCallback, or of
    sg.TrajectoryRecorder. The page shows D's spectrum at each measurement and the overlap of its
    top eigenvectors across training (Remark 13), B_simple, tr D and the temperature against
    steps, the loss and gradient norm, equilibrium verdicts on sliding windows, and the spectrum,
    autocorrelation and MSD panels of Fig. 3. A plain trajectory record has no measurement of D:
    those panels say so. Run it again while training goes on to see the newer records.
    """
    path = write_dashboard(
        run, out, window=window, stride=stride, surrogates=surrogates, alpha=alpha,
        coordinates=coordinates, seed=seed,
    )  # fmt: skip
    click.echo(f"wrote {path}")
