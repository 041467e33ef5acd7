"""Kinesis: the client, one line per error, the records of a shard as the pipeline sees them
(with KPL-aggregated records split into their user records), and the shard list.

Every call goes through boto3 as it would to AWS, to the endpoint the settings name
(Settings.kinesis_endpoint: --endpoint-url, AWS_ENDPOINT_URL_KINESIS or AWS_ENDPOINT_URL, in
the order of precedence of config.explicit_endpoint).
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import boto3
import botocore.config
import botocore.exceptions
import botocore.utils

from .. import sqs
from ..config import LOCAL_REGION, is_aws_host, redact
from ..errors import ConfigError, QueueError
from ..transform import InvalidMessage

MAX_ID_LENGTH = 128  # user_logins.sqs_message_id is varchar(128)
THROTTLED = ("ProvisionedThroughputExceededException", "LimitExceededException")
EXPIRED = "ExpiredIteratorException"
NOT_UTF8 = "encoding: the record's data is not UTF-8 text"
# The partition key of a record replay-dlq put back: the original identity follows.
REPLAY_PREFIX = "loginetl-replay:"


class StreamError(QueueError):
    """Kinesis refused or could not be reached."""


class IteratorExpired(StreamError):
    pass


class Throttled(StreamError):
    pass


def kinesis_client(endpoint: str | None, pool_size: int = 10):
    """A client for `endpoint` (None: AWS's own, or whatever botocore reads itself)."""
    core = sqs.botocore_session()
    # botocore turns each record's ApproximateArrivalTimestamp (epoch seconds) into a datetime
    # through dateutil's tzlocal, costly per record; _timestamp does it directly in UTC.
    core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=_timestamp)
    session = boto3.session.Session(botocore_session=core)
    credentials = {}
    if endpoint and not is_aws_host(endpoint) and session.get_credentials() is None:
        credentials = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
    config = botocore.config.Config(
        # Adaptive retries: a shard over its read limit throttles (ProvisionedThroughput-
        # Exceeded), and the client-side rate limit then slows every reader down.
        retries=sqs.retry_config("adaptive"),
        user_agent=sqs.user_agent(core),
        connect_timeout=5,
        read_timeout=30,
        max_pool_connections=pool_size,
    )
    return session.client(
        "kinesis",
        endpoint_url=endpoint,
        region_name=session.region_name or LOCAL_REGION,
        config=config,
        **credentials,
    )


def _timestamp(value) -> datetime:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return botocore.utils.parse_timestamp(value)


@contextmanager
def kinesis_errors(action: str, stream: str) -> Iterator[None]:
    try:
        yield
    except botocore.exceptions.ClientError as error:
        code, message = sqs.error_code_and_message(error)
        line = redact(f"{action} stream {stream}: {code}: {message}")
        if code == "ResourceNotFoundException":
            raise ConfigError(f"{action} stream {stream}: the stream does not exist") from None
        if code in sqs.CREDENTIAL_CODES:
            raise ConfigError(line) from None
        if code == EXPIRED:
            raise IteratorExpired(line) from None
        if code in THROTTLED:
            raise Throttled(line) from None
        raise StreamError(line) from None
    except botocore.exceptions.NoCredentialsError:
        raise ConfigError(f"{action} stream {stream}: no AWS credentials found") from None
    except botocore.exceptions.BotoCoreError as error:
        raise StreamError(redact(f"{action} stream {stream}: {error}")) from None


def record_id(stream: str, shard_id: str, sequence: str, sub: int | None = None) -> str:
    """A record's identity, kept in user_logins.sqs_message_id: stream/shard/sequence, plus
    /sub-sequence for a user record of an aggregated one. A stream name too long for the column
    is replaced by the first 16 hex digits of its SHA-256."""
    tail = f"/{shard_id}/{sequence}" + ("" if sub is None else f"/{sub}")
    if len(stream) + len(tail) > MAX_ID_LENGTH:
        stream = hashlib.sha256(stream.encode()).hexdigest()[:16]
    return stream + tail


@dataclass(slots=True)  # not frozen, as transform.Login: made per record, changed by none
class StreamRecord:
    """One (user) record of a shard, shaped as the loader reads a queue message: `message_id`
    and `origin_id` are its identity, `body` its data as text (a record that is not UTF-8 is
    invalid: reading `body` says so), `sent_at` its arrival time."""

    stream: str
    shard_id: str
    sequence: str
    sub: int | None  # sub-sequence number of a de-aggregated user record
    data: bytes = field(repr=False)
    sent_at: datetime
    partition_key: str = field(default="", repr=False)
    receive_count: int = 1
    attributes: dict = field(default_factory=dict, repr=False)

    @property
    def message_id(self) -> str:
        return record_id(self.stream, self.shard_id, self.sequence, self.sub)

    @property
    def origin_id(self) -> str:
        """The identity the row is loaded under: the record's own, or for a record replay-dlq
        put back, the original record's (carried in the partition key)."""
        if self.partition_key.startswith(REPLAY_PREFIX):
            return self.partition_key.removeprefix(REPLAY_PREFIX)
        return self.message_id

    @property
    def position(self) -> tuple[int, int]:
        """Where the record stands in its shard, as checkpoints compare."""
        return int(self.sequence), -1 if self.sub is None else self.sub

    @property
    def body(self) -> str:
        try:
            return self.data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidMessage(NOT_UTF8) from None

    @property
    def text_or_base64(self) -> tuple[str, bool]:
        """The data for an SQS body: as it is when UTF-8, else base64 (True)."""
        try:
            return self.data.decode("utf-8"), False
        except UnicodeDecodeError:
            return base64.b64encode(self.data).decode("ascii"), True


