"""``sgdscope analyze``: the trajectory diagnostics of issue 4 on a recorded run or a .npy array."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click
import numpy as np
from rich.console import Console

from ..report.dashboard import DASHBOARD_FILE
from ..report.fig_trajectory import (
    plot_autocorrelation,
    plot_equilibrium,
    plot_flux,
    plot_gradient_norm,
    plot_msd,
    plot_power_spectrum,
)
from ..report.style import save_figure
from ..trajectory import analysis
from ..trajectory.projection import pca_projection
from ..trajectory.trajectory import load_trajectory
from ._options import make_out
from .dashboard import write_dashboard


def _open(path: Path):
    """A Trajectory directory, or a .npy array of shape (T, d) (memory-mapped)."""
    if path.is_file() and path.suffix == ".npy":
        try:
            x = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise click.ClickException(
                f"{path} is not a .npy array of shape (T, d) that can be read without pickle "
                f"({type(exc).__name__}); write the snapshots with numpy.save(path, x) where x "
                f"is a float array of shape (T, d), or pass a trajectory directory."
            ) from None
        if x.ndim != 2:
            raise click.ClickException(
                f"{path} holds an array of shape {x.shape}; expected (T, d)."
            )
        return x
    try:
        return load_trajectory(path)
    except (FileNotFoundError, ValueError) as exc:  # TrajectoryFormatError is a ValueError
        raise click.ClickException(
            f"{path} is neither a trajectory directory nor a .npy array of shape (T, d): {exc}"
        ) from exc


def _window(source, start: int | None, stop: int | None, every: int | None):
    """The snapshots ``source[start:stop:every]`` as an array, and a description of the window."""
    n = len(source)
    rows = range(n)[slice(start, stop, every)]
    if len(rows) < 3:
        raise click.BadParameter(
            f"--start {start}, --stop {stop}, --every {every} select {len(rows)} of the {n:,} "
            f"snapshots of {'the trajectory' if hasattr(source, 'weights') else 'the array'}; "
            f"choose a window of at least 3 (the analyses need far more, about 200 or more).",
            param_hint="--start/--stop/--every",
        )
    if hasattr(source, "weights"):
        x = source.weights[rows.start : rows.stop : rows.step]
        steps = source.steps[rows.start : rows.stop : rows.step]
    else:
        x = np.asarray(source[rows.start : rows.stop : rows.step])
        steps = np.arange(n)[rows.start : rows.stop : rows.step]
    window = {
        "start": rows.start,
        "stop": rows.stop,
        "every": rows.step,
        "snapshots": len(rows),
        "of": n,
        "first_step": int(steps[0]),
        "last_step": int(steps[-1]),
    }
    return x, window


def _gradient_window(gn, window: dict):
    """The gradient norms recorded within the window's steps (smoothed over the whole run)."""
    keep = (gn.steps >= window["first_step"]) & (gn.steps <= window["last_step"])
    return dataclasses.replace(
        gn, steps=gn.steps[keep], value=gn.value[keep], smoothed=gn.smoothed[keep]
    )


def _parse_project(text: str) -> int | None:
    if text == "none":
        return None
    kind, _, k = text.partition(":")
    if kind != "pca" or not k.isdigit() or int(k) < 2:
        raise click.BadParameter(f"expected 'none' or 'pca:K' with K ≥ 2, got {text!r}.")
    return int(k)


@click.command()
@click.argument("traj", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Output folder (created).",
)
@click.option(
    "--project",
    "project",
    default="none",
    show_default=True,
    help="Coordinates for the spectrum, autocorrelation and MSD: 'none' (all weights, "
    "as the paper) or 'pca:K' (top-K principal components). The flux and the "
    "equilibrium test always work in a PCA plane (pca:K sets its dimension).",
)
@click.option(
    "--surrogates",
    type=click.IntRange(min=19),
    default=199,
    show_default=True,
    help="Surrogates of the reversible null model.",
)
@click.option(
    "--alpha",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.05,
    show_default=True,
    help="Level of the equilibrium test.",
)
@click.option(
    "--bins",
    type=click.IntRange(min=2),
    default=12,
    show_default=True,
    help="Cells per axis of the flux grid.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the surrogates.")
