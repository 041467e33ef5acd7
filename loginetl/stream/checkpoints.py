"""Settling a stream's batch, inside its COMMIT: dead-letter the refused records, then move
each shard's checkpoint to the batch's last record of that shard, in the transaction of the
rows. The checkpoint moves only if this process still holds the shard's lease (checked in that
transaction, so a process that lost it cannot commit for the shard) and only forward.

After COMMIT there is nothing left to settle: the batch is counted, reported, and the readers
learn how far each shard is committed (a closed shard is finished once all of it is).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from .. import sqs
from ..errors import ClaimLost, LoginetlError
from ..metrics import Metrics
from ..pipeline.settling import Settlers
from ..pipeline.state import Shared
from .client import StreamRecord
from .leases import SHARDS

log = logging.getLogger(__name__)

STREAM_ATTRIBUTE = "loginetl-source-stream"
SHARD_ATTRIBUTE = "loginetl-shard"
SEQUENCE_ATTRIBUTE = "loginetl-sequence"
ENCODING_ATTRIBUTE = "loginetl-encoding"


class LeaseLost(ClaimLost):
    """This process no longer holds the shard's lease: its records of the batch are not ours
    to commit."""

    def __init__(self, shard_id: str, why: str) -> None:
        message = f"lease on shard {shard_id} lost ({why}): its records were rolled back"
        super().__init__(message, shard_id)


# Every shard of the batch in one statement (one round trip, however many shards), each moved
# only forward and only while this owner's lease on it is live.
_CHECKPOINTS_SQL = (
    f"UPDATE {SHARDS} s SET checkpoint = v.sequence, checkpoint_sub = v.sub, "
    "updated_at = clock_timestamp() "
    "FROM unnest(%s::text[], %s::numeric[], %s::integer[]) AS v(shard_id, sequence, sub) "
    "WHERE s.stream = %s AND s.shard_id = v.shard_id AND s.owner = %s "
    "AND s.lease_expires > clock_timestamp() "
    "AND (s.checkpoint IS NULL OR (s.checkpoint, s.checkpoint_sub) < (v.sequence, v.sub)) "
    "RETURNING s.shard_id"
)


def checkpoint(connection, stream: str, owner: str, positions: dict[str, tuple[int, int]]):
    """Move each shard's checkpoint forward to its position ({shard id: (sequence, sub)}), in
    the caller's transaction; raise LeaseLost for the first shard whose lease is not this
    owner's (or expired), or whose checkpoint is already there or beyond (another holder
    committed these records)."""
    shard_ids = sorted(positions)
    with connection.cursor() as cursor:
        cursor.execute(
            _CHECKPOINTS_SQL,
            (
                shard_ids,
                [positions[s][0] for s in shard_ids],
                [positions[s][1] for s in shard_ids],
                stream,
                owner,
            ),
        )
        moved = {shard_id for (shard_id,) in cursor.fetchall()}
        missed = [shard_id for shard_id in shard_ids if shard_id not in moved]
        if not missed:
            return
        cursor.execute(
            f"SELECT owner, lease_expires > clock_timestamp() FROM {SHARDS} "
            "WHERE stream = %s AND shard_id = %s",
            (stream, missed[0]),
        )
        found = cursor.fetchone()
    if found is None or found[0] != owner:
        raise LeaseLost(missed[0], "taken by another process")
    if not found[1]:
        raise LeaseLost(missed[0], "expired")
    raise LeaseLost(missed[0], "its checkpoint is already past these records")


def last_positions(batch: list[StreamRecord]) -> dict[str, tuple[int, int]]:
    last: dict[str, tuple[int, int]] = {}
    for record in batch:
        position = record.position  # parses a 56-digit sequence number: once a record
        if position > last.get(record.shard_id, (-1, -1)):
            last[record.shard_id] = position
    return last


def dead_letter_entry(record: StreamRecord, reason: str) -> dict:
    body, binary = record.text_or_base64
    attributes = {
        sqs.REASON_ATTRIBUTE: reason[:1000],
        sqs.ORIGINAL_ID_ATTRIBUTE: record.message_id,
        STREAM_ATTRIBUTE: record.stream,
        SHARD_ATTRIBUTE: record.shard_id,
        SEQUENCE_ATTRIBUTE: record.sequence + ("" if record.sub is None else f"/{record.sub}"),
    }
    if binary:
        attributes[ENCODING_ATTRIBUTE] = "base64"
    return {
        "MessageBody": body,
        "MessageAttributes": {
            name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()
        },
    }


@dataclass
class DeadLetters:
    """A batch's dead-letter send, started when the batch was validated."""

    sending: Future | None
    sent: set[int]  # the records of the batch it sends, or sent since (ids of the objects)

    def wait(self) -> None:
        if self.sending is not None:
            self.sending.result()


class StreamSettlers(Settlers):
    """The settlers of a stream run: the same counting, metrics and batch log as for SQS, but
    the settling itself happens in `in_commit`."""

    def __init__(
        self,
        shared: Shared,
        sqs,
        dlq_url: str,
        stream: str,
        owner: str,
        metrics: Metrics,
        on_committed: Callable[[dict[str, tuple[int, int]]], None],
    ) -> None:
        self.shared = shared
        self.sqs = sqs
        self.dlq_url = dlq_url
        self.stream = stream
        self.owner = owner
        self.metrics = metrics
        self.on_committed = on_committed
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="dead-letter")

    def validated(self, refused) -> DeadLetters:
        """Start dead-lettering the records validation refused as soon as they are known, while
        the batch before commits and this one's rows are inserted: in_commit waits for that
        send before it moves any checkpoint."""
        refused = list(refused)
        return DeadLetters(
            self.pool.submit(self._dead_letter, refused) if refused else None,
            {id(record) for record, _ in refused},
        )

    def in_commit(self, connection, batch: list[StreamRecord], refused, early) -> None:
        early.wait()  # raises what the send raised: the batch rolls back
        # The rows the database refused (rare), and nothing sent twice if the insert is retried.
        rest = [(record, reason) for record, reason in refused if id(record) not in early.sent]
        self._dead_letter(rest)
        early.sent |= {id(record) for record, _ in rest}
        checkpoint(connection, self.stream, self.owner, last_positions(batch))

    def _dead_letter(self, refused) -> list:
        if not refused:
            return []
        entries = [dead_letter_entry(record, reason) for record, reason in refused]
        not_sent = sqs.send_entries(self.sqs, self.dlq_url, entries)
        if not_sent:
            why = next(iter(not_sent.values()))
            raise LoginetlError(
                f"the dead-letter queue {self.dlq_url} refused {len(not_sent)} records "
                f"({why}): the batch was rolled back, its checkpoint not moved"
            )
        return [record for record, _ in refused]

    def submit(self, batch, done, refused, loaded: int, duplicates: int, started: float) -> None:
        self.shared.count_dead_lettered([reason for _, reason in refused])
        self.on_committed(last_positions(batch))
        self._report(batch, refused, loaded, duplicates, time.monotonic() - started)

    def wait(self) -> None:
        self.pool.shutdown(wait=True)
