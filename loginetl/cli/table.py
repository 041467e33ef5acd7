"""`loginetl init-db` and `loginetl prune`: create or upgrade the table, drop its old rows."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

from .. import config, database, render, retention, schema
from .app import command
from .common import DatabaseUrl, JsonOutput, option, show


class PartitionBy(str, Enum):
    month = "month"


@command("init-db")
def init_db(
    database_url: DatabaseUrl = config.DEFAULT_DATABASE_URL,
    partition_by: Annotated[
        Optional[PartitionBy],
        option(
            "--partition-by",
            "Create the table partitioned by month of create_date (new tables only).",
        ),
    ] = None,
    grant_to: Annotated[
        Optional[list[str]],
        option(
            "--grant-to",
            "Grant this existing role what run, peek, status and verify-masking need, and "
            "nothing more (repeatable).",
            metavar="ROLE",
        ),
    ] = None,
    json: JsonOutput = False,
):
    """Create or upgrade the user_logins table, keeping its rows.

    An existing table gets the columns and the unique index it lacks; nothing is dropped.
    Run it as the tables' owner; --grant-to lets the service run as a role that owns nothing.

    Examples:

    \b
        loginetl init-db
        loginetl init-db --json
        loginetl init-db --grant-to loginetl_writer
    """
    connection = database.connect(database_url)
    try:
        partitioning = partition_by.value if partition_by else None
        report = schema.init_db(connection, partitioning, grant_to or ())
    finally:
        connection.close()
    show(json, render.init_report_dict(report), render.init_report(report))


@command("prune")
def prune(
    older_than: Annotated[
        str,
        option(
            "--older-than",
            "Rows whose create_date is older than this: an age (90d, 12w) or a date (2026-01-31).",
            metavar="AGE",
        ),
    ],
    yes: Annotated[bool, option("--yes", "Delete them (without it, only count them).")] = False,
    database_url: DatabaseUrl = config.DEFAULT_DATABASE_URL,
    json: JsonOutput = False,
):
    """Delete the rows older than a cutoff.

    GDPR's storage limitation: personal data kept no longer than needed. Without --yes it
    only counts them. With it, rows go in short transactions of at most 5,000, and monthly
    partitions wholly before the cutoff are dropped at once; safe while run loads. Run it as
    the tables' owner.

    Examples:

    \b
        loginetl prune --older-than 90d
        loginetl prune --older-than 2026-01-01 --yes --json
    """
    cutoff = retention.cutoff_for(older_than)
    connection = database.connect(database_url)
    try:
        report = retention.prune(connection, cutoff, apply=yes)
    finally:
        connection.close()
    show(json, report.as_dict(), render.prune_report(report))
