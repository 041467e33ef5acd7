"""`run --keep-extra`: a login's fields beyond the known seven stored in the JSONB column
`extra`, those named in LOGINETL_MASK_EXTRA masked under the key ring as ip and device_id are;
through a real run on moto's SQS into a real PostgreSQL."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from tests.support.data import MASK_KEY, rows, sample_messages

LOGINS = [m for m in sample_messages() if "user_id" in m]
EMAIL, PHONE = "someone@example.com", "+44 20 7946 0000"
MASK_EXTRA = {"LOGINETL_MASK_EXTRA": "email, phone"}


def hmac_of(value: str) -> str:
    return hmac.new(MASK_KEY.encode(), value.encode(), hashlib.sha256).hexdigest()


def test_extra_fields_are_stored_with_the_named_ones_masked(queues, cli, db):
    extra = {
        "email": EMAIL,
        "phone": 4420,
        "plan": "pro",
        "score": 0,
        "tags": [1e3, {"a": None}],
        "referrer": None,
    }
    body = json.dumps(LOGINS[0] | extra).replace('"score": 0', '"score": 2.50')
    queues.send([body, json.dumps(LOGINS[1])])
    assert cli("init-db").exit_code == 0
    result = cli("run", "--keep-extra", "--json", env=MASK_EXTRA)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["loaded"] == 2 and summary["extra_fields"]["email"] == 1
    by_user = {row["user_id"]: row for row in rows(db)}
    kept = by_user[LOGINS[0]["user_id"]]["extra"]
    # Masked like ip: a string as itself, a number as its JSON text; the rest as sent.
    assert kept == {
        "email": hmac_of(EMAIL),
        "phone": hmac_of("4420"),
        "plan": "pro",
        "score": 2.5,
        "tags": [1000, {"a": None}],
        "referrer": None,
    }
    assert by_user[LOGINS[1]["user_id"]]["extra"] is None  # no extra field: no object
    with db.cursor() as cursor:
        cursor.execute("SELECT extra::text FROM user_logins WHERE extra IS NOT NULL")
        text = cursor.fetchone()[0]
    assert EMAIL not in text and '"score": 2.50' in text  # a number stays as it was sent
    assert EMAIL not in result.output


def test_without_keep_extra_nothing_beyond_the_seven_is_stored(queues, cli, db):
    queues.send([json.dumps(LOGINS[0] | {"email": EMAIL})])
    assert cli("init-db").exit_code == 0
    result = cli("run", "--json", env=MASK_EXTRA)
    assert result.exit_code == 0 and json.loads(result.stdout)["extra_fields"] == {"email": 1}
    [row] = rows(db)
    assert row["extra"] is None


def test_the_extra_of_an_envelope_is_the_logins_not_the_envelopes(queues, cli, db):
    event = {
        "version": "0",
        "id": "e",
        "detail-type": "UserLogin",
        "source": "app.auth",
        "time": "2026-11-29T10:00:00Z",
        "detail": LOGINS[0] | {"email": EMAIL},
    }
    queues.send([json.dumps(event)])
    assert cli("init-db").exit_code == 0
    as_a_service = MASK_EXTRA | {"LOGINETL_KEEP_EXTRA": "1"}  # the flag from the environment
    assert cli("run", env=as_a_service).exit_code == 0
    [row] = rows(db)
    assert row["extra"] == {"email": hmac_of(EMAIL)}


def test_init_db_adds_the_column_and_keep_extra_needs_it(queues, cli, db):
    assert cli("init-db").exit_code == 0
    db.cursor().execute("ALTER TABLE user_logins DROP COLUMN extra")  # a table made before it
    queues.send([json.dumps(LOGINS[0] | {"email": EMAIL})])
    refused = cli("run", "--keep-extra", env={"COLUMNS": "80"})
    assert refused.exit_code == 2
    assert "lacks column extra" in refused.stderr and "init-db" in refused.stderr
    assert "Traceback" not in refused.output
    assert queues.count(queues.url) == 1  # nothing was received
    without = cli("run", "--json")  # a run that keeps nothing needs no such column
    assert without.exit_code == 0 and json.loads(without.stdout)["loaded"] == 1
    first = json.loads(cli("init-db", "--json").stdout)
    again = json.loads(cli("init-db", "--json").stdout)
    assert first["added_columns"] == ["extra"] and again["added_columns"] == []
    assert first["columns"]["extra"] == "jsonb"


def test_a_known_field_in_mask_extra_is_a_usage_error(queues, cli):
    assert cli("init-db").exit_code == 0
    result = cli("run", "--keep-extra", env={"LOGINETL_MASK_EXTRA": "email,ip"})
    assert result.exit_code == 2
    assert "LOGINETL_MASK_EXTRA names ip" in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize("partition_by", [None, "month"], ids=["plain", "partitioned"])
def test_extra_values_postgres_refuses_are_dead_lettered_the_rest_load(
    queues, cli, db, partition_by
):
    nul = {"note": "a\u0000b"}  # jsonb holds no NUL
    surrogate = {"email": "\ud800@example.com"}  # to be masked: not encodable
    overflow = {"big": 1}  # written below as a number no numeric holds
    deep = {"deep": 0}  # replaced below by nesting too deep to write back out
    bodies = [
        json.dumps(LOGINS[i] | extra)
        for i, extra in enumerate([nul, surrogate, overflow, deep, {"plan": "pro"}])
    ]
    bodies[2] = bodies[2].replace('"big": 1', '"big": 1e999999')
    bodies[3] = bodies[3].replace('"deep": 0', '"deep": ' + "[" * 900 + "]" * 900)
    queues.send(bodies)
    init = ["init-db", "--partition-by", partition_by] if partition_by else ["init-db"]
    assert cli(*init).exit_code == 0
    result = cli("run", "--keep-extra", "--json", env=MASK_EXTRA)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    reasons = summary["dead_lettered_by_reason"]
    assert summary["loaded"] == 1 and reasons == {
        "database: unsupported Unicode escape sequence": 1,
        "database: value overflows numeric format": 1,
        "schema: an extra field is nested too deeply to store": 1,
        "schema: an extra field to mask is not valid Unicode (lone surrogate)": 1,
    }
    assert queues.count(queues.url) == 0 and queues.count(queues.dlq_url) == sum(reasons.values())
    assert "Traceback" not in result.output
    loaded = {row["user_id"] for row in rows(db)}
    assert LOGINS[4]["user_id"] in loaded


def test_status_counts_the_extra_fields_rows_keep_by_name_never_by_value(queues, cli, db):
    assert cli("init-db").exit_code == 0
    before = json.loads(cli("status", "--json").stdout)["table"]["extra_fields"]
    assert before == {"rows": 0, "fields": {}, "other_names": 0}
    queues.send(
        [
            json.dumps(LOGINS[0] | {"email": EMAIL, "plan": "gold-tier"}),
            json.dumps(LOGINS[1] | {"email": EMAIL}),
            json.dumps(LOGINS[2]),
        ]
    )
    assert cli("run", "--keep-extra", env=MASK_EXTRA).exit_code == 0
    status = cli("status", "--json")
    extra = json.loads(status.stdout)["table"]["extra_fields"]
    assert extra == {"rows": 2, "fields": {"email": 2, "plan": 1}, "other_names": 0}
    shown = cli("status", env={"COLUMNS": "80"})
    assert "extra field email" in shown.stdout and "rows keeping extra fields" in shown.stdout
    assert EMAIL not in status.output + shown.output and "gold-tier" not in shown.stdout
    assert "…" not in shown.stdout
    db.cursor().execute("ALTER TABLE user_logins DROP COLUMN extra")  # made before the column
    assert json.loads(cli("status", "--json").stdout)["table"]["extra_fields"] is None


def test_a_stream_run_keeps_extra_fields_too(stream_env, stream, db):
    from tests.support.runs import run_stream

    stream.put([json.dumps(LOGINS[0] | {"email": EMAIL}), json.dumps(LOGINS[1])])
    summary = run_stream(stream_env | MASK_EXTRA, stream, "--keep-extra")
    assert summary["loaded"] == 2 and summary["extra_fields"] == {"email": 1}
    kept = [row["extra"] for row in rows(db) if row["extra"] is not None]
    assert kept == [{"email": hmac_of(EMAIL)}]
