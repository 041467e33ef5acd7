"""Prometheus metrics and a health check for `loginetl run --metrics-port`.

`/metrics` serves the counters in Prometheus text format; `/healthz` answers 200 while the run
keeps receiving and the database answers, 503 (with the reason) otherwise, so an orchestrator
can restart a stuck copy.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from . import database, sqs
from .envelopes import ENVELOPES
from .errors import LoginetlError

# Every value each labelled counter can take, exported at 0 from the start: a series that
# appears only with its first event is invisible to rate() and to the alert rules until then.
# A reason's "category:" part.
DEAD_LETTER_REASONS = ("json", "schema", "envelope", "skipped", "encoding", "database")
SQS_ACTIONS = (
    "ReceiveMessage",
    "DeleteMessageBatch",
    "ChangeMessageVisibilityBatch",
    "SendMessageBatch",
    "GetQueueAttributes",
    "GetQueueUrl",
)
MOST_EXTRA_LABELS = 50  # distinct extra field names with a series of their own
EXTRA_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
OTHER_EXTRA = "(other)"
# An error's kind: its class's, or the nearest base class's that has one.
ERROR_KINDS = {
    "CertificateError": "certificate",
    "DatabaseError": "database",
    "StreamError": "stream",
    "QueueError": "queue",
    "ConfigError": "config",
}
OTHER_ERROR = "other"


def error_kind(error: LoginetlError) -> str:
    return next(
        (ERROR_KINDS[c.__name__] for c in type(error).__mro__ if c.__name__ in ERROR_KINDS),
        OTHER_ERROR,
    )


class Metrics:
    """What a run counts. The pipeline calls these methods; nothing here blocks it."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        counter = lambda name, doc, labels=(): Counter(  # noqa: E731
            name, doc, labels, registry=self.registry
        )
        self.received = counter("loginetl_messages_received", "Messages received from SQS.")
        self.loaded = counter("loginetl_messages_loaded", "Messages loaded as new rows.")
        self.duplicates = counter(
            "loginetl_messages_duplicate", "Messages whose row was already loaded."
        )
        self.dead_lettered = counter(
            "loginetl_messages_dead_lettered", "Messages sent to the DLQ.", ["reason"]
        )
        self.errors = counter("loginetl_errors", "Errors that stopped or delayed work.", ["kind"])
        self.envelopes = counter(
            "loginetl_messages_opened",
            "Messages by the envelope they came in (raw, sns, eventbridge), valid or not.",
            ["envelope"],
        )
        self.extra_fields = counter(
            "loginetl_extra_fields",
            "Valid logins carrying a top-level field beyond the known seven, by its name.",
            ["field"],
        )
        self.skipped = counter(
            "loginetl_messages_skipped",
            "Messages that are not logins by the --accept rules (deleted or dead-lettered).",
            ["reason"],
        )
        self.batch_seconds = Histogram(
            "loginetl_batch_seconds",
            "Seconds from a batch's first receive to its delete.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "loginetl_queue_depth",
            "ApproximateNumberOfMessages on the source queue.",
            registry=self.registry,
        )
        self.sqs_requests = counter(
            "loginetl_sqs_requests",
            "SQS requests sent, by action (every attempt, retries included).",
            ["action"],
        )
        self.empty_receives = counter(
            "loginetl_sqs_empty_receives", "ReceiveMessage calls that brought no message."
        )
        self.receivers = Gauge(
            "loginetl_receivers", "Receivers polling the source queue now.", registry=self.registry
        )
        self.last_receive = time.monotonic()
        for reason in DEAD_LETTER_REASONS:
            self.dead_lettered.labels(reason)
        for kind in (*ERROR_KINDS.values(), OTHER_ERROR):
            self.errors.labels(kind)
        for action in SQS_ACTIONS:
            self.sqs_requests.labels(action)
        for envelope in ENVELOPES:
            self.envelopes.labels(envelope)
        self.skipped.labels("not_accepted")
        self.extra_labels: set[str] = set()
        self.lock = threading.Lock()

    def count_requests(self, sqs_client) -> None:
        """Count every request the client sends, by action, and the receives that come back
        empty, through botocore's own events: no call site can forget to."""
        events = sqs_client.meta.events
        events.register("before-send.sqs", self._sent)
        events.register("after-call.sqs.ReceiveMessage", self._received)

    def _sent(self, event_name: str, **kwargs) -> None:  # must return None: else it answers
        self.sqs_requests.labels(event_name.rpartition(".")[2]).inc()

    def _received(self, http_response, parsed: dict, **kwargs) -> None:
        if http_response.status_code < 300 and not parsed.get("Messages"):
            self.empty_receives.inc()

    def polled(self, count: int) -> None:
        self.last_receive = time.monotonic()
        self.received.inc(count)

    def batch_done(
        self, loaded: int, duplicates: int, dead: dict[str, int], seconds: float
    ) -> None:
        self.loaded.inc(loaded)
        self.duplicates.inc(duplicates)
        for reason, count in dead.items():
            # Label by category only ("schema", "json", ...): detailed reasons would explode the
            # number of series.
            self.dead_lettered.labels(reason.split(":", 1)[0]).inc(count)
        self.batch_seconds.observe(seconds)

    def opened(
        self, counts: Mapping[str, int], not_accepted: int = 0, extra: Mapping[str, int] = {}
    ) -> None:
        for envelope, count in counts.items():
            self.envelopes.labels(envelope).inc(count)
        self.skipped.labels("not_accepted").inc(not_accepted)
        for name, count in extra.items():
            self.extra_fields.labels(self._extra_label(name)).inc(count)

    def _extra_label(self, name: str) -> str:
        """A field name as a label: producers choose the names, so only short plain ones, and
        only the first MOST_EXTRA_LABELS of them, get a series; the rest count as (other)."""
        with self.lock:
            if name in self.extra_labels:
                return name
            if len(self.extra_labels) < MOST_EXTRA_LABELS and EXTRA_LABEL.fullmatch(name):
                self.extra_labels.add(name)
                return name
        return OTHER_EXTRA

    def error(self, kind: str) -> None:
        self.errors.labels(kind).inc()

    def failed(self, error: LoginetlError) -> None:
        """The run stopped on `error`: count it under its kind."""
        self.error(error_kind(error))


