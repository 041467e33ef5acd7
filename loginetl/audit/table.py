"""The table side of verify-masking: which columns to audit, which rows (all, or a sample), one
SQL pass that counts every table check, and the stored rows of given raw messages."""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg2 import sql

from .. import schema, transform
from ..errors import ConfigError
from ..masking import SIV, SIV_PREFIX, CannotUnmask, KeyRing, mode_of
from .raw import RawLogin

MASK_COLUMNS = ("masked_ip", "masked_device_id")
EXTRA = sql.Identifier(schema.EXTRA)
# HMAC-SHA256 as lowercase hex, or "siv:" + unpadded URL-safe base64 of at least the 16-byte tag
MASK_SHAPE = "^([0-9a-f]{64}|siv:[A-Za-z0-9_-]{22,})$"
# What raw personal data looks like, as PostgreSQL regular expressions (matched with ~*).
_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_HEX = "[0-9a-f]{1,4}"
PII_PATTERNS = {
    "IPv4": rf"(^|[^0-9.]){_OCTET}(\.{_OCTET}){{3}}($|[^0-9.])",
    # Eight groups, or compressed with ::. Not "12:34:56", not "Foo::Bar".
    "IPv6": (
        rf"(^|[^0-9a-z:])({_HEX}:){{7}}{_HEX}($|[^0-9a-z:])"
        rf"|(^|[^0-9a-z:])({_HEX}:){{1,7}}(:{_HEX}){{1,7}}($|[^0-9a-z:])"
        rf"|(^|[^0-9a-z:])::({_HEX}:){{0,6}}{_HEX}($|[^0-9a-z:.])"
        rf"|(^|[^0-9a-z:])({_HEX}:){{1,7}}:($|[^0-9a-z:])"
    ),
    "device id": r"(^|[^0-9])[0-9]{3}-[0-9]{2}-[0-9]{4}($|[^0-9])",
}
TEXT_TYPES = ("character varying", "character", "text", "json", "jsonb")
SAMPLE_OVERDRAW = 2  # sample twice the rows asked for, then LIMIT: reltuples is an estimate


@dataclass(frozen=True)
class StoredRow:
    sqs_message_id: str | None
    user_id: str
    masked_ip: str | None
    masked_device_id: str | None
    mask_key_id: str | None
    # The fields of LOGINETL_MASK_EXTRA its `extra` holds (not null) -> their text as stored
    extra: dict[str, str] = field(default_factory=dict)


def audited_columns(connection, location: str) -> dict[str, str]:
    info = schema.describe(connection)
    if not info.exists:
        raise ConfigError(f"table {schema.TABLE} does not exist on database {location}")
    missing = [name for name in ("user_id", *MASK_COLUMNS) if name not in info.columns]
    if missing:
        raise ConfigError(
            f"table {schema.TABLE} on database {location} has no column {', '.join(missing)}"
        )
    return info.columns


def scope(cursor, sample: int | None) -> tuple[sql.Composable, str | None]:
    """The rows to check: the table, or about `sample` rows drawn at random across it.

    TABLESAMPLE BERNOULLI keeps each row with a probability sized from the planner's row
    estimate (drawn twice over), then LIMIT cuts to `sample`: unlike a bare LIMIT, which reads
    the oldest rows first, a recent regression shows in the sample."""
    table = sql.Identifier(schema.TABLE)
    if sample is None:
        return table, None
    cursor.execute(
        "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)", (schema.TABLE,)
    )
    estimate = cursor.fetchone()[0]
    if estimate <= 0:  # never analysed: count
        cursor.execute(sql.SQL("SELECT count(*) FROM {}").format(table))
        estimate = cursor.fetchone()[0]
    percent = 100.0 * SAMPLE_OVERDRAW * sample / max(estimate, 1)
    if percent >= 100:
        scope = sql.SQL("(SELECT * FROM {} LIMIT {}) AS sampled").format(table, sql.Literal(sample))
        return scope, f"up to {sample} rows (LIMIT {sample}; the table has about {estimate})"
    scope = sql.SQL("(SELECT * FROM {} TABLESAMPLE BERNOULLI ({}) LIMIT {}) AS sampled").format(
        table, sql.Literal(round(percent, 6)), sql.Literal(sample)
    )
    return scope, f"up to {sample} rows (TABLESAMPLE BERNOULLI ({percent:.4g}%) LIMIT {sample})"


