"""rekey under faults: killed with SIGKILL mid-way it leaves every row under exactly one valid
key and the next rekey finishes the work; running while `run` loads, neither disturbs the other.
Real PostgreSQL, real SQS server (moto over HTTP), loginetl as its own process."""

import json

from loginetl import transform
from loginetl.masking import MaskKey
from tests.support.data import MASK_KEY, rows
from tests.support.faults import Watched, start_loginetl, wait_until
from tests.support.runs import env_for

from .test_cli_privacy import OLD_SECRET, VALID, seed

OLD, NEW = MaskKey(OLD_SECRET, "siv"), MaskKey(MASK_KEY, "siv")
RING = {"LOGINETL_MASK_MODE": "siv", "LOGINETL_OLD_MASK_KEYS": OLD_SECRET}


def login_of(message_id: str) -> dict:
    return VALID[int(message_id.rsplit("-", 1)[1]) % len(VALID)]


def assert_each_row_under_one_valid_key(db) -> dict[str, int]:
    """Every row's masks decrypt, under the key its id names, to its own values."""
    keys = {OLD.key_id: OLD, NEW.key_id: NEW}
    under: dict[str, int] = {}
    for row in rows(db):
        key = keys[row["mask_key_id"]]
        login = login_of(row["sqs_message_id"])
        assert key.unmask(row["masked_ip"]) == transform.canonical_ip(login["ip"])
        assert key.unmask(row["masked_device_id"]) == login["device_id"]
        under[row["mask_key_id"]] = under.get(row["mask_key_id"], 0) + 1
    return under


def test_rekey_killed_mid_way_leaves_every_row_valid_and_the_next_one_finishes(
    database_url, db, queues
):
    logins = [VALID[i % len(VALID)] for i in range(3000)]
    seed(database_url, logins, OLD, "old")
    env = env_for(queues.url, database_url, **RING)

    rekey = Watched("--log-level", "info", "rekey", "--batch-size", "1", env=env)
    rekey.wait_for("rekey batch", times=20)
    rekey.process.kill()  # SIGKILL: no chance to finish the batch in hand
    assert rekey.finish()[0] == -9

    under = assert_each_row_under_one_valid_key(db)
    assert sum(under.values()) == 3000
    assert 0 < under.get(NEW.key_id, 0) < 3000, under

    finished = start_loginetl("rekey", "--json", env=env)
    stdout, stderr = finished.communicate(timeout=120)
    assert finished.returncode == 0, stderr
    assert json.loads(stdout)["rekeyed"] == under[OLD.key_id]
    assert assert_each_row_under_one_valid_key(db) == {NEW.key_id: 3000}


def test_rekey_while_run_loads(database_url, db, queues):
    seed(database_url, [VALID[i % len(VALID)] for i in range(1000)], OLD, "old")
    env = env_for(queues.url, database_url, **RING)
    ids = queues.send([json.dumps(VALID[i % len(VALID)]) for i in range(300)])
    index_of = {message_id: i for i, message_id in enumerate(ids)}

    run = start_loginetl("run", "--batch-size", "10", "--json", env=env)
    rekey = start_loginetl("rekey", "--batch-size", "1", "--json", env=env)  # slow: overlaps
    _, rekey_err = rekey.communicate(timeout=120)
    run_out, run_err = run.communicate(timeout=120)
    assert rekey.returncode == 0 and run.returncode == 0, rekey_err + run_err
    assert json.loads(run_out)["loaded"] == 300

    wait_until(lambda: queues.count() == 0)
    by_id = {row["sqs_message_id"]: row for row in rows(db)}
    assert len(by_id) == 1300
    for message_id, row in by_id.items():
        login = (
            VALID[index_of[message_id] % len(VALID)]
            if message_id in index_of
            else login_of(message_id)
        )
        assert NEW.unmask(row["masked_ip"]) == transform.canonical_ip(login["ip"])
        assert row["mask_key_id"] == NEW.key_id  # rekeyed, or loaded under the primary
    # Equal values, equal masks: a loaded row and a rekeyed row of the same login.
    assert by_id[ids[0]]["masked_device_id"] == by_id["old-0"]["masked_device_id"]
