"""The privacy operations over the extra fields `run --keep-extra` stores: verify-masking checks
the fields LOGINETL_MASK_EXTRA names (and warns when none are named), rekey moves their siv masks
with the row, unmask reads them back. Real runs on moto's SQS into a real PostgreSQL."""

from __future__ import annotations

import hashlib
import json

import pytest

from loginetl.masking import MaskKey
from tests.support.data import MASK_KEY, rows, sample_messages

LOGINS = [m for m in sample_messages() if "user_id" in m]
EMAIL, PHONE = "someone@example.com", 4420
MASK_EXTRA = {"LOGINETL_MASK_EXTRA": "email,phone"}
OLD_SECRET = "an-old-mask-key-retired-at-rotation-000000"
SIV = {"LOGINETL_MASK_MODE": "siv"}
EXTRA_CHECK = "extra fields masked"


def load(queues, cli, extras: list[dict], env: dict | None = None) -> list[str]:
    """The logins with these extra fields, loaded by `run --keep-extra`; their message ids."""
    ids = queues.send([json.dumps(LOGINS[i] | extra) for i, extra in enumerate(extras)])
    assert cli("init-db").exit_code == 0
    result = cli("run", "--keep-extra", "--json", env=env)
    assert result.exit_code == 0 and json.loads(result.stdout)["loaded"] == len(extras), result
    return ids


def verify(cli, *args, env: dict | None = None) -> tuple:
    result = cli("verify-masking", "--json", *args, env=env)
    assert "Traceback" not in result.output, result.output
    report = json.loads(result.stdout)
    return result, {check["name"]: check for check in report["checks"]}


def raw_file(tmp_path, ids: list[str], extras: list[dict]) -> str:
    """The messages as SQS gave them: each body with its message id, so rows are found by id."""
    path = tmp_path / "raw.json"
    messages = [
        {"MessageId": message_id, "Body": json.dumps(LOGINS[i] | extra)}
        for i, (message_id, extra) in enumerate(zip(ids, extras, strict=True))
    ]
    path.write_text(json.dumps(messages))
    return str(path)


def set_extra(db, message_id: str, name: str, value) -> None:
    with db.cursor() as cursor:
        cursor.execute(
            "UPDATE user_logins SET extra = jsonb_set(extra, %s, %s::jsonb) "
            "WHERE sqs_message_id = %s",
            ([name], json.dumps(value), message_id),
        )


@pytest.mark.parametrize("mode", ["hmac", "siv"])
def test_named_fields_are_stored_masked_and_every_check_passes(queues, cli, db, tmp_path, mode):
    extras = [{"email": EMAIL, "phone": PHONE, "plan": "pro"}, {"email": None}, {}]
    env = MASK_EXTRA | {"LOGINETL_MASK_MODE": mode}
    ids = load(queues, cli, extras, env)
    key = MaskKey(MASK_KEY, mode)
    by_id = {row["sqs_message_id"]: row for row in rows(db)}
    assert by_id[ids[0]]["extra"] == {
        "email": key.mask(EMAIL),
        "phone": key.mask(str(PHONE)),
        "plan": "pro",
    }
    assert by_id[ids[1]]["extra"] == {"email": None}  # nothing to hide

    result, checks = verify(cli, "--from-file", raw_file(tmp_path, ids, extras), env=env)
    assert result.exit_code == 0, result.output
    assert {check["status"] for check in checks.values()} == {"pass"}
    assert (checks[EXTRA_CHECK]["checked"], checks[EXTRA_CHECK]["failing"]) == (2, 0)
    assert checks["masks match the current key"]["breakdown"]["match"] == 3
    if mode == "siv":
        assert checks["siv masks decrypt under a known key"]["checked"] == 3


def test_a_named_field_stored_raw_fails_by_field_name_never_by_value(queues, cli, db):
    extras = [{"email": EMAIL}, {"phone": PHONE}, {"email": EMAIL, "phone": PHONE}, {"email": None}]
    ids = load(queues, cli, extras, MASK_EXTRA)
    set_extra(db, ids[0], "email", EMAIL)  # a string as sent
    set_extra(db, ids[1], "phone", PHONE)  # a number as sent
    set_extra(db, ids[2], "phone", int("4" * 64))  # as long as a mask, but a number: no mask
    result, checks = verify(cli, env=MASK_EXTRA)

    assert result.exit_code == 1
    extra = checks[EXTRA_CHECK]
    assert (extra["status"], extra["checked"], extra["failing"]) == ("fail", 4, 3)
    assert extra["breakdown"] == {"email": 1, "phone": 2}
    assert "email ×1, phone ×2" in extra["detail"]
    assert EMAIL not in result.output and str(PHONE) not in extra["detail"]
    assert EXTRA_CHECK in result.stderr  # the one line naming the failed checks


