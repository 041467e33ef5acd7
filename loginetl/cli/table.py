"""`loginetl init-db`: create or upgrade the table."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

from .. import config, database, render, schema
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
    json: JsonOutput = False,
):
    """Create or upgrade the user_logins table, keeping its rows.

    An existing table gets the columns and the unique index it lacks; nothing is dropped.

    Examples:

    \b
        loginetl init-db
        loginetl init-db --json
    """
    connection = database.connect(database_url)
    try:
        report = schema.init_db(connection, partition_by.value if partition_by else None)
    finally:
        connection.close()
    show(json, render.init_report_dict(report), render.init_report(report))
