"""SQS: receive messages, delete them, release them, and send refused ones to the dead-letter queue.

Every call goes through boto3 exactly as it would to AWS, to whatever endpoint the settings name.
Errors come back as QueueError / ConfigError with one line naming the queue.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import boto3
import botocore.config
import botocore.exceptions
import botocore.loaders
import botocore.session

from . import __version__
from .config import LOCAL_REGION, Settings, is_aws_host, redact, region_from_queue_url
from .errors import ConfigError, LoginetlError, QueueError

log = logging.getLogger(__name__)

# Message attributes loginetl puts on a dead-lettered message.
REASON_ATTRIBUTE = "loginetl-reason"
ORIGINAL_ID_ATTRIBUTE = "loginetl-original-message-id"
SOURCE_QUEUE_ATTRIBUTE = "loginetl-source-queue"
LOGINETL_ATTRIBUTES = (REASON_ATTRIBUTE, ORIGINAL_ID_ATTRIBUTE, SOURCE_QUEUE_ATTRIBUTE)

MAX_PER_CALL = 10  # SQS's limit for ReceiveMessage and every *Batch call
MAX_ATTRIBUTES = 10  # SQS's limit of message attributes per message
MAX_BATCH_BYTES = 200 * 1024  # stay under SendMessageBatch's total payload limit (256 KiB)
PEEK_VISIBILITY = 30  # seconds a peeked message stays hidden while more are gathered
MISSING_QUEUE_CODES = ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")
CREDENTIAL_CODES = ("InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch")


class Message(Protocol):
    """What the loader, peek and the run's counters read of a message, whether a queue's
    (QueueMessage) or a stream's (stream.client.StreamRecord)."""

    @property
    def message_id(self) -> str: ...
    @property
    def origin_id(self) -> str: ...
    @property
    def body(self) -> str: ...
    @property
    def sent_at(self) -> datetime: ...
    @property
    def receive_count(self) -> int: ...


@dataclass(slots=True)  # not frozen, as transform.Login: made per message, changed by none
class QueueMessage:
    message_id: str
    receipt_handle: str = field(repr=False)
    body: str = field(repr=False)
    sent_at: datetime
    receive_count: int
    attributes: dict[str, str] = field(default_factory=dict, repr=False)
    group_id: str | None = None  # FIFO queues only

    @property
    def origin_id(self) -> str:
        """The id the message was first sent with: a replayed message carries it as an attribute,
        so one message loads once however often it travels through the dead-letter queue."""
        return self.attributes.get(ORIGINAL_ID_ATTRIBUTE) or self.message_id

    @property
    def reason(self) -> str | None:
        return self.attributes.get(REASON_ATTRIBUTE)


@dataclass(frozen=True)
class Failure:
    message: QueueMessage
    error: str


def client(settings: Settings, pool_size: int = 10):
    """A client for the settings' endpoint (servers that disagree: ConfigError); local endpoints
    get a region and dummy credentials when the AWS chain has none, as LocalStack and moto
    accept any. `client.meta.endpoint_url` is the URL it calls, as summaries name it."""
    route = settings.sqs_route()
    endpoint = route.url
    core = botocore_session()
    session = boto3.session.Session(botocore_session=core)
    region = session.region_name or region_from_queue_url(route.home) or LOCAL_REGION
    credentials = {}
    if endpoint and not is_aws_host(endpoint) and session.get_credentials() is None:
        credentials = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
    config = botocore.config.Config(
        # botocore's own retries: backoff with jitter on errors, 5xx and throttling. Standard
        # mode: adaptive mode's client-side rate limit takes one lock of the whole process on
        # every request, which many receivers contend for, to guard against throttling that
        # SQS hardly ever does on a standard queue. AWS_RETRY_MODE and AWS_MAX_ATTEMPTS
        # override, as for any AWS tool.
        retries=retry_config("standard"),
        user_agent=user_agent(core),
        connect_timeout=5,
        read_timeout=60,  # longer than the longest long-poll (20 s)
        max_pool_connections=pool_size,
        # SQS checks every request itself, and answers what loginetl handles (a refused entry
        # is resent alone): botocore's second check of each request's shape is CPU spent per
        # call for nothing.
        parameter_validation=False,
        # The queue URL outranked the AWS_ENDPOINT_URL* set (config.sqs_endpoint): botocore must
        # not fall back to it on its own.
        ignore_configured_endpoint_urls=route.outranked or None,
    )
    return session.client(
        "sqs", endpoint_url=endpoint, region_name=region, config=config, **credentials
    )


