"""Send→committed latency of `loginetl run --follow` at a steady rate, on the local stack.

Starts an SQS server (moto's, in this process: the queue stays near empty at a steady rate, so
its slowness with long queues does not show) and uses a throw-away database on the PostgreSQL
at --database-url; runs `loginetl run --follow` as its own process; sends --rate messages a
second for --seconds; then reads each row's loaded_at (the time its transaction started, a few
milliseconds before COMMIT) and prints p50/p99/max of loaded_at − send time.

    .venv/bin/python scripts/latency.py --rate 20 --seconds 20
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import boto3
import psycopg2
from moto.server import ThreadedMotoServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout, for tests.support
from tests.support.servers import admin

MASK_KEY = "latency-benchmark-key-0123456789"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20.0, help="messages per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to send")
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "LOGINETL_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="an admin URL: a throw-away database is created there and dropped after "
        "(default: LOGINETL_ADMIN_DATABASE_URL, else the PostgreSQL on 127.0.0.1:5432)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    sqs = boto3.client(
        "sqs", endpoint_url=f"http://{host}:{port}", region_name="us-east-1",
        aws_access_key_id="test", aws_secret_access_key="test",
    )  # fmt: skip
    queue_url = sqs.create_queue(QueueName=f"latency-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    database = f"loginetl_latency_{uuid.uuid4().hex[:8]}"
    admin(args.database_url, f"CREATE DATABASE {database}")
    database_url = args.database_url.rsplit("/", 1)[0] + "/" + database
    env = os.environ | {
        "LOGINETL_QUEUE_URL": queue_url,
        "LOGINETL_DATABASE_URL": database_url,
        "LOGINETL_MASK_KEY": MASK_KEY,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "LOGINETL_CONCURRENCY": "1",  # moto's receive is not atomic across threads
    }
    loginetl = [sys.executable, "-m", "loginetl"]
    try:
        subprocess.run([*loginetl, "init-db"], env=env, check=True, capture_output=True)
        process = subprocess.Popen(
            [*loginetl, "run", "--follow", "--json"],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        time.sleep(2)  # let it start polling
        sent_at = send_steadily(sqs, queue_url, args.rate, args.seconds)
        latencies = wait_for_rows(database_url, sent_at, timeout=30)
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    finally:
        admin(args.database_url, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        server.stop()
    report(latencies, len(sent_at), args)
    return 0


def send_steadily(sqs, queue_url: str, rate: float, seconds: float) -> dict[str, float]:
    """One message every 1/rate seconds; returns {message id: wall-clock send time}."""
    sample = json.loads((resources.files("loginetl") / "data" / "sample_data.json").read_text())
    valid = [message for message in sample if "user_id" in message]
    sent_at: dict[str, float] = {}
    start = time.monotonic()
    for n in range(int(rate * seconds)):
        time.sleep(max(0.0, start + n / rate - time.monotonic()))
        before = time.time()
        response = sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(valid[n % 99]))
        sent_at[response["MessageId"]] = before
    return sent_at


def wait_for_rows(database_url: str, sent_at: dict[str, float], timeout: float) -> list[float]:
    deadline = time.monotonic() + timeout
    with psycopg2.connect(database_url) as connection:
        connection.autocommit = True
        while True:
            with connection.cursor() as cursor:
                cursor.execute("SELECT sqs_message_id, loaded_at FROM user_logins")
                loaded = dict(cursor.fetchall())
            if len(loaded) >= len(sent_at) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    return sorted(
        loaded[message_id].timestamp() - sent for message_id, sent in sent_at.items()
        if message_id in loaded
    )  # fmt: skip


def percentile(values: list[float], fraction: float) -> float:
    return values[min(len(values) - 1, int(fraction * len(values)))]


def report(latencies: list[float], sent: int, args) -> None:
    figures = {
        "rate_per_second": args.rate,
        "messages_sent": sent,
        "messages_loaded": len(latencies),
        "p50_seconds": round(percentile(latencies, 0.50), 3) if latencies else None,
        "p99_seconds": round(percentile(latencies, 0.99), 3) if latencies else None,
        "max_seconds": round(latencies[-1], 3) if latencies else None,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    figures["p99_under_1s"] = figures["p99_seconds"] is not None and figures["p99_seconds"] < 1.0
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(
            f"send→committed latency at {args.rate:g} msg/s, {len(latencies)}/{sent} loaded: "
            f"p50 {figures['p50_seconds']} s, p99 {figures['p99_seconds']} s, "
            f"max {figures['max_seconds']} s (target p99 < 1 s: "
            f"{'met' if figures['p99_under_1s'] else 'NOT met'})"
        )


if __name__ == "__main__":
    sys.exit(main())
