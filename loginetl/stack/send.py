"""`loginetl-stack send`: JSON lines, one message a line, onto the stack's queue or its stream.

A line that is not JSON, or that the server refuses, is reported by its number and the rest
are sent. What is reported never quotes a message: the JSON error names a column, and a
server's own words are cleared of the message's ip and device_id values first.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from botocore.exceptions import ClientError

from .processes import StackError
from .sqs import local_client, local_errors

SQS_BATCH = 10  # SendMessageBatch takes at most 10 entries
SQS_BATCH_BYTES = 256 * 1024  # AWS's limit for a whole batch (moto's: 1 MiB)
KINESIS_BATCH = 100
KINESIS_BATCH_BYTES = 4 * 1024 * 1024  # PutRecords takes 5 MiB at most, keys included
PERSONAL_FIELDS = ("ip", "device_id")  # what loginetl masks: never shown raw


@dataclass(frozen=True)
class Line:
    """One message to send: its line number in the input, its text and its parsed JSON."""

    number: int
    body: str
    document: Any


@dataclass(frozen=True)
class Refused:
    """A line not sent, and why (nothing of the message itself)."""

    number: int
    reason: str


def read_lines(source: IO[bytes]) -> Iterator[Line | Refused]:
    """The messages of a JSON-lines input, numbered from 1; blank lines are skipped."""
    for number, raw in enumerate(source, 1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield Refused(number, f"not UTF-8 (byte {exc.start + 1})")
            continue
        body = text.lstrip("\ufeff" if number == 1 else "").strip()
        if not body:
            continue
        try:
            document = json.loads(body, parse_constant=_no_constant)
        except ValueError as exc:  # JSONDecodeError, and the constants refused
            yield Refused(number, f"not JSON: {_json_error(exc)}")
            continue
        yield Line(number, body, document)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_error(exc: ValueError) -> str:
    """The parser's words without the document (JSONDecodeError's str quotes no text, but be
    sure): what is wrong and at which column."""
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} (column {exc.colno})"
    return str(exc)


def scrubbed(text: str, document: Any) -> str:
    """text with every ip and device_id value of the message (at any depth, also inside an
    envelope's JSON string) replaced by ***."""
    for value in sorted(_personal_values(document), key=len, reverse=True):
        text = text.replace(value, "***")
    return text


def _personal_values(value: Any, inside: str | None = None) -> set[str]:
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            found |= _personal_values(item, key)
    elif isinstance(value, list):
        for item in value:
            found |= _personal_values(item, inside)
    elif isinstance(value, str) and value:
        if inside in PERSONAL_FIELDS:
            found.add(value)
        elif value.lstrip().startswith(("{", "[")):  # an SNS Message, an envelope's string
            try:
                found |= _personal_values(json.loads(value))
            except ValueError:
                pass
    elif inside in PERSONAL_FIELDS and value is not None:
        found.add(json.dumps(value))
    return found


def _batches(lines: Iterable[Line | Refused], count: int, size: int, on_refused):
    """Lines in batches of at most count lines and size bytes (a larger line goes alone). A
    refused line goes to on_refused once the lines before it are sent: told in their order."""
    batch: list[Line] = []
    total = 0
    for line in lines:
        if isinstance(line, Refused):
            if batch:
                yield batch
                batch, total = [], 0
            on_refused(line)
            continue
        length = len(line.body.encode())
        if batch and (len(batch) == count or total + length > size):
            yield batch
            batch, total = [], 0
        batch.append(line)
        total += length
    if batch:
        yield batch


# Error codes (the part after the last dot) that refuse what was sent, not where it went: the
# line (or the batch, then its lines are sent one by one) is refused and the rest goes on. Any
# other error (no such queue, say) stops the command.
CONTENT_ERRORS = frozenset(
    (
        "BatchRequestTooLong",
        "InvalidMessageContents",
        "InvalidParameterValue",
        "MessageTooLong",
        "InvalidArgumentException",
        "ValidationException",
    )
)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "")).rsplit(".", 1)[-1]


