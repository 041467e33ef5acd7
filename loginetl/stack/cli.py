"""The `loginetl-stack` commands: up, down, status and seed; the only part that prints."""

from __future__ import annotations

import contextlib
import re
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from ..version_option import VersionOption
from rich.console import Console
from rich.table import Table

from .files import (
    _check_writable_folder,
    _is_stack_dir,
    _mark_stack_dir,
    merge_env_file,
    purge_stack_dir,
    read_env_file,
    stack_settings,
)
from .postgres import (
    DEFAULT_PG_PORT,
    PG_DATA_DIR,
    PG_LOG_FILE,
    PG_PASSWORD,
    _dsn,
    running_postgres,
    start_postgres,
    stop_postgres,
)
from .kinesis import (
    DEFAULT_KINESIS_PORT,
    KINESIS_LOG_FILE,
    KinesisMode,
    STREAM_NAME,
    ensure_stream,
    kinesis_endpoint,
    kinesis_mock_missing,
    launch_kinesis_mock,
    put_records,
    running_kinesis_mock,
    stop_kinesis_mock,
    stream_shards,
    wait_for_kinesis_mock,
)
from .processes import StackError, first_free_port
from .sqs import (
    ACCOUNT_ID,
    DEFAULT_SQS_PORT,
    DLQ_NAME,
    QUEUE_NAME,
    SQS_LOG_FILE,
    ensure_queues,
    launch_sqs_server,
    load_sample_messages,
    queue_depth,
    running_sqs_server,
    send_messages,
    sqs_endpoint,
    stop_sqs_server,
    wait_for_sqs_server,
)

app = typer.Typer(
    help="The local stack for loginetl without Docker: an SQS server (moto), a Kinesis stream "
    "(on kinesis-mock where installed, else moto) and PostgreSQL.",
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    add_completion=False,
)
console = Console(highlight=False)


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


def _say(message: str) -> None:
    # No markup (messages may contain [brackets]) and no wrapping (one message, one line).
    console.print(message, markup=False, soft_wrap=True)


@contextlib.contextmanager
def _reported_errors() -> Iterator[None]:
    """A StackError becomes one line on stderr and its exit code; never a traceback."""
    try:
        yield
    except StackError as exc:
        typer.echo(f"loginetl-stack: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None


def _pick_port(service: str, requested: int, exclude: tuple[int, ...] = ()) -> int:
    port = first_free_port(requested, exclude)
    if port != requested:
        _say(f"port {requested} is taken (another server?); {service} listens on {port} instead")
    return port


def _table(title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("what")
    # Whole URLs where the width allows (they are for copying); folded, never cut, where not.
    table.add_column("where", no_wrap=True, overflow="fold")
    return table


def _shown(path: Path) -> str:
    """A path as the operator would type it: relative to the current folder when inside it."""
    path = path.resolve()
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd())) or "."
    return str(path)


