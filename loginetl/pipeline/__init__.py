"""The run: receive from SQS, transform, load into PostgreSQL, then delete.

The order is the guarantee: a message is deleted from the source queue only after its row is
committed (or it was already there), or after the dead-letter queue accepted it. A crash at any
point leaves the message on the queue to be delivered again, and the unique message id in
user_logins turns that redelivery into a no-op.

One room per role, joined here:

    receiving.py    long polls into the inbox
    loading.py      validate, mask, insert the batch in one transaction
    settling.py     after COMMIT: dead-letter the refused, delete the rest
    giving_back.py  release what was received but not loaded
    state.py        what they share (inbox, in hand, budget, summary) and its one lock
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from .. import __version__, database, schema, sqs
from ..config import Settings
from ..errors import ConfigError, LoginetlError
from ..masking import MaskKey
from ..metrics import Metrics, MetricsServer
from .giving_back import GivingBack
from .loading import Loader
from .reaching import OtherEnd, side_by_side
from .receiving import Receivers
from .settling import NO_DLQ, Settlers
from .state import QUEUE_BATCH_SIZE, RunOptions, RunSummary, Shared, SourceQueue

log = logging.getLogger(__name__)

__all__ = ["NO_DLQ", "QUEUE_BATCH_SIZE", "RunOptions", "RunSummary", "run"]


class Pipeline(Protocol):
    """What `drive` runs: a source wired to the Loader, started, drained, then closed. This
    module's Run (a queue) and stream.run.StreamRun (a stream) are the two."""

    shared: Shared  # the run's shared state, whose summary `drive` finishes on an error

    def start(self) -> None:
        """Connect to both ends and start the threads; errors here are configuration's."""

    def drain(self) -> RunSummary:
        """Load until the source is done or the run stops; the summary of what was done."""

    def close(self) -> None:
        """Release connections and threads, whatever happened (called after start failed
        too)."""


class Run:
    """One `loginetl run`: connects to both ends, wires the roles, and drives the loader loop
    in the calling thread until the receivers are done or the run stops."""

    def __init__(
        self,
        settings: Settings,
        key: MaskKey,
        options: RunOptions,
        on_batch: Callable[[RunSummary], None],
        stop: threading.Event | None,
        metrics: Metrics | None,
    ) -> None:
        self.settings = settings
        self.key = key
        self.options = options
        self.on_batch = on_batch
        self.metrics = metrics or Metrics()
        self.shared = Shared(settings.queue_url, options, stop or threading.Event())
        self.db: database.Database | None = None
        self.keeper: sqs.VisibilityKeeper | None = None
        self.metrics_server: MetricsServer | None = None
        self.settlers: Settlers | None = None

    def start(self) -> None:
        """Connect to both ends and check them, side by side, before touching any message."""
        queue_url, options = self.settings.queue_url, self.options
        self.sqs = sqs.client(self.settings, pool_size=2 * options.most_receivers + 4)
        self.metrics.count_requests(self.sqs)
        self.db = database.Database(
            self.settings.database_url,
            options.retry_for,
            self.shared.stop,
            on_outage=lambda: self.metrics.error("database"),
        )
        keep_extra = self.options.keep_extra is not None
        visibility: dict[str, str] = {}

        def check_the_queue() -> None:
            self.shared.summary.dlq_url = self.settings.dlq_url or sqs.dead_letter_url(
                self.sqs, queue_url
            )
            visibility.update(sqs.queue_attributes(self.sqs, queue_url, ["VisibilityTimeout"]))

        table = side_by_side(
            self.db,
            lambda connection: schema.require_ready(connection, keep_extra),
            "checking the table",
            [OtherEnd(self.sqs, "SQS", check_the_queue)],
        )
        self.keeper = sqs.VisibilityKeeper(
            self.sqs, queue_url, int(visibility.get("VisibilityTimeout", "30"))
        )
        if options.metrics_port is not None:
            self.metrics_server = self._serve_metrics(options.metrics_port)
        source = SourceQueue(self.sqs, queue_url, self.keeper)
        self.settlers = Settlers(self.shared, source, self.metrics)
        self.giving_back = GivingBack(self.shared, source)
        self.loader = Loader(self.shared, self.key, self.db, table, self.settlers, self.metrics)
        self.receivers = Receivers(self.shared, source, self.metrics, self.giving_back)

    def _serve_metrics(self, port: int) -> MetricsServer:
        host = self.options.metrics_host
        try:
            return MetricsServer(
                self.metrics,
                host,
                port,
                self.sqs,
                self.settings.queue_url,
                self.settings.database_url,
                stale_after=max(60.0, 3 * self.options.wait_time + 30),
            )
        except OSError as error:
            raise ConfigError(f"cannot serve metrics on {host}:{port}: {error.strerror}") from None

    def drain(self) -> RunSummary:
        started = time.monotonic()
        self.receivers.start()
        try:
            while batch := self.loader.next_batch(self.receivers.alive):
                self.loader.load(batch)
                self.shared.summary.elapsed = time.monotonic() - started
                self.on_batch(self.shared.summary)
        except LoginetlError as error:
            self.shared.fail(error)
        self.receivers.join()
        settlers = self.settlers
        assert settlers is not None, "the run was not started"
        settlers.wait()  # the deletes of every committed batch
        self.giving_back.release_everything_in_hand()
        if self.shared.failure is not None:
            self.metrics.failed(self.shared.failure)
        return self.shared.finish(time.monotonic() - started)

    def close(self) -> None:
        if self.settlers is not None:
            self.settlers.wait()
        if self.metrics_server is not None:
            self.metrics_server.close()
        if self.keeper is not None:
            self.keeper.close()
        if self.db is not None:
            self.db.close()


