"""A source that settles inside COMMIT (a stream's checkpoint, a topic's offsets): batches
validated and masked one ahead of the one committing, committed in order in one thread, and a
batch re-cut when the claim on part of it (a shard's lease, a partition's claim) was lost.

stream/run.py and kafka/run.py are the two; each says how its readers end (`_ended`), whether
they may still bring more (`_alive`) and what losing a claim means (`_lost`).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

from .. import load
from ..database import Database
from ..errors import ClaimLost, LoginetlError
from ..metrics import Metrics, MetricsServer
from .loading import Loader
from .state import RunSummary, Shared

PREPARED_AHEAD = 1  # batches validated and masked ahead of the one committing


class InCommitRun:
    """drain() of a run whose settlers settle inside COMMIT; start() and close() are the
    source's own."""

    shared: Shared
    loader: Loader
    metrics: Metrics
    on_batch: Callable[[RunSummary], None]
    metrics_server: MetricsServer | None
    db: Database | None

    def _close_claims_and_ends(self, claims) -> None:
        """Give back the claims (a stream's Leases, a topic's Claims) if there are any, quietly
        (they expire, or the next claim fences, on their own), then close /metrics and the
        loader's database."""
        if claims is not None:
            try:
                claims.give_back()
            except LoginetlError:
                pass
            claims.close()
        if self.metrics_server is not None:
            self.metrics_server.close()
        if self.db is not None:
            self.db.close()

    def _ended(self, started: float) -> RunSummary:
        """The readers stopped and the summary finished."""
        raise NotImplementedError

    def _alive(self) -> bool:
        """Whether the readers may still put records into the inbox."""
        raise NotImplementedError

    def _lost(self, lost: ClaimLost) -> None:
        """Stop reading what the lost claim covered."""
        raise NotImplementedError

    def drain(self) -> RunSummary:
        started = time.monotonic()
        prepared: queue.Queue = queue.Queue(maxsize=PREPARED_AHEAD)
        preparer = threading.Thread(target=self._prepare, args=(prepared,), name="prepare")
        preparer.start()
        try:
            while (item := prepared.get()) is not None:
                self._load(*item)
                self.shared.summary.elapsed = time.monotonic() - started
                self.on_batch(self.shared.summary)
        except LoginetlError as error:
            self.shared.fail(error)
        finally:
            self.draining = False
            preparer.join()
        summary = self._ended(started)
        if self.shared.failure is not None:
            self.metrics.failed(self.shared.failure)
        return summary

    draining = True  # until drain stops taking prepared batches

    def _prepare(self, prepared: queue.Queue) -> None:
        """Take batches from the inbox and validate and mask them while the batch before
        commits (the database's wait then overlaps this CPU); None when there are no more.
        Commits stay in one thread, in the order the batches were taken."""
        try:
            while batch := self.loader.next_batch(self._alive):
                if not self._hand_over(prepared, (batch, self.loader.prepare(batch))):
                    return
        except Exception as error:  # noqa: BLE001 - a bug: end the run with it rather than hang the drain
            self.shared.fail_on_bug("preparing a batch", error)
        finally:
            self._hand_over(prepared, None)

    def _hand_over(self, prepared: queue.Queue, item) -> bool:
        while self.draining:
            try:
                prepared.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _load(self, batch: list, ready: tuple) -> None:
        """Commit the prepared batch; the records of a shard whose lease was lost are dropped
        (their new holder reads them from the checkpoint) and the rest loaded again."""
        while batch:
            try:
                self.loader.commit(batch, ready)
                return
            except ClaimLost as lost:
                self._lost(lost)
                batch = [record for record in batch if record.shard_id != lost.shard_id]
                ready = without_shard(ready, lost.shard_id)
                self.shared.in_hand = []


def without_shard(ready: tuple, shard_id: str) -> tuple:
    """A prepared batch without the records of one shard. Its dead-letter send stays as it
    was: what it sent of that shard is sent again by the shard's new holder (the dead-letter
    queue is at-least-once; a replay loads each record once)."""
    prepared, by_origin, refused, early, skipped = ready
    by_origin = {
        origin_id: kept
        for origin_id, records in by_origin.items()
        if (kept := [record for record in records if record.shard_id != shard_id])
    }
    values = [v for v in prepared.values if v[load.MESSAGE_ID] in by_origin]
    prepared = load.Prepared(
        values,
        {k: v for k, v in prepared.rejected.items() if k in by_origin},
        prepared.create_dates,
        None,
        prepared.statements,
    )
    refused = [(record, reason) for record, reason in refused if record.shard_id != shard_id]
    skipped = [record for record in skipped if record.shard_id != shard_id]
    return prepared, by_origin, refused, early, skipped
