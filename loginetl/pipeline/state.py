"""What the roles of one run share: the inbox, what the loader has in hand, the batches
awaiting deletion, the receive budget and the summary, with the one lock that guards them.

Lock discipline: `lock` guards `summary`, `budget`, `left_behind` and `failure`, and nothing
else. Hold it only to read or change those, never across an SQS or database call. The inbox is
a thread-safe queue and needs no lock; `in_hand` and `leftover` belong to the loader's thread
alone; `settling` (a semaphore, not the lock) bounds the batches awaiting deletion.
"""

from __future__ import annotations

import queue
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from .. import envelopes, sqs
from ..errors import LoginetlError
from ..results import Outcome, plain
from ..sqs import Message, QueueMessage, VisibilityKeeper
from .adapting import MOST_RECEIVERS

M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class SourceQueue:
    """The queue the run reads, as every role uses it: the SQS client, the queue's URL, and
    the keeper that extends the visibility of messages held while a batch takes long."""

    sqs: Any
    url: str
    keeper: VisibilityKeeper


QUEUE_BATCH_SIZE = 500  # a queue run's default --batch-size: 50 receives of 10


@dataclass(frozen=True)
class RunOptions:
    max_messages: int | None = None  # None: until the queue is drained
    # Most messages per database transaction; None: the source's own (QUEUE_BATCH_SIZE, or
    # stream.run.BATCH_SIZE), which its run() fills in with `with_batch_size`.
    batch_size: int | None = None
    concurrency: int | None = None  # receiving threads (None: adapt, see adapting.py)
    wait_time: int = 5  # long-poll seconds; an empty receive means drained
    retry_for: float = 300.0  # seconds to keep retrying an unavailable database
    follow: bool = False  # keep polling when the queue is empty, until stopped
    metrics_port: int | None = None  # serve /metrics and /healthz there
    metrics_host: str = "0.0.0.0"  # all interfaces, as exporters do: a scraper is elsewhere
    accept: tuple = ()  # envelopes.Rule: what a login is, when other events share the source
    delete_others: bool = False  # what the rules do not accept: deleted, else dead-lettered
    # --keep-extra: a login's fields beyond the known seven are stored in `extra`, those named
    # here masked; None: they are counted, never stored.
    keep_extra: frozenset[str] | None = None

    @property
    def batch(self) -> int:
        """--batch-size, or the queue's default where no source filled it in."""
        return self.batch_size or QUEUE_BATCH_SIZE

    def with_batch_size(self, default: int) -> RunOptions:
        """These options with `default` as the batch size, unless one was given."""
        return self if self.batch_size else replace(self, batch_size=default)

    @property
    def most_receivers(self) -> int:
        """--concurrency, or the adaptation's ceiling; also the threads deleting batches."""
        return self.concurrency or MOST_RECEIVERS


@dataclass
class RunSummary(Outcome):
    queue_url: str | None  # None: a stream is the source
    dlq_url: str | None = None
    endpoint: str | None = None  # the SQS endpoint called (reading a stream: the DLQ's)
    received: int = 0
    loaded: int = 0
    duplicates: int = 0
    erased: int = 0  # loaded once, erased since (`loginetl erase`): deleted, not loaded again
    dead_lettered: Counter = field(default_factory=Counter)  # reason -> messages
    left_on_queue: Counter = field(default_factory=Counter)  # reason -> messages
    delete_failures: int = 0  # committed but not deleted: SQS will redeliver, we will skip them
    released: int = 0  # received but given back unprocessed (stopped, error, left behind)
    envelopes: Counter = field(default_factory=Counter)  # raw, sns, eventbridge -> messages
    skipped: Counter = field(default_factory=Counter)  # why -> messages that are not logins
    # Field name -> valid logins that carried it beyond the known seven (names, never values).
    extra_fields: Counter = field(default_factory=Counter)

    @property
    def messages_per_second(self) -> float:
        return self.received / self.elapsed if self.elapsed > 0 else 0.0

    def as_dict(self) -> dict:
        return plain(
            self,
            drop=("elapsed",),
            dead_lettered=sum(self.dead_lettered.values()),
            dead_lettered_by_reason=dict(self.dead_lettered),
            left_on_queue=sum(self.left_on_queue.values()),
            left_on_queue_by_reason=dict(self.left_on_queue),
            envelopes=dict(self.envelopes),
            skipped=dict(self.skipped),
            extra_fields=dict(self.extra_fields.most_common()),
            elapsed_seconds=round(self.elapsed, 3),
            messages_per_second=round(self.messages_per_second, 1),
        )