def run(
    settings: Settings,
    key: MaskKey,
    options: RunOptions = RunOptions(),
    on_batch: Callable[[RunSummary], None] = lambda summary: None,
    stop: threading.Event | None = None,
    metrics: Metrics | None = None,
) -> RunSummary:
    """Drain the queue into the table; configuration errors raise, errors mid-run are reported
    in the summary (with what was done until then) and its exit code. Logs a `start` event
    before and a `stop` event after, whatever happens."""
    options = options.with_batch_size(QUEUE_BATCH_SIZE)
    return drive(
        settings, key, options, lambda: Run(settings, key, options, on_batch, stop, metrics)
    )


def drive(
    settings: Settings, key: MaskKey, options: RunOptions, pipeline_of: Callable[[], Pipeline]
) -> RunSummary:
    """Start and drain the pipeline `pipeline_of()` makes, close it whatever happens, and log
    the `start` and `stop` events around it. An error mid-run raises, its summary (what was
    done until then) logged with the error."""
    # The SQS endpoint the run calls, named by its summary and its start event; servers that
    # disagree (config.sqs_endpoint) stop it here, before anything is touched.
    endpoint = sqs.client(settings).meta.endpoint_url
    log_start(settings, key, options, endpoint)
    pipeline = pipeline_of()
    pipeline.shared.summary.endpoint = endpoint
    summary = None
    try:
        pipeline.start()
        summary = pipeline.drain()
        return summary
    except LoginetlError as error:
        summary = pipeline.shared.finish(0.0)
        summary.error, summary.exit_code, summary.stopped_because = (
            str(error),
            error.exit_code,
            "error",
        )
        raise
    finally:
        pipeline.close()
        log_stop(summary)


def log_start(settings: Settings, key: MaskKey, options: RunOptions, endpoint: str) -> None:
    log.info(
        "run started",
        extra={
            "event": "start",
            "version": __version__,
            "queue_url": None if settings.stream or settings.topic else settings.queue_url,
            "stream": settings.stream,
            "topic": settings.topic,
            "dlq_url": settings.dlq_url,
            "endpoint": endpoint,
            "database": settings.database_location,
            "mask_key_id": key.key_id,
            "options": dataclasses.asdict(options),
        },
    )


def log_stop(summary: RunSummary | None) -> None:
    if summary is None:  # a bug ended the run: the CLI reports it
        return
    # A run that stopped on an error says so once, in the CLI's error line: this is the record.
    log.info(
        f"run stopped: {summary.stopped_because}",
        extra={
            "event": "stop",
            "summary": summary.as_dict(),
            "stopped_because": summary.stopped_because,
            "exit_code": summary.exit_code,
        },
    )
