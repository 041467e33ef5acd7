"""`loginetl init-db`: create or upgrade the table, keeping its rows."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

from .. import config, database, schema
from . import render
from .app import command
from .common import DatabaseUrl, JsonOutput, option, show


class PartitionBy(str, Enum):
    month = "month"


@command("init-db")
def init_db(
    database_url: DatabaseUrl = config.DEFAULT_DATABASE_URL,
    partition_by: Annotated[
        PartitionBy | None,
        option(
            "--partition-by",
            "Create the table partitioned by month of create_date (new tables only).",
        ),
    ] = None,
    grant_to: Annotated[
        list[str] | None,
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
    settings = config.Settings(database_url=database_url)  # its password is a secret now
    connection = database.connect(settings.database_url)
    try:
        partitioning = partition_by.value if partition_by else None
        report = schema.init_db(connection, partitioning, grant_to or ())
    finally:
        connection.close()
    show(json, render.init_report_dict(report), render.init_report(report))
