"""Settling a topic's batch, inside its COMMIT: dead-letter the refused records to the
dead-letter topic and wait until the broker acknowledged every one (a delivery report without
an error), then move each partition's stored offset in the transaction of the rows
(offsets.commit_offsets, fenced by the claim).

After COMMIT the offsets are handed to the reader, which commits them to Kafka too, for lag
tools only: loginetl never reads them back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from confluent_kafka import KafkaException, Producer

from ..errors import LoginetlError
from ..metrics import Metrics
from ..pipeline.settling import Settlers
from ..pipeline.state import Shared
from ..sqs import REASON_ATTRIBUTE
from ..stream.checkpoints import DeadLetters
from .client import ORIGINAL_ID_HEADER, KafkaRecord, KafkaSettings, error_line, made
from .offsets import commit_offsets, spans

TOPIC_HEADER = "loginetl-source-topic"
PARTITION_HEADER = "loginetl-partition"
OFFSET_HEADER = "loginetl-offset"


def dead_letter_headers(record: KafkaRecord, reason: str) -> list[tuple[str, str | bytes | None]]:
    return [
        (REASON_ATTRIBUTE, reason[:1000].encode()),
        (ORIGINAL_ID_HEADER, record.origin_id.encode()),
        (TOPIC_HEADER, record.topic.encode()),
        (PARTITION_HEADER, str(record.partition).encode()),
        (OFFSET_HEADER, str(record.offset).encode()),
    ]


class DeadLetterTopic:
    """The producer of the dead-letter topic: `send` returns only when the broker acknowledged
    every record, and raises otherwise."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.topic = settings.dead_letter_topic
        self.producer = made(Producer, settings.producer_config(), settings.bootstrap_servers)
        self.lock = threading.Lock()  # one send at a time: its delivery reports are its own

    def send(self, refused: list[tuple[KafkaRecord, str]], timeout: float = 60.0) -> None:
        if not refused:
            return
        failures: list[str] = []

        def delivered(error, message) -> None:
            if error is not None:
                failures.append(error.str())

        with self.lock:
            for record, reason in refused:
                self._produce(record, reason, delivered)
            left = self.producer.flush(timeout)
        if left or failures:
            why = failures[0] if failures else f"{left} not acknowledged within {timeout:.0f} s"
            raise LoginetlError(
                f"the dead-letter topic {self.topic} did not take {left + len(failures)} of "
                f"{len(refused)} records ({why}): the batch was rolled back, its offsets not moved"
            )

    def _produce(self, record: KafkaRecord, reason: str, delivered) -> None:
        while True:
            try:
                self.producer.produce(
                    self.topic,
                    value=record.data,
                    key=record.key,
                    headers=dead_letter_headers(record, reason),
                    on_delivery=delivered,
                )
                return
            except BufferError:  # the producer's queue is full: let it drain
                self.producer.poll(0.1)
            except KafkaException as error:
                raise LoginetlError(error_line(f"cannot send to {self.topic}", error)) from None

    def close(self) -> None:
        self.producer.flush(10)


class KafkaSettlers(Settlers):
    """The settlers of a topic run: the same counting, metrics and batch log as for SQS, the
    settling itself in `in_commit`."""

    def __init__(
        self,
        shared: Shared,
        settings: KafkaSettings,
        owner: str,
        dead_letters: DeadLetterTopic,
        metrics: Metrics,
        on_committed: Callable[[dict[int, int]], None],
    ) -> None:
        self.shared = shared
        self.settings = settings
        self.owner = owner
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.on_committed = on_committed
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="dead-letter")

    def validated(self, refused) -> DeadLetters:
        """Start sending what validation refused while the batch's rows are inserted:
        in_commit waits for it before any offset moves."""
        refused = list(refused)
        return DeadLetters(
            self.pool.submit(self.dead_letters.send, refused) if refused else None,
            {id(record) for record, _ in refused},
        )

    def in_commit(self, connection, batch: list[KafkaRecord], refused, early) -> None:
        early.wait()  # raises what the send raised: the batch rolls back
        rest = [(record, reason) for record, reason in refused if id(record) not in early.sent]
        self.dead_letters.send(rest)  # the rows the database refused (rare)
        early.sent |= {id(record) for record, _ in rest}
        settings = self.settings
        commit_offsets(connection, settings.group, settings.topic, self.owner, batch)

    def submit(self, batch, done, refused, loaded: int, duplicates: int, started: float) -> None:
        self.shared.count_dead_lettered([reason for _, reason in refused])
        self.on_committed({span.partition: span.last + 1 for span in spans(batch)})
        self._report(batch, refused, loaded, duplicates, time.monotonic() - started)

    def wait(self) -> None:
        self.pool.shutdown(wait=True)