class Sender:
    """Where the lines go: a queue (SQS) or a stream (Kinesis) of the local stack."""

    server = ""  # in messages: "SQS", "Kinesis"
    service = ""  # boto3's name of it
    batch_count = 1
    batch_bytes = 0

    def __init__(self, endpoint: str, target: str) -> None:
        """target: the queue's URL, or the stream's name."""
        self.endpoint, self.target = endpoint, target
        self.client = local_client(self.service, endpoint)

    def send_batch(self, batch: list[Line]) -> list[Refused]:
        """Send a batch; returns the lines refused. When the server refuses the whole batch for
        what is in it (too long, say), its lines are sent one at a time, to tell which."""
        with local_errors(self.server, self.endpoint):
            try:
                return self.batch(batch)
            except ClientError as exc:
                if _code(exc) not in CONTENT_ERRORS:
                    raise
            return [refused for line in batch if (refused := self._send_alone(line))]

    def _send_alone(self, line: Line) -> Refused | None:
        try:
            self.single(line)
        except ClientError as exc:
            if _code(exc) not in CONTENT_ERRORS:
                raise
            error = exc.response.get("Error", {})
            return self.refusal(line, f"{error.get('Code')}: {error.get('Message')}")
        return None

    def refusal(self, line: Line, reason: str) -> Refused:
        return Refused(line.number, f"{self.server} refused it: {scrubbed(reason, line.document)}")

    def batch(self, batch: list[Line]) -> list[Refused]:
        """Send the lines in one request; returns those it refused one by one."""
        raise NotImplementedError

    def single(self, line: Line) -> None:
        """Send one line in a request of its own."""
        raise NotImplementedError


class QueueSender(Sender):
    server, service = "SQS", "sqs"
    batch_count = SQS_BATCH
    batch_bytes = SQS_BATCH_BYTES

    def batch(self, batch: list[Line]) -> list[Refused]:
        entries = [{"Id": str(line.number), "MessageBody": line.body} for line in batch]
        answer = self.client.send_message_batch(QueueUrl=self.target, Entries=entries)
        by_id = {str(line.number): line for line in batch}
        return [
            self.refusal(by_id[failed["Id"]], f"{failed.get('Code')}: {failed.get('Message')}")
            for failed in answer.get("Failed", [])
        ]

    def single(self, line: Line) -> None:
        self.client.send_message(QueueUrl=self.target, MessageBody=line.body)


class StreamSender(Sender):
    server, service = "Kinesis", "kinesis"
    batch_count = KINESIS_BATCH
    batch_bytes = KINESIS_BATCH_BYTES

    def record(self, line: Line) -> dict[str, Any]:
        # The line number as partition key: the records spread over the shards, as seed's do.
        return {"Data": line.body.encode(), "PartitionKey": str(line.number)}

    def batch(self, batch: list[Line]) -> list[Refused]:
        records = [self.record(line) for line in batch]
        answer = self.client.put_records(StreamName=self.target, Records=records)
        return [
            self.refusal(line, f"{result.get('ErrorCode')}: {result.get('ErrorMessage')}")
            for line, result in zip(batch, answer["Records"], strict=True)
            if result.get("ErrorCode")
        ]

    def single(self, line: Line) -> None:
        self.client.put_record(StreamName=self.target, **self.record(line))


def send_lines(
    source: IO[bytes], sender: Sender, on_refused: Callable[[Refused], None]
) -> tuple[int, int]:
    """Send every message of the input; each line refused goes to on_refused as it is known.
    Returns (sent, refused). A server that cannot be reached raises StackError, saying how
    many were sent before."""
    sent = refused = 0

    def refuse(line: Refused) -> None:
        nonlocal refused
        refused += 1
        on_refused(line)

    try:
        lines = read_lines(source)
        for batch in _batches(lines, sender.batch_count, sender.batch_bytes, refuse):
            failures = sender.send_batch(batch)
            for failure in failures:
                refuse(failure)
            sent += len(batch) - len(failures)
    except StackError as exc:
        raise StackError(f"{exc} (sent {sent} before)") from exc
    except OSError as exc:
        raise StackError(f"cannot read the input: {exc} (sent {sent} before)") from exc
    return sent, refused
