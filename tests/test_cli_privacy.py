"""Privacy operations end to end: the key ring, lookup, erase (and replays after it), unmask and
rekey, against the real SQS server (moto over HTTP) and real PostgreSQL, on plain and
partitioned tables."""

import json
from datetime import UTC, datetime

import pytest

from loginetl import database, load, schema, transform
from loginetl.masking import MaskKey
from tests.support.data import MASK_KEY, rows, sample_messages

OLD_SECRET = "an-old-mask-key-retired-at-rotation-000000"
VALID = [m for m in sample_messages() if "user_id" in m]
NOW = datetime.now(UTC)
SIV = {"LOGINETL_MASK_MODE": "siv"}
ROTATED = {"LOGINETL_OLD_MASK_KEYS": OLD_SECRET}  # MASK_KEY primary, OLD_SECRET retired


def seed(database_url, logins, key, prefix="id", partition_by=None) -> list[str]:
    """Rows as the loader writes them (transform, then load.insert); their message ids."""
    connection = database.connect(database_url)
    try:
        schema.init_db(connection, partition_by)
        table = schema.describe(connection)
        ids = [f"{prefix}-{i}" for i in range(len(logins))]
        found = [
            transform.to_row(json.dumps(m), key, i, NOW) for i, m in zip(ids, logins, strict=True)
        ]
        assert len(load.insert(connection, found, table).inserted) == len(found)
    finally:
        connection.close()
    return ids


def out(result):
    assert "Traceback" not in result.output, result.output
    return json.loads(result.stdout)


@pytest.fixture(params=[None, "month"], ids=["plain", "partitioned"])
def partition_by(request):
    return request.param


def test_lookup_finds_a_persons_rows_under_every_key_and_mode_newest_first(cli, database_url):
    person = VALID[0]
    seed(database_url, [person], MaskKey(OLD_SECRET), "old")  # hmac, retired key
    seed(database_url, [person | {"create_date": "2030-01-02"}], MaskKey(MASK_KEY, "siv"), "new")
    seed(database_url, VALID[1:20], MaskKey(MASK_KEY), "others")

    for flag, value in [
        ("--ip", "::ffff:" + person["ip"]),  # canonicalised as when loading
        ("--device-id", person["device_id"]),
        ("--user-id", person["user_id"]),
    ]:
        result = cli("lookup", flag, value, "--json", env=ROTATED)
        assert result.exit_code == 0, result.output
        found = out(result)
        assert [row["sqs_message_id"] for row in found] == ["new-0", "old-0"], flag
        assert found[0]["mask_key_id"] == MaskKey(MASK_KEY).key_id
        assert found[0]["masked_ip"].startswith("siv:") and found[0]["user_id"] == person["user_id"]
        assert person["ip"] not in result.output + result.stderr

    without_old_key = out(cli("lookup", "--ip", person["ip"], "--json"))
    assert [row["sqs_message_id"] for row in without_old_key] == ["new-0"]
    assert len(out(cli("lookup", "--user-id", person["user_id"], "--limit", "1", "--json"))) == 1


def test_lookup_uses_the_indexes_named_in_init_db(cli, db, database_url, partition_by):
    seed(database_url, VALID[:5], MaskKey(MASK_KEY), partition_by=partition_by)
    with db.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")  # a tiny table: make the planner show its hand
        for column, index in [
            ("masked_ip", "user_logins_masked_ip_idx"),
            ("masked_device_id", "user_logins_masked_device_id_idx"),
            ("user_id", "user_logins_user_id_idx"),
        ]:
            cursor.execute(
                f"EXPLAIN SELECT * FROM user_logins WHERE {column} = ANY(%s)", (["x", "y"],)
            )
            plan = "\n".join(line for (line,) in cursor.fetchall())
            assert "Index" in plan and "Seq Scan" not in plan, plan
            assert index.removeprefix("user_logins_") in plan or index in plan, plan


