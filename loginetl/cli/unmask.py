"""`loginetl unmask`: the raw ip, device_id and siv-masked extra fields of a row in siv mode."""

from __future__ import annotations

from typing import Annotated

from .. import config, privacy
from ..config import Settings
from ..masking import key_ring_from_env
from . import logs, render
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

    Its extra fields stored as siv masks (LOGINETL_MASK_EXTRA, run --keep-extra) are shown
    too, each under its name. Exit 1 for a one-way (hmac) row or a row under a key not in
    the ring. Every unmask is logged as an `unmask` event (message id and key id, never the
    values).

    Example:

    \b
        loginetl unmask --message-id 0e5b7d4e-8a53-4e1f-9f1c-2f6c9d41a7b2 --json
    """
    settings = Settings(database_url=database_url)
    logs.audited()
    result = privacy.unmask(settings, key_ring_from_env(), message_id)
    show(json, result.as_dict(), render.unmasked(result))
