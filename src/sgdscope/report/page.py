"""What every self-contained HTML page of sgdscope shares.

The reproduction report (:mod:`sgdscope.report.html`) and the run dashboard
(:mod:`sgdscope.report.dashboard`) are each one file that shows everything offline:

- their markup is a jinja2 template under ``templates/`` (package data), rendered with
  autoescape on and undefined names as errors (:func:`template`); style sheets and scripts
  beside it are inlined (:func:`asset`);
- figures are embedded as base64 ``data:`` URIs (:func:`data_uri`), shown at their physical size
  (:func:`css_width`), and the :data:`CSP` forbids every network request;
- pages are written atomically (:func:`write_atomic`): a reader, or a crash, sees the old file or
  the new one, never half of one (the dashboard is rewritten while a run trains).
"""

from __future__ import annotations

import base64
import os
from datetime import datetime
from functools import cache
from importlib import metadata, resources
from pathlib import Path

import jinja2

__all__ = [
    "CSP",
    "MIME",
    "asset",
    "css_width",
    "data_uri",
    "readable_time",
    "template",
    "version",
    "write_atomic",
]

#: Content-Security-Policy of every page: images only from data: URIs, no request at all.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"

#: MIME type of each image suffix a page embeds.
MIME = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".svg": "image/svg+xml",
    ".webp": "image/webp",
}


def asset(name: str) -> str:
    """The text of ``templates/<name>`` (package data, read through importlib.resources).

    Args:
        name: File name inside ``templates/``.

    Returns:
        Its text.
    """
    return (
        resources.files(__package__)
        .joinpath("templates")
        .joinpath(name)
        .read_text(encoding="utf-8")
    )


@cache
def template(name: str) -> jinja2.Template:
    """The jinja2 template ``templates/<name>``, with autoescape and strict undefined names.

    Args:
        name: File name inside ``templates/``.

    Returns:
        The compiled template (cached).
    """
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(asset),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env.get_template(name)


def data_uri(raw: bytes, mime: str) -> str:
    """``data:<mime>;base64,...`` for the bytes of an image.

    Args:
        raw: The file's bytes.
        mime: Its MIME type (a value of :data:`MIME`).

    Returns:
        The URI.
    """
    return f"data:{mime};base64,{base64.b64encode(raw).decode('ascii')}"


def css_width(png: bytes) -> int | None:
    """Width in CSS pixels (96 per inch) of a PNG that records its resolution, else None.

    Matplotlib writes the ``savefig`` dpi in the ``pHYs`` chunk; showing every figure at its
    physical size keeps the figures' fonts at the size of the page's text, whatever the dpi.

    Args:
        png: The file's bytes.

    Returns:
        The width in CSS pixels, or None (not a PNG, or no resolution in metres before the
        image data).
    """
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        return None
    width = int.from_bytes(png[16:20], "big")
    at = 8
    while at + 8 <= len(png):
        length = int.from_bytes(png[at : at + 4], "big")
        kind = png[at + 4 : at + 8]
        if kind == b"pHYs" and length == 9:
            per_metre = int.from_bytes(png[at + 8 : at + 12], "big")
            if png[at + 16] != 1 or per_metre == 0:  # unit 1 = metre; 0 = aspect ratio only
                return None
            return round(width * 96 / (per_metre * 0.0254))
        if kind in (b"IDAT", b"IEND"):
            return None
        at += 12 + length
    return None


def readable_time(iso: str) -> str:
    """An ISO 8601 time with its offset as ``YYYY-MM-DD HH:MM UTC``.

    Args:
        iso: The time, e.g. ``"2025-01-01T12:00:00+00:00"``.

    Returns:
        The readable time.
    """
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M UTC")


def version() -> str:
    """The installed sgdscope version.

    Returns:
        The version, or ``"(unknown version)"`` in a bare checkout.
    """
    try:
        return metadata.version("sgdscope")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "(unknown version)"


def write_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename.

    Args:
        path: The file to write (its folder must exist).
        text: The UTF-8 text.

    Returns:
        The path written.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