def botocore_session() -> botocore.session.Session:
    """A botocore session of its own (credentials, region and settings read afresh), sharing
    one data loader with every other in the process: the service models, endpoints and
    partitions are read and parsed once, not once a client (parsing them is most of the cost
    of making a client, and a run makes several)."""
    core = botocore.session.get_session()
    core.register_component("data_loader", _data_loader())
    return core


@functools.cache
def _data_loader() -> botocore.loaders.Loader:
    return botocore.loaders.create_loader()


def user_agent(core: botocore.session.Session) -> str:
    """The User-Agent of every AWS request: botocore's own name and versions, then loginetl's,
    so CloudTrail and server logs say who called. Fixed for the client's life: botocore's
    default rebuilds the header for every request, twice, to report which SDK features the
    call used, a cost per request for nothing loginetl needs. AWS_SDK_UA_APP_ID is kept."""
    agent = f"{core.user_agent()} loginetl/{__version__}"
    app_id = os.environ.get("AWS_SDK_UA_APP_ID", "").strip()
    return f"{agent} app/{app_id}" if app_id else agent


def retry_config(default_mode: str) -> dict:
    """botocore's retries: AWS_RETRY_MODE and AWS_MAX_ATTEMPTS as every AWS SDK reads them,
    else `default_mode` (each client's own choice) and 6 attempts."""
    mode = os.environ.get("AWS_RETRY_MODE", default_mode)
    attempts = os.environ.get("AWS_MAX_ATTEMPTS", "6")
    if mode not in ("standard", "adaptive", "legacy"):
        raise ConfigError(f"AWS_RETRY_MODE must be standard, adaptive or legacy, not {mode!r}")
    if not attempts.isdigit() or int(attempts) < 1:
        raise ConfigError(
            f"AWS_MAX_ATTEMPTS must be a whole number of at least 1, not {attempts!r}"
        )
    # total_max_attempts counts the first try too, as AWS_MAX_ATTEMPTS does for every AWS SDK;
    # botocore's max_attempts would count only the retries (one attempt more).
    return {"mode": mode, "total_max_attempts": int(attempts)}


def error_code_and_message(error: botocore.exceptions.ClientError) -> tuple[str, str]:
    """An AWS error's code and message, as the service sent them."""
    details = error.response.get("Error", {})
    return details.get("Code", ""), details.get("Message", "") or str(error)


@contextmanager
def sqs_errors(action: str, queue_url: str) -> Iterator[None]:
    """Turn botocore's exceptions into one line that names the queue."""
    try:
        yield
    except botocore.exceptions.ClientError as error:
        code, message = error_code_and_message(error)
        line = redact(f"{action} {queue_url}: {code}: {message}")
        if code in MISSING_QUEUE_CODES:
            raise ConfigError(f"{action} {queue_url}: the queue does not exist") from None
        if code in CREDENTIAL_CODES:
            raise ConfigError(line) from None
        raise QueueError(line) from None
    except botocore.exceptions.NoCredentialsError:
        raise ConfigError(
            f"{action} {queue_url}: no AWS credentials found (environment, ~/.aws or instance role)"
        ) from None
    except botocore.exceptions.BotoCoreError as error:
        raise QueueError(redact(f"{action} {queue_url}: {error}")) from None


