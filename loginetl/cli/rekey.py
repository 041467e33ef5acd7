"""`loginetl rekey`: move siv rows from retired keys to the primary key."""

from __future__ import annotations

from typing import Annotated

from .. import config, privacy
from ..config import Settings
from ..masking import key_ring_from_env
from . import render
from .app import command
from .common import DatabaseUrl, JsonOutput, option, show


@command("rekey")
def rekey(
    dry_run: Annotated[bool, option("--dry-run", "Only count what would be re-keyed.")] = False,
    batch_size: Annotated[
        int, option("--batch-size", "Rows per transaction.", min=1, envvar=None)
    ] = 1000,
    database_url: DatabaseUrl = config.DEFAULT_DATABASE_URL,
    json: JsonOutput = False,
):
    """Move siv rows from retired keys to the primary key.

    Batch by batch, one transaction each: safe while `run` loads, resumable after a crash,
    and a second run re-keys nothing. One-way (hmac) rows under retired keys cannot be
    re-keyed: they are counted as not_rekeyable.

    Examples:

    \b
        loginetl rekey --dry-run
        loginetl rekey --batch-size 500 --json
    """
    settings = Settings(database_url=database_url)
    report = privacy.rekey(settings, key_ring_from_env(), batch_size, dry_run)
    show(json, report.as_dict(), render.rekey_report(report))
