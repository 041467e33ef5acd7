"""`loginetl run`: load the queue into the table, with a progress line and signal handling."""

from __future__ import annotations

from typing import Annotated, Optional

from .. import config, logs, pipeline, render
from ..config import Settings
from ..masking import mask_key_from_env
from .app import command
from .common import (
    MAX_MESSAGES,
    DatabaseUrl,
    DlqUrl,
    EndpointUrl,
    JsonOutput,
    QueueUrl,
    conclude,
    option,
)
from .running import in_worker_thread, run_progress, stop_on_signals


@command("run")
def run(
    queue_url: QueueUrl = config.DEFAULT_QUEUE_URL,
    dlq_url: DlqUrl = None,
    endpoint_url: EndpointUrl = None,
    database_url: DatabaseUrl = config.DEFAULT_DATABASE_URL,
    max_messages: Annotated[
        Optional[int],
        option(
            MAX_MESSAGES,
            "Stop after this many messages (default: when the queue is drained).",
            min=1,
        ),
    ] = None,
    batch_size: Annotated[
        int, option("--batch-size", "Most messages per database transaction.", min=1, max=10000)
    ] = pipeline.RunOptions.batch_size,
    concurrency: Annotated[
        Optional[int],
        option(
            "--concurrency",
            "Receivers polling in parallel, fixed (and threads deleting committed batches). "
            "Default: adapt, from 1 to 16, to what the receives bring back.",
            min=1,
            max=64,
        ),
    ] = None,
    wait_time: Annotated[
        Optional[int],
        option(
            "--wait-time",
            "Long-poll seconds per receive (default 5, or 20 with --follow); without --follow "
            "an empty receive means the queue is drained.",
            min=0,
            max=20,
        ),
    ] = None,
    follow: Annotated[
        bool,
        option("--follow", "Keep polling and loading as messages arrive, until SIGINT or SIGTERM."),
    ] = False,
    metrics_port: Annotated[
        Optional[int],
        option(
            "--metrics-port",
            "Serve Prometheus /metrics and /healthz on this port.",
            min=0,
            max=65535,
        ),
    ] = None,
    metrics_host: Annotated[str, option("--metrics-host", "Address for --metrics-port.")] = (
        pipeline.RunOptions.metrics_host
    ),
    retry_for: Annotated[
        float,
        option(
            "--retry-for",
            "Seconds to keep reconnecting to an unavailable database before giving up.",
            min=0,
        ),
    ] = pipeline.RunOptions.retry_for,
    json: JsonOutput = False,
):
    """Load the queue into user_logins, masked.

    Invalid messages go to the dead-letter queue with a reason. Each batch is committed before
    its messages are deleted, and a message already loaded is skipped, so a run can be stopped
    and started again at any time. The second example runs it as a service.

    Examples:

    \b
        loginetl run --max-messages 1000
        loginetl run --follow --metrics-port 9100 --log-format json
    """
    settings = Settings(
        queue_url=queue_url, dlq_url=dlq_url, endpoint_url=endpoint_url, database_url=database_url
    )
    key = mask_key_from_env()
    if follow:
        logs.as_service()
    options = pipeline.RunOptions(
        max_messages=max_messages,
        batch_size=batch_size,
        concurrency=concurrency,
        wait_time=(20 if follow else 5) if wait_time is None else wait_time,
        retry_for=retry_for,
        follow=follow,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
    )
    with stop_on_signals() as stop, run_progress(max_messages) as on_batch:
        summary = in_worker_thread(lambda: pipeline.run(settings, key, options, on_batch, stop))
    left = sum(summary.left_on_queue.values())
    warning = f"{left} invalid messages were left on the queue (see the summary)" if left else None
    conclude(json, summary, render.run_summary(summary), warning)
