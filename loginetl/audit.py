"""verify-masking: audit user_logins, check by check, for personal data stored unmasked or
masked in a way that can be undone.

Checks on the table alone (one SQL pass over every row, or a sample): masks are well formed,
no column holds something shaped like an IP address or a device id, and which key ids the
rows were masked under. Checks against raw messages (from a file, or peeked off the queue):
each message found in the table carries the masks the current key gives, and no stored mask
is an unkeyed digest or the base64 of a raw value. The audit only reads: its transaction is
read-only.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from psycopg2 import sql

from . import extract, load, transform
from .config import Settings
from .errors import ConfigError
from .masking import MaskKey

PASS, FAIL, WARN, SKIP = "pass", "fail", "warn", "skip"
MASK_COLUMNS = ("masked_ip", "masked_device_id")
MASK_SHAPE = "^[0-9a-f]{64}$"  # HMAC-SHA256 as lowercase hex
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
DIGESTS = ("md5", "sha1", "sha256", "sha512")
SAMPLE_OVERDRAW = 2  # sample twice the rows asked for, then LIMIT: reltuples is an estimate


@dataclass(frozen=True)
class AuditOptions:
    sample: int | None = None  # rows to check; None: every row
    from_queue: int | None = None  # raw messages to peek off the queue
    from_file: str | None = None  # JSON array or JSON lines of raw messages
    strict_key: bool = False  # rows under another key id fail rather than warn
    wait_time: int = 1


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # pass, fail, warn (reported, not a failure) or skip (could not be checked)
    checked: int  # rows (or raw messages) looked at
    failing: int  # of those, how many break the rule
    detail: str  # one line; never a raw value
    breakdown: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "status": self.status,
            "passed": self.status != FAIL,
            "checked": self.checked,
            "failing": self.failing,
            "detail": self.detail,
            "breakdown": self.breakdown,
        }


@dataclass
class AuditReport:
    location: str
    key_id: str
    rows: int  # rows the table checks looked at
    sample: str | None  # how they were sampled; None: every row
    raw_messages: dict[str, int]  # given, not loadable, compared
    checks: list[Check]
    max_receive_count: int | None = None  # when messages were peeked: each peek is a receive

    @property
    def failed(self) -> list[Check]:
        return [check for check in self.checks if check.status == FAIL]

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def as_dict(self) -> dict:
        return {
            "database": self.location,
            "key_id": self.key_id,
            "rows": self.rows,
            "sample": self.sample,
            "raw_messages": self.raw_messages,
            "passed": not self.failed,
            "failed_checks": [check.name for check in self.failed],
            "checks": [check.as_dict() for check in self.checks],
            "exit_code": self.exit_code,
        }


@dataclass(frozen=True)
class RawMessage:
    body: str
    message_id: str | None = None  # the id it would be loaded under, when known


@dataclass(frozen=True)
class RawLogin:
    message_id: str | None
    login: transform.Login
    values: dict[str, set[str]]  # "ip" / "device_id" -> every spelling to look for


@dataclass(frozen=True)
class _StoredRow:
    sqs_message_id: str | None
    user_id: str
    masked_ip: str | None
    masked_device_id: str | None
    mask_key_id: str | None


def verify_masking(settings: Settings, key: MaskKey, options: AuditOptions) -> AuditReport:
    raw: list[RawMessage] = []
    if options.from_file:
        raw += read_raw_file(options.from_file)
    max_receive_count = None
    if options.from_queue:
        peeked, max_receive_count = peek_raw(settings, options.from_queue, options.wait_time)
        raw += peeked
    logins = [login for login in map(raw_login, raw) if login is not None]

    connection = load.connect(settings.database_url)
    try:
        connection.set_session(readonly=True)
        with load.database_errors(connection, f"cannot audit {load.TABLE}"):
            columns = _audited_columns(connection, settings.database_location)
            with connection.cursor() as cursor:
                scope, sample = _scope(cursor, options.sample)
                scan = _scan(cursor, columns, scope, key.key_id)
                stored = _rows_of(cursor, columns, logins) if logins else []
            connection.rollback()
    finally:
        connection.close()

    checks = [
        *(_mask_shape_check(column, scan) for column in MASK_COLUMNS),
        _pii_check(scan),
        _key_id_check(scan, columns, key, options.strict_key),
        _key_match_check(logins, stored, key, bool(raw)),
        _reversible_check(logins, stored, bool(raw)),
    ]
    return AuditReport(
        location=settings.database_location,
        key_id=key.key_id,
        rows=scan["rows"],
        sample=sample,
        raw_messages={
            "given": len(raw),
            "not_loadable": len(raw) - len(logins),
            "compared": len(logins),
        },
        checks=checks,
        max_receive_count=max_receive_count,
    )


# Raw messages -------------------------------------------------------------------------------


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


def peek_raw(settings: Settings, count: int, wait_time: int) -> tuple[list[RawMessage], int | None]:
    """Up to `count` messages off the queue, all made visible again, as `peek` does."""
    sqs = extract.sqs_client(settings)
    limit = extract.max_receive_count(sqs, settings.queue_url)
    messages = extract.peek(sqs, settings.queue_url, count, wait_time)
    return [RawMessage(message.body, message.origin_id) for message in messages], limit


def raw_login(raw: RawMessage) -> RawLogin | None:
    """The login `run` would load from this message, with every spelling of its personal data
    a careless loader might have stored; None when `run` would refuse the message."""
    try:
        login = transform.validate(raw.body)
    except transform.InvalidMessage:
        return None
    sent_ip = transform.parse_body(raw.body).get("ip")
    ips = {login.ip} | ({sent_ip} if isinstance(sent_ip, str) else set())
    return RawLogin(raw.message_id, login, {"ip": ips, "device_id": {login.device_id}})


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


# The table ----------------------------------------------------------------------------------


def _audited_columns(connection, location: str) -> dict[str, str]:
    info = load.describe(connection)
    if not info.exists:
        raise ConfigError(f"table {load.TABLE} does not exist on database {location}")
    missing = [name for name in ("user_id", *MASK_COLUMNS) if name not in info.columns]
    if missing:
        raise ConfigError(
            f"table {load.TABLE} on database {location} has no column {', '.join(missing)}"
        )
    return info.columns


def _scope(cursor, sample: int | None) -> tuple[sql.Composable, str | None]:
    """The rows to check: the table, or about `sample` rows drawn at random across it.

    TABLESAMPLE BERNOULLI keeps each row with a probability sized from the planner's row
    estimate (drawn twice over), then LIMIT cuts to `sample`: unlike a bare LIMIT, which reads
    the oldest rows first, a recent regression shows in the sample."""
    table = sql.Identifier(load.TABLE)
    if sample is None:
        return table, None
    cursor.execute(
        "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)", (load.TABLE,)
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


def _scan(cursor, columns: dict[str, str], scope: sql.Composable, key_id: str) -> dict:
    """Every table check in one pass: named counts."""
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
    if "mask_key_id" in columns:
        other = sql.SQL("mask_key_id IS DISTINCT FROM {}").format(sql.Literal(key_id))
        aggregates["other key rows"] = _count_where(other)
        aggregates["other key ids"] = sql.SQL(
            "count(DISTINCT mask_key_id) FILTER (WHERE {})"
        ).format(other)
        aggregates["other key example"] = sql.SQL("min(mask_key_id) FILTER (WHERE {})").format(
            other
        )
    query = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(aggregates.values()), scope)
    cursor.execute(query)
    scan = dict(zip(aggregates, cursor.fetchone()))
    scan["text columns"] = text_columns
    return scan


def _count_where(condition: sql.Composable) -> sql.Composable:
    return sql.SQL("count(*) FILTER (WHERE {})").format(condition)


def _rows_of(cursor, columns: dict[str, str], logins: list[RawLogin]) -> list[_StoredRow]:
    """The rows the raw messages may have become: by message id when known, else by user_id."""

    def column(name: str) -> sql.Composable:
        return sql.Identifier(name) if name in columns else sql.SQL("NULL::text")

    ids = [login.message_id for login in logins if login.message_id]
    users = sorted({login.login.user_id for login in logins})
    query = sql.SQL(
        "SELECT {}::text, user_id::text, masked_ip::text, masked_device_id::text, {}::text "
        "FROM {} WHERE {}::text = ANY(%s) OR user_id::text = ANY(%s)"
    ).format(
        column("sqs_message_id"), column("mask_key_id"), sql.Identifier(load.TABLE),
        column("sqs_message_id"),
    )  # fmt: skip
    cursor.execute(query, (ids, users))
    return [_StoredRow(*row) for row in cursor.fetchall()]


# Checks -------------------------------------------------------------------------------------


def _mask_shape_check(column: str, scan: dict) -> Check:
    rows, bad = scan["rows"], scan[f"bad_shape {column}"]
    if bad:
        detail = f"{bad} of {rows} rows are not 64 lowercase hex characters (HMAC-SHA256)"
    else:
        detail = f"all {rows} rows are 64 lowercase hex characters"
    return Check(f"{column} well-formed", FAIL if bad else PASS, rows, bad, detail)


def _pii_check(scan: dict) -> Check:
    rows, bad = scan["rows"], scan["pii rows"]
    breakdown: dict[str, dict[str, int]] = {}
    for column in scan["text columns"]:
        for kind in PII_PATTERNS:
            found = scan[f"pii {column} {kind}"]
            if found:
                breakdown.setdefault(column, {})[kind] = found
    kinds = ", ".join(PII_PATTERNS)
    if bad:
        where = "; ".join(
            f"{column}: " + ", ".join(f"{kind} ×{n}" for kind, n in found.items())
            for column, found in breakdown.items()
        )
        detail = f"{bad} of {rows} rows hold what looks like raw personal data ({where})"
    else:
        detail = f"no {kinds} in {len(scan['text columns'])} text columns of {rows} rows"
    return Check("no raw PII in any column", FAIL if bad else PASS, rows, bad, detail, breakdown)


def _key_id_check(scan: dict, columns: dict[str, str], key: MaskKey, strict: bool) -> Check:
    name = "rows under the current key id"
    if "mask_key_id" not in columns:
        return Check(name, SKIP, 0, 0, "the table has no mask_key_id column (run init-db)")
    rows, other = scan["rows"], scan["other key rows"]
    if not other:
        return Check(name, PASS, rows, 0, f"all {rows} rows masked under key id {key.key_id}")
    example, ids = scan["other key example"], scan["other key ids"]
    detail = (
        f"{other} of {rows} rows masked under {ids} other key id{'' if ids == 1 else 's'} "
        f"(e.g. {example or 'none recorded'}), not the current {key.key_id}: "
        "their masks do not match masks made now" + ("" if strict else " (fails with --strict-key)")
    )
    return Check(
        name,
        FAIL if strict else WARN,
        rows,
        other,
        detail,
        {"other_key_ids": scan["other key ids"]},
    )


def _key_match_check(
    logins: list[RawLogin], stored: list[_StoredRow], key: MaskKey, given: bool
) -> Check:
    """Each raw message found in the table: are its stored masks the ones the current key gives?

    Found by message id when known (from the queue, or an SQS-shaped file), where the row is
    that message: different masks under the current key id fail. Otherwise found by user_id,
    where the user's rows may be other logins: one row with both masks is a match, none is not
    evidence by itself. But if not one message found matches, the key is wrong, or the masks
    were not made with it."""
    name = "masks match the current key"
    if not given:
        return Check(name, SKIP, 0, 0, "no raw messages to compare (--from-file, --from-queue)")
    by_id = {row.sqs_message_id: row for row in stored if row.sqs_message_id}
    by_user: dict[str, list[_StoredRow]] = {}
    for row in stored:
        by_user.setdefault(row.user_id, []).append(row)
    counts = {"match": 0, "other_key": 0, "mismatch": 0, "unmatched_by_user": 0, "not_loaded": 0}
    for raw in logins:
        masks = (key.mask(raw.login.ip), key.mask(raw.login.device_id))
        exact = raw.message_id is not None and raw.message_id in by_id
        candidates = [by_id[raw.message_id]] if exact else by_user.get(raw.login.user_id, [])
        if not candidates:
            counts["not_loaded"] += 1
        elif any((row.masked_ip, row.masked_device_id) == masks for row in candidates):
            counts["match"] += 1
        elif all(row.mask_key_id != key.key_id for row in candidates):
            counts["other_key"] += 1
        elif exact:
            counts["mismatch"] += 1
        else:
            counts["unmatched_by_user"] += 1
    found = len(logins) - counts["not_loaded"]
    summary = (
        f"{counts['match']} of {found} found match; {counts['other_key']} under another key id; "
        f"{counts['unmatched_by_user']} found by user_id only, without equal masks; "
        f"{counts['not_loaded']} not in the table"
    )
    if found == 0:
        return Check(
            name,
            SKIP,
            len(logins),
            0,
            f"none of the {len(logins)} valid raw messages is in the table",
            counts,
        )
    if counts["mismatch"]:
        detail = (
            f"{counts['mismatch']} rows claim the current key id {key.key_id} but hold other masks "
            f"than it gives (non-deterministic or mislabelled masking); {summary}"
        )
        return Check(name, FAIL, found, counts["mismatch"], detail, counts)
    if counts["match"] == 0:
        detail = (
            f"wrong key: none of the {found} raw messages found in the table has the masks the "
            f"current key (id {key.key_id}) gives; {summary}"
        )
        return Check(name, FAIL, found, found, detail, counts)
    return Check(name, PASS, found, 0, summary, counts)


def _reversible_check(logins: list[RawLogin], stored: list[_StoredRow], given: bool) -> Check:
    """No stored mask is an unkeyed digest (MD5, SHA-1, SHA-256, SHA-512: hex or base64) or the
    base64 of a raw value: anyone could compute those from the value, no key needed."""
    name = "no unkeyed hash or base64 of raw values"
    if not given:
        return Check(name, SKIP, 0, 0, "no raw messages to compare (--from-file, --from-queue)")
    forms: dict[str, str] = {}
    for raw in logins:
        for field_name, values in raw.values.items():
            for value in values:
                forms |= unkeyed_forms(value, field_name)
    breakdown: dict[str, int] = {}
    bad = 0
    for row in stored:
        found = [
            f"{column} = {forms[value]}"
            for column, value in (
                ("masked_ip", row.masked_ip),
                ("masked_device_id", row.masked_device_id),
            )
            if value in forms
        ]
        bad += bool(found)
        for what in found:
            breakdown[what] = breakdown.get(what, 0) + 1
    if bad:
        kinds = ", ".join(f"{what} ×{n}" for what, n in breakdown.items())
        detail = (
            f"{bad} of {len(stored)} rows of the raw messages' users masked reversibly: {kinds}"
        )
    else:
        detail = (
            f"none of {len(stored)} rows of the raw messages' users holds an unkeyed hash or base64"
        )
    return Check(name, FAIL if bad else PASS, len(stored), bad, detail, breakdown)
