#!/usr/bin/env python3
"""The bare consumer as a process of its own, for python -m benchmarks: receive 10 and delete them
with DeleteMessageBatch from THREADS threads, until each sees an empty receive, no database;
prints {"messages", "seconds"} as JSON. As its own process, its CPU time (the bench reads it
from wait4) compares with loginetl's, start-up included in both. It imports boto3 alone.

    .venv/bin/python benchmarks/bare.py ENDPOINT_URL QUEUE_URL THREADS
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import botocore.config

REGION = "us-east-1"
RECEIVE_WAIT = 1  # long-poll seconds for every drain here: an empty receive means drained


def sqs_client(endpoint_url: str, pool: int):
    """One client shared by every thread (boto3 clients are thread-safe), its pool sized so no
    thread waits for a connection."""
    config = botocore.config.Config(
        max_pool_connections=max(10, pool),
        retries={"mode": "standard", "max_attempts": 6},
        connect_timeout=5,
        read_timeout=30,
    )
    return boto3.session.Session().client(
        "sqs", endpoint_url=endpoint_url, region_name=REGION, config=config,
        aws_access_key_id="test", aws_secret_access_key="test",
    )  # fmt: skip


def bare_drain(sqs, queue_url: str, concurrency: int) -> tuple[int, float]:
    """(messages drained, seconds) by `concurrency` threads receiving 10 and deleting them."""
    drained = [0] * concurrency  # one slot per thread: no lock needed

    def drain(slot: int) -> None:
        while True:
            received = sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=RECEIVE_WAIT
            ).get("Messages", [])
            if not received:
                return
            entries = [
                {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                for index, message in enumerate(received)
            ]
            response = sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)
            drained[slot] += len(received) - len(response.get("Failed", []))

    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(drain, range(concurrency)))
    return sum(drained), time.monotonic() - started


def main(argv: list[str]) -> int:
    endpoint_url, queue_url, threads = argv[0], argv[1], int(argv[2])
    messages, seconds = bare_drain(sqs_client(endpoint_url, 2 * threads), queue_url, threads)
    print(json.dumps({"messages": messages, "seconds": seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
