"""`loginetl run --stream`: the run of pipeline/ with a Kinesis stream as its source.

The same Shared state, Loader (validate, mask, insert), metrics, logs and summary as for SQS;
what differs is where records come from (reading.py) and how a batch settles: inside its COMMIT
(checkpoints.py), so a crash anywhere loses nothing and loads nothing twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from .. import database, schema, sqs
from ..config import Settings
from ..errors import EXIT_INCOMPLETE, ConfigError
from ..masking import MaskKey
from ..metrics import Metrics, MetricsServer
from ..pipeline import drive
from ..pipeline.committing import InCommitRun
from ..pipeline.loading import Loader
from ..pipeline.reaching import OtherEnd, side_by_side
from ..pipeline.state import RunOptions, RunSummary, Shared
from .checkpoints import StreamSettlers
from .client import Shard, kinesis_client, list_shards
from .leases import LEASE_SECONDS, RENEWAL_SECONDS, Leases, new_owner
from .metrics import StreamMetrics
from .reading import MAX_RECORDS, Reading

log = logging.getLogger(__name__)
T = TypeVar("T")

# The default --batch-size of a stream run: one full GetRecords a transaction, so that a read
# is committed whole, in half the transactions and dead-letter sends of the queue's 500
# (docs/performance.md has the trials).
BATCH_SIZE = MAX_RECORDS

NO_DLQ = (
    "run --stream needs a dead-letter queue (--dlq-url, an SQS queue): a record that cannot be "
    "loaded goes there before the checkpoint passes it"
)


@dataclass(frozen=True)
class StreamOptions:
    # Where a shard without a checkpoint starts: trim-horizon, latest or at-timestamp:TIME
    # (client.start_position checks it).
    start_at: str = "trim-horizon"
    lease_seconds: float = LEASE_SECONDS  # a lease not renewed for this long may be taken
    renew_seconds: float = RENEWAL_SECONDS  # how often leases are renewed and taken


@dataclass
class StreamSummary(RunSummary):
    stream: str = ""
    shards: list = field(default_factory=list)  # [{"id", "checkpoint"}] of each shard read
    # [{"shard", "owner", "lease_expires"}]: shards a one-shot run left to a live holder
    shards_not_read: list = field(default_factory=list)


class StreamRun(InCommitRun):
    """One `loginetl run --stream`, shaped as pipeline.Run: start, drain, close."""

    def __init__(
        self,
        settings: Settings,
        key: MaskKey,
        options: RunOptions,
        stream_options: StreamOptions,
        on_batch: Callable[[RunSummary], None],
        stop: threading.Event | None,
        metrics: Metrics | None,
    ) -> None:
        if not settings.dlq_url:
            raise ConfigError(NO_DLQ)
        if not settings.stream:
            raise ConfigError("run --stream needs the name of the stream to read")
        self.stream, self.dlq_url = settings.stream, settings.dlq_url
        self.settings, self.key, self.options = settings, key, options
        self.stream_options = stream_options
        self.on_batch = on_batch
        self.metrics = metrics or Metrics()
        self.shared = Shared("", options, stop or threading.Event())
        self.summary = StreamSummary(queue_url=None, dlq_url=self.dlq_url, stream=self.stream)
        self.shared.summary = self.summary  # one object: the loader counts, drain adds shards
        self.owner = new_owner()
        self.db: database.Database | None = None
        self.leases: Leases | None = None
        self.reading: Reading | None = None
        self.metrics_server: MetricsServer | None = None

    def start(self) -> None:
        settings, options = self.settings, self.options
        self.sqs = sqs.client(settings, pool_size=4)
        self.kinesis = kinesis_client(settings.kinesis_endpoint, pool_size=64)
        self.db = database.Database(
            settings.database_url,
            options.retry_for,
            self.shared.stop,
            on_outage=lambda: self.metrics.error("database"),
        )
        keep_extra = self.options.keep_extra is not None
        table, shards = reach_the_ends(self.db, self.sqs, self.dlq_url, self.kinesis, self.stream,
                                       keep_extra)  # fmt: skip
        self.leases = Leases(
            settings.database_url,
            self.stream,
            self.stream_options.lease_seconds,
            self.owner,
            options.retry_for,
            self.shared.stop,
            on_outage=lambda: self.metrics.error("database"),
        )
        stream_metrics = StreamMetrics(self.metrics)
        self.reading = Reading(
            self.shared,
            self.kinesis,
            self.stream,
            self.leases,
            self.stream_options.start_at,
            self.stream_options.renew_seconds,
            stream_metrics,
        )
        self.settlers = StreamSettlers(
            self.shared,
            self.sqs,
            self.dlq_url,
            self.stream,
            self.owner,
            self.metrics,
            self.reading.committed,
        )
        self.loader = Loader(self.shared, self.key, self.db, table, self.settlers, self.metrics)
        if options.metrics_port is not None:
            port = options.metrics_port
            self.metrics_server = serve_metrics(self.metrics, options, port, settings.database_url)
        self.reading.start(shards)

    def _ended(self, started: float) -> RunSummary:
        """The readers stopped and the summary finished: what was read, what was not."""
        reading = made_by_start(self.reading)
        reading.join()
        self.shared.finish(time.monotonic() - started)
        summary = self.summary
        if summary.stopped_because == "queue drained":
            _read_to_tip_or_not(summary, reading.not_read)
        summary.shards = reading.checkpoints()
        return summary

    def _alive(self) -> bool:
        return made_by_start(self.reading).alive()

    def _lost(self, lost) -> None:
        """Stop reading the shard whose lease was lost, and let the lease go."""
        log.warning(str(lost), extra={"event": "lease_lost", "shard": lost.shard_id})
        made_by_start(self.reading).drop(lost.shard_id)
        made_by_start(self.leases).give_back([lost.shard_id])

    def close(self) -> None:
        if self.reading is not None:
            self.settlers.wait()
        self._close_claims_and_ends(self.leases)


def reach_the_ends(
    db: database.Database, sqs_client, dlq_url: str, kinesis, stream: str, keep_extra: bool
) -> tuple[schema.TableInfo, list[Shard]]:
    """The table checked, the dead-letter queue found and the stream's shards listed, side by
    side (pipeline/reaching.py): each end that cannot be reached is named at once."""
    shards: list[Shard] = []

    def find_the_dead_letter_queue() -> None:
        sqs.queue_attributes(sqs_client, dlq_url, ["QueueArn"])  # it exists

    table = side_by_side(
        db,
        lambda connection: schema.require_ready(connection, keep_extra),
        "checking the table",
        [
            OtherEnd(sqs_client, "SQS", find_the_dead_letter_queue),
            OtherEnd(kinesis, "Kinesis", lambda: shards.extend(list_shards(kinesis, stream))),
        ],
    )
    return table, shards


def made_by_start(part: T | None) -> T:
    """What StreamRun.start() made, once drain runs: it is there, as start() returned."""
    assert part is not None, "the run was not started"
    return part


def _read_to_tip_or_not(summary: StreamSummary, not_read: list) -> None:
    """The stream is read to its tip only if no shard was left to another holder; else the
    stop reason names those shards and their owners, and the exit code says incomplete."""
    if not not_read:
        summary.stopped_because = "stream read to its tip"
        return
    summary.shards_not_read = [
        {
            "shard": held.shard_id,
            "owner": held.owner,
            "lease_expires": held.lease_expires.isoformat(),
        }
        for held in not_read
    ]
    named = ", ".join(f"{held.shard_id} (owner {held.owner})" for held in not_read)
    summary.stopped_because = (
        f"{len(not_read)} shards not read, held by a process that keeps renewing its leases: "
        f"{named}"
    )
    summary.exit_code = EXIT_INCOMPLETE


def serve_metrics(
    metrics: Metrics, options: RunOptions, port: int, database_url: str
) -> MetricsServer:
    """/metrics and /healthz on --metrics-port; a port that cannot be had is a usage error."""
    host = options.metrics_host
    try:
        return StreamMetricsServer(metrics, host, port, None, "", database_url, stale_after=60.0)
    except OSError as error:
        raise ConfigError(f"cannot serve metrics on {host}:{port}: {error.strerror}") from None


class StreamMetricsServer(MetricsServer):
    """/metrics and /healthz as for SQS, without a source queue depth to poll."""

    def _poll_depth(self, every: float = 15.0) -> None:
        return


def run(
    settings: Settings,
    key: MaskKey,
    options: RunOptions = RunOptions(),
    stream_options: StreamOptions = StreamOptions(),
    on_batch: Callable[[RunSummary], None] = lambda summary: None,
    stop: threading.Event | None = None,
    metrics: Metrics | None = None,
) -> RunSummary:
    """As pipeline.run, reading the stream `settings.stream`."""
    options = options.with_batch_size(BATCH_SIZE)
    return drive(
        settings,
        key,
        options,
        lambda: StreamRun(settings, key, options, stream_options, on_batch, stop, metrics),
    )
