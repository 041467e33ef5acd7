"""Retention: delete rows older than a cutoff, as GDPR's storage limitation asks.

Rows go in batches of bounded size, each its own short transaction, so a long prune never holds
one huge transaction (nor its locks) while `run` keeps loading. A monthly partition lying
entirely before the cutoff is dropped whole instead, after locking the parent table (the order
the loader locks in, so the two never deadlock; the loader waits for the drop to commit).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from psycopg2 import sql

from .database import database_errors, location_of
from .errors import ConfigError
from .schema import TABLE, describe

log = logging.getLogger(__name__)

BATCH_ROWS = 5000  # rows deleted per transaction
LOCK_TIMEOUT = "10s"  # a drop that cannot get its lock gives up rather than stall the loader
_BOUNDS = re.compile(r"FOR VALUES FROM \('([\d-]+)'\) TO \('([\d-]+)'\)")


@dataclass
class PruneReport:
    location: str
    cutoff: date  # rows whose create_date is before this day
    matched: int
    deleted: int = 0
    batches: int = 0  # delete transactions
    partitions_dropped: list[str] = field(default_factory=list)
    applied: bool = False  # False: counted only (no --yes)

    def as_dict(self) -> dict:
        counted: dict[str, Any] = {"database": self.location, "cutoff": self.cutoff.isoformat()}
        counted |= {"matched": self.matched}
        if not self.applied:
            return counted
        return counted | {
            "deleted": self.deleted,
            "partitions_dropped": len(self.partitions_dropped),
            "dropped": self.partitions_dropped,
            "batches": self.batches,
        }


def cutoff_for(age: str, today: date | None = None) -> date:
    """`90d`, `12w` (before today, UTC) or an ISO date: the first day kept."""
    today = today or datetime.now(UTC).date()
    match = re.fullmatch(r"\s*(\d{1,6})\s*([dw])\s*", age)
    if match:
        days = int(match.group(1)) * (7 if match.group(2) == "w" else 1)
        return today - timedelta(days=days)
    try:
        return date.fromisoformat(age.strip())
    except ValueError:
        raise ConfigError(
            f"--older-than {age!r}: expected an age as 90d or 12w, or a date as 2026-01-31"
        ) from None


def prune(connection, cutoff: date, apply: bool, batch_rows: int = BATCH_ROWS) -> PruneReport:
    """Count the rows before `cutoff`; with `apply`, delete them (and drop whole partitions)."""
    info = describe(connection)
    location = location_of(connection)
    if not info.exists:
        raise ConfigError(f"table {TABLE} does not exist on database {location}: nothing to prune")
    with database_errors(connection, f"cannot prune {TABLE}"):
        report = PruneReport(location, cutoff, _count(connection, TABLE, cutoff), applied=apply)
        if apply:
            targets = [TABLE]
            if info.partitioned:
                old, targets = _split_partitions(connection, cutoff)
                for partition in old:
                    report.deleted += _drop(connection, partition)
                    report.partitions_dropped.append(partition)
            for target in targets:
                _delete_in_batches(connection, target, cutoff, batch_rows, report)
    log.info(
        f"pruned {TABLE} before {cutoff}" if apply else f"counted rows before {cutoff}",
        extra={"event": "prune"} | report.as_dict(),
    )
    return report


def _count(connection, relation: str, cutoff: date) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE create_date < %s").format(
                sql.Identifier(relation)
            ),
            (cutoff,),
        )
        count = cursor.fetchone()[0]
    connection.rollback()
    return count


def _split_partitions(connection, cutoff: date) -> tuple[list[str], list[str]]:
    """(partitions entirely before the cutoff, the others: those may hold some old rows)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(%s) "
            "ORDER BY 1",
            (TABLE,),
        )
        partitions = cursor.fetchall()
    connection.rollback()
    old: list[str] = []
    others: list[str] = []
    for name, bounds in partitions:
        match = _BOUNDS.search(bounds or "")
        entirely_old = match and date.fromisoformat(match.group(2)) <= cutoff
        (old if entirely_old else others).append(name)
    return old, others


def _drop(connection, partition: str) -> int:
    """Drop one partition in a transaction of its own; returns the rows it held."""
    with connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        cursor.execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")
        cursor.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(partition)))
        rows = cursor.fetchone()[0]
        cursor.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(partition)))
    connection.commit()
    return rows


def _delete_in_batches(connection, relation: str, cutoff: date, batch_rows: int, report) -> None:
    """DELETE at most `batch_rows` rows per transaction until none is left before the cutoff."""
    statement = sql.SQL(
        "DELETE FROM {0} WHERE ctid IN (SELECT ctid FROM {0} WHERE create_date < %s LIMIT %s)"
    ).format(sql.Identifier(relation))
    while True:
        with connection.cursor() as cursor:
            cursor.execute(statement, (cutoff, batch_rows))
            deleted = cursor.rowcount
        connection.commit()
        if not deleted:
            return
        report.deleted += deleted
        report.batches += 1