def receive(
    client,
    queue_url: str,
    max_messages: int = MAX_PER_CALL,
    wait_time: int = 5,
    visibility_timeout: int | None = None,
) -> list[QueueMessage]:
    request = {
        "QueueUrl": queue_url,
        "MaxNumberOfMessages": max(1, min(max_messages, MAX_PER_CALL)),
        "WaitTimeSeconds": wait_time,
        "MessageSystemAttributeNames": [
            "SentTimestamp",
            "ApproximateReceiveCount",
            "MessageGroupId",
        ],
        "MessageAttributeNames": ["All"],
    }
    if visibility_timeout is not None:
        request["VisibilityTimeout"] = visibility_timeout
    with sqs_errors("cannot receive from", queue_url):
        response = client.receive_message(**request)
    return [_queue_message(raw) for raw in response.get("Messages", [])]


def delete(client, queue_url: str, messages: Sequence[QueueMessage]) -> list[Failure]:
    """Delete messages 10 per call; returns those SQS reports as not deleted."""
    failures = []
    for chunk in _chunks(messages, MAX_PER_CALL):
        entries = [
            {"Id": str(index), "ReceiptHandle": message.receipt_handle}
            for index, message in enumerate(chunk)
        ]
        with sqs_errors("cannot delete from", queue_url):
            response = client.delete_message_batch(QueueUrl=queue_url, Entries=entries)
        failures += _failures(response, chunk)
    return failures


def release(client, queue_url: str, messages: Sequence[QueueMessage]) -> list[Failure]:
    """Make messages visible again at once (visibility timeout 0)."""
    return change_visibility(client, queue_url, messages, 0)


def change_visibility(
    client, queue_url: str, messages: Sequence[QueueMessage], timeout: int
) -> list[Failure]:
    failures = []
    for chunk in _chunks(messages, MAX_PER_CALL):
        entries = [
            {
                "Id": str(index),
                "ReceiptHandle": message.receipt_handle,
                "VisibilityTimeout": timeout,
            }
            for index, message in enumerate(chunk)
        ]
        with sqs_errors("cannot change visibility on", queue_url):
            response = client.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)
        failures += _failures(response, chunk)
    return failures


def dead_letter(
    client, dlq_url: str, source_url: str, refused: Sequence[tuple[QueueMessage, str]]
) -> tuple[list[QueueMessage], list[Failure]]:
    """Send refused messages to the DLQ, body unchanged, with the reason and original id as
    attributes. Returns (sent, failed): only a sent message may then be deleted from the source."""
    entries = [
        forward_entry(
            message,
            {
                REASON_ATTRIBUTE: reason[:1000],
                ORIGINAL_ID_ATTRIBUTE: message.origin_id,
                SOURCE_QUEUE_ATTRIBUTE: source_url,
            },
            dlq_url,
        )
        for message, reason in refused
    ]
    not_sent = send_entries(client, dlq_url, entries)
    sent = [message for index, (message, _) in enumerate(refused) if index not in not_sent]
    return sent, [Failure(refused[index][0], why) for index, why in not_sent.items()]


def forward_entry(message: QueueMessage, ours: dict[str, str], destination: str) -> dict:
    """The SendMessageBatch entry (without Id) that carries `message` to another queue: body
    unchanged, `ours` as attributes, and the sender's own string attributes where SQS's limit of
    ten leaves room (earlier loginetl attributes are replaced by `ours`)."""
    skip = set(LOGINETL_ATTRIBUTES) | set(ours)
    theirs = [(k, v) for k, v in message.attributes.items() if k not in skip and v]
    attributes = dict(theirs[: MAX_ATTRIBUTES - len(ours)]) | ours
    entry = {
        "MessageBody": message.body,
        "MessageAttributes": {
            name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()
        },
    }
    if destination.endswith(".fifo"):
        entry["MessageGroupId"] = message.group_id or "loginetl"
        entry["MessageDeduplicationId"] = message.message_id
    return entry


