"""`loginetl run --topic`: the run of pipeline/ with a Kafka topic as its source.

The same Shared state, Loader (validate, mask, insert), metrics, logs and summary as for SQS
and Kinesis; records come from one consumer in the group (reading.py) and a batch settles
inside its COMMIT (settling.py): its dead letters acknowledged by the broker, then its offsets
written beside its rows, fenced by the claim they were read under.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from .. import database, schema
from ..config import Settings
from ..errors import EXIT_INCOMPLETE, ClaimLost, ConfigError
from ..masking import MaskKey
from ..metrics import Metrics, MetricsServer
from ..pipeline import drive
from ..pipeline.committing import InCommitRun
from ..pipeline.loading import Loader
from ..pipeline.reaching import OtherEnd, side_by_side
from ..pipeline.state import RunOptions, RunSummary, Shared
from ..stream.leases import new_owner
from ..stream.run import made_by_start, serve_metrics
from .client import KafkaError, KafkaSettings, error_line, made
from .offsets import Claims
from .reading import MAX_RECORDS, Reading
from .settling import DeadLetterTopic, KafkaSettlers

log = logging.getLogger(__name__)

BATCH_SIZE = MAX_RECORDS  # --batch-size of a topic run: one full consume a transaction


@dataclass
class TopicSummary(RunSummary):
    topic: str = ""
    dlq_topic: str = ""
    group: str = ""
    partitions: list = field(default_factory=list)  # [{"partition", "offset"}] of each read
    # [{"partition", "owner"}]: partitions a one-shot run was never assigned (another member's)
    partitions_not_read: list = field(default_factory=list)


class KafkaRun(InCommitRun):
    """One `loginetl run --topic`, shaped as pipeline.Run: start, drain, close."""

    def __init__(
        self,
        settings: Settings,
        kafka: KafkaSettings,
        key: MaskKey,
        options: RunOptions,
        on_batch: Callable[[RunSummary], None],
        stop: threading.Event | None,
        metrics: Metrics | None,
    ) -> None:
        self.settings, self.kafka, self.key, self.options = settings, kafka, key, options
        self.on_batch = on_batch
        self.metrics = metrics or Metrics()
        self.shared = Shared("", options, stop or threading.Event())
        self.summary = TopicSummary(
            queue_url=None, topic=kafka.topic, dlq_topic=kafka.dead_letter_topic, group=kafka.group
        )
        self.shared.summary = self.summary  # one object: the loader counts, drain adds offsets
        self.owner = new_owner()
        self.db: database.Database | None = None
        self.claims: Claims | None = None
        self.reading: Reading | None = None
        self.dead_letters: DeadLetterTopic | None = None
        self.settlers: KafkaSettlers | None = None
        self.metrics_server: MetricsServer | None = None

    def start(self) -> None:
        settings, options = self.settings, self.options
        on_outage = lambda: self.metrics.error("database")  # noqa: E731 - passed twice
        self.db = database.Database(settings.database_url, options.retry_for, self.shared.stop,
                                    on_outage)  # fmt: skip
        keep_extra = options.keep_extra is not None
        table = reach_the_ends(self.db, self.kafka, keep_extra)
        kafka = self.kafka
        self.claims = Claims(settings.database_url, kafka.group, kafka.topic, self.owner,
                             options.retry_for, self.shared.stop, on_outage)  # fmt: skip
        self.dead_letters = DeadLetterTopic(self.kafka)
        self.reading = Reading(self.shared, self.kafka, self.claims)
        self.settlers = KafkaSettlers(self.shared, self.kafka, self.owner, self.dead_letters,
                                      self.metrics, self.reading.committed)  # fmt: skip
        self.loader = Loader(self.shared, self.key, self.db, table, self.settlers, self.metrics)
        if options.metrics_port is not None:
            port = options.metrics_port
            self.metrics_server = serve_metrics(self.metrics, options, port, settings.database_url)
        self.reading.start()

    def _alive(self) -> bool:
        return made_by_start(self.reading).alive()

    def _lost(self, lost: ClaimLost) -> None:
        log.warning(str(lost), extra={"event": "partition_lost", "claim": lost.shard_id})
        made_by_start(self.reading).drop(lost.shard_id)

    def _ended(self, started: float) -> RunSummary:
        reading = made_by_start(self.reading)
        reading.join()
        self.shared.finish(time.monotonic() - started)
        summary = self.summary
        if summary.stopped_because == "queue drained":
            summary.stopped_because = "topic read to its end"
            if reading.not_read:
                _not_read(summary, reading.not_read)
        summary.partitions = reading.offsets()
        return summary

    def close(self) -> None:
        if self.settlers is not None:
            self.settlers.wait()
        if self.reading is not None and self.reading.thread.is_alive():
            self.reading.join()
        if self.dead_letters is not None:
            self.dead_letters.close()
        self._close_claims_and_ends(self.claims)


def _not_read(summary: TopicSummary, not_read: list[dict]) -> None:
    summary.partitions_not_read = not_read
    named = ", ".join(f"{held['partition']} (owner {held['owner']})" for held in not_read)
    summary.stopped_because = (
        f"{len(not_read)} partitions not read, assigned to another member of group "
        f"{summary.group}: {named}"
    )
    summary.exit_code = EXIT_INCOMPLETE


def reach_the_ends(db: database.Database, kafka: KafkaSettings, keep_extra: bool):
    """The table checked, and the topic and its dead-letter topic found on the brokers, side by
    side: each end that cannot be reached is named at once."""
    admin = made(AdminClient, kafka.producer_config(), kafka.bootstrap_servers)

    def find_the_topics() -> None:
        wanted = (kafka.topic, kafka.dead_letter_topic)
        try:
            metadata = admin.list_topics(timeout=30)
        except KafkaException as error:
            raise KafkaError(error_line(f"cannot reach {kafka.bootstrap_servers}", error)) from None
        for topic in wanted:
            found = metadata.topics.get(topic)
            if found is None or found.error is not None or not found.partitions:
                raise ConfigError(f"topic {topic} does not exist on {kafka.bootstrap_servers}")

    return side_by_side(
        db,
        lambda connection: schema.require_ready(connection, keep_extra),
        "checking the table",
        [OtherEnd(None, "Kafka", find_the_topics)],
    )


def run(
    settings: Settings,
    kafka: KafkaSettings,
    key: MaskKey,
    options: RunOptions = RunOptions(),
    on_batch: Callable[[RunSummary], None] = lambda summary: None,
    stop: threading.Event | None = None,
    metrics: Metrics | None = None,
) -> RunSummary:
    """As pipeline.run, reading the topic `kafka.topic`."""
    options = options.with_batch_size(BATCH_SIZE)
    return drive(
        settings,
        key,
        options,
        lambda: KafkaRun(settings, kafka, key, options, on_batch, stop, metrics),
    )
