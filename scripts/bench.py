#!/usr/bin/env python3
"""How fast `loginetl run` drains a queue, against the endpoint's own limit and the naive loop.

For each queue size N, on the same SQS endpoint and the same PostgreSQL:

  bare drain   receive (10 per call) + DeleteMessageBatch from --concurrency threads, no
               database: the most any consumer can get out of this endpoint;
  loginetl run the real CLI as a subprocess on N messages (1% invalid): messages/s from wall
               time, and its peak RSS; rows and dead-letter queue checked afterwards;
  naive        receive one, INSERT, COMMIT, delete one, in a loop (once, on --naive-messages).

Then the ratios, and the targets of issue 5 marked met or not met. When the SQS server is our
LocalStack, its CPU per message and busy share of a core are shown too: equal per-message cost in
both drains and a server near 100% busy mean the server, not loginetl, sets the pace. On a small
machine the figures move by 10-20% from one round to the next: --repeat R reports medians.

Example:

    .venv/bin/python scripts/bench.py --messages 10000 100000 --concurrency 4
    .venv/bin/python scripts/bench.py --messages 2000 --json
    .venv/bin/python scripts/bench.py --endpoint-url http://127.0.0.1:4566   # an SQS already up
    .venv/bin/python scripts/bench.py --messages 20000 --py-spy /tmp/profiles  # where time goes

Without --endpoint-url it starts LocalStack itself (scripts/localstack.py, no Docker) and stops
it afterwards. It creates a fresh database (dropped afterwards) and fresh queues (deleted).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import importlib.util
import ipaddress
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import boto3
import botocore.config
import psycopg2
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
LOGINETL = REPO / ".venv" / "bin" / "loginetl"
SAMPLE = REPO / "loginetl" / "data" / "sample_data.json"
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REGION = "us-east-1"
INVALID_EVERY = 100  # one message in a hundred is invalid: 1%
RECEIVE_WAIT = 1  # long-poll seconds for every drain here: an empty receive means drained

# Issue 5's targets.
RUN_VS_BARE = 0.9
RUN_VS_NAIVE = 10.0
RSS_LIMIT_MB = 150.0
RSS_GROWTH = 1.2

console = Console(stderr=True)  # progress; the results go to stdout


# --- what gets measured ---------------------------------------------------------------------


@dataclass
class Rate:
    messages: int
    seconds: float
    endpoint_cpu: float | None = None  # CPU seconds the SQS server spent meanwhile, when known

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    @property
    def endpoint_ms_per_message(self) -> float | None:
        if self.endpoint_cpu is None or not self.messages:
            return None
        return 1000 * self.endpoint_cpu / self.messages

    @property
    def endpoint_busy(self) -> float | None:
        """Share of one core the server used: near 1 means it is what limits the rate."""
        return (
            self.endpoint_cpu / self.seconds
            if self.endpoint_cpu is not None and self.seconds
            else None
        )


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


# --- the endpoint, the database, the queues -------------------------------------------------


def load_localstack_module():
    """scripts/localstack.py, imported by path (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "localstack_launcher", REPO / "scripts" / "localstack.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Endpoint:
    url: str
    pid: int | None = None  # the server's process when it is our LocalStack: its CPU is measured


@contextmanager
def sqs_endpoint(endpoint_url: str | None) -> Iterator[Endpoint]:
    """The given endpoint, or a LocalStack started for the bench and stopped afterwards."""
    launcher = load_localstack_module()
    already = launcher.status()
    if endpoint_url or already:  # one given, or one started by `scripts/localstack.py up`: kept
        url = endpoint_url or already
        console.print(f"using the SQS endpoint at {url}")
        yield Endpoint(url, launcher.server_pid() if url == already else None)
        return
    console.print("starting LocalStack (scripts/localstack.py)")
    url = launcher.start(quiet=False)
    try:
        yield Endpoint(url, launcher.server_pid())
    finally:
        launcher.stop()
        console.print("stopped LocalStack")


def cpu_seconds(pid: int | None) -> float | None:
    """CPU time (user + system) a process has used so far, from /proc; None when unknown."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def cpu_since(pid: int | None, before: float | None) -> float | None:
    now = cpu_seconds(pid)
    return now - before if now is not None and before is not None else None


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


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """A new database for this bench, dropped afterwards; yields its URL."""
    name = f"loginetl_bench_{secrets.token_hex(4)}"
    admin(admin_url, f"CREATE DATABASE {name}")
    parts = urlsplit(admin_url)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        admin(admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def admin(admin_url: str, statement: str) -> None:
    connection = psycopg2.connect(admin_url, connect_timeout=10)
    connection.autocommit = True  # CREATE/DROP DATABASE cannot run in a transaction
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


def query_one(database_url: str, statement: str):
    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute(statement)
        value = cursor.fetchone()[0]
    connection.close()
    return value


def init_table(database_url: str, environment: dict[str, str]) -> None:
    """The table exactly as loginetl makes it."""
    subprocess.run(
        [str(LOGINETL), "init-db", "--database-url", database_url, "--json"],
        env=environment, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip


def empty_table(database_url: str) -> None:
    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute("TRUNCATE user_logins")
    connection.close()


@dataclass(frozen=True)
class Queues:
    source: str
    dlq: str | None


@contextmanager
def fresh_queues(sqs, name: str, with_dlq: bool) -> Iterator[Queues]:
    """A new source queue (and a DLQ named in its RedrivePolicy), deleted afterwards."""
    name = f"{name}-{secrets.token_hex(3)}"
    created: list[str] = []
    try:
        dlq = None
        attributes = {}
        if with_dlq:
            dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
            created.append(dlq)
            arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])
            policy = {"deadLetterTargetArn": arn["Attributes"]["QueueArn"], "maxReceiveCount": "5"}
            attributes["RedrivePolicy"] = json.dumps(policy)
        source = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        created.append(source)
        yield Queues(source, dlq)
    finally:
        for url in created:
            try:
                sqs.delete_queue(QueueUrl=url)
            except Exception:  # best effort: the endpoint may be going away with us
                pass


def queue_depth(sqs, queue_url: str) -> tuple[int, int]:
    """(visible, in flight)."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
    return int(attributes[names[0]]), int(attributes[names[1]])


# --- the messages ---------------------------------------------------------------------------


class Messages:
    """Login bodies shaped like the sample data, each with its own user_id, ip and device_id;
    every INVALID_EVERY-th one is invalid (three kinds in turn)."""

    INVALID = (
        '{"foo": "oops_wrong_msg_type", "bar": "123"}',  # the sample's own invalid message
        '{"user_id": "not json',
        None,  # a login with an ip that is not an address; built below
    )

    def __init__(self, seed: int = 5) -> None:
        sample = json.loads(SAMPLE.read_text())
        self.templates = [login for login in sample if "user_id" in login]
        self.random = random.Random(seed)
        self.lock = threading.Lock()  # bodies are made from several seeding threads

    @staticmethod
    def invalid_count(n: int) -> int:
        return n // INVALID_EVERY

    def body(self, index: int) -> str:
        with self.lock:
            bits = self.random.getrandbits(128)
            ip = str(ipaddress.IPv4Address(self.random.getrandbits(32)))
            device = self.random.randrange(10**9)
        login = dict(self.templates[index % len(self.templates)])
        login["user_id"] = str(uuid.UUID(int=bits, version=4))
        login["ip"] = ip
        login["device_id"] = (
            f"{device // 10**6:03d}-{device // 10**4 % 100:02d}-{device % 10**4:04d}"
        )
        if index % INVALID_EVERY == INVALID_EVERY - 1:
            kind = self.INVALID[(index // INVALID_EVERY) % len(self.INVALID)]
            return kind or json.dumps(login | {"ip": "999.1.2.3"})
        return json.dumps(login)


def seed_queue(sqs, queue_url: str, n: int, threads: int) -> Rate:
    """Send n messages with SendMessageBatch from several threads; check they are all there."""
    messages = Messages()

    def send_batch(start: int) -> None:
        entries = [
            {"Id": str(index), "MessageBody": messages.body(index)}
            for index in range(start, min(start + 10, n))
        ]
        for _ in range(5):  # resend only the entries SQS reports as failed
            failed = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries).get("Failed", [])
            if not failed:
                return
            ids = {entry["Id"] for entry in failed}
            entries = [entry for entry in entries if entry["Id"] in ids]
        raise RuntimeError(f"{len(entries)} messages could not be sent: {failed[0]}")

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(send_batch, range(0, n, 10)))
    rate = Rate(n, time.monotonic() - started)
    visible, _ = queue_depth(sqs, queue_url)
    if visible != n:
        raise RuntimeError(f"seeded {n} messages but the queue shows {visible}")
    return rate


# --- the three consumers --------------------------------------------------------------------


def bare_drain(sqs, queue_url: str, concurrency: int) -> Rate:
    """Receive 10 and delete them, from `concurrency` threads, until each sees an empty receive."""
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
    return Rate(sum(drained), time.monotonic() - started)


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
    concurrency: int,
    batch_size: int,
    profile_to: Path | None,
) -> tuple[Rate, float, int, dict]:
    """`loginetl run --json` as a subprocess: (rate from wall time, peak RSS in MB, exit code,
    its summary). Peak RSS is the kernel's own account (ru_maxrss from wait4), not a sample."""
    command = [
        str(LOGINETL), "run", "--json", "--queue-url", queues.source, "--endpoint-url",
        endpoint_url, "--database-url", database_url, "--batch-size", str(batch_size),
        "--wait-time", str(RECEIVE_WAIT), "--concurrency", str(concurrency),
    ]  # fmt: skip
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
    return Rate(received, seconds), usage.ru_maxrss / 1024, process.returncode, summary


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


