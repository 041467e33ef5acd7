"""`loginetl verify-masking`: audits what is really in PostgreSQL, against raw messages from a
file or peeked off the real SQS server (moto over HTTP)."""

import base64
import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from loginetl import audit, database, load, schema, transform
from loginetl.masking import MaskKey
from tests.support.data import MASK_KEY, sample_messages

KEY = MaskKey(MASK_KEY)
OTHER_KEY = "another-mask-key-used-before-rotation-0000"
VALID = [m for m in sample_messages() if "user_id" in m]
NOW = datetime.now(UTC)


def verify_json(cli, *args, env=None):
    result = cli("verify-masking", "--json", *args, env=env)
    assert "Traceback" not in result.output
    return result, json.loads(result.stdout)


def checks(report) -> dict:
    return {check["name"]: check for check in report["checks"]}


def statuses(report) -> dict:
    return {check["name"]: check["status"] for check in report["checks"]}


def raw_file(tmp_path, messages, lines=False):
    path = tmp_path / ("raw.jsonl" if lines else "raw.json")
    if lines:
        path.write_text("".join(json.dumps(m) + "\n" for m in messages))
    else:
        path.write_text(json.dumps(messages))
    return str(path)


def insert(db, logins, key=KEY, change=lambda row, message: row):
    """Rows as the loader writes them (through load.insert), `change` altering each first."""
    connection = database.connect(db.url)
    try:
        schema.init_db(connection)
        table = schema.describe(connection)
        rows = [
            change(transform.to_row(json.dumps(m), key, f"id-{i}", NOW), m)
            for i, m in enumerate(logins)
        ]
        assert len(load.insert(connection, rows, table).inserted) == len(rows)
    finally:
        connection.close()


def test_a_clean_load_passes_every_check(cli, queues, db, tmp_path):
    cli("init-db")
    queues.send_sample()
    assert cli("run").exit_code == 0

    result, report = verify_json(cli, "--from-file", raw_file(tmp_path, sample_messages()))

    assert result.exit_code == 0, result.output
    assert report["passed"] is True and report["failed_checks"] == []
    assert set(statuses(report).values()) == {"pass"}
    assert report["rows"] == 99
    assert report["key_id"] == KEY.key_id
    assert report["raw_messages"] == {"given": 100, "not_loadable": 1, "compared": 99}
    assert checks(report)["masks match the current key"]["breakdown"]["match"] == 99

    # Without raw messages the table checks still pass; the comparisons say they were skipped.
    result, report = verify_json(cli)
    assert result.exit_code == 0
    assert statuses(report)["masks match the current key"] == "skip"
    assert statuses(report)["no unkeyed hash or base64 of raw values"] == "skip"

    # The table, for a person: every check named, no raw value, no key.
    table = cli("verify-masking", "--from-file", raw_file(tmp_path, VALID[:5], lines=True))
    assert table.exit_code == 0
    assert table.stdout.count("PASS") == 8  # seven checks, and siv masks (none here) decrypt
    assert VALID[0]["ip"] not in table.output and MASK_KEY not in table.output


@pytest.mark.parametrize(
    "column, planted, kind",
    [
        ("locale", "10.1.2.3", "IPv4"),
        ("user_id", "user@192.168.0.1", "IPv4"),
        ("device_type", "2001:db8::8a2e:370", "IPv6"),
        ("app_version", "593-47-5928", "device id"),
        ("masked_ip", "199.172.111.135", "IPv4"),
        ("masked_device_id", "104-25-0070", "device id"),
    ],
)
def test_raw_pii_in_any_text_column_fails(cli, db, column, planted, kind):
    insert(db, VALID[:10])
    with db.cursor() as cursor:
        cursor.execute(
            f"UPDATE user_logins SET {column} = %s WHERE sqs_message_id = 'id-3'", (planted,)
        )

    result, report = verify_json(cli)

    assert result.exit_code == 1
    assert "no raw PII in any column" in report["failed_checks"]
    pii = checks(report)["no raw PII in any column"]
    assert pii["failing"] == 1
    assert pii["breakdown"] == {column: {kind: 1}}
    assert planted not in result.output  # says where, never what
    assert "checks failed: " in result.stderr and "no raw PII in any column" in result.stderr


