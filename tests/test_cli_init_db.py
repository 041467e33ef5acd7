"""`loginetl init-db`: creates the table, or upgrades the take-home one without losing rows."""

import json

from loginetl import load, transform
from tests.support.data import rows

TAKE_HOME_DDL = """
CREATE TABLE IF NOT EXISTS user_logins(
    user_id varchar(128),
    device_type varchar(32),
    masked_ip varchar(256),
    masked_device_id varchar(256),
    locale varchar(32),
    app_version integer,
    create_date date
)"""


def init_json(cli):
    result = cli("init-db", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def columns(db) -> dict:
    with db.cursor() as cursor:
        cursor.execute(
            "SELECT column_name, data_type, character_maximum_length, is_nullable "
            "FROM information_schema.columns WHERE table_name = 'user_logins'"
        )
        return {name: (kind, length, nullable) for name, kind, length, nullable in cursor}


def test_init_db_creates_the_table_with_a_unique_message_id(cli, db):
    report = init_json(cli)

    assert report["created"] is True and report["created_index"] is True
    found = columns(db)
    assert found["user_id"][:2] == ("character varying", 128)
    assert found["device_type"][:2] == ("character varying", 32)
    assert found["masked_ip"][:2] == ("character varying", 256)
    assert found["masked_device_id"][:2] == ("character varying", 256)
    assert found["locale"] == ("character varying", 32, "YES")
    assert found["app_version"][:2] == ("character varying", 32)
    assert found["create_date"][0] == "date"
    assert {"sqs_message_id", "mask_key_id", "loaded_at"} <= set(found)
    with db.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'user_logins'")
        assert any("UNIQUE" in d and "sqs_message_id" in d for (d,) in cursor)


def test_column_widths_match_what_the_validator_accepts(cli, db):
    init_json(cli)
    found = columns(db)
    for name in ("user_id", "device_type", "locale", "app_version"):
        assert found[name][1] == transform.MAX_LENGTH[name]


def test_init_db_is_idempotent(cli, db):
    init_json(cli)
    with db.cursor() as cursor:
        cursor.execute(
            "INSERT INTO user_logins (user_id, device_type, masked_ip, masked_device_id, "
            "app_version, create_date, sqs_message_id, mask_key_id) "
            "VALUES ('u', 'ios', 'a', 'b', '1', '2024-01-01', 'm1', 'k')"
        )
    again = init_json(cli)
    assert again["created"] is False
    assert again["added_columns"] == [] and again["created_index"] is False
    assert again["row_count"] == 1
    table = cli("init-db")
    assert "found, 1 rows kept" in table.stdout


def test_init_db_upgrades_the_take_home_table_without_losing_rows(cli, db):
    with db.cursor() as cursor:
        cursor.execute(TAKE_HOME_DDL)
        cursor.execute(
            "INSERT INTO user_logins VALUES ('u1', 'ios', 'x', 'y', NULL, 2, '2020-01-01'),"
            " ('u2', 'android', 'x', 'y', 'US', 3, '2020-01-02')"
        )

    report = init_json(cli)

    assert report["created"] is False
    assert report["added_columns"] == ["sqs_message_id", "mask_key_id", "loaded_at", "extra"]
    assert report["legacy_app_version"] is True
    assert [r["user_id"] for r in rows(db, "user_id")] == ["u1", "u2"]
    assert columns(db)["app_version"][0] == "integer"
    table = cli("init-db")
    assert "major version" in table.stdout


def test_init_db_on_an_unreachable_database_is_one_line(cli):
    result = cli("init-db", "--database-url", "postgresql://u:topsecret@127.0.0.1:1/x")
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("Error: cannot connect to database 127.0.0.1:1/x")
    assert "topsecret" not in result.output


def test_major_version_of_app_versions():
    assert load.major_version("2.3.0") == 2
    assert load.major_version("0.96") == 0
    assert load.major_version("12") == 12
    for bad in ("beta", "", ".5"):
        try:
            load.major_version(bad)
        except ValueError:
            continue
        raise AssertionError(bad)
