"""Running loginetl in a test: its environment, a table made, bodies to send, waiting on
what a process shows, and reading /metrics."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from contextlib import contextmanager

import psycopg2
from typer.testing import CliRunner

from loginetl import database, schema
from loginetl.cli import app
from loginetl.stream.leases import SHARDS
from tests.support.data import MASK_KEY, sample_messages


def env_for(queue_url: str, database_url: str, **extra) -> dict:
    return {
        "LOGINETL_QUEUE_URL": queue_url,
        "LOGINETL_DATABASE_URL": database_url,
        "LOGINETL_MASK_KEY": MASK_KEY,
        "LOGINETL_WAIT_TIME": "1",
        "LOGINETL_CONCURRENCY": "1",  # exact counts on moto (see conftest.cli)
    } | extra


@contextmanager
def holding(database_url: str, statement: str, params: tuple = ()):
    """Another session runs `statement` (a LOCK, a SELECT ... FOR UPDATE) and keeps the locks
    it took until the block ends: whatever needs them waits."""
    connection = psycopg2.connect(database_url)
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
    try:
        yield
    finally:
        connection.rollback()
        connection.close()


def table_locked(database_url: str):
    """Another session holds an exclusive lock: inserts wait, as on a very slow database."""
    return holding(database_url, "LOCK TABLE user_logins IN ACCESS EXCLUSIVE MODE")


def init(database_url: str) -> None:
    connection = database.connect(database_url)
    schema.init_db(connection)
    connection.close()


def valid_bodies() -> list[str]:
    return [json.dumps(message) for message in sample_messages() if "user_id" in message]


def finish(process, timeout: float = 60):
    stdout, stderr = process.communicate(timeout=timeout)
    return process.returncode, stdout, stderr


def visible(queues) -> int:
    attributes = queues.client.get_queue_attributes(
        QueueUrl=queues.url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def waiting_on_lock(db, sessions: int = 1, statement: str = "") -> bool:
    """Whether `sessions` loginetl sessions of the test's database wait on a lock (in a
    statement containing `statement`, when one is given)."""
    with db.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'loginetl' "
            "AND wait_event_type = 'Lock' AND datname = current_database() "
            "AND position(%s in query) > 0",
            (statement,),
        )
        return cursor.fetchone()[0] >= sessions


def scrape(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics")


def invoke(env: dict, *args: str):
    return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)


def run_stream(env: dict, stream, *args: str) -> dict:
    assert invoke(env, "init-db").exit_code == 0
    result = invoke(env, "run", "--stream", stream.name, "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def shard_table(db, stream) -> dict[str, dict]:
    with db.cursor() as cursor:
        cursor.execute(
            f"SELECT shard_id, state, checkpoint::text, owner FROM {SHARDS} WHERE stream = %s",
            (stream.name,),
        )
        return {
            shard: {"state": state, "checkpoint": point, "owner": owner}
            for shard, state, point, owner in cursor.fetchall()
        }


def logins(count: int, tag: str) -> list[str]:
    """`count` valid logins, each its own user (to find them in the table)."""
    valid = [m for m in sample_messages() if "user_id" in m]
    return [json.dumps(dict(valid[i % len(valid)], user_id=f"{tag}-{i:04d}")) for i in range(count)]
