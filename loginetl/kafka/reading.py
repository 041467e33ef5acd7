"""Reading a topic: one consumer in the group, in a thread of its own, putting what it
consumes into the inbox the loader takes batches from.

When the group assigns partitions (in the consumer's poll, on this thread), each is claimed in
PostgreSQL (offsets.Claims) and sought to its stored offset, or to --from where none is
stored; the claim's generation rides on every record read under it. Revoked partitions are
forgotten; a claim found lost at COMMIT stops that partition here.

A run without --follow reads each partition it is assigned to the end offset seen when it was
first assigned, then stops; the topic's partitions never assigned to it are `not_read` (held by
another member), for the summary to name. Offsets committed to PostgreSQL are also committed
to Kafka from this thread (a consumer is driven from one thread), for lag tools.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, TopicPartition

from ..errors import LoginetlError
from ..pipeline.state import Shared
from .client import KafkaSettings, error_line, made, record_of
from .offsets import Claims

log = logging.getLogger(__name__)

MAX_RECORDS = 1000  # records a consume call may return
POLL_SECONDS = 0.2


@dataclass
class PartitionState:
    generation: int
    position: int | None  # the next offset to read (None: where --from says, not known yet)
    end: int | None = None  # one-shot: the end offset seen when first assigned
    done: bool = False  # one-shot: read to `end`


class Assignment:
    """What the group assigned this member, and its callbacks (run in consume(), on the
    consumer's thread): claims taken and partitions sought, revokes forgotten, and the offsets
    committed to Kafka after PostgreSQL."""

    shared: Shared
    settings: KafkaSettings
    claims: Claims
    consumer: Consumer
    partitions: dict[int, PartitionState]  # assigned now
    ends: dict[int, int]  # one-shot: each partition's end as first seen
    read: dict[int, int | None]  # every partition read: its last stored offset
    lock: threading.Lock  # guards `to_commit`, `to_drop`, `read`
    to_commit: dict[int, int]  # committed to PostgreSQL, not yet to Kafka
    to_drop: list[tuple[int, int]]  # claims found lost at COMMIT
    assigned_once: threading.Event

    def _commit_to_kafka(self) -> None:
        with self.lock:
            offsets, self.to_commit = self.to_commit, {}
            dropped, self.to_drop = self.to_drop, []
        for partition, generation in dropped:
            state = self.partitions.get(partition)
            if state is not None and state.generation == generation:
                del self.partitions[partition]
                self._call(lambda p=partition: self.consumer.pause([self._tp(p)]), "pausing")
        mine = [self._tp(p, o) for p, o in sorted(offsets.items()) if p in self.partitions]
        if not mine:
            return
        try:
            self.consumer.commit(offsets=mine, asynchronous=True)
        except KafkaException as error:  # for lag tools only: the offsets that count are in PG
            log.debug(error_line("committing offsets to Kafka", error))

    def _assigned(self, consumer, partitions: list[TopicPartition]) -> None:
        claims = self.claims.claim([tp.partition for tp in partitions])
        follow = self.shared.options.follow
        for tp in partitions:
            claim = claims[tp.partition]
            if claim.next_offset is not None:
                tp.offset = claim.next_offset
            else:
                tp.offset = OFFSET_BEGINNING if self.settings.start_at == "earliest" else OFFSET_END
            state = PartitionState(claim.generation, claim.next_offset)
            if not follow:
                self._end_of(tp, state)
            self.partitions[tp.partition] = state
            with self.lock:
                self.read.setdefault(tp.partition, claim.next_offset)
            log.info(
                "partition %d assigned",
                tp.partition,
                extra={"event": "partition_assigned", "partition": tp.partition},
            )
        consumer.assign(partitions)
        self.assigned_once.set()

    def _end_of(self, tp: TopicPartition, state: PartitionState) -> None:
        """One-shot: the end offset seen when the partition was first assigned, and whether
        it is read to it already."""
        if tp.partition not in self.ends:
            low, high = self.consumer.get_watermark_offsets(
                TopicPartition(tp.topic, tp.partition), timeout=10, cached=False
            )
            self.ends[tp.partition] = high
            if state.position is None:
                state.position = low if self.settings.start_at == "earliest" else high
        state.end = self.ends[tp.partition]
        state.done = state.position is None or state.position >= state.end

    def _revoked(self, consumer, partitions: list[TopicPartition]) -> None:
        self._commit_to_kafka()
        for tp in partitions:
            self.partitions.pop(tp.partition, None)
            log.info(
                "partition %d revoked",
                tp.partition,
                extra={"event": "partition_revoked", "partition": tp.partition},
            )

    def _tp(self, partition: int, offset: int | None = None) -> TopicPartition:
        if offset is None:
            return TopicPartition(self.settings.topic, partition)
        return TopicPartition(self.settings.topic, partition, offset)

    def _call(self, work, what: str):
        try:
            return work()
        except KafkaException as error:
            raise LoginetlError(error_line(f"{what} topic {self.settings.topic}", error)) from None


class Reading(Assignment):
    """The consumer of one topic run."""

    def __init__(self, shared: Shared, settings: KafkaSettings, claims: Claims) -> None:
        self.shared = shared
        self.settings = settings
        self.claims = claims
        self.consumer = made(Consumer, settings.consumer_config(), settings.bootstrap_servers)
        self.partitions: dict[int, PartitionState] = {}  # assigned now
        self.ends: dict[int, int] = {}  # one-shot: each partition's end as first seen
        self.read: dict[int, int | None] = {}  # every partition read: its last stored offset
        self.lock = threading.Lock()  # guards `to_commit`, `read`
        self.to_commit: dict[int, int] = {}  # committed to PostgreSQL, not yet to Kafka
        self.to_drop: list[tuple[int, int]] = []  # claims found lost at COMMIT
        self.assigned_once = threading.Event()
        self.read_done = threading.Event()  # nothing more to read: the loader may end
        self.closing = threading.Event()  # the loader is done: commit to Kafka, then close
        self.not_read: list[dict] = []
        self.thread = threading.Thread(target=self._run, name="consumer", daemon=True)

    def start(self) -> None:
        topic = self.settings.topic
        self.consumer.subscribe(
            [topic], on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._revoked
        )
        self.thread.start()

    def alive(self) -> bool:
        return not self.read_done.is_set()

    def join(self) -> None:
        self.shared.stop_receiving = True
        self.closing.set()
        self.thread.join()

    def committed(self, offsets: dict[int, int]) -> None:
        with self.lock:
            self.to_commit |= offsets
            self.read |= offsets

    def drop(self, key: str) -> None:
        """A claim was found lost at COMMIT (the loader's thread): the consumer's thread stops
        reading the partition if that claim is the one it reads under now (a revoke already
        forgot it otherwise)."""
        partition, generation = (int(part) for part in key.split("@"))
        with self.lock:
            self.to_drop.append((partition, generation))

    def offsets(self) -> list[dict]:
        with self.lock:
            return [{"partition": p, "offset": o} for p, o in sorted(self.read.items())]

    # --- the consumer's thread ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            with self.shared.failing_as("consumer"):
                self._consume()
        finally:
            self.read_done.set()
            self.shared.wake_loader()
            with self.shared.failing_as("consumer"):
                self._close()

    def _consume(self) -> None:
        while not self.closing.is_set():
            self._commit_to_kafka()
            if self.read_done.is_set() or not self.shared.receiving():
                self.read_done.set()
                self._call(lambda: self.consumer.consume(1, POLL_SECONDS), "polling")
                continue  # keep serving the group until the loader is done
            wanted = self.shared.reserve(MAX_RECORDS)
            if wanted == 0:
                self.read_done.set()
                continue
            messages = self._call(
                lambda n=wanted: self.consumer.consume(n, POLL_SECONDS), "reading"
            )
            records = self._records(messages)
            self.shared.unreserve(wanted - len(records))
            if records:
                self._put(self.shared.count_received(records))
            if not self.shared.options.follow and self._all_read():
                self._say_what_was_not_read()
                self.read_done.set()

    def _records(self, messages) -> list:
        records = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise LoginetlError(error_line(f"cannot read {self.settings.topic}", error))
                log.warning(error_line(f"reading {self.settings.topic}", KafkaException(error)))
                continue
            state = self.partitions.get(message.partition())
            if state is None:
                continue  # revoked or lost since it was fetched
            state.position = message.offset() + 1
            if state.end is not None and state.position >= state.end:
                state.done = True
            records.append(record_of(message, state.generation))
        return records

    def _put(self, records: list) -> None:
        while self.shared.receiving():
            try:
                self.shared.inbox.put(records, timeout=0.1)
                return
            except queue.Full:
                # Not polling meanwhile: a wait longer than max.poll.interval.ms leaves the
                # group, and a claim made again on rejoining fences these records (read again).
                continue

    def _all_read(self) -> bool:
        return self.assigned_once.is_set() and all(s.done for s in self.partitions.values())

    def _say_what_was_not_read(self) -> None:
        """The topic's partitions never assigned to this member: another holds them."""
        topic = self.settings.topic
        metadata = self._call(lambda: self.consumer.list_topics(topic, timeout=10), "listing")
        known = metadata.topics[topic].partitions if topic in metadata.topics else {}
        mine = set(self.ends)
        owners = self.claims.owners()
        self.not_read = [
            {"partition": p, "owner": owners.get(p)} for p in sorted(set(known) - mine)
        ]

    def _close(self) -> None:
        self._commit_to_kafka()
        try:
            self.consumer.close()  # leaves the group at once: its partitions go to others now
        except (KafkaException, RuntimeError) as error:
            log.debug(error_line("closing the consumer", error))
