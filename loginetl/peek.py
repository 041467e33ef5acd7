"""peek: show messages on the queue without consuming them, and what `run` would do with each.

Each message is received with a short visibility timeout and made visible again at once; ip and
device_id are shown masked unless the operator asks for them (`--show-pii`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from . import envelopes, sqs, transform
from .config import Settings
from .masking import MaskKey
from .results import plain
from .sqs import Message

PII_FIELDS = ("ip", "device_id")


@dataclass(frozen=True)
class Verdict:
    """What `run` would do with a message: load it, or dead-letter it and why."""

    login: transform.Login | None
    reason: str | None
    envelope: str  # raw, sns or eventbridge
    document: dict | None  # the login's fields as parsed; None when they could not be

    @property
    def loads(self) -> bool:
        return self.reason is None


def judge(message: Message, accept: tuple[envelopes.Rule, ...] = ()) -> Verdict:
    try:
        opened = envelopes.open_body(message.body, accept)
    except transform.InvalidMessage as invalid:
        return Verdict(None, invalid.reason, envelopes.envelope_of(message.body), None)
    return Verdict(opened.login, None, opened.envelope, opened.document)


@dataclass(frozen=True)
class PeekedMessage:
    message_id: str
    sent_at: str
    receive_count: int
    fields: dict[str, str | None]
    verdict: str  # "load", or the reason it would be dead-lettered
    envelope: str = envelopes.RAW  # what the login came wrapped in: raw, sns or eventbridge
    extra_fields: tuple[str, ...] = ()  # names of the login's fields beyond the known seven

    def as_dict(self) -> dict:
        return plain(self, would_load=self.verdict == "load")


@dataclass
class PeekResult:
    queue_url: str
    endpoint: str  # the endpoint called: SQS's, or with --stream Kinesis's
    messages: list[PeekedMessage]
    max_receive_count: int | None  # from the RedrivePolicy: each peek counts towards it

    def as_dict(self) -> dict:
        return plain(self, messages=[message.as_dict() for message in self.messages])


def peek(
    settings: Settings,
    key: MaskKey | None,
    max_messages: int = 10,
    show_pii: bool = False,
    wait_time: int = 1,
    accept: tuple[envelopes.Rule, ...] = (),
) -> PeekResult:
    """Receive up to max_messages, judge each as `run` would, and make them all visible again."""
    client = sqs.client(settings)
    limit = sqs.max_receive_count(client, settings.queue_url)
    messages = sqs.peek(client, settings.queue_url, max_messages, wait_time)
    return PeekResult(
        queue_url=settings.queue_url,
        endpoint=client.meta.endpoint_url,
        messages=[peeked(message, key, show_pii, accept) for message in messages],
        max_receive_count=limit,
    )


def peeked(
    message: Message, key: MaskKey | None, show_pii: bool, accept: tuple = ()
) -> PeekedMessage:
    verdict = judge(message, accept)
    return PeekedMessage(
        message_id=message.message_id,
        sent_at=message.sent_at.isoformat(timespec="seconds"),
        receive_count=message.receive_count,
        fields=shown_fields(message.body, key, show_pii, verdict),
        verdict=verdict.reason if verdict.reason is not None else "load",
        envelope=verdict.envelope,
        extra_fields=tuple(transform.extra_fields(verdict.document or {})),
    )


def shown_fields(
    body: str, key: MaskKey | None, show_pii: bool, verdict: Verdict | None = None
) -> dict[str, str | None]:
    """The login's fields as an operator may see them: ip and device_id masked unless asked.
    An envelope's login is shown, not the envelope; an envelope that could not be opened is
    not shown at all (its text may hold the login's personal data, unmasked)."""
    document = None if verdict is None else verdict.document
    if document is None and (verdict is None or verdict.envelope == envelopes.RAW):
        try:
            document = transform.parse_body(body)
        except transform.InvalidMessage:
            pass
    if document is None:
        return {"body": body[:200] if show_pii else f"({len(body)} characters, not shown)"}
    shown: dict[str, str | None] = {}
    for name, value in document.items():
        text = None if value is None else value if isinstance(value, str) else _compact(value)
        if name in PII_FIELDS and text is not None and not show_pii:
            text = key.mask(text) if key else "***"
        elif name not in transform.KNOWN_FIELDS and text is not None and not show_pii:
            text = "(extra field, value not shown)"  # it may hold personal data
        shown[name] = text
    return shown


def _compact(value) -> str:
    return json.dumps(value, ensure_ascii=False)[:200]
