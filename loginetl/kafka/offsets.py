"""Offsets of a topic's partitions, per consumer group, in one PostgreSQL table beside the rows.

One row per (group, topic, partition): the next offset to read (the last committed record's
+ 1; NULL: nothing committed yet), the member that claimed the partition last (`owner`), and
the claim's `generation`, which each claim increments. A member claims the partitions Kafka's
group protocol assigns it, on a connection of its own, and seeks each to its stored offset.

The offset is written by the loader in the transaction of the rows (settling.py), and only for
the claim the records were read under: `owner` and `generation` are checked in that UPDATE,
so a member that lost a partition (revoked, or stalled past its session while another member
claimed it) can never commit for it again. Offsets move only forward.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from .. import database
from ..database import database_errors
from ..errors import ClaimLost
from .client import KafkaRecord

OFFSETS = "loginetl_kafka_offsets"

CREATE_SQL = f"""CREATE TABLE IF NOT EXISTS {OFFSETS} (
    consumer_group text NOT NULL,
    topic text NOT NULL,
    partition integer NOT NULL,
    next_offset bigint,
    owner text,
    generation bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
)"""


class PartitionLost(ClaimLost):
    """The claim the records were read under is no longer this member's: its records of the
    batch are not ours to commit (pipeline/committing.py re-cuts the batch without them)."""

    def __init__(self, key: str, why: str) -> None:
        partition = key.split("@")[0]
        super().__init__(f"partition {partition} lost ({why}): its records were rolled back", key)


@dataclass(frozen=True)
class Claim:
    partition: int
    next_offset: int | None  # None: nothing committed for this group yet
    generation: int


class Claims:
    """This member's claims on the partitions of one topic, on a connection of its own
    (autocommit), retried through a database outage as batches are."""

    def __init__(
        self,
        database_url: str,
        group: str,
        topic: str,
        owner: str,
        retry_for: float = 0.0,
        stop: threading.Event | None = None,
        on_outage: Callable[[], None] = lambda: None,
    ) -> None:
        self.db = database.Database(database_url, retry_for, stop, on_outage)
        self.group, self.topic, self.owner = group, topic, owner

    def _execute(self, sql: str, params: tuple) -> list[tuple]:
        return self.db.execute(sql, params, f"cannot update {OFFSETS}", f"the offsets in {OFFSETS}")

    def claim(self, partitions: list[int]) -> dict[int, Claim]:
        """Claim the partitions for this member: each gets a new generation, which fences out
        whoever held it before. A retry after a lost reply claims again, harmlessly."""
        rows = self._execute(
            f"INSERT INTO {OFFSETS} AS o (consumer_group, topic, partition, owner, generation) "
            "SELECT %s, %s, p, %s, 1 FROM unnest(%s::integer[]) AS p "
            "ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET owner = excluded.owner, "
            "generation = o.generation + 1, updated_at = clock_timestamp() "
            "RETURNING partition, next_offset, generation",
            (self.group, self.topic, self.owner, sorted(partitions)),
        )
        return {p: Claim(p, next_offset, generation) for p, next_offset, generation in rows}

    def give_back(self) -> None:
        """The run ends: its claims are shown as nobody's (a later claim fences anyway)."""
        self._execute(
            f"UPDATE {OFFSETS} SET owner = NULL WHERE consumer_group = %s AND topic = %s "
            "AND owner = %s",
            (self.group, self.topic, self.owner),
        )

    def owners(self) -> dict[int, str | None]:
        rows = self._execute(
            f"SELECT partition, owner FROM {OFFSETS} WHERE consumer_group = %s AND topic = %s",
            (self.group, self.topic),
        )
        return dict(rows)

    def close(self) -> None:
        self.db.close()


# Every (partition, claim) of the batch in one statement, each moved only forward and only
# under the claim its records were read under.
_COMMIT_SQL = (
    f"UPDATE {OFFSETS} o SET next_offset = v.next, updated_at = clock_timestamp() "
    "FROM unnest(%s::integer[], %s::bigint[], %s::bigint[], %s::bigint[]) "
    "AS v(partition, generation, first, next) "
    "WHERE o.consumer_group = %s AND o.topic = %s AND o.partition = v.partition "
    "AND o.owner = %s AND o.generation = v.generation "
    "AND (o.next_offset IS NULL OR o.next_offset <= v.first) "
    "RETURNING o.partition, o.generation"
)


@dataclass(frozen=True)
class Span:
    """The records of one partition under one claim in a batch: first and last offset."""

    partition: int
    generation: int
    first: int
    last: int

    @property
    def key(self) -> str:
        return f"{self.partition}@{self.generation}"


def spans(batch: list[KafkaRecord]) -> list[Span]:
    found: dict[tuple[int, int], list[int]] = {}
    for record in batch:
        span = found.setdefault((record.partition, record.generation), [record.offset] * 2)
        span[0], span[1] = min(span[0], record.offset), max(span[1], record.offset)
    return [Span(p, g, first, last) for (p, g), (first, last) in sorted(found.items())]


def commit_offsets(connection, group: str, topic: str, owner: str, batch: list[KafkaRecord]):
    """Move each partition's stored offset past the batch's records of it, in the caller's
    transaction; raise PartitionLost for the first whose claim is not this member's any more
    (or whose offset another claim already moved past these records)."""
    parts = spans(batch)
    with connection.cursor() as cursor:
        cursor.execute(
            _COMMIT_SQL,
            (
                [s.partition for s in parts],
                [s.generation for s in parts],
                [s.first for s in parts],
                [s.last + 1 for s in parts],
                group,
                topic,
                owner,
            ),
        )
        moved = set(cursor.fetchall())
        missed = [s for s in parts if (s.partition, s.generation) not in moved]
        if not missed:
            return
        cursor.execute(
            f"SELECT owner, generation FROM {OFFSETS} WHERE consumer_group = %s AND topic = %s "
            "AND partition = %s",
            (group, topic, missed[0].partition),
        )
        found = cursor.fetchone()
    if found is None or found[0] != owner:
        raise PartitionLost(missed[0].key, "claimed by another member")
    if found[1] != missed[0].generation:
        raise PartitionLost(missed[0].key, "revoked and claimed again since these were read")
    raise PartitionLost(missed[0].key, "its offset is already past these records")


def offset_rows(connection, group: str, topic: str) -> list[dict]:
    """Each partition's stored offset and claim, for status."""
    with database_errors(connection, f"cannot read {OFFSETS}"):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT partition, next_offset, owner, generation FROM "
                f"{OFFSETS} WHERE consumer_group = %s AND topic = %s ORDER BY partition",
                (group, topic),
            )
            rows = cursor.fetchall()
        connection.rollback()
    return [
        {"partition": p, "offset": offset, "owner": owner, "generation": generation}
        for p, offset, owner, generation in rows
    ]
