"""`loginetl prune`: delete the rows older than a cutoff."""

from __future__ import annotations

from typing import Annotated

from .. import config, database, retention
from . import render
from .app import command
from .common import DatabaseUrl, JsonOutput, option, show


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
    settings = config.Settings(database_url=database_url)  # its password is a secret now
    connection = database.connect(settings.database_url)
    try:
        report = retention.prune(connection, cutoff, apply=yes)
    finally:
        connection.close()
    show(json, report.as_dict(), render.prune_report(report))
