"""The bench's measurements: the bare drain, the naive loop and `loginetl run` (as a subprocess,
with its peak RSS and, optionally, py-spy), the checks of every run, and the rounds of each
queue size. For python -m benchmarks."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import boto3
import psycopg2

from .environment import (
    BARE,
    EXTRA_MASKED,
    LOGINETL,
    RAW,
    RECEIVE_WAIT,
    REGION,
    Endpoint,
    Messages,
    Queues,
    Rate,
    console,
    cpu_seconds,
    cpu_since,
    empty_table,
    fresh_queues,
    query_one,
    queue_depth,
    seed_queue,
    Variant,
)

# --- what gets measured ---------------------------------------------------------------------


@dataclass
class RunResult:
    rate: Rate
    peak_rss_mb: float
    exit_code: int
    summary: dict  # loginetl's own --json summary
    problems: list[str] = field(default_factory=list)  # checks that failed; empty when all good


@dataclass
class SizeResult:
    messages: int
    invalid: int
    bares: list[Rate] = field(default_factory=list)  # one per round (--repeat)
    runs: list[RunResult] = field(default_factory=list)

    @property
    def bare(self) -> Rate:
        return median(self.bares, key=lambda rate: rate.per_second)

    @property
    def run(self) -> RunResult:
        return median(self.runs, key=lambda run: run.rate.per_second)

    @property
    def peak_rss_mb(self) -> float:
        return max(run.peak_rss_mb for run in self.runs)

    @property
    def problems(self) -> list[str]:
        found = [problem for run in self.runs for problem in run.problems]
        found += [f"bare drain got {bare.messages} of {self.messages}" for bare in self.bares
                  if bare.messages != self.messages]  # fmt: skip
        return found


def median(items: list, key):
    """The middle one (the lower middle for an even count): a real measurement, not a mean."""
    return sorted(items, key=key)[(len(items) - 1) // 2]


# --- the three consumers --------------------------------------------------------------------


def bare_drain(endpoint_url: str, queue_url: str, concurrency: int) -> Rate:
    """benchmarks/bare.py as a process of its own: its rate, and its CPU time from wait4."""
    command = [sys.executable, str(BARE), endpoint_url, queue_url, str(concurrency)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    drained = json.loads(process.stdout.read())
    process.stdout.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"the bare drain exited {os.waitstatus_to_exitcode(status)}")
    return Rate(drained["messages"], drained["seconds"], cpu=usage.ru_utime + usage.ru_stime)


def naive_drain(endpoint_url: str, queues: Queues, database_url: str, mask_key: str) -> Rate:
    """What hand-written loaders do: one message at a time, receive, INSERT, COMMIT, delete."""
    sqs = boto3.session.Session().client(
        "sqs", endpoint_url=endpoint_url, region_name=REGION,
        aws_access_key_id="test", aws_secret_access_key="test",
    )  # fmt: skip
    key = mask_key.encode()
    key_id = hmac.new(key, b"loginetl key id", hashlib.sha256).hexdigest()[:16]
    connection = psycopg2.connect(database_url)
    done = 0
    started = time.monotonic()
    try:
        while True:
            received = sqs.receive_message(
                QueueUrl=queues.source, MaxNumberOfMessages=1, WaitTimeSeconds=RECEIVE_WAIT,
                MessageSystemAttributeNames=["SentTimestamp"],
            ).get("Messages", [])  # fmt: skip
            if not received:
                break
            message = received[0]
            row = naive_row(message, key, key_id)
            if row is None:
                sqs.send_message(QueueUrl=queues.dlq, MessageBody=message["Body"])
            else:
                with connection.cursor() as cursor:
                    cursor.execute(
                        "INSERT INTO user_logins (user_id, device_type, masked_ip,"
                        " masked_device_id, locale, app_version, create_date, sqs_message_id,"
                        " mask_key_id)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                        " ON CONFLICT (sqs_message_id) DO NOTHING",
                        row,
                    )
                connection.commit()
            sqs.delete_message(QueueUrl=queues.source, ReceiptHandle=message["ReceiptHandle"])
            done += 1
    finally:
        connection.close()
    return Rate(done, time.monotonic() - started)


def naive_row(message: dict, key: bytes, key_id: str) -> tuple | None:
    def mask(value: str) -> str:
        return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()

    try:
        login = json.loads(message["Body"])
        ip = str(ipaddress.ip_address(login["ip"]))
        sent = int(message["Attributes"]["SentTimestamp"]) / 1000
        return (
            login["user_id"], login["device_type"], mask(ip), mask(login["device_id"]),
            login.get("locale"), str(login["app_version"]),
            datetime.fromtimestamp(sent, timezone.utc).date(), message["MessageId"], key_id,
        )  # fmt: skip
    except (ValueError, KeyError, TypeError):
        return None


def loginetl_run(
    queues: Queues,
    endpoint_url: str,
    database_url: str,
    environment: dict[str, str],
    concurrency: int | None,
    batch_size: int,
    profile_to: Path | None,
    flags: tuple[str, ...] = (),
) -> tuple[Rate, float, int, dict]:
    """`loginetl run --json` as a subprocess: (rate from wall time with its CPU time, peak RSS
    in MB, exit code, its summary). Peak RSS and CPU are the kernel's own account (wait4), not
    samples. No `concurrency`: loginetl's default (adaptive)."""
    command = [
        str(LOGINETL), "run", "--json", "--queue-url", queues.source, "--endpoint-url",
        endpoint_url, "--database-url", database_url, "--batch-size", str(batch_size),
        "--wait-time", str(RECEIVE_WAIT),
    ] + (["--concurrency", str(concurrency)] if concurrency else []) + list(flags)  # fmt: skip
    # Its own folder as working directory, so no .env of the repo slips settings in.
    with tempfile.TemporaryDirectory(prefix="loginetl-bench-") as folder:
        out, err = Path(folder, "stdout"), Path(folder, "stderr")
        with out.open("wb") as stdout, err.open("wb") as stderr:
            started = time.monotonic()
            process = subprocess.Popen(
                command, env=environment, cwd=folder, stdout=stdout, stderr=stderr
            )
            profiler = attach_profiler(process.pid, profile_to)
            _, status, usage = os.wait4(process.pid, 0)
            seconds = time.monotonic() - started
            process.returncode = os.waitstatus_to_exitcode(status)  # already reaped by wait4
        if profiler is not None:
            profiler.wait(timeout=60)
        text = out.read_text()
        try:
            summary = json.loads(text[text.index("{") :])
        except ValueError:
            summary = {"error": (err.read_text().strip() or text.strip())[-500:]}
    received = int(summary.get("received", 0))
    cpu = usage.ru_utime + usage.ru_stime
    return Rate(received, seconds, cpu=cpu), usage.ru_maxrss / 1024, process.returncode, summary


