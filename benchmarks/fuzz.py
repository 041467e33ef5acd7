#!/usr/bin/env python3
"""Generated hostile bodies through a real `loginetl run` on LocalStack: every one is loaded
or dead-lettered (loaded + dead-lettered = sent), exit 0, nothing left on the queue.

The bodies (seeded, so a failure can be replayed with --seed) mix valid logins, logins with
hostile field values (bidi overrides, BOM, escaped NUL and lone surrogates, 1e400, NaN,
Infinity, 300-character strings, nested values), duplicate keys, JSON that is not an object,
nesting 2,000 deep and 100 KiB strings, and plain text. Each body is also judged by the
transform in this process, so the expected split between rows and dead letters is known.

Example:

    .venv/bin/python -m benchmarks.fuzz --bodies 10000
    .venv/bin/python -m benchmarks.fuzz --bodies 2000 --seed 7 --json

Without --endpoint-url it starts LocalStack (scripts/localstack.py, no Docker) and stops it
afterwards; it makes a fresh database on --database-url's server and fresh queues, and removes
them afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import datetime, timezone

from loginetl.masking import MaskKey
from loginetl.transform import InvalidMessage, to_row

from .environment import (
    SAMPLE,
    child_environment,
    console,
    fresh_database,
    fresh_queues,
    init_table,
    sqs_client,
    sqs_endpoint,
)
from .measure import check_run, loginetl_run

ADMIN_URL = os.environ.get(
    "LOGINETL_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
FIELDS = ("user_id", "device_type", "ip", "device_id", "locale", "app_version", "create_date")
HOSTILE = ["\u202e", "\u2066", "\u200f", "\ufeff", "\u200b", "\u2028", "\x00", "\ud800", "\x1b"]
# A body SQS itself accepts: #x9 #xA #xD, #x20-#xD7FF, #xE000-#xFFFD, #x10000-#x10FFFF.
SQS_TEXT = [(0x20, 0xD7FF), (0xE000, 0xFFFD), (0x10000, 0x10FFFF)]


class Bodies:
    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.logins = [m for m in json.loads(SAMPLE.read_text()) if "user_id" in m]

    def text(self, size: int) -> str:
        return "".join(self.char() for _ in range(size))

    def char(self) -> str:
        if self.random.random() < 0.3:
            return self.random.choice(HOSTILE)
        return chr(self.random.randint(*self.random.choice(SQS_TEXT)))

    def value(self, depth: int = 0):
        pick = self.random
        kind = pick.randrange(9 if depth < 3 else 6)
        if kind == 0:
            return self.text(pick.randrange(40))
        if kind == 1:
            return pick.choice([0, -1, 2**70, 1.5, True, False, None])
        if kind == 2:
            return "x" * pick.choice([31, 32, 33, 128, 129, 256, 257, 300])
        if kind == 3:
            return pick.choice(["1.2.3.4", "::1", "::ffff:10.0.0.1", "999.1.1.1", "1.2.3.4:80"])
        if kind == 4:
            return pick.choice(["2026-02-30", "9999-12-31T23:59:59-14:00", "2026-11-30T10:00Z"])
        if kind == 5:
            return self.text(pick.randrange(1, 5))
        if kind == 6:
            return [self.value(depth + 1) for _ in range(pick.randrange(3))]
        return {self.text(5): self.value(depth + 1) for _ in range(pick.randrange(3))}

    def body(self) -> str:
        pick = self.random
        login = dict(pick.choice(self.logins))
        kind = pick.randrange(10)
        if kind <= 2:  # valid, or one field hostile
            if kind:
                login[pick.choice(FIELDS)] = self.value()
            return json.dumps(login, ensure_ascii=pick.random() < 0.5)
        if kind == 3:  # raw numbers and constants json.dumps cannot write
            raw = pick.choice(["1e400", "-1e400", "NaN", "Infinity", "1" * 400, "0.1e-400"])
            return json.dumps(login)[:-1] + f', "{pick.choice(FIELDS + ("extra",))}": {raw}}}'
        if kind == 4:  # duplicate keys, the last one wins
            name = pick.choice(FIELDS)
            return json.dumps(login)[:-1] + f", {json.dumps(name)}: {json.dumps(self.value())}}}"
        if kind == 5:  # any JSON value
            return json.dumps(self.value())
        if kind == 6:  # deep nesting or a huge string
            if pick.random() < 0.5:
                depth = pick.choice([10, 500, 2000])
                return "[" * depth + json.dumps(login) + "]" * depth
            return json.dumps(login | {pick.choice(FIELDS + ("pad",)): "y" * 100_000})
        if kind == 7:  # BOM or spaces before, truncated
            return pick.choice(["\ufeff", " \n", ""]) + json.dumps(login)[: pick.randrange(1, 200)]
        return self.text(pick.randrange(1, 80))


def sqs_safe(body: str) -> str:
    """The body with each character SQS refuses in a message (raw NUL, ESC, lone surrogates;
    escaped in JSON they are fine) replaced by "?"."""
    allowed = ("\t", "\n", "\r")
    kept = (c if c in allowed or any(a <= ord(c) <= b for a, b in SQS_TEXT) else "?" for c in body)
    return "".join(kept)


def expected_valid(bodies: list[str]) -> int:
    key = MaskKey("fuzz-run-judge-key-0123456789")
    sent = datetime.now(timezone.utc)
    valid = 0
    for index, body in enumerate(bodies):
        try:
            to_row(body, key, str(index), sent)
            valid += 1
        except InvalidMessage:
            pass
    return valid


def send(sqs, queue_url: str, bodies: list[str]) -> None:
    def batch(start: int) -> None:
        entries = [
            {"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies[start : start + 10])
        ]
        failed = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries).get("Failed")
        if failed:
            raise SystemExit(f"SQS refused bodies {start}+: {failed}")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(batch, range(0, len(bodies), 10)))


def fuzz_run(args: argparse.Namespace) -> dict:
    generator = Bodies(args.seed)
    bodies = [generator.body() for _ in range(args.bodies)]
    bodies = [sqs_safe(body) for body in bodies]
    valid = expected_valid(bodies)
    environment = child_environment(secrets.token_hex(32))
    with ExitStack() as cleanup:
        endpoint = cleanup.enter_context(sqs_endpoint(args.endpoint_url))
        database = cleanup.enter_context(fresh_database(args.database_url))
        init_table(database, environment)
        sqs = sqs_client(endpoint.url, pool=16)
        queues = cleanup.enter_context(fresh_queues(sqs, "fuzz-run", with_dlq=True))
        started = time.monotonic()
        send(sqs, queues.source, bodies)
        console.print(f"{len(bodies):,} bodies sent in {time.monotonic() - started:.1f} s")
        rate, rss, code, summary = loginetl_run(
            queues, endpoint.url, database, environment, args.concurrency, 500, None
        )
        problems = check_run(sqs, queues, database, len(bodies), len(bodies) - valid, code, summary)
    loaded, dead = summary.get("loaded", 0), summary.get("dead_lettered", 0)
    if loaded + dead != len(bodies):
        problems.append(f"loaded {loaded} + dead-lettered {dead} != sent {len(bodies)}")
    return {
        "bodies": len(bodies), "seed": args.seed, "expected_valid": valid, "loaded": loaded,
        "dead_lettered": dead, "exit_code": code, "seconds": round(rate.seconds, 1),
        "messages_per_second": round(rate.per_second), "peak_rss_mb": round(rss),
        "largest_body_bytes": max(len(body.encode()) for body in bodies),
        "problems": problems,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bodies", type=int, default=10_000, help="how many (default 10000)")
    parser.add_argument("--seed", type=int, default=16, help="the generator's seed (default 16)")
    parser.add_argument("--concurrency", type=int, default=4, help="loginetl --concurrency")
    parser.add_argument("--endpoint-url", help="an SQS endpoint already running")
    parser.add_argument("--database-url", default=ADMIN_URL, help="PostgreSQL admin URL")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    result = fuzz_run(args)
    if args.json:
        print(json.dumps(result))
    else:
        verdict = "; ".join(result["problems"]) or "every body loaded or dead-lettered"
        print(
            f"{result['bodies']:,} bodies (seed {result['seed']}): {result['loaded']:,} loaded, "
            f"{result['dead_lettered']:,} dead-lettered, exit {result['exit_code']}, "
            f"{result['seconds']} s ({result['messages_per_second']:,}/s), peak RSS "
            f"{result['peak_rss_mb']} MB: {verdict}"
        )
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