def peek(client, queue_url: str, count: int, wait_time: int) -> list[QueueMessage]:
    """Up to `count` distinct messages, each made visible again before returning (held
    invisible meanwhile, so successive receives do not return the same ones)."""
    seen: dict[str, QueueMessage] = {}
    try:
        while len(seen) < count:
            wanted = min(MAX_PER_CALL, count - len(seen))
            received = receive(client, queue_url, wanted, wait_time, PEEK_VISIBILITY)
            new = [message for message in received if message.message_id not in seen]
            seen.update((message.message_id, message) for message in new)
            if not new:
                break
    finally:
        release(client, queue_url, list(seen.values()))
    return list(seen.values())


def dead_letter_url(client, queue_url: str) -> str | None:
    """The DLQ named by the queue's RedrivePolicy, as a URL; None when it has none."""
    attributes = queue_attributes(client, queue_url, ["RedrivePolicy"])
    policy = attributes.get("RedrivePolicy")
    if not policy:
        return None
    arn = json.loads(policy).get("deadLetterTargetArn", "")
    parts = arn.split(":")
    if len(parts) < 6:
        return None
    with sqs_errors("cannot find the dead-letter queue of", queue_url):
        response = client.get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])
    return response["QueueUrl"]


def max_receive_count(client, queue_url: str) -> int | None:
    policy = queue_attributes(client, queue_url, ["RedrivePolicy"]).get("RedrivePolicy")
    return int(json.loads(policy)["maxReceiveCount"]) if policy else None


def queue_attributes(client, queue_url: str, names: Iterable[str]) -> dict[str, str]:
    with sqs_errors("cannot read attributes of", queue_url):
        response = client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=list(names))
    return response.get("Attributes", {})


def _queue_message(raw: dict) -> QueueMessage:
    system = raw.get("Attributes", {})
    sent_ms = int(system.get("SentTimestamp", "0")) or None
    return QueueMessage(
        message_id=raw["MessageId"],
        receipt_handle=raw["ReceiptHandle"],
        body=raw.get("Body", ""),
        sent_at=(datetime.fromtimestamp(sent_ms / 1000, tz=UTC) if sent_ms else datetime.now(UTC)),
        receive_count=int(system.get("ApproximateReceiveCount", "1")),
        attributes={
            name: value.get("StringValue", "")
            for name, value in raw.get("MessageAttributes", {}).items()
            if "StringValue" in value
        },
        group_id=system.get("MessageGroupId"),
    )


def _failures(response: dict, messages: Sequence[QueueMessage]) -> list[Failure]:
    return [
        Failure(messages[int(entry["Id"])], f"{entry.get('Code', '')}: {entry.get('Message', '')}")
        for entry in response.get("Failed", [])
    ]


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class VisibilityKeeper:
    """Keeps the messages in hand invisible while a batch takes long (slow database, retries).

    A background thread extends the visibility of every message held for more than half the
    queue's visibility timeout, so no other consumer receives it meanwhile.
    """

    def __init__(self, client, queue_url: str, visibility_timeout: int) -> None:
        self.client = client
        self.queue_url = queue_url
        self.timeout = visibility_timeout
        self.held: dict[str, tuple[QueueMessage, float]] = {}  # receipt -> (message, since)
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._keep, name="visibility", daemon=True)
        if self.timeout > 0:
            self.thread.start()

    def hold(self, messages: Iterable[QueueMessage]) -> None:
        now = time.monotonic()
        with self.lock:
            self.held.update((m.receipt_handle, (m, now)) for m in messages)

    def let_go(self, messages: Iterable[QueueMessage]) -> None:
        with self.lock:
            for message in messages:
                self.held.pop(message.receipt_handle, None)

    def close(self) -> None:
        self.stopped.set()

    def _keep(self) -> None:
        while not self.stopped.wait(min(1.0, self.timeout / 4)):
            due_after = time.monotonic() - self.timeout / 2
            with self.lock:
                due = [m for m, since in self.held.values() if since <= due_after]
            if not due:
                continue
            try:
                failures = change_visibility(self.client, self.queue_url, due, self.timeout)
            except LoginetlError as error:
                log.warning("could not extend the visibility of %d messages: %s", len(due), error)
                continue
            failed = {id(failure.message) for failure in failures}
            # Restart their clocks, unless the batch let go of them meanwhile.
            now = time.monotonic()
            with self.lock:
                for message in due:
                    if id(message) not in failed and message.receipt_handle in self.held:
                        self.held[message.receipt_handle] = (message, now)
            log.info("extended the visibility of %d messages by %d s", len(due), self.timeout)


