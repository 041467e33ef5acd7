"""`loginetl run`: load the queue or stream into the table, and how it behaves at the terminal:
signals finish the batch in hand, the work runs in a worker thread so that a second signal can
exit at once, and a live progress line on stderr."""

from __future__ import annotations

import gc
import os
import signal
import threading
from contextlib import contextmanager
from enum import Enum
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from .. import config, envelopes, pipeline, transform
from ..config import Settings
from ..errors import EXIT_INCOMPLETE, ConfigError
from ..masking import mask_extra_from_env, mask_key_from_env
from ..pipeline import RunSummary
from ..stream import run as stream_run
from ..stream.client import start_position
from . import logs, render
from .app import command
from .common import (
    DEFAULT_GROUP,
    MAX_MESSAGES,
    Accept,
    BootstrapServers,
    DatabaseUrl,
    DlqUrl,
    EndpointUrl,
    GroupName,
    JsonOutput,
    QueueUrl,
    StreamName,
    TopicName,
    conclude,
    option,
    option_source,
    say,
    sources,
    stderr,
)


def _kafka_settings(
    ctx: typer.Context, topic: str, servers: str | None, group: str, dlq_topic: str | None,
    start_at: str, stream: str | None,
):  # fmt: skip
    """The settings of `run --topic`, checked; confluent-kafka is the `kafka` extra."""
    if stream:
        raise ConfigError("--stream and --topic name two sources: give one of them")
    if config.two_sources(option_source(ctx, "queue_url"), option_source(ctx, "topic")):
        raise ConfigError("--queue-url and --topic name two sources: give one of them")
    if not servers:
        raise ConfigError("--topic needs --bootstrap-servers (or LOGINETL_BOOTSTRAP_SERVERS)")
    try:
        import confluent_kafka  # noqa: F401 - only whether it is there
    except ImportError:
        raise ConfigError(
            "run --topic needs confluent-kafka: pip install 'loginetl[kafka]'"
        ) from None
    from ..kafka.client import KafkaSettings, properties_from_env
    from ..kafka.client import start_position as topic_start

    return KafkaSettings(topic, servers, group, dlq_topic or "", topic_start(start_at),
                         properties_from_env())  # fmt: skip


class OnOther(str, Enum):
    dead_letter = "dead-letter"
    delete = "delete"


