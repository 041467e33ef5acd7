"""The real servers' side of the tests: SQS queues and Kinesis streams made on moto's server
and kinesis-mock, and databases of a test's own on PostgreSQL."""

from __future__ import annotations

import json
import sys
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import psycopg2.extensions

from .data import sample_messages

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass
class Queues:
    client: object
    url: str
    dlq_url: str

    def send(self, bodies: list[str], queue_url: str | None = None, attributes=None) -> list[str]:
        """Send raw bodies 10 at a time; returns their message ids in order."""
        ids = []
        for start in range(0, len(bodies), 10):
            entries = [
                {"Id": str(i), "MessageBody": body}
                | ({"MessageAttributes": attributes} if attributes else {})
                for i, body in enumerate(bodies[start : start + 10])
            ]
            response = self.client.send_message_batch(
                QueueUrl=queue_url or self.url, Entries=entries
            )
            assert not response.get("Failed"), response.get("Failed")
            ids += [
                entry["MessageId"]
                for entry in sorted(response["Successful"], key=lambda e: int(e["Id"]))
            ]
        return ids

    def send_sample(self) -> list[str]:
        return self.send([json.dumps(message) for message in sample_messages()])

    def count(self, queue_url: str | None = None) -> int:
        """Messages on the queue, visible or in flight."""
        attributes = self.client.get_queue_attributes(
            QueueUrl=queue_url or self.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )

    def drain(self, queue_url: str) -> list[dict]:
        """Receive (and delete) everything on a queue, with its attributes."""
        messages = []
        while True:
            response = self.client.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0,
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["All"],
            )
            batch = response.get("Messages", [])
            if not batch:
                return messages
            messages += batch
            for message in batch:
                self.client.delete_message(
                    QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"]
                )


def make_queues(client, redrive: bool = True, visibility_timeout: int = 30) -> Queues:
    name = f"logins-{uuid.uuid4().hex[:10]}"
    dlq_url = client.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    attributes = {"VisibilityTimeout": str(visibility_timeout)}
    if redrive:
        arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": arn, "maxReceiveCount": "5"}
        )
    url = client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    return Queues(client, url, dlq_url)


class UrlConnection(psycopg2.extensions.connection):
    url: str


@contextmanager
def own_database(admin_url: str):
    """A new, empty database on the server of `admin_url`, dropped on leaving."""
    name = f"loginetl_test_{uuid.uuid4().hex[:12]}"
    admin(admin_url, f"CREATE DATABASE {name}")
    base, _, _ = admin_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        admin(admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def unreachable(database_url: str) -> str:
    """The same URL on a port where nothing listens."""
    parts = urlsplit(database_url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:1" if credentials else "127.0.0.1:1"
    return urlunsplit(parts._replace(netloc=netloc))


def admin(url: str, statement: str) -> None:
    """One statement on its own connection, outside a transaction (CREATE/DROP DATABASE cannot
    run in one); the suite's, the benchmark's and the latency script's."""
    connection = psycopg2.connect(url, connect_timeout=10)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


def kinesis_script():
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "scripts" / "kinesis.py"
    spec = importlib.util.spec_from_file_location("kinesis_script", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@dataclass
class Stream:
    client: object
    name: str

    def put(self, bodies: list[bytes | str], key: str | None = None) -> list[str]:
        """PutRecords, in order; returns the sequence numbers."""
        sequences = []
        for start in range(0, len(bodies), 100):
            entries = [
                {
                    "Data": body.encode() if isinstance(body, str) else body,
                    "PartitionKey": key or f"key-{start + index}",
                }
                for index, body in enumerate(bodies[start : start + 100])
            ]
            response = self.client.put_records(StreamName=self.name, Records=entries)
            assert not response.get("FailedRecordCount"), response
            sequences += [entry["SequenceNumber"] for entry in response["Records"]]
        return sequences

    def put_sample(self) -> list[str]:
        return self.put([json.dumps(message) for message in sample_messages()])

    def wait_active(self) -> None:
        import time

        while (
            self.client.describe_stream_summary(StreamName=self.name)["StreamDescriptionSummary"][
                "StreamStatus"
            ]
            != "ACTIVE"
        ):
            time.sleep(0.05)

    def shards(self) -> list[dict]:
        return self.client.list_shards(StreamName=self.name)["Shards"]


# Streams made by the test running now: deleted after it (kinesis-mock, as an AWS account, caps
# the shards of all streams together).
MADE_STREAMS: list[Stream] = []


def make_stream(client, shards: int = 2) -> Stream:
    stream = Stream(client, f"logins-{uuid.uuid4().hex[:10]}")
    client.create_stream(StreamName=stream.name, ShardCount=shards)
    MADE_STREAMS.append(stream)
    stream.wait_active()
    return stream
