"""Validate a raw message body, normalise it, and mask its personal data into a row.

Pure functions: no queue, no database. A message is either turned into a `LoginRow` or refused
with an `InvalidMessage` whose reason is recorded on the dead-letter queue. Nothing is
truncated or guessed: a value that does not fit its column makes the message invalid.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from .masking import MaskKey

REQUIRED_FIELDS = ("user_id", "device_type", "ip", "device_id", "app_version")
KNOWN_FIELDS = (*REQUIRED_FIELDS, "locale", "create_date")  # any other field is extra


def extra_fields(document: dict[str, Any]) -> list[str]:
    """The names of a login's top-level fields beyond the known seven (never their values:
    they may hold personal data)."""
    return [name for name in document if name not in KNOWN_FIELDS]


# Longest value accepted per field. user_id .. app_version are the widths of their columns in
# user_logins; ip and device_id are never stored raw, the limits only bound what we hash.
MAX_LENGTH = {
    "user_id": 128,
    "device_type": 32,
    "locale": 32,
    "app_version": 32,
    "ip": 64,
    "device_id": 256,
}
MASK_WIDTH = 256  # masked_ip and masked_device_id are varchar(256)
# An siv mask is "siv:" + base64 of a 16-byte tag and the value: the longest value that fits.
SIV_MAX_BYTES = (MASK_WIDTH - 4) // 4 * 3 - 16


class InvalidMessage(Exception):
    """The message cannot be loaded; `reason` ("category: detail") goes to the dead-letter queue."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class JsonNumber(str):
    """A JSON number kept as the text it was sent as ("2.00" stays "2.00", 1e999 stays text)."""


# Not frozen: a frozen dataclass sets each field through object.__setattr__, a cost paid twice
# a message (a Login and a LoginRow) for a guarantee nothing needs: no code changes them after
# they are made.
@dataclass(slots=True)
class Login:
    """A validated, normalised login; still holds the raw ip and device_id."""

    user_id: str
    device_type: str
    ip: str  # canonical form: one address, one spelling
    device_id: str
    locale: str | None
    app_version: str
    create_date: date | None  # None when absent or not a valid date


@dataclass(slots=True)
class LoginRow:
    """What goes into user_logins: no raw personal data left."""

    message_id: str
    user_id: str
    device_type: str
    masked_ip: str
    masked_device_id: str
    locale: str | None
    app_version: str
    create_date: date
    mask_key_id: str
    extra: str | None = None  # what `kept_extra` gives, when extra fields are kept


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


_HOOKS: dict[str, Any] = {
    "parse_int": JsonNumber,
    "parse_float": JsonNumber,
    "parse_constant": _reject_constant,
}
# One decoder for every text body (json.loads with hooks would build a new one each call).
_DECODER = json.JSONDecoder(**_HOOKS)


def parse_body(body: str | bytes) -> dict[str, Any]:
    try:
        document = _DECODER.decode(body) if type(body) is str else json.loads(body, **_HOOKS)
    except RecursionError:
        raise InvalidMessage("json: nested too deeply") from None
    except ValueError as error:
        raise InvalidMessage(f"json: not valid JSON ({_first_line(error)})") from None
    if not isinstance(document, dict):
        raise InvalidMessage(f"schema: expected a JSON object, got {json_type(document)}")
    return document


def validate(body: str) -> Login:
    """Parse and check one message body; raises InvalidMessage saying what is wrong."""
    return validate_document(parse_body(body))


def validate_document(document: dict[str, Any]) -> Login:
    """Check a parsed body (parse_body's, numbers kept as sent); raises InvalidMessage."""
    missing = [name for name in REQUIRED_FIELDS if document.get(name) is None]
    if missing:
        raise InvalidMessage(f"schema: missing required field {', '.join(map(repr, missing))}")
    return Login(
        user_id=_text(document, "user_id"),
        device_type=_text(document, "device_type"),
        ip=_ip(_text(document, "ip")),
        device_id=_text(document, "device_id"),
        locale=None if document.get("locale") is None else _text(document, "locale", empty_ok=True),
        app_version=_text(document, "app_version", numbers_allowed=True),
        create_date=_optional_date(document.get("create_date")),
    )


