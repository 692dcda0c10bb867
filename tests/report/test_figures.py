"""The plotting functions: they draw into given axes and return the figure, their legends name only
what is drawn (checked against the rendered pixels), and no arrow is cut by its frame (checked
against the rendered extents)."""

from __future__ import annotations

import dataclasses
import re
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.container import Container
from matplotlib.contour import ContourSet
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch
from matplotlib.quiver import Quiver

import sgdscope as sg
from sgdscope import analysis
from sgdscope.dynamics.fokker_planck import gaussian_density
from sgdscope.report import (
    legend,
    new_figure,
    plot_autocorrelation,
    plot_drift,
    plot_equilibrium,
    plot_flux,
    plot_gradient_norm,
    plot_msd,
    plot_power_spectrum,
    plot_spectrum,
    plot_toy,
    save_figure,
)
from sgdscope.report.style import drawn

SRC = Path(__file__).resolve().parents[2] / "src" / "sgdscope"


# ------------------------------------------------------------------------------- fixtures


def rotating_ou(n: int = 4000, d: int = 3, seed: int = 0) -> np.ndarray:
    """A 2-D Ornstein–Uhlenbeck process with rotation (a circulating, stationary process) plus
    independent coordinates: every trajectory diagnostic has something to show."""
    rng = np.random.default_rng(seed)
    a = np.zeros((d, d))
    a[:2, :2] = [[-0.05, -0.1], [0.1, -0.05]]
    a[range(2, d), range(2, d)] = -0.05
    x = np.zeros(d)
    out = np.empty((n, d))
    for t in range(n):
        x = x + a @ x + 0.3 * rng.standard_normal(d)
        out[t] = x
    return out


@pytest.fixture(scope="module")
def walk() -> np.ndarray:
    return rotating_ou()


@pytest.fixture(scope="module")
def toy():
    """Example 19 at λ = 1.5 (no loss f: the drift is not a gradient), solved on a coarse grid."""
    ex = sg.examples.double_well(lam=1.5)
    grid = sg.Grid(ex.bounds, (48, 48))
    fp = sg.FokkerPlanck(grid, drift=ex.drift, diffusion=ex.diffusion, beta=ex.beta)
    ss = fp.steady_state()
    ev = fp.evolve(
        gaussian_density(grid, np.array([0.5, 0.5]), np.eye(2) / 9), np.linspace(0, 1, 3)
    )
    paths = np.random.default_rng(0).standard_normal((20, 50, 2))
    known = np.asarray(ex.potential(grid.points), dtype=float)
    return ex, ss, fp.drift_cells, ev, paths, known


def spectrum(lam, k=None) -> sg.Spectrum:
    lam = np.asarray(lam, dtype=float)
    shown = lam if k is None else lam[:k]
    return sg.Spectrum(shown, None, lam.size, 50, float(lam.sum()), k is None, "dense")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ------------------------------------------------------------------------- the pixel oracle


def _render(fig: Figure) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba()).copy()


def _labelled(ax):
    """(label, artists) of every labelled curve of ``ax``, as matplotlib's own legend would
    collect them (``get_legend_handles_labels``), plus labelled contour sets (which matplotlib's
    legend cannot show)."""
    with warnings.catch_warnings():  # "Legend does not support handles for QuadContourSet"
        warnings.simplefilter("ignore", UserWarning)
        handles, labels = ax.get_legend_handles_labels()
    # a bar stands for its whole set of bars (ax.hist labels the first bar only)
    group = {id(p): _flat(c) for c in ax.containers for p in _flat(c)}
    out = [
        (label, _flat(h) if isinstance(h, Container) else group.get(id(h), [h]))
        for h, label in zip(handles, labels, strict=True)
    ]
    for c in ax.collections:
        if isinstance(c, ContourSet) and not c.get_label().startswith("_"):
            out.append((c.get_label(), [c]))
    return out


def _flat(container):
    parts = []
    for p in container:
        parts.extend(p if isinstance(p, list | tuple) else [p])
    return [p for p in parts if p is not None]


def painted_labels(fig: Figure, ax) -> list[str]:
    """The labels of ``ax`` whose artists change pixels of the rendered figure, each shown alone
    (every other artist of the figure hidden): the rendered image is the oracle, not the
    artists' data."""
    labelled = _labelled(ax)
    if not labelled:
        return []
    others = [a for a in fig.axes if a is not ax]
    everything = [*ax.lines, *ax.patches, *ax.collections, *ax.texts, *ax.images]
    everything += [p for c in ax.containers for p in _flat(c)]
    if ax.get_legend() is not None:
        everything.append(ax.get_legend())
    before = {id(a): a.get_visible() for a in [*everything, *others]}
    try:
        for a in [*everything, *others]:
            a.set_visible(False)
        blank = _render(fig)
        painted = []
        for label, parts in labelled:
            for a in parts:
                a.set_visible(before.get(id(a), True))
            if (_render(fig) != blank).any():
                painted.append(label)
            for a in parts:
                a.set_visible(False)
        return painted
    finally:
        for a in [*everything, *others]:
            a.set_visible(before[id(a)])


