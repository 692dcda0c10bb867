"""One figure style for every sgdscope plot, one way to save figures, and honest legends.

Every plotting function of :mod:`sgdscope.report` draws into axes it is given (``ax=``) or into a
new figure made here (:func:`new_figure`), and returns the matplotlib ``Figure``;
:func:`save_figure` writes it (:func:`png_bytes` returns its bytes, for a page that embeds it).
:func:`legend` lists only the labelled curves that are actually drawn inside the axes, and
:func:`heading` puts a title and a banner (such as the reduced-run label of ``sgdscope
reproduce``) above a figure.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.collections import Collection
from matplotlib.container import Container
from matplotlib.contour import ContourSet
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.transforms import IdentityTransform

__all__ = [
    "STYLE",
    "drawn",
    "figure_of",
    "heading",
    "legend",
    "new_figure",
    "png_bytes",
    "save_figure",
]

#: rcParams of every sgdscope figure.
STYLE = matplotlib.RcParams(
    {
        "figure.dpi": 110,
        "savefig.dpi": 150,
        "font.size": 10,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
    }
)


def new_figure(ncols: int = 1, nrows: int = 1, *, width: float = 4.5, height: float = 3.5):
    """Return ``(fig, axes)`` drawn in the sgdscope style (axes squeezed as in plt.subplots).

    Args:
        ncols: Columns of axes.
        nrows: Rows of axes.
        width: Width of one axes cell, inches.
        height: Height of one axes cell, inches.

    Returns:
        The figure and its axes (one ``Axes`` or an array of them).
    """
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=True
        )
    return fig, axes


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Save ``fig`` (PNG unless the suffix says otherwise), close it and return the path.

    Args:
        fig: The figure (for instance, what a ``plot_*`` function returned).
        path: The file to write; its folder is created.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _save(fig, path)
    return path


def png_bytes(fig: Figure) -> bytes:
    """Render ``fig`` as PNG bytes, as :func:`save_figure` would write it, and close it.

    Args:
        fig: The figure.

    Returns:
        The PNG file's bytes (for a page that embeds its figures).
    """
    buffer = io.BytesIO()
    _save(fig, buffer, format="png")
    return buffer.getvalue()


def _save(fig: Figure, target: Any, **kwargs: Any) -> None:
    with plt.rc_context(STYLE):
        fig.tight_layout()
        fig.savefig(target, **kwargs)
    plt.close(fig)


def figure_of(ax: Axes) -> Figure:
    """The figure ``ax`` belongs to (the whole figure when ``ax`` lies in a subfigure).

    Args:
        ax: The axes.

    Returns:
        Its top-level figure.
    """
    fig = ax.figure
    while not isinstance(fig, Figure):
        fig = fig.figure
    return fig


def heading(fig: Figure, title: str = "", banner: str = "", *, fontsize: float | str = 9) -> None:
    """Put ``title`` and, on the lines below it, ``banner`` above the whole figure.

    A figure drawn for a reduced run of ``sgdscope reproduce`` carries that fact as its banner
    (``"(reduced: 2,000 epochs, ...)"``), so the label travels with the figure. A banner alone
    is drawn small and red, wrapped to the figure's width; below a title it takes the title's
    style.

    Args:
        fig: The figure.
        title: The figure's title (may be empty).
        banner: A second heading, shown below the title (may be empty).
        fontsize: Font size of the title, points or a matplotlib size name (``"large"``).
    """
    if title:
        fig.suptitle("\n".join(part for part in (title, banner) if part), fontsize=fontsize)
    elif banner:  # 7-point characters are about 4.2 points wide
        width = max(20, int(fig.get_figwidth() * 72 / 4.2))
        fig.suptitle(textwrap.fill(banner, width), fontsize=7, color="C3")


def drawn(artist: Artist | Container, ax: Axes) -> bool:
    """Whether ``artist`` shows at least one finite point inside the view of ``ax``.

    A curve with no finite segment that crosses the view (and no marker inside it) is not
    drawn, even though it is an artist of the axes: all NaN, a single finite point between NaNs,
    non-positive on a log axis, or outside the limits. Nor is a filled shape without
    an outline whose area is nil (a band of zero height). Containers (bars, error bars) are
    drawn when one of their parts is.

    Args:
        artist: A line, patch, collection, contour set or container of ``ax``.
        ax: The axes it belongs to.

    Returns:
        True when some of it is visible inside the axes.
    """
    ax.get_xlim(), ax.get_ylim()  # apply any pending autoscaling before looking at the view
    if isinstance(artist, Container):
        return any(drawn(part, ax) for part in _parts(artist))
    if isinstance(artist, Artist) and not artist.get_visible():
        return False
    if isinstance(artist, Line2D):
        return _line_drawn(artist, ax)
    shapes = [points for points in _display_points(artist) if _inside(points, ax)]
    if not shapes:
        return False
    if isinstance(artist, Patch | Collection) and not _has_edge(artist):
        # a filled shape without an outline shows only if it has an area (a band of zero
        # height, say, does not)
        return any(_area(points) > 0.5 for points in shapes)  # square pixels
    return True


def legend(ax: Axes, **kwargs: Any) -> Legend | None:
    """Add a legend of the labelled artists of ``ax`` that are drawn (see :func:`drawn`).

    Unlike ``ax.legend()``, a label whose curve is not drawn (no data, or none inside the view)
    does not appear, and a contour set with a label appears as a line of its colour and style.
    Call it last, once the axes limits are final.

    Args:
        ax: The axes.
        **kwargs: Passed to ``ax.legend`` (``fontsize``, ``loc``, ``frameon``…).

    Returns:
        The legend, or None when nothing labelled is drawn (any earlier legend is removed).
    """
    handles: list[Artist | Container] = []
    labels: list[str] = []
    for label, handle, members in _labelled(ax):
        if any(drawn(m, ax) for m in members):
            handles.append(_handle(handle))
            labels.append(label)
    old = ax.get_legend()
    if old is not None:
        old.remove()
    return ax.legend(handles, labels, **kwargs) if handles else None


# --------------------------------------------------------------------------------------------


def _labelled(ax: Axes) -> Iterator[tuple[str, Artist | Container, list[Artist]]]:
    """(label, legend handle, the artists it stands for) of every labelled thing in ``ax``.

    A container (bars, error bars) stands for all its parts, under its own label or, as
    ``ax.hist`` labels them, under the label of its first labelled part.

    Yields:
        ``(label, handle, artists)`` for each labelled container or artist, containers first.
    """
    seen: set[int] = set()
    for container in ax.containers:
        parts = _parts(container)
        seen.update(id(part) for part in parts)
        if _has_label(container):
            yield str(container.get_label()), container, parts
            continue
        named = [part for part in parts if _has_label(part)]
        if named:
            yield str(named[0].get_label()), named[0], parts
    for artist in (*ax.lines, *ax.patches, *ax.collections):
        if id(artist) not in seen and _has_label(artist):
            yield str(artist.get_label()), artist, [artist]


def _has_label(artist: Artist | Container) -> bool:
    label = artist.get_label()
    return bool(label) and not str(label).startswith("_")


def _parts(container: Container) -> list[Artist]:
    out: list[Artist] = []
    for part in container:
        if isinstance(part, Artist):
            out.append(part)
        elif isinstance(part, list | tuple):
            out.extend(p for p in part if isinstance(p, Artist))
    return out


def _handle(artist: Artist | Container) -> Artist | Container:
    if isinstance(artist, ContourSet):  # legends do not take contour sets: a line in their style
        style: Any = artist.get_linestyle()
        return Line2D(
            [],
            [],
            color=tuple(np.atleast_2d(artist.get_edgecolor())[0]),
            linestyle=style[0] if isinstance(style, list) else style,
            linewidth=np.atleast_1d(artist.get_linewidth())[0],
        )
    return artist


def _line_drawn(line: Line2D, ax: Axes) -> bool:
    """A marker at a finite point inside the view, or a finite segment crossing it."""
    with np.errstate(invalid="ignore"):
        xy = ax.transAxes.inverted().transform(
            line.get_transform().transform(np.asarray(line.get_xydata(), dtype=float))
        )
    finite = np.isfinite(xy).all(axis=1)
    if str(line.get_marker()).lower() not in ("", " ", "none") and _inside(
        ax.transAxes.transform(xy[finite]), ax
    ):
        return True
    if str(line.get_linestyle()).lower() in ("", " ", "none") or not line.get_linewidth() > 0:
        return False
    ok = finite[:-1] & finite[1:]
    return any(_crosses_unit_box(a, b) for a, b in zip(xy[:-1][ok], xy[1:][ok], strict=True))


def _crosses_unit_box(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether the segment a–b meets [0, 1]² (Liang–Barsky clipping)."""
    t0, t1 = 0.0, 1.0
    d = b - a
    for p, q in ((-d[0], a[0]), (d[0], 1 - a[0]), (-d[1], a[1]), (d[1], 1 - a[1])):
        if p == 0:
            if q < 0:
                return False
            continue
        t = q / p
        if p < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 > t1:
            return False
    return True


