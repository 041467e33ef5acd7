"""The SQS side: moto's server as a background process of a stack folder, the queue and its
dead-letter queue, and the packaged sample messages.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .processes import BackgroundServer, StackError, first_free_port, port_is_free

QUEUE_NAME = "login-queue"
DLQ_NAME = "login-queue-dlq"
MAX_RECEIVE_COUNT = 5
ACCOUNT_ID = "000000000000"  # the account LocalStack uses, so queue URLs match docker-compose's
REGION = "us-east-1"
DEFAULT_SQS_PORT = 4566
SEND_BATCH_SIZE = 10  # SendMessageBatch takes at most 10 entries

SQS_PID_FILE = "sqs.pid"
SQS_PORT_FILE = "sqs.port"
SQS_LOG_FILE = "sqs.log"

SQS_START_TIMEOUT = 30.0

# moto's server as a background process of the stack folder.
SQS_SERVER = BackgroundServer(
    "the SQS server", "moto.server", SQS_PID_FILE, SQS_PORT_FILE, SQS_LOG_FILE
)


# --- SQS server (moto) -----------------------------------------------------------------------


def sqs_endpoint(port: int) -> str:
    return f"http://localhost:{port}"


def running_sqs_server(stack_dir: Path) -> tuple[int, int] | None:
    """(pid, port) of the SQS server of this stack folder when it runs, else None."""
    return SQS_SERVER.running(stack_dir)


def launch_sqs_server(stack_dir: Path, port: int) -> int:
    """Start moto's server in the background, detached from this process; returns its pid."""
    stack_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MOTO_ACCOUNT_ID": ACCOUNT_ID}
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    return SQS_SERVER.launch(stack_dir, port, command, stack_dir, env)


def wait_for_sqs_server(
    stack_dir: Path, pid: int, port: int, timeout: float = SQS_START_TIMEOUT
) -> None:
    """Wait until the server answers ListQueues; fail early when the process died."""
    client = _sqs_client(sqs_endpoint(port), attempts=1)
    errors = (BotoCoreError, ClientError)
    SQS_SERVER.wait_until_answering(stack_dir, pid, port, client.list_queues, errors, timeout)


def start_sqs_server(stack_dir: Path, port: int | None = None) -> str:
    """Start (or reuse) the SQS server of stack_dir; returns its endpoint URL.

    port None: the first free port from 4566 up. A given port must be free.
    """
    stack_dir = stack_dir.resolve()
    running = running_sqs_server(stack_dir)
    if running is not None:
        return sqs_endpoint(running[1])
    if port is None:
        port = first_free_port(DEFAULT_SQS_PORT)
    elif not port_is_free(port):
        raise StackError(f"port {port} is taken (another server?)")
    pid = launch_sqs_server(stack_dir, port)
    try:
        wait_for_sqs_server(stack_dir, pid, port)
    except StackError:
        stop_sqs_server(stack_dir)
        raise
    return sqs_endpoint(port)


def stop_sqs_server(stack_dir: Path) -> None:
    """Stop the SQS server of stack_dir, if it runs: SIGTERM, then SIGKILL after a few seconds."""
    SQS_SERVER.stop(stack_dir.resolve())


# --- queues ----------------------------------------------------------------------------------


def local_client(service: str, endpoint: str, attempts: int = 3) -> Any:
    """A client of the stack's own server for `service` ("sqs", "kinesis"). Fixed test
    credentials: the local server accepts any, and the operator's own AWS credentials must
    never be sent anywhere by a dev tool."""
    session = boto3.session.Session(
        aws_access_key_id="test", aws_secret_access_key="test", region_name=REGION
    )
    config = Config(
        connect_timeout=2,
        read_timeout=10,
        retries={"mode": "standard", "total_max_attempts": attempts},
    )
    return session.client(service, endpoint_url=endpoint, config=config)


@contextlib.contextmanager
def local_errors(server: str, endpoint: str) -> Iterator[None]:
    """An AWS error of the stack's `server` ("SQS", "Kinesis") as one StackError line."""
    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        raise StackError(f"{server} at {endpoint}: {exc}") from exc


def _sqs_client(endpoint: str, attempts: int = 3) -> Any:
    return local_client("sqs", endpoint, attempts)


def _sqs_errors(endpoint: str):
    return local_errors("SQS", endpoint)


def ensure_queues(endpoint: str) -> tuple[str, str]:
    """Create the queue and its dead-letter queue if missing; returns (queue URL, DLQ URL)."""
    client = _sqs_client(endpoint)
    with _sqs_errors(endpoint):
        dlq_url = client.create_queue(QueueName=DLQ_NAME)["QueueUrl"]
        dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        queue_url = client.create_queue(QueueName=QUEUE_NAME)["QueueUrl"]
        # Set apart from create_queue, which refuses other attributes for an existing queue.
        redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)}
        client.set_queue_attributes(
            QueueUrl=queue_url, Attributes={"RedrivePolicy": json.dumps(redrive)}
        )
    return queue_url, dlq_url


def queue_depth(endpoint: str, queue_url: str) -> int:
    """Messages on the queue: waiting, in flight and delayed."""
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    with _sqs_errors(endpoint):
        attributes = _sqs_client(endpoint).get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=names
        )["Attributes"]
    return sum(int(attributes.get(name, 0)) for name in names)


def load_sample_messages() -> list[Any]:
    """The packaged sample login events: a JSON array, one message per element."""
    resource = importlib.resources.files("loginetl") / "data" / "sample_data.json"
    try:
        data = json.loads(resource.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StackError(f"cannot read the sample data {resource}: {exc}") from exc
    if not isinstance(data, list):
        raise StackError(f"the sample data {resource} is not a JSON array")
    return data


def send_messages(endpoint: str, queue_url: str, elements: list[Any]) -> int:
    """Send each element as its own JSON message body, 10 per batch; returns how many were sent."""
    client = _sqs_client(endpoint)
    for start in range(0, len(elements), SEND_BATCH_SIZE):
        batch = elements[start : start + SEND_BATCH_SIZE]
        entries = [
            {"Id": str(index), "MessageBody": json.dumps(element)}
            for index, element in enumerate(batch)
        ]
        with _sqs_errors(endpoint):
            failed = client.send_message_batch(QueueUrl=queue_url, Entries=entries).get("Failed")
        if failed:
            first = failed[0]
            raise StackError(
                f"SQS refused {len(failed)} of the sample messages: "
                f"{first.get('Code')}: {first.get('Message')}"
            )
    return len(elements)
