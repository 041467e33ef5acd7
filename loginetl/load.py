"""Loading rows: insert a batch into `user_logins` in one transaction, idempotently.

Idempotency rests on the unique index over the SQS message id: a batch is inserted with ON
CONFLICT DO NOTHING, so a message delivered again after its row was committed is recognised as
a duplicate and never loaded twice. A row PostgreSQL refuses is set aside with its reason
while the rest of the batch loads.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import psycopg2
import psycopg2.extras

from .database import database_errors, first_line
from .errors import DatabaseError
from .schema import (
    ERASED_IDS,
    EXTRA,
    INSERT_COLUMNS,
    LOADED_IDS,
    TABLE,
    TableInfo,
    ensure_partitions,
)
from .transform import LoginRow


@dataclass
class LoadResult:
    inserted: list[str] = field(default_factory=list)  # message ids of new rows
    duplicates: list[str] = field(default_factory=list)  # already in the table
    erased: list[str] = field(default_factory=list)  # loaded once, then erased: not loaded again
    rejected: dict[str, str] = field(default_factory=dict)  # message id -> database's reason


@dataclass
class Prepared:
    """A batch's rows as the insert sends them, made before its transaction (by another thread,
    while the batch before commits)."""

    values: list[tuple]
    rejected: dict[str, str]  # message id -> why its row cannot be sent
    create_dates: set
    copy_text: str | None  # a plain table's rows in COPY's text format
    statements: Statements  # the columns the values fill


def prepare(rows: Sequence[LoginRow], table: TableInfo) -> Prepared:
    statements = WITH_EXTRA if any(row.extra is not None for row in rows) else PLAIN
    values, rejected = [], {}
    for row in rows:
        try:
            values.append(_values(row, table, statements))
        except ValueError as error:
            rejected[row.message_id] = f"database: {error}"
    copy_text = None if table.partitioned else _copy_text(values)
    return Prepared(values, rejected, {row.create_date for row in rows}, copy_text, statements)


def insert(
    connection,
    rows: Sequence[LoginRow] | Prepared,
    table: TableInfo,
    before_commit: Callable[[object, LoadResult], None] | None = None,
) -> LoadResult:
    """Insert rows (or rows `prepare`d) in one transaction and commit. A row PostgreSQL refuses
    (a constraint, a value the validator let through) is set aside with the database's reason
    and the rest still load. `before_commit(connection, result)` runs in the same transaction
    just before COMMIT (a stream writes its checkpoint there); whatever it raises rolls
    everything back."""
    prepared = rows if isinstance(rows, Prepared) else prepare(rows, table)
    with database_errors(connection, f"cannot insert into {TABLE}"):
        for _ in range(RACED_ERASES):
            result = _insert_uncommitted(connection, prepared, table)
            if not (_erasable(table) and _erased_among(connection, result.inserted)):
                break
            # An erase committed while this insert waited on the rows it deleted: insert
            # again, in a new transaction whose snapshot skips what the erase recorded.
            connection.rollback()
        else:
            raise DatabaseError(f"inserting into {TABLE} kept racing erases: try again")
        if before_commit is not None:
            try:
                before_commit(connection, result)
            except BaseException:
                connection.rollback()
                raise
        connection.commit()
    return result


# How often a batch is inserted again because an erase committed while it waited. Once is all a
# race can cost (the erase's ids are skipped from then on); the bound only stops a loop.
RACED_ERASES = 3


def _insert_uncommitted(connection, prepared: Prepared, table: TableInfo) -> LoadResult:
    """The insert, up to (not including) its commit."""
    result = LoadResult(rejected=dict(prepared.rejected))
    values = prepared.values
    if table.partitioned:
        ensure_partitions(connection, prepared.create_dates)
    try:
        inserted = _insert_values(
            connection, values, table, prepared.statements, prepared.copy_text
        )
    except (psycopg2.DataError, psycopg2.IntegrityError):
        connection.rollback()
        inserted = _insert_one_by_one(
            connection, values, result.rejected, table, prepared.statements
        )
    new = set(inserted)
    skipped = [
        row_values[MESSAGE_ID]
        for row_values in values
        if row_values[MESSAGE_ID] not in new and row_values[MESSAGE_ID] not in result.rejected
    ]
    erased = _erased_among(connection, skipped) if table.has_erased_ids else set()
    result.inserted = inserted
    result.erased = [message_id for message_id in skipped if message_id in erased]
    result.duplicates = [message_id for message_id in skipped if message_id not in erased]
    return result


def _erasable(table: TableInfo) -> bool:
    """A plain table with erased ids: its inserts skip them, and check them again after
    inserting. The insert's `WHERE NOT EXISTS` reads a snapshot that cannot see an erase still
    open; but an open erase has deleted the row the insert would conflict with, so the insert
    waits on the unique index until the erase ends, and inserts only once it has committed.
    The check, a new statement with a new snapshot (READ COMMITTED), sees that commit. (A
    partitioned table needs neither: an erase leaves its ids claimed in LOADED_IDS, so any
    later load, even one racing the erase, finds the claim taken.)"""
    return table.has_erased_ids and not table.partitioned


def _erased_among(connection, message_ids: list[str]) -> set[str]:
    """Which of these messages were erased: of those not inserted, rather than merely loaded
    before; of those inserted, by an erase that committed while the insert waited."""
    if not message_ids:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT sqs_message_id FROM {ERASED_IDS} WHERE sqs_message_id = ANY(%s)",
            (message_ids,),
        )
        return {message_id for (message_id,) in cursor.fetchall()}


def major_version(app_version: str) -> int:
    match = re.match(r"\s*v?(\d{1,9})(?:[.\s]|$)", app_version)
    if not match:
        raise ValueError(f"app_version {app_version!r} has no major version for an integer column")
    return int(match.group(1))


def _values(row: LoginRow, table: TableInfo, statements: Statements) -> tuple:
    app_version = major_version(row.app_version) if table.legacy_app_version else row.app_version
    common = (
        row.user_id,
        row.device_type,
        row.masked_ip,
        row.masked_device_id,
        row.locale,
        app_version,
        row.create_date,
        row.message_id,
        row.mask_key_id,
    )
    return (*common, row.extra) if statements is WITH_EXTRA else common


MESSAGE_ID = INSERT_COLUMNS.index("sqs_message_id")
STAGE = "loginetl_stage"


@dataclass(frozen=True)
class Statements:
    """The SQL of an insert into these columns: INSERT_COLUMNS, and `extra` after them when a
    batch keeps extra fields (a batch that keeps none names only the columns every table has)."""

    columns: tuple[str, ...]

    @property
    def column_list(self) -> str:
        return ", ".join(self.columns)

    @property
    def insert_claimed(self) -> str:
        """Partitioned: the ids were claimed in LOADED_IDS just before, so every row is new."""
        return f"INSERT INTO {TABLE} ({self.column_list}) VALUES %s RETURNING sqs_message_id"

    @property
    def copy(self) -> str:
        return f"COPY {STAGE} ({self.column_list}) FROM STDIN"

    @property
    def insert_staged(self) -> str:
        return (
            f"INSERT INTO {TABLE} ({self.column_list}) SELECT {self.column_list} FROM {STAGE} "
            "ON CONFLICT (sqs_message_id) DO NOTHING RETURNING sqs_message_id"
        )

    @property
    def insert_staged_unerased(self) -> str:
        """The same, skipping erased message ids (a partitioned table needs no such clause: an
        erased message keeps its id in LOADED_IDS, so its claim finds it taken)."""
        return self.insert_staged.replace(
            " ON CONFLICT",
            f" WHERE NOT EXISTS (SELECT 1 FROM {ERASED_IDS} e "
            f"WHERE e.sqs_message_id = {STAGE}.sqs_message_id) ON CONFLICT",
        )


PLAIN, WITH_EXTRA = Statements(INSERT_COLUMNS), Statements((*INSERT_COLUMNS, EXTRA))
# Plain tables: COPY the batch into a session-local staging table, then one INSERT ... SELECT
# ... ON CONFLICT: faster than one multi-row INSERT of the batch (docs/performance.md).
# One round trip: the staging table made if this session has none, emptied of what an earlier
# row-by-row try in this transaction left. (Round trips matter beyond the network: each one
# gives up the GIL, and getting it back from busy threads may take a whole switch interval.)
# The staging table is LIKE the table, so it has `extra` whenever the table has.
_CREATE_STAGE_SQL = (
    f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} (LIKE {TABLE} INCLUDING DEFAULTS) "
    f"ON COMMIT DELETE ROWS; DELETE FROM {STAGE}"
)
_CLAIM_IDS_SQL = (
    f"INSERT INTO {LOADED_IDS} (sqs_message_id) VALUES %s "
    "ON CONFLICT DO NOTHING RETURNING sqs_message_id"
)


def _insert_values(
    connection,
    values: list[tuple],
    table: TableInfo,
    statements: Statements,
    copy_text: str | None = None,
) -> list[str]:
    """Insert the rows not loaded (nor erased) before; returns the message ids of those
    inserted. `copy_text`: the values in COPY's text format, when already made."""
    if not values:
        return []
    with connection.cursor() as cursor:
        if not table.partitioned:
            text = _copy_text(values) if copy_text is None else copy_text
            cursor.execute(_CREATE_STAGE_SQL)
            cursor.copy_expert(statements.copy, io.StringIO(text), size=max(8192, len(text)))
            cursor.execute(
                statements.insert_staged_unerased if _erasable(table) else statements.insert_staged
            )
            return [message_id for (message_id,) in cursor.fetchall()]
        # Partitioned: claim the ids first; only rows whose id was new go in.
        new = psycopg2.extras.execute_values(
            cursor, _CLAIM_IDS_SQL, [(v[MESSAGE_ID],) for v in values], fetch=True
        )
        new_ids = {message_id for (message_id,) in new}
        values = [v for v in values if v[MESSAGE_ID] in new_ids]
        if not values:
            return []
        returned = psycopg2.extras.execute_values(
            cursor, statements.insert_claimed, values, page_size=len(values), fetch=True
        )
    return [message_id for (message_id,) in returned]


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


