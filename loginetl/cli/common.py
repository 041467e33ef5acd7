"""What every command shares: the two consoles, the options declared once with their env var,
and the one way to show a result, warn, and end with an error line and an exit code."""

from __future__ import annotations

import functools
from typing import Annotated, Optional

import click
import typer
from rich.console import Console

from .. import config, render
from ..config import redact
from ..errors import EXIT_FAILED, LoginetlError

stdout = Console()
stderr = Console(stderr=True, soft_wrap=True)  # one message, one line


def option(flag: str, help: str, **settings):
    """A command option that can also be set as LOGINETL_<OPTION> (`--batch-size` is
    LOGINETL_BATCH_SIZE), in the environment or in .env."""
    envvar = "LOGINETL_" + flag.removeprefix("--").replace("-", "_").upper()
    return typer.Option(flag, envvar=envvar, help=help, **settings)


QueueUrl = Annotated[str, option("--queue-url", "URL of the source SQS queue.")]
DlqUrl = Annotated[
    Optional[str],
    option(
        "--dlq-url",
        "Dead-letter queue URL (default: the target of the source queue's RedrivePolicy).",
    ),
]
EndpointUrl = Annotated[
    Optional[str],
    typer.Option(
        "--endpoint-url",
        envvar="AWS_ENDPOINT_URL",
        help="SQS endpoint (default: AWS, or the queue URL's host when it is not AWS).",
    ),
]
DatabaseUrl = Annotated[
    str,
    option(
        "--database-url",
        "PostgreSQL URL.",
        show_default=config.redact_dsn(config.DEFAULT_DATABASE_URL),
    ),
]
JsonOutput = Annotated[bool, option("--json", "Print the result as JSON.")]
WaitTime = Annotated[
    int,
    option(
        "--wait-time",
        "Long-poll seconds per receive; an empty receive means the queue is drained.",
        min=0,
        max=20,
    ),
]
MAX_MESSAGES = "--max-messages"


def show(json: bool, data: dict, table) -> None:
    """The result: JSON on stdout for scripts, else the rich table."""
    if json:
        print(render.as_json(data))
    else:
        stdout.print(table)


def warn(message: str) -> None:
    stderr.print("[yellow]Warning:[/yellow]", message)


def note_receive_count(max_receive_count: int | None) -> None:
    if max_receive_count is not None:
        stderr.print(
            f"[yellow]Note:[/yellow] each peek counts as a receive: after {max_receive_count} "
            "receives a message moves to the dead-letter queue."
        )


def conclude(json: bool, result, table, warning: str | None = None):
    """Show a service's result (it has `as_dict`, `error` and `exit_code`), warn if there is
    something to warn about, then end with its error line and exit code."""
    show(json, result.as_dict(), table)
    if warning:
        warn(warning)
    finish(result.error, result.exit_code)


def finish(error: str | None, exit_code: int):
    """The one error line, if the service stopped on one, and its exit code."""
    if error:
        error_line(error)
    raise typer.Exit(exit_code)


def error_line(message: str) -> None:
    """Errors are one line however narrow the terminal, with every known secret hidden."""
    stderr.print("[red]Error:[/red]", render.safe(redact(message), 1000))


def reports_errors(command):
    """One line and an exit code for any error, never a traceback, never a secret."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except LoginetlError as error:
            error_line(str(error))
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:
            stderr.print("Interrupted.")
            raise typer.Exit(130) from None
        except Exception as error:  # a bug: still one line, and nothing secret in it
            error_line(f"unexpected {type(error).__name__}: {error}")
            raise typer.Exit(EXIT_FAILED) from None

    return wrapper
