"""The steps of `loginetl-stack up`, in the order `up` takes them: check what would fail halfway,
start (or reuse) the servers, create and seed the queues, create the stream, write the env file,
show what runs where. Each step says what it did.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import NamedTuple

from rich.table import Table

from ..config import redact_dsn
from ..schema import TABLE
from .files import check_can_write, merge_env_file, read_env_file, stack_settings
from .kinesis import (
    STREAM_NAME,
    ensure_stream,
    kinesis_endpoint,
    stream_shards,
    wait_for_kinesis_mock,
)
from .kinesis_mock import (
    KINESIS_LOG_FILE,
    kinesis_mock_missing,
    launch_kinesis_mock,
    running_kinesis_mock,
    stop_kinesis_mock,
)
from .output import console, say, shown
from .postgres import PG_DATA_DIR, PG_LOG_FILE, running_postgres, start_postgres, table_rows
from .processes import StackError, check_local_extra, first_free_port
from .sqs import (
    DLQ_NAME,
    QUEUE_NAME,
    SQS_LOG_FILE,
    launch_sqs_server,
    load_sample_messages,
    queue_depth,
    running_sqs_server,
    send_messages,
    sqs_endpoint,
    wait_for_sqs_server,
)
from .typed import command, hint


def _pick_port(service: str, requested: int, exclude: tuple[int, ...] = ()) -> int:
    """The requested port when free, else the next free one, saying so."""
    port = first_free_port(requested, exclude)
    if port != requested:
        say(f"port {requested} is taken (another server?); {service} listens on {port} instead")
    return port


class Launched(NamedTuple):
    """A server `up` needs: its pid and port, and whether `up` launched it (then it is not known
    to answer yet) rather than found it running."""

    pid: int
    port: int
    started: bool


class Stream(NamedTuple):
    """Where `up` put the stream: its endpoint, on kinesis-mock or not, and whether it created
    the stream (else the stream was there)."""

    endpoint: str
    on_kinesis_mock: bool
    created: bool


def check_before_starting(stack_dir: Path, env_file: Path, mode: str) -> None:
    """What would fail `up` halfway, checked before anything starts (no folder made, no port
    probed): the `local` extra must be installed, the env file's folder writable, and a forced
    kinesis-mock able to run."""
    check_local_extra()
    check_can_write(env_file)
    if mode == "kinesis-mock" and running_kinesis_mock(stack_dir) is None:
        missing = kinesis_mock_missing()
        if missing:
            raise StackError(f"cannot start kinesis-mock: {missing}")


def start_sqs(stack_dir: Path, requested_port: int) -> Launched:
    """The stack's SQS server: reused when it runs, else launched (not yet waited for)."""
    running = running_sqs_server(stack_dir)
    if running is not None:
        say(f"SQS server already running on port {running[1]} (pid {running[0]}); reusing it")
        return Launched(running[0], running[1], False)
    port = _pick_port("the SQS server", requested_port)
    return Launched(launch_sqs_server(stack_dir, port), port, True)


def start_kinesis_mock(
    stack_dir: Path, mode: str, requested_port: int, exclude: tuple[int, ...]
) -> Launched | None:
    """The stack's kinesis-mock: reused when it runs, else launched (not yet waited for); None
    when the stream goes on moto. Only `--kinesis kinesis-mock` fails when it cannot run."""
    running = running_kinesis_mock(stack_dir)
    if mode == "moto":
        if running is not None:
            stop_kinesis_mock(stack_dir)
            say(f"kinesis-mock stopped (was on port {running[1]}): the stream goes on moto")
        return None
    if running is not None:
        say(f"kinesis-mock already running on port {running[1]} (pid {running[0]}); reusing it")
        return Launched(running[0], running[1], False)
    missing = kinesis_mock_missing()
    if missing:
        if mode == "kinesis-mock":
            raise StackError(f"cannot start kinesis-mock: {missing}")
        say(f"{missing}: the stream goes on the SQS server (moto)")
        return None
    port = _pick_port("kinesis-mock", requested_port, exclude)
    return Launched(launch_kinesis_mock(stack_dir, port, exclude), port, True)


def start_database(stack_dir: Path, requested_port: int, *taken: int) -> int:
    """The stack's PostgreSQL, reused or started (and answering); returns its port."""
    data_dir = stack_dir / PG_DATA_DIR
    running = running_postgres(data_dir)
    if running is not None:
        say(f"PostgreSQL already running on port {running[1]} (pid {running[0]}); reusing it")
        return running[1]
    # The SQS server and kinesis-mock may not listen yet: keep their ports out of the choice.
    port = _pick_port("PostgreSQL", requested_port, exclude=taken)
    initialised = (data_dir / "PG_VERSION").exists()
    start_postgres(data_dir, port, log_file=stack_dir / PG_LOG_FILE)
    say(f"PostgreSQL started on port {port}" + ("" if initialised else " (new data folder)"))
    return port


