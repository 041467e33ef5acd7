"""What a stream run adds to the run's metrics: how far behind each shard is, the shards held,
and the leases taken and lost. Registered in the same registry as the run's, so one /metrics
serves both."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from ..metrics import Metrics


class StreamMetrics:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        registry = metrics.registry
        self.millis_behind = Gauge(
            "loginetl_stream_millis_behind_latest",
            "MillisBehindLatest of the last GetRecords, per shard held.",
            ["shard"],
            registry=registry,
        )
        self.shards_held = Gauge(
            "loginetl_stream_shards_held", "Shard leases this process holds.", registry=registry
        )
        self.leases_taken = Counter(
            "loginetl_stream_leases_taken",
            "Shard leases taken (free, expired or stolen).",
            registry=registry,
        )
        self.leases_lost = Counter(
            "loginetl_stream_leases_lost",
            "Shard leases lost to another process.",
            registry=registry,
        )

    def polled(self, count: int) -> None:
        self.metrics.polled(count)

    def behind(self, shard_id: str, millis: int) -> None:
        self.millis_behind.labels(shard_id).set(millis)

    def held(self, count: int, taken: int) -> None:
        self.shards_held.set(count)
        self.leases_taken.inc(taken)

    def lost(self) -> None:
        self.leases_lost.inc()
