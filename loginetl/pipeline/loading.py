"""Loading: take whatever has arrived in the inbox (up to batch_size), validate and mask each
message, and insert the batch in one transaction; the committed batch goes to the settlers."""

from __future__ import annotations

import queue
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from .. import envelopes, load, transform
from ..database import Database
from ..masking import MaskKey
from ..metrics import Metrics
from ..schema import TableInfo
from ..sqs import QueueMessage
from .settling import Settlers
from .state import Shared

LINGER = 0.1  # seconds a batch may wait to fill: little latency, far fewer transactions


@dataclass
class Loader:
    shared: Shared
    key: MaskKey
    db: Database
    table: TableInfo
    settlers: Settlers
    metrics: Metrics | None = None

    def next_batch(self, receivers_alive: Callable[[], bool]) -> list[QueueMessage]:
        """What arrives within LINGER seconds of the first message, up to batch_size (so a slow
        trickle is loaded at once, and a fast stream in batches whose fixed costs, a transaction
        and a dead-letter send, are shared by many); empty when the receivers are done or the
        run stops."""
        shared, size = self.shared, self.shared.options.batch
        batch, shared.leftover = shared.leftover, []
        while not batch:
            if not shared.loading():
                shared.leftover = batch
                return []
            if not receivers_alive() and shared.inbox.empty():
                return []
            try:
                batch = shared.inbox.get(timeout=0.1)  # [] when woken: the source is done
            except queue.Empty:
                pass
        until = time.monotonic() + LINGER
        while len(batch) < size:
            try:
                more = shared.inbox.get(timeout=max(0.0, until - time.monotonic()))
            except queue.Empty:
                break
            if not more and not receivers_alive():
                break  # the source is done: nothing more to wait for
            batch += more
        batch, shared.leftover = batch[:size], batch[size:]
        shared.in_hand = batch
        return batch

    def load(self, batch: list[QueueMessage]) -> None:
        """Transform and commit the batch, then hand it to the settlers."""
        self.commit(batch, self.prepare(batch))

    def prepare(self, batch: list[QueueMessage]) -> tuple:
        """The batch validated and masked, and the settlers told what validation refused (a
        stream starts dead-lettering it now): what `commit` takes. Another thread may prepare
        the next batch while this one commits."""
        rows, by_origin, refused, skipped = self._transform(batch)
        staged, early = load.prepare(rows, self.table), self.settlers.validated(refused)
        return staged, by_origin, refused, early, skipped

    def commit(self, batch: list[QueueMessage], prepared: tuple) -> None:
        """Commit the prepared batch, then hand it to the settlers."""
        started = time.monotonic()
        staged, by_origin, refused, early, skipped = prepared
        refused = list(refused)  # the database's refusals join these below

        def in_commit(connection, result: load.LoadResult) -> None:  # a stream's checkpoint
            rejected = [
                (message, result.rejected[origin_id])
                for origin_id, messages in by_origin.items()
                if origin_id in result.rejected
                for message in messages
            ]
            self.settlers.in_commit(connection, batch, refused + rejected, early)

        result = self.db.call(  # committed on return
            lambda connection: load.insert(connection, staged, self.table, in_commit),
            "inserting a batch",
        )
        done: list[QueueMessage] = []
        loaded = duplicates = erased = 0
        erased_ids = set(result.erased)
        inserted = set(result.inserted)  # a list's `in` made this loop quadratic in the batch
        for origin_id, messages in by_origin.items():
            if origin_id in result.rejected:
                refused += [(message, result.rejected[origin_id]) for message in messages]
                continue
            done += messages  # erased ones too: deleted from SQS, never loaded again
            if origin_id in erased_ids:
                erased += len(messages)
                continue
            first_is_new = origin_id in inserted
            loaded += int(first_is_new)
            duplicates += len(messages) - int(first_is_new)
        done += skipped  # not logins, and the operator chose to delete them (--on-other)
        self.shared.count_committed(loaded, duplicates, erased)
        self.shared.in_hand = []  # committed: the settlers own these now
        # Metrics and the batch log count erased messages among the skipped duplicates.
        self.settlers.submit(batch, done, refused, loaded, duplicates + erased, started)

    def _transform(self, batch: list[QueueMessage]):
        """(rows, messages by original id, refused with their reasons, messages to delete as
        not logins)."""
        rows: dict[str, transform.LoginRow] = {}
        by_origin: dict[str, list[QueueMessage]] = {}
        refused: list[tuple[QueueMessage, str]] = []
        skipped: list[QueueMessage] = []
        opened: Counter[str] = Counter()
        extra: Counter[str] = Counter()  # field name -> logins that carried it
        not_accepted = 0
        options = self.shared.options
        for message in batch:
            try:
                login = envelopes.open_body(message.body, options.accept)
                opened[login.envelope] += 1
                extra.update(login.extra_fields)
                sent_at = login.sent_at or message.sent_at
                row = transform.mask_login(login.login, self.key, message.origin_id, sent_at)
                if options.keep_extra is not None:
                    row.extra = transform.kept_extra(login.document, self.key, options.keep_extra)
            except transform.InvalidMessage as invalid:
                opened[_envelope_of(message)] += 1
                if isinstance(invalid, envelopes.NotAccepted):
                    not_accepted += 1
                    if options.delete_others:
                        skipped.append(message)
                        continue
                refused.append((message, invalid.reason))
                continue
            # Two copies of one message in a batch (a replayed duplicate): one row, both deleted.
            rows.setdefault(message.origin_id, row)
            by_origin.setdefault(message.origin_id, []).append(message)
        self.shared.count_envelopes(opened, not_accepted, extra)
        if self.metrics is not None:
            self.metrics.opened(opened, not_accepted, extra)
        return list(rows.values()), by_origin, refused, skipped


def _envelope_of(message: QueueMessage) -> str:
    """The envelope of a message that was refused: raw when even its body cannot be read (a
    stream record that is not text)."""
    try:
        return envelopes.envelope_of(message.body)
    except transform.InvalidMessage:
        return envelopes.RAW
