"""The run: receive from SQS, transform, load into PostgreSQL, then delete.

The order is the guarantee: a message is deleted from the source queue only after its row is
committed (or it was already there), or after the dead-letter queue accepted it. A crash at any
point leaves the message on the queue to be delivered again, and the unique message id in
user_logins turns that redelivery into a no-op.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from . import extract, load, transform
from .config import Settings
from .errors import LoginetlError
from .extract import QueueMessage
from .masking import MaskKey

NO_DLQ = "invalid, and no dead-letter queue is configured or discoverable"


@dataclass(frozen=True)
class RunOptions:
    max_messages: int | None = None  # None: until the queue is drained
    batch_size: int = 100  # messages per database transaction
    wait_time: int = 5  # long-poll seconds; an empty receive means drained


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
    """One `loginetl run`: holds the clients and the running summary."""

    def __init__(
        self,
        settings: Settings,
        key: MaskKey,
        options: RunOptions,
        on_batch: Callable[[RunSummary], None] = lambda summary: None,
    ) -> None:
        self.settings = settings
        self.key = key
        self.options = options
        self.on_batch = on_batch
        self.summary = RunSummary(queue_url=settings.queue_url)
        self.left_behind: set[str] = set()  # ids of messages this run left on the queue
        self.in_hand: list[QueueMessage] = []  # received and not yet settled

    def start(self):
        """Connect to both ends and check them before touching any message."""
        self.sqs = extract.sqs_client(self.settings)
        self.db = load.connect(self.settings.database_url)
        self.table = load.require_ready(self.db)
        self.summary.dlq_url = self.settings.dlq_url or extract.dead_letter_url(
            self.sqs, self.settings.queue_url
        )
        return self

    def close(self) -> None:
        db = getattr(self, "db", None)
        if db is not None and not db.closed:
            db.close()

    def drain(self) -> RunSummary:
        started = time.monotonic()
        try:
            while not self._reached_max():
                batch = self._receive_batch()
                if not batch:
                    self.summary.stopped_because = "queue drained"
                    break
                self.in_hand = batch
                self._process(batch)
                self.in_hand = []
                self.summary.elapsed = time.monotonic() - started
                self.on_batch(self.summary)
            else:
                self.summary.stopped_because = "max messages reached"
        except LoginetlError as error:
            self.summary.error = str(error)
            self.summary.exit_code = error.exit_code
            self.summary.stopped_because = "error"
            self._release_in_hand()
        self.summary.elapsed = time.monotonic() - started
        return self.summary

    def _release_in_hand(self) -> None:
        """After an error, let the batch in hand be delivered again at once rather than after its
        visibility timeout. Best effort: if SQS is what failed, they come back on their own."""
        try:
            extract.release(self.sqs, self.settings.queue_url, self.in_hand)
        except LoginetlError:
            pass
        self.in_hand = []

    def _reached_max(self) -> bool:
        limit = self.options.max_messages
        return limit is not None and self.summary.received >= limit

    def _receive_batch(self) -> list[QueueMessage]:
        """Up to batch_size new messages; stops filling at the first short receive."""
        batch: list[QueueMessage] = []
        while len(batch) < self._batch_room():
            wanted = min(extract.MAX_PER_CALL, self._batch_room() - len(batch))
            received = extract.receive(
                self.sqs, self.settings.queue_url, wanted, self.options.wait_time
            )
            # Messages this run already left behind (invalid, no DLQ) come back once their
            # visibility expires: they are not news, and only they left means drained.
            new = [message for message in received if message.message_id not in self.left_behind]
            batch += new
            if len(received) < wanted or not new:
                break
        self.summary.received += len(batch)
        return batch

    def _batch_room(self) -> int:
        room = self.options.batch_size
        if self.options.max_messages is not None:
            room = min(room, self.options.max_messages - self.summary.received)
        return room

    def _process(self, batch: list[QueueMessage]) -> None:
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

        result = load.insert(self.db, list(rows.values()), self.table)  # committed on return
        done: list[QueueMessage] = []
        for origin_id, messages in by_origin.items():
            if origin_id in result.rejected:
                refused += [(message, result.rejected[origin_id]) for message in messages]
                continue
            done += messages
            first_is_new = origin_id in result.inserted
            self.summary.loaded += int(first_is_new)
            self.summary.duplicates += len(messages) - int(first_is_new)

        done += self._dead_letter(refused)
        failures = extract.delete(self.sqs, self.settings.queue_url, done)
        self.summary.delete_failures += len(failures)

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
        self.summary.dead_lettered.update(reasons[id(message)] for message in sent)
        for failure in failed:
            self._leave([(failure.message, "")], f"dead-letter queue refused it: {failure.error}")
        return sent

    def _leave(self, refused: list[tuple[QueueMessage, str]], why: str) -> None:
        for message, _ in refused:
            self.left_behind.add(message.message_id)
            self.summary.left_on_queue[why] += 1


def run(
    settings: Settings,
    key: MaskKey,
    options: RunOptions = RunOptions(),
    on_batch: Callable[[RunSummary], None] = lambda summary: None,
) -> RunSummary:
    """Drain the queue into the table; configuration errors raise, errors mid-run are reported
    in the summary (with what was done until then) and its exit code."""
    pipeline = Run(settings, key, options, on_batch)
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
PEEK_VISIBILITY = 30  # long enough to gather the messages, released at once afterwards


def peek(
    settings: Settings,
    key: MaskKey | None,
    max_messages: int = 10,
    show_pii: bool = False,
    wait_time: int = 1,
) -> PeekResult:
    """Receive up to max_messages, judge each as `run` would, and make them all visible again."""
    sqs = extract.sqs_client(settings)
    queue_url = settings.queue_url
    limit = extract.max_receive_count(sqs, queue_url)
    seen: dict[str, QueueMessage] = {}
    try:
        while len(seen) < max_messages:
            wanted = min(extract.MAX_PER_CALL, max_messages - len(seen))
            received = extract.receive(sqs, queue_url, wanted, wait_time, PEEK_VISIBILITY)
            new = [message for message in received if message.message_id not in seen]
            seen.update((message.message_id, message) for message in new)
            if not new:
                break
    finally:
        extract.release(sqs, queue_url, list(seen.values()))
    return PeekResult(
        queue_url=queue_url,
        messages=[_peeked(message, key, show_pii) for message in seen.values()],
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
