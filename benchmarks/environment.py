"""The bench's set-up: the SQS endpoint (LocalStack or a given one), the database, the queues,
the messages and their seeding, and the CPU a process has used. For python -m benchmarks."""

from __future__ import annotations

import compileall
import importlib.util
import ipaddress
import json
import os
import random
import secrets
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2
from rich.console import Console

from tests.support.servers import admin

from .bare import RECEIVE_WAIT, REGION, sqs_client  # noqa: F401 (the bench's, from here)

REPO = Path(__file__).resolve().parent.parent
LOGINETL = REPO / ".venv" / "bin" / "loginetl"
BARE = REPO / "benchmarks" / "bare.py"  # run as a file: it imports boto3 alone
SAMPLE = REPO / "loginetl" / "data" / "sample_data.json"
INVALID_EVERY = 100  # one message in a hundred is invalid: 1%
EXTRA_MASKED = "email"  # the extra field a --keep-extra run masks (LOGINETL_MASK_EXTRA)

console = Console(stderr=True)  # progress; the results go to stdout


# --- a measured rate ------------------------------------------------------------------------


@dataclass
class Rate:
    messages: int
    seconds: float
    endpoint_cpu: float | None = None  # CPU seconds the SQS server spent meanwhile, when known
    cpu: float | None = None  # CPU seconds of the consumer's own process, when it was one

    @property
    def ms_per_message(self) -> float | None:
        """The consumer's CPU per message, start-up included."""
        return 1000 * self.cpu / self.messages if self.cpu is not None and self.messages else None

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


@dataclass(frozen=True)
class Variant:
    """How a run's logins are sent and how `loginetl run` is started on them; the comparisons
    (compare.py) measure one variant against another on the same logins."""

    name: str = "raw"
    envelope: str = "raw"  # "sns": each body in an SNS notification's envelope
    extra: bool = False  # each valid login carries extra_fields() beyond the known seven
    flags: tuple[str, ...] = ()  # added to `loginetl run`
    environment: tuple[tuple[str, str], ...] = ()  # added to its environment

    @property
    def keeps_extra(self) -> bool:
        return "--keep-extra" in self.flags


RAW = Variant()


class Messages:
    """Login bodies shaped like the sample data, each with its own user_id, ip and device_id;
    every INVALID_EVERY-th one is invalid (three kinds in turn)."""

    INVALID = (
        '{"foo": "oops_wrong_msg_type", "bar": "123"}',  # the sample's own invalid message
        '{"user_id": "not json',
        None,  # a login with an ip that is not an address; built below
    )

    def __init__(self, seed: int = 5, variant: Variant = RAW) -> None:
        self.variant = variant
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
            return self.wrapped(kind or json.dumps(login | {"ip": "999.1.2.3"}), index)
        if self.variant.extra:
            login |= extra_fields(index)
        return self.wrapped(json.dumps(login), index)

    def wrapped(self, body: str, index: int) -> str:
        """`body` as the queue receives it: as it is, or in an SNS notification's envelope (a
        signature and URLs of the lengths SNS sends)."""
        if self.variant.envelope == "raw":
            return body
        topic = "arn:aws:sns:eu-west-1:123456789012:logins"
        return json.dumps(
            {
                "Type": "Notification",
                "MessageId": str(uuid.UUID(int=index, version=4)),
                "TopicArn": topic,
                "Message": body,
                "Timestamp": "2026-11-30T23:59:58.123Z",
                "SignatureVersion": "1",
                "Signature": "A" * 344,
                "SigningCertURL": "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-"
                + "0" * 32
                + ".pem",
                "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe&"
                f"SubscriptionArn={topic}:" + "0" * 36,
            }
        )


def extra_fields(index: int) -> dict:
    """Fields beyond the known seven, as producers add them: one personal (an email, the one
    to mask), a plain string and an object."""
    return {
        EXTRA_MASKED: f"user{index}@example.com",
        "plan": "pro",
        "referrer": {"campaign": "winter", "position": index % 7},
    }


def seed_queue(sqs, queue_url: str, n: int, threads: int, variant: Variant = RAW) -> Rate:
    """Send n messages with SendMessageBatch from several threads; check they are all there."""
    messages = Messages(variant=variant)

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


# --- what loginetl is run with --------------------------------------------------------------


def loginetl_revision() -> str:
    """The commit measured, "+changes" when loginetl/ differs from it: figures name their code."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+changes" if git("status", "--porcelain", "--", "loginetl") else "")


def byte_compile_loginetl() -> None:
    """loginetl's sources compiled, as pip leaves an installed package: an editable install
    where PYTHONDONTWRITEBYTECODE is set (as on these machines) compiles them at every start
    instead, 80 ms of CPU a run that an installed loginetl does not pay."""
    compileall.compile_dir(REPO / "loginetl", quiet=1)


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
