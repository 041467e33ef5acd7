"""The Kinesis side: the stream `login-stream` beside the queues, on kinesis-mock (npm's
`kinesis-local` under Node.js, as installed by `scripts/kinesis.py install`) when it is there,
else on moto's server, which speaks Kinesis on the SQS endpoint. Seeding puts the sample
messages on the stream.

Nothing is installed here: `up` must work without network, so a missing kinesis-mock means
moto. LOGINETL_STACK_KINESIS (or `up --kinesis`) forces one: auto, kinesis-mock or moto.
"""

from __future__ import annotations

import enum
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .processes import (
    StackError,
    _children,
    _process_running,
    _read_int,
    first_free_port,
    run_into_file,
    stop_process_group,
    wait_until_answering,
)
from .sqs import local_client, local_errors

STREAM_NAME = "login-stream"
STREAM_SHARDS = 2
KINESIS_MOCK_DIR = ".kinesis-mock"  # where scripts/kinesis.py installs it, in the checkout
KINESIS_MOCK_HINT = "kinesis-local"  # in its command line: node .../kinesis-local/main.js
DEFAULT_KINESIS_PORT = 4568
KINESIS_PID_FILE = "kinesis.pid"
KINESIS_PORT_FILE = "kinesis.port"
KINESIS_LOG_FILE = "kinesis.log"
START_TIMEOUT = 60.0
ACTIVE_TIMEOUT = 30.0
PUT_BATCH_SIZE = 100
# Stream creation and resharding take 500 ms each by default in kinesis-mock.
_FAST = {
    name: "0ms"
    for name in (
        "CREATE_STREAM_DURATION", "DELETE_STREAM_DURATION", "MERGE_SHARDS_DURATION",
        "SPLIT_SHARD_DURATION", "UPDATE_SHARD_COUNT_DURATION",
    )
}  # fmt: skip


class KinesisMode(str, enum.Enum):
    """Where `up` puts the stream."""

    AUTO = "auto"
    KINESIS_MOCK = "kinesis-mock"
    MOTO = "moto"


# --- kinesis-mock ------------------------------------------------------------------------------


def kinesis_mock_script() -> Path | None:
    """main.js of an installed kinesis-mock: in the current folder's .kinesis-mock/, else in the
    checkout loginetl runs from; None when neither has it."""
    checkout = Path(__file__).resolve().parents[2]
    for root in (Path.cwd(), checkout):
        script = root / KINESIS_MOCK_DIR / "node_modules" / "kinesis-local" / "main.js"
        if script.is_file():
            return script
    return None


def kinesis_mock_missing() -> str | None:
    """Why kinesis-mock cannot run here (the stream then goes on moto), or None."""
    if shutil.which("node") is None:
        return "Node.js is missing"
    if kinesis_mock_script() is None:
        return "kinesis-mock is not installed (python scripts/kinesis.py install)"
    return None


def running_kinesis_mock(stack_dir: Path) -> tuple[int, int] | None:
    """(pid, port) of the stack folder's kinesis-mock when it runs, else None."""
    pid = _read_int(stack_dir / KINESIS_PID_FILE)
    port = _read_int(stack_dir / KINESIS_PORT_FILE)
    if pid is None or port is None or not _process_running(pid, KINESIS_MOCK_HINT):
        return None
    return pid, port


def kinesis_endpoint(port: int) -> str:
    return f"http://localhost:{port}"