@command("run")
def run(
    ctx: typer.Context,
    queue_url: QueueUrl = config.DEFAULT_QUEUE_URL,
    stream: StreamName = None,
    topic: TopicName = None,
    bootstrap_servers: BootstrapServers = None,
    group: GroupName = DEFAULT_GROUP,
    dlq_topic: Annotated[
        str | None,
        option(
            "--dlq-topic",
            "With --topic: where records that cannot load go (default: the topic's name + -dlq).",
            metavar="NAME",
        ),
    ] = None,
    start_at: Annotated[
        str,
        option(
            "--from",
            "With --stream: where a shard with no checkpoint starts: "
            "trim-horizon, latest, or at-timestamp:TIME (ISO 8601 with a zone, e.g. "
            "at-timestamp:2026-12-01T00:00:00Z).",
            envvar="LOGINETL_FROM",
            metavar="START",
        ),
    ] = "trim-horizon",
    lease_seconds: Annotated[
        float,
        option(
            "--lease-for",
            "With --stream: a shard lease not renewed for this long may "
            "be taken by another process.",
            min=1,
            metavar="SECONDS",
        ),
    ] = stream_run.StreamOptions.lease_seconds,
    renew_seconds: Annotated[
        float,
        option(
            "--renewal",
            "With --stream: how often leases are renewed and taken.",
            min=0.1,
            metavar="SECONDS",
        ),
    ] = stream_run.StreamOptions.renew_seconds,
    dlq_url: DlqUrl = None,
    endpoint_url: EndpointUrl = None,
    database_url: DatabaseUrl = config.DEFAULT_DATABASE_URL,
    max_messages: Annotated[
        int | None,
        option(
            MAX_MESSAGES,
            "Stop after this many messages (default: when the queue is drained).",
            min=1,
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        option(
            "--batch-size",
            f"Most messages per database transaction (default {pipeline.QUEUE_BATCH_SIZE}; "
            f"with --stream {stream_run.BATCH_SIZE}, one full read of a shard).",
            min=1,
            max=10000,
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        option(
            "--concurrency",
            "Receivers polling in parallel, fixed (and threads deleting committed batches). "
            "Default: adapt, from 1 to 16, to what the receives bring back.",
            min=1,
            max=64,
        ),
    ] = None,
    wait_time: Annotated[
        int | None,
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
        int | None,
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
    accept: Accept = [],  # noqa: B006 - Typer's list default, never mutated
    on_other: Annotated[
        OnOther,
        option(
            "--on-other",
            "What becomes of a message the --accept rules refuse: "
            "dead-letter (with the reason) or delete.",
            metavar="ACTION",
        ),
    ] = OnOther.dead_letter,
    keep_extra: Annotated[
        bool,
        option(
            "--keep-extra",
            "Store a login's fields beyond the known seven in the JSONB column extra (init-db "
            "adds it); those named in LOGINETL_MASK_EXTRA (e.g. email,phone) are masked like "
            "ip. Without it they are counted, never stored.",
        ),
    ] = False,
    json: JsonOutput = False,
):
    """Load the queue into user_logins, masked.

    Invalid messages go to the dead-letter queue with a reason. Each batch is committed before
    its messages are deleted, and a message already loaded is skipped, so a run can be stopped
    and started again at any time. The second example runs it as a service.

    With --stream NAME it reads a Kinesis data stream: each shard's checkpoint is committed
    in the transaction of its rows, and processes running on one stream share its shards.
    Without --follow it reads every shard to its tip, waiting out (at most --lease-for) a
    lease whose owner stopped renewing; shards whose holder keeps renewing are named in the
    summary and the exit code is 3.

    With --topic NAME --bootstrap-servers HOST:PORT it reads a Kafka topic as a member of
    --group: each partition's offset is stored in PostgreSQL in the transaction of its rows,
    and records that cannot load go to --dlq-topic; --from earliest (the default) or latest says
    where a partition with no stored offset starts. Without --follow it reads its partitions
    to the end offsets seen when they were assigned; partitions assigned to another member
    are named in the summary and the exit code is 3.

    Examples:

    \b
        loginetl run --max-messages 1000
        loginetl run --follow --metrics-port 9100 --log-format json
        loginetl run --stream login-stream --follow
    """
    queue_source, stream_source = (option_source(ctx, name) for name in ("queue_url", "stream"))
    if stream and config.two_sources(queue_source, stream_source):
        raise ConfigError("--queue-url and --stream name two sources: give one of them")
    if stream and lease_seconds <= renew_seconds:
        raise ConfigError("--lease-for must be longer than --renewal")
    kafka = None
    if topic:
        kafka = _kafka_settings(ctx, topic, bootstrap_servers, group, dlq_topic, start_at, stream)
    start = start_position(start_at) if stream else start_at
    settings = Settings(
        queue_url=queue_url,
        dlq_url=dlq_url,
        endpoint_url=endpoint_url,
        database_url=database_url,
        stream=stream,
        topic=topic,
        sources=sources(ctx),
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
        accept=envelopes.parse_rules(accept),
        delete_others=on_other is OnOther.delete,
        keep_extra=mask_extra_from_env(transform.KNOWN_FIELDS) if keep_extra else None,
    )
    # What start-up made (modules, botocore's models) lives as long as the process: kept out of
    # the collector's generations, a full collection during the run need not walk it again.
    gc.freeze()
    with stop_on_signals() as stop, run_progress(max_messages) as on_batch:
        more = stream_run.StreamOptions(start, lease_seconds, renew_seconds)

        def work() -> pipeline.RunSummary:
            if kafka is not None:
                from ..kafka import run as kafka_run

                return kafka_run.run(settings, kafka, key, options, on_batch, stop)
            if stream:
                return stream_run.run(settings, key, options, more, on_batch, stop)
            return pipeline.run(settings, key, options, on_batch, stop)

        summary = in_worker_thread(work)
    warnings = _warnings(summary, kafka is not None)
    conclude(json, summary, render.run_summary(summary), "; ".join(warnings) or None)


def _warnings(summary: RunSummary, topic: bool) -> list[str]:
    """What the operator should know of a run that ended without error."""
    left = sum(summary.left_on_queue.values())
    warnings = [f"{left} invalid messages were left on the queue (see the summary)"] if left else []
    if summary.exit_code == EXIT_INCOMPLETE and topic:
        warnings.append(
            "the topic was not read to its end (exit 3): another member of the group is "
            "assigned some partitions (see the summary)"
        )
    elif summary.exit_code == EXIT_INCOMPLETE:
        warnings.append(
            "the stream was not read to its tip (exit 3): another process holds some shards "
            "and keeps renewing its leases (see the summary)"
        )
    return warnings


@contextmanager
def stop_on_signals():
    """SIGINT/SIGTERM: finish the batch in hand, then stop. A second one exits at once, which is
    still safe: nothing is deleted from the queue before it is committed."""
    stop = threading.Event()

    def handle(signum, frame):
        if stop.is_set():
            os._exit(128 + signum)
        stop.set()
        say(
            f"{signal.Signals(signum).name}: finishing the batch in hand "
            "(signal again to exit at once)",
            "signal",
        )

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def in_worker_thread(work):
    """Run `work` in a thread and wait for it here: Python runs signal handlers only in the main
    thread, between bytecodes, so the main thread must not sit in a blocking C call (a query
    waiting on a lock) if a second signal is to exit at once."""
    outcome: dict = {}

    def target():
        try:
            outcome["result"] = work()
        except BaseException as error:  # noqa: BLE001 - handed to the main thread below
            outcome["error"] = error

    worker = threading.Thread(target=target, name="run")
    worker.start()
    while worker.is_alive():
        worker.join(0.2)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


class run_progress:
    """A live line on stderr while `run` works; yields the callback the pipeline calls."""

    def __init__(self, total: int | None) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn() if total else TextColumn(""),
            TextColumn("{task.completed} received"),
            TimeElapsedColumn(),
            console=stderr,
            transient=True,
            disable=logs.json_lines() or not stderr.is_terminal,
        )
        self.task = self.progress.add_task("loading", total=total)

    def __enter__(self):
        self.progress.start()
        return self.update

    def update(self, summary: RunSummary) -> None:
        self.progress.update(
            self.task,
            completed=summary.received,
            description=(
                f"loaded {summary.loaded}, dead-lettered {sum(summary.dead_lettered.values())}"
            ),
        )

    def __exit__(self, *exc) -> None:
        self.progress.stop()
