"""Settling, after COMMIT: dead-letter what was refused, then delete from the source everything
that is settled (committed, already loaded, or accepted by the dead-letter queue). A pool does
it in parallel with the next receives; at most 2 x most_receivers batches await deletion."""

from __future__ import annotations

import logging
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from .. import sqs
from ..metrics import Metrics
from ..sqs import QueueMessage
from .state import Shared, SourceQueue

log = logging.getLogger(__name__)

NO_DLQ = "invalid, and no dead-letter queue is configured or discoverable"


class Settlers:
    def __init__(self, shared: Shared, source: SourceQueue, metrics: Metrics) -> None:
        self.shared = shared
        self.source = source
        self.metrics = metrics
        self.pool = ThreadPoolExecutor(shared.options.most_receivers, thread_name_prefix="settle")

    def submit(self, batch, done, refused, loaded: int, duplicates: int, started: float) -> None:
        self.shared.settling.acquire()  # waits while too many batches await deletion
        self.pool.submit(self._settle, batch, done, refused, loaded, duplicates, started)

    def validated(self, refused) -> object:
        """The batch is validated (perhaps while the one before commits): nothing for SQS, which
        dead-letters after COMMIT (a stream starts dead-lettering here, and its in_commit is
        given what this returns)."""
        return None

    def in_commit(self, connection, batch, refused, early) -> None:
        """Inside the batch's transaction: nothing for SQS, which settles after COMMIT (a
        stream writes its checkpoint here: loginetl/stream/checkpoints.py)."""

    def wait(self) -> None:
        """Until every committed batch is settled."""
        self.pool.shutdown(wait=True)

    def _settle(self, batch, done, refused, loaded: int, duplicates: int, started: float) -> None:
        try:
            with self.shared.failing_as("settling a batch"):
                done = done + self._dead_letter(refused)
                failures = sqs.delete(self.source.sqs, self.source.url, done)
                self.shared.count_not_deleted(len(failures))
                self.source.keeper.let_go(batch)
                self._report(batch, refused, loaded, duplicates, time.monotonic() - started)
        finally:
            self.shared.settling.release()

    def _dead_letter(self, refused: list[tuple[QueueMessage, str]]) -> list[QueueMessage]:
        """Send refused messages to the DLQ; returns those it took, which may now be deleted."""
        if not refused:
            return []
        dlq_url = self.shared.summary.dlq_url
        if not dlq_url:
            self.shared.leave([message for message, _ in refused], NO_DLQ)
            return []
        sent, failed = sqs.dead_letter(self.source.sqs, dlq_url, self.source.url, refused)
        reasons = {id(message): reason for message, reason in refused}
        self.shared.count_dead_lettered([reasons[id(message)] for message in sent])
        for failure in failed:
            self.shared.leave([failure.message], f"dead-letter queue refused it: {failure.error}")
        return sent

    def _report(self, batch, refused, loaded: int, duplicates: int, seconds: float) -> None:
        dead = Counter(reason for _, reason in refused)
        self.metrics.batch_done(loaded, duplicates, dead, seconds)
        log.info(
            "batch done: %d messages in %.2f s",
            len(batch),
            seconds,
            extra={
                "event": "batch",
                "seconds": round(seconds, 3),
                "messages": len(batch),
                "loaded": loaded,
                "duplicates": duplicates,
                "refused": len(refused),
                "message_ids": [message.message_id for message in batch],
            },
        )
