#!/usr/bin/env python3
"""How fast `loginetl run` drains a queue, against the endpoint's own limit and the naive loop.

For each queue size N, on the same SQS endpoint and the same PostgreSQL:

  bare drain   receive (10 per call) + DeleteMessageBatch from --concurrency threads, no
               database: the most any consumer can get out of this endpoint;
  loginetl run the real CLI as a subprocess on N messages (1% invalid): messages/s from wall
               time, and its peak RSS; rows and dead-letter queue checked afterwards;
  naive        receive one, INSERT, COMMIT, delete one, in a loop (once, on --naive-messages).

Then the ratios, and the drain targets marked met or not met. When the SQS server is our
LocalStack, its CPU per message and busy share of a core are shown too: equal per-message cost in
both drains and a server near 100% busy mean the server, not loginetl, sets the pace. On a small
machine the figures move by 10-20% from one round to the next: --repeat R reports medians.

Example:

    .venv/bin/python -m benchmarks --messages 10000 100000 --concurrency 4
    .venv/bin/python -m benchmarks --messages 2000 --json
    .venv/bin/python -m benchmarks --endpoint-url http://127.0.0.1:4566   # an SQS already up
    .venv/bin/python -m benchmarks --messages 20000 --py-spy /tmp/profiles  # where time goes
    .venv/bin/python -m benchmarks --stream --messages 50000 --shards 4 16  # run --stream
    .venv/bin/python -m benchmarks --messages 20000 --rtt 0 20 50  # at real SQS latency

Without --endpoint-url it starts LocalStack itself (scripts/localstack.py, no Docker) and stops
it afterwards. It creates a fresh database (dropped afterwards) and fresh queues (deleted).

Then the costs of the privacy operations: masking CPU per message in siv vs hmac mode
(target: siv within 2x), and rekey throughput on --rekey-rows siv rows. `--privacy-only`
measures just those (PostgreSQL only, no SQS server):

    .venv/bin/python -m benchmarks --privacy-only --rekey-rows 100000

With --rtt, instead: the bench at real round-trip times on the first --messages N (rtt.py):
bare consumers, `run` with its defaults and with each --fixed concurrency, behind a proxy that
delays each direction, and CPU per message; the round-trip targets marked met or not met. The CPU
figures move with the machine: --repeat 3 measures three rounds of every consumer, one after
the other, and reports the median of the rounds' own ratios.

With --envelopes or --keep-extra, instead: CPU per message of SNS-wrapped bodies against raw
ones, or of `run --keep-extra` against the same logins run without it (compare.py).

This file is the command line; the set-up is in environment.py, the measurements in
measure.py, compare.py and privacy.py, and the report (results, targets, tables, JSON) in
report.py.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
from contextlib import ExitStack
from pathlib import Path

from . import privacy
from .compare import COMPARISONS, measure_comparison, print_comparison
from .environment import (
    byte_compile_loginetl,
    child_environment,
    fresh_database,
    init_table,
    loginetl_revision,
    sqs_client,
    sqs_endpoint,
)
from .measure import measure_naive, measure_size
from .report import print_json, print_privacy, print_tables, results
from .rtt import measure_rtts, print_rtt_tables, rtt_results

# LOGINETL_ADMIN_DATABASE_URL points it at another server (the tests run it against theirs).
ADMIN_URL = os.environ.get(
    "LOGINETL_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)

# The integer options: flag -> (default, help without its "(default N)").
INTEGER_OPTIONS = {
    "--concurrency": (4, "threads for the bare drain and loginetl's --concurrency"),
    "--batch-size": (500, "loginetl --batch-size"),
    "--naive-messages": (2_000, "messages for the naive loop, which is slow"),
    "--repeat": (
        1,
        "rounds per queue size (with --rtt: of every consumer per round trip);"
        " medians are reported",
    ),
    "--seed-threads": (8, "threads sending the messages"),
    "--rekey-rows": (100_000, "siv rows to rekey"),
    "--mask-messages": (20_000, "messages masked per mode for the masking CPU figure"),
}


def privacy_costs(args: argparse.Namespace) -> dict:
    """The privacy costs, on a fresh database of their own."""
    with fresh_database(args.database_url) as database:
        return privacy.measure(database, args.mask_messages, args.rekey_rows, privacy.REKEY_BATCH)


def bench(args: argparse.Namespace) -> dict:
    if args.privacy_only:
        return {"privacy": privacy_costs(args)}
    mask_key = secrets.token_hex(32)
    byte_compile_loginetl()
    environment = child_environment(mask_key)
    args.revision = loginetl_revision()  # before the run: the code may change meanwhile
    with ExitStack() as cleanup:
        endpoint = cleanup.enter_context(sqs_endpoint(args.endpoint_url))
        database = cleanup.enter_context(fresh_database(args.database_url))
        init_table(database, environment)
        sqs = sqs_client(endpoint.url, pool=2 * max(args.concurrency, args.seed_threads))
        for comparison in COMPARISONS:
            if getattr(args, comparison.key):
                return {comparison.key: measure_comparison(
                    comparison, sqs, endpoint, database, environment, args
                )}  # fmt: skip
        if args.rtt:
            return rtt_results(
                args, endpoint.url, measure_rtts(sqs, endpoint, database, environment, args)
            )
        naive = measure_naive(sqs, endpoint, database, mask_key, args)
        sizes = [measure_size(sqs, endpoint, database, environment, n, args) for n in args.messages]
    return results(args, endpoint.url, naive, sizes) | {"privacy": privacy_costs(args)}


def add_integer_options(parser: argparse.ArgumentParser, *flags: str) -> None:
    for flag in flags:
        default, text = INTEGER_OPTIONS[flag]
        parser.add_argument(flag, type=int, default=default, help=f"{text} (default {default})")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Example: .venv/bin/python -m benchmarks --messages 10000 100000 --concurrency 4",
    )
    parser.add_argument(
        "--messages", type=int, nargs="+", default=[10_000, 100_000], metavar="N",
        help="queue sizes to measure (default: 10000 100000)",
    )  # fmt: skip
    add_integer_options(parser, "--concurrency", "--batch-size", "--naive-messages")
    parser.add_argument(
        "--endpoint-url", help="an SQS endpoint already running (default: start LocalStack)"
    )
    parser.add_argument(
        "--database-url",
        default=ADMIN_URL,
        help=f"PostgreSQL admin URL; a fresh database is made there (default {ADMIN_URL})",
    )
    add_integer_options(parser, "--repeat", "--seed-threads", "--rekey-rows", "--mask-messages")
    parser.add_argument(
        "--privacy-only", action="store_true",
        help="measure only the privacy costs (masking CPU per mode, rekey throughput)",
    )  # fmt: skip
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="profile each loginetl run with py-spy (collapsed stacks into DIR)",
    )
    parser.add_argument(
        "--rtt", type=int, nargs="+", metavar="MS",
        help="round-trip times to measure at, through a latency proxy (e.g. 0 20 50)",
    )  # fmt: skip
    parser.add_argument(
        "--fixed", type=int, nargs="+", default=[4, 8, 16], metavar="N",
        help="with --rtt: the fixed --concurrency values to compare (default: 4 8 16)",
    )  # fmt: skip
    parser.add_argument(
        "--envelopes", action="store_true",
        help="instead: CPU per message of SNS-wrapped bodies against raw ones, on the first "
        "--messages N (--repeat rounds)",
    )  # fmt: skip
    parser.add_argument(
        "--keep-extra", action="store_true",
        help="instead: CPU per message of run --keep-extra (one field masked) against the same "
        "logins with their extra fields only counted, on the first --messages N",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = parser.parse_args(argv)
    counts = (
        args.messages
        + args.fixed
        + [args.concurrency, args.naive_messages, args.repeat, args.batch_size]
    )
    if min(counts) < 1 or min(args.rtt or [0]) < 0:
        parser.error(
            "--messages, --fixed, --concurrency, --naive-messages, --repeat and --batch-size"
            " must be at least 1, --rtt at least 0"
        )
    return args


def interrupt(signum, frame) -> None:
    """SIGTERM unwinds like Ctrl-C, so the database, queues and LocalStack are cleaned up."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--stream" in argv:  # `run --stream` against bare GetRecords: stream.py
        from .stream import main as bench_stream

        return bench_stream([arg for arg in argv if arg != "--stream"])
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, interrupt)
    result = bench(args)
    if args.json:
        print_json(result)
    elif compared := [c for c in COMPARISONS if c.key in result]:
        print_comparison(compared[0], result[compared[0].key])
    elif args.rtt:
        print_rtt_tables(result)
    elif not args.privacy_only:
        print_tables(result)
    if not args.json and "privacy" in result:
        print_privacy(result["privacy"])
    privacy_passed = result.get("privacy", {}).get("checks_passed", True)
    passed = privacy_passed and result.get("checks_passed", True)
    passed = passed and not any(result.get(c.key, {}).get("problems") for c in COMPARISONS)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