def test_a_raw_ip_in_extra_is_caught_by_the_pii_check(queues, cli, db):
    ids = load(queues, cli, [{"plan": "pro"}, {}], MASK_EXTRA)
    set_extra(db, ids[0], "last_ip", "10.1.2.3")  # a field nobody named, holding an address
    result, checks = verify(cli, env=MASK_EXTRA)
    assert result.exit_code == 1
    pii = checks["no raw PII in any column"]
    assert pii["failing"] == 1 and pii["breakdown"] == {"extra": {"IPv4": 1}}
    assert "10.1.2.3" not in result.output
    assert checks[EXTRA_CHECK]["status"] == "pass"  # not a named field: the pii check's to find


def test_extra_fields_kept_with_none_named_warn_by_name_and_count(queues, cli, db):
    assert cli("init-db").exit_code == 0
    _, checks = verify(cli)
    assert checks[EXTRA_CHECK]["status"] == "pass"  # nothing kept yet
    load(queues, cli, [{"email": EMAIL, "plan": "pro"}, {"email": "b@example.com"}, {}])

    result, checks = verify(cli)
    assert result.exit_code == 0, result.output  # a warning, not a failure
    extra = checks[EXTRA_CHECK]
    assert (extra["status"], extra["checked"], extra["failing"]) == ("warn", 2, 0)
    assert extra["breakdown"] == {"fields": {"email": 2, "plan": 1}, "other_names": 0}
    assert "email ×2, plan ×1" in extra["detail"] and "LOGINETL_MASK_EXTRA" in extra["detail"]
    assert EMAIL not in result.output

    shown = cli("verify-masking", env={"COLUMNS": "80"})
    assert "WARN" in shown.stdout and EMAIL not in shown.output


def test_raw_messages_catch_a_named_field_stored_raw_or_unkeyed(queues, cli, db, tmp_path):
    extras = [{"email": EMAIL}, {"email": "b@example.com"}, {"email": "c@example.com"}]
    ids = load(queues, cli, extras, MASK_EXTRA)
    # Shaped as an hmac mask: only the raw messages show it is no keyed one.
    set_extra(db, ids[0], "email", hashlib.sha256(EMAIL.encode()).hexdigest())
    raw = raw_file(tmp_path, ids, extras)
    result, checks = verify(cli, "--from-file", raw, env=MASK_EXTRA)

    assert result.exit_code == 1
    assert checks[EXTRA_CHECK]["status"] == "pass"
    match = checks["masks match the current key"]
    assert (match["status"], match["failing"]) == ("fail", 1)
    assert match["breakdown"]["mismatched_extra"] == {"email": 1} and "email ×1" in match["detail"]
    reversible = checks["no unkeyed hash or base64 of raw values"]
    assert reversible["breakdown"] == {"extra email = sha256(email)": 1}
    assert EMAIL not in result.output

    # Without the field named, the audit has no reason to compare it.
    _, unnamed = verify(cli, "--from-file", raw)
    assert unnamed["masks match the current key"]["status"] == "pass"


def test_an_siv_extra_mask_under_another_key_does_not_decrypt(queues, cli, db):
    ids = load(queues, cli, [{"email": EMAIL}, {"email": "b@example.com"}], MASK_EXTRA | SIV)
    set_extra(db, ids[0], "email", MaskKey(OLD_SECRET, "siv").siv_mask(EMAIL))  # well-formed
    result, checks = verify(cli, env=MASK_EXTRA | SIV)
    assert result.exit_code == 1
    siv = checks["siv masks decrypt under a known key"]
    assert (siv["status"], siv["checked"], siv["breakdown"]["undecryptable"]) == ("fail", 2, 1)
    assert checks[EXTRA_CHECK]["status"] == "pass"


