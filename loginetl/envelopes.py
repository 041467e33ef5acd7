"""What a message body holds: a login as it was sent (raw), an SNS notification wrapping one (a
topic fanning out to the queue without raw message delivery), or an EventBridge event carrying
one as its `detail` (a rule targeting the queue). Told apart per message, with no flag.

An envelope is opened once, never twice: a login inside an envelope inside another is not
what any producer sends, so it is refused with a reason rather than guessed at. SNS
confirmations are refused too (never confirmed automatically: subscribing a queue to a topic
is the operator's decision). The envelope's own time (SNS `Timestamp`, EventBridge `time`)
stands in for a login without `create_date`, as SentTimestamp does for a raw body. The message
id used for idempotency stays the SQS message's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .transform import InvalidMessage, Login, json_type, parse_body, validate_document

RAW, SNS, EVENTBRIDGE = "raw", "sns", "eventbridge"
ENVELOPES = (RAW, SNS, EVENTBRIDGE)
SNS_NOT_LOGINS = ("SubscriptionConfirmation", "UnsubscribeConfirmation")
# Keys only an envelope has at its top level: a body with neither is a raw login, and is parsed
# once, by the transform, as before envelopes were known.
_MARKS = ("TopicArn", "detail-type")


@dataclass(slots=True)
class Opened:
    """A body opened: which envelope it came in, the login it holds, and the envelope's time."""

    envelope: str
    login: Login
    sent_at: datetime | None  # None: no envelope time, the SQS message's own is used
    document: dict[str, Any]  # the login's fields as parsed (for what is beyond the known)


def open_body(body: str | bytes) -> Opened:
    """The login in `body`, whatever envelope it came in; raises InvalidMessage (its reason
    names the envelope when it is the envelope that is wrong)."""
    document = parse_body(body)
    envelope = _envelope_of(document) if _may_be_envelope(body) else None
    if envelope == SNS:
        return _sns(document)
    if envelope == EVENTBRIDGE:
        return _eventbridge(document)
    return Opened(RAW, validate_document(document), None, document)


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


def _sns(envelope: dict[str, Any]) -> Opened:
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
    return _opened(SNS, document, envelope.get("Timestamp"))


def _eventbridge(event: dict[str, Any]) -> Opened:
    if "detail" not in event:
        raise InvalidMessage("envelope: an EventBridge event without a detail")
    detail = event["detail"]
    if not isinstance(detail, dict):
        raise InvalidMessage(
            f"envelope: the EventBridge detail is {json_type(detail)}, not a JSON object"
        )
    return _opened(EVENTBRIDGE, detail, event.get("time"))


def _opened(envelope: str, document: dict[str, Any], time: Any) -> Opened:
    inner = _envelope_of(document)
    if inner is not None:
        raise InvalidMessage(
            f"envelope: an {inner} envelope inside an {envelope} one (one envelope is opened, "
            "never two)"
        )
    return Opened(envelope, validate_document(document), _time(time), document)


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
