"""Hostile input: generated bodies (hypothesis) and a named corpus. Each message is loaded or
dead-lettered with a reason; nothing crashes, nothing prints a traceback."""

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime

import hypothesis.strategies as st
import psycopg2
from hypothesis import HealthCheck, given, settings
from typer.testing import CliRunner

from loginetl.cli import app
from loginetl.masking import MaskKey
from loginetl.transform import MAX_LENGTH, InvalidMessage, to_row
from tests.support.data import MASK_KEY, rows, sample_messages
from tests.support.servers import make_queues, own_database, unreachable

KEY = MaskKey(MASK_KEY)
SENT = datetime(2026, 1, 1, tzinfo=UTC)
FIELDS = ("user_id", "device_type", "ip", "device_id", "locale", "app_version", "create_date")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)
field_values = st.one_of(
    json_values,
    st.sampled_from(
        ["1.2.3.4", "::1", "2001:db8::1", "999.0.0.1", "", "\u0000", "\ud800", "x" * 200]
    ),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
)
login_like = st.dictionaries(st.sampled_from(FIELDS), field_values, max_size=len(FIELDS))


def outcome(body: str):
    """A row whose every field fits and holds no raw PII, or a refusal with a reason."""
    try:
        row = to_row(body, KEY, "m", SENT)
    except InvalidMessage as invalid:
        assert re.match(r"^(json|schema): \S", invalid.reason)
        return invalid.reason
    for name in ("user_id", "device_type", "locale", "app_version"):
        value = getattr(row, name)
        if value is not None:
            assert len(value) <= MAX_LENGTH[name]
            assert "\x00" not in value
            value.encode("utf-8")
    assert re.fullmatch(r"[0-9a-f]{64}", row.masked_ip)
    assert re.fullmatch(r"[0-9a-f]{64}", row.masked_device_id)
    return row


@given(st.text())
def test_any_text_body_is_loaded_or_refused(body):
    outcome(body)


@given(json_values)
def test_any_json_document_is_loaded_or_refused(document):
    outcome(json.dumps(document))


@given(login_like)
def test_login_shaped_objects_with_any_values_are_loaded_or_refused(message):
    outcome(json.dumps(message))


@given(st.fixed_dictionaries({name: field_values for name in FIELDS}))
def test_full_messages_with_hostile_values_are_loaded_or_refused(message):
    outcome(json.dumps(message))


GOOD = sample_messages()[0]
CORPUS = {
    "not json": "hello",
    "truncated json": '{"user_id": "a"',
    "json array": "[1, 2, 3]",
    "json number": "42",
    "deep nesting": "[" * 50000 + "]" * 50000,
    "huge number": json.dumps(GOOD)[:-1] + ', "n": ' + "9" * 100000 + "}",
    "huge app_version": json.dumps(GOOD).replace('"2.3.0"', "1" + "0" * 5000),
    "control characters": json.dumps(dict(GOOD, locale="\x07\x1b[31m")),
    "escaped nul": json.dumps(dict(GOOD, user_id="abc\u0000")),
    "lone surrogate": json.dumps(GOOD).replace('"android"', '"\\ud800"'),
    "sql text": json.dumps(dict(GOOD, user_id="'); DROP TABLE user_logins; --")),
    "1 MiB body": json.dumps(dict(GOOD, padding="x" * (1024 * 1024 - 500))),
    "wrong types": json.dumps({name: [1] for name in FIELDS}),
    "ip with port": json.dumps(dict(GOOD, ip="1.2.3.4:80")),
    "markup": json.dumps(dict(GOOD, device_type="[bold]x[/bold]")),
    "user_id too long": json.dumps(dict(GOOD, user_id="u" * 129)),
}
# Refused by the validator itself, never left to the column width to catch.
SCHEMA_REFUSED = {"wrong types", "ip with port", "user_id too long", "control characters"}
LOADS = {"sql text", "1 MiB body", "markup", "huge number"}  # huge number: an ignored extra field