def wait_for_sqs(stack_dir: Path, sqs: Launched) -> str:
    """Wait until a launched SQS server answers; returns its endpoint."""
    if sqs.started:
        wait_for_sqs_server(stack_dir, sqs.pid, sqs.port)
        say(f"SQS server started on port {sqs.port}")
    return sqs_endpoint(sqs.port)


def seed_if_new(endpoint: str, queue_url: str, dsn: str, stack_dir: Path, env_file: Path) -> str:
    """Send the sample messages to an empty queue unless the table has rows already (a demo run
    again would load them all twice, under new message ids); returns what was done, to tell."""
    seed = hint("seed", stack_dir, env_file)
    depth = queue_depth(endpoint, queue_url)
    if depth:
        return f"{depth} messages already (not seeded again; `{seed}` adds more)"
    rows = table_rows(dsn, TABLE)
    if rows:
        return (
            f"empty; not seeded, as {TABLE} has {rows} rows already (the samples would load "
            f"twice, under new message ids: `{seed}` sends them anyway)"
        )
    sent = send_messages(endpoint, queue_url, load_sample_messages())
    return f"seeded {sent} sample messages"


def _wait_for_kinesis_mock(stack_dir: Path, mode: str, mock: Launched) -> bool:
    """True when kinesis-mock answers; in auto mode a failure stops it and falls back to moto."""
    if not mock.started:
        return True
    try:
        wait_for_kinesis_mock(stack_dir, mock.pid, mock.port)
    except StackError as exc:
        stop_kinesis_mock(stack_dir)
        if mode == "kinesis-mock":
            raise
        say(f"{exc}; the stream goes on the SQS server (moto)")
        return False
    say(f"kinesis-mock started on port {mock.port}")
    return True


def create_stream(stack_dir: Path, mode: str, mock: Launched | None, moto: str) -> Stream:
    """The stream, created where missing, on kinesis-mock when it answers, else on moto's
    endpoint; in auto mode whatever goes wrong with kinesis-mock puts the stream on moto, never
    fails `up`."""
    if mock is not None and _wait_for_kinesis_mock(stack_dir, mode, mock):
        endpoint = kinesis_endpoint(mock.port)
        try:
            return Stream(endpoint, True, ensure_stream(endpoint))
        except StackError as exc:
            stop_kinesis_mock(stack_dir)
            if mode == "kinesis-mock":
                raise
            say(f"{exc}; kinesis-mock stopped, the stream goes on the SQS server (moto)")
    return Stream(moto, False, ensure_stream(moto))


def write_env(env_file: Path, sqs_port: int, pg_port: int, stream_endpoint: str) -> str:
    """Write the settings for loginetl into the env file, keeping the mask key it has (data
    masked with it stays comparable); returns the database URL written."""
    mask_key = read_env_file(env_file).get("LOGINETL_MASK_KEY") or secrets.token_hex(32)
    settings = stack_settings(sqs_port, pg_port, mask_key, stream_endpoint)
    merge_env_file(env_file, settings)
    return settings["LOGINETL_DATABASE_URL"]


def show_stack(
    endpoint: str, queues: tuple[str, str], stream: Stream, dsn: str, env_file: Path
) -> None:
    """The table of what runs where; the database's password hidden."""
    table = Table(title="loginetl local stack", title_justify="left")
    table.add_column("what")
    # Whole URLs where the width allows (they are for copying); folded, never cut, where not.
    table.add_column("where", no_wrap=True, overflow="fold")
    table.add_row("SQS server (moto)", endpoint)
    table.add_row(QUEUE_NAME, queues[0])
    table.add_row(DLQ_NAME, queues[1])
    table.add_row(
        f"Kinesis ({'kinesis-mock' if stream.on_kinesis_mock else 'moto'})", stream.endpoint
    )
    table.add_row(STREAM_NAME, f"{stream_shards(stream.endpoint)} shards")
    table.add_row("PostgreSQL", redact_dsn(dsn))
    table.add_row("settings", shown(env_file))
    console.print(table)


def say_what_next(stack_dir: Path, env_file: Path, seeded: str, stream: Stream) -> None:
    """What `up` did to the queue and the stream, where the settings and logs are, how to stop."""
    say(f"{QUEUE_NAME}: {seeded}")
    say(
        f"{STREAM_NAME}: {'created' if stream.created else 'exists'}; fill it with "
        f"`{hint('seed --stream', stack_dir, env_file)}`, read it with "
        f"`{command('loginetl')} run --stream {STREAM_NAME}`{_read_from(env_file)}"
    )
    say(f"settings written to {shown(env_file)} (mask key and password not shown)")
    logs = [SQS_LOG_FILE, PG_LOG_FILE] + ([KINESIS_LOG_FILE] if stream.on_kinesis_mock else [])
    say("logs: " + ", ".join(shown(stack_dir / log) for log in logs))
    say(f"Stop it with: {hint('down', stack_dir)}   (add --purge to delete its data)")


def _read_from(env_file: Path) -> str:
    """Where loginetl must run to read the env file: it reads .env of its current folder."""
    if env_file.resolve() == (Path.cwd() / ".env").resolve():
        return ""
    return f" in a folder where .env is a copy of {shown(env_file)} (loginetl reads ./.env)"
