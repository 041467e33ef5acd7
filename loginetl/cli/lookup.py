"""`loginetl lookup`: one person's rows, by ip, device_id, user_id or an extra field."""

from __future__ import annotations

from typing import Annotated

from .. import config, privacy
from ..config import Settings
from ..masking import key_ring_from_env
from . import render
from .app import command
from .common import DatabaseUrl, DeviceId, ExtraField, Ip, JsonOutput, UserId, option, show, warn


@command("lookup")
def lookup(
    ip: Ip = None,
    device_id: DeviceId = None,
    user_id: UserId = None,
    extra: ExtraField = None,
    limit: Annotated[int, option("--limit", "Most rows to show.", min=1, envvar=None)] = 100,
    database_url: DatabaseUrl = config.DEFAULT_DATABASE_URL,
    json: JsonOutput = False,
):
    """Show one person's rows, newest first, masked as stored.

    Give exactly one of --ip, --device-id, --user-id, --extra. Rows under every key of the
    ring (LOGINETL_MASK_KEY, LOGINETL_OLD_MASK_KEYS), in either mask mode, are found:
    through indexes, except by --extra, which reads the whole table unless you made a GIN
    index on extra. Rows under a key the ring lacks cannot be searched: a warning counts
    them by key id. The value asked about is never logged.

    Examples:

    \b
        loginetl lookup --ip 199.172.111.135
        loginetl lookup --user-id 424cdd21-063a-43a7-b91b-7ca1a833afae --json
        loginetl lookup --extra email=someone@example.com
    """
    settings = Settings(database_url=database_url)
    field = privacy.extra_field(extra) if extra is not None else None
    person = privacy.Person(ip=ip, device_id=device_id, user_id=user_id, extra=field)
    result = privacy.lookup(settings, key_ring_from_env(), person, limit)
    show(json, {"rows": result.rows} if not json else result.rows, render.lookup_rows(result))
    if message := result.unsearched.message():
        warn(message)