def test_rekey_moves_the_siv_extra_fields_with_the_row(queues, cli, db):
    old, new = MaskKey(OLD_SECRET, "siv"), MaskKey(MASK_KEY, "siv")
    as_old = MASK_EXTRA | SIV | {"LOGINETL_MASK_KEY": OLD_SECRET}
    lookalike = "siv:" + "A" * 40  # starts as a mask does but decrypts under no key
    extras = [{"email": EMAIL, "phone": PHONE, "note": lookalike, "score": 0}, {}]
    bodies = [json.dumps(LOGINS[i] | extra) for i, extra in enumerate(extras)]
    ids = queues.send([bodies[0].replace('"score": 0', '"score": 2.50'), bodies[1]])
    assert cli("init-db").exit_code == 0
    assert cli("run", "--keep-extra", env=as_old).exit_code == 0

    ring = MASK_EXTRA | SIV | {"LOGINETL_OLD_MASK_KEYS": OLD_SECRET}
    report = json.loads(cli("rekey", "--json", env=ring).stdout)
    assert (report["rekeyed"], report["undecryptable"]) == (2, 0)

    by_id = {row["sqs_message_id"]: row for row in rows(db)}
    assert {row["mask_key_id"] for row in by_id.values()} == {new.key_id}
    assert by_id[ids[0]]["extra"] == {
        "email": new.siv_mask(EMAIL),
        "phone": new.siv_mask(str(PHONE)),
        "note": lookalike,
        "score": 2.5,
    }
    assert by_id[ids[1]]["extra"] is None
    with db.cursor() as cursor:
        cursor.execute("SELECT extra::text FROM user_logins WHERE sqs_message_id = %s", (ids[0],))
        assert '"score": 2.50' in cursor.fetchone()[0]  # the other fields untouched
    result, checks = verify(cli, env=ring)
    assert result.exit_code == 0, result.output
    assert checks["siv masks decrypt under a known key"]["breakdown"]["undecryptable"] == 0
    assert old.siv_mask(EMAIL) not in json.dumps([row["extra"] for row in by_id.values()])


def test_unmask_reads_the_siv_extra_fields_and_logs_no_value(queues, cli):
    ids = load(queues, cli, [{"email": EMAIL, "phone": PHONE, "plan": "pro"}], MASK_EXTRA | SIV)
    result = cli("unmask", "--message-id", ids[0], "--json")
    assert result.exit_code == 0, result.output
    unmasked = json.loads(result.stdout)
    assert unmasked["extra"] == {"email": EMAIL, "phone": str(PHONE)}  # plan was never masked
    assert unmasked["ip"] == LOGINS[0]["ip"]
    assert "unmask" in result.stderr and EMAIL not in result.stderr

    shown = cli("unmask", "--message-id", ids[0], env={"COLUMNS": "80"})
    assert "extra field email" in shown.stdout and EMAIL in shown.stdout
    assert EMAIL not in shown.stderr


def test_a_table_without_the_extra_column_works_as_before(queues, cli, db):
    ids = queues.send([json.dumps(login) for login in LOGINS[:3]])
    assert cli("init-db").exit_code == 0
    db.cursor().execute("ALTER TABLE user_logins DROP COLUMN extra")  # made before the column
    old_siv = SIV | {"LOGINETL_MASK_KEY": OLD_SECRET}
    assert cli("run", env=old_siv).exit_code == 0

    ring = MASK_EXTRA | SIV | {"LOGINETL_OLD_MASK_KEYS": OLD_SECRET}
    assert json.loads(cli("rekey", "--json", env=ring).stdout)["rekeyed"] == 3
    unmasked = json.loads(cli("unmask", "--message-id", ids[0], "--json", env=ring).stdout)
    assert unmasked["extra"] == {} and unmasked["ip"] == LOGINS[0]["ip"]
    result, checks = verify(cli, env=ring)
    assert result.exit_code == 0, result.output
    assert checks[EXTRA_CHECK]["status"] == "skip"


