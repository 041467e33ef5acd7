"""`loginetl peek` and `loginetl status`: look at the queues and the table, changing nothing."""

from __future__ import annotations

import os
from typing import Annotated

from .. import config, render
from .. import peek as peeking
from .. import status as checking
from ..stream import inspect as stream_inspect
from ..stream.leases import RENEWAL_SECONDS
from ..config import Settings
from ..masking import MASK_KEY_ENV, key_ring_from_env, mask_key_from_env
from .app import command
from .common import (
    DatabaseUrl,
    DlqUrl,
    EndpointUrl,
    JsonOutput,
    QueueUrl,
    StreamName,
    WaitTime,
    finish,
    note_receive_count,
    option,
    show,
    stdout,
)


@command("peek")
def peek(
    queue_url: QueueUrl = config.DEFAULT_QUEUE_URL,
    stream: StreamName = None,
    endpoint_url: EndpointUrl = None,
    database_url: DatabaseUrl = config.DEFAULT_DATABASE_URL,
    max_messages: Annotated[
        int,
        option("--max-messages", "How many messages to show.", min=1, max=1000),
    ] = 10,
    show_pii: Annotated[
        bool,
        option("--show-pii", "Show ip and device_id as sent instead of masked."),
    ] = False,
    wait_time: WaitTime = 1,
    json: JsonOutput = False,
):
    """Show messages on the queue, and whether each would load.

    Nothing is consumed: each message is made visible again at once. Every receive counts
    towards the queue's maxReceiveCount, so peeking a message often enough moves it to the
    dead-letter queue. With --stream it shows the records after each shard's checkpoint (read
    from --database-url), which does not move.

    Examples:

    \b
        loginetl peek --max-messages 5
        loginetl peek --json
        loginetl peek --stream logins --max-messages 5
    """
    settings = Settings(
        queue_url=queue_url, endpoint_url=endpoint_url, database_url=database_url, stream=stream
    )
    key = None if show_pii else mask_key_from_env()
    if stream:
        result = stream_inspect.peek_stream(settings, key, max_messages, show_pii)
    else:
        result = peeking.peek(settings, key, max_messages, show_pii, wait_time)
    note_receive_count(result.max_receive_count)
    show(json, result.as_dict(), render.peek_table(result, stdout.width))


@command("status")
def status(
    queue_url: QueueUrl = config.DEFAULT_QUEUE_URL,
    stream: StreamName = None,
    dlq_url: DlqUrl = None,
    endpoint_url: EndpointUrl = None,
    database_url: DatabaseUrl = config.DEFAULT_DATABASE_URL,
    renewal: Annotated[
        float,
        option("--renewal", "With --stream: how often the runs renew their leases; a lease not "
               "renewed for twice this looks wrong.", min=0.1, metavar="SECONDS"),
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
        loginetl status --stream logins --dlq-url "$DLQ_URL"
    """
    settings = Settings(
        queue_url=queue_url, dlq_url=dlq_url, endpoint_url=endpoint_url, database_url=database_url,
        stream=stream,
    )  # fmt: skip
    ring = key_ring_from_env() if config.secret_configured(os.environ, MASK_KEY_ENV) else None
    report = checking.status(settings, ring, renewal)
    show(json, report.as_dict(), render.status_report(report))
    finish("; ".join(report.errors) or None, report.exit_code)