@pytest.mark.parametrize(
    "make, label",
    [
        (lambda v: hashlib.sha256(v.encode()).hexdigest(), "sha256"),
        (lambda v: hashlib.md5(v.encode()).hexdigest(), "md5"),
        (lambda v: base64.b64encode(v.encode()).decode(), "base64"),
    ],
)
def test_reversible_masks_fail_against_raw_messages(cli, db, tmp_path, make, label):
    def unkeyed(row, message):
        return replace(
            row, masked_ip=make(message["ip"]), masked_device_id=make(message["device_id"])
        )

    insert(db, VALID[:10], change=unkeyed)

    result, report = verify_json(cli, "--from-file", raw_file(tmp_path, VALID[:10]))

    assert result.exit_code == 1
    reversible = checks(report)["no unkeyed hash or base64 of raw values"]
    assert reversible["status"] == "fail"
    assert reversible["failing"] == 10
    assert reversible["breakdown"] == {
        f"masked_ip = {label}(ip)": 10,
        f"masked_device_id = {label}(device_id)": 10,
    }
    # Claimed to be under the current key, yet no stored mask is the one it gives.
    assert checks(report)["masks match the current key"]["status"] == "fail"
    for message in VALID[:10]:
        assert message["ip"] not in result.output


def test_plain_sha256_looks_well_formed_so_only_raw_messages_reveal_it(cli, db):
    def sha256(row, message):
        return replace(row, masked_ip=hashlib.sha256(message["ip"].encode()).hexdigest())

    insert(db, VALID[:5], change=sha256)

    result, report = verify_json(cli)

    assert result.exit_code == 0  # 64 lowercase hex: nothing to see without the raw values
    assert statuses(report)["masked_ip well-formed"] == "pass"


def test_rows_under_another_key_are_reported_and_fail_only_with_strict_key(cli, db, tmp_path):
    insert(db, VALID[:6])
    insert(
        db,
        VALID[6:10],
        key=MaskKey(OTHER_KEY),
        change=lambda r, m: replace(r, message_id="old-" + r.message_id),
    )

    result, report = verify_json(cli)

    assert result.exit_code == 0
    other = checks(report)["rows under the current key id"]
    assert (other["status"], other["failing"], other["checked"]) == ("warn", 4, 10)
    assert MaskKey(OTHER_KEY).key_id in other["detail"]
    # Raw messages of both: the current key's match, the others are counted, not failed.
    result, report = verify_json(cli, "--from-file", raw_file(tmp_path, VALID[:10]))
    assert result.exit_code == 0
    counts = checks(report)["masks match the current key"]["breakdown"]
    assert (counts["match"], counts["other_key"]) == (6, 4)

    result, report = verify_json(cli, "--strict-key")
    assert result.exit_code == 1
    assert report["failed_checks"] == ["rows under the current key id"]


def test_a_wrong_key_fails_against_raw_messages(cli, queues, db, tmp_path):
    cli("init-db")
    queues.send_sample()
    cli("run")
    wrong = {"LOGINETL_MASK_KEY": OTHER_KEY}

    result, report = verify_json(cli, "--from-file", raw_file(tmp_path, VALID), env=wrong)

    assert result.exit_code == 1
    match = checks(report)["masks match the current key"]
    assert match["status"] == "fail"
    assert match["detail"].startswith("wrong key: none of the 99 raw messages found")
    assert statuses(report)["rows under the current key id"] == "warn"
    assert OTHER_KEY not in result.output and MASK_KEY not in result.output


