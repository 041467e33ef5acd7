"""The table: create `user_logins` or upgrade an existing one (never dropping anything), describe
it, check it is ready for `run`, and make the monthly partitions of a partitioned table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from psycopg2 import sql

from .database import database_errors, location_of
from .errors import ConfigError
from .kafka.offsets import CREATE_SQL as CREATE_OFFSETS_SQL
from .kafka.offsets import OFFSETS
from .stream.leases import CREATE_SQL as CREATE_SHARDS_SQL
from .stream.leases import SHARDS

TABLE = "user_logins"
MESSAGE_ID_INDEX = "user_logins_sqs_message_id_key"
# A table partitioned by create_date cannot have a unique index on sqs_message_id alone (every
# unique index must include the partition key), and (sqs_message_id, create_date) is not enough:
# a message replayed from the DLQ without create_date gets its new sent day. So message ids
# are kept unique in a table of their own, written in the same transaction as the rows.
LOADED_IDS = "user_logins_message_ids"
# Message ids whose rows were erased (`loginetl erase --yes`): the loader never loads them again,
# so replaying the same messages does not bring the rows back. Only ids, never a value.
ERASED_IDS = "user_logins_erased"
# What lookup, erase, unmask and rekey find rows by (b-tree, so equality and = ANY use them):
# index name -> column. A partitioned table also needs its own index on sqs_message_id (the
# unique one lives in LOADED_IDS, which holds no row).
LOOKUP_INDEXES = {
    "user_logins_user_id_idx": "user_id",
    "user_logins_masked_ip_idx": "masked_ip",
    "user_logins_masked_device_id_idx": "masked_device_id",
    "user_logins_mask_key_id_idx": "mask_key_id",
}
PARTITIONED_MESSAGE_ID_INDEX = "user_logins_sqs_message_id_idx"
INIT_LOCK = 0x6C6F67696E65746C  # advisory lock id ("loginetl") so concurrent init-db runs queue
# Creates a month's partition for the loader. SECURITY DEFINER: it runs with its owner's (the
# tables' owner's) rights, since only the owner of a partitioned table may add partitions, so
# a writer role that may only SELECT and INSERT can still load a row of a new month.
CREATE_PARTITION = "loginetl_create_partition"

# What `init-db --grant-to ROLE` grants on each table, and nothing else: what `run`, `peek`,
# `status` and `verify-masking` need (INSERT ... ON CONFLICT DO NOTHING RETURNING needs
# SELECT; the loader reads ERASED_IDS to skip erased messages). No UPDATE, DELETE, TRUNCATE,
# REFERENCES or TRIGGER on the rows; DROP and ALTER stay the owner's. `run --stream` moves its
# shards' leases and checkpoints (`run --topic` its partitions' offsets), so it may UPDATE
# (never DELETE) their table. `lookup` and `unmask` only read; `erase`, `rekey` and `prune`
# change rows and need the owner. One line per table; a table that does not exist (LOADED_IDS
# of an unpartitioned table) is skipped.
GRANTS: tuple[tuple[str, str], ...] = (
    (TABLE, "SELECT, INSERT"),
    (LOADED_IDS, "SELECT, INSERT"),
    (ERASED_IDS, "SELECT"),
    (SHARDS, "SELECT, INSERT, UPDATE"),
    (OFFSETS, "SELECT, INSERT, UPDATE"),
)

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
    "extra": "jsonb",
}
# The fields beyond a login's known seven, stored only by `run --keep-extra`: init-db adds the
# column, and a run that does not keep them needs a table without it no less than one with it.
EXTRA = "extra"
NOT_NULL = {
    "user_id",
    "device_type",
    "masked_ip",
    "masked_device_id",
    "app_version",
    "create_date",
    "sqs_message_id",
    "mask_key_id",
    "loaded_at",
}
INSERT_COLUMNS = (
    "user_id",
    "device_type",
    "masked_ip",
    "masked_device_id",
    "locale",
    "app_version",
    "create_date",
    "sqs_message_id",
    "mask_key_id",
)


@dataclass(frozen=True)
class TableInfo:
    columns: dict[str, str]  # name -> PostgreSQL data type
    has_message_id_index: bool
    partitioned: bool = False  # by month of create_date, ids kept unique in LOADED_IDS
    has_erased_ids: bool = False  # ERASED_IDS exists (made by init-db; erase needs it)

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
    partitioned: bool
    added_columns: list[str]
    created_index: bool
    columns: dict[str, str]
    row_count: int
    legacy_app_version: bool
    created_indexes: list[str] = field(default_factory=list)  # lookup indexes made this time
    granted_to: list[str] = field(default_factory=list)


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
            cursor.execute(
                "SELECT c.relkind = 'p', to_regclass(%s) IS NOT NULL "
                "AND to_regprocedure(%s) IS NOT NULL, to_regclass(%s) IS NOT NULL "
                "FROM pg_class c WHERE c.oid = to_regclass(%s)",
                (LOADED_IDS, f"{CREATE_PARTITION}(date)", ERASED_IDS, TABLE),
            )
            partitioned, has_loaded_ids, has_erased = cursor.fetchone() or (False, False, False)
        connection.rollback()
    if partitioned:  # the separate id table plays the unique index's part
        has_index = has_loaded_ids  # (and the partition maker is there)
    return TableInfo(columns, has_index, partitioned, has_erased)


EXTRA_NAMES = 20  # extra field names counted one by one; the rest only counted as names


def extra_names(cursor, scope: sql.Composable = sql.Identifier(TABLE)) -> dict:
    """The names of the extra fields the rows of `scope` keep, most common first: rows per
    name for the first EXTRA_NAMES, and how many names more. Names only: the values may be
    personal data."""
    column = sql.Identifier(EXTRA)
    cursor.execute(
        sql.SQL(
            "SELECT name, count(*) FROM {0}, jsonb_object_keys("
            "CASE WHEN jsonb_typeof({1}) = 'object' THEN {1} END) AS name "
            "GROUP BY 1 ORDER BY 2 DESC, 1"
        ).format(scope, column)
    )
    counted = cursor.fetchall()
    return {
        "fields": {str(name): count for name, count in counted[:EXTRA_NAMES]},
        "other_names": max(len(counted) - EXTRA_NAMES, 0),
    }


def require_ready(connection, keep_extra: bool = False) -> TableInfo:
    """The table as `run` needs it (with the `extra` column when extra fields are kept), or a
    configuration error telling the operator to init-db."""
    info = describe(connection)
    if not info.exists:
        raise ConfigError(
            f"table {TABLE} does not exist on database {location_of(connection)}: "
            "run `loginetl init-db` first"
        )
    needed = [name for name in COLUMNS if name != EXTRA or keep_extra]
    missing = [name for name in needed if name not in info.columns]
    if missing or not info.has_message_id_index:
        unique = (
            f"table {LOADED_IDS} or function {CREATE_PARTITION}"
            if info.partitioned
            else "the unique index on sqs_message_id"
        )
        what = f"columns {', '.join(missing)}" if missing else unique
        if missing == [EXTRA]:
            what = f"column {EXTRA}, where --keep-extra stores extra fields"
        raise ConfigError(
            f"table {TABLE} on database {location_of(connection)} lacks {what}: "
            "run `loginetl init-db` to upgrade it"
        )
    return info


def init_db(
    connection, partition_by: str | None = None, grant_to: Sequence[str] = ()
) -> InitReport:
    """Create user_logins, or add to an existing one what it lacks; never drops anything.
    `partition_by="month"` creates it partitioned on create_date (partitions are then made by
    the loader as months come); an existing table is never converted. Each role of `grant_to`
    (which must exist) gets exactly GRANTS, and the right to have the loader's partitions made.

    One transaction, under an advisory lock so that two init-db at once take turns; each step
    is idempotent, so running it again on a table it made changes nothing."""
    existing = describe(connection)
    _require_roles(connection, grant_to)
    partitioned = _partitioning(connection, existing, partition_by)
    with database_errors(connection, f"cannot create or upgrade table {TABLE}"):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (INIT_LOCK,))
            created, added = _create_or_upgrade_table(cursor, partitioned)
            created_index = _make_ids_unique(cursor, partitioned)
            created_indexes = _privacy_tables(cursor, partitioned)
            cursor.execute(CREATE_SHARDS_SQL)  # leases and checkpoints of `run --stream`
            cursor.execute(CREATE_OFFSETS_SQL)  # offsets and claims of `run --topic`
            if partitioned:
                _create_partition_maker(cursor)
            for role in grant_to:
                grant(cursor, role, partitioned)
            cursor.execute(f"SELECT count(*) FROM {TABLE}")
            row_count = cursor.fetchone()[0]
            columns = _columns(cursor)
        connection.commit()
    return InitReport(
        location=location_of(connection),
        created=created,
        partitioned=partitioned,
        added_columns=added,
        created_index=created_index,
        columns=columns,
        row_count=row_count,
        legacy_app_version=TableInfo(columns, True).legacy_app_version,
        created_indexes=created_indexes,
        granted_to=list(grant_to),
    )


def _partitioning(connection, existing: TableInfo, partition_by: str | None) -> bool:
    """Whether the table is (or is to be) partitioned; converting an existing one is refused."""
    if partition_by and existing.exists and not existing.partitioned:
        raise ConfigError(
            f"table {TABLE} on database {location_of(connection)} exists and is not "
            "partitioned: converting it is a migration to plan, not something init-db does"
        )
    return existing.partitioned or (bool(partition_by) and not existing.exists)


def _create_or_upgrade_table(cursor, partitioned: bool) -> tuple[bool, list[str]]:
    """Create the table, or add the columns it lacks: (created, the columns added)."""
    before = _columns(cursor)
    if not before:
        cursor.execute(create_table_sql(partitioned))
        return True, []
    added = [name for name in COLUMNS if name not in before]
    for name in added:
        cursor.execute(f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS {name} {COLUMNS[name]}")
    return False, added


def _make_ids_unique(cursor, partitioned: bool) -> bool:
    """What keeps each message id loaded once: the unique index, or for a partitioned table
    (whose unique indexes must include the partition key) the table of loaded ids. Whether it
    was missing."""
    unique = LOADED_IDS if partitioned else MESSAGE_ID_INDEX
    cursor.execute("SELECT to_regclass(%s) IS NULL", (unique,))
    missing = cursor.fetchone()[0]
    if partitioned:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {LOADED_IDS} (sqs_message_id varchar(128) PRIMARY KEY)"
        )
    else:
        cursor.execute(
            f"CREATE UNIQUE INDEX IF NOT EXISTS {MESSAGE_ID_INDEX} ON {TABLE} (sqs_message_id)"
        )
    return missing


def _create_partition_maker(cursor) -> None:
    """The function the loader calls to make a month's partition, in this schema, callable
    only by the roles granted it."""
    cursor.execute("SELECT current_schema()")
    here = sql.Identifier(cursor.fetchone()[0])
    cursor.execute(sql.SQL(CREATE_PARTITION_SQL).format(schema=here))
    cursor.execute(f"REVOKE ALL ON FUNCTION {CREATE_PARTITION}(date) FROM PUBLIC")


def _privacy_tables(cursor, partitioned: bool) -> list[str]:
    """The indexes lookup, erase, unmask and rekey use, and the table of erased message ids;
    returns the names of the indexes made now. On a partitioned table each index is made on
    every partition, present and future."""
    indexes = dict(LOOKUP_INDEXES)
    if partitioned:
        indexes[PARTITIONED_MESSAGE_ID_INDEX] = "sqs_message_id"
    cursor.execute(
        "SELECT name FROM unnest(%s::text[]) AS name WHERE to_regclass(name) IS NULL",
        (list(indexes),),
    )
    missing = [name for (name,) in cursor.fetchall()]
    for name in missing:
        cursor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {TABLE} ({indexes[name]})")
    cursor.execute(
        f"CREATE TABLE IF NOT EXISTS {ERASED_IDS} (sqs_message_id varchar(128) PRIMARY KEY, "
        "erased_at timestamptz NOT NULL DEFAULT now())"
    )
    return missing


def _require_roles(connection, roles: Sequence[str]) -> None:
    with database_errors(connection, "cannot read the roles"):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT name FROM unnest(%s::text[]) AS name "
                "WHERE name NOT IN (SELECT rolname FROM pg_roles)",
                (list(roles),),
            )
            missing = [name for (name,) in cursor.fetchall()]
        connection.rollback()
    if missing:
        raise ConfigError(
            f"--grant-to: role {', '.join(missing)} does not exist on database "
            f"{location_of(connection)} (create it first: CREATE ROLE ... LOGIN)"
        )


def grant(cursor, role: str, partitioned: bool) -> None:
    """Exactly GRANTS on each existing table (REVOKE ALL first, so a wider earlier grant goes),
    what connecting needs (CONNECT, TEMPORARY for the load's staging table, USAGE on the
    schema), and EXECUTE on the partition maker of a partitioned table."""
    who = sql.Identifier(role)
    cursor.execute(
        sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(
            sql.Identifier(connection_database(cursor)), who
        )
    )
    cursor.execute("SELECT current_schema()")
    cursor.execute(
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(cursor.fetchone()[0]), who)
    )
    for table, privileges in GRANTS:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (table,))
        if cursor.fetchone()[0]:
            name = sql.Identifier(table)
            cursor.execute(sql.SQL("REVOKE ALL ON TABLE {} FROM {}").format(name, who))
            cursor.execute(sql.SQL("GRANT " + privileges + " ON TABLE {} TO {}").format(name, who))
    if partitioned:
        cursor.execute(
            sql.SQL(f"GRANT EXECUTE ON FUNCTION {CREATE_PARTITION}(date) TO {{}}").format(who)
        )


def connection_database(cursor) -> str:
    cursor.execute("SELECT current_database()")
    return cursor.fetchone()[0]


# The partition maker (see CREATE_PARTITION). Its search_path is fixed to the table's schema
# then pg_temp, so no role can make it run objects of its own (PostgreSQL's advice for
# SECURITY DEFINER functions); the month is a date, so the name it builds is always well-formed.
CREATE_PARTITION_SQL = f"""
CREATE OR REPLACE FUNCTION {CREATE_PARTITION}(month date) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = {{schema}}, pg_temp
AS $$
DECLARE
    first date := date_trunc('month', month)::date;
