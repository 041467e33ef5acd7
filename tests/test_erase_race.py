"""An erase racing a load: a redelivery of a message whose row an open erase is deleting, loaded
while the erase is open and committed after it, never brings the row back, on plain and
partitioned tables (real processes, real PostgreSQL, moto's SQS server)."""

import json

import psycopg2
import pytest

from tests.support.data import rows, sample_messages
from tests.support.faults import Watched, wait_until
from tests.support.runs import env_for, waiting_on_lock

PERSON = next(m for m in sample_messages() if "user_id" in m)


@pytest.mark.parametrize("partition_by", [None, "month"])
def test_a_load_racing_an_open_erase_never_brings_the_row_back(
    cli, queues, db, database_url, partition_by
):
    assert (
        cli("init-db", *(["--partition-by", partition_by] if partition_by else [])).exit_code == 0
    )
    queues.send([json.dumps(PERSON)])
    assert json.loads(cli("run", "--json").stdout)["loaded"] == 1
    (message_id,) = [row["sqs_message_id"] for row in rows(db)]
    env = env_for(queues.url, database_url)

    # Hold the erase open after its DELETE: its record of the erased id waits on this lock.
    holder = psycopg2.connect(database_url)
    with holder.cursor() as cursor:
        cursor.execute("LOCK TABLE user_logins_erased IN SHARE MODE")
    eraser = Watched("erase", "--user-id", PERSON["user_id"], "--yes", "--json", env=env)
    try:
        wait_until(lambda: waiting_on_lock(db, statement="INSERT INTO user_logins_erased"))
        # The same message delivered again (as a DLQ replay or a redelivery would).
        original = {"DataType": "String", "StringValue": message_id}
        queues.send([json.dumps(PERSON)], attributes={"loginetl-original-message-id": original})
        loader = Watched("run", "--json", env=env)
        if partition_by is None:
            # The insert meets the row the erase deleted, and waits for the erase to end.
            wait_until(lambda: waiting_on_lock(db, statement="INSERT INTO user_logins ("))
        else:
            # The erase left the id claimed: the load finds it taken and does not wait.
            loaded = loader.finish()
    finally:
        holder.rollback()
        holder.close()
    code, output, errors = eraser.finish()
    assert code == 0, errors
    assert json.loads(output)["deleted"] == 1
    code, output, errors = loaded if partition_by else loader.finish()
    assert code == 0, errors
    summary = json.loads(output)

    assert rows(db) == []
    assert summary["loaded"] == 0
    # Plain: the load waited for the erase, and counts what it found erased. Partitioned: it
    # ran before the erase committed, when the row was still there: a duplicate.
    assert (summary["erased"], summary["duplicates"]) == ((0, 1) if partition_by else (1, 0))
    assert queues.count() == 0
    with db.cursor() as cursor:
        cursor.execute("SELECT sqs_message_id FROM user_logins_erased")
        assert cursor.fetchall() == [(message_id,)]