def scan_table(
    cursor,
    columns: dict[str, str],
    scope: sql.Composable,
    ring: KeyRing,
    mask_extra: frozenset[str] = frozenset(),
) -> dict:
    """Every table check in one pass: named counts (and, when nothing is named to be masked in
    a table that keeps extra fields, which names the rows keep)."""
    key_id = ring.primary.key_id
    text_columns = [name for name, kind in columns.items() if kind in TEXT_TYPES]
    aggregates: dict[str, sql.Composable] = {"rows": sql.SQL("count(*)")}
    for column in MASK_COLUMNS:
        aggregates[f"bad_shape {column}"] = _count_where(
            sql.SQL("{0} IS NULL OR {0} !~ {1}").format(
                sql.Identifier(column), sql.Literal(MASK_SHAPE)
            )
        )
    any_pii = []
    for column in text_columns:
        for kind, pattern in PII_PATTERNS.items():
            condition = sql.SQL("{}::text ~* {}").format(
                sql.Identifier(column), sql.Literal(pattern)
            )
            aggregates[f"pii {column} {kind}"] = _count_where(condition)
            any_pii.append(condition)
    aggregates["pii rows"] = _count_where(sql.SQL(" OR ").join(any_pii))
    if schema.EXTRA in columns:
        aggregates |= _extra_aggregates(mask_extra)
    if "mask_key_id" in columns:
        other = sql.SQL("mask_key_id IS DISTINCT FROM {}").format(sql.Literal(key_id))
        aggregates["other key rows"] = _count_where(other)
        aggregates["other key ids"] = sql.SQL(
            "count(DISTINCT mask_key_id) FILTER (WHERE {})"
        ).format(other)
        aggregates["other key example"] = sql.SQL("min(mask_key_id) FILTER (WHERE {})").format(
            other
        )
        aggregates["unknown key rows"] = _count_where(
            sql.SQL("mask_key_id IS NULL OR mask_key_id <> ALL({})").format(
                sql.Literal([key.key_id for key in ring.keys])
            )
        )
    query = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(aggregates.values()), scope)
    cursor.execute(query)
    scan = dict(zip(aggregates, cursor.fetchone(), strict=True))
    scan["text columns"] = text_columns
    if "mask_key_id" in columns:  # rows per key id, each the primary, retired or unknown
        cursor.execute(sql.SQL("SELECT mask_key_id, count(*) FROM {} GROUP BY 1").format(scope))
        scan["key ids"] = {
            str(key_id): {"rows": count, "status": ring.status_of(key_id)}
            for key_id, count in cursor.fetchall()
        }
    if schema.EXTRA in columns and not mask_extra and scan["extra rows"]:
        scan["extra names"] = schema.extra_names(cursor, scope)
    return scan


def _extra_aggregates(mask_extra: frozenset[str]) -> dict[str, sql.Composable]:
    """Rows keeping extra fields, and per field named to be masked the rows where it is held
    (not null) but is no mask: not a JSON string of MASK_SHAPE (a number as long as a mask is
    not one either)."""
    aggregates = {"extra rows": _count_where(sql.SQL("{} IS NOT NULL").format(EXTRA))}
    unmasked = []
    for name in sorted(mask_extra):
        value = sql.SQL("{} -> {}").format(EXTRA, sql.Literal(name))
        text = sql.SQL("{} ->> {}").format(EXTRA, sql.Literal(name))
        condition = sql.SQL("(jsonb_typeof({}) NOT IN ('null', 'string') OR {} !~ {})").format(
            value, text, sql.Literal(MASK_SHAPE)
        )
        aggregates[f"unmasked extra {name}"] = _count_where(condition)
        unmasked.append(condition)
    if unmasked:
        aggregates["unmasked extra rows"] = _count_where(sql.SQL(" OR ").join(unmasked))
    return aggregates


