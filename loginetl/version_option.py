"""The `--version` option of both console scripts (loginetl, loginetl-stack)."""

from typing import Annotated

import typer

from . import __version__


def _print_version(shown: bool) -> None:
    if shown:
        print(__version__)
        raise typer.Exit()


VersionOption = Annotated[
    bool,
    typer.Option(
        "--version",
        help="Print loginetl's version and exit.",
        callback=_print_version,
        is_eager=True,
    ),
]
