"""The raw messages verify-masking compares the table against: read from a file or peeked off
the queue, and what careless (unkeyed, reversible) masking of their values would look like."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from .. import envelopes, sqs, transform
from ..config import Settings
from ..errors import ConfigError

DIGESTS = ("md5", "sha1", "sha256", "sha512")


@dataclass(frozen=True)
class RawMessage:
    body: str
    message_id: str | None = None  # the id it would be loaded under, when known


@dataclass(frozen=True)
class RawLogin:
    message_id: str | None
    login: transform.Login
    values: dict[str, set[str]]  # "ip" / "device_id" / an extra field -> spellings to look for
    # The fields of LOGINETL_MASK_EXTRA the message holds (not null) -> the text `run` masks
    extra: dict[str, str] = field(default_factory=dict)


def read_raw_file(path: str) -> list[RawMessage]:
    """A JSON array of messages, or one message per line (JSON lines). A message is a login
    object, or an SQS message ({"MessageId": ..., "Body": "..."}) whose id is then matched."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read --from-file {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--from-file {path} is not UTF-8 text") from None
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except (ValueError, RecursionError) as error:
            raise ConfigError(
                f"--from-file {path} is not a valid JSON array ({_where(error)})"
            ) from None
    else:
        items = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                items.append(json.loads(line))
            except (ValueError, RecursionError) as error:
                raise ConfigError(
                    f"--from-file {path} line {number} is not valid JSON ({_where(error)})"
                ) from None
    if not items:
        raise ConfigError(f"--from-file {path} holds no messages")
    return [_raw_message(item) for item in items]


def _raw_message(item) -> RawMessage:
    if isinstance(item, dict) and isinstance(item.get("Body"), str):
        message_id = item.get("MessageId")
        return RawMessage(item["Body"], message_id if isinstance(message_id, str) else None)
    if isinstance(item, str):
        return RawMessage(item)
    return RawMessage(json.dumps(item))


def _where(error: Exception) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} at line {error.lineno} column {error.colno}"
    return "nested too deeply" if isinstance(error, RecursionError) else type(error).__name__


def peek_raw(
    settings: Settings, count: int, wait_time: int
) -> tuple[list[RawMessage], int | None, str]:
    """Up to `count` messages off the queue, all made visible again, as `peek` does; the
    queue's maxReceiveCount, and the endpoint called."""
    client = sqs.client(settings)
    limit = sqs.max_receive_count(client, settings.queue_url)
    messages = sqs.peek(client, settings.queue_url, count, wait_time)
    raw = [RawMessage(message.body, message.origin_id) for message in messages]
    return raw, limit, client.meta.endpoint_url


def raw_login(raw: RawMessage, mask_extra: frozenset[str] = frozenset()) -> RawLogin | None:
    """The login `run` would load from this message, with every spelling of its personal data
    a careless loader might have stored (the extra fields named in `mask_extra` included);
    None when `run` would refuse the message."""
    try:
        opened = envelopes.open_body(raw.body)
    except transform.InvalidMessage:
        return None
    login, document = opened.login, opened.document
    sent_ip = document.get("ip")
    ips = {login.ip} | ({sent_ip} if isinstance(sent_ip, str) else set())
    try:  # what `run --keep-extra` refuses to mask (too deep, a lone surrogate) is not loaded
        extra = transform.texts_to_mask(document, mask_extra)
        "".join(extra.values()).encode()
    except (RecursionError, UnicodeEncodeError):
        return None
    values = {"ip": ips, "device_id": {login.device_id}} | {
        name: {text} for name, text in extra.items()
    }
    return RawLogin(raw.message_id, login, values, extra)


def unkeyed_forms(value: str, name: str) -> dict[str, str]:
    """What reversible "masking" of `value` looks like -> how it was made: unkeyed hex digests,
    base64 of the value or of a digest, the value itself."""
    data = value.encode("utf-8")
    forms = {value: f"raw {name}", base64.b64encode(data).decode(): f"base64({name})"}
    for algorithm in DIGESTS:
        digest = hashlib.new(algorithm, data)
        forms[digest.hexdigest()] = f"{algorithm}({name})"
        forms[base64.b64encode(digest.digest()).decode()] = f"base64({algorithm}({name}))"
    return forms