def test_lookup_and_erase_find_a_person_by_an_extra_field_under_every_key_and_mode(queues, cli, db):
    old = {"LOGINETL_MASK_KEY": OLD_SECRET}
    ring = MASK_EXTRA | {"LOGINETL_OLD_MASK_KEYS": OLD_SECRET}
    first = load(queues, cli, [{"email": EMAIL, "plan": "pro"}], MASK_EXTRA | old)  # hmac, old
    second = load(queues, cli, [{"email": EMAIL}, {"email": "other@example.com"}], ring | SIV)
    third = load(queues, cli, [{"phone": PHONE, "plan": "pro"}], ring)  # a number, masked
    fourth = load(queues, cli, [{"referrer": EMAIL}], ring)  # kept as sent: not named

    def found(text: str, env=ring) -> list[str]:
        result = cli("lookup", "--extra", text, "--json", env=env)
        assert result.exit_code == 0, result.output
        assert text.partition("=")[2] not in result.stderr  # shown only as stored, never logged
        return sorted(row["sqs_message_id"] for row in json.loads(result.stdout))

    assert found(f"email={EMAIL}") == sorted([first[0], second[0]])
    assert found(f"email={EMAIL}", env=MASK_EXTRA) == [second[0]]  # the old key is needed
    assert found(f"phone={PHONE}") == [third[0]]  # by the text its mask was made from
    assert found(f"referrer={EMAIL}") == [fourth[0]]  # an unmasked field, as sent
    assert found("plan=pro") == sorted([first[0], third[0]])
    assert found("email=nobody@example.com") == []
    shown = cli("lookup", "--extra", f"referrer={EMAIL}", env=ring | {"COLUMNS": "80"})
    assert f'{{"referrer": "{EMAIL}"}}' in shown.stdout  # as stored: JSON
    assert "…" not in shown.stdout and EMAIL not in shown.stderr

    counted = cli("erase", "--extra", f"email={EMAIL}", "--json", env=ring)
    assert json.loads(counted.stdout) == {"matched": 2}
    erased = cli("erase", "--extra", f"email={EMAIL}", "--yes", "--json", env=ring)
    assert erased.exit_code == 0, erased.output
    assert json.loads(erased.stdout)["deleted"] == 2
    assert EMAIL not in erased.output + erased.stderr
    left = {row["sqs_message_id"] for row in rows(db, "sqs_message_id")}
    assert left == {second[1], third[0], fourth[0]}


def test_lookup_by_an_extra_field_refuses_bad_input_in_one_line_without_echoing_it(queues, cli, db):
    assert cli("init-db").exit_code == 0
    for text, says in [
        ("alice@example.net", "--extra takes NAME=VALUE"),
        ("=alice@example.net", "--extra takes NAME=VALUE"),
        ("ip=alice@example.net", "not ip; use --ip"),
        ("locale=alice@example.net", "not locale"),
    ]:
        result = cli("lookup", "--extra", text)
        assert result.exit_code == 2, result.output
        assert says in result.output and "alice@example.net" not in result.output
        assert "Traceback" not in result.output
    both = cli("erase", "--extra", "email=x", "--user-id", "u")
    assert both.exit_code == 2 and "exactly one of" in both.output

    db.cursor().execute("ALTER TABLE user_logins DROP COLUMN extra")  # made before the column
    result = cli("lookup", "--extra", f"email={EMAIL}")
    assert result.exit_code == 2 and "lacks column extra" in result.output, result.output
    assert EMAIL not in result.output
    assert cli("lookup", "--user-id", "u").exit_code == 0  # the others need no such column


def test_an_extra_field_lookup_can_use_a_gin_index_on_extra(queues, cli, db):
    from loginetl.masking import KeyRing
    from loginetl.privacy.people import Person

    load(queues, cli, [{"email": EMAIL}], MASK_EXTRA)
    with db.cursor() as cursor:
        cursor.execute(  # as docs/privacy.md suggests
            "CREATE INDEX user_logins_extra_gin ON user_logins USING gin (extra jsonb_path_ops)"
        )
        cursor.execute("SET enable_seqscan = off")  # a tiny table: make the planner show its hand
        where, parameters = Person(extra=("email", EMAIL)).condition(KeyRing(MaskKey(MASK_KEY)))
        cursor.execute(f"EXPLAIN SELECT * FROM user_logins WHERE {where}", parameters)
        plan = "\n".join(line for (line,) in cursor.fetchall())
    assert "user_logins_extra_gin" in plan and "Seq Scan" not in plan, plan
