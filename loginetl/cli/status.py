"""`loginetl status`: the queues, the stream and the table at a glance, changing
nothing."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from .. import config
from .. import status as checking
from ..config import Settings
from ..masking import MASK_KEY_ENV, key_ring_from_env
from ..stream.leases import RENEWAL_SECONDS
from . import render
from .app import command
from .common import (
    DatabaseUrl,
    DlqUrl,
    EndpointUrl,
    JsonOutput,
    QueueUrl,
    StreamName,
    finish,
    option,
    show,
    sources,
)


@command("status")
def status(
    ctx: typer.Context,
    queue_url: QueueUrl = config.DEFAULT_QUEUE_URL,
    stream: StreamName = None,
    dlq_url: DlqUrl = None,
    endpoint_url: EndpointUrl = None,
    database_url: DatabaseUrl = config.DEFAULT_DATABASE_URL,
    renewal: Annotated[
        float,
        option(
            "--renewal",
            "With --stream: how often the runs renew their leases; a lease not "
            "renewed for twice this looks wrong.",
            min=0.1,
            metavar="SECONDS",
        ),
    ] = RENEWAL_SECONDS,
    json: JsonOutput = False,
):
    """Show the queues and the table at a glance.

    It says what looks wrong, and changes nothing: it consumes no message (the reasons of
    the first few dead-lettered messages are peeked and made visible again at once). Exit 0
    unless a server cannot be reached. With --stream it shows each shard's state, lease and
    checkpoint, and the dead-letter queue (--dlq-url), not the source queue; a stale lease,
    or records waiting on a shard nobody reads, looks wrong.

    Examples:

    \b
        loginetl status
        loginetl status --json
        loginetl status --stream login-stream
    """
    settings = Settings(
        queue_url=queue_url,
        dlq_url=dlq_url,
        endpoint_url=endpoint_url,
        database_url=database_url,
        stream=stream,
        sources=sources(ctx),
    )
    ring = key_ring_from_env() if config.secret_configured(os.environ, MASK_KEY_ENV) else None
    report = checking.status(settings, ring, renewal)
    show(json, report.as_dict(), render.status_report(report))
    finish("; ".join(report.errors) or None, report.exit_code)
