"""unmask and rekey: what only the recoverable (siv) mode allows.

unmask decrypts the ip and device_id of one row, and the siv masks among its extra fields, and
logs an `unmask` event (message id and key id, never the values). rekey re-encrypts every siv
row under a retired key to the primary key, batch by batch: each batch locks its rows (FOR
UPDATE SKIP LOCKED, so two rekeys share the work), rewrites masks (its extra fields' too) and
key id together in one UPDATE and commits. A row therefore always carries the key id all its
masks were made under; a kill -9 loses at most the batch in hand, and the next rekey starts
where the last commit left off. `run` only inserts rows under the primary key, so it never
touches the rows a rekey reads.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import psycopg2.extras

from .. import database, schema
from ..config import Settings
from ..errors import LoginetlError
from ..masking import SIV_PREFIX, CannotUnmask, KeyRing, MaskKey
from ..results import plain
from .people import ready_connection

log = logging.getLogger(__name__)
SIV_LIKE = SIV_PREFIX + "%"


@dataclass
class Unmasked:
    sqs_message_id: str
    ip: str
    device_id: str
    mask_key_id: str
    extra: dict[str, str] = field(default_factory=dict)  # siv-masked extra field -> its value

    def as_dict(self) -> dict:
        return plain(self, drop=("mask_key_id",))


@dataclass
class RekeyReport:
    primary_key_id: str
    dry_run: bool
    rekeyed: int = 0  # rows moved to the primary key (dry run: rows that would be)
    batches: int = 0
    not_rekeyable: int = 0  # one-way (hmac) rows under retired keys: found while the key stays
    unknown_key: int = 0  # rows under a key id not in the ring: neither read nor rekeyed
    undecryptable: int = 0  # siv rows that do not decrypt under the key their id names
    by_key_id: dict[str, int] = field(default_factory=dict)  # rekeyed rows by their old key id

    def as_dict(self) -> dict:
        return plain(self)


def unmask(settings: Settings, ring: KeyRing, message_id: str) -> Unmasked:
    connection, table = ready_connection(settings)
    try:
        connection.set_session(readonly=True)
        with database.database_errors(connection, f"cannot read {schema.TABLE}"):
            with connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT masked_ip, masked_device_id, mask_key_id, {_siv_extra(table)} "
                    f"FROM {schema.TABLE} WHERE sqs_message_id = %s",
                    (message_id,),
                )
                found = cursor.fetchone()
            connection.rollback()
    finally:
        connection.close()
    if found is None:
        raise LoginetlError(f"no row in {schema.TABLE} has message id {message_id!r}")
    masked_ip, masked_device_id, key_id, extra = found
    key = ring.get(key_id)
    if key is None:
        raise LoginetlError(
            f"row {message_id!r} is under key id {key_id}, which is not in the key ring "
            "(LOGINETL_MASK_KEY, LOGINETL_OLD_MASK_KEYS)"
        )
    try:
        ip, device_id = key.unmask(masked_ip), key.unmask(masked_device_id)
    except CannotUnmask as error:
        raise LoginetlError(f"row {message_id!r} cannot be unmasked: {error}") from None
    log.info(
        "unmask: message %s under key id %s",
        message_id,
        key_id,
        extra={"event": "unmask", "message_id": message_id, "key_id": key_id},
    )
    return Unmasked(message_id, ip, device_id, key_id, decrypted_extra(key, extra))


# What may be siv masks among a row's extra fields: its top-level strings that start as one
# does, as a JSON object (NULL when there are none).
_SIV_EXTRA_SQL = (
    f"CASE WHEN jsonb_typeof({schema.EXTRA}) = 'object' THEN (SELECT jsonb_object_agg(e.key, "
    f"e.value) FROM jsonb_each_text({schema.EXTRA}) AS e WHERE jsonb_typeof({schema.EXTRA} -> "
    f"e.key) = 'string' AND starts_with(e.value, '{SIV_PREFIX}')) END"
)


def _siv_extra(table: schema.TableInfo) -> str:
    """The column of _SIV_EXTRA_SQL, or NULL when the table has no `extra` column."""
    return _SIV_EXTRA_SQL if schema.EXTRA in table.columns else "NULL::jsonb"


def decrypted_extra(key: MaskKey, candidates: dict[str, str] | None) -> dict[str, str]:
    """The extra fields among `candidates` that are siv masks under `key` -> their values. AES-SIV
    authenticates: a value that merely starts as a mask does fails to decrypt, and is left out."""
    decrypted = {}
    for name, mask in (candidates or {}).items():
        try:
            decrypted[name] = key.unmask(mask)
        except CannotUnmask:
            continue
    return decrypted


def rekey(settings: Settings, ring: KeyRing, batch_size: int, dry_run: bool) -> RekeyReport:
    report = RekeyReport(ring.primary.key_id, dry_run)
    connection, table = ready_connection(settings)
    try:
        with database.database_errors(connection, f"cannot rekey {schema.TABLE}"):
            if dry_run:
                connection.set_session(readonly=True)
            else:
                failed: list[str] = []  # ids of rows that did not decrypt: left as they are
                statements = _Statements(table)
                while _rekey_batch(connection, ring, batch_size, report, failed, statements):
                    pass
            _count_the_rest(connection, ring, report)
    finally:
        connection.close()
    return report


class _Statements:
    """The SQL of a rekey batch. Where the table has the `extra` column, the UPDATE that moves
    a row's ip, device_id and key id also writes its re-encrypted extra fields over the old
    ones (jsonb ||: every other field stays as it was), so the key id names the key of every
    mask the row holds."""

    def __init__(self, table: schema.TableInfo) -> None:
        has_extra = schema.EXTRA in table.columns
        self.batch = (
            "SELECT sqs_message_id, create_date, masked_ip, masked_device_id, mask_key_id, "
            f"{_siv_extra(table)} FROM {schema.TABLE} "
            "WHERE mask_key_id = ANY(%s) AND masked_ip LIKE %s "
            "AND sqs_message_id <> ALL(%s) LIMIT %s FOR UPDATE SKIP LOCKED"
        )
        extra = f"t.{schema.EXTRA}"
        rewrite = f", {schema.EXTRA} = COALESCE({extra} || v.extra::jsonb, {extra})"
        self.update = (
            f"UPDATE {schema.TABLE} AS t SET masked_ip = v.ip, masked_device_id = v.device_id, "
            f"mask_key_id = v.new_key{rewrite if has_extra else ''} "
            "FROM (VALUES %s) AS v(id, day, ip, device_id, new_key, old_key, extra) "
            "WHERE t.sqs_message_id = v.id AND t.create_date = v.day::date "
            "AND t.mask_key_id = v.old_key"
        )


def _rekey_batch(
    connection, ring: KeyRing, size: int, report: RekeyReport, failed, statements: _Statements
) -> bool:
    """One batch in one transaction; False when no siv row is left under a retired key."""
    primary = ring.primary
    with connection.cursor() as cursor:
        cursor.execute(statements.batch, (ring.retired_ids(), SIV_LIKE, failed, size))
        found = cursor.fetchall()
        if not found:
            connection.rollback()
            return False
        updates = []
        for message_id, day, masked_ip, masked_device_id, key_id, extra in found:
            old = ring.get(key_id)
            assert old is not None, "the query selects rows under the ring's retired keys only"
            try:
                ip, device_id = old.unmask(masked_ip), old.unmask(masked_device_id)
            except CannotUnmask:
                failed.append(message_id)
                continue
            moved = {name: primary.siv_mask(value)
                     for name, value in decrypted_extra(old, extra).items()}  # fmt: skip
            updates.append(
                (
                    message_id,
                    day,
                    primary.siv_mask(ip),
                    primary.siv_mask(device_id),
                    primary.key_id,
                    key_id,
                    json.dumps(moved) if moved else None,
                )
            )
            report.by_key_id[key_id] = report.by_key_id.get(key_id, 0) + 1
        psycopg2.extras.execute_values(cursor, statements.update, updates, page_size=len(found))
    connection.commit()
    report.rekeyed += len(updates)
    report.batches += 1
    log.info(
        "rekey batch %d: %d rows",
        report.batches,
        len(updates),
        extra={"event": "rekey batch", "rows": len(updates), "total": report.rekeyed},
    )
    return True


def _count_the_rest(connection, ring: KeyRing, report: RekeyReport) -> None:
    """What is left off the primary key: per key id and mode (one pass over those rows)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT mask_key_id, masked_ip LIKE %s, count(*) FROM {schema.TABLE} "
            "WHERE mask_key_id IS DISTINCT FROM %s GROUP BY 1, 2",
            (SIV_LIKE, ring.primary.key_id),
        )
        groups = cursor.fetchall()
    connection.rollback()
    for key_id, siv, count in groups:
        if ring.get(key_id) is None:
            report.unknown_key += count
        elif not siv:
            report.not_rekeyable += count
        elif report.dry_run:
            report.rekeyed += count
            report.by_key_id[key_id] = count
        else:
            report.undecryptable += count