def launch_kinesis_mock(stack_dir: Path, port: int, exclude: tuple[int, ...]) -> int:
    """Start kinesis-mock in the background on plain HTTP at port; returns its pid."""
    script, node = kinesis_mock_script(), shutil.which("node")
    if script is None or node is None:
        raise StackError(f"cannot start kinesis-mock: {kinesis_mock_missing()}")
    env = os.environ | _FAST | {
        "KINESIS_MOCK_PLAIN_PORT": str(port),
        # It always serves TLS too: a port of its own, unused by the stack.
        "KINESIS_MOCK_TLS_PORT": str(first_free_port(port + 1, (*exclude, port))),
        "KINESIS_MOCK_CERT_PATH": str(script.parent / "server.json"),
        "LOG_LEVEL": "WARN",
        "SHOULD_PERSIST_DATA": "false",
    }
    try:
        with (stack_dir / KINESIS_LOG_FILE).open("ab") as log:
            proc = run_into_file(
                subprocess.Popen, [node, str(script)], log, script.parent,
                env=env, start_new_session=True,
            )  # fmt: skip
    except OSError as exc:
        raise StackError(f"could not start kinesis-mock: {exc}") from exc
    _children[proc.pid] = proc
    (stack_dir / KINESIS_PID_FILE).write_text(f"{proc.pid}\n")
    (stack_dir / KINESIS_PORT_FILE).write_text(f"{port}\n")
    return proc.pid


def wait_for_kinesis_mock(stack_dir: Path, pid: int, port: int) -> None:
    """Wait until it answers ListStreams; fail early when the process died."""
    client = kinesis_client(kinesis_endpoint(port), attempts=1)
    wait_until_answering(
        pid, KINESIS_MOCK_HINT, client.list_streams, (BotoCoreError, ClientError),
        "kinesis-mock", port, stack_dir / KINESIS_LOG_FILE, START_TIMEOUT,
    )  # fmt: skip


def stop_kinesis_mock(stack_dir: Path) -> None:
    """Stop the stack folder's kinesis-mock, if it runs (it keeps nothing: in memory only)."""
    running = running_kinesis_mock(stack_dir)
    if running is not None:
        stop_process_group(running[0], KINESIS_MOCK_HINT, "kinesis-mock")
    for name in (KINESIS_PID_FILE, KINESIS_PORT_FILE):
        (stack_dir / name).unlink(missing_ok=True)


# --- the stream ----------------------------------------------------------------------------------


def kinesis_client(endpoint: str, attempts: int = 3) -> Any:
    return local_client("kinesis", endpoint, attempts)


def _kinesis_errors(endpoint: str):
    return local_errors("Kinesis", endpoint)


def stream_shards(endpoint: str, name: str = STREAM_NAME) -> int | None:
    """The open shards of the stream, None when it does not exist."""
    client = kinesis_client(endpoint)
    with _kinesis_errors(endpoint):
        try:
            summary = client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        except client.exceptions.ResourceNotFoundException:
            return None
    return int(summary["OpenShardCount"])


def ensure_stream(endpoint: str) -> bool:
    """Create the stream (2 shards) if missing and wait until it is active; True when created."""
    client = kinesis_client(endpoint)
    with _kinesis_errors(endpoint):
        created = stream_shards(endpoint) is None
        if created:
            client.create_stream(StreamName=STREAM_NAME, ShardCount=STREAM_SHARDS)
        deadline = time.monotonic() + ACTIVE_TIMEOUT
        while (
            client.describe_stream_summary(StreamName=STREAM_NAME)["StreamDescriptionSummary"][
                "StreamStatus"
            ]
            != "ACTIVE"
        ):
            if time.monotonic() > deadline:
                raise StackError(f"{STREAM_NAME} is not active after {ACTIVE_TIMEOUT:g} s")
            time.sleep(0.1)
    return created


def put_records(endpoint: str, elements: list[Any], name: str = STREAM_NAME) -> int:
    """Put each element as its own JSON record (partition key: its position, so records spread
    over the shards), 100 per PutRecords; returns how many were put."""
    client = kinesis_client(endpoint)
    for start in range(0, len(elements), PUT_BATCH_SIZE):
        batch = elements[start : start + PUT_BATCH_SIZE]
        records = [
            {"Data": json.dumps(element).encode(), "PartitionKey": str(start + index)}
            for index, element in enumerate(batch)
        ]
        with _kinesis_errors(endpoint):
            response = client.put_records(StreamName=name, Records=records)
        if response.get("FailedRecordCount"):
            first = next(r for r in response["Records"] if r.get("ErrorCode"))
            raise StackError(
                f"Kinesis refused {response['FailedRecordCount']} of the sample records: "
                f"{first['ErrorCode']}: {first.get('ErrorMessage')}"
            )
    return len(elements)
