"""Rows under key ids the ring lacks: lookup, erase and status count them, by key id, never
showing a key; erase exits 1 while any exist, so "deleted 0" is never read as done."""

import json

from loginetl.masking import MaskKey
from tests.support.data import MASK_KEY, rows
from tests.test_cli_privacy import OLD_SECRET, ROTATED, VALID, out, seed

LOST_SECRET = "a-mask-key-nobody-kept-in-the-ring-0000000"


def seeded(database_url) -> tuple[dict, str]:
    """The person's rows: one under the primary key, two under a key the ring lacks (beside
    one of someone else under it); the lacking key's id."""
    person, other = VALID[7], VALID[8]
    seed(database_url, [person], MaskKey(MASK_KEY), "primary")
    seed(database_url, [person, person, other], MaskKey(LOST_SECRET), "lost")
    return person, MaskKey(LOST_SECRET).key_id


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def test_lookup_says_how_many_rows_it_could_not_search_and_under_which_key_ids(cli, database_url):
    person, lost = seeded(database_url)
    result = cli("lookup", "--ip", person["ip"], "--json")
    assert result.exit_code == 0, result.output
    assert [row["sqs_message_id"] for row in out(result)] == ["primary-0"]
    warning = one_line(result.stderr)
    assert f"3 rows under key ids {lost} not in the key ring" in warning
    assert LOST_SECRET not in result.output and person["ip"] not in result.stderr

    # By user_id, stored as sent, every row is searched: nothing to say.
    result = cli("lookup", "--user-id", person["user_id"], "--json")
    assert result.exit_code == 0 and result.stderr == ""
    assert len(out(result)) == 3


def test_erase_exits_1_naming_the_key_ids_it_could_not_search(cli, db, database_url):
    person, lost = seeded(database_url)
    result = cli("erase", "--device-id", person["device_id"], "--json")
    assert result.exit_code == 1
    assert out(result) == {"matched": 1, "unsearched": {"rows": 3, "key_ids": {lost: 3}}}
    assert lost in one_line(result.stderr) and LOST_SECRET not in result.output

    result = cli("erase", "--device-id", person["device_id"], "--yes", "--json")
    assert result.exit_code == 1
    assert out(result) == {
        "matched": 1,
        "deleted": 1,
        "key_ids": {MaskKey(MASK_KEY).key_id: 1},
        "unsearched": {"rows": 3, "key_ids": {lost: 3}},
    }
    assert "could not be searched" in result.stderr
    assert sorted(row["sqs_message_id"] for row in rows(db)) == ["lost-0", "lost-1", "lost-2"]

    # With the key back in the ring, the rest of the person's rows are found and erased.
    ring = {"LOGINETL_OLD_MASK_KEYS": f"{OLD_SECRET},{LOST_SECRET}"}
    result = cli("erase", "--device-id", person["device_id"], "--yes", "--json", env=ring)
    assert result.exit_code == 0, result.output
    assert out(result)["deleted"] == 2 and "unsearched" not in out(result)
    assert [row["sqs_message_id"] for row in rows(db)] == ["lost-2"]


def test_rows_without_a_key_id_count_as_unsearchable(cli, db, database_url):
    person, _ = seeded(database_url)
    with db.cursor() as cursor:  # as in a table init-db upgraded from before key ids
        cursor.execute("ALTER TABLE user_logins ALTER COLUMN mask_key_id DROP NOT NULL")
        cursor.execute("UPDATE user_logins SET mask_key_id = NULL WHERE sqs_message_id = 'lost-2'")
    result = cli("erase", "--ip", person["ip"], "--json", env=ROTATED)
    assert result.exit_code == 1
    unsearched = out(result)["unsearched"]
    assert unsearched["key_ids"] == {MaskKey(LOST_SECRET).key_id: 2, "(none)": 1}


def test_status_counts_the_rows_lookup_and_erase_cannot_search(cli, database_url):
    _, lost = seeded(database_url)
    result = cli("status", "--json")
    table = json.loads(result.stdout)["table"]
    assert table["unsearchable_rows"] == 3
    assert table["mask_keys"][lost] == {"rows": 3, "status": "unknown"}
    problems = json.loads(result.stdout)["problems"]
    assert any("lookup and erase cannot search them" in line for line in problems)
    table = json.loads(cli("status", "--json", env={"LOGINETL_OLD_MASK_KEYS": LOST_SECRET}).stdout)
    assert table["table"]["unsearchable_rows"] == 0
