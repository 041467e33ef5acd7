"""`init-db --grant-to ROLE`: the service runs as a role that owns nothing and may only read and
insert; run, status and verify-masking work as it, and what it must not do fails."""

import json
import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest

from loginetl import schema
from tests.support.data import rows, sample_messages
from tests.support.servers import admin


@pytest.fixture
def writer(database_url, postgres_admin_url):
    """(role, URL): a login role with no privileges, on the test's database."""
    role, password = f"loginetl_w_{uuid.uuid4().hex[:8]}", f"Pw-{uuid.uuid4().hex[:10]}"
    admin(postgres_admin_url, f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    parts = urlsplit(database_url)
    netloc = f"{role}:{password}@{parts.hostname}:{parts.port or 5432}"
    yield role, urlunsplit(parts._replace(netloc=netloc))
    admin(database_url, f"DROP OWNED BY {role}")
    admin(postgres_admin_url, f"DROP ROLE {role}")


def as_writer(writer) -> dict:
    return {"LOGINETL_DATABASE_URL": writer[1]}


def forbidden(url: str, statement: str) -> str:
    """The error PostgreSQL gives the role of `url` for `statement` (which must fail)."""
    connection = psycopg2.connect(url)
    try:
        with pytest.raises(psycopg2.Error) as raised, connection.cursor() as cursor:
            cursor.execute(statement)
        return raised.value.pgcode
    finally:
        connection.close()


FORBIDDEN = [
    "DELETE FROM {table}",
    "UPDATE {table} SET sqs_message_id = sqs_message_id",
    "TRUNCATE {table}",
    "DROP TABLE {table}",
    "ALTER TABLE {table} ADD COLUMN sneaky text",
    "CREATE INDEX sneaky ON {table} (sqs_message_id)",
]


@pytest.mark.parametrize("partition_by", [None, "month"])
def test_run_status_and_verify_masking_work_as_the_writer(cli, queues, db, writer, partition_by):
    role, _ = writer
    init = ["init-db", "--grant-to", role, "--json"]
    result = cli(*init, *(["--partition-by", partition_by] if partition_by else []))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["granted_to"] == [role]
    bodies = [json.dumps(m) for m in sample_messages()[:20]]
    old = json.loads(bodies[0]) | {"create_date": "2019-03-04"}  # a month with no partition
    sent = queues.send([*bodies, json.dumps(old), "not json"])
    result = cli("run", "--json", env=as_writer(writer))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    loaded = summary["loaded"]
    assert loaded + summary["dead_lettered"] == len(sent) and summary["dead_lettered"] >= 1
    assert len(rows(db)) == loaded
    if partition_by:  # the writer's loader had the partitions made, owned by the owner
        with db.cursor() as cursor:
            cursor.execute(
                "SELECT relname, pg_get_userbyid(relowner) FROM pg_class "
                "WHERE relname LIKE 'user_logins_2%' ORDER BY 1"
            )
            partitions = cursor.fetchall()
        assert "user_logins_2019_03" in [name for name, _ in partitions]
        assert role not in [owner for _, owner in partitions]
        with db.cursor() as cursor:  # no role can slip its own objects into the function
            cursor.execute(
                "SELECT prosecdef, proconfig FROM pg_proc WHERE proname = %s",
                (schema.CREATE_PARTITION,),
            )
            assert cursor.fetchone() == (True, ["search_path=public, pg_temp"])
    again = cli("run", "--json", env=as_writer(writer))  # nothing left: a second run is a no-op
    assert again.exit_code == 0 and json.loads(again.stdout)["loaded"] == 0
    user = json.loads(bodies[1])["user_id"]
    for command in (
        ["status", "--json"],
        ["verify-masking", "--json"],
        ["lookup", "--user-id", user],
    ):
        result = cli(*command, env=as_writer(writer))
        assert result.exit_code == 0, (command, result.output)


@pytest.mark.parametrize("partition_by", [None, "month"])
def test_the_writer_cannot_delete_truncate_drop_or_alter(cli, queues, db, writer, partition_by):
    role, url = writer
    init = [
        "init-db",
        "--grant-to",
        role,
        *(["--partition-by", partition_by] if partition_by else []),
    ]
    assert cli(*init).exit_code == 0
    queues.send_sample()
    assert cli("run", env=as_writer(writer)).exit_code == 0
    tables = [schema.TABLE, schema.ERASED_IDS] + ([schema.LOADED_IDS] if partition_by else [])
    for table in tables:
        for statement in FORBIDDEN:
            code = forbidden(url, statement.format(table=table))
            assert code in ("42501", "42P01"), (statement, table, code)  # insufficient privilege
    for statement in FORBIDDEN:  # the stream's leases: updated by run --stream, never deleted
        if not statement.startswith(("UPDATE", "CREATE INDEX")):
            assert forbidden(url, statement.format(table="loginetl_stream_shards")) == "42501"
    assert forbidden(url, f"INSERT INTO {schema.ERASED_IDS} VALUES ('un-erase me')") == "42501"
    assert forbidden(url, "CREATE TABLE sneaky (x int)") == "42501"
    if partition_by:  # the writer cannot make partitions itself, only through the function
        code = forbidden(
            url,
            "CREATE TABLE user_logins_2001_01 PARTITION OF user_logins "
            "FOR VALUES FROM ('2001-01-01') TO ('2001-02-01')",
        )
        assert code == "42501"
    assert len(rows(db)) == 99


def test_only_the_listed_privileges_are_granted(cli, db, writer):
    role, _ = writer
    admin(db.url, "CREATE TABLE user_logins (user_id text)")
    admin(db.url, f"GRANT ALL ON user_logins TO {role}")  # a wider grant made by hand earlier
    assert cli("init-db", "--grant-to", role).exit_code == 0
    with db.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, privilege_type FROM information_schema.role_table_grants "
            "WHERE grantee = %s ORDER BY 1, 2",
            (role,),
        )
        grants = cursor.fetchall()
    assert grants == [
        ("loginetl_kafka_offsets", "INSERT"),
        ("loginetl_kafka_offsets", "SELECT"),
        ("loginetl_kafka_offsets", "UPDATE"),  # offsets and claims of run --topic
        ("loginetl_stream_shards", "INSERT"),
        ("loginetl_stream_shards", "SELECT"),
        ("loginetl_stream_shards", "UPDATE"),  # leases and checkpoints of run --stream
        ("user_logins", "INSERT"),
        ("user_logins", "SELECT"),
        ("user_logins_erased", "SELECT"),  # the loader skips erased message ids
    ]


def test_grant_to_a_role_that_does_not_exist_exits_2(cli):
    result = cli("init-db", "--grant-to", "no_such_role_here")
    assert result.exit_code == 2
    assert "role no_such_role_here does not exist" in result.stderr
