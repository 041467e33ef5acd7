"""What every command shares: the two consoles, the options declared once with their env var,
and the one way to show a result, warn, and end with an error line and an exit code."""

from __future__ import annotations

import functools
import logging
import os
import sys
from typing import Annotated

import typer
from typer._click.core import ParameterSource
from typer._click.exceptions import ClickException  # typer vendors click (typer==0.29.2)

from .. import config
from ..closed_pipe import Console, closed_pipe
from ..config import redact
from ..errors import EXIT_FAILED, ConfigError, LoginetlError
from . import logs, render

log = logging.getLogger("loginetl.cli")
stdout = Console()
stderr = Console(stderr=True, soft_wrap=True)  # one message, one line


# What an option's value is, as --help shows it (`--wait-time SECONDS`); every `--*-url` is a URL.
METAVARS = {"--to-queue": "URL", "--wait-time": "SECONDS", "--retry-for": "SECONDS"}
METAVARS |= dict.fromkeys(
    ("--max-messages", "--batch-size", "--concurrency", "--rate", "--sample", "--from-queue"), "N"
)
METAVARS |= {"--metrics-port": "PORT", "--metrics-host": "HOST", "--from-file": "PATH"}
METAVARS |= {"--reason": "TEXT", "--limit": "N", "--ip": "IP", "--device-id": "ID"}
METAVARS |= {"--user-id": "USER", "--message-id": "ID"}


def option(flag: str, help: str, **settings):
    """A command option that can also be set as LOGINETL_<OPTION> (`--batch-size` is
    LOGINETL_BATCH_SIZE), in the environment or in .env."""
    envvar = "LOGINETL_" + flag.removeprefix("--").replace("-", "_").upper()
    metavar = "URL" if flag.endswith("-url") else METAVARS.get(flag)
    if metavar:
        settings.setdefault("metavar", metavar)
    return typer.Option(flag, envvar=settings.pop("envvar", envvar), help=help, **settings)


_QUEUE_URL = option("--queue-url", "URL of the source SQS queue.")
QueueUrl = Annotated[str, _QUEUE_URL]
MaybeQueueUrl = Annotated[str | None, _QUEUE_URL]  # replay-dlq: the DLQ may name the source

Accept = Annotated[
    list[str],
    option(
        "--accept",
        "A rule NAME=VALUE that a login meets when other events share the queue: the field "
        "NAME of the envelope or the body is VALUE (e.g. detail-type=UserLogin). Give it again "
        "for more rules (all must hold); in LOGINETL_ACCEPT, split them by commas.",
        metavar="RULE",
        show_default=False,
    ),
]


# The value asked about is personal data: no env var (it would sit in .env), never echoed.
Ip = Annotated[str | None, option("--ip", "Rows masked from this IP address.", envvar=None)]
DeviceId = Annotated[
    str | None, option("--device-id", "Rows masked from this device id.", envvar=None)
]
UserId = Annotated[str | None, option("--user-id", "Rows of this user_id.", envvar=None)]
ExtraField = Annotated[
    str | None,
    option(
        "--extra",
        "Rows whose extra field NAME (kept by run --keep-extra) holds VALUE, masked when "
        "LOGINETL_MASK_EXTRA names it or as sent.",
        envvar=None,
        metavar="NAME=VALUE",
    ),
]
DlqUrl = Annotated[
    str | None,
    option(
        "--dlq-url",
        "Dead-letter queue URL (default: the target of the source queue's RedrivePolicy).",
    ),
]
EndpointUrl = Annotated[
    str | None,
    option(
        "--endpoint-url",
        "SQS endpoint (default: AWS, or the queue URL's host when it is not AWS).",
        envvar="AWS_ENDPOINT_URL",
    ),
]
StreamName = Annotated[
    str | None,
    option(
        "--stream",
        "A Kinesis data stream to read instead of the queue (endpoint: "
        "AWS_ENDPOINT_URL_KINESIS or the endpoint URL).",
        metavar="NAME",
    ),
]

