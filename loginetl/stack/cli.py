"""The `loginetl-stack` commands: up, down, status and seed. It and up_steps.py print (through
output.py); the other modules of the stack return data or raise StackError.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from ..closed_pipe import QuietOnClosedPipe
from ..config import redact_dsn
from ..version_option import VersionOption
from .files import check_purgeable, make_stack_dir, purge_stack_dir, read_env_file
from .kinesis import STREAM_NAME, KinesisMode, kinesis_endpoint, put_records, stream_shards
from .kinesis_mock import DEFAULT_KINESIS_PORT, running_kinesis_mock, stop_kinesis_mock
from .output import say, shown
from .postgres import (
    DEFAULT_PG_PORT,
    PG_DATA_DIR,
    PG_PASSWORD,
    postgres_dsn,
    running_postgres,
    stop_postgres,
)
from .processes import StackError
from .sqs import (
    ACCOUNT_ID,
    DEFAULT_SQS_PORT,
    DLQ_NAME,
    QUEUE_NAME,
    ensure_queues,
    load_sample_messages,
    queue_depth,
    running_sqs_server,
    send_messages,
    sqs_endpoint,
    stop_sqs_server,
)
from .up_steps import (
    check_before_starting,
    create_stream,
    say_what_next,
    seed_if_empty,
    show_stack,
    start_database,
    start_kinesis_mock,
    start_sqs,
    wait_for_sqs,
    write_env,
)

app = typer.Typer(
    help="The local stack for loginetl without Docker: an SQS server (moto), a Kinesis stream "
    "(on kinesis-mock where installed, else moto) and PostgreSQL.",
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    add_completion=False,
    cls=QuietOnClosedPipe,
    rich_markup_mode=None,  # click's plain help, as loginetl's: it wraps at any width
)


@app.callback()
def stack_options(
    version: VersionOption = False,
) -> None:
    """The local stack for loginetl without Docker."""


DirOption = Annotated[
    Path, typer.Option("--dir", help="The stack folder: data, logs and pid files.")
]
SQS_PORT_HELP = "Preferred SQS port; the next free one when it is taken."
PG_PORT_HELP = "Preferred PostgreSQL port; the next free one when it is taken."
KINESIS_PORT_HELP = "Preferred kinesis-mock port; the next free one when it is taken."
KINESIS_HELP = (
    "Where the stream runs: auto (kinesis-mock when Node.js and an installed kinesis-mock are "
    "there, else moto), kinesis-mock, or moto."
)
EnvFileOption = Annotated[
    Path, typer.Option("--env-file", help="Where the settings for loginetl are written.")
]


@contextlib.contextmanager
def _reported_errors() -> Iterator[None]:
    """A StackError becomes one line on stderr and its exit code; never a traceback."""
    try:
        yield
    except StackError as exc:
        typer.echo(f"loginetl-stack: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None


@app.command()
def up(
    stack_dir: DirOption = Path(".loginetl-stack"),
    env_file: EnvFileOption = Path(".env"),
    sqs_port: Annotated[int, typer.Option(min=1, max=65535, help=SQS_PORT_HELP)] = DEFAULT_SQS_PORT,
    pg_port: Annotated[int, typer.Option(min=1, max=65535, help=PG_PORT_HELP)] = DEFAULT_PG_PORT,
    kinesis_port: Annotated[
        int, typer.Option(min=1, max=65535, help=KINESIS_PORT_HELP)
    ] = DEFAULT_KINESIS_PORT,
    mode: Annotated[
        KinesisMode,
        typer.Option("--kinesis", envvar="LOGINETL_STACK_KINESIS", help=KINESIS_HELP),
    ] = KinesisMode.AUTO,
) -> None:
    """Start (or reuse) the servers, create the queues and the stream, write the env file.

    The SQS server (moto) and PostgreSQL; login-queue and its dead-letter queue, seeded when
    empty; the stream login-stream (2 shards, empty: `seed --stream` fills it) on kinesis-mock
    where it is installed, else on moto.

    Example:
        loginetl-stack up --kinesis moto
    """
    with _reported_errors():
        stack_dir, kinesis = stack_dir.resolve(), mode.value
        check_before_starting(stack_dir, env_file, kinesis)
        make_stack_dir(stack_dir)
        # The SQS server and kinesis-mock start in the background while PostgreSQL initialises;
        # the ports of those not listening yet are kept out of the later choices.
        sqs = start_sqs(stack_dir, sqs_port)
        mock = start_kinesis_mock(stack_dir, kinesis, kinesis_port, (sqs.port, pg_port))
        taken = (sqs.port,) if mock is None else (sqs.port, mock.port)
        pg_port = start_database(stack_dir, pg_port, *taken)
        endpoint = wait_for_sqs(stack_dir, sqs)
        queues = ensure_queues(endpoint)
        seeded = seed_if_empty(endpoint, queues[0])
        stream = create_stream(stack_dir, kinesis, mock, endpoint)
        dsn = write_env(env_file, sqs.port, pg_port, stream.endpoint)
        show_stack(endpoint, queues, stream, dsn, env_file)
        say_what_next(stack_dir, env_file, seeded, stream)


@app.command()
def down(
    stack_dir: DirOption = Path(".loginetl-stack"),
    purge: Annotated[bool, typer.Option("--purge", help="Also delete the stack folder.")] = False,
) -> None:
    """Stop the servers of the stack folder; --purge deletes the folder too.

    PostgreSQL, the SQS server and kinesis-mock, where the stack started it.
    """
    with _reported_errors():
        stack_dir = stack_dir.resolve()
        if not stack_dir.exists():
            say(f"no stack in {stack_dir}; nothing to stop")
            return
        if purge:
            check_purgeable(stack_dir)  # before stopping anything
        postgres = running_postgres(stack_dir / PG_DATA_DIR)
        if postgres is None:
            say("PostgreSQL is not running")
        else:
            stop_postgres(stack_dir / PG_DATA_DIR)
            say(f"PostgreSQL stopped (was on port {postgres[1]})")
        sqs = running_sqs_server(stack_dir)
        stop_sqs_server(stack_dir)  # also clears stale pid files
        if sqs is None:
            say("SQS server is not running")
        else:
            say(f"SQS server stopped (was on port {sqs[1]})")
        mock = running_kinesis_mock(stack_dir)
        stop_kinesis_mock(stack_dir)  # also clears stale pid files
        if mock is not None:
            say(f"kinesis-mock stopped (was on port {mock[1]})")
        if purge and purge_stack_dir(stack_dir):
            say(f"removed {stack_dir}")


@app.command()
def status(stack_dir: DirOption = Path(".loginetl-stack")) -> None:
    """Tell what runs in the stack folder and where."""
    with _reported_errors():
        stack_dir = stack_dir.resolve()
        if not stack_dir.exists():
            say(f"no stack in {stack_dir}; start one with: loginetl-stack up")
            return
        sqs = running_sqs_server(stack_dir)
        postgres = running_postgres(stack_dir / PG_DATA_DIR)
        say(f"stack folder: {shown(stack_dir)}")
        if sqs is None:
            say("SQS server (moto): stopped")
        else:
            endpoint = sqs_endpoint(sqs[1])
            say(f"SQS server (moto): running on {endpoint} (port {sqs[1]}, pid {sqs[0]})")
            for name in (QUEUE_NAME, DLQ_NAME):
                try:
                    depth = f"{queue_depth(endpoint, f'{endpoint}/{ACCOUNT_ID}/{name}')} messages"
                except StackError:
                    depth = "missing"
                say(f"  {name}: {depth}")
        _status_stream(stack_dir, sqs)
        if postgres is None:
            say("PostgreSQL: stopped")
        else:
            dsn = redact_dsn(postgres_dsn(PG_PASSWORD, postgres[1]))
            say(f"PostgreSQL: running on {dsn} (port {postgres[1]}, pid {postgres[0]})")


def _status_stream(stack_dir: Path, sqs: tuple[int, int] | None) -> None:
    """Where the stream's server runs (kinesis-mock, else moto's on the SQS server), and the
    stream's shards."""
    mock = running_kinesis_mock(stack_dir)
    if mock is not None:
        endpoint = kinesis_endpoint(mock[1])
        say(f"Kinesis (kinesis-mock): running on {endpoint} (port {mock[1]}, pid {mock[0]})")
    elif sqs is not None:
        endpoint = sqs_endpoint(sqs[1])
        say(f"Kinesis (moto): on the SQS server, {endpoint}")
    else:
        say("Kinesis: stopped")
        return
    try:
        shards = stream_shards(endpoint)
        found = "missing" if shards is None else f"{shards} shards"
    except StackError:
        found = "missing"
    say(f"  {STREAM_NAME}: {found}")