def mask_login(login: Login, key: MaskKey, message_id: str, sent_at: datetime) -> LoginRow:
    """The row for a validated login; create_date falls back to the UTC day it was sent."""
    masked_device_id = key.mask(login.device_id)
    if len(masked_device_id) > MASK_WIDTH:  # siv masks grow with the value; hmac ones do not
        raise InvalidMessage(
            f"schema: field 'device_id' is too long to store encrypted ({key.mode}) in "
            f"varchar({MASK_WIDTH}): at most {SIV_MAX_BYTES} bytes"
        )
    return LoginRow(
        message_id=message_id,
        user_id=login.user_id,
        device_type=login.device_type,
        masked_ip=key.mask(login.ip),
        masked_device_id=masked_device_id,
        locale=login.locale,
        app_version=login.app_version,
        create_date=login.create_date or sent_at.astimezone(UTC).date(),
        mask_key_id=key.key_id,
    )


def kept_extra(document: dict[str, Any], key: MaskKey, masked: frozenset[str]) -> str | None:
    """The login's fields beyond the known seven as the text of a JSON object (for the `extra`
    column), each field named in `masked` replaced by its mask under `key`, as ip and device_id
    are: a string is masked as itself, any other value as its JSON text, and null stays null
    (there is nothing to hide). None when the login has no extra field."""
    names = extra_fields(document)
    if not names:
        return None
    try:
        texts = texts_to_mask(document, masked)
        return json_text(
            {name: key.mask(texts[name]) if name in texts else document[name] for name in names}
        )
    except RecursionError:
        raise InvalidMessage("schema: an extra field is nested too deeply to store") from None
    except UnicodeEncodeError:
        raise InvalidMessage(
            "schema: an extra field to mask is not valid Unicode (lone surrogate)"
        ) from None


_string = json.JSONEncoder().encode  # a str as JSON: quoted, escaped, ASCII only


def texts_to_mask(document: dict[str, Any], names: frozenset[str]) -> dict[str, str]:
    """Each field of `names` the document holds -> the text its mask is made of: a string is
    masked as itself, any other value as its JSON text as sent (so a number and the string of
    its digits mask alike, as ip does). A null is left out: there is nothing to hide."""
    return {
        name: value if type(value) is str else json_text(value)
        for name in sorted(names)
        if (value := document.get(name)) is not None
    }


def json_text(value: Any) -> str:
    """`value` (as parse_body gives it) as JSON text, numbers as they were sent."""
    if isinstance(value, JsonNumber):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{_string(k)}:{json_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(map(json_text, value)) + "]"
    return json.dumps(value)


def to_row(body: str, key: MaskKey, message_id: str, sent_at: datetime) -> LoginRow:
    return mask_login(validate(body), key, message_id, sent_at)


# A dotted quad with no leading zeros: already its canonical spelling (the common case, and
# ipaddress takes microseconds to say so).
_CANONICAL_IPV4 = re.compile(
    r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
)
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


def canonical_ip(value: str) -> str:
    """One spelling per address: compressed IPv6, IPv4-mapped IPv6 as plain IPv4."""
    if _CANONICAL_IPV4.fullmatch(value):
        return value
    address = ipaddress.ip_address(value)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return str(address)


def _ip(value: str) -> str:
    try:
        return canonical_ip(value)
    except ValueError:
        raise InvalidMessage("schema: field 'ip' is not an IPv4 or IPv6 address") from None


def _text(
    document: dict[str, Any], name: str, numbers_allowed: bool = False, empty_ok: bool = False
) -> str:
    value = document[name]
    if type(value) is not str and not (numbers_allowed and isinstance(value, JsonNumber)):
        expected = "a string or a number" if numbers_allowed else "a string"
        raise InvalidMessage(f"schema: field {name!r} must be {expected}, got {json_type(value)}")
    if value == "" and not empty_ok:
        raise InvalidMessage(f"schema: field {name!r} is empty")
    if len(value) > MAX_LENGTH[name]:
        raise InvalidMessage(
            f"schema: field {name!r} is {len(value)} characters, longer than {MAX_LENGTH[name]}"
        )
    if _CONTROL_CHARACTER.search(value):
        raise InvalidMessage(f"schema: field {name!r} contains a control character")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidMessage(
                f"schema: field {name!r} is not valid Unicode (lone surrogate)"
            ) from None
    return str(value)


def _optional_date(value: Any) -> date | None:
    """A valid ISO date or timestamp (UTC day of it), else None: the caller falls back."""
    if type(value) is not str or len(value) > 64:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        return None
    if moment.tzinfo is not None:
        try:
            moment = moment.astimezone(UTC)
        except OverflowError:  # its UTC day is before year 1 or after 9999: no such date
            return None
    return moment.date()


def json_type(value: Any) -> str:
    if isinstance(value, JsonNumber):
        return "a number"
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    return names.get(type(value), "null")


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0][:200]