# Codes with which SQS refuses a whole SendMessageBatch for what one entry holds (a body over
# the queue's MaximumMessageSize, a FIFO entry without MessageGroupId, ...), where it could
# have failed that entry alone.
ENTRY_REFUSAL_CODES = (
    "InvalidParameterValue",
    "MissingParameter",
    "InvalidMessageContents",
    "InvalidAttributeName",
    "InvalidAttributeValue",
    "BatchRequestTooLong",
    "AWS.SimpleQueueService.BatchRequestTooLong",
)


def send_entries(client, queue_url: str, entries: Sequence[dict]) -> dict[int, str]:
    """Send prepared entries (MessageBody, MessageAttributes, ...; no Id) with SendMessageBatch,
    10 and MAX_BATCH_BYTES at most per call. Returns {index in `entries`: why it was not sent}:
    an index missing from the result is an entry SQS reported as sent, and only those.

    A request SQS refuses as a whole because of an entry is sent again one entry per call, so
    one bad message does not hold back the others. A missing queue or bad credentials raise
    ConfigError, an unreachable endpoint QueueError: nothing is known to be sent then.
    """
    not_sent: dict[int, str] = {}
    for indexes in _index_chunks_by_size(entries):
        not_sent |= _send_chunk(client, queue_url, entries, indexes)
    return not_sent


def _send_chunk(
    client, queue_url: str, entries: Sequence[dict], indexes: list[int]
) -> dict[int, str]:
    request = [dict(entries[index], Id=str(index)) for index in indexes]
    refusal = None
    with sqs_errors("cannot send to", queue_url):
        try:
            response = client.send_message_batch(QueueUrl=queue_url, Entries=request)
        except botocore.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code", "") not in ENTRY_REFUSAL_CODES:
                raise
            refusal = error
    if refusal is not None:
        if len(indexes) == 1:
            details = refusal.response.get("Error", {})
            return {indexes[0]: redact(f"{details.get('Code', '')}: {details.get('Message', '')}")}
        not_sent: dict[int, str] = {}
        for index in indexes:
            not_sent |= _send_chunk(client, queue_url, entries, [index])
        return not_sent
    not_sent = {
        int(entry["Id"]): redact(f"{entry.get('Code', '')}: {entry.get('Message', '')}")
        for entry in response.get("Failed", [])
    }
    acknowledged = {int(entry["Id"]) for entry in response.get("Successful", [])}
    for index in indexes:
        if index not in acknowledged and index not in not_sent:
            not_sent[index] = "not acknowledged by SQS"
    return not_sent


def _index_chunks_by_size(entries: Sequence[dict]) -> Iterator[list[int]]:
    """Indexes of at most 10 entries and MAX_BATCH_BYTES of bodies per SendMessageBatch."""
    chunk: list[int] = []
    size = 0
    for index, entry in enumerate(entries):
        entry_size = len(entry["MessageBody"].encode("utf-8", "surrogatepass")) + 2048
        if chunk and (len(chunk) == MAX_PER_CALL or size + entry_size > MAX_BATCH_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(index)
        size += entry_size
    if chunk:
        yield chunk
