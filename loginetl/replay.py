"""replay-dlq: move messages from the dead-letter queue back to a queue `run` reads, once the
cause was fixed (a database outage, a rule that was too strict).

Send before delete: a message leaves the dead-letter queue only after SendMessageBatch reported
it sent. It travels with its body unchanged and its original message id as an attribute, so
`run` loads it under that id, and a message that had in fact been loaded before is recognised
as a duplicate, never loaded twice. Everything received and not moved (a dry run, messages the
filter skips, sends that failed) is made visible again at the end.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from . import peek, sqs
from .config import DEFAULT_QUEUE_URL, Settings, Sources, check_queue_url
from .errors import ConfigError, LoginetlError
from .masking import MaskKey
from .results import Outcome, plain
from .sqs import ORIGINAL_ID_ATTRIBUTE, SOURCE_QUEUE_ATTRIBUTE, QueueMessage

MAX_RATE = 500  # messages per second, the ceiling of SQS's own StartMessageMoveTask
# Seconds a received DLQ message stays hidden: while it is sent and deleted, or, when it is not
# moved, until the replay ends and releases it (so the next receives get past it).
REPLAY_VISIBILITY = 120
# The reason of a message SQS moved itself (maxReceiveCount exceeded): it carries no
# loginetl-reason, as no loginetl run refused it.
REDRIVE_REASON = "redrive: moved by SQS after maxReceiveCount receives"
# What a replayed message carries instead of loginetl-reason, so that `run` reads it as a new
# message while the trail of why it was dead-lettered stays on it.
REPLAYED_REASON_ATTRIBUTE = "loginetl-replayed-reason"


@dataclass(frozen=True)
class ReplayOptions:
    queue_url: str | None = None  # the source queue when one was given (flag or environment)
    dlq_url: str | None = None  # None: the target of the source queue's RedrivePolicy
    to_queue: str | None = None  # overrides the destination of every message
    to_stream: str | None = None  # a Kinesis stream as the destination of every message
    endpoint_url: str | None = None
    max_messages: int | None = None  # None: the whole dead-letter queue
    rate: float = MAX_RATE  # messages per second
    reason: str | None = None  # move only messages whose reason contains this (any case)
    dry_run: bool = False
    wait_time: int = 1
    sources: Sources = field(default_factory=Sources)  # where the URLs came from

    def __post_init__(self) -> None:
        for url, flag in (
            (self.queue_url, "--queue-url"),
            (self.dlq_url, "--dlq-url"),
            (self.to_queue, "--to-queue"),
        ):
            if url:
                check_queue_url(url, flag)
        if self.to_stream and self.to_queue:
            raise ConfigError("--to-queue and --to-stream name two destinations: give one")
        if not 0 < self.rate <= MAX_RATE:
            raise ConfigError(f"--rate must be between 1 and {MAX_RATE} messages per second")


@dataclass(frozen=True)
class ReplayedMessage:
    message_id: str  # its id on the dead-letter queue
    original_message_id: str
    reason: str
    receive_count: int
    sent_at: str
    destination: str | None
    fields: dict[str, str | None] = field(default_factory=dict)  # dry run: ip, device_id masked
    would_load: bool | None = None  # dry run: whether `run` would load it now
    error: str | None = None  # why it was not moved

    def as_dict(self) -> dict:
        return plain(self)


@dataclass
class ReplaySummary(Outcome):
    dlq_url: str
    destination: str | None  # None: each message's own source queue
    endpoint: str  # the SQS endpoint called
    dry_run: bool
    reason_filter: str | None
    received: int = 0  # distinct messages looked at on the dead-letter queue
    moved: Counter = field(default_factory=Counter)  # reason -> messages
    skipped: int = 0  # reason did not match --reason: left on the dead-letter queue
    failed: Counter = field(default_factory=Counter)  # why not sent -> messages
    delete_failures: int = 0  # sent but still on the DLQ: `run` skips the second copy
    messages: list[ReplayedMessage] = field(default_factory=list)  # dry run: all; else failed

    @property
    def selected(self) -> int:
        """Messages the filter let through: moved, failed, or listed by a dry run."""
        if self.dry_run:
            return len(self.messages)
        return sum(self.moved.values()) + sum(self.failed.values())

    def as_dict(self) -> dict:
        return plain(
            self,
            drop=("elapsed",),
            would_move=len(self.messages) if self.dry_run else 0,
            moved=sum(self.moved.values()),
            moved_by_reason=dict(self.moved),
            failed=sum(self.failed.values()),
            failed_by_error=dict(self.failed),
            messages=[message.as_dict() for message in self.messages],
            elapsed_seconds=round(self.elapsed, 3),
        )


def reason_of(message: QueueMessage) -> str:
    return message.reason or REDRIVE_REASON


def replay_entry(message: QueueMessage, destination: str) -> dict:
    """The SendMessageBatch entry (without Id) that puts `message` back on `destination`: body
    unchanged, the sender's own attributes kept, the original message id added, and the
    loginetl reason kept as loginetl-replayed-reason."""
    ours = {
        ORIGINAL_ID_ATTRIBUTE: message.origin_id,
        REPLAYED_REASON_ATTRIBUTE: reason_of(message)[:1000],
    }
    return sqs.forward_entry(message, ours, destination)


class Pacer:
    """At most `rate` messages per second: after n messages go, the next wait n / rate seconds.
    Time spent idle (a long poll) earns no credit, so there is never a burst above the rate."""

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self.next_at: float | None = None

    def wait_for(self, messages: int) -> None:
        """Wait until `messages` more may go, and count them as gone."""
        now = self.clock()
        if self.next_at is not None and self.next_at > now:
            self.sleep(self.next_at - now)
            now = self.next_at
        self.next_at = now + messages / self.rate


class _Routes:
    """Where each message goes back to: the fixed destination when there is one, else the
    queue loginetl dead-lettered it from (its loginetl-source-queue attribute), else the one
    queue whose RedrivePolicy names the DLQ."""

    def __init__(self, client, dlq_url: str, fixed: str | None) -> None:
        self.client = client
        self.dlq_url = dlq_url
        self.fixed = fixed
        self.checked: dict[str, str | None] = {}  # url -> why it cannot be used, None if it can
        self.redrive_sources: list[str] | None = None

    def destination(self, message: QueueMessage) -> tuple[str | None, str | None]:
        """(queue URL, None), or (None, why the message has nowhere to go)."""
        if self.fixed:
            return self.fixed, None
        url = message.attributes.get(SOURCE_QUEUE_ATTRIBUTE)
        if not url:
            if self.redrive_sources is None:
                self.redrive_sources = _dead_letter_sources(self.client, self.dlq_url)
            if len(self.redrive_sources) != 1:
                return None, (
                    f"no destination: no {SOURCE_QUEUE_ATTRIBUTE} attribute, and "
                    f"{len(self.redrive_sources)} queues name this DLQ in their RedrivePolicy "
                    "(pass --to-queue or --queue-url)"
                )
            url = self.redrive_sources[0]
        if url not in self.checked:
            self.checked[url] = self._unusable(url)
        problem = self.checked[url]
        return (None, problem) if problem else (url, None)

    def _unusable(self, url: str) -> str | None:
        try:
            check_queue_url(url, SOURCE_QUEUE_ATTRIBUTE)
            if url == self.dlq_url:
                return (
                    f"no destination: {SOURCE_QUEUE_ATTRIBUTE} names the dead-letter queue itself"
                )
            sqs.queue_attributes(self.client, url, ["QueueArn"])
        except ConfigError as error:
            return f"no destination: {error}"
        return None


def _dead_letter_sources(client, dlq_url: str) -> list[str]:
    with sqs.sqs_errors("cannot list the source queues of", dlq_url):
        response = client.list_dead_letter_source_queues(QueueUrl=dlq_url)
    return response.get("queueUrls", [])


def replay_dlq(
    options: ReplayOptions,
    key: MaskKey | None = None,
    pacer: Pacer | None = None,
) -> ReplaySummary:
    """Move (or with dry_run, list) the dead-letter queue's messages. Configuration errors raise
    before any message is touched; errors midway are reported in the summary, with what was
    done until then, and everything received and not moved is released."""
    source = options.queue_url or (None if options.dlq_url else DEFAULT_QUEUE_URL)
    settings = Settings(
        queue_url=options.queue_url or DEFAULT_QUEUE_URL,
        dlq_url=options.dlq_url,
        endpoint_url=options.endpoint_url,
        sources=options.sources,
    )
    to_queue = options.sources.given("to_queue", options.to_queue)
    settings.sqs_route([to_queue] if to_queue else [])  # servers that disagree: ConfigError
    client = sqs.client(settings)
    dlq_url = options.dlq_url or (source and sqs.dead_letter_url(client, source))
    if not dlq_url:
        raise ConfigError(
            f"{source} has no RedrivePolicy naming a dead-letter queue: pass --dlq-url"
        )
    sqs.queue_attributes(client, dlq_url, ["QueueArn"])  # a missing DLQ is a ConfigError
    destination = options.to_queue or source
    if destination == dlq_url:
        raise ConfigError(f"the destination {destination} is the dead-letter queue itself")
    send = None
    if options.to_stream:
        destination, send = f"stream {options.to_stream}", _to_stream(settings, options)
    elif destination:
        sqs.queue_attributes(client, destination, ["QueueArn"])

    summary = ReplaySummary(
        dlq_url=dlq_url,
        destination=destination,
        endpoint=client.meta.endpoint_url,
        dry_run=options.dry_run,
        reason_filter=options.reason,
    )
    routes = _Routes(client, dlq_url, destination)
    replaying = _Replay(client, routes, options, key, pacer or Pacer(options.rate), summary, send)
    return replaying.run()


def _to_stream(settings: Settings, options: ReplayOptions) -> Callable:
    """The sender of `--to-stream`: PutRecords, the identity in the partition key."""
    from .stream import client as kinesis
    from .stream.replaying import put_back

    name = options.to_stream
    assert name is not None, "only --to-stream makes this sender"
    stream = kinesis.kinesis_client(settings.kinesis_endpoint)
    kinesis.list_shards(stream, name)  # a missing stream is a ConfigError
    return lambda destination, batch: put_back(stream, name, batch)


class _Replay:
    """One replay: the messages in hand and the running summary."""

    def __init__(
        self,
        client,
        routes: _Routes,
        options: ReplayOptions,
        key: MaskKey | None,
        pacer: Pacer,
        summary: ReplaySummary,
        send: Callable[[str, list[QueueMessage]], dict[int, str]] | None = None,
    ) -> None:
        self.sender = send or self.send  # where moved messages go: a queue, or a stream
        self.client = client
        self.dlq_url = summary.dlq_url
        self.routes = routes
        self.options = options
        self.key = key
        self.pacer = pacer
        self.summary = summary
        self.seen: set[str] = set()
        self.held: dict[str, QueueMessage] = {}  # id -> latest copy, released at the end

    def run(self) -> ReplaySummary:
        started = time.monotonic()
        summary = self.summary
        try:
            while not self._reached_max():
                wanted = sqs.MAX_PER_CALL
                if self.options.max_messages is not None:
                    wanted = min(wanted, self.options.max_messages - summary.selected)
                received = sqs.receive(
                    self.client, self.dlq_url, wanted, self.options.wait_time, REPLAY_VISIBILITY
                )
                if not received:
                    break
                self._handle(received)
            summary.stopped_because = (
                "max messages reached" if self._reached_max() else "dead-letter queue drained"
            )
        except LoginetlError as error:
            summary.error = str(error)
            summary.exit_code = error.exit_code
            summary.stopped_because = "error"
        finally:
            self._release_held()
            summary.elapsed = time.monotonic() - started
        if summary.failed and not summary.exit_code:
            summary.exit_code = 1
        return summary

    def _reached_max(self) -> bool:
        limit = self.options.max_messages
        return limit is not None and self.summary.selected >= limit

    def _handle(self, received: list[QueueMessage]) -> None:
        selected = []
        for message in received:
            # Hidden until moved or released; a message seen before (back after its visibility
            # timeout in a long replay) is only hidden again.
            self.held[message.message_id] = message
            if message.message_id in self.seen:
                continue
            self.seen.add(message.message_id)
            self.summary.received += 1
            wanted = self.options.reason
            if wanted and wanted.lower() not in reason_of(message).lower():
                self.summary.skipped += 1
            else:
                selected.append(message)
        if self.options.dry_run:
            self.summary.messages += [self._listed(message) for message in selected]
        else:
            self._move(selected)

    def _listed(self, message: QueueMessage) -> ReplayedMessage:
        destination, problem = self.routes.destination(message)
        return ReplayedMessage(
            **_described(message),
            destination=destination,
            fields=peek.shown_fields(message.body, self.key, False),
            would_load=peek.judge(message).loads,
            error=problem,
        )

    def _move(self, messages: list[QueueMessage]) -> None:
        by_destination: dict[str, list[QueueMessage]] = {}
        for message in messages:
            destination, problem = self.routes.destination(message)
            if destination is None:
                self._failed(message, None, problem or "no destination")
            else:
                by_destination.setdefault(destination, []).append(message)
        for destination, batch in by_destination.items():
            self.pacer.wait_for(len(batch))
            not_sent = self.sender(destination, batch)
            sent = [message for index, message in enumerate(batch) if index not in not_sent]
            for index, why in not_sent.items():
                self._failed(batch[index], destination, why)
            self.summary.moved.update(reason_of(message) for message in sent)
            undeleted = {
                id(failure.message) for failure in sqs.delete(self.client, self.dlq_url, sent)
            }
            self.summary.delete_failures += len(undeleted)
            for message in sent:
                if id(message) not in undeleted:
                    del self.held[message.message_id]

    def send(self, destination: str, batch: list[QueueMessage]) -> dict[int, str]:
        """Send to a queue; returns {index: why} for what it did not take."""
        entries = [replay_entry(message, destination) for message in batch]
        return sqs.send_entries(self.client, destination, entries)

    def _failed(self, message: QueueMessage, destination: str | None, why: str) -> None:
        self.summary.failed[why] += 1
        self.summary.messages.append(
            ReplayedMessage(**_described(message), destination=destination, error=why)
        )

    def _release_held(self) -> None:
        """Best effort: what cannot be released comes back after REPLAY_VISIBILITY anyway."""
        try:
            sqs.release(self.client, self.dlq_url, list(self.held.values()))
        except LoginetlError:
            pass


def _described(message: QueueMessage) -> dict:
    return {
        "message_id": message.message_id,
        "original_message_id": message.origin_id,
        "reason": reason_of(message),
        "receive_count": message.receive_count,
        "sent_at": message.sent_at.isoformat(timespec="seconds"),
    }
