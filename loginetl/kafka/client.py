"""Kafka: the client settings (loginetl's own, and any librdkafka property from the
environment), a consumed record as the pipeline sees it, and one line per error.

`LOGINETL_KAFKA_<NAME>` sets the librdkafka property NAME lower-cased with underscores as
dots (`LOGINETL_KAFKA_SASL_MECHANISM=SCRAM-SHA-512` is `sasl.mechanism`);
`LOGINETL_KAFKA_<NAME>_FILE` reads the value from a file, as every secret may be. The values
of properties whose names say they are secret (password, secret, key) and every value read
from a file are remembered as secrets: scrubbed from every line that leaves the process. The
properties are never printed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..config import redact, remember_secret, secret_from_env
from ..errors import ConfigError, QueueError
from ..stream.client import NOT_UTF8, record_id
from ..transform import InvalidMessage

PREFIX = "LOGINETL_KAFKA_"
SECRET_WORDS = ("password", "secret", "key", "token", "jaas")
# What loginetl sets itself: offsets are stored in PostgreSQL and committed to Kafka only after
# the rows, so these may not be changed from the environment.
OWN_PROPERTIES = (
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "isolation.level",
)
NO_VALUE = "encoding: the record has no value (a tombstone)"
ORIGINAL_ID_HEADER = "loginetl-original-message-id"
# librdkafka's own log lines go through logging (and so through redaction), never raw stderr.
LIBRDKAFKA_LOG = logging.getLogger("loginetl.kafka.librdkafka")


class KafkaError(QueueError):
    """The broker refused or could not be reached."""


def properties_from_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every librdkafka property set as LOGINETL_KAFKA_<NAME> (or <NAME>_FILE)."""
    environ = os.environ if environ is None else environ
    names = {
        name.removesuffix("_FILE")
        for name in environ
        if name.startswith(PREFIX) and len(name) > len(PREFIX)
    }
    found: dict[str, str] = {}
    for name in sorted(names):
        value = secret_from_env(environ, name)
        if value is None:
            continue
        prop = name.removeprefix(PREFIX).lower().replace("_", ".")
        if prop in OWN_PROPERTIES:
            raise ConfigError(
                f"{name}: {prop} is loginetl's own setting (see `loginetl run --help`), "
                "not one to set from the environment"
            )
        if any(word in prop for word in SECRET_WORDS):
            remember_secret(value)
        found[prop] = value
    return found


@dataclass(frozen=True)
class KafkaSettings:
    topic: str
    bootstrap_servers: str
    group: str = "loginetl"
    dlq_topic: str = ""  # "" : the topic's name + "-dlq"
    start_at: str = "earliest"  # where a partition with no stored offset starts, or latest
    properties: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def dead_letter_topic(self) -> str:
        return self.dlq_topic or f"{self.topic}-dlq"

    def consumer_config(self) -> dict:
        return self.properties | {
            "bootstrap.servers": self.bootstrap_servers,
            "group.id": self.group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            # Only where nothing is stored in PostgreSQL and nothing was sought: the reset of
            # an offset out of range (not tested: the test broker never answers it).
            "auto.offset.reset": "earliest" if self.start_at == "earliest" else "latest",
            "isolation.level": "read_committed",
            "logger": LIBRDKAFKA_LOG,
        }

    def producer_config(self) -> dict:
        consumer_only = ("session.", "heartbeat.", "max.poll.", "partition.assignment.")
        own = {p: v for p, v in self.properties.items() if not p.startswith(consumer_only)}
        return (
            {"acks": "all", "message.timeout.ms": 30000}
            | own
            | {"bootstrap.servers": self.bootstrap_servers, "logger": LIBRDKAFKA_LOG}
        )


def made(kind, config: dict, servers: str):
    """A confluent_kafka Consumer, Producer or AdminClient; a configuration librdkafka refuses
    (a property it does not know, a value it does not take) is one line, secrets scrubbed."""
    from confluent_kafka import KafkaException

    try:
        return kind(config)
    except (KafkaException, ValueError, TypeError) as error:
        raise ConfigError(error_line(f"cannot configure Kafka ({servers})", error)) from None


def start_position(text: str) -> str:
    """`--from` for a topic: earliest (trim-horizon, the stream's word, means it too) or
    latest."""
    if text in ("earliest", "trim-horizon"):
        return "earliest"
    if text == "latest":
        return "latest"
    raise ConfigError(f"--from with --topic must be earliest or latest, not {text!r}")


def error_line(action: str, error: BaseException) -> str:
    """One line for a librdkafka error (KafkaException carries a KafkaError), secrets
    scrubbed."""
    inner = error.args[0] if error.args else error
    text = inner.str() if hasattr(inner, "str") else str(inner)
    return redact(f"{action}: {text}")


@dataclass(slots=True)  # made per record, changed by none
class KafkaRecord:
    """One record of a partition, shaped as the loader reads a queue message: `message_id`
    (topic/partition/offset) and `origin_id` are its identity, `body` its value as text,
    `sent_at` its timestamp. `generation` is the claim on the partition it was read under:
    the offset write checks it, so a record read under a claim since lost is never
    committed."""

    topic: str
    partition: int
    offset: int
    generation: int
    data: bytes | None = field(repr=False)
    sent_at: datetime
    key: bytes | None = field(default=None, repr=False)
    headers: dict[str, bytes] = field(default_factory=dict, repr=False)
    receive_count: int = 1

    @property
    def message_id(self) -> str:
        return record_id(self.topic, str(self.partition), str(self.offset))

    @property
    def origin_id(self) -> str:
        """The record's own identity, or for a record replayed from the dead-letter topic the
        original's (its header)."""
        original = self.headers.get(ORIGINAL_ID_HEADER)
        if original:
            try:
                return original.decode("utf-8")
            except UnicodeDecodeError:
                pass
        return self.message_id

    @property
    def shard_id(self) -> str:
        """The partition under one claim: what a lost claim drops from a batch (as a lost
        lease drops a shard's records, stream/run.py)."""
        return f"{self.partition}@{self.generation}"

    @property
    def body(self) -> str:
        if self.data is None:
            raise InvalidMessage(NO_VALUE)
        try:
            return self.data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidMessage(NOT_UTF8) from None


def record_of(message, generation: int) -> KafkaRecord:
    """A consumed confluent_kafka Message as a KafkaRecord."""
    kind, millis = message.timestamp()
    sent_at = datetime.fromtimestamp(millis / 1000, UTC) if kind and millis > 0 else _now()
    headers = {}
    for name, value in message.headers() or ():
        if isinstance(value, bytes):
            headers[name] = value
    return KafkaRecord(
        message.topic(),
        message.partition(),
        message.offset(),
        generation,
        message.value(),
        sent_at,
        message.key(),
        headers,
    )


def _now() -> datetime:
    return datetime.now(UTC)
