"""The run: receive from SQS, transform, load into PostgreSQL, then delete.

The order is the guarantee: a message is deleted from the source queue only after its row is
committed (or it was already there), or after the dead-letter queue accepted it. A crash at any
point leaves the message on the queue to be delivered again, and the unique message id in
user_logins turns that redelivery into a no-op.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from . import extract, load, transform
from .config import Settings
from .errors import ConfigError, LoginetlError
from .extract import QueueMessage
from .masking import MaskKey
from .metrics import Metrics, MetricsServer

log = logging.getLogger(__name__)

NO_DLQ = "invalid, and no dead-letter queue is configured or discoverable"


@dataclass(frozen=True)
class RunOptions:
    max_messages: int | None = None  # None: until the queue is drained
    batch_size: int = 500  # most messages per database transaction
    concurrency: int = 4  # receiving threads, and threads deleting committed batches
    wait_time: int = 5  # long-poll seconds; an empty receive means drained
    retry_for: float = 300.0  # seconds to keep retrying an unavailable database
    follow: bool = False  # keep polling when the queue is empty, until stopped
    metrics_port: int | None = None  # serve /metrics and /healthz there
    metrics_host: str = "0.0.0.0"  # all interfaces, as exporters do: a scraper is elsewhere


@dataclass
class RunSummary:
    queue_url: str
    dlq_url: str | None = None
    received: int = 0
    loaded: int = 0
    duplicates: int = 0
    dead_lettered: Counter = field(default_factory=Counter)  # reason -> messages
    left_on_queue: Counter = field(default_factory=Counter)  # reason -> messages
    delete_failures: int = 0  # committed but not deleted: SQS will redeliver, we will skip them
    released: int = 0  # received but given back unprocessed (stopped, error, left behind)
    elapsed: float = 0.0
    stopped_because: str = ""
    error: str | None = None
    exit_code: int = 0

    @property
    def messages_per_second(self) -> float:
        return self.received / self.elapsed if self.elapsed > 0 else 0.0

    def as_dict(self) -> dict:
        return {
            "queue_url": self.queue_url,
            "dlq_url": self.dlq_url,
            "received": self.received,
            "loaded": self.loaded,
            "duplicates": self.duplicates,
            "dead_lettered": sum(self.dead_lettered.values()),
            "dead_lettered_by_reason": dict(self.dead_lettered),
            "left_on_queue": sum(self.left_on_queue.values()),
            "left_on_queue_by_reason": dict(self.left_on_queue),
            "delete_failures": self.delete_failures,
            "released": self.released,
            "elapsed_seconds": round(self.elapsed, 3),
            "messages_per_second": round(self.messages_per_second, 1),
            "stopped_because": self.stopped_because,
            "error": self.error,
            "exit_code": self.exit_code,
        }


@dataclass(frozen=True)
class Verdict:
    """What `run` would do with a message: load it, or dead-letter it and why."""

    login: transform.Login | None
    reason: str | None

    @property
    def loads(self) -> bool:
        return self.reason is None


def judge(message: QueueMessage) -> Verdict:
    try:
        return Verdict(transform.validate(message.body), None)
    except transform.InvalidMessage as invalid:
        return Verdict(None, invalid.reason)


class Run:
    """One `loginetl run`.

    Receivers (`concurrency` threads) long-poll SQS into a bounded inbox; this thread takes
    whatever has arrived (up to batch_size), transforms it and commits it in one transaction;
    a pool then dead-letters the refused and deletes the rest, in parallel with the next
    receives. The bounded inbox and the cap on batches awaiting deletion keep memory flat
    however long the queue is.
    """

    def __init__(
        self,
        settings: Settings,
        key: MaskKey,
        options: RunOptions,
        on_batch: Callable[[RunSummary], None] = lambda summary: None,
        stop: threading.Event | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.settings = settings
        self.key = key
        self.options = options
        self.on_batch = on_batch
        self.stop = stop or threading.Event()  # set (by a signal) to finish the batch in hand
        self.failure: LoginetlError | None = None  # the first error of any thread ends the run
        self.stop_receiving = False  # the loader is done: receivers exit at their next turn
        self.summary = RunSummary(queue_url=settings.queue_url)
        self.lock = threading.Lock()  # guards summary, budget and left_behind across threads
        self.budget = options.max_messages  # messages still to receive; None: no limit
        self.left_behind: set[str] = set()  # ids of messages this run left on the queue
        self.inbox: queue.Queue[list[QueueMessage]] = queue.Queue(
            maxsize=max(2, options.batch_size // extract.MAX_PER_CALL) + options.concurrency
        )
        self.in_hand: list[QueueMessage] = []  # taken from the inbox, not yet committed
        self.leftover: list[QueueMessage] = []  # taken from the inbox, for the next batch
        self.settling = threading.BoundedSemaphore(2 * options.concurrency)
        self.db: load.Database | None = None
        self.keeper: extract.VisibilityKeeper | None = None
        self.metrics_server: MetricsServer | None = None
        self.settlers: ThreadPoolExecutor | None = None

    def start(self):
        """Connect to both ends and check them before touching any message."""
        queue_url = self.settings.queue_url
        self.sqs = extract.sqs_client(self.settings, pool_size=2 * self.options.concurrency + 4)
        self.db = load.Database(
            self.settings.database_url,
            self.options.retry_for,
            self.stop,
            on_outage=lambda: self.metrics.error("database"),
        )
        self.table = self.db.call(load.require_ready, "checking the table")
        self.summary.dlq_url = self.settings.dlq_url or extract.dead_letter_url(self.sqs, queue_url)
        visibility = extract.queue_attributes(self.sqs, queue_url, ["VisibilityTimeout"])
        self.keeper = extract.VisibilityKeeper(
            self.sqs, queue_url, int(visibility.get("VisibilityTimeout", "30"))
        )
        if self.options.metrics_port is not None:
            self.metrics_server = self._serve_metrics()
        self.settlers = ThreadPoolExecutor(self.options.concurrency, thread_name_prefix="settle")
        return self

    def _serve_metrics(self) -> MetricsServer:
        host, port = self.options.metrics_host, self.options.metrics_port
        try:
            return MetricsServer(
                self.metrics, host, port, self.sqs, self.settings.queue_url,
                self.settings.database_url,
                stale_after=max(60.0, 3 * self.options.wait_time + 30),
            )  # fmt: skip
        except OSError as error:
            raise ConfigError(f"cannot serve metrics on {host}:{port}: {error.strerror}") from None

    def close(self) -> None:
        if self.settlers is not None:
            self.settlers.shutdown(wait=True)
        if self.metrics_server is not None:
            self.metrics_server.close()
        if self.keeper is not None:
            self.keeper.close()
        if self.db is not None:
            self.db.close()

    def drain(self) -> RunSummary:
        started = time.monotonic()
        receivers = [
            threading.Thread(target=self._receive_loop, name=f"receive-{n}", daemon=True)
            for n in range(self.options.concurrency)
        ]
        for receiver in receivers:
            receiver.start()
        try:
            while True:
                batch = self._next_batch(receivers)
                if not batch:
                    break
                self._load(batch)
                self.summary.elapsed = time.monotonic() - started
                self.on_batch(self.summary)
        except LoginetlError as error:
            self._fail(error)
        self.stop_receiving = True
        for receiver in receivers:
            receiver.join()
        self.settlers.shutdown(wait=True)  # the deletes of every committed batch
        self._release(self.in_hand + self.leftover + self._empty_inbox())
        with self.lock:
            self._finish_summary(time.monotonic() - started)
        return self.summary

    def _finish_summary(self, elapsed: float) -> None:
        self.summary.elapsed = elapsed
        if self.failure is not None:
            self.metrics.error(type(self.failure).__name__.removesuffix("Error").lower())
            self.summary.error = str(self.failure)
            self.summary.exit_code = self.failure.exit_code
            self.summary.stopped_because = "error"
        elif self.stop.is_set():
            self.summary.stopped_because = "stopped by signal"
        elif self.budget == 0:
            self.summary.stopped_because = "max messages reached"
        else:
            self.summary.stopped_because = "queue drained"

    def _fail(self, error: LoginetlError) -> None:
        with self.lock:
            if self.failure is None:
                self.failure = error

    def _receiving(self) -> bool:
        return not (self.stop.is_set() or self.stop_receiving or self.failure is not None)

    # Receivers ----------------------------------------------------------------------------

    def _receive_loop(self) -> None:
        try:
            self._receive_until_done()
        except Exception as error:  # a bug: end the run with it rather than lose the thread
            self._fail(LoginetlError(f"receiver failed: {type(error).__name__}: {error}"))

    def _receive_until_done(self) -> None:
        """Long-poll until the queue comes back empty (unless following), the budget is spent,
        or the run stops; hand each receive's new messages to the loader."""
        while self._receiving():
            wanted = self._reserve(extract.MAX_PER_CALL)
            if wanted == 0:
                return
            try:
                received = extract.receive(
                    self.sqs, self.settings.queue_url, wanted, self.options.wait_time
                )
            except LoginetlError as error:
                self._fail(error)
                return
            self._unreserve(wanted - len(received))
            self.keeper.hold(received)
            self.metrics.polled(len(received))
            with self.lock:
                # Messages this run left behind (invalid, no DLQ) come back once their
                # visibility expires: not news (they stay invisible for the next run to see),
                # and only they coming back means drained.
                new = [m for m in received if m.message_id not in self.left_behind]
                self.summary.received += len(new)
            if not new:
                if self.options.follow:
                    continue
                return
            if not self._put(new):
                self._release(new)
                return

    def _reserve(self, most: int) -> int:
        with self.lock:
            if self.budget is None:
                return most
            wanted = min(most, self.budget)
            self.budget -= wanted
            return wanted

    def _unreserve(self, unused: int) -> None:
        with self.lock:
            if self.budget is not None:
                self.budget += unused

    def _put(self, messages: list[QueueMessage]) -> bool:
        """Into the inbox, waiting while it is full (back-pressure); False if the run stopped."""
        while self._receiving():
            try:
                self.inbox.put(messages, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    # Loader -------------------------------------------------------------------------------

    def _next_batch(self, receivers: list[threading.Thread]) -> list[QueueMessage]:
        """Whatever has arrived, up to batch_size, without waiting for a batch to fill (so a
        slow trickle is loaded at once); empty when the receivers are done or the run stops."""
        batch, self.leftover = self.leftover, []
        while not batch:
            if self.stop.is_set() or self.failure is not None:
                self.leftover = batch
                return []
            try:
                batch = self.inbox.get(timeout=0.1)
            except queue.Empty:
                if not any(receiver.is_alive() for receiver in receivers) and self.inbox.empty():
                    return []
        while len(batch) < self.options.batch_size:
            try:
                batch += self.inbox.get_nowait()
            except queue.Empty:
                break
        batch, self.leftover = batch[: self.options.batch_size], batch[self.options.batch_size :]
        self.in_hand = batch
        return batch

    def _load(self, batch: list[QueueMessage]) -> None:
        started = time.monotonic()
        rows: dict[str, transform.LoginRow] = {}
        by_origin: dict[str, list[QueueMessage]] = {}
        refused: list[tuple[QueueMessage, str]] = []
        for message in batch:
            try:
                row = transform.to_row(message.body, self.key, message.origin_id, message.sent_at)
            except transform.InvalidMessage as invalid:
                refused.append((message, invalid.reason))
                continue
            # Two copies of one message in a batch (a replayed duplicate): one row, both deleted.
            rows.setdefault(message.origin_id, row)
            by_origin.setdefault(message.origin_id, []).append(message)

        result = self.db.call(  # committed on return
            lambda connection: load.insert(connection, list(rows.values()), self.table),
            "inserting a batch",
        )
        done: list[QueueMessage] = []
        loaded = duplicates = 0
        for origin_id, messages in by_origin.items():
            if origin_id in result.rejected:
                refused += [(message, result.rejected[origin_id]) for message in messages]
                continue
            done += messages
            first_is_new = origin_id in result.inserted
            loaded += int(first_is_new)
            duplicates += len(messages) - int(first_is_new)
        with self.lock:
            self.summary.loaded += loaded
            self.summary.duplicates += duplicates
        self.in_hand = []  # committed: the settlers own these now
        self.settling.acquire()  # at most 2 x concurrency batches awaiting deletion
        self.settlers.submit(self._settle, batch, done, refused, loaded, duplicates, started)

    def _settle(self, batch, done, refused, loaded: int, duplicates: int, started: float) -> None:
        """After COMMIT: dead-letter the refused, then delete everything that is settled."""
        try:
            done = done + self._dead_letter(refused)
            failures = extract.delete(self.sqs, self.settings.queue_url, done)
            with self.lock:
                self.summary.delete_failures += len(failures)
            self.keeper.let_go(batch)
            self._report_batch(batch, refused, loaded, duplicates, time.monotonic() - started)
        except LoginetlError as error:
            self._fail(error)
        except Exception as error:  # a bug: end the run with it rather than lose the batch
            self._fail(LoginetlError(f"settling a batch failed: {type(error).__name__}: {error}"))
        finally:
            self.settling.release()

    def _report_batch(self, batch, refused, loaded: int, duplicates: int, seconds: float) -> None:
        dead = Counter(reason for _, reason in refused)
        self.metrics.batch_done(loaded, duplicates, dead, seconds)
        log.info(
            "batch done: %d messages in %.2f s", len(batch), seconds,
            extra={"event": "batch", "seconds": round(seconds, 3), "messages": len(batch),
                   "loaded": loaded, "duplicates": duplicates, "refused": len(refused),
                   "message_ids": [message.message_id for message in batch]},
        )  # fmt: skip

    def _dead_letter(self, refused: list[tuple[QueueMessage, str]]) -> list[QueueMessage]:
        """Send refused messages to the DLQ; returns those it took, which may now be deleted."""
        if not refused:
            return []
        if not self.summary.dlq_url:
            self._leave(refused, NO_DLQ)
            return []
        sent, failed = extract.dead_letter(
            self.sqs, self.summary.dlq_url, self.settings.queue_url, refused
        )
        reasons = {id(message): reason for message, reason in refused}
        with self.lock:
            self.summary.dead_lettered.update(reasons[id(message)] for message in sent)
        for failure in failed:
            self._leave([(failure.message, "")], f"dead-letter queue refused it: {failure.error}")
        return sent

    def _leave(self, refused: list[tuple[QueueMessage, str]], why: str) -> None:
        with self.lock:
            for message, _ in refused:
                self.left_behind.add(message.message_id)
                self.summary.left_on_queue[why] += 1

    # Giving back ---------------------------------------------------------------------------

    def _empty_inbox(self) -> list[QueueMessage]:
        messages: list[QueueMessage] = []
        while True:
            try:
                messages += self.inbox.get_nowait()
            except queue.Empty:
                return messages

    def _release(self, messages: list[QueueMessage]) -> None:
        """Make messages not loaded visible again at once rather than after their visibility
        timeout. Best effort: if SQS is what failed, they come back on their own."""
        if not messages:
            return
        self.keeper.let_go(messages)
        with self.lock:
            self.summary.released += len(messages)
        try:
            extract.release(self.sqs, self.settings.queue_url, messages)
        except LoginetlError:
            pass


def run(
    settings: Settings,
    key: MaskKey,
    options: RunOptions = RunOptions(),
    on_batch: Callable[[RunSummary], None] = lambda summary: None,
    stop: threading.Event | None = None,
    metrics: Metrics | None = None,
) -> RunSummary:
    """Drain the queue into the table; configuration errors raise, errors mid-run are reported
    in the summary (with what was done until then) and its exit code."""
    pipeline = Run(settings, key, options, on_batch, stop, metrics)
    try:
        pipeline.start()
        return pipeline.drain()
    finally:
        pipeline.close()


@dataclass(frozen=True)
class PeekedMessage:
    message_id: str
    sent_at: str
    receive_count: int
    fields: dict[str, str | None]
    verdict: str  # "load", or the reason it would be dead-lettered

    def as_dict(self) -> dict:
        return {
            "message_id": self.message_id,
            "sent_at": self.sent_at,
            "receive_count": self.receive_count,
            "fields": self.fields,
            "would_load": self.verdict == "load",
            "verdict": self.verdict,
        }


@dataclass
class PeekResult:
    queue_url: str
    messages: list[PeekedMessage]
    max_receive_count: int | None  # from the RedrivePolicy: each peek counts towards it

    def as_dict(self) -> dict:
        return {
            "queue_url": self.queue_url,
            "max_receive_count": self.max_receive_count,
            "messages": [message.as_dict() for message in self.messages],
        }


PII_FIELDS = ("ip", "device_id")


def peek(
    settings: Settings,
    key: MaskKey | None,
    max_messages: int = 10,
    show_pii: bool = False,
    wait_time: int = 1,
) -> PeekResult:
    """Receive up to max_messages, judge each as `run` would, and make them all visible again."""
    sqs = extract.sqs_client(settings)
    limit = extract.max_receive_count(sqs, settings.queue_url)
    messages = extract.peek(sqs, settings.queue_url, max_messages, wait_time)
    return PeekResult(
        queue_url=settings.queue_url,
        messages=[_peeked(message, key, show_pii) for message in messages],
        max_receive_count=limit,
    )


def _peeked(message: QueueMessage, key: MaskKey | None, show_pii: bool) -> PeekedMessage:
    verdict = judge(message)
    return PeekedMessage(
        message_id=message.message_id,
        sent_at=message.sent_at.isoformat(timespec="seconds"),
        receive_count=message.receive_count,
        fields=_shown_fields(message.body, key, show_pii),
        verdict="load" if verdict.loads else verdict.reason,
    )


def _shown_fields(body: str, key: MaskKey | None, show_pii: bool) -> dict[str, str | None]:
    """The message's fields as an operator may see them: ip and device_id masked unless asked."""
    try:
        document = transform.parse_body(body)
    except transform.InvalidMessage:
        return {"body": body[:200] if show_pii else f"({len(body)} characters, not shown)"}
    shown: dict[str, str | None] = {}
    for name, value in document.items():
        text = None if value is None else value if isinstance(value, str) else _compact(value)
        if name in PII_FIELDS and text is not None and not show_pii:
            text = key.mask(text) if key else "***"
        shown[name] = text
    return shown


def _compact(value) -> str:
    return json.dumps(value, ensure_ascii=False)[:200]