def check_legends(fig: Figure) -> int:
    """Every legend lists exactly the labelled artists that paint pixels; returns how many
    legends were checked."""
    fig.set_dpi(60)
    fig.tight_layout()
    checked = 0
    for ax in fig.axes:
        leg = ax.get_legend()
        shown = [t.get_text() for t in leg.get_texts()] if leg is not None else []
        painted = painted_labels(fig, ax)
        assert sorted(shown) == sorted(painted), (
            f"legend {shown}, drawn {painted} ({ax.get_title()!r})"
        )
        checked += leg is not None
    return checked


def arrows_outside(fig: Figure) -> list[str]:
    """Axes whose arrows (streamplot heads, quiver arrows) paint pixels outside the axes frame.

    The arrows are rendered unclipped, one axes at a time, and compared with a render without
    any: the pixels that change are that axes' arrows, and each must lie inside its frame.
    """
    fig.tight_layout()
    arrows = {
        i: [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
        + [c for c in ax.collections if isinstance(c, Quiver)]
        for i, ax in enumerate(fig.axes)
    }
    for group in arrows.values():
        for a in group:
            a.set_visible(False)
    blank = _render(fig)
    bad = []
    for i, group in arrows.items():
        if not group:
            continue
        for a in group:
            a.set_visible(True)
            a.set_clip_on(False)
        painted = (_render(fig) != blank).any(axis=-1)
        for a in group:
            a.set_visible(False)
            a.set_clip_on(True)
        frame = fig.axes[i].get_window_extent(fig.canvas.get_renderer())
        rows, cols = np.nonzero(painted)
        y = painted.shape[0] - rows  # pixel rows count from the top, display y from the bottom
        out = (
            (cols < frame.x0 - 1) | (cols > frame.x1 + 1) | (y < frame.y0 - 1) | (y > frame.y1 + 1)
        )
        assert rows.size, f"axes {i}: the arrows painted nothing"
        if out.any():
            bad.append(f"axes {i} ({fig.axes[i].get_title()!r}): {int(out.sum())} pixels outside")
    for group in arrows.values():
        for a in group:
            a.set_visible(True)
    return bad


# -------------------------------------------------------------------------- every function


def all_figures(walk, toy):
    """(name, draw(ax) -> Figure) for every plotting function of sgdscope.report."""
    ex, ss, drift, *_ = toy
    eq = analysis.equilibrium_test(walk, n_surrogates=19)
    gn = analysis.gradient_norm(np.abs(walk[:, 0]) + 0.1, dim=3, com=10)
    return [
        ("power_spectrum", lambda ax: plot_power_spectrum(analysis.power_spectrum(walk), ax=ax)),
        ("autocorrelation", lambda ax: plot_autocorrelation(analysis.autocorrelation(walk), ax=ax)),
        ("gradient_norm", lambda ax: plot_gradient_norm(gn, ax=ax)),
        ("msd", lambda ax: plot_msd(analysis.msd(walk, n_boot=50), ax=ax)),
        ("flux", lambda ax: plot_flux(eq.flux, ax=ax)),
        ("equilibrium", lambda ax: plot_equilibrium(eq, ax=ax)),
        ("drift", lambda ax: plot_drift(ex, ss, drift, ax=ax)),
    ]


def test_each_function_draws_into_the_axes_it_is_given_and_returns_its_figure(walk, toy):
    for name, draw in all_figures(walk, toy):
        fig, ax = new_figure()
        opened = plt.get_fignums()
        assert draw(ax) is fig, name
        assert plt.get_fignums() == opened, f"{name} opened a figure of its own"
        assert ax.has_data(), name
        alone = draw(None)
        assert isinstance(alone, Figure) and alone is not fig, name


def test_two_panel_and_six_panel_figures_take_their_axes(toy):
    ex, ss, drift, ev, paths, _ = toy
    fig, axes = new_figure(4, 2)
    axes = axes.ravel()
    assert plot_spectrum(spectrum([1.0, 0.1, 0.0]), axes=(axes[6], axes[7])) is fig
    assert plot_toy(ex, ss, drift, ev, paths, axes=axes[:6]) is fig
    assert all(ax.has_data() for ax in axes)


def test_fig4_is_composed_in_memory_with_a_banner(toy):
    ex, ss, drift, *_ = toy
    fig, axes = new_figure(3, 1)
    for ax, lam in zip(axes, (0, 0.5, 1.5), strict=True):
        assert plot_drift(ex, ss, drift, ax=ax, title=f"λ = {lam:g}") is fig
    assert [ax.get_title() for ax in axes] == ["λ = 0", "λ = 0.5", "λ = 1.5"]
    alone = plot_drift(ex, ss, drift, banner="(reduced: grid 48²)")
    assert alone.get_suptitle() == "(reduced: grid 48²)"
    assert plot_drift(ex, ss, drift).get_suptitle() == ""


def test_banner_goes_below_the_title():
    fig = plot_spectrum(spectrum([1.0, 0.5, 0.0]), title="Fig. 1a", banner="(reduced: 2 epochs)")
    assert fig.get_suptitle() == "Fig. 1a\n(reduced: 2 epochs)"


def test_save_figure_writes_and_releases_the_figure(tmp_path, walk):
    fig = plot_msd(analysis.msd(walk, n_boot=50))
    path = save_figure(fig, tmp_path / "sub" / "msd.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert fig.number not in plt.get_fignums()


def test_no_figure_is_read_back_from_a_png_and_redrawn():
    """Figures take their label when drawn; a PNG read back and redrawn loses resolution."""
    readers = [
        p.relative_to(SRC).as_posix()
        for p in SRC.rglob("*.py")
        if "imread(" in p.read_text(encoding="utf-8")
    ]
    assert readers == []


# ------------------------------------------------------------------- legends name what is drawn


def test_legends_of_every_function_list_exactly_the_drawn_curves(walk, toy):
    checked = 0
    for _, draw in all_figures(walk, toy):
        checked += check_legends(draw(None))
    ex, ss, drift, ev, paths, known = toy
    loss = np.asarray(sg.examples.double_well(lam=0).loss(ss.grid.points), dtype=float)
    checked += check_legends(
        plot_toy(ex, ss, drift, ev, paths, loss_values=loss, known_potential=known)
    )
    checked += check_legends(
        plot_spectrum([spectrum([1.0, 0.1, 1e-3, 0.0]), spectrum([2, 1, 0.0])])
    )
    assert checked >= 7


def test_the_equilibrium_figure_names_its_histogram_and_the_trajectory(walk):
    fig = plot_equilibrium(analysis.equilibrium_test(walk, n_surrogates=19))
    legend_texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend_texts == ["19 reversible surrogates", "trajectory"]


def test_without_a_loss_f_is_named_nowhere(toy):
    """Example 19 with λ > 0 has no loss f: panels (b) and (f) used to name a curve of f."""
    ex, ss, drift, ev, paths, known = toy
    fig = plot_toy(ex, ss, drift, ev, paths, known_potential=known)
    check_legends(fig)
    b, f = fig.axes[1], fig.axes[5]
    assert [t.get_text() for t in b.get_legend().get_texts()] == ["Φ"]
    assert [t.get_text() for t in f.get_legend().get_texts()] == ["Φ (solved)", "Φ (known)"]
    for ax in (b, f):
        words = re.sub(r"^\([a-f]\) ", "", ax.get_title()).replace("(", " ").split()
        assert "f" not in words, ax.get_title()
        assert not any(t.get_text().startswith("f ") for t in ax.texts)


def test_a_curve_with_nothing_to_draw_leaves_the_legend(walk):
    """A NaN fit, an all-NaN EWMA, a spectrum whose rank is not determined: not in the legend."""
    m = analysis.msd(walk, n_boot=50)
    fig = plot_msd(dataclasses.replace(m, exponent=float("nan")))
    check_legends(fig)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [
        "MSD",
        "Brownian (c = 1)",
    ]
    gn = analysis.gradient_norm(np.abs(walk[:, 0]) + 0.1, dim=3)
    fig = plot_gradient_norm(dataclasses.replace(gn, smoothed=np.full_like(gn.smoothed, np.nan)))
    check_legends(fig)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["‖∇f‖/√d"]
    # the second spectrum is a top-2 spectrum that stops above the threshold: not drawn
    fig = plot_spectrum(
        [spectrum([1.0, 0.1, 0.0]), spectrum([1.0, 0.5, 0.4, 0.3], k=2)], labels=["a", "b"]
    )
    check_legends(fig)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["a: rank 2 (66.67 %)"]


def test_the_threshold_is_named_by_the_rule_drawn():
    lam = [1.0, 0.1, 1e-9, 0.0]
    floor = dataclasses.replace(spectrum(lam), noise_floor=1e-6, precision="float64")
    assert (
        plot_spectrum(floor).axes[1].get_title()
        == "dashed: noise floor of the computation (float64)"
    )
    paper = plot_spectrum(floor, rtol="paper").axes[1].get_title()
    assert paper == "dashed: λ_max · d · ε_float32"
    assert plot_spectrum(floor, rtol=1e-3).axes[1].get_title() == "dashed: λ_max · 0.001"
    # nothing drawn, nothing named (a top-1 spectrum above the threshold)
    assert plot_spectrum(spectrum([1.0, 0.5, 0.0], k=1)).axes[1].get_title() == ""


def test_legend_helper_drops_labels_of_curves_not_drawn():
    fig, ax = new_figure()
    ax.plot([1, 2, 3], [1, 2, 3], label="seen")
    ax.plot([1, 2], [np.nan, np.nan], label="all NaN")
    ax.plot([1, 2], [-1.0, -2.0], label="negative on a log axis")
    ax.plot([50, 60], [1, 2], label="outside the view")
    ax.fill_between([1, 2, 3], [1, 1, 1], [1, 1, 1], lw=0, label="zero-height band")
    ax.fill_between([1, 2, 3], [1, 1, 1], [2, 2, 2], lw=0, label="band")
    ax.hist([1.5, 2.5, 2.6], bins=[1, 2, 3], label="histogram")  # labels its first bar
    ax.set_yscale("log")
    ax.set_xlim(0, 4)
    leg = legend(ax)
    assert [t.get_text() for t in leg.get_texts()] == ["histogram", "seen", "band"]
    check_legends(fig)
    fig, ax = new_figure()
    ax.plot([np.nan], [np.nan], label="nothing")
    assert legend(ax) is None and ax.get_legend() is None
    assert not drawn(ax.lines[0], ax)


# ---------------------------------------------------------------------- arrows stay inside


def drifting_walk(drift: float = 0.03, n: int = 3000, seed: int = 0) -> np.ndarray:
    """A random walk with a drift along the first axis, like a run that has not settled: its
    flux arrows point out of the occupied region at the edge cells."""
    steps = 0.05 * np.random.default_rng(seed).standard_normal((n, 3))
    steps[:, 0] += drift
    return np.cumsum(steps, axis=0)


@pytest.mark.parametrize("bins", [5, 8, 12])
@pytest.mark.parametrize("process", ["rotating OU", "drifting walk"])
def test_flux_arrows_stay_inside_their_axes(walk, process, bins):
    x = walk if process == "rotating OU" else drifting_walk()
    flux = analysis.probability_flux(x, bins=bins, n_surrogates=19)
    fig = plot_flux(flux)
    assert arrows_outside(fig) == []
    (q,) = [c for c in fig.axes[0].collections if isinstance(c, Quiver)]
    assert len(q.get_offsets()) == int((flux.occupancy > 0).sum())


def test_flux_arrows_stay_inside_their_cells(walk):
    """The longest arrow fills ARROW_FILL of its cell; every arrow is centred on its cell."""
    from sgdscope.report.fig_trajectory import ARROW_FILL

    flux = analysis.probability_flux(walk, bins=8, n_surrogates=19)
    fig = plot_flux(flux)
    ax = fig.axes[0]
    fig.canvas.draw()
    (q,) = [c for c in ax.collections if isinstance(c, Quiver)]
    seen = flux.occupancy > 0
    dx = np.diff(flux.x_edges)[np.nonzero(seen)[0]]
    dy = np.diff(flux.y_edges)[np.nonzero(seen)[1]]
    # the arrow's vector in data units is (U, V) / scale (scale_units="xy")
    u, v = q.U / q.scale, q.V / q.scale
    assert np.all(np.abs(u) <= ARROW_FILL * dx + 1e-12) and np.all(
        np.abs(v) <= ARROW_FILL * dy + 1e-12
    )
    assert max(np.max(np.abs(u) / dx), np.max(np.abs(v) / dy)) == pytest.approx(ARROW_FILL)


def test_streamline_arrows_stay_inside_their_axes(toy):
    ex, ss, drift, ev, paths, known = toy
    assert arrows_outside(plot_toy(ex, ss, drift, ev, paths, known_potential=known)) == []
    fig, axes = new_figure(3, 1, width=4.4, height=4.2)  # the Fig. 4 of `reproduce toy`
    for ax, lam in zip(axes, (0.0, 0.5, 1.5), strict=True):
        e = sg.examples.double_well(lam=lam)
        fp = sg.FokkerPlanck(sg.Grid(e.bounds, (48, 48)), drift=e.drift, diffusion=e.diffusion)
        plot_drift(e, fp.steady_state(), fp.drift_cells, ax=ax)
    assert arrows_outside(fig) == []