def _stack_endpoint(stack_dir: Path, env_file: Path, stream: bool) -> str:
    """The endpoint of the running stack's SQS server, or of its stream (kinesis-mock's, else
    moto's)."""
    running = None if not stream else running_kinesis_mock(stack_dir.resolve())
    if running is not None:
        return kinesis_endpoint(running[1])
    running = running_sqs_server(stack_dir.resolve())
    if running is None:
        setting = "AWS_ENDPOINT_URL_KINESIS" if stream else "LOGINETL_QUEUE_URL"
        missing = "does not exist" if not env_file.exists() else f"has no {setting}"
        raise StackError(
            f"{env_file} {missing} and no SQS server runs in {stack_dir}: "
            "run `loginetl-stack up` first"
        )
    return sqs_endpoint(running[1])


def _seed_stream(stack_dir: Path, env_file: Path, settings: dict[str, str]) -> None:
    endpoint = settings.get("AWS_ENDPOINT_URL_KINESIS") or _stack_endpoint(
        stack_dir, env_file, stream=True
    )
    sent = put_records(endpoint, load_sample_messages())
    say(f"put {sent} sample records on the stream {STREAM_NAME} at {endpoint}")


@app.command()
def seed(
    stack_dir: DirOption = Path(".loginetl-stack"),
    env_file: EnvFileOption = Path(".env"),
    stream: Annotated[
        bool, typer.Option("--stream", help=f"Put them on the stream {STREAM_NAME} instead.")
    ] = False,
) -> None:
    """Send the sample messages again to the queue, or with --stream to the stream.

    The queue named in the env file (else the stack's); the stream login-stream at the env
    file's AWS_ENDPOINT_URL_KINESIS (else the stack's).

    Example:
        loginetl-stack seed --stream
    """
    with _reported_errors():
        settings = read_env_file(env_file)
        if stream:
            _seed_stream(stack_dir, env_file, settings)
            return
        queue_url = settings.get("LOGINETL_QUEUE_URL")
        endpoint = settings.get("AWS_ENDPOINT_URL")
        if not queue_url:
            endpoint = _stack_endpoint(stack_dir, env_file, stream=False)
            queue_url = f"{endpoint}/{ACCOUNT_ID}/{QUEUE_NAME}"
        if not endpoint:
            # Sample data is for a local server only, never for a real AWS account.
            raise StackError(
                f"no AWS_ENDPOINT_URL in {env_file}: seed only sends to a local SQS server"
            )
        sent = send_messages(endpoint, queue_url, load_sample_messages())
        say(f"sent {sent} sample messages to {queue_url}")


def main() -> None:
    """The console script: any error is one line on stderr, never a traceback."""
    try:
        app()
    except Exception as exc:  # noqa: BLE001 - the last resort for what the commands did not expect
        print(f"loginetl-stack: unexpected error: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
