"""The Kinesis side: the stream `login-stream` beside the queues, on kinesis-mock (npm's
`kinesis-local` under Node.js, as `loginetl-stack install-kinesis` installs it; see kinesis_mock.py)
when it is there, else on moto's server, which speaks Kinesis on the SQS endpoint. Seeding puts
the sample messages on the stream.

Nothing is installed here: `up` must work without network, so a missing kinesis-mock means
moto. LOGINETL_STACK_KINESIS (or `up --kinesis`) forces one: auto, kinesis-mock or moto.
"""

from __future__ import annotations

import enum
import json
import time
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .kinesis_mock import KINESIS_MOCK
from .processes import StackError
from .sqs import local_client, local_errors

STREAM_NAME = "login-stream"
STREAM_SHARDS = 2
START_TIMEOUT = 60.0
ACTIVE_TIMEOUT = 30.0
PUT_BATCH_SIZE = 100


class KinesisMode(str, enum.Enum):
    """Where `up` puts the stream."""

    AUTO = "auto"
    KINESIS_MOCK = "kinesis-mock"
    MOTO = "moto"


def kinesis_endpoint(port: int) -> str:
    return f"http://localhost:{port}"


def wait_for_kinesis_mock(stack_dir: Path, pid: int, port: int) -> None:
    """Wait until kinesis-mock answers ListStreams; fail early when the process died."""
    client = kinesis_client(kinesis_endpoint(port), attempts=1)
    errors = (BotoCoreError, ClientError)
    KINESIS_MOCK.wait_until_answering(
        stack_dir, pid, port, client.list_streams, errors, START_TIMEOUT
    )


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