def test_lookup_and_erase_refuse_bad_input_in_one_line_without_echoing_it(cli, database_url):
    seed(database_url, VALID[:1], MaskKey(MASK_KEY))
    for args in [
        ["lookup", "--ip", "not-an-ip-secret"],
        ["erase"],
        ["lookup", "--ip", "1.2.3.4", "--user-id", "u"],
    ]:
        result = cli(*args)
        assert result.exit_code == 2, result.output
        assert "not-an-ip-secret" not in result.output and "Traceback" not in result.output


def test_erase_counts_then_deletes_and_a_replay_does_not_bring_rows_back(
    cli, queues, db, partition_by
):
    assert cli("init-db", *(["--partition-by", "month"] if partition_by else [])).exit_code == 0
    person = VALID[3]
    bodies = [json.dumps(m) for m in VALID[:10]] + [json.dumps(person | {"locale": "FR"})]
    queues.send(bodies)
    assert out(cli("run", "--json"))["loaded"] == 11

    assert out(cli("erase", "--device-id", person["device_id"], "--json")) == {"matched": 2}
    assert len(rows(db)) == 11
    result = cli("erase", "--device-id", person["device_id"], "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert out(result) == {"matched": 2, "deleted": 2, "key_ids": {MaskKey(MASK_KEY).key_id: 2}}
    assert "erase" in result.stderr and person["device_id"] not in result.output + result.stderr
    erased = {row["sqs_message_id"] for row in rows(db, "sqs_message_id")}
    assert len(erased) == 9

    with db.cursor() as cursor:
        cursor.execute("SELECT sqs_message_id FROM user_logins_erased")
        erased_ids = [message_id for (message_id,) in cursor.fetchall()]
    # The same messages again (as a DLQ replay sends them): erased ones stay erased, deleted.
    attributes = [
        {"loginetl-original-message-id": {"DataType": "String", "StringValue": i}}
        for i in erased_ids
    ]
    for extra in attributes:
        queues.send([json.dumps(person)], attributes=extra)
    queues.send([bodies[0]])  # and one that is merely a fresh message
    summary = out(cli("run", "--json"))
    assert summary["erased"] == 2 and summary["loaded"] == 1 and summary["duplicates"] == 0
    assert queues.count() == 0
    assert len(rows(db)) == 10
    assert not any(row["sqs_message_id"] in erased_ids for row in rows(db))


def test_unmask_recovers_siv_rows_and_refuses_one_way_and_unknown_keys(cli, database_url):
    person = VALID[5]
    seed(database_url, [person], MaskKey(MASK_KEY, "siv"), "siv")
    seed(database_url, [person], MaskKey(MASK_KEY), "hmac")
    seed(database_url, [person], MaskKey(OLD_SECRET, "siv"), "old")

    result = cli("unmask", "--message-id", "siv-0", "--json")
    assert result.exit_code == 0, result.output
    assert out(result) == {
        "sqs_message_id": "siv-0",
        "ip": person["ip"],
        "device_id": person["device_id"],
        "extra": {},
    }
    assert "unmask" in result.stderr and "siv-0" in result.stderr
    assert person["ip"] not in result.stderr

    assert out(cli("unmask", "--message-id", "old-0", "--json", env=ROTATED))["ip"] == person["ip"]
    for message_id, why in [
        ("hmac-0", "one-way"),
        ("old-0", "not in the key ring"),
        ("nope", "no row"),
    ]:
        result = cli("unmask", "--message-id", message_id)
        assert result.exit_code == 1 and why in result.stderr, result.output
        assert len(result.stderr.strip().splitlines()) == 1
        assert person["ip"] not in result.output


def test_rekey_moves_siv_rows_to_the_primary_and_a_second_run_does_nothing(
    cli, db, database_url, partition_by
):
    old, new = MaskKey(OLD_SECRET, "siv"), MaskKey(MASK_KEY, "siv")
    seed(database_url, VALID[:30], old, "siv", partition_by)
    seed(database_url, VALID[30:35], MaskKey(OLD_SECRET), "hmac", partition_by)
    seed(
        database_url, VALID[35:37], MaskKey("a-key-nobody-holds-any-more-000"), "lost", partition_by
    )

    dry = out(cli("rekey", "--dry-run", "--json", env=ROTATED | SIV))
    assert (dry["rekeyed"], dry["not_rekeyable"], dry["unknown_key"]) == (30, 5, 2)
    assert {row["mask_key_id"] for row in rows(db) if row["sqs_message_id"].startswith("siv")} == {
        old.key_id
    }

    report = out(cli("rekey", "--batch-size", "7", "--json", env=ROTATED | SIV))
    assert (report["rekeyed"], report["batches"]) == (30, 5)
    assert (report["not_rekeyable"], report["unknown_key"]) == (5, 2)
    for row in rows(db):
        if row["sqs_message_id"].startswith("siv"):
            login = VALID[int(row["sqs_message_id"].split("-")[1])]
            assert row["mask_key_id"] == new.key_id
            assert new.unmask(row["masked_ip"]) == transform.canonical_ip(login["ip"])
            assert row["masked_device_id"] == new.siv_mask(login["device_id"])

    assert out(cli("rekey", "--json", env=ROTATED | SIV))["rekeyed"] == 0
    # A row loaded after the rekey masks equal to the rekeyed rows of the same value.
    seed(database_url, VALID[:1], new, "later", partition_by)
    by_id = {row["sqs_message_id"]: row for row in rows(db)}
    assert by_id["later-0"]["masked_ip"] == by_id["siv-0"]["masked_ip"]
    # hmac rows under the retired key stay found while it stays in the ring.
    found = out(cli("lookup", "--device-id", VALID[30]["device_id"], "--json", env=ROTATED))
    assert [row["sqs_message_id"] for row in found] == ["hmac-0"]


def test_the_key_ring_reads_retired_keys_and_hides_every_one(monkeypatch):
    from loginetl import config
    from loginetl.errors import ConfigError
    from loginetl.masking import KeyRing, key_ring_from_env

    environ = {
        "LOGINETL_MASK_KEY": MASK_KEY,
        "LOGINETL_OLD_MASK_KEYS": f" {OLD_SECRET}, ,{MASK_KEY}",
    }
    ring = key_ring_from_env(environ)
    assert isinstance(ring, KeyRing) and ring.primary.key_id == MaskKey(MASK_KEY).key_id
    assert ring.retired_ids() == [MaskKey(OLD_SECRET).key_id]  # the primary is not retired too
    assert [ring.status_of(k) for k in (*ring.retired_ids(), ring.primary.key_id, "x")] == [
        "retired",
        "primary",
        "unknown",
    ]
    assert config.redact(f"a {OLD_SECRET} b") == "a *** b"
    with pytest.raises(ConfigError, match="LOGINETL_OLD_MASK_KEYS is too short"):
        key_ring_from_env(environ | {"LOGINETL_OLD_MASK_KEYS": "short"})
    with pytest.raises(ConfigError, match="LOGINETL_MASK_MODE must be one of hmac, siv"):
        key_ring_from_env(environ | {"LOGINETL_MASK_MODE": "rot13"})


def test_siv_masks_are_deterministic_authenticated_and_recoverable_only_with_the_key():
    from loginetl.masking import CannotUnmask

    key, other = MaskKey(MASK_KEY, "siv"), MaskKey(OLD_SECRET, "siv")
    mask = key.mask("203.0.113.7")
    assert mask == key.mask("203.0.113.7") != other.mask("203.0.113.7")
    assert mask.startswith("siv:") and key.unmask(mask) == "203.0.113.7"
    assert key.key_id == MaskKey(MASK_KEY).key_id  # one key id, either mode
    tampered = mask[:-2] + ("A" if mask[-2] != "A" else "B") + mask[-1]
    for bad in (tampered, "siv:!!", MaskKey(MASK_KEY).mask("203.0.113.7")):
        with pytest.raises(CannotUnmask):
            key.unmask(bad)
    with pytest.raises(CannotUnmask):
        other.unmask(mask)


def test_a_siv_load_is_verified_and_status_names_each_key(cli, queues, db, tmp_path):
    cli("init-db")
    seed(db.url, VALID[:5], MaskKey(OLD_SECRET, "siv"), "old")
    seed(db.url, VALID[5:8], MaskKey(MASK_KEY), "hmac")  # one table, both modes
    queues.send_sample()
    assert out(cli("run", "--json", env=SIV))["loaded"] == 99
    raw = tmp_path / "raw.json"
    raw.write_text(json.dumps(sample_messages()))

    report = out(cli("verify-masking", "--from-file", str(raw), "--json", env=SIV | ROTATED))
    by_name = {check["name"]: check for check in report["checks"]}
    assert report["passed"], report
    assert by_name["siv masks decrypt under a known key"]["checked"] == 104
    assert by_name["masks match the current key"]["breakdown"]["match"] == 99
    assert by_name["rows under the current key id"]["breakdown"]["retired"] == 5
    assert by_name["rows under the current key id"]["breakdown"]["key_ids"] == {
        MaskKey(MASK_KEY).key_id: {"rows": 102, "status": "primary"},
        MaskKey(OLD_SECRET).key_id: {"rows": 5, "status": "retired"},
    }
    # Without the retired key its rows cannot be read: reported, not hidden.
    report = out(cli("verify-masking", "--json", env=SIV))
    siv = {check["name"]: check for check in report["checks"]}[
        "siv masks decrypt under a known key"
    ]
    assert (siv["status"], siv["breakdown"]["unknown_key"]) == ("warn", 5)
    # A mask that does not decrypt fails.
    with db.cursor() as cursor:
        cursor.execute(
            "UPDATE user_logins SET masked_ip = 'siv:' || repeat('A', 30) "
            "WHERE sqs_message_id = 'old-0'"
        )
    report = out(cli("verify-masking", "--json", env=SIV | ROTATED))
    assert "siv masks decrypt under a known key" in report["failed_checks"]

    status = out(cli("status", "--json", env=ROTATED))
    keys = status["table"]["mask_keys"]
    assert keys[MaskKey(MASK_KEY).key_id] == {"rows": 102, "status": "primary"}
    assert keys[MaskKey(OLD_SECRET).key_id] == {"rows": 5, "status": "retired"}
    status = out(cli("status", "--json"))
    assert status["table"]["mask_keys"][MaskKey(OLD_SECRET).key_id]["status"] == "unknown"
    assert "not in the key ring" in " ".join(status["problems"])


def test_unmask_reads_a_row_under_the_key_it_names_whatever_else_the_ring_holds(
    cli, db, database_url
):
    """Two retired keys and the primary: each row reads back under its own key, and a row under
    a key the ring lacks is refused as such, not tried under another. The key id alone picks
    the key (it is what the unmask event records): a row masked under a retired key but naming
    the primary, or naming a key the ring lacks, is refused, never read under the retired key
    that would decrypt it."""
    third = "a-third-mask-key-retired-twice-0000000"
    person = VALID[7]
    seed(database_url, [person], MaskKey(OLD_SECRET, "siv"), "old")
    seed(database_url, [person], MaskKey(third, "siv"), "third")
    seed(database_url, [person], MaskKey(MASK_KEY, "siv"), "new")
    seed(database_url, [person], MaskKey("a-key-nobody-holds-any-more-000", "siv"), "lost")
    seed(database_url, [person, person], MaskKey(third, "siv"), "relabelled")
    with db.cursor() as cursor:
        for message_id, key_id in [
            ("relabelled-0", MaskKey(MASK_KEY).key_id),
            ("relabelled-1", "0123456789abcdef"),
        ]:
            cursor.execute(
                "UPDATE user_logins SET mask_key_id = %s WHERE sqs_message_id = %s",
                (key_id, message_id),
            )
    ring = {"LOGINETL_OLD_MASK_KEYS": f"{third},{OLD_SECRET}"}
    for message_id in ("old-0", "third-0", "new-0"):
        result = cli("unmask", "--message-id", message_id, "--json", env=ring)
        assert result.exit_code == 0, result.output
        assert out(result)["device_id"] == person["device_id"]
    for message_id, why in [
        ("lost-0", "which is not in the key ring"),
        ("relabelled-0", "cannot be unmasked: does not decrypt under this key"),
        ("relabelled-1", "which is not in the key ring"),
    ]:
        refused = cli("unmask", "--message-id", message_id, "--json", env=ring)
        assert refused.exit_code == 1 and why in refused.stderr, (message_id, refused.output)
        assert person["device_id"] not in refused.output
