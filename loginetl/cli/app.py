"""The `loginetl` Typer app and the options of `loginetl` itself (before the command)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from dotenv import load_dotenv

from .. import logs
from ..logs import LogFormat, LogLevel
from .common import reports_errors, stderr

app = typer.Typer(
    help="Move login events from an SQS queue into PostgreSQL, masking ip and device_id.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def main_options(
    log_level: Annotated[
        LogLevel,
        typer.Option("--log-level", envvar="LOGINETL_LOG_LEVEL", help="What to log on stderr."),
    ] = LogLevel.warning,
    log_format: Annotated[
        LogFormat,
        typer.Option(
            "--log-format",
            envvar="LOGINETL_LOG_FORMAT",
            help="text (rich on a terminal) or json (one object per line).",
        ),
    ] = LogFormat.text,
) -> None:
    # .env in the working directory, below the environment and flags in precedence.
    load_dotenv(Path.cwd() / ".env", override=False)
    logs.configure(log_level, log_format, stderr)


def command(name: str):
    """Register a `loginetl` subcommand whose errors end as one line and an exit code."""

    def register(function):
        return app.command(name)(reports_errors(function))

    return register