_NEEDS_ESCAPE = re.compile(r"[\\\n\r]")


def _copy_text(values: list[tuple]) -> str:
    """Rows in COPY's text format: tab-separated, \\N for NULL, backslash escapes (a message id
    from a message attribute is the sender's text, so nothing is assumed about it). A row whose
    joined text has no tab but the separators and no backslash or line break needs none (the
    common case, told by two scans in C instead of one translate per value)."""
    lines = []
    for row in values:
        texts = ["" if v is None else str(v) for v in row]
        line = "\t".join(texts)
        if line.count("\t") != len(row) - 1 or _NEEDS_ESCAPE.search(line):
            texts = [text.translate(_COPY_ESCAPES) for text in texts]
        elif None not in row:
            lines.append(line)
            continue
        lines.append(
            "\t".join(["\\N" if v is None else t for v, t in zip(row, texts, strict=True)])
        )
    lines.append("")
    return "\n".join(lines)


def _insert_one_by_one(
    connection,
    values: list[tuple],
    rejected: dict[str, str],
    table: TableInfo,
    statements: Statements,
) -> list[str]:
    """Each row under its own savepoint, so one refused row leaves the others in the batch."""
    inserted = []
    with connection.cursor() as cursor:
        for row_values in values:
            cursor.execute("SAVEPOINT one_row")
            try:
                inserted += _insert_values(connection, [row_values], table, statements)
                cursor.execute("RELEASE SAVEPOINT one_row")
            except (psycopg2.DataError, psycopg2.IntegrityError) as error:
                cursor.execute("ROLLBACK TO SAVEPOINT one_row")
                rejected[row_values[MESSAGE_ID]] = f"database: {first_line(error)}"
    return inserted
