"""`loginetl unmask` and `loginetl rekey`: what the recoverable (siv) mask mode allows."""

from __future__ import annotations

from typing import Annotated

from .. import config, privacy, render
from ..config import Settings
from ..masking import key_ring_from_env
from .app import command
from .common import DatabaseUrl, JsonOutput, option, show


@command("unmask")
def unmask(
    message_id: Annotated[
        str, option("--message-id", "The sqs_message_id of the row.", envvar=None)
    ],
    database_url: DatabaseUrl = config.DEFAULT_DATABASE_URL,
    json: JsonOutput = False,
):
    """Show the raw ip and device_id of a row masked in siv mode.

    Exit 1 for a one-way (hmac) row or a row under a key not in the ring. Every unmask is
    logged as an `unmask` event (message id and key id, never the values).

    Example:

    \b
        loginetl unmask --message-id 0e5b7d4e-8a53-4e1f-9f1c-2f6c9d41a7b2 --json
    """
    settings = Settings(database_url=database_url)
    result = privacy.unmask(settings, key_ring_from_env(), message_id)
    show(json, result.as_dict(), render.unmasked(result))


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
