"""`loginetl lookup` and `loginetl erase`: one person's rows, by ip, device_id or user_id."""

from __future__ import annotations

from typing import Annotated, Optional

from .. import config, privacy, render
from ..config import Settings
from ..masking import key_ring_from_env
from .app import command
from .common import DatabaseUrl, JsonOutput, option, show

# The value asked about is personal data: no env var (it would sit in .env), never echoed.
Ip = Annotated[Optional[str], option("--ip", "Rows masked from this IP address.", envvar=None)]
DeviceId = Annotated[
    Optional[str], option("--device-id", "Rows masked from this device id.", envvar=None)
]
UserId = Annotated[Optional[str], option("--user-id", "Rows of this user_id.", envvar=None)]


@command("lookup")
def lookup(
    ip: Ip = None,
    device_id: DeviceId = None,
    user_id: UserId = None,
    limit: Annotated[int, option("--limit", "Most rows to show.", min=1, envvar=None)] = 100,
    database_url: DatabaseUrl = config.DEFAULT_DATABASE_URL,
    json: JsonOutput = False,
):
    """Show one person's rows, newest first, masked as stored.

    Give exactly one of --ip, --device-id, --user-id. Rows under every key of the ring
    (LOGINETL_MASK_KEY, LOGINETL_OLD_MASK_KEYS), in either mask mode, are found through
    indexes. The value asked about is never logged.

    Examples:

    \b
        loginetl lookup --ip 199.172.111.135
        loginetl lookup --user-id 424cdd21-063a-43a7-b91b-7ca1a833afae --json
    """
    settings = Settings(database_url=database_url)
    person = privacy.Person(ip=ip, device_id=device_id, user_id=user_id)
    result = privacy.lookup(settings, key_ring_from_env(), person, limit)
    show(json, {"rows": result.rows} if not json else result.rows, render.lookup_rows(result))


@command("erase")
def erase(
    ip: Ip = None,
    device_id: DeviceId = None,
    user_id: UserId = None,
    yes: Annotated[bool, option("--yes", "Delete the rows (without it: only count).")] = False,
    database_url: DatabaseUrl = config.DEFAULT_DATABASE_URL,
    json: JsonOutput = False,
):
    """Delete one person's rows, for good.

    Replaying their messages does not bring them back. Without --yes it only counts. With
    --yes the rows go in one transaction, their message ids are kept in user_logins_erased
    (the loader skips them), and an `erase` event is logged with the count and key ids,
    never the value.

    Examples:

    \b
        loginetl erase --user-id 424cdd21-063a-43a7-b91b-7ca1a833afae
        loginetl erase --ip 203.0.113.7 --yes --json
    """
    settings = Settings(database_url=database_url)
    person = privacy.Person(ip=ip, device_id=device_id, user_id=user_id)
    result = privacy.erase(settings, key_ring_from_env(), person, yes)
    show(json, result.as_dict(), render.erase_result(result))
