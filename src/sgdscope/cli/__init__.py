"""Command-line interface: thin; it parses, calls the library and prints.

Each command lives in its own module of this package and is registered below.
"""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sgdscope")
def main() -> None:
    """sgdscope: SGD as a physical process (Chaudhari & Soatto, ICLR 2018)."""


# Commands are registered here, one line each.
from .spectrum import spectrum  # noqa: E402

main.add_command(spectrum)
from .toy import toy  # noqa: E402

main.add_command(toy)
from .analyze import analyze  # noqa: E402

main.add_command(analyze)
from .dashboard import dashboard  # noqa: E402

main.add_command(dashboard)
from .reproduce import reproduce  # noqa: E402

main.add_command(reproduce)
