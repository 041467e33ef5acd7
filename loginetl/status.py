"""status: one look at everything `run` touches, changing nothing.

The source queue (visible, in flight, delayed), the dead-letter queue (visible, and the reasons
of the first few), the table (rows, last load, rows per mask key id, partitions), and what
looks wrong. A server that cannot be reached is reported in its section; the others are still
shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import database, replay, schema, sqs
from .config import Settings
from .errors import LoginetlError
from .masking import UNKNOWN, KeyRing
from .results import plain
from .stream.leases import RENEWAL_SECONDS

DEPTH = {
    "visible": "ApproximateNumberOfMessages",
    "in_flight": "ApproximateNumberOfMessagesNotVisible",
    "delayed": "ApproximateNumberOfMessagesDelayed",
}
DLQ_REASONS = 3  # dead-lettered messages whose reasons are shown


@dataclass
class StatusReport:
    queue: dict | None = None  # {"url", "visible", "in_flight", "delayed"}, None: unreachable
    stream: dict | None = None  # {"name", "shards": [...]} when a stream is the source
    dlq: dict | None = None  # the same, plus "reasons"; None: no dead-letter queue
    endpoint: str | None = None  # the SQS endpoint called
    table: dict | None = None  # {"name", "exists", "rows", "last_loaded_at", ...}
    current_key_id: str | None = None  # None: no LOGINETL_MASK_KEY here
    problems: list[str] = field(default_factory=list)  # what looks wrong, one line each
    errors: list[str] = field(default_factory=list)  # servers that could not be reached
    exit_code: int = 0

    def as_dict(self) -> dict:
        return plain(self)


def status(
    settings: Settings, ring: KeyRing | None, renewal_seconds: float = RENEWAL_SECONDS
) -> StatusReport:
    """What `run` touches, and what looks wrong; `renewal_seconds` is the runs' --renewal."""
    report = StatusReport(current_key_id=ring.primary.key_id if ring else None)
    client = sqs.client(settings)  # first: servers that disagree are a configuration error
    report.endpoint = client.meta.endpoint_url
    if settings.stream:
        _stream(settings, renewal_seconds, report)
    _queues(client, settings, report)
    _table(settings, ring, report)
    return report


def _failed(report: StatusReport, error: LoginetlError) -> None:
    report.errors.append(str(error))
    report.exit_code = max(report.exit_code, error.exit_code)


def _depth(client, url: str) -> dict:
    attributes = sqs.queue_attributes(client, url, [*DEPTH.values(), "RedrivePolicy"])
    depth = {name: int(attributes.get(attribute, 0)) for name, attribute in DEPTH.items()}
    return {"url": url, **depth, "redrive_policy": "RedrivePolicy" in attributes}


def _stream(settings: Settings, renewal_seconds: float, report: StatusReport) -> None:
    from .stream import inspect  # the stream's own module, loaded only for a stream

    try:
        report.stream = inspect.judged(settings, renewal_seconds)
    except LoginetlError as error:
        return _failed(report, error)
    for shard in report.stream["shards"]:
        if shard["stale"]:
            report.problems.append(
                f"shard {shard['id']}: the lease of {shard['owner']} was last renewed "
                f"{shard['renewed_seconds_ago']:g} s ago (renewal every {renewal_seconds:g} s): "
                "its process has likely stopped; a run takes the shard once the lease expires"
            )
        if shard["behind"]:
            report.problems.append(
                f"shard {shard['id']} has records after its checkpoint and no process reading "
                "it: `loginetl run --stream` loads them"
            )


def _queues(client, settings: Settings, report: StatusReport) -> None:
    dlq_url = settings.dlq_url
    try:
        if not settings.stream:  # a stream is the source: no source queue to look at
            queue = _depth(client, settings.queue_url)
            report.queue = {name: queue[name] for name in ("url", *DEPTH)}
            dlq_url = settings.dlq_url or sqs.dead_letter_url(client, settings.queue_url)
    except LoginetlError as error:
        return _failed(report, error)
    if not dlq_url:
        report.problems.append(
            "no dead-letter queue (none given, none in the RedrivePolicy): invalid messages "
            "stay on the source queue"
        )
        return
    try:
        dlq = _depth(client, dlq_url)
        # Peeking counts as a receive: only where that cannot move a message anywhere.
        peeked = [] if dlq["redrive_policy"] else sqs.peek(client, dlq_url, DLQ_REASONS, 0)
    except LoginetlError as error:
        return _failed(report, error)
    reasons = [replay.reason_of(message) for message in peeked]
    report.dlq = {name: dlq[name] for name in ("url", *DEPTH)} | {"reasons": reasons}
    if dlq["visible"] or dlq["in_flight"]:
        report.problems.append(
            f"the dead-letter queue holds {dlq['visible'] + dlq['in_flight']} messages "
            "(`loginetl replay-dlq --dry-run` lists them)"
        )


