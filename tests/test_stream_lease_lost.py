"""A shard's lease taken by another owner while a batch holding that shard's records commits:
the batch is re-cut (stream/run.py `_load`): its transaction rolls back, the lost shard's
records are dropped from it, and the rest is committed again. Nothing is lost, nothing doubled,
and the fenced writer commits no checkpoint for the shard it lost.

kinesis-mock, moto for the dead-letter queue, PostgreSQL. The batch is held in its commit by a
table lock, and made to hold records of both shards (the loader cuts a batch from whatever the
inbox holds): the loader is kept busy while both shards' records arrive. Three batches of one
poison record each come first: the first waits on a row lock in its checkpoint, the second is
prepared ahead, the third waits to be handed over; each is seen cut when its record reaches the
dead-letter queue (a stream dead-letters as soon as a batch is validated).
"""

import hashlib
import json
import signal
from collections import Counter

from loginetl.stream.client import record_id
from loginetl.stream.leases import SHARDS
from tests.support.data import rows
from tests.support.faults import Watched, free_port, wait_until
from tests.support.runs import (
    holding,
    invoke,
    logins,
    metric,
    scrape,
    shard_table,
    table_locked,
    waiting_on_lock,
)


def key_for(shard: dict) -> str:
    """A partition key that Kinesis maps to `shard` (the MD5 of the key in its hash range)."""
    low, high = (int(shard["HashKeyRange"][end]) for end in ("StartingHashKey", "EndingHashKey"))
    return next(
        key
        for key in (f"key-{n}" for n in range(10_000))
        if low <= int(hashlib.md5(key.encode()).hexdigest(), 16) <= high
    )


def set_owner(db, stream, shard: dict, owner: str | None) -> None:
    """Another owner takes the shard's lease for an hour (`owner`), or gives it back (None)."""
    expires = "now() + interval '1 hour'" if owner else "NULL"
    with db.cursor() as cursor:
        cursor.execute(
            f"UPDATE {SHARDS} SET owner = %s, lease_expires = {expires}, updated_at = now() "
            "WHERE stream = %s AND shard_id = %s",
            (owner, stream.name, shard["ShardId"]),
        )


def row_locked(database_url: str, stream, shard: dict):
    """Another session holds the shard's row: its checkpoints (and lease renewals) wait."""
    return holding(
        database_url,
        f"SELECT 1 FROM {SHARDS} WHERE stream = %s AND shard_id = %s FOR UPDATE",
        (stream.name, shard["ShardId"]),
    )


def sequence_of(record: str) -> str:
    return record.rsplit("/", 1)[1]


def test_a_lease_lost_while_its_batch_commits_loses_and_doubles_nothing(
    stream_env, stream, queues, database_url, db
):
    assert invoke(stream_env, "init-db").exit_code == 0
    a, b = stream.shards()
    port = free_port()
    env = stream_env | {"LOGINETL_LEASE_FOR": "60"}  # the leases outlive the waits below
    args = ("run", "--stream", stream.name, "--follow", "--json", "--metrics-port", str(port))
    watched = Watched("--log-format", "json", *args, env=env)
    put: list[str] = []  # the ids of every record put

    def put_on(shard: dict, bodies: list[str]) -> list[str]:
        sequences = stream.put(bodies, key=key_for(shard))
        put.extend(record_id(stream.name, shard["ShardId"], sequence) for sequence in sequences)
        return put[-len(bodies) :]

    def dead_lettered(count: int) -> None:
        wait_until(lambda: queues.count(queues.dlq_url) == count)

    def received() -> float:
        return metric(scrape(port, "/metrics")[1], "loginetl_messages_received_total")

    try:
        watched.wait_for('"lease_taken"', times=2)
        with table_locked(database_url):  # every insert into user_logins waits
            with row_locked(database_url, stream, b):
                for number in (1, 2, 3):  # committing, prepared ahead, waiting to be handed over
                    put_on(b, [f"{{poison {number}"])
                    dead_lettered(number)  # the batch of it was cut
                    wait_until(lambda: waiting_on_lock(db, statement="SET checkpoint"))
                [in_a, poison_a] = put_on(a, [*logins(1, "a"), "{poison a"])
                [in_b, poison_b] = put_on(b, [*logins(1, "b"), "{poison b"])
                wait_until(lambda: received() == 7)  # both shards' records wait in the inbox
            # The three poison batches commit; the next one holds both shards' records.
            dead_lettered(5)
            wait_until(lambda: waiting_on_lock(db, statement="loginetl_stage"))  # its insert waits
            set_owner(db, stream, a, "another-owner")
            watched.wait_for('"lease_lost"')  # the lease coordinator saw it too

        wait_until(
            lambda: shard_table(db, stream)[b["ShardId"]]["checkpoint"] == sequence_of(poison_b)
        )
        assert [r["sqs_message_id"] for r in rows(db)] == [in_b]  # the rest, committed
        lost = shard_table(db, stream)[a["ShardId"]]
        assert (lost["owner"], lost["checkpoint"]) == ("another-owner", None)  # no checkpoint
        watched.wait_for("its records were rolled back")  # the commit found the lease gone

        def batches_of(record: str) -> list[set[str]]:
            logged = [json.loads(line) for line in watched.lines if '"event": "batch"' in line]
            return [set(batch["message_ids"]) for batch in logged if record in batch["message_ids"]]

        wait_until(lambda: batches_of(in_b))  # its log line, written just after its commit
        assert batches_of(in_b) == [{in_b, poison_b}]  # the re-cut: shard b's records of it

        set_owner(db, stream, a, None)  # the other owner gives shard a back
        wait_until(lambda: len(rows(db)) == 2)  # read again from shard a's checkpoint
    finally:
        watched.process.send_signal(signal.SIGTERM)
        code, out, err = watched.finish()
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert (summary["loaded"], summary["duplicates"], summary["dead_lettered"]) == (2, 0, 5)

    loaded = [r["sqs_message_id"] for r in rows(db)]
    copies = Counter(
        message["MessageAttributes"]["loginetl-original-message-id"]["StringValue"]
        for message in queues.drain(queues.dlq_url)
    )
    assert sorted(loaded) == sorted([in_a, in_b])  # each valid record once
    assert not set(loaded) & set(copies) and set(loaded) | set(copies) == set(put)
    # The DLQ is at-least-once: the fenced batch had sent shard a's poison record before its
    # commit failed, and the shard's next holder sends it again (one message: one original id).
    assert copies == {record: 1 for record in put if record not in loaded} | {poison_a: 2}
    assert shard_table(db, stream)[a["ShardId"]]["checkpoint"] == sequence_of(poison_a)
