"""What a message body holds: a login as it was sent (raw), an SNS notification wrapping one (a
topic fanning out to the queue without raw message delivery), or an EventBridge event carrying
one as its `detail` (a rule targeting the queue). Told apart per message, with no flag.

Other event types may share the queue: `--accept` rules (NAME=VALUE, each to hold in the
envelope's fields or the body's, all of them) tell a login from the rest; what fails them is
NotAccepted, checked before the login is validated (another event has no login's fields).

An envelope is opened once, never twice: a login inside an envelope inside another is not
what any producer sends, so it is refused with a reason rather than guessed at. SNS
confirmations are refused too (never confirmed automatically: subscribing a queue to a topic
is the operator's decision). The envelope's own time (SNS `Timestamp`, EventBridge `time`)
stands in for a login without `create_date`, as SentTimestamp does for a raw body. The message
id used for idempotency stays the SQS message's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .errors import ConfigError
from .transform import (
    InvalidMessage,
    Login,
    extra_fields,
    json_type,
    parse_body,
    validate_document,
)

RAW, SNS, EVENTBRIDGE = "raw", "sns", "eventbridge"
ENVELOPES = (RAW, SNS, EVENTBRIDGE)
SNS_NOT_LOGINS = ("SubscriptionConfirmation", "UnsubscribeConfirmation")
# Keys only an envelope has at its top level: a body with neither is a raw login, and is parsed
# once, by the transform, as before envelopes were known.
_MARKS = ("TopicArn", "detail-type")


NOT_ACCEPTED = "not accepted"  # how the summary and /metrics count what the rules skip


class NotAccepted(InvalidMessage):
    """The message is not a login by the --accept rules: skipped, deleted or dead-lettered."""


@dataclass(frozen=True)
class Rule:
    """NAME=VALUE: the top-level field NAME of the envelope or of the body is VALUE (as text;
    numbers as sent, true, false and null as JSON spells them)."""

    name: str
    value: str

    def holds(self, *documents: dict[str, Any] | None) -> bool:
        return any(
            document is not None and self.name in document
            and _as_text(document[self.name]) == self.value
            for document in documents
        )  # fmt: skip

    def __str__(self) -> str:
        return f"{self.name}={self.value}"


def parse_rules(texts: list[str] | tuple[str, ...]) -> tuple[Rule, ...]:
    """--accept values (each may hold several, comma-separated, as LOGINETL_ACCEPT does)."""
    rules = []
    for part in (part.strip() for text in texts for part in text.split(",")):
        if not part:
            continue
        name, equals, value = part.partition("=")
        if not equals or not name.strip():
            raise ConfigError(
                f"--accept takes NAME=VALUE (e.g. detail-type=UserLogin), not {part[:40]!r}"
            )
        rules.append(Rule(name.strip(), value.strip()))
    return tuple(rules)


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


@dataclass(slots=True)
class Opened:
    """A body opened: which envelope it came in, the login it holds, and the envelope's time."""

    envelope: str
    login: Login
    sent_at: datetime | None  # None: no envelope time, the SQS message's own is used
    document: dict[str, Any]  # the login's fields as parsed (for what is beyond the known)

    @property
    def extra_fields(self) -> list[str]:
        return extra_fields(self.document)


def open_body(body: str | bytes, accept: tuple[Rule, ...] = ()) -> Opened:
    """The login in `body`, whatever envelope it came in; raises InvalidMessage (its reason
    names the envelope when it is the envelope that is wrong), NotAccepted when a rule of
    `accept` does not hold."""
    document = parse_body(body)
    envelope = _envelope_of(document) if _may_be_envelope(body) else None
    if envelope == SNS:
        return _sns(document, accept)
    if envelope == EVENTBRIDGE:
        return _eventbridge(document, accept)
    _check(accept, None, document)
    return Opened(RAW, validate_document(document), None, document)


def _check(accept: tuple[Rule, ...], envelope: dict | None, document: dict) -> None:
    for rule in accept:
        if not rule.holds(envelope, document):
            raise NotAccepted(f"skipped: {NOT_ACCEPTED} ({rule} does not hold)")


def envelope_of(body: str | bytes) -> str:
    """Which envelope `body` came in, for peek: raw when it is not one (or not JSON)."""
    if not _may_be_envelope(body):
        return RAW
    try:
        return _envelope_of(parse_body(body)) or RAW
    except InvalidMessage:
        return RAW


def _may_be_envelope(body: str | bytes) -> bool:
    if isinstance(body, bytes):
        return any(f'"{mark}"'.encode() in body for mark in _MARKS)
    return any(f'"{mark}"' in body for mark in _MARKS)


def _envelope_of(document: dict[str, Any]) -> str | None:
    if "TopicArn" in document and "Type" in document:
        return SNS
    if "detail-type" in document and "source" in document:
        return EVENTBRIDGE
    return None


def _sns(envelope: dict[str, Any], accept: tuple[Rule, ...]) -> Opened:
    kind = envelope.get("Type")
    if kind in SNS_NOT_LOGINS:
        raise InvalidMessage(
            f"envelope: an SNS {kind} is not a login (loginetl never confirms a subscription)"
        )
    if kind != "Notification":
        raise InvalidMessage(f"envelope: an SNS message of Type {_shown(kind)}, not Notification")
    message = envelope.get("Message")
    if type(message) is not str:  # a JSON number is parsed to a str subclass
        raise InvalidMessage(f"envelope: the SNS Message is {json_type(message)}, not a string")
    try:
        document = parse_body(message)
    except InvalidMessage as invalid:
        reason = f"envelope: the SNS Message is not a JSON login ({invalid.reason})"
        raise InvalidMessage(reason) from None
    return _opened(SNS, envelope, document, envelope.get("Timestamp"), accept)


def _eventbridge(event: dict[str, Any], accept: tuple[Rule, ...]) -> Opened:
    if "detail" not in event:
        raise InvalidMessage("envelope: an EventBridge event without a detail")
    detail = event["detail"]
    if not isinstance(detail, dict):
        raise InvalidMessage(
            f"envelope: the EventBridge detail is {json_type(detail)}, not a JSON object"
        )
    return _opened(EVENTBRIDGE, event, detail, event.get("time"), accept)


def _opened(
    kind: str, envelope: dict, document: dict[str, Any], time: Any, accept: tuple[Rule, ...]
) -> Opened:
    inner = _envelope_of(document)
    if inner is not None:
        raise InvalidMessage(
            f"envelope: an {inner} envelope inside an {kind} one (one envelope is opened, "
            "never two)"
        )
    _check(accept, envelope, document)
    return Opened(kind, validate_document(document), _time(time), document)


def _time(value: Any) -> datetime | None:
    """An envelope's ISO 8601 time with its zone; None when absent or not one."""
    if type(value) is not str:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _shown(value: Any) -> str:
    """A value of the envelope in a reason: short, and only as JSON would type it."""
    return repr(value[:40]) if type(value) is str else json_type(value)
