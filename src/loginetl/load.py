"""PostgreSQL: create or upgrade `user_logins`, and insert rows idempotently.

Idempotency rests on the unique index over the SQS message id: a batch is inserted in one
transaction with ON CONFLICT DO NOTHING, so a message delivered again after its row was
committed is recognised as a duplicate and never loaded twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg2
import psycopg2.errors
import psycopg2.extras

from .config import database_location, redact
from .errors import ConfigError, DatabaseError
from .transform import LoginRow

TABLE = "user_logins"
MESSAGE_ID_INDEX = "user_logins_sqs_message_id_key"
INIT_LOCK = 0x6C6F67696E65746C  # advisory lock id ("loginetl") so concurrent init-db runs queue

# The table as loginetl creates it. The first seven columns are the take-home DDL's.
COLUMNS = {
    "user_id": "varchar(128)",
    "device_type": "varchar(32)",
    "masked_ip": "varchar(256)",
    "masked_device_id": "varchar(256)",
    "locale": "varchar(32)",
    "app_version": "varchar(32)",
    "create_date": "date",
    "sqs_message_id": "varchar(128)",
    "mask_key_id": "varchar(64)",
    "loaded_at": "timestamptz DEFAULT now()",
}
NOT_NULL = {
    "user_id", "device_type", "masked_ip", "masked_device_id", "app_version", "create_date",
    "sqs_message_id", "mask_key_id", "loaded_at",
}  # fmt: skip
INSERT_COLUMNS = (
    "user_id", "device_type", "masked_ip", "masked_device_id", "locale", "app_version",
    "create_date", "sqs_message_id", "mask_key_id",
)  # fmt: skip


@dataclass(frozen=True)
class TableInfo:
    columns: dict[str, str]  # name -> PostgreSQL data type
    has_message_id_index: bool

    @property
    def exists(self) -> bool:
        return bool(self.columns)

    @property
    def legacy_app_version(self) -> bool:
        """The take-home DDL typed app_version as integer: we store the major version there."""
        return self.columns.get("app_version") in ("integer", "bigint", "smallint")


@dataclass
class InitReport:
    location: str
    created: bool
    added_columns: list[str]
    created_index: bool
    columns: dict[str, str]
    row_count: int
    legacy_app_version: bool


@dataclass
class LoadResult:
    inserted: list[str] = field(default_factory=list)  # message ids of new rows
    duplicates: list[str] = field(default_factory=list)  # already in the table
    rejected: dict[str, str] = field(default_factory=dict)  # message id -> database's reason


def connect(database_url: str):
    location = database_location(database_url)
    try:
        connection = psycopg2.connect(
            database_url, connect_timeout=10, application_name="loginetl"
        )
    except psycopg2.OperationalError as error:
        raise DatabaseError(f"cannot connect to database {location}: {_first_line(error)}") from None
    except psycopg2.ProgrammingError as error:
        raise ConfigError(f"invalid database URL for {location}: {_first_line(error)}") from None
    return connection


@contextmanager
def database_errors(connection, action: str) -> Iterator[None]:
    """One line naming the database for anything PostgreSQL or the network throws."""
    try:
        yield
    except psycopg2.Error as error:
        _rollback_quietly(connection)
        location = _location_of(connection)
        raise DatabaseError(f"{action} on database {location}: {_first_line(error)}") from None


def describe(connection) -> TableInfo:
    with database_errors(connection, "cannot read the table definition"):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = %s",
                (TABLE,),
            )
            columns = dict(cursor.fetchall())
            cursor.execute(
                "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
                "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey) "
                "WHERE c.oid = to_regclass(%s) AND i.indisunique AND i.indnatts = 1 "
                "AND i.indpred IS NULL AND a.attname = 'sqs_message_id'",
                (TABLE,),
            )
            has_index = cursor.fetchone() is not None
        connection.rollback()
    return TableInfo(columns, has_index)


def require_ready(connection) -> TableInfo:
    """The table as `run` needs it, or a configuration error telling the operator to init-db."""
    info = describe(connection)
    if not info.exists:
        raise ConfigError(
            f"table {TABLE} does not exist on database {_location_of(connection)}: "
            "run `loginetl init-db` first"
        )
    missing = [name for name in COLUMNS if name not in info.columns]
    if missing or not info.has_message_id_index:
        what = f"columns {', '.join(missing)}" if missing else "the unique index on sqs_message_id"
        raise ConfigError(
            f"table {TABLE} on database {_location_of(connection)} lacks {what}: "
            "run `loginetl init-db` to upgrade it"
        )
    return info


def init_db(connection) -> InitReport:
    """Create user_logins, or add to an existing one what it lacks; never drops anything."""
    with database_errors(connection, f"cannot create or upgrade table {TABLE}"):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (INIT_LOCK,))
            before = _columns(cursor)
            created = not before
            if created:
                cursor.execute(_create_table_sql())
            added = [name for name in COLUMNS if before and name not in before]
            for name in added:
                cursor.execute(f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS {name} {COLUMNS[name]}")
            cursor.execute("SELECT to_regclass(%s) IS NULL", (MESSAGE_ID_INDEX,))
            index_missing = cursor.fetchone()[0]
            cursor.execute(
                f"CREATE UNIQUE INDEX IF NOT EXISTS {MESSAGE_ID_INDEX} ON {TABLE} (sqs_message_id)"
            )
            cursor.execute(f"SELECT count(*) FROM {TABLE}")
            row_count = cursor.fetchone()[0]
            columns = _columns(cursor)
        connection.commit()
    return InitReport(
        location=_location_of(connection),
        created=created,
        added_columns=added,
        created_index=index_missing,
        columns=columns,
        row_count=row_count,
        legacy_app_version=TableInfo(columns, True).legacy_app_version,
    )


def insert(connection, rows: Sequence[LoginRow], table: TableInfo) -> LoadResult:
    """Insert rows in one transaction and commit. A row PostgreSQL refuses (a constraint, a
    value the validator let through) is set aside with the database's reason and the rest
    still load."""
    result = LoadResult()
    values = []
    for row in rows:
        try:
            values.append(_values(row, table))
        except ValueError as error:
            result.rejected[row.message_id] = f"database: {error}"
    with database_errors(connection, f"cannot insert into {TABLE}"):
        try:
            inserted = _insert_values(connection, values)
        except (psycopg2.DataError, psycopg2.IntegrityError):
            connection.rollback()
            inserted = _insert_one_by_one(connection, values, result.rejected)
        connection.commit()
    result.inserted = inserted
    new = set(inserted)
    result.duplicates = [
        row_values[_MESSAGE_ID] for row_values in values
        if row_values[_MESSAGE_ID] not in new and row_values[_MESSAGE_ID] not in result.rejected
    ]  # fmt: skip
    return result


def major_version(app_version: str) -> int:
    match = re.match(r"\s*v?(\d{1,9})(?:[.\s]|$)", app_version)
    if not match:
        raise ValueError(f"app_version {app_version!r} has no major version for an integer column")
    return int(match.group(1))


def _values(row: LoginRow, table: TableInfo) -> tuple:
    app_version = major_version(row.app_version) if table.legacy_app_version else row.app_version
    return (
        row.user_id, row.device_type, row.masked_ip, row.masked_device_id, row.locale,
        app_version, row.create_date, row.message_id, row.mask_key_id,
    )  # fmt: skip


_MESSAGE_ID = INSERT_COLUMNS.index("sqs_message_id")
_INSERT_SQL = (
    f"INSERT INTO {TABLE} ({', '.join(INSERT_COLUMNS)}) VALUES %s "
    "ON CONFLICT (sqs_message_id) DO NOTHING RETURNING sqs_message_id"
)
_INSERT_ONE_SQL = _INSERT_SQL.replace("%s", "(" + ", ".join(["%s"] * len(INSERT_COLUMNS)) + ")")


def _insert_values(connection, values: list[tuple]) -> list[str]:
    if not values:
        return []
    with connection.cursor() as cursor:
        returned = psycopg2.extras.execute_values(
            cursor, _INSERT_SQL, values, page_size=len(values), fetch=True
        )
    return [message_id for (message_id,) in returned]


def _insert_one_by_one(connection, values: list[tuple], rejected: dict[str, str]) -> list[str]:
    """Each row under its own savepoint, so one refused row leaves the others in the batch."""
    inserted = []
    with connection.cursor() as cursor:
        for row_values in values:
            cursor.execute("SAVEPOINT one_row")
            try:
                cursor.execute(_INSERT_ONE_SQL, row_values)
                inserted += [message_id for (message_id,) in cursor.fetchall()]
                cursor.execute("RELEASE SAVEPOINT one_row")
            except (psycopg2.DataError, psycopg2.IntegrityError) as error:
                cursor.execute("ROLLBACK TO SAVEPOINT one_row")
                rejected[row_values[_MESSAGE_ID]] = f"database: {_first_line(error)}"
    return inserted


def _create_table_sql() -> str:
    columns = ",\n    ".join(
        f"{name} {definition}{' NOT NULL' if name in NOT_NULL else ''}"
        for name, definition in COLUMNS.items()
    )
    return f"CREATE TABLE {TABLE} (\n    {columns}\n)"


def _columns(cursor) -> dict[str, str]:
    cursor.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
        (TABLE,),
    )
    return dict(cursor.fetchall())


def _location_of(connection) -> str:
    info = connection.info
    return f"{info.host}:{info.port}/{info.dbname}"


def _rollback_quietly(connection) -> None:
    try:
        if not connection.closed:
            connection.rollback()
    except psycopg2.Error:
        pass


def _first_line(error: Exception) -> str:
    return redact(str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__)
