"""The `loginetl` command: parse options, call one service, render what it returns.

Settings come from flags, then the environment, then `.env` in the working directory (loaded
without overriding the environment), then the defaults. Every service error becomes one line on
stderr and an exit code: 0 done, 1 stopped on an error, 2 bad usage or configuration.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Optional

import click
import typer
from dotenv import load_dotenv
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from . import config, load, pipeline, render
from .config import Settings, redact
from .errors import EXIT_FAILED, LoginetlError
from .masking import mask_key_from_env

app = typer.Typer(
    help="Move login events from an SQS queue into PostgreSQL, masking ip and device_id.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
stdout = Console()
stderr = Console(stderr=True, soft_wrap=True)  # one message, one line


# Options shared by several commands, declared once with their env var.
QueueUrl = Annotated[
    str,
    typer.Option(
        "--queue-url", envvar="LOGINETL_QUEUE_URL", help="URL of the source SQS queue."
    ),
]
DlqUrl = Annotated[
    Optional[str],
    typer.Option(
        "--dlq-url",
        envvar="LOGINETL_DLQ_URL",
        help="Dead-letter queue URL (default: the target of the source queue's RedrivePolicy).",
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
    typer.Option(
        "--database-url",
        envvar="LOGINETL_DATABASE_URL",
        help="PostgreSQL URL.",
        show_default=config.redact_dsn(config.DEFAULT_DATABASE_URL),
    ),
]
JsonOutput = Annotated[
    bool, typer.Option("--json", envvar="LOGINETL_JSON", help="Print the result as JSON.")
]
WaitTime = Annotated[
    int,
    typer.Option(
        "--wait-time",
        envvar="LOGINETL_WAIT_TIME",
        min=0,
        max=20,
        help="Long-poll seconds per receive; an empty receive means the queue is drained.",
    ),
]


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


@app.callback()
def main_options() -> None:
    # .env in the working directory, below the environment and flags in precedence.
    load_dotenv(Path.cwd() / ".env", override=False)


@app.command("init-db")
@reports_errors
def init_db(database_url: DatabaseUrl = config.DEFAULT_DATABASE_URL, json: JsonOutput = False):
    """Create the user_logins table, or upgrade an existing one without losing rows.

    Example:

        loginetl init-db --database-url postgresql://postgres@localhost:5432/postgres
    """
    connection = load.connect(database_url)
    try:
        report = load.init_db(connection)
    finally:
        connection.close()
    if json:
        print(render.as_json(render.init_report_dict(report)))
    else:
        stdout.print(render.init_report(report))


@app.command("run")
@reports_errors
def run(
    queue_url: QueueUrl = config.DEFAULT_QUEUE_URL,
    dlq_url: DlqUrl = None,
    endpoint_url: EndpointUrl = None,
    database_url: DatabaseUrl = config.DEFAULT_DATABASE_URL,
    max_messages: Annotated[
        Optional[int],
        typer.Option(
            "--max-messages",
            envvar="LOGINETL_MAX_MESSAGES",
            min=1,
            help="Stop after this many messages (default: when the queue is drained).",
        ),
    ] = None,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            envvar="LOGINETL_BATCH_SIZE",
            min=1,
            max=10000,
            help="Messages per database transaction.",
        ),
    ] = pipeline.RunOptions.batch_size,
    wait_time: WaitTime = pipeline.RunOptions.wait_time,
    json: JsonOutput = False,
):
    """Load messages from the queue into user_logins; dead-letter the invalid ones.

    Each batch is committed before its messages are deleted, and a message already loaded is
    skipped, so a run can be stopped and started again at any time.

    Example:

        loginetl run --max-messages 1000
    """
    settings = Settings(
        queue_url=queue_url, dlq_url=dlq_url, endpoint_url=endpoint_url, database_url=database_url
    )
    key = mask_key_from_env()
    options = pipeline.RunOptions(
        max_messages=max_messages, batch_size=batch_size, wait_time=wait_time
    )
    with _run_progress(max_messages) as on_batch:
        summary = pipeline.run(settings, key, options, on_batch)
    if json:
        print(render.as_json(summary.as_dict()))
    else:
        stdout.print(render.run_summary(summary))
    if summary.left_on_queue:
        stderr.print(
            f"[yellow]Warning:[/yellow] {sum(summary.left_on_queue.values())} invalid messages "
            "were left on the queue (see the summary)"
        )
    if summary.error:
        error_line(summary.error)
    raise typer.Exit(summary.exit_code)


@app.command("peek")
@reports_errors
def peek(
    queue_url: QueueUrl = config.DEFAULT_QUEUE_URL,
    endpoint_url: EndpointUrl = None,
    max_messages: Annotated[
        int,
        typer.Option(
            "--max-messages",
            envvar="LOGINETL_MAX_MESSAGES",
            min=1,
            max=1000,
            help="How many messages to show.",
        ),
    ] = 10,
    show_pii: Annotated[
        bool,
        typer.Option(
            "--show-pii",
            envvar="LOGINETL_SHOW_PII",
            help="Show ip and device_id as sent instead of masked.",
        ),
    ] = False,
    wait_time: WaitTime = 1,
    json: JsonOutput = False,
):
    """Show messages on the queue without consuming them, and whether each would load.

    Every receive counts towards the queue's maxReceiveCount: peeking a message often enough
    moves it to the dead-letter queue.

    Example:

        loginetl peek --max-messages 5
    """
    settings = Settings(queue_url=queue_url, endpoint_url=endpoint_url)
    key = None if show_pii else mask_key_from_env()
    result = pipeline.peek(settings, key, max_messages, show_pii, wait_time)
    if result.max_receive_count is not None:
        stderr.print(
            f"[yellow]Note:[/yellow] each peek counts as a receive: after "
            f"{result.max_receive_count} receives a message moves to the dead-letter queue."
        )
    if json:
        print(render.as_json(result.as_dict()))
    else:
        stdout.print(render.peek_table(result))


class _run_progress:
    """A live line on stderr while `run` works; yields the callback the pipeline calls."""

    def __init__(self, total: int | None) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn() if total else TextColumn(""),
            TextColumn("{task.completed} received"),
            TimeElapsedColumn(),
            console=stderr,
            transient=True,
            disable=not stderr.is_terminal,
        )
        self.task = self.progress.add_task("loading", total=total)

    def __enter__(self):
        self.progress.start()
        return self.update

    def update(self, summary: pipeline.RunSummary) -> None:
        self.progress.update(
            self.task,
            completed=summary.received,
            description=f"loaded {summary.loaded}, dead-lettered {sum(summary.dead_lettered.values())}",
        )

    def __exit__(self, *exc) -> None:
        self.progress.stop()


def main() -> None:
    app(prog_name="loginetl")


if __name__ == "__main__":
    sys.exit(main())