def _masked(dsn: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", dsn)


def _up_sqs(stack_dir: Path, requested_port: int) -> tuple[int, int, bool]:
    """(pid, port, started) of the stack's SQS server; launched, not yet waited for."""
    running = running_sqs_server(stack_dir)
    if running is not None:
        _say(f"SQS server already running on port {running[1]} (pid {running[0]}); reusing it")
        return running[0], running[1], False
    port = _pick_port("the SQS server", requested_port)
    return launch_sqs_server(stack_dir, port), port, True


def _up_postgres(stack_dir: Path, requested_port: int, *taken: int) -> int:
    data_dir = stack_dir / PG_DATA_DIR
    running = running_postgres(data_dir)
    if running is not None:
        _say(f"PostgreSQL already running on port {running[1]} (pid {running[0]}); reusing it")
        return running[1]
    # The SQS server and kinesis-mock may not listen yet: keep their ports out of the choice.
    port = _pick_port("PostgreSQL", requested_port, exclude=taken)
    initialised = (data_dir / "PG_VERSION").exists()
    start_postgres(data_dir, port, log_file=stack_dir / PG_LOG_FILE)
    _say(f"PostgreSQL started on port {port}" + ("" if initialised else " (new data folder)"))
    return port


def _up_kinesis_mock(
    stack_dir: Path, mode: str, requested_port: int, exclude: tuple[int, ...]
) -> tuple[int, int, bool] | None:
    """(pid, port, started) of the stack's kinesis-mock, launched, not yet waited for; None when
    the stream goes on moto. Only `--kinesis kinesis-mock` fails when it cannot run."""
    running = running_kinesis_mock(stack_dir)
    if mode == "moto":
        if running is not None:
            stop_kinesis_mock(stack_dir)
            _say(f"kinesis-mock stopped (was on port {running[1]}): the stream goes on moto")
        return None
    if running is not None:
        _say(f"kinesis-mock already running on port {running[1]} (pid {running[0]}); reusing it")
        return running[0], running[1], False
    missing = kinesis_mock_missing()
    if missing:
        if mode == "kinesis-mock":
            raise StackError(f"cannot start kinesis-mock: {missing}")
        _say(f"{missing}: the stream goes on the SQS server (moto)")
        return None
    port = _pick_port("kinesis-mock", requested_port, exclude)
    return launch_kinesis_mock(stack_dir, port, exclude), port, True


def _wait_kinesis_mock(stack_dir: Path, mode: str, launched: tuple[int, int, bool]) -> bool:
    """True when the launched kinesis-mock answers; in auto mode a failure falls back to moto."""
    pid, port, started = launched
    if not started:
        return True
    try:
        wait_for_kinesis_mock(stack_dir, pid, port)
    except StackError as exc:
        stop_kinesis_mock(stack_dir)
        if mode == "kinesis-mock":
            raise
        _say(f"{exc}; the stream goes on the SQS server (moto)")
        return False
    _say(f"kinesis-mock started on port {port}")
    return True


def _up_stream(
    stack_dir: Path, mode: str, mock: tuple[int, int, bool] | None, moto_endpoint: str
) -> tuple[str, bool, bool]:
    """(endpoint, on kinesis-mock, created) of the stream, created where missing; in auto mode
    whatever goes wrong with kinesis-mock puts the stream on moto, never fails `up`."""
    if mock is not None and _wait_kinesis_mock(stack_dir, mode, mock):
        endpoint = kinesis_endpoint(mock[1])
        try:
            return endpoint, True, ensure_stream(endpoint)
        except StackError as exc:
            stop_kinesis_mock(stack_dir)
            if mode == "kinesis-mock":
                raise
            _say(f"{exc}; kinesis-mock stopped, the stream goes on the SQS server (moto)")
    return moto_endpoint, False, ensure_stream(moto_endpoint)


def _seed_if_empty(endpoint: str, queue_url: str) -> str:
    depth = queue_depth(endpoint, queue_url)
    if depth:
        return f"{depth} messages already (not seeded again; `loginetl-stack seed` adds more)"
    sent = send_messages(endpoint, queue_url, load_sample_messages())
    return f"seeded {sent} sample messages"


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
        _check_writable_folder(env_file.resolve().parent, env_file)  # before starting anything
        if kinesis == "kinesis-mock" and running_kinesis_mock(stack_dir) is None:
            missing = kinesis_mock_missing()
            if missing:
                raise StackError(f"cannot start kinesis-mock: {missing}")
        try:
            stack_dir.mkdir(parents=True, exist_ok=True)
            _mark_stack_dir(stack_dir)
        except OSError as exc:
            raise StackError(f"cannot create {stack_dir}: {exc}") from exc
        # moto starts in the background while PostgreSQL initialises: both take seconds.
        sqs_pid, sqs_port, sqs_started = _up_sqs(stack_dir, sqs_port)
        # kinesis-mock (Node) starts in the background too; pick its port before PostgreSQL's.
        mock = _up_kinesis_mock(stack_dir, kinesis, kinesis_port, exclude=(sqs_port, pg_port))
        taken = (sqs_port,) if mock is None else (sqs_port, mock[1])
        pg_port = _up_postgres(stack_dir, pg_port, *taken)
        if sqs_started:
            wait_for_sqs_server(stack_dir, sqs_pid, sqs_port)
            _say(f"SQS server started on port {sqs_port}")
        endpoint = sqs_endpoint(sqs_port)
        queue_url, dlq_url = ensure_queues(endpoint)
        seeded = _seed_if_empty(endpoint, queue_url)
        stream_endpoint, on_mock, created = _up_stream(stack_dir, kinesis, mock, endpoint)
        mask_key = read_env_file(env_file).get("LOGINETL_MASK_KEY") or secrets.token_hex(32)
        settings = stack_settings(sqs_port, pg_port, mask_key, stream_endpoint)
        merge_env_file(env_file, settings)

        table = _table("loginetl local stack")
        table.add_row("SQS server (moto)", endpoint)
        table.add_row(QUEUE_NAME, queue_url)
        table.add_row(DLQ_NAME, dlq_url)
        table.add_row(f"Kinesis ({'kinesis-mock' if on_mock else 'moto'})", stream_endpoint)
        table.add_row(STREAM_NAME, f"{stream_shards(stream_endpoint)} shards")
        table.add_row("PostgreSQL", _masked(settings["LOGINETL_DATABASE_URL"]))
        table.add_row("settings", _shown(env_file))
        console.print(table)
        _say(f"{QUEUE_NAME}: {seeded}")
        _say(
            f"{STREAM_NAME}: {'created' if created else 'exists'}; fill it with "
            "`loginetl-stack seed --stream`, read it with `loginetl run --stream login-stream`"
        )
        _say(f"settings written to {_shown(env_file)} (mask key and password not shown)")
        logs = [SQS_LOG_FILE, PG_LOG_FILE] + ([KINESIS_LOG_FILE] if on_mock else [])
        _say("logs: " + ", ".join(_shown(stack_dir / log) for log in logs))
        _say("Stop it with: loginetl-stack down   (add --purge to delete its data)")


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
            _say(f"no stack in {stack_dir}; nothing to stop")
            return
        if purge and not _is_stack_dir(stack_dir) and any(stack_dir.iterdir()):
            raise StackError(f"refusing to remove {stack_dir}: it is not a loginetl stack folder")
        postgres = running_postgres(stack_dir / PG_DATA_DIR)
        if postgres is None:
            _say("PostgreSQL is not running")
        else:
            stop_postgres(stack_dir / PG_DATA_DIR)
            _say(f"PostgreSQL stopped (was on port {postgres[1]})")
        sqs = running_sqs_server(stack_dir)
        stop_sqs_server(stack_dir)  # also clears stale pid files
        if sqs is None:
            _say("SQS server is not running")
        else:
            _say(f"SQS server stopped (was on port {sqs[1]})")
        mock = running_kinesis_mock(stack_dir)
        stop_kinesis_mock(stack_dir)  # also clears stale pid files
        if mock is not None:
            _say(f"kinesis-mock stopped (was on port {mock[1]})")
        if purge and purge_stack_dir(stack_dir):
            _say(f"removed {stack_dir}")


@app.command()
def status(stack_dir: DirOption = Path(".loginetl-stack")) -> None:
    """Tell what runs in the stack folder and where."""
    with _reported_errors():
        stack_dir = stack_dir.resolve()
        if not stack_dir.exists():
            _say(f"no stack in {stack_dir}; start one with: loginetl-stack up")
            return
        sqs = running_sqs_server(stack_dir)
        postgres = running_postgres(stack_dir / PG_DATA_DIR)
        _say(f"stack folder: {_shown(stack_dir)}")
        if sqs is None:
            _say("SQS server (moto): stopped")
        else:
            endpoint = sqs_endpoint(sqs[1])
            _say(f"SQS server (moto): running on {endpoint} (port {sqs[1]}, pid {sqs[0]})")
            for name in (QUEUE_NAME, DLQ_NAME):
                try:
                    depth = f"{queue_depth(endpoint, f'{endpoint}/{ACCOUNT_ID}/{name}')} messages"
                except StackError:
                    depth = "missing"
                _say(f"  {name}: {depth}")
        _status_stream(stack_dir, sqs)
        if postgres is None:
            _say("PostgreSQL: stopped")
        else:
            dsn = _masked(_dsn(PG_PASSWORD, postgres[1]))
            _say(f"PostgreSQL: running on {dsn} (port {postgres[1]}, pid {postgres[0]})")


def _status_stream(stack_dir: Path, sqs: tuple[int, int] | None) -> None:
    mock = running_kinesis_mock(stack_dir)
    if mock is not None:
        endpoint = kinesis_endpoint(mock[1])
        _say(f"Kinesis (kinesis-mock): running on {endpoint} (port {mock[1]}, pid {mock[0]})")
    elif sqs is not None:
        endpoint = sqs_endpoint(sqs[1])
        _say(f"Kinesis (moto): on the SQS server, {endpoint}")
    else:
        _say("Kinesis: stopped")
        return
    try:
        shards = stream_shards(endpoint)
        shown = "missing" if shards is None else f"{shards} shards"
    except StackError:
        shown = "missing"
    _say(f"  {STREAM_NAME}: {shown}")


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
    _say(f"put {sent} sample records on the stream {STREAM_NAME} at {endpoint}")


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
        _say(f"sent {sent} sample messages to {queue_url}")


def main() -> None:
    """The console script: any error is one line on stderr, never a traceback."""
    try:
        app()
    except Exception as exc:  # noqa: BLE001 - the last resort for what the commands did not expect
        print(f"loginetl-stack: unexpected error: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