BEGIN
    PERFORM pg_advisory_xact_lock({INIT_LOCK});
    EXECUTE format(
        'CREATE TABLE IF NOT EXISTS %I PARTITION OF {TABLE} FOR VALUES FROM (%L) TO (%L)',
        '{TABLE}_' || to_char(first, 'YYYY_MM'), first, (first + interval '1 month')::date
    );
END
$$
"""


def create_table_sql(partitioned: bool = False) -> str:
    columns = ",\n    ".join(
        f"{name} {definition}{' NOT NULL' if name in NOT_NULL else ''}"
        for name, definition in COLUMNS.items()
    )
    partitioning = " PARTITION BY RANGE (create_date)" if partitioned else ""
    return f"CREATE TABLE {TABLE} (\n    {columns}\n){partitioning}"


def partition_name(day: date) -> str:
    return f"{TABLE}_{day.year:04d}_{day.month:02d}"


def ensure_partitions(connection, days: set[date]) -> None:
    """Create the monthly partitions this batch needs, in a short transaction of their own
    (concurrent loaders queue on the advisory lock; IF NOT EXISTS makes the loser a no-op),
    through the partition maker init-db installs, so a writer role that owns nothing can too."""
    months = {day.replace(day=1) for day in days}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name FROM unnest(%s::text[]) AS name WHERE to_regclass(name) IS NULL",
            ([partition_name(month) for month in months],),
        )
        missing = {name for (name,) in cursor.fetchall()}
        if not missing:
            return
        for month in sorted(months):
            if partition_name(month) in missing:
                cursor.execute(f"SELECT {CREATE_PARTITION}(%s)", (month,))
    connection.commit()


def _columns(cursor) -> dict[str, str]:
    cursor.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
        (TABLE,),
    )
    return dict(cursor.fetchall())
