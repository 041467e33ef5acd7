"""`loginetl erase`: delete one person's rows, for good."""

from __future__ import annotations

from typing import Annotated

from .. import config, privacy
from ..config import Settings
from ..masking import key_ring_from_env
from . import logs, render
from .app import command
from .common import DatabaseUrl, DeviceId, ExtraField, Ip, JsonOutput, UserId, conclude, option


@command("erase")
def erase(
    ip: Ip = None,
    device_id: DeviceId = None,
    user_id: UserId = None,
    extra: ExtraField = None,
    yes: Annotated[bool, option("--yes", "Delete the rows (without it: only count).")] = False,
    database_url: DatabaseUrl = config.DEFAULT_DATABASE_URL,
    json: JsonOutput = False,
):
    """Delete one person's rows, for good.

    Replaying their messages does not bring them back. Without --yes it only counts. With
    --yes the rows go in one transaction, their message ids are kept in user_logins_erased
    (the loader skips them), and an `erase` event is logged with the count and key ids,
    never the value. Rows masked under a key the ring lacks cannot be searched: they are
    counted, named by key id, and the exit code is 1.

    Examples:

    \b
        loginetl erase --user-id 424cdd21-063a-43a7-b91b-7ca1a833afae
        loginetl erase --ip 203.0.113.7 --yes --json
        loginetl erase --extra email=someone@example.com
    """
    settings = Settings(database_url=database_url)
    if yes:
        logs.audited()
    field = privacy.extra_field(extra) if extra is not None else None
    person = privacy.Person(ip=ip, device_id=device_id, user_id=user_id, extra=field)
    result = privacy.erase(settings, key_ring_from_env(), person, yes)
    conclude(json, result, render.erase_result(result))