TopicName = Annotated[
    str | None,
    option(
        "--topic",
        "A Kafka topic to read instead of the queue (with --bootstrap-servers; librdkafka "
        "settings from LOGINETL_KAFKA_<NAME>).",
        metavar="NAME",
    ),
]
BootstrapServers = Annotated[
    str | None,
    option(
        "--bootstrap-servers",
        "With --topic: the Kafka brokers, comma-separated HOST:PORT.",
        metavar="",
    ),
]
GroupName = Annotated[
    str,
    option(
        "--group",
        "With --topic: the consumer group (its offsets are kept in PostgreSQL).",
        metavar="NAME",
    ),
]
DEFAULT_GROUP = "loginetl"


DATABASE_URL_ENV = "LOGINETL_DATABASE_URL"


class SettingError(ClickException):
    """A setting read while parsing (a secret's file) that is wrong: one line, exit 2."""

    exit_code = 2


def option_source(ctx: typer.Context, name: str) -> config.Source:
    """Where the option `name` of the command came from: typed, or read by Typer from its
    variable, which .env or the real environment set (config.env_source), or its default."""
    source = ctx.get_parameter_source(name)
    if source == ParameterSource.COMMANDLINE:
        return config.Source.COMMAND_LINE
    if source == ParameterSource.ENVIRONMENT:
        param = next(param for param in ctx.command.params if param.name == name)
        names = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or ())
        # The first one set, as click reads them.
        return next(
            (config.env_source(n) for n in names if os.environ.get(n)), config.Source.DEFAULT
        )
    return config.Source.DEFAULT


def sources(ctx: typer.Context) -> config.Sources:
    """Where each URL option of the command came from, for Settings."""
    names = {param.name for param in ctx.command.params} & set(config.NAMES)
    return config.Sources(**{name: option_source(ctx, name) for name in names})


def database_url_from_file(ctx: typer.Context, param: typer.CallbackParam, value: str) -> str:
    """--database-url, else LOGINETL_DATABASE_URL or the file LOGINETL_DATABASE_URL_FILE names,
    the one from the environment before the one from .env (both from one of them: exit 2),
    else the default."""
    if ctx.get_parameter_source(param.name) == ParameterSource.COMMANDLINE:
        return value
    try:
        return config.secret_from_env(os.environ, DATABASE_URL_ENV) or value
    except ConfigError as error:
        raise SettingError(str(error)) from None


DatabaseUrl = Annotated[
    str,
    option(
        "--database-url",
        f"PostgreSQL URL (or a file holding it: {DATABASE_URL_ENV}_FILE); default "
        f"{config.redact_dsn(config.DEFAULT_DATABASE_URL)}",
        show_default=False,
        callback=database_url_from_file,
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


def show(json: bool, data: dict | list, table) -> None:
    """The result on stdout: JSON for scripts (one line when logs are JSON lines, where every
    line is a JSON object), else the rich table."""
    if logs.json_lines():
        print(render.as_json_line(data))
    elif json:
        print(render.as_json(data))
    else:
        stdout.print(table)


def warn(message: str, event: str = "warning") -> None:
    if logs.json_lines():
        log.warning(message, extra={"event": event})
    else:
        stderr.print("[yellow]Warning:[/yellow]" if event == "warning" else "Note:", message)


def say(message: str, event: str) -> None:
    """A message for the operator that is neither result nor warning (a signal, Ctrl-C)."""
    if logs.json_lines():
        log.warning(message, extra={"event": event})
    else:
        stderr.print(message)


def note_receive_count(max_receive_count: int | None) -> None:
    if max_receive_count is not None:
        warn(
            f"each peek counts as a receive: after {max_receive_count} receives a message "
            "moves to the dead-letter queue.",
            event="note",
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
    if logs.json_lines():
        log.error(redact(message), extra={"event": "error"})
    else:
        stderr.print("[red]Error:[/red]", render.safe(redact(message), 1000))


def reports_errors(command):
    """One line and an exit code for any error, never a traceback, never a secret; a pipe
    closed early ends the command quietly."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            try:
                return command(*args, **kwargs)
            finally:
                sys.stdout.flush()  # here, where a closed pipe is caught, not at exit
        except BrokenPipeError:
            closed_pipe()
        except (typer.Exit, typer.Abort, ClickException):
            raise
        except LoginetlError as error:
            error_line(str(error))
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:
            say("Interrupted.", "interrupted")
            raise typer.Exit(130) from None
        except Exception as error:  # noqa: BLE001 - a bug: still one line, and nothing secret in it
            error_line(f"unexpected {type(error).__name__}: {error}")
            raise typer.Exit(EXIT_FAILED) from None

    return wrapper
