"""RDS IAM authentication (LOGINETL_DATABASE_IAM_AUTH=1): each new connection signs in with a
fresh IAM token as its password, over TLS only. Against a PostgreSQL of the test's own with
TLS-only, password-checking pg_hba, whose role's password is set to the token botocore signs
for that second (a token is a presigned URL: the same credentials, host, port, user and second
sign the same token)."""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
import psycopg2
import pytest

from tests.support.faults import wait_until

from .test_tls import SERVER_NAME, tls_server  # noqa: F401 (a fixture)

USER = "iam_writer"
AWS = {
    "AWS_ACCESS_KEY_ID": "AKIALOGINETLTEST",
    "AWS_SECRET_ACCESS_KEY": "loginetl-test-secret",
    "AWS_REGION": "eu-west-1",
    "AWS_DEFAULT_REGION": "eu-west-1",
}


@pytest.fixture
def iam_server(tls_server, monkeypatch):  # noqa: F811 (the fixture imported above)
    server, folder = tls_server
    for name, value in AWS.items():
        monkeypatch.setenv(name, value)
    admin = psycopg2.connect(server.url(sslmode="require"))
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"DROP OWNED BY {USER}" if _role_exists(cursor) else "SELECT 1")
        cursor.execute(f"DROP ROLE IF EXISTS {USER}")
        cursor.execute(f"CREATE ROLE {USER} LOGIN")
        cursor.execute(f"GRANT CREATE ON SCHEMA public TO {USER}")
    yield server, folder, admin
    admin.close()


def _role_exists(cursor) -> bool:
    cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (USER,))
    return cursor.fetchone() is not None


def iam_url(server, folder, sslmode: str = "verify-full") -> str:
    return (
        f"postgresql://{USER}@{SERVER_NAME}:{server.port}/postgres?hostaddr=127.0.0.1"
        f"&sslmode={sslmode}&sslrootcert={folder / 'ca.pem'}"
    )


def token_for_this_second(server) -> str:
    rds = boto3.session.Session().client("rds", region_name=AWS["AWS_REGION"])
    return rds.generate_db_auth_token(SERVER_NAME, server.port, USER, AWS["AWS_REGION"])


def test_a_fresh_iam_token_is_the_password_of_each_connection(iam_server, cli):
    server, folder, admin = iam_server
    env = {"LOGINETL_DATABASE_URL": iam_url(server, folder), "LOGINETL_DATABASE_IAM_AUTH": "1"}
    without = cli("init-db", env=env | {"LOGINETL_DATABASE_IAM_AUTH": "0"})
    assert without.exit_code == 1  # no password: the server checks one
    assert "password" in without.stderr
    for _ in range(5):  # the token and loginetl's connection must fall in the same second
        wait_until(lambda: datetime.now(UTC).microsecond < 200_000, timeout=2)
        token = token_for_this_second(server)
        with admin.cursor() as cursor:
            cursor.execute(f"ALTER ROLE {USER} PASSWORD %s", (token,))
        result = cli("init-db", "--json", env=env)
        if result.exit_code == 0:
            break
    assert result.exit_code == 0, result.output
    assert token not in result.output
    with admin.cursor() as cursor:
        cursor.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'user_logins'")
        assert cursor.fetchone() == (USER,)
    with admin.cursor() as cursor:  # an older token no longer signs in
        cursor.execute(f"ALTER ROLE {USER} PASSWORD %s", (token,))
    wait_until(lambda: token_for_this_second(server) != token, timeout=3)
    later = cli("init-db", env=env)
    assert later.exit_code == 1 and "password authentication failed" in later.stderr
    assert token not in later.output


@pytest.mark.parametrize("sslmode", ["disable", "prefer"])
def test_iam_auth_without_tls_is_refused_before_connecting(iam_server, cli, sslmode):
    server, folder, _ = iam_server
    env = {
        "LOGINETL_DATABASE_URL": iam_url(server, folder, sslmode),
        "LOGINETL_DATABASE_IAM_AUTH": "1",
    }
    result = cli("init-db", env=env)
    assert result.exit_code == 2
    assert f"it needs TLS (sslmode require, verify-ca or verify-full), not sslmode={sslmode}" in (
        result.stderr
    )
    assert len(result.stderr.strip().splitlines()) == 1