def attach_profiler(pid: int, profile_to: Path | None) -> subprocess.Popen | None:
    """py-spy sampling the run from outside (so the RSS measured stays the run's own)."""
    if profile_to is None:
        return None
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    profile_to.mkdir(parents=True, exist_ok=True)
    target = profile_to / f"loginetl-run-{pid}.txt"  # collapsed stacks: flamegraph.pl, speedscope
    return subprocess.Popen(
        # --nonblocking: never pause the run (the default stops it at every sample, which
        # halved its rate here); --gil: only the thread holding the GIL, i.e. where CPU goes.
        [py_spy, "record", "--pid", str(pid), "--nonblocking", "--gil", "--threads",
         "--format", "raw", "--output", str(target)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def check_run(
    sqs, queues: Queues, database_url: str, n: int, invalid: int, exit_code: int, summary: dict
) -> list[str]:
    """Every valid message is a row, every invalid one is in the DLQ, nothing is left behind."""
    problems = []
    if exit_code != 0:
        problems.append(f"exit code {exit_code}: {summary.get('error')}")
    rows = query_one(database_url, "SELECT count(*) FROM user_logins")
    if rows != n - invalid:
        problems.append(f"{rows} rows, expected {n - invalid}")
    dead = sum(queue_depth(sqs, queues.dlq))
    if dead != invalid:
        problems.append(f"{dead} messages in the DLQ, expected {invalid}")
    left = sum(queue_depth(sqs, queues.source))
    if left:
        problems.append(f"{left} messages left on the source queue")
    return problems


def check_kept_extra(database_url: str, valid: int) -> list[str]:
    """Every row keeps its extra fields, and none holds the masked one raw."""
    problems = []
    kept = query_one(database_url, "SELECT count(*) FROM user_logins WHERE extra ? 'plan'")
    if kept != valid:
        problems.append(f"{kept} rows kept their extra fields, expected {valid}")
    raw = query_one(
        database_url,
        f"SELECT count(*) FROM user_logins WHERE extra->>'{EXTRA_MASKED}' LIKE '%@%'",
    )
    if raw:
        problems.append(f"{raw} rows hold {EXTRA_MASKED} unmasked")
    return problems


# --- the rounds ----------------------------------------------------------------------------


def measure_naive(sqs, endpoint: Endpoint, database: str, mask_key: str, args) -> Rate:
    n = args.naive_messages
    with fresh_queues(sqs, "bench-naive", with_dlq=True) as queues:
        seed_queue(sqs, queues.source, n, args.seed_threads)
        console.print(f"naive loop on {n:,} messages")
        before = cpu_seconds(endpoint.pid)
        rate = naive_drain(endpoint.url, queues, database, mask_key)
        rate.endpoint_cpu = cpu_since(endpoint.pid, before)
    empty_table(database)
    console.print(f"  naive: {rate.per_second:,.0f} messages/s")
    return rate


def measure_size(
    sqs, endpoint: Endpoint, database: str, environment: dict, n: int, args
) -> SizeResult:
    """--repeat rounds of bare drain then loginetl run, each on freshly seeded queues."""
    size = SizeResult(n, Messages.invalid_count(n))
    for round_number in range(1, args.repeat + 1):
        if args.repeat > 1:
            console.print(f"[bold]{n:,} messages, round {round_number} of {args.repeat}[/]")
        size.bares.append(measure_bare(sqs, endpoint, n, args, args.concurrency))
        size.runs.append(
            measure_run(sqs, endpoint, database, environment, n, args, args.concurrency)
        )
    return size


def measure_bare(sqs, endpoint: Endpoint, n: int, args, threads: int) -> Rate:
    with fresh_queues(sqs, f"bench-bare-{n}", with_dlq=False) as queues:
        seeded = seed_queue(sqs, queues.source, n, args.seed_threads)
        console.print(
            f"{n:,} messages seeded ({seeded.per_second:,.0f}/s); bare drain, {threads} threads"
        )
        before = cpu_seconds(endpoint.pid)
        bare = bare_drain(endpoint.url, queues.source, threads)
        bare.endpoint_cpu = cpu_since(endpoint.pid, before)
    console.print(
        f"  bare drain: {bare.per_second:,.0f} messages/s"
        f" ({bare.messages:,} in {bare.seconds:.1f} s), CPU {bare.ms_per_message:.3f} ms/message"
    )
    if bare.messages != n:
        console.print(f"  [red]bare drain got {bare.messages} of {n} messages[/]")
    return bare


def measure_run(
    sqs,
    endpoint: Endpoint,
    database: str,
    environment: dict,
    n: int,
    args,
    concurrency: int | None,
    variant: Variant = RAW,
) -> RunResult:
    """On freshly seeded queues; `concurrency` None: loginetl's default (adaptive)."""
    invalid = Messages.invalid_count(n)
    with fresh_queues(sqs, f"bench-run-{n}", with_dlq=True) as queues:
        seed_queue(sqs, queues.source, n, args.seed_threads, variant)
        flag = f"--concurrency {concurrency}" if concurrency else "(defaults)"
        console.print(f"{n:,} messages seeded ({invalid} invalid); loginetl run {flag}")
        before = cpu_seconds(endpoint.pid)
        rate, rss, code, summary = loginetl_run(
            queues, endpoint.url, database, environment | dict(variant.environment),
            concurrency, args.batch_size, args.py_spy, variant.flags,
        )  # fmt: skip
        rate.endpoint_cpu = cpu_since(endpoint.pid, before)
        problems = check_run(sqs, queues, database, n, invalid, code, summary)
        if variant.keeps_extra:
            problems += check_kept_extra(database, n - invalid)
    empty_table(database)
    verdict = "checks passed" if not problems else "[red]" + "; ".join(problems) + "[/]"
    console.print(
        f"  loginetl run: {rate.per_second:,.0f} messages/s ({rate.seconds:.1f} s),"
        f" peak RSS {rss:.0f} MB, CPU {rate.ms_per_message:.3f} ms/message, {verdict}"
    )
    return RunResult(rate, rss, code, summary, problems)