def _count_where(condition: sql.Composable) -> sql.Composable:
    return sql.SQL("count(*) FILTER (WHERE {})").format(condition)


def rows_of(
    cursor, columns: dict[str, str], logins: list[RawLogin], mask_extra: frozenset[str]
) -> list[StoredRow]:
    """The rows the raw messages may have become: by message id when known, else by user_id."""

    def column(name: str) -> sql.Composable:
        return sql.Identifier(name) if name in columns else sql.SQL("NULL::text")

    ids = [login.message_id for login in logins if login.message_id]
    users = sorted({login.login.user_id for login in logins})
    query = sql.SQL(
        "SELECT {}::text, user_id::text, masked_ip::text, masked_device_id::text, {}::text, "
        "{}::text FROM {} WHERE {}::text = ANY(%s) OR user_id::text = ANY(%s)"
    ).format(
        column("sqs_message_id"),
        column("mask_key_id"),
        column(schema.EXTRA) if mask_extra else sql.SQL("NULL"),
        sql.Identifier(schema.TABLE),
        column("sqs_message_id"),
    )
    cursor.execute(query, (ids, users))
    return [
        StoredRow(message_id, user_id, ip, device_id, key_id, _named_extra(extra, mask_extra))
        for message_id, user_id, ip, device_id, key_id, extra in cursor.fetchall()
    ]


def _named_extra(stored: str | None, mask_extra: frozenset[str]) -> dict[str, str]:
    """The named fields of a stored `extra` (not null), each as the text its mask is compared
    with: `run` stores a mask as a JSON string, and any other value is no mask."""
    if stored is None:
        return {}
    try:
        return transform.texts_to_mask(transform.parse_body(stored), mask_extra)
    except (transform.InvalidMessage, RecursionError):  # not an object, or nested too deeply
        return {}


def siv_scan(
    connection, scope: sql.Composable, ring: KeyRing, extra: frozenset[str] = frozenset()
) -> dict:
    """Every siv mask in scope, decrypted under the key its row names (streamed, never kept):
    how many rows hold one, how many are under a key not in the ring, how many do not decrypt
    (or decrypt to something that is no IP address, for masked_ip). `extra`: the fields of
    LOGINETL_MASK_EXTRA, when the table has the column; their siv masks must decrypt as well,
    under the same key (a row's key id names the key of all its masks)."""
    counts = {"rows": 0, "unknown_key": 0, "undecryptable": 0}
    like = sql.Literal(SIV_PREFIX + "%")
    named = [sql.SQL("{} ->> {}").format(EXTRA, sql.Literal(name)) for name in sorted(extra)]
    query = sql.SQL("SELECT {} FROM {} WHERE {}").format(
        sql.SQL(", ").join([sql.SQL("masked_ip, masked_device_id, mask_key_id"), *named]),
        scope,
        sql.SQL(" OR ").join(
            sql.SQL("{} LIKE {}").format(value, like)
            for value in [sql.Identifier("masked_ip"), sql.Identifier("masked_device_id"), *named]
        ),
    )
    with connection.cursor(name="loginetl_siv_scan") as cursor:
        cursor.itersize = 5000
        cursor.execute(query)
        for masked_ip, masked_device_id, key_id, *extra_masks in cursor:
            counts["rows"] += 1
            key = ring.get(key_id)
            if key is None:
                counts["unknown_key"] += 1
                continue
            try:
                if SIV in (mode_of(masked_ip), mode_of(masked_device_id)):
                    ip = key.unmask(masked_ip)
                    key.unmask(masked_device_id)
                    if transform.canonical_ip(ip) != ip:
                        raise ValueError
                for mask in extra_masks:
                    if mode_of(mask) == SIV:
                        key.unmask(mask)
            except (CannotUnmask, ValueError):
                counts["undecryptable"] += 1
    return counts
