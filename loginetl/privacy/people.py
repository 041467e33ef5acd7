"""lookup and erase: one person's rows, found by ip, device_id, user_id or an extra field.

The value asked about is personal data: it is never logged nor put in an error. An ip, a
device_id or an extra field's value is found by its masks under every key of the ring, in both
modes (so rows masked under a retired key, or in the other mode, are found too); the b-tree
indexes of schema.LOOKUP_INDEXES on masked_ip, masked_device_id and user_id make those an index
scan, never a scan of the table. Extra fields have no index of ours (`run --keep-extra` would pay
for it on every row): they are matched by JSONB containment, which a GIN index on `extra`, where
an operator makes one, serves.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import psycopg2.extras

from .. import database, schema, transform
from ..config import Settings
from ..errors import EXIT_FAILED, EXIT_OK, ConfigError
from ..masking import KeyRing
from ..results import plain

log = logging.getLogger(__name__)
ORDER = "create_date DESC, loaded_at DESC, sqs_message_id"  # newest first


@dataclass(frozen=True)
class Person:
    """Exactly one of the four: what the request names the person by."""

    ip: str | None = None
    device_id: str | None = None
    user_id: str | None = None
    extra: tuple[str, str] | None = None  # (name, value) of a field `run --keep-extra` stored

    def condition(self, ring: KeyRing) -> tuple[str, tuple]:
        """The WHERE clause and its parameters."""
        given = [name for name in ("ip", "device_id", "user_id", "extra") if getattr(self, name)]
        if len(given) != 1:
            raise ConfigError("give exactly one of --ip, --device-id, --user-id, --extra")
        if self.extra:
            return _extra_condition(*self.extra, ring)
        if self.user_id:
            return "user_id = %s", (self.user_id,)
        if self.device_id:
            return "masked_device_id = ANY(%s)", (ring.masks(self.device_id),)
        try:
            ip = transform.canonical_ip(self.ip or "")
        except ValueError:
            raise ConfigError("--ip is not an IPv4 or IPv6 address") from None
        return "masked_ip = ANY(%s)", (ring.masks(ip),)


def extra_field(text: str) -> tuple[str, str]:
    """`--extra NAME=VALUE` as (name, value); the value may hold "=" but is never shown."""
    name, equals, value = text.partition("=")
    name = name.strip()
    if not equals or not name:
        raise ConfigError("--extra takes NAME=VALUE, e.g. --extra email=someone@example.com")
    if name in transform.KNOWN_FIELDS:
        use = f"; use --{name.replace('_', '-')}" if name in ("ip", "device_id", "user_id") else ""
        raise ConfigError(f"--extra names a field beyond the known seven, not {name}{use}")
    return name, value


def _extra_condition(name: str, value: str, ring: KeyRing) -> tuple[str, tuple]:
    """Rows whose extra field `name` holds `value` masked under any key of the ring, in either
    mode, or as it is (a field not named in LOGINETL_MASK_EXTRA is stored as sent). One
    containment test each, so a GIN index on `extra` can serve every one."""
    documents = [json.dumps({name: text}) for text in (*ring.masks(value), value)]
    tests = " OR ".join(["extra @> %s::jsonb"] * len(documents))
    return f"({tests})", tuple(documents)


NO_KEY_ID = "(none)"  # how a row loaded before rows recorded their key id is named


@dataclass
class Unsearched:
    """Rows that could be the person's but were not searched: masked under a key id the ring
    lacks (or under none recorded), so no mask of the value asked about can match them."""

    key_ids: dict[str, int] = field(default_factory=dict)  # key id -> rows

    @property
    def rows(self) -> int:
        return sum(self.key_ids.values())

    def as_dict(self) -> dict:
        return {"rows": self.rows, "key_ids": self.key_ids}

    def message(self) -> str | None:
        """One line saying what was not searched and why, naming key ids, never a key."""
        if not self.rows:
            return None
        return (
            f"{self.rows} rows under key ids {', '.join(self.key_ids)} not in the key ring "
            "(LOGINETL_MASK_KEY, LOGINETL_OLD_MASK_KEYS) could not be searched: the person's "
            "rows may be among them; add those keys to LOGINETL_OLD_MASK_KEYS and ask again"
        )


@dataclass
class LookupResult:
    location: str
    rows: list[dict]  # as stored, newest first; dates as ISO text
    limit: int
    unsearched: Unsearched = field(default_factory=Unsearched)

    def as_dict(self) -> dict:
        return plain(self)


@dataclass
class EraseResult:
    location: str
    matched: int
    deleted: int | None = None  # None: counted only (no --yes)
    key_ids: dict[str, int] = field(default_factory=dict)  # of the deleted rows
    unsearched: Unsearched = field(default_factory=Unsearched)

    def as_dict(self) -> dict:
        data: dict[str, Any] = {"matched": self.matched}
        if self.deleted is not None:
            data |= {"deleted": self.deleted, "key_ids": self.key_ids}
        if self.unsearched.rows:
            data["unsearched"] = self.unsearched.as_dict()
        return data

    @property
    def error(self) -> str | None:
        """A count or an erase that could not search every row is not done: a script must
        never read "deleted 0" as the person erased."""
        return self.unsearched.message()

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if self.unsearched.rows else EXIT_OK


def lookup(settings: Settings, ring: KeyRing, person: Person, limit: int) -> LookupResult:
    where, parameters = person.condition(ring)
    connection, _ = ready_connection(settings, by_extra=person.extra is not None)
    try:
        connection.set_session(readonly=True)
        with database.database_errors(connection, f"cannot look up rows of {schema.TABLE}"):
            with connection.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cursor:
                cursor.execute(
                    f"SELECT * FROM {schema.TABLE} WHERE {where} ORDER BY {ORDER} LIMIT %s",
                    (*parameters, limit),
                )
                rows = [_plain_row(row) for row in cursor.fetchall()]
            with connection.cursor() as cursor:
                unsearched = _unsearched(cursor, person, ring, where, parameters)
            connection.rollback()
    finally:
        connection.close()
    return LookupResult(settings.database_location, rows, limit, unsearched)


def erase(settings: Settings, ring: KeyRing, person: Person, confirm: bool) -> EraseResult:
    """Count the person's rows; with `confirm`, delete them and record their message ids in
    schema.ERASED_IDS, in one transaction, so the loader never loads those messages again."""
    where, parameters = person.condition(ring)
    connection, _ = ready_connection(settings, erasing=confirm, by_extra=person.extra is not None)
    try:
        with database.database_errors(connection, f"cannot erase rows of {schema.TABLE}"):
            with connection.cursor() as cursor:
                unsearched = _unsearched(cursor, person, ring, where, parameters)
                if not confirm:
                    cursor.execute(f"SELECT count(*) FROM {schema.TABLE} WHERE {where}", parameters)
                    connection.rollback()
                    matched = cursor.fetchone()[0]
                    return EraseResult(settings.database_location, matched, unsearched=unsearched)
                cursor.execute(
                    f"DELETE FROM {schema.TABLE} WHERE {where} "
                    "RETURNING sqs_message_id, mask_key_id",
                    parameters,
                )
                deleted = cursor.fetchall()
                cursor.execute(
                    f"INSERT INTO {schema.ERASED_IDS} (sqs_message_id) "
                    "SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING",
                    ([message_id for message_id, _ in deleted],),
                )
            connection.commit()
    finally:
        connection.close()
    key_ids: dict[str, int] = {}
    for _, key_id in deleted:
        key_ids[key_id] = key_ids.get(key_id, 0) + 1
    log.info(
        "erase: deleted %d rows (key ids %s)",
        len(deleted),
        ", ".join(key_ids) or "none",
        extra={"event": "erase", "deleted": len(deleted), "key_ids": key_ids},
    )
    return EraseResult(settings.database_location, len(deleted), len(deleted), key_ids, unsearched)


# The distinct key ids of the table, one probe of the mask_key_id index each (a loose index
# scan): the rows under the ring's keys are never read, however many there are.
_KEY_IDS_SQL = f"""
WITH RECURSIVE ids AS (
    (SELECT mask_key_id FROM {schema.TABLE} WHERE mask_key_id IS NOT NULL
     ORDER BY mask_key_id LIMIT 1)
    UNION ALL
    SELECT (SELECT mask_key_id FROM {schema.TABLE} WHERE mask_key_id > ids.mask_key_id
            ORDER BY mask_key_id LIMIT 1)
    FROM ids WHERE ids.mask_key_id IS NOT NULL
)
SELECT mask_key_id FROM ids WHERE mask_key_id IS NOT NULL
UNION ALL
SELECT NULL WHERE EXISTS (SELECT 1 FROM {schema.TABLE} WHERE mask_key_id IS NULL)
"""


def _unsearched(cursor, person: Person, ring: KeyRing, where: str, parameters: tuple):
    """The rows under key ids the ring lacks that the search could not tell apart, counted by
    key id. A user_id is stored as sent, so nothing is hidden from a search by it; an extra
    field, only in rows that hold it and did not match as sent."""
    if person.user_id:
        return Unsearched()
    cursor.execute(_KEY_IDS_SQL)
    ours = {key.key_id for key in ring.keys}
    lacking = [key_id for (key_id,) in cursor.fetchall() if key_id not in ours]
    if not lacking:
        return Unsearched()
    named = [key_id for key_id in lacking if key_id is not None]
    condition = "(mask_key_id = ANY(%s)" + (" OR mask_key_id IS NULL)" if None in lacking else ")")
    arguments: tuple = (named,)
    if person.extra:
        condition += f" AND extra ? %s AND NOT {where}"
        arguments += (person.extra[0], *parameters)
    cursor.execute(
        f"SELECT mask_key_id, count(*) FROM {schema.TABLE} WHERE {condition} GROUP BY 1 "
        "ORDER BY 1 NULLS LAST",
        arguments,
    )
    return Unsearched({key_id or NO_KEY_ID: count for key_id, count in cursor.fetchall()})


def ready_connection(
    settings: Settings, erasing: bool = False, by_extra: bool = False
) -> tuple[Any, schema.TableInfo]:
    """A connection to a database whose table has what these commands need (the `extra` column
    when a person is named by an extra field), and the table as it found it."""
    connection = database.connect(settings.database_url)
    try:
        info = schema.require_ready(connection, keep_extra=by_extra)
        if erasing and not info.has_erased_ids:
            raise ConfigError(
                f"table {schema.ERASED_IDS} does not exist on database "
                f"{settings.database_location}: run `loginetl init-db` to upgrade"
            )
    except BaseException:
        connection.close()
        raise
    return connection, info


def _plain_row(row: dict) -> dict:
    return {
        name: value.isoformat() if hasattr(value, "isoformat") else value
        for name, value in row.items()
    }
