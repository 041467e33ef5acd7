"""Looking at a stream, changing nothing: each shard's lease and checkpoint for `status`, and
for `peek --stream` the records after each shard's checkpoint (the checkpoint does not move).

For `status`, each shard is judged too: a lease not renewed for over twice the renewal interval
is stale (its holder has most likely stopped, and the shard waits for the lease to expire), and
a shard with records after its checkpoint that no live holder reads is behind."""

from __future__ import annotations

from datetime import UTC, datetime

from .. import database, peek
from ..config import Settings
from ..errors import LoginetlError
from ..masking import MaskKey
from ..peek import PeekedMessage, PeekResult
from . import client as kinesis
from .leases import shard_rows

PEEK_READS = 3  # GetRecords per shard at most: a peek is a glance, not a scan


def shards(settings: Settings, client=None) -> dict:
    """{"name", "shards": [{"id", "parent", "state", "owner", "checkpoint", "lease_expires"}]}:
    the stream's shards as Kinesis lists them, with what the table knows of each (a shard
    the table does not know yet has no owner and no checkpoint); `client`, one the caller has
    made for this endpoint already."""
    client = client or kinesis.kinesis_client(settings.kinesis_endpoint)
    listed = kinesis.list_shards(client, stream_name(settings))
    known = {row["id"]: row for row in _rows(settings)}
    result = []
    for shard in listed:
        blank = {
            "id": shard.id,
            "parent": ",".join(shard.parents) or None,
            "owner": None,
            "state": "closed" if shard.closed else "open",
            "checkpoint": None,
            "lease_expires": None,
            "renewed_seconds_ago": None,
        }
        result.append(known.pop(shard.id, blank))
    result += known.values()  # past the stream's retention, still in the table
    return {"name": settings.stream, "shards": sorted(result, key=lambda shard: shard["id"])}


def judged(settings: Settings, renewal_seconds: float) -> dict:
    """As `shards`, each shard with `stale` (its lease not renewed for over twice
    `renewal_seconds`, or expired) and `behind` (records wait after its checkpoint and no live
    holder reads them; None when a live holder does, or the shard is finished)."""
    client = kinesis.kinesis_client(settings.kinesis_endpoint)
    stream = shards(settings, client)
    now = datetime.now(UTC)
    for shard in stream["shards"]:
        age, expires = shard.get("renewed_seconds_ago"), shard["lease_expires"]
        expired = expires is not None and datetime.fromisoformat(expires) <= now
        shard["stale"] = shard["owner"] is not None and (expired or age > 2 * renewal_seconds)
        unread = shard["owner"] is None or shard["stale"]
        shard["behind"] = (
            bool(_after_checkpoint(client, stream_name(settings), shard, 1))
            if unread and shard["state"] != "finished"
            else None
        )
    return stream


def stream_name(settings: Settings) -> str:
    """The stream these settings name; only a stream's commands get here."""
    assert settings.stream is not None, "a stream command without --stream"
    return settings.stream


def _rows(settings: Settings) -> list[dict]:
    connection = database.connect(settings.database_url)
    try:
        return shard_rows(connection, stream_name(settings))
    except LoginetlError:
        return []  # no table yet (init-db not run): nothing known of any shard
    finally:
        connection.close()


def peek_stream(
    settings: Settings, key: MaskKey | None, max_messages: int, show_pii: bool
) -> PeekResult:
    client = kinesis.kinesis_client(settings.kinesis_endpoint)
    found: list[PeekedMessage] = []
    for shard in shards(settings, client)["shards"]:
        if shard["state"] == "finished" or len(found) >= max_messages:
            continue
        most = max_messages - len(found)
        for record in _after_checkpoint(client, stream_name(settings), shard, most):
            found.append(_peeked(record, key, show_pii))
    return PeekResult(f"stream {settings.stream}", client.meta.endpoint_url, found, None)


def _after_checkpoint(client, stream: str, shard: dict, most: int) -> list:
    point = shard["checkpoint"]
    after = None
    if point is not None:
        sequence, _, sub = point.partition("/")
        after = (int(sequence), int(sub) if sub else -1)
    iterator = kinesis.shard_iterator(
        client, stream, shard["id"], None if after is None else str(after[0]), "trim-horizon"
    )
    records: list = []
    for _ in range(PEEK_READS):
        read = kinesis.get_records(client, stream, shard["id"], iterator, most)
        records += [r for r in read.records if after is None or r.position > after]
        if len(records) >= most or read.next_iterator is None or read.millis_behind == 0:
            break
        iterator = read.next_iterator
    return records[:most]


def _peeked(record: kinesis.StreamRecord, key: MaskKey | None, show_pii: bool) -> PeekedMessage:
    _, binary = record.text_or_base64
    if not binary:
        return peek.peeked(record, key, show_pii)
    return PeekedMessage(
        message_id=record.message_id,
        sent_at=record.sent_at.isoformat(timespec="seconds"),
        receive_count=0,
        fields={"data": f"({len(record.data)} bytes, not UTF-8 text)"},
        verdict=kinesis.NOT_UTF8,
    )
