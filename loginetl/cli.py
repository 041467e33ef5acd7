"""The `loginetl` command: parse options, call one service, render what it returns.

Settings come from flags, then the environment, then `.env` in the working directory (loaded
without overriding the environment), then the defaults. Every service error becomes one line on
stderr and an exit code: 0 done, 1 stopped on an error, 2 bad usage or configuration.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import click
import typer
from dotenv import load_dotenv
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from . import audit, config, load, logs, pipeline, render, replay
from .config import Settings, redact
from .errors import EXIT_FAILED, LoginetlError
from .logs import LogFormat, LogLevel
from .masking import MASK_KEY_ENV, mask_key_from_env

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


class PartitionBy(str, Enum):
    month = "month"


@app.command("init-db")
@reports_errors
def init_db(
    database_url: DatabaseUrl = config.DEFAULT_DATABASE_URL,
    partition_by: Annotated[
        Optional[PartitionBy],
        typer.Option(
            "--partition-by",
            envvar="LOGINETL_PARTITION_BY",
            help="Create the table partitioned by month of create_date (new tables only).",
        ),
    ] = None,
    json: JsonOutput = False,
):
    """Create the user_logins table, or upgrade an existing one without losing rows.

    Example:

        loginetl init-db --database-url postgresql://postgres@localhost:5432/postgres
    """
    connection = load.connect(database_url)
    try:
        report = load.init_db(connection, partition_by.value if partition_by else None)
    finally:
        connection.close()
    show(json, render.init_report_dict(report), render.init_report(report))


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
            help="Most messages per database transaction.",
        ),
    ] = pipeline.RunOptions.batch_size,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency",
            envvar="LOGINETL_CONCURRENCY",
            min=1,
            max=64,
            help="Receivers polling in parallel (and threads deleting committed batches).",
        ),
    ] = pipeline.RunOptions.concurrency,
    wait_time: Annotated[
        Optional[int],
        typer.Option(
            "--wait-time",
            envvar="LOGINETL_WAIT_TIME",
            min=0,
            max=20,
            help="Long-poll seconds per receive (default 5, or 20 with --follow); without "
            "--follow an empty receive means the queue is drained.",
        ),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            envvar="LOGINETL_FOLLOW",
            help="Keep polling and loading as messages arrive, until SIGINT or SIGTERM.",
        ),
    ] = False,
    metrics_port: Annotated[
        Optional[int],
        typer.Option(
            "--metrics-port",
            envvar="LOGINETL_METRICS_PORT",
            min=0,
            max=65535,
            help="Serve Prometheus /metrics and /healthz on this port.",
        ),
    ] = None,
    metrics_host: Annotated[
        str,
        typer.Option(
            "--metrics-host", envvar="LOGINETL_METRICS_HOST", help="Address for --metrics-port."
        ),
    ] = pipeline.RunOptions.metrics_host,
    retry_for: Annotated[
        float,
        typer.Option(
            "--retry-for",
            envvar="LOGINETL_RETRY_FOR",
            min=0,
            help="Seconds to keep reconnecting to an unavailable database before giving up.",
        ),
    ] = pipeline.RunOptions.retry_for,
    json: JsonOutput = False,
):
    """Load messages from the queue into user_logins; dead-letter the invalid ones.

    Each batch is committed before its messages are deleted, and a message already loaded is
    skipped, so a run can be stopped and started again at any time.

    Example:

        loginetl run --max-messages 1000

        loginetl run --follow --metrics-port 9100 --log-format json   (as a service)
    """
    settings = Settings(
        queue_url=queue_url, dlq_url=dlq_url, endpoint_url=endpoint_url, database_url=database_url
    )
    key = mask_key_from_env()
    options = pipeline.RunOptions(
        max_messages=max_messages,
        batch_size=batch_size,
        concurrency=concurrency,
        wait_time=(20 if follow else 5) if wait_time is None else wait_time,
        retry_for=retry_for,
        follow=follow,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
    )
    with _stop_on_signals() as stop, _run_progress(max_messages) as on_batch:
        summary = _in_worker_thread(lambda: pipeline.run(settings, key, options, on_batch, stop))
    show(json, summary.as_dict(), render.run_summary(summary))
    if summary.left_on_queue:
        warn(
            f"{sum(summary.left_on_queue.values())} invalid messages were left on the queue "
            "(see the summary)"
        )
    finish(summary.error, summary.exit_code)


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
    note_receive_count(result.max_receive_count)
    show(json, result.as_dict(), render.peek_table(result))


@app.command("replay-dlq")
@reports_errors
def replay_dlq(
    queue_url: QueueUrl = None,
    dlq_url: DlqUrl = None,
    to_queue: Annotated[
        Optional[str],
        typer.Option(
            "--to-queue",
            envvar="LOGINETL_TO_QUEUE",
            help="Send every message here (default: --queue-url; without it, the queue each "
            "message was dead-lettered from, or the one queue whose RedrivePolicy names the DLQ).",
        ),
    ] = None,
    endpoint_url: EndpointUrl = None,
    max_messages: Annotated[
        Optional[int],
        typer.Option(
            "--max-messages",
            envvar="LOGINETL_MAX_MESSAGES",
            min=1,
            help="Move at most this many (default: all).",
        ),
    ] = None,
    rate: Annotated[
        int,
        typer.Option(
            "--rate", envvar="LOGINETL_RATE", min=1, max=replay.MAX_RATE, help="Messages per second, at most 500."
        ),
    ] = replay.MAX_RATE,
    reason: Annotated[
        Optional[str],
        typer.Option(
            "--reason",
            envvar="LOGINETL_REASON",
            help="Move only messages whose recorded reason contains TEXT (any case); messages "
            f"SQS moved after maxReceiveCount have the reason {replay.REDRIVE_REASON!r}.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", envvar="LOGINETL_DRY_RUN", help="List what would move, masked; change nothing.")
    ] = False,
    wait_time: WaitTime = 1,
    json: JsonOutput = False,
):
    """Move messages from the dead-letter queue back to be loaded, once the cause is fixed.

    A message leaves the dead-letter queue only after SQS confirmed it sent, and keeps its
    original message id, so `run` never loads one twice.

    Example:

        loginetl replay-dlq --dry-run --reason schema
    """
    options = replay.ReplayOptions(
        queue_url=queue_url, dlq_url=dlq_url, to_queue=to_queue, endpoint_url=endpoint_url,
        max_messages=max_messages, rate=rate, reason=reason, dry_run=dry_run, wait_time=wait_time,
    )  # fmt: skip
    # A dry run shows ip and device_id masked with the key when there is one, else as ***.
    key = mask_key_from_env() if dry_run and os.environ.get(MASK_KEY_ENV) else None
    summary = replay.replay_dlq(options, key)
    show(json, summary.as_dict(), render.replay_summary(summary))
    if summary.failed:
        warn(
            f"{sum(summary.failed.values())} messages could not be moved and are still on the "
            "dead-letter queue (see the summary)"
        )
    finish(summary.error, summary.exit_code)


@app.command("verify-masking")
@reports_errors
def verify_masking(
    database_url: DatabaseUrl = config.DEFAULT_DATABASE_URL,
    sample: Annotated[
        Optional[int],
        typer.Option(
            "--sample", envvar="LOGINETL_SAMPLE", min=1, help="Check about N rows drawn at random (default: every row)."
        ),
    ] = None,
    from_file: Annotated[
        Optional[str],
        typer.Option(
            "--from-file",
            envvar="LOGINETL_FROM_FILE",
            help="Raw messages (JSON array or JSON lines) to compare the stored masks against.",
        ),
    ] = None,
    from_queue: Annotated[
        Optional[int],
        typer.Option(
            "--from-queue",
            envvar="LOGINETL_FROM_QUEUE",
            min=1,
            max=1000,
            help="Peek N raw messages off --queue-url, without consuming them, to compare against.",
        ),
    ] = None,
    strict_key: Annotated[
        bool,
        typer.Option("--strict-key", envvar="LOGINETL_STRICT_KEY", help="Fail when rows were masked under another key id."),
    ] = False,
    queue_url: QueueUrl = config.DEFAULT_QUEUE_URL,
    endpoint_url: EndpointUrl = None,
    wait_time: WaitTime = 1,
    json: JsonOutput = False,
):
    """Audit user_logins: is every ip and device_id masked, and masked with the current key?

    Exit 0 when every check passes, 1 when one fails. Needs LOGINETL_MASK_KEY.

    Example:

        loginetl verify-masking --from-file raw_messages.json --sample 100000
    """
    settings = Settings(queue_url=queue_url, endpoint_url=endpoint_url, database_url=database_url)
    key = mask_key_from_env()
    options = audit.AuditOptions(
        sample=sample, from_queue=from_queue, from_file=from_file, strict_key=strict_key,
        wait_time=wait_time,
    )  # fmt: skip
    report = audit.verify_masking(settings, key, options)
    note_receive_count(report.max_receive_count)
    show(json, report.as_dict(), render.audit_table(report))
    failed = [check.name for check in report.failed]
    summary = f"{len(failed)} of {len(report.checks)} checks failed: {', '.join(failed)}"
    finish(summary if failed else None, report.exit_code)


@contextmanager
def _stop_on_signals():
    """SIGINT/SIGTERM: finish the batch in hand, then stop. A second one exits at once, which is
    still safe: nothing is deleted from the queue before it is committed."""
    stop = threading.Event()

    def handle(signum, frame):
        if stop.is_set():
            os._exit(128 + signum)
        stop.set()
        stderr.print(
            f"{signal.Signals(signum).name}: finishing the batch in hand "
            "(signal again to exit at once)"
        )

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _in_worker_thread(work):
    """Run `work` in a thread and wait for it here: Python runs signal handlers only in the main
    thread, between bytecodes, so the main thread must not sit in a blocking C call (a query
    waiting on a lock) if a second signal is to exit at once."""
    outcome: dict = {}

    def target():
        try:
            outcome["result"] = work()
        except BaseException as error:  # handed to the main thread below
            outcome["error"] = error

    worker = threading.Thread(target=target, name="run")
    worker.start()
    while worker.is_alive():
        worker.join(0.2)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


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