@click.option(
    "--start",
    type=int,
    help="First snapshot of the window to analyse (0-based; negative counts from the end), "
    "e.g. to skip the transient the verdict warns about.",
)
@click.option("--stop", type=int, help="End of the window (exclusive; negative from the end).")
@click.option(
    "--every",
    type=click.IntRange(min=1),
    help="Keep every this many snapshots of the window (thinning).",
)
@click.option(
    "--html",
    is_flag=True,
    help="Also write OUT/dashboard.html, the page of `sgdscope dashboard TRAJ` (the whole "
    "record, with D's measurements when sg.Monitor wrote it; --surrogates, --alpha and --seed "
    "apply).",
)
def analyze(traj, out, project, surrogates, alpha, bins, seed, start, stop, every, html):
    """Diagnose whether trajectory TRAJ is at equilibrium (a recorded run or a .npy (T, d) array).

    Writes spectrum.png (increments, Fig. 3a), autocorrelation.png (Fig. 3b), gradient_norm.png
    (Fig. 3c, when recorded), msd.png, flux.png (top-2 PCA plane), equilibrium.png (the verdict)
    and summary.json; with --html, also dashboard.html (as `sgdscope dashboard`).
    """  # noqa: DOC501 (a command's docstring is its --help; its errors are click's usage errors)
    console = Console()
    k = _parse_project(project)
    source = _open(traj)
    if html and not hasattr(source, "weights"):
        raise click.BadParameter(
            f"--html draws the dashboard of a recorded run; {traj} is a .npy array. Pass the "
            "record's directory, or leave out --html.",
            param_hint="--html",
        )
    full = source
    window = None
    if start is not None or stop is not None or every is not None:
        source, window = _window(source, start, stop, every)
    make_out(out)
    try:
        x = source
        plane = "all coordinates"
        if k is not None:
            proj = pca_projection(source, k=k)
            x = proj.apply(source)
            plane = f"top-{k} principal components"
        ps = analysis.power_spectrum(x, seed=seed)
        # dense short lags (the paper's grid, T // 100 apart, aliases fast oscillations) + its grid
        n_snap = len(x)
        ac = analysis.autocorrelation(
            x,
            lags=np.unique(
                np.concatenate(
                    [
                        np.arange(min(200, n_snap - 2)),
                        np.arange(0, n_snap - 1, max(1, n_snap // 100)),
                    ]
                )
            )
            if n_snap >= 3
            else None,
        )
        m = analysis.msd(x, seed=seed)
        eq = analysis.equilibrium_test(
            source,
            n_components=k or 2,
            n_surrogates=surrogates,
            alpha=alpha,
            bins=bins,
            seed=seed,
        )
        try:
            gn = analysis.gradient_norm(full)
        except ValueError:
            gn = None  # no gradient norm was recorded (or a plain array)
        if gn is not None and window is not None:
            gn = _gradient_window(gn, window)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    files = [
        save_figure(plot_power_spectrum(ps), out / "spectrum.png"),
        save_figure(plot_autocorrelation(ac), out / "autocorrelation.png"),
        save_figure(plot_msd(m), out / "msd.png"),
        save_figure(plot_flux(eq.flux), out / "flux.png"),
        save_figure(plot_equilibrium(eq), out / "equilibrium.png"),
    ]
    if gn is not None:
        files.append(save_figure(plot_gradient_norm(gn), out / "gradient_norm.png"))
    n, d = (len(source), source.dim) if hasattr(source, "dim") else source.shape
    summary = {
        "input": str(traj),
        "window": window,
        "snapshots": int(n),
        "dim": int(d),
        "coordinates": plane,
        "spectrum": ps.summary(),
        "autocorrelation": ac.summary(),
        "msd": m.summary(),
        "equilibrium": eq.summary(),
        "gradient_norm": None if gn is None else gn.summary(),
        "references": [
            "Chaudhari & Soatto, ICLR 2018 (Fig. 3; Lemma 20)",
            "Battle et al., Science 352:604 (2016) (probability flux)",
            "Kunin et al., arXiv 2107.09133 (anomalous diffusion)",
        ],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    console.print(f"[bold]{eq.verdict}[/bold]")
    console.print(
        f"MSD exponent {m.exponent:.3f} [{m.interval[0]:.3f}, {m.interval[1]:.3f}]; "
        f"increment-spectrum peak at {ps.peak_frequency:.3g} cycles/snapshot."
    )
    if html:
        files.append(write_dashboard(traj, out / DASHBOARD_FILE, surrogates=surrogates,
                                     alpha=alpha, seed=seed, param_hint="TRAJ"))  # fmt: skip
    for f in [*files, out / "summary.json"]:
        console.print(f"wrote {f}")