def test_from_queue_compares_messages_by_id_and_leaves_them_on_the_queue(cli, queues, db):
    """Messages whose rows were committed but which are still on the queue (a crash before the
    delete): found by their message id."""
    ids = queues.send([json.dumps(m) for m in VALID[:4]])
    connection = database.connect(db.url)
    schema.init_db(connection)
    rows = [
        transform.to_row(json.dumps(m), KEY, i, NOW) for m, i in zip(VALID[:4], ids, strict=True)
    ]
    # The last one's row is labelled with the current key but holds another key's masks.
    wrong = transform.to_row(json.dumps(VALID[3]), MaskKey(OTHER_KEY), ids[3], NOW)
    rows[3] = replace(wrong, mask_key_id=KEY.key_id)
    load.insert(connection, rows, schema.describe(connection))
    connection.close()

    result, report = verify_json(cli, "--from-queue", "10")

    assert result.exit_code == 1
    match = checks(report)["masks match the current key"]
    assert match["breakdown"]["match"] == 3
    assert match["breakdown"]["mismatch"] == 1
    assert "claim the current key id" in match["detail"]
    assert "each peek counts as a receive" in result.stderr
    assert queues.count() == 4
    attributes = queues.client.get_queue_attributes(
        QueueUrl=queues.url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "4"


def test_sample_bounds_the_rows_checked(cli, db):
    insert(db, VALID)
    with db.cursor() as cursor:
        cursor.execute("UPDATE user_logins SET locale = '10.0.0.1'")  # every row is bad

    _, sampled = verify_json(cli, "--sample", "5")
    _, whole = verify_json(cli, "--sample", "1000")

    assert 1 <= sampled["rows"] <= 5  # a sample, not nothing
    assert "TABLESAMPLE BERNOULLI" in sampled["sample"]
    assert checks(sampled)["no raw PII in any column"]["failing"] == sampled["rows"]
    assert whole["rows"] == 99
    assert checks(whole)["no raw PII in any column"]["failing"] == 99


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "cannot read --from-file"),
        ("[{", "is not a valid JSON array"),
        ('{"a": 1}\n{oops\n', "line 2 is not valid JSON"),
        ("\n\n", "holds no messages"),
    ],
)
def test_a_bad_raw_file_is_one_line_and_exit_2(cli, db, tmp_path, content, message):
    path = tmp_path / "raw.json"
    if content is not None:
        path.write_text(content)
    result = cli("verify-masking", "--from-file", str(path))
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stderr.strip().count("\n") == 0


def test_without_the_key_or_the_table_it_is_a_configuration_error(cli, db):
    result = cli("verify-masking", env={"LOGINETL_MASK_KEY": ""})
    assert result.exit_code == 2
    assert "LOGINETL_MASK_KEY is not set" in result.stderr

    result = cli("verify-masking")
    assert result.exit_code == 2
    assert "table user_logins does not exist" in result.stderr


def test_an_unreachable_database_is_one_line_without_the_password(cli):
    url = "postgresql://postgres:hunter2-secret@127.0.0.1:1/postgres"
    result = cli("verify-masking", "--database-url", url)
    assert result.exit_code == 1
    assert "cannot connect to database 127.0.0.1:1/postgres" in result.stderr
    assert "hunter2-secret" not in result.output


def test_the_audit_only_reads(cli, db):
    insert(db, VALID[:3])
    with db.cursor() as cursor:
        cursor.execute("SELECT count(*), max(loaded_at) FROM user_logins")
        before = cursor.fetchone()
    result, report = verify_json(cli, "--strict-key")
    assert result.exit_code == 0 and report["passed"] and report["rows"] == 3  # it did audit
    with db.cursor() as cursor:
        cursor.execute("SELECT count(*), max(loaded_at) FROM user_logins")
        assert cursor.fetchone() == before


# Pure pieces ---------------------------------------------------------------------------------


def test_unkeyed_forms_cover_the_digests_and_base64():
    forms = audit.unkeyed_forms("1.2.3.4", "ip")
    assert forms[hashlib.sha512(b"1.2.3.4").hexdigest()] == "sha512(ip)"
    assert forms[hashlib.sha1(b"1.2.3.4").hexdigest()] == "sha1(ip)"
    assert (
        forms[base64.b64encode(hashlib.sha256(b"1.2.3.4").digest()).decode()]
        == "base64(sha256(ip))"
    )
    assert forms["MS4yLjMuNA=="] == "base64(ip)"
    assert KEY.mask("1.2.3.4") not in forms


def test_raw_login_looks_for_the_ip_as_sent_and_canonical():
    raw = audit.raw_login(audit.RawMessage(json.dumps(dict(VALID[0], ip="::ffff:10.0.0.1"))))
    assert raw.values["ip"] == {"::ffff:10.0.0.1", "10.0.0.1"}
    assert audit.raw_login(audit.RawMessage("{not json")) is None


def test_an_sqs_shaped_file_keeps_the_message_ids(tmp_path):
    path = tmp_path / "dump.json"
    path.write_text(json.dumps([{"MessageId": "m-1", "Body": json.dumps(VALID[0])}, VALID[1]]))
    first, second = audit.read_raw_file(str(path))
    assert (first.message_id, second.message_id) == ("m-1", None)
    assert json.loads(first.body) == VALID[0] and json.loads(second.body) == VALID[1]
