"""`loginetl peek`: show what is on the queue or stream, consuming nothing."""

from __future__ import annotations

from typing import Annotated

import typer

from .. import config, envelopes
from .. import peek as peeking
from ..config import Settings
from ..masking import mask_key_from_env
from ..stream import inspect as stream_inspect
from . import render
from .app import command
from .common import (
    Accept,
    DatabaseUrl,
    EndpointUrl,
    JsonOutput,
    QueueUrl,
    StreamName,
    WaitTime,
    note_receive_count,
    option,
    show,
    sources,
    stdout,
)


@command("peek")
def peek(
    ctx: typer.Context,
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
    accept: Accept = [],  # noqa: B006 - Typer's list default, never mutated
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
        loginetl peek --stream login-stream --max-messages 5
    """
    settings = Settings(
        queue_url=queue_url,
        endpoint_url=endpoint_url,
        database_url=database_url,
        stream=stream,
        sources=sources(ctx),
    )
    key = None if show_pii else mask_key_from_env()
    if stream:
        result = stream_inspect.peek_stream(settings, key, max_messages, show_pii)
    else:
        rules = envelopes.parse_rules(accept)
        result = peeking.peek(settings, key, max_messages, show_pii, wait_time, rules)
    note_receive_count(result.max_receive_count)
    show(json, result.as_dict(), render.peek_table(result, stdout.width))