def _display_points(artist: Artist) -> Iterator[np.ndarray]:
    """The artist's vertices in display coordinates, one array per path."""
    if isinstance(artist, Patch):
        yield artist.get_transform().transform(artist.get_path().vertices)
    elif isinstance(artist, Collection):
        placed = artist.get_offset_transform()
        if not isinstance(placed, IdentityTransform):  # markers or arrows placed at data points
            yield placed.transform(np.asarray(artist.get_offsets(), dtype=float))
        else:  # shapes in data coordinates (fill_between, contours, line collections)
            transform = artist.get_transform()
            for path in artist.get_paths():
                if np.size(path.vertices):
                    yield transform.transform(path.vertices)


def _inside(points: np.ndarray, ax: Axes) -> bool:
    if points.size == 0:
        return False
    with np.errstate(invalid="ignore"):
        xy = ax.transAxes.inverted().transform(points)
        ok = np.isfinite(xy).all(axis=1) & (xy >= -1e-9).all(axis=1) & (xy <= 1 + 1e-9).all(axis=1)
    return bool(ok.any())


def _has_edge(artist: Patch | Collection) -> bool:
    widths = np.atleast_1d(artist.get_linewidth())
    colours = np.atleast_2d(artist.get_edgecolor())
    return bool(widths.size and np.max(widths) > 0 and colours.size and np.max(colours[:, 3]) > 0)


def _area(points: np.ndarray) -> float:
    """Area, in square pixels, of the polygon through the finite ``points`` (shoelace)."""
    xy = points[np.isfinite(points).all(axis=1)]
    if len(xy) < 3:
        return 0.0
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