class Shared:
    """The state of one run that receivers, loader and settlers share (see the module doc for
    who may touch what, and under which lock)."""

    def __init__(self, queue_url: str, options: RunOptions, stop: threading.Event) -> None:
        self.options = options
        self.stop = stop  # set (by a signal) to finish the batch in hand
        self.lock = threading.Lock()
        self.summary = RunSummary(queue_url=queue_url)
        self.budget = options.max_messages  # messages still to receive; None: no limit
        self.left_behind: set[str] = set()  # ids of messages this run left on the queue
        self.failure: LoginetlError | None = None  # the first error of any thread ends the run
        self.stop_receiving = False  # the loader is done: receivers exit at their next turn
        self.inbox: queue.Queue[list[QueueMessage]] = queue.Queue(
            maxsize=max(2, options.batch // sqs.MAX_PER_CALL) + options.most_receivers
        )
        self.in_hand: list[QueueMessage] = []  # taken from the inbox, not yet committed
        self.leftover: list[QueueMessage] = []  # taken from the inbox, for the next batch
        self.settling = threading.BoundedSemaphore(2 * options.most_receivers)

    def fail(self, error: LoginetlError) -> None:
        with self.lock:
            if self.failure is None:
                self.failure = error

    def fail_on_bug(self, role: str, error: Exception) -> None:
        """An error no code path expected ended `role`'s thread: end the run with it, as one
        line, rather than lose the thread's work or leave the run waiting on it."""
        self.fail(LoginetlError(f"{role} failed: {type(error).__name__}: {error}"))

    @contextmanager
    def failing_as(self, role: str) -> Iterator[None]:
        """Whatever escapes the block ends the run: our own errors as they are, any other (a
        bug) named after `role`, so no thread dies silently."""
        try:
            yield
        except LoginetlError as error:
            self.fail(error)
        except Exception as error:  # noqa: BLE001 - a bug: end the run with it rather than lose work
            self.fail_on_bug(role, error)

    def wake_loader(self) -> None:
        """The source is done (its last reader ended): an empty list in the inbox wakes a loader
        waiting for messages or lingering for more, so it ends now rather than at its next
        timeout. A full inbox needs no waking."""
        try:
            self.inbox.put_nowait([])
        except queue.Full:
            pass

    def receiving(self) -> bool:
        return not (self.stop.is_set() or self.stop_receiving or self.failure is not None)

    def loading(self) -> bool:
        return not (self.stop.is_set() or self.failure is not None)

    def reserve(self, most: int) -> int:
        """Take up to `most` messages from the budget: how many the next receive may ask for."""
        with self.lock:
            if self.budget is None:
                return most
            wanted = min(most, self.budget)
            self.budget -= wanted
            return wanted

    def unreserve(self, unused: int) -> None:
        with self.lock:
            if self.budget is not None:
                self.budget += unused

    def count_received(self, messages: list[M]) -> list[M]:
        """Count what a receive brought; returns the messages that are news.

        Messages this run left behind (invalid, no DLQ) come back once their visibility
        expires: not news (they stay invisible for the next run to see), and only they coming
        back means drained."""
        with self.lock:
            new = [m for m in messages if m.message_id not in self.left_behind]
            self.summary.received += len(new)
        return new

    def count_committed(self, loaded: int, duplicates: int, erased: int = 0) -> None:
        with self.lock:
            self.summary.loaded += loaded
            self.summary.duplicates += duplicates
            self.summary.erased += erased

    def count_envelopes(self, opened: Counter, skipped: int, extra: Counter) -> None:
        with self.lock:
            self.summary.envelopes.update(opened)
            self.summary.extra_fields.update(extra)
            if skipped:
                self.summary.skipped[envelopes.NOT_ACCEPTED] += skipped

    def count_dead_lettered(self, reasons: list[str]) -> None:
        with self.lock:
            self.summary.dead_lettered.update(reasons)

    def count_not_deleted(self, count: int) -> None:
        with self.lock:
            self.summary.delete_failures += count

    def leave(self, messages: list[QueueMessage], why: str) -> None:
        with self.lock:
            for message in messages:
                self.left_behind.add(message.message_id)
                self.summary.left_on_queue[why] += 1

    def count_released(self, count: int) -> None:
        with self.lock:
            self.summary.released += count

    def finish(self, elapsed: float) -> RunSummary:
        """The summary's last fields: how long, and why the run stopped."""
        with self.lock:
            summary = self.summary
            summary.elapsed = elapsed
            if self.failure is not None:
                summary.error = str(self.failure)
                summary.exit_code = self.failure.exit_code
                summary.stopped_because = "error"
            elif self.stop.is_set():
                summary.stopped_because = "stopped by signal"
            elif self.budget == 0:
                summary.stopped_because = "max messages reached"
            else:
                summary.stopped_because = "queue drained"
            return summary