def test_the_named_corpus_through_a_real_run(cli, queues, db):
    cli("init-db")
    names = list(CORPUS)
    ids = [queues.send([CORPUS[name]])[0] for name in names]

    result = cli("run", "--json", "--batch-size", "5")

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    loaded = {row["sqs_message_id"] for row in rows(db)}
    assert loaded == {i for name, i in zip(names, ids, strict=True) if name in LOADS}
    assert summary["dead_lettered"] == len(CORPUS) - len(LOADS)
    dead = queues.drain(queues.dlq_url)
    reasons = {
        m["MessageAttributes"]["loginetl-original-message-id"]["StringValue"]: m[
            "MessageAttributes"
        ]["loginetl-reason"]["StringValue"]
        for m in dead
    }
    assert set(reasons) == {i for name, i in zip(names, ids, strict=True) if name not in LOADS}
    assert all(reason for reason in reasons.values())
    by_name = dict(zip(names, ids, strict=True))
    for name in SCHEMA_REFUSED:
        assert reasons[by_name[name]].startswith("schema: "), (name, reasons[by_name[name]])
    assert {m["Body"] for m in dead} == {CORPUS[n] for n in names if n not in LOADS}
    assert queues.count() == 0
    assert "Traceback" not in result.output


@settings(
    max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(login_like.map(json.dumps) | st.text(max_size=50), min_size=5, max_size=15))
def test_generated_bodies_through_a_real_run_are_each_loaded_or_dead_lettered(
    sqs, postgres_admin_url, bodies
):
    # hypothesis runs this several times in one test, so it makes its own queues and database.
    queues = make_queues(sqs)
    bodies = [body or " " for body in bodies]  # SQS refuses empty bodies
    ids = queues.send(bodies)
    with own_database(postgres_admin_url) as database_url:
        env = {
            "LOGINETL_QUEUE_URL": queues.url,
            "LOGINETL_DATABASE_URL": database_url,
            "LOGINETL_MASK_KEY": MASK_KEY,
            "LOGINETL_WAIT_TIME": "0",
            "LOGINETL_CONCURRENCY": "1",
        }
        runner = CliRunner()
        assert runner.invoke(app, ["init-db"], env=env).exit_code == 0
        result = runner.invoke(app, ["run", "--json"], env=env)
        summary = json.loads(result.stdout)
        assert summary["loaded"] + summary["dead_lettered"] == len(bodies)
        assert queues.count() == 0
        assert queues.count(queues.dlq_url) == summary["dead_lettered"]
        with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM user_logins WHERE sqs_message_id = ANY(%s)", (ids,)
            )
            assert cursor.fetchone()[0] == summary["loaded"]


def test_logs_and_errors_never_show_secrets_or_raw_pii(queues, password_url, tmp_path):
    """A real process at debug log level, on a good run and on a failing one."""
    with_password, password = password_url
    queues.send([json.dumps(m) for m in sample_messages()[:20]])
    env = {
        "LOGINETL_QUEUE_URL": queues.url,
        "LOGINETL_MASK_KEY": MASK_KEY,
        "LOGINETL_WAIT_TIME": "0",
        "LOGINETL_LOG_LEVEL": "debug",
    }
    outputs = []
    for database in (with_password, unreachable(with_password)):
        for args in (
            ["init-db"],
            ["peek"],
            ["run", "--retry-for", "1"],
            ["run", "--json", "--retry-for", "1"],
        ):
            process = subprocess.run(
                [sys.executable, "-m", "loginetl", *args],
                env={**os.environ, **env, "LOGINETL_DATABASE_URL": database},
                capture_output=True,
                text=True,
                timeout=60,
            )
            outputs.append(process.stdout + process.stderr)
            reaches = database == with_password or args == ["peek"]  # peek needs no database
            assert process.returncode == (0 if reaches else 1), outputs[-1]
    everything = "\n".join(outputs)
    assert "cannot connect to database 127.0.0.1:1" in everything  # the failing case did fail
    with psycopg2.connect(with_password) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM user_logins")
        valid = sum("user_id" in message for message in sample_messages()[:20])
        assert cursor.fetchone()[0] == valid  # the good runs logged in with the password
    assert password not in everything
    assert MASK_KEY not in everything
    for message in sample_messages()[:20]:
        if "ip" in message:
            assert message["ip"] not in everything
            assert message["device_id"] not in everything
    assert "Traceback" not in everything