def user_records(stream: str, shard_id: str, raw: dict) -> list[StreamRecord]:
    """The records of one GetRecords entry: itself, or the user records a KPL aggregated in it
    (each with its sub-sequence number)."""
    arrived = raw.get("ApproximateArrivalTimestamp") or datetime.now(UTC)
    data, key, sequence = raw["Data"], raw.get("PartitionKey", ""), raw["SequenceNumber"]
    if not data.startswith(KPL_MAGIC):
        return [StreamRecord(stream, shard_id, sequence, None, data, arrived, key)]
    from aws_kinesis_agg.deaggregator import iter_deaggregate_records

    parts = [part["kinesis"] for part in iter_deaggregate_records(raw, data_format="Boto3")]
    if not all(part.get("aggregated") for part in parts):  # the magic, but not a KPL record
        return [StreamRecord(stream, shard_id, sequence, None, data, arrived, key)]
    return [
        StreamRecord(
            stream,
            shard_id,
            sequence,
            part["subSequenceNumber"],
            base64.b64decode(part["data"]),
            arrived,
            part.get("partitionKey") or key,
        )
        for part in parts
    ]


KPL_MAGIC = b"\xf3\x89\x9a\xc2"


@dataclass(frozen=True)
class Shard:
    id: str
    parents: tuple[str, ...]
    closed: bool  # has an ending sequence number: no new records go to it

    @staticmethod
    def of(raw: dict) -> Shard:
        parents = tuple(
            p for p in (raw.get("ParentShardId"), raw.get("AdjacentParentShardId")) if p
        )
        return Shard(raw["ShardId"], parents, "EndingSequenceNumber" in raw["SequenceNumberRange"])


def list_shards(client, stream: str) -> list[Shard]:
    shards, token = [], None
    with kinesis_errors("cannot list the shards of", stream):
        while True:
            request = {"NextToken": token} if token else {"StreamName": stream}
            response = client.list_shards(**request)
            shards += [Shard.of(raw) for raw in response.get("Shards", [])]
            token = response.get("NextToken")
            if not token:
                return shards


AT_TIMESTAMP = "at-timestamp:"  # `--from at-timestamp:2026-12-01T00:00:00Z`


def start_position(text: str) -> str:
    """`--from` checked: trim-horizon, latest, or at-timestamp: and an ISO 8601 time with its
    zone (a time without one would mean whatever zone the process runs in)."""
    if text in ("trim-horizon", "latest"):
        return text
    if text.startswith(AT_TIMESTAMP):
        try:
            moment = datetime.fromisoformat(text.removeprefix(AT_TIMESTAMP))
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            return AT_TIMESTAMP + moment.isoformat()
    raise ConfigError(
        f"--from must be trim-horizon, latest or at-timestamp:TIME (ISO 8601 with a zone, e.g. "
        f"at-timestamp:2026-12-01T00:00:00Z), not {text!r}"
    )


def shard_iterator(client, stream: str, shard_id: str, after: str | None, start: str) -> str:
    """An iterator just after the checkpoint's record (re-reading an aggregated one, whose rest
    the caller skips), else where `start` says: TRIM_HORIZON, LATEST, or the first record that
    arrived at or after a time."""
    request: dict = {"StreamName": stream, "ShardId": shard_id}
    if after is None and start.startswith(AT_TIMESTAMP):
        request["ShardIteratorType"] = "AT_TIMESTAMP"
        request["Timestamp"] = datetime.fromisoformat(start.removeprefix(AT_TIMESTAMP))
    elif after is None:
        request["ShardIteratorType"] = "LATEST" if start == "latest" else "TRIM_HORIZON"
    else:
        request |= {"ShardIteratorType": "AT_SEQUENCE_NUMBER", "StartingSequenceNumber": after}
    with kinesis_errors("cannot get an iterator on", stream):
        return client.get_shard_iterator(**request)["ShardIterator"]


@dataclass
class Read:
    records: list[StreamRecord]
    next_iterator: str | None  # None: the shard is closed and read to its end
    millis_behind: int


def get_records(client, stream: str, shard_id: str, iterator: str, limit: int) -> Read:
    """One GetRecords; throttling waits and tries again (the per-shard limit is 5 calls/s)."""
    for attempt in range(10):
        try:
            with kinesis_errors("cannot read from", stream):
                response = client.get_records(ShardIterator=iterator, Limit=limit)
            break
        except Throttled:
            time.sleep(min(5.0, 0.2 * 2**attempt))
    else:
        raise Throttled(f"cannot read from stream {stream}: throttled 10 times in a row")
    records = [
        r for raw in response.get("Records", []) for r in user_records(stream, shard_id, raw)
    ]
    return Read(records, response.get("NextShardIterator"), response.get("MillisBehindLatest", 0))