class MetricsServer:
    """Serves /metrics and /healthz from a background thread, and polls the queue depth."""

    def __init__(
        self,
        metrics: Metrics,
        host: str,
        port: int,
        sqs_client,
        queue_url: str,
        database_url: str,
        stale_after: float,
    ) -> None:
        self.metrics = metrics
        self.health = HealthCheck(metrics, database_url, stale_after)
        self.server = ThreadingHTTPServer((host, port), _handler(metrics, self.health))
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.stopped = threading.Event()
        self.sqs = sqs_client
        self.queue_url = queue_url
        threading.Thread(target=self.server.serve_forever, name="metrics", daemon=True).start()
        threading.Thread(target=self._poll_depth, name="queue-depth", daemon=True).start()

    def close(self) -> None:
        self.stopped.set()
        self.server.shutdown()
        self.server.server_close()

    def _poll_depth(self, every: float = 15.0) -> None:
        while True:
            try:
                attributes = sqs.queue_attributes(
                    self.sqs, self.queue_url, ["ApproximateNumberOfMessages"]
                )
                self.metrics.queue_depth.set(int(attributes["ApproximateNumberOfMessages"]))
            except LoginetlError:
                self.metrics.error("queue")
            if self.stopped.wait(every):
                return


class HealthCheck:
    """Healthy while a receive happened recently and PostgreSQL answers a SELECT 1 (its result
    cached a few seconds, so probes do not load the database)."""

    def __init__(self, metrics: Metrics, database_url: str, stale_after: float) -> None:
        self.metrics = metrics
        self.database_url = database_url
        self.stale_after = stale_after
        self.checked_at = 0.0
        self.database_problem: str | None = None
        self.lock = threading.Lock()

    def problem(self) -> str | None:
        idle = time.monotonic() - self.metrics.last_receive
        if idle > self.stale_after:
            return f"no receive for {idle:.0f} s"
        with self.lock:
            if time.monotonic() - self.checked_at > 5:
                self.database_problem = self._database_problem()
                self.checked_at = time.monotonic()
            return self.database_problem

    def _database_problem(self) -> str | None:
        try:
            connection = database.connect(self.database_url, timeout=3)
        except LoginetlError as error:
            return str(error)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            return None
        except Exception as error:  # noqa: BLE001 - any failure means unhealthy; the reason is shown
            return f"database check failed: {type(error).__name__}"
        finally:
            connection.close()


def _handler(metrics: Metrics, health: HealthCheck) -> Callable:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] == "/metrics":
                self._reply(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            elif self.path.split("?")[0] == "/healthz":
                problem = health.problem()
                body = (problem or "ok").encode("utf-8") + b"\n"
                self._reply(503 if problem else 200, body, "text/plain; charset=utf-8")
            else:
                self._reply(404, b"not found\n", "text/plain; charset=utf-8")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args) -> None:  # scrapes are not worth a log line each
            pass

    return Handler
