"""`loginetl peek`: look at the queue without consuming it."""

from __future__ import annotations

from typing import Annotated

from .. import config, render
from .. import peek as peeking
from ..config import Settings
from ..masking import mask_key_from_env
from .app import command
from .common import EndpointUrl, JsonOutput, QueueUrl, WaitTime, note_receive_count, option, show


@command("peek")
def peek(
    queue_url: QueueUrl = config.DEFAULT_QUEUE_URL,
    endpoint_url: EndpointUrl = None,
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
    """Show messages on the queue without consuming them, and whether each would load.

    Every receive counts towards the queue's maxReceiveCount: peeking a message often enough
    moves it to the dead-letter queue.

    Example:

        loginetl peek --max-messages 5
    """
    settings = Settings(queue_url=queue_url, endpoint_url=endpoint_url)
    key = None if show_pii else mask_key_from_env()
    result = peeking.peek(settings, key, max_messages, show_pii, wait_time)
    note_receive_count(result.max_receive_count)
    show(json, result.as_dict(), render.peek_table(result))
