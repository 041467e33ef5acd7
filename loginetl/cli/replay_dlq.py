"""`loginetl replay-dlq`: move dead-lettered messages back to be loaded."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from .. import config, replay
from ..masking import MASK_KEY_ENV, mask_key_from_env
from . import render
from .app import command
from .common import (
    DlqUrl,
    EndpointUrl,
    JsonOutput,
    MaybeQueueUrl,
    WaitTime,
    conclude,
    option,
    sources,
    stdout,
)


@command("replay-dlq")
def replay_dlq(
    ctx: typer.Context,
    queue_url: MaybeQueueUrl = None,
    dlq_url: DlqUrl = None,
    to_queue: Annotated[
        str | None,
        option(
            "--to-queue",
            "Send every message here (default: --queue-url; without it, the queue each "
            "message was dead-lettered from, or the one queue whose RedrivePolicy names the DLQ).",
        ),
    ] = None,
    to_stream: Annotated[
        str | None,
        option(
            "--to-stream",
            "Put every message back on this Kinesis stream instead (for `run --stream`).",
            metavar="NAME",
        ),
    ] = None,
    endpoint_url: EndpointUrl = None,
    max_messages: Annotated[
        int | None,
        option("--max-messages", "Move at most this many (default: all).", min=1),
    ] = None,
    rate: Annotated[
        int,
        option("--rate", "Messages per second, at most 500.", min=1, max=replay.MAX_RATE),
    ] = replay.MAX_RATE,
    reason: Annotated[
        str | None,
        option(
            "--reason",
            "Move only messages whose recorded reason contains TEXT (any case); messages "
            f"SQS moved after maxReceiveCount have the reason {replay.REDRIVE_REASON!r}.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, option("--dry-run", "List what would move, masked; change nothing.")
    ] = False,
    wait_time: WaitTime = 1,
    json: JsonOutput = False,
):
    """Move dead-lettered messages back to be loaded.

    Use it once the cause is fixed. A message leaves the dead-letter queue only after SQS confirmed
    it sent, and keeps its original message id, so `run` never loads one twice.

    Examples:

    \b
        loginetl replay-dlq --dry-run --reason schema
        loginetl replay-dlq --reason schema --max-messages 100 --rate 50
        loginetl replay-dlq --to-stream login-stream --dry-run
    """
    options = replay.ReplayOptions(
        queue_url=queue_url,
        dlq_url=dlq_url,
        to_queue=to_queue,
        to_stream=to_stream,
        endpoint_url=endpoint_url,
        max_messages=max_messages,
        rate=rate,
        reason=reason,
        dry_run=dry_run,
        wait_time=wait_time,
        sources=sources(ctx),
    )
    # A dry run shows ip and device_id masked with the key when there is one, else as ***.
    masking = dry_run and config.secret_configured(os.environ, MASK_KEY_ENV)
    key = mask_key_from_env() if masking else None
    summary = replay.replay_dlq(options, key)
    failed = sum(summary.failed.values())
    warning = (
        (
            f"{failed} messages could not be moved and are still on the dead-letter queue "
            "(see the summary)"
        )
        if failed
        else None
    )
    conclude(json, summary, render.replay_summary(summary, stdout.width), warning)