def _table(settings: Settings, ring: KeyRing | None, report: StatusReport) -> None:
    try:
        connection = database.connect(settings.database_url)
    except LoginetlError as error:
        return _failed(report, error)
    try:
        connection.set_session(readonly=True)
        with database.database_errors(connection, f"cannot read {schema.TABLE}"):
            report.table = _describe_table(connection)
    except LoginetlError as error:
        _failed(report, error)
    finally:
        connection.close()
    table = report.table
    if table is None:
        return
    if not table["exists"]:
        report.problems.append(f"table {schema.TABLE} does not exist: run `loginetl init-db`")
        return
    if ring is None:
        return
    # Each key id: the primary, retired but in the ring (LOGINETL_OLD_MASK_KEYS), or unknown.
    table["mask_keys"] = {
        key_id: {"rows": count, "status": ring.status_of(key_id)}
        for key_id, count in table["mask_key_ids"].items()
    }
    others = {k: n for k, n in table["mask_key_ids"].items() if k != ring.primary.key_id}
    unknown = {k: n for k, n in others.items() if ring.status_of(k) == UNKNOWN}
    # What lookup and erase cannot search: no mask of a value asked about can match these.
    table["unsearchable_rows"] = sum(unknown.values())
    if others:
        report.problems.append(
            f"{sum(others.values())} rows under a key id other than the current "
            f"{ring.primary.key_id}: {', '.join(others)}"
            + (f" ({', '.join(unknown)} not in the key ring)" if unknown else "")
        )
    if unknown:
        report.problems.append(
            f"{sum(unknown.values())} rows under key ids not in the key ring "
            f"({', '.join(unknown)}): lookup and erase cannot search them by --ip, --device-id "
            "or --extra; add those keys to LOGINETL_OLD_MASK_KEYS"
        )


def _describe_table(connection) -> dict:
    info = schema.describe(connection)
    result: dict[str, Any] = {"name": schema.TABLE, "location": database.location_of(connection)}
    result["exists"] = info.exists
    if not info.exists:
        return result
    has_extra = schema.EXTRA in info.columns
    with connection.cursor() as cursor:
        key_column = "mask_key_id" if "mask_key_id" in info.columns else "NULL::text"
        loaded_column = "loaded_at" if "loaded_at" in info.columns else "NULL::timestamptz"
        extra_column = schema.EXTRA if has_extra else "NULL"
        cursor.execute(  # one pass over the rows: per key id, and how many keep extra fields
            f"SELECT {key_column}, count(*), max({loaded_column}), count({extra_column}) "
            f"FROM {schema.TABLE} GROUP BY 1"
        )
        by_key = cursor.fetchall()
        cursor.execute(
            "SELECT c.relname, greatest(c.reltuples, 0)::bigint FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(%s) "
            "ORDER BY 1",
            (schema.TABLE,),
        )
        partitions = cursor.fetchall()
        # The fields beyond the known seven that rows keep (`run --keep-extra`), by name: a
        # pass over the rows only when some keep them (init-db adds the column to every table).
        kept = sum(count for *_, count in by_key)
        names = None
        if has_extra:
            names = schema.extra_names(cursor) if kept else {"fields": {}, "other_names": 0}
    connection.rollback()
    last = max((loaded for _, _, loaded, _ in by_key if loaded is not None), default=None)
    extra = {"rows": kept, **names} if names is not None else None
    return result | {
        "rows": sum(count for _, count, _, _ in by_key),
        "last_loaded_at": last.isoformat() if last else None,
        "mask_key_ids": {str(key_id): count for key_id, count, _, _ in by_key},
        "partitioned": info.partitioned,
        "partitions": dict(partitions),  # name -> estimated rows
        "extra_fields": extra,  # None: no `extra` column, so none are stored
    }