# --- the whole bench ------------------------------------------------------------------------


def loginetl_revision() -> str:
    """The commit measured, "+changes" when loginetl/ differs from it: figures name their code."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+changes" if git("status", "--porcelain", "--", "loginetl") else "")


def child_environment(mask_key: str) -> dict[str, str]:
    """The environment for loginetl: ours minus any loginetl or AWS settings, plus the key."""
    environment = {
        name: value for name, value in os.environ.items()
        if not name.startswith(("LOGINETL_", "AWS_"))
    }  # fmt: skip
    return environment | {
        "LOGINETL_MASK_KEY": mask_key,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": REGION,
    }


def bench(args: argparse.Namespace) -> dict:
    mask_key = secrets.token_hex(32)
    environment = child_environment(mask_key)
    args.revision = loginetl_revision()  # before the run: the code may change meanwhile
    with ExitStack() as cleanup:
        endpoint = cleanup.enter_context(sqs_endpoint(args.endpoint_url))
        database = cleanup.enter_context(fresh_database(args.database_url))
        init_table(database, environment)
        sqs = sqs_client(endpoint.url, pool=2 * max(args.concurrency, args.seed_threads))

        naive = measure_naive(sqs, endpoint, database, mask_key, args)
        sizes = [
            measure_size(sqs, endpoint, database, environment, n, args)
            for n in args.messages
        ]
    return results(args, endpoint.url, naive, sizes)


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
        size.bares.append(measure_bare(sqs, endpoint, n, args))
        size.runs.append(measure_run(sqs, endpoint, database, environment, n, args))
    return size


def measure_bare(sqs, endpoint: Endpoint, n: int, args) -> Rate:
    with fresh_queues(sqs, f"bench-bare-{n}", with_dlq=False) as queues:
        seeded = seed_queue(sqs, queues.source, n, args.seed_threads)
        console.print(
            f"{n:,} messages seeded ({seeded.per_second:,.0f}/s);"
            f" bare drain, {args.concurrency} threads"
        )
        before = cpu_seconds(endpoint.pid)
        bare = bare_drain(sqs, queues.source, args.concurrency)
        bare.endpoint_cpu = cpu_since(endpoint.pid, before)
    console.print(
        f"  bare drain: {bare.per_second:,.0f} messages/s"
        f" ({bare.messages:,} in {bare.seconds:.1f} s)"
    )
    if bare.messages != n:
        console.print(f"  [red]bare drain got {bare.messages} of {n} messages[/]")
    return bare


def measure_run(
    sqs, endpoint: Endpoint, database: str, environment: dict, n: int, args
) -> RunResult:
    invalid = Messages.invalid_count(n)
    with fresh_queues(sqs, f"bench-run-{n}", with_dlq=True) as queues:
        seed_queue(sqs, queues.source, n, args.seed_threads)
        console.print(f"{n:,} messages seeded ({invalid} invalid); loginetl run")
        before = cpu_seconds(endpoint.pid)
        rate, rss, code, summary = loginetl_run(
            queues, endpoint.url, database, environment,
            args.concurrency, args.batch_size, args.py_spy,
        )  # fmt: skip
        rate.endpoint_cpu = cpu_since(endpoint.pid, before)
        problems = check_run(sqs, queues, database, n, invalid, code, summary)
    empty_table(database)
    verdict = "checks passed" if not problems else "[red]" + "; ".join(problems) + "[/]"
    console.print(
        f"  loginetl run: {rate.per_second:,.0f} messages/s ({rate.seconds:.1f} s),"
        f" peak RSS {rss:.0f} MB, {verdict}"
    )
    return RunResult(rate, rss, code, summary, problems)


def results(args, endpoint: str, naive: Rate, sizes: list[SizeResult]) -> dict:
    rows = []
    for size in sizes:
        rows.append({
            "messages": size.messages,
            "invalid": size.invalid,
            "bare_per_second": round(size.bare.per_second, 1),
            "bare_seconds": round(size.bare.seconds, 2),
            "bare_drained": size.bare.messages,
            "run_per_second": round(size.run.rate.per_second, 1),
            "run_seconds": round(size.run.rate.seconds, 2),
            # loginetl's own figure: from its first receive, without interpreter start-up
            "run_reported_per_second": size.run.summary.get("messages_per_second"),
            "run_exit_code": size.run.exit_code,
            "peak_rss_mb": round(size.peak_rss_mb, 1),  # the highest of the rounds
            "run_vs_bare": round(size.run.rate.per_second / size.bare.per_second, 3),
            "run_vs_naive": round(size.run.rate.per_second / naive.per_second, 1),
            # The SQS server's CPU per message and its busy share of one core, when it is our
            # LocalStack: equal ms/message and busy near 1 in both means the server is the limit.
            "endpoint_cpu_ms_per_message": {
                "bare": rounded(size.bare.endpoint_ms_per_message, 3),
                "run": rounded(size.run.rate.endpoint_ms_per_message, 3),
            },
            "endpoint_busy": {
                "bare": rounded(size.bare.endpoint_busy, 3),
                "run": rounded(size.run.rate.endpoint_busy, 3),
            },
            "checks_passed": not size.problems,
            "problems": size.problems,
            # every round, when --repeat > 1: the figures above are the medians
            "rounds": [
                {"bare_per_second": round(bare.per_second, 1),
                 "run_per_second": round(run.rate.per_second, 1),
                 "peak_rss_mb": round(run.peak_rss_mb, 1)}
                for bare, run in zip(size.bares, size.runs, strict=True)
            ],
        })  # fmt: skip
    smallest = min(rows, key=lambda row: row["messages"])
    largest = max(rows, key=lambda row: row["messages"])
    growth = largest["peak_rss_mb"] / smallest["peak_rss_mb"] if len(rows) > 1 else None
    at = f"at {largest['messages']:,}"
    targets = [
        target(f"run ≥ {RUN_VS_BARE} × bare {at}", largest["run_vs_bare"], RUN_VS_BARE, "≥"),
        target(f"run ≥ {RUN_VS_NAIVE:g} × naive {at}", largest["run_vs_naive"], RUN_VS_NAIVE, "≥"),
        target(
            f"peak RSS ≤ {RSS_LIMIT_MB:g} MB", max(row["peak_rss_mb"] for row in rows),
            RSS_LIMIT_MB, "≤",
        ),
    ]  # fmt: skip
    if growth is not None:
        targets.append(target(
            f"RSS at {largest['messages']:,} ≤ {RSS_GROWTH} × at {smallest['messages']:,}",
            round(growth, 3), RSS_GROWTH, "≤",
        ))  # fmt: skip
    return {
        "command": " ".join([".venv/bin/python", "scripts/bench.py", *sys.argv[1:]]),
        "endpoint": endpoint,
        "loginetl_revision": args.revision,
        "concurrency": args.concurrency,
        "batch_size": args.batch_size,
        "repeat": args.repeat,
        "naive": {
            "messages": naive.messages,
            "per_second": round(naive.per_second, 1),
            "seconds": round(naive.seconds, 2),
            "endpoint_cpu_ms_per_message": rounded(naive.endpoint_ms_per_message, 3),
            "endpoint_busy": rounded(naive.endpoint_busy, 3),
        },
        "sizes": rows,
        "rss_growth": round(growth, 3) if growth is not None else None,
        "targets": targets,
        "checks_passed": all(row["checks_passed"] for row in rows),
    }


def rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def target(name: str, value: float, limit: float, sense: str) -> dict:
    met = value >= limit if sense == "≥" else value <= limit
    return {"target": name, "value": value, "met": met}


def print_tables(result: dict) -> None:
    out = Console()
    if not out.is_terminal:  # piped into a file or a note: wide enough not to wrap the table
        out = Console(width=140)
    title = (
        f"loginetl {result['loginetl_revision']} run vs bare drain ({result['concurrency']}"
        f" threads) and naive loop — batch {result['batch_size']}, "
        f"--concurrency {result['concurrency']}"
    )
    table = Table(title=title, title_justify="left")
    for name in ("messages", "bare msg/s", "run msg/s", "(its own)", "run/bare", "run/naive",
                 "peak RSS", "server ms/msg", "server busy", "checks"):  # fmt: skip
        table.add_column(name, justify="right" if name != "checks" else "left")
    for row in result["sizes"]:
        cpu, busy = row["endpoint_cpu_ms_per_message"], row["endpoint_busy"]
        table.add_row(
            f"{row['messages']:,}",
            f"{row['bare_per_second']:,.0f}",
            f"{row['run_per_second']:,.0f}",
            f"{row['run_reported_per_second'] or 0:,.0f}",
            f"{row['run_vs_bare']:.2f}",
            f"{row['run_vs_naive']:.1f}",
            f"{row['peak_rss_mb']:.0f} MB",
            f"{cpu['bare']:.2f} / {cpu['run']:.2f}" if cpu["run"] is not None else "-",
            f"{busy['bare']:.0%} / {busy['run']:.0%}" if busy["run"] is not None else "-",
            "ok" if row["checks_passed"] else "[red]" + "; ".join(row["problems"]) + "[/]",
        )
    naive = result["naive"]
    rounds = (
        f"; medians of {result['repeat']} rounds, RSS the highest" if result["repeat"] > 1 else ""
    )
    table.caption = (
        f"naive: {naive['per_second']:,.0f} msg/s on {naive['messages']:,} messages; "
        "run msg/s from wall time (start-up included), '(its own)' from loginetl's summary"
        f"{rounds}; server ms/msg and busy: the SQS server's CPU per message and share of one"
        " core, bare / run"
    )
    table.caption_justify = "left"
    out.print(table)
    targets = Table(title="targets (issue 5)", title_justify="left")
    targets.add_column("target")
    targets.add_column("measured", justify="right")
    targets.add_column("")
    for item in result["targets"]:
        targets.add_row(
            item["target"],
            f"{item['value']:g}",
            "[green]met[/]" if item["met"] else "[red]not met[/]",
        )
    out.print(targets)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Example: .venv/bin/python scripts/bench.py --messages 10000 100000 --concurrency 4",
    )
    parser.add_argument(
        "--messages",
        type=int,
        nargs="+",
        default=[10_000, 100_000],
        metavar="N",
        help="queue sizes to measure (default: 10000 100000)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=4,
        help="threads for the bare drain and loginetl's --concurrency (default 4)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=500, help="loginetl --batch-size (default 500)"
    )
    parser.add_argument(
        "--naive-messages",
        type=int,
        default=2_000,
        help="messages for the naive loop, which is slow (default 2000)",
    )
    parser.add_argument(
        "--endpoint-url", help="an SQS endpoint already running (default: start LocalStack)"
    )
    parser.add_argument(
        "--database-url",
        default=ADMIN_URL,
        help=f"PostgreSQL admin URL; a fresh database is made there (default {ADMIN_URL})",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds per queue size; medians are reported (default 1)",
    )
    parser.add_argument(
        "--seed-threads", type=int, default=8, help="threads sending the messages (default 8)"
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="profile each loginetl run with py-spy (collapsed stacks into DIR)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = parser.parse_args(argv)
    if (
        min(args.messages + [args.concurrency, args.naive_messages, args.repeat, args.batch_size])
        < 1
    ):
        parser.error(
            "--messages, --concurrency, --naive-messages, --repeat and --batch-size"
            " must be at least 1"
        )
    return args


def interrupt(signum, frame) -> None:
    """SIGTERM unwinds like Ctrl-C, so the database, queues and LocalStack are cleaned up."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, interrupt)
    result = bench(args)
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        print_tables(result)
    return 0 if result["checks_passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
