"""The partitioned table's own paths, against moto and PostgreSQL: a table partitioned by month
keeps each message id unique in user_logins_message_ids (its unique indexes must include the
partition key), claimed in the transaction of the row. A redelivered message finds its id
claimed; a row the database refuses gives its claim back with its savepoint, so the message can
be replayed once the cause is fixed and load then, once.
"""

import json

from loginetl.schema import LOADED_IDS
from tests.support.data import rows, sample_messages
from tests.support.faults import RecordingSqs, wait_until
from tests.support.runs import env_for, invoke, visible
from tests.support.servers import make_queues

MONTHS = ("2025-01-15", "2025-02-15")
VALID = [m for m in sample_messages() if "user_id" in m]
NO_BSD = "ALTER TABLE user_logins ADD CONSTRAINT no_bsd CHECK (device_type <> 'freebsd')"


def in_two_months(count: int, tag: str) -> list[str]:
    """`count` valid logins, each its own user, alternately in January and February 2025."""
    return [
        json.dumps(dict(VALID[i], user_id=f"{tag}-{i}", create_date=MONTHS[i % 2]))
        for i in range(count)
    ]


def partitioned(env: dict) -> None:
    result = invoke(env, "init-db", "--partition-by", "month")
    assert result.exit_code == 0, result.output


def run_json(env: dict, *args: str) -> dict:
    result = invoke(env, "run", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def claimed(db) -> list[str]:
    with db.cursor() as cursor:
        cursor.execute(f"SELECT sqs_message_id FROM {LOADED_IDS} ORDER BY 1")
        return [message_id for (message_id,) in cursor.fetchall()]


def by_partition(db) -> dict[str, int]:
    with db.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text, count(*) FROM user_logins GROUP BY 1")
        return dict(cursor.fetchall())


def loaded_ids(db) -> list[str]:
    return sorted(row["sqs_message_id"] for row in rows(db))


def test_a_message_delivered_again_after_its_commit_is_a_duplicate_deleted(
    sqs, sqs_endpoint, database_url, db
):
    """A real redelivery: the first run commits every row, but SQS does not delete one message
    (the front spoils its receipt handle), which comes back once its visibility ends."""
    queues = make_queues(sqs, visibility_timeout=1)
    env = env_for(queues.url, database_url)
    partitioned(env)
    ids = queues.send(in_two_months(6, "again"))
    spoiled: list[str] = []

    def spoil_the_first_delete(action: str, body: bytes) -> bytes:
        if action != "DeleteMessageBatch" or spoiled:
            return body
        request = json.loads(body)
        spoiled.append(request["Entries"][0]["ReceiptHandle"])
        request["Entries"][0]["ReceiptHandle"] = "not-a-receipt-handle"
        return json.dumps(request).encode()

    front = RecordingSqs(sqs_endpoint, rewrite=spoil_the_first_delete)
    through_front = {"LOGINETL_QUEUE_URL": queues.url.replace(sqs_endpoint, front.url)}
    try:  # --max-messages: this run does not receive the message again itself
        first = run_json(env | through_front, "--max-messages", "6")
    finally:
        front.close()
    assert (first["loaded"], first["duplicates"], first["delete_failures"]) == (6, 0, 1)
    wait_until(lambda: visible(queues) == 1)  # delivered again

    again = run_json(env)

    assert (again["received"], again["loaded"], again["duplicates"]) == (1, 0, 1)
    assert again["dead_lettered"] == 0
    assert queues.count() == 0 and queues.count(queues.dlq_url) == 0  # deleted, not refused
    assert loaded_ids(db) == sorted(ids) == claimed(db)  # one row each, each id claimed once
    assert by_partition(db) == {"user_logins_2025_01": 3, "user_logins_2025_02": 3}


def refused_run(cli, queues, db) -> tuple[list[str], str]:
    """A batch of five logins and one the database refuses (a CHECK constraint on the parent,
    so on every partition): (the ids of the five, the refused one's id)."""
    assert cli("init-db", "--partition-by", "month").exit_code == 0
    with db.cursor() as cursor:
        cursor.execute(NO_BSD)
    bsd = dict(VALID[0], user_id="refused-0", create_date=MONTHS[1], device_type="freebsd")
    *ids, refused = queues.send([*in_two_months(5, "kept"), json.dumps(bsd)])
    result = cli("run", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["loaded"], summary["dead_lettered"], summary["duplicates"]) == (5, 1, 0)
    [reason] = summary["dead_lettered_by_reason"]
    assert reason.startswith(
        'database: new row for relation "user_logins_2025_02" violates check constraint "no_bsd"'
    )
    return ids, refused


def test_a_row_the_database_refuses_is_dead_lettered_alone_with_its_reason(cli, queues, db):
    ids, refused = refused_run(cli, queues, db)

    assert loaded_ids(db) == sorted(ids)
    assert claimed(db) == sorted(ids)  # the refused row's claim rolled back with its savepoint
    assert by_partition(db) == {"user_logins_2025_01": 3, "user_logins_2025_02": 2}
    assert queues.count() == 0
    [dead] = queues.drain(queues.dlq_url)
    attributes = {name: value["StringValue"] for name, value in dead["MessageAttributes"].items()}
    assert attributes["loginetl-original-message-id"] == refused
    assert attributes["loginetl-reason"].startswith("database: new row for relation")
    assert json.loads(dead["Body"])["device_type"] == "freebsd"


def test_a_refused_row_replayed_stays_dead_lettered_until_fixed_then_loads_once(cli, queues, db):
    ids, refused = refused_run(cli, queues, db)

    def replay_then_run() -> dict:
        moved = cli("replay-dlq", "--json")
        assert moved.exit_code == 0, moved.output
        assert json.loads(moved.stdout)["moved"] == 1 and queues.count(queues.dlq_url) == 0
        result = cli("run", "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    still = replay_then_run()  # the cause is still there: refused again, dead-lettered again
    assert (still["received"], still["loaded"], still["dead_lettered"]) == (1, 0, 1)
    assert loaded_ids(db) == sorted(ids) == claimed(db)
    listed = cli("replay-dlq", "--dry-run", "--json")  # moves nothing
    [dead] = json.loads(listed.stdout)["messages"]
    assert dead["original_message_id"] == refused  # its first id, however often it travels
    assert dead["reason"].startswith("database: new row for relation")

    with db.cursor() as cursor:
        cursor.execute("ALTER TABLE user_logins DROP CONSTRAINT no_bsd")  # the cause fixed
    fixed = replay_then_run()

    assert (fixed["received"], fixed["loaded"], fixed["duplicates"]) == (1, 1, 0)
    assert fixed["dead_lettered"] == 0
    assert loaded_ids(db) == sorted([*ids, refused]) == claimed(db)  # once, under its first id
    assert by_partition(db) == {"user_logins_2025_01": 3, "user_logins_2025_02": 3}
    assert queues.count() == 0 and queues.count(queues.dlq_url) == 0
    assert json.loads(cli("replay-dlq", "--json").stdout)["moved"] == 0
