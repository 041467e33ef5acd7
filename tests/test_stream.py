"""`loginetl run --stream`: Kinesis on kinesis-mock, the dead-letter queue on moto, PostgreSQL.

Each record loads once under its identity (stream/shard/sequence); the checkpoint moves in the
transaction of the rows; bad records go to the dead-letter queue before the checkpoint passes
them; several processes share the shards.
"""

from __future__ import annotations

import base64
import json
import os
import signal
from datetime import UTC

import psycopg2
import pytest

from loginetl import load, schema
from loginetl.stream.checkpoints import LeaseLost, checkpoint
from loginetl.stream.client import record_id
from loginetl.stream.leases import SHARDS, Leases
from tests.support.data import rows, sample_messages
from tests.support.faults import ThrottlingSqs, Watched, start_loginetl, wait_until
from tests.support.runs import invoke, logins, run_stream, shard_table

SAMPLE = len(sample_messages())
VALID = SAMPLE - 1  # the sample has one invalid login


def test_loads_each_record_once_under_its_stream_shard_and_sequence(stream_env, stream, db):
    sequences = stream.put_sample()
    summary = run_stream(stream_env, stream)
    assert (summary["received"], summary["loaded"], summary["duplicates"]) == (SAMPLE, VALID, 0)
    assert summary["dead_lettered"] == 1
    assert (
        summary["stream"] == stream.name and summary["stopped_because"] == "stream read to its tip"
    )
    ids = {row["sqs_message_id"] for row in rows(db)}
    shards = [shard["ShardId"] for shard in stream.shards()]
    assert len(ids) == VALID and ids <= {
        record_id(stream.name, shard, sequence) for shard in shards for sequence in sequences
    }
    table = shard_table(db, stream)
    read = {shard["id"]: shard["checkpoint"] for shard in summary["shards"]}
    assert {shard: row["checkpoint"] for shard, row in table.items() if row["checkpoint"]} == {
        shard: point for shard, point in read.items() if point
    }
    assert all(row["owner"] is None for row in table.values())  # given back at the end

    again = run_stream(stream_env, stream)  # from the checkpoints: nothing new, nothing doubled
    assert (again["received"], again["loaded"], again["duplicates"]) == (0, 0, 0)
    stream.put_sample()
    third = run_stream(stream_env, stream)
    assert (third["received"], third["loaded"]) == (SAMPLE, VALID)
    assert len(rows(db)) == 2 * VALID


def test_the_default_batch_is_one_full_read_and_an_explicit_size_wins(stream_env, stream):
    """A stream run commits up to a GetRecords' worth (1,000) a transaction by default, a queue
    run 500 (test_cli_surface); --batch-size, or LOGINETL_BATCH_SIZE, still says otherwise."""
    stream.put_sample()
    assert invoke(stream_env, "init-db").exit_code == 0
    sizes = []
    for args, env in (((), {}), (("--batch-size", "7"), {}), ((), {"LOGINETL_BATCH_SIZE": "9"})):
        process = start_loginetl(
            "--log-format", "json", "run", "--stream", stream.name, *args, env=stream_env | env
        )
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        start = json.loads(stderr.splitlines()[0])
        assert start["event"] == "start"
        sizes.append(start["options"]["batch_size"])
    assert sizes == [1000, 7, 9]


def test_poison_and_binary_records_go_to_the_dead_letter_queue(stream_env, stream, queues, db):
    good = json.dumps(sample_messages()[0])
    binary = b"\xff\xfe\x00not utf-8"
    sequences = stream.put(["{not json", binary, good], key="one-shard")
    summary = run_stream(stream_env, stream)
    assert (summary["loaded"], summary["dead_lettered"]) == (1, 2)
    dead = {
        message["MessageAttributes"]["loginetl-sequence"]["StringValue"]: message
        for message in queues.drain(queues.dlq_url)
    }
    assert set(dead) == set(sequences[:2])
    poison, raw = dead[sequences[0]], dead[sequences[1]]
    assert poison["Body"] == "{not json"
    assert poison["MessageAttributes"]["loginetl-reason"]["StringValue"].startswith("json")
    assert base64.b64decode(raw["Body"]) == binary
    assert raw["MessageAttributes"]["loginetl-encoding"]["StringValue"] == "base64"
    assert raw["MessageAttributes"]["loginetl-reason"]["StringValue"].startswith("encoding")
    attributes = raw["MessageAttributes"]
    assert attributes["loginetl-source-stream"]["StringValue"] == stream.name
    assert attributes["loginetl-shard"]["StringValue"].startswith("shardId-")
    # The checkpoint passed them: a second run sends nothing more.
    assert run_stream(stream_env, stream)["received"] == 0
    assert queues.count(queues.dlq_url) == 0


def test_a_dead_letter_queue_that_refuses_keeps_the_checkpoint(stream_env, stream, queues, db):
    stream.put(["{not json", json.dumps(sample_messages()[0])], key="k")
    gone = queues.dlq_url + "-missing"
    assert invoke(stream_env, "init-db").exit_code == 0
    result = invoke(stream_env | {"LOGINETL_DLQ_URL": gone}, "run", "--stream", stream.name)
    assert result.exit_code != 0
    assert rows(db) == [] and all(r["checkpoint"] is None for r in shard_table(db, stream).values())
    summary = run_stream(stream_env, stream)  # the same records, once the DLQ is there
    assert (summary["loaded"], summary["dead_lettered"]) == (1, 1)


def test_a_dead_letter_send_refused_mid_run_rolls_the_batch_back(stream_env, stream, queues, db):
    """The send runs beside the insert (checkpoints.py): its refusal must still roll back. A
    FIFO queue exists (the run starts) but refuses every entry without a MessageGroupId."""
    fifo = queues.client.create_queue(
        QueueName=f"dlq-{os.getpid()}-{stream.name}.fifo", Attributes={"FifoQueue": "true"}
    )["QueueUrl"]
    stream.put([json.dumps(sample_messages()[0]), "{not json"], key="k")
    assert invoke(stream_env, "init-db").exit_code == 0
    result = invoke(stream_env | {"LOGINETL_DLQ_URL": fifo}, "run", "--stream", stream.name)
    assert result.exit_code != 0 and "refused" in result.stderr
    assert rows(db) == [] and all(r["checkpoint"] is None for r in shard_table(db, stream).values())


def test_usage_errors(stream_env, stream, queues):
    both = invoke(stream_env, "run", "--stream", stream.name, "--queue-url", queues.url)
    assert both.exit_code == 2 and "--queue-url and --stream" in both.stderr
    no_dlq = stream_env | {"LOGINETL_DLQ_URL": ""}
    refused = invoke(no_dlq, "run", "--stream", stream.name)
    assert refused.exit_code == 2 and "dead-letter queue" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    missing = invoke(stream_env, "init-db")
    assert missing.exit_code == 0
    absent = invoke(stream_env, "run", "--stream", "no-such-stream")
    assert absent.exit_code == 2 and "does not exist" in absent.stderr


def test_max_messages_and_from_latest(stream_env, stream, db):
    stream.put_sample()
    first = run_stream(stream_env, stream, "--max-messages", "5")
    assert first["received"] == 5
    rest = run_stream(stream_env, stream)
    assert rest["received"] == SAMPLE - 5 and len(rows(db)) == VALID

    fresh = make_fresh_stream(stream)
    fresh.put_sample()
    latest = run_stream(stream_env, fresh, "--from", "latest")
    assert latest["received"] == 0


def make_fresh_stream(stream):
    from tests.support.servers import make_stream

    return make_stream(stream.client, 1)


def test_follow_stops_on_sigterm_with_what_it_has_committed(stream_env, stream, db):
    assert invoke(stream_env, "init-db").exit_code == 0
    watched = Watched(
        "--log-format", "json", "run", "--stream", stream.name, "--follow", "--json", env=stream_env
    )
    watched.wait_for('"lease_taken"', times=2)
    stream.put_sample()
    wait_until(lambda: len(rows(db)) == VALID, timeout=60)
    watched.process.send_signal(signal.SIGTERM)
    code, out, err = watched.finish()
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["loaded"] == VALID and summary["stopped_because"] == "stopped by signal"


def test_a_stalled_holders_late_commit_fails(stream_env, stream, database_url, db):
    """The lease is checked inside the commit's transaction: once another process took the
    shard, the old holder's rows and checkpoint roll back together."""
    assert invoke(stream_env, "init-db").exit_code == 0
    shard = stream.shards()[0]["ShardId"]
    stale = Leases(database_url, stream.name, 1.0, "stalled")
    taker = Leases(database_url, stream.name, 30.0, "taker")
    stale._execute(f"INSERT INTO {SHARDS} (stream, shard_id) VALUES (%s, %s)", (stream.name, shard))
    assert [lease.shard_id for lease in stale.round().taken] == [shard]
    wait_until(lambda: taker.round().taken, timeout=10)  # after the stale lease expired
    connection = psycopg2.connect(database_url)
    table = schema.require_ready(connection)
    row = load_row("late-row")
    with pytest.raises(LeaseLost, match="taken by another process"):
        load.insert(
            connection,
            [row],
            table,
            lambda c, r: checkpoint(c, stream.name, "stalled", {shard: (1, -1)}),
        )
    assert rows(db) == []
    load.insert(
        connection, [row], table, lambda c, r: checkpoint(c, stream.name, "taker", {shard: (1, -1)})
    )
    assert [r["sqs_message_id"] for r in rows(db)] == ["late-row"]
    with pytest.raises(LeaseLost, match="already past"):  # never backwards
        load.insert(
            connection,
            [load_row("older")],
            table,
            lambda c, r: checkpoint(c, stream.name, "taker", {shard: (0, -1)}),
        )
    connection.close()
    stale.close(), taker.close()


def load_row(message_id: str):
    from datetime import datetime

    from loginetl import transform
    from loginetl.masking import MaskKey

    body = json.dumps(sample_messages()[0])
    return transform.to_row(body, MaskKey("k" * 32), message_id, datetime.now(UTC))


@pytest.mark.slow  # two processes and a lease stolen twice: about 20 s
def test_two_processes_share_the_shards(kinesis, stream_env, db):
    from tests.support.servers import make_stream

    stream = make_stream(kinesis, 4)
    assert invoke(stream_env, "init-db").exit_code == 0
    args = ("--log-format", "json", "run", "--stream", stream.name, "--follow", "--json")
    first = Watched(*args, env=stream_env)
    first.wait_for('"lease_taken"', times=4)
    second = Watched(*args, env=stream_env)
    second.wait_for('"lease_taken"', times=2, timeout=15)  # stolen from the busy one
    first.wait_for('"lease_lost"', times=2)
    owners = [row["owner"] for row in shard_table(db, stream).values()]
    assert sorted(owners.count(owner) for owner in set(owners)) == [2, 2]
    bodies = [json.dumps(message) for message in sample_messages()] * 3
    stream.put(bodies)  # the same logins under new records: each its own row
    wait_until(lambda: len(rows(db)) == 3 * VALID, timeout=60)
    for watched in (first, second):
        watched.process.send_signal(signal.SIGTERM)
    summaries = []
    for watched in (first, second):
        code, out, err = watched.finish()
        assert code == 0, err
        summaries.append(json.loads(out.strip().splitlines()[-1]))
    assert all(summary["loaded"] > 0 for summary in summaries)
    assert sum(summary["loaded"] for summary in summaries) == 3 * VALID
    assert sum(summary["duplicates"] for summary in summaries) == 0
    assert os.environ.get("AWS_ENDPOINT_URL_KINESIS") is None  # only the processes had it


def leases_expired(db, stream) -> None:
    def expired() -> bool:
        with db.cursor() as cursor:
            cursor.execute(
                f"SELECT count(*) FROM {SHARDS} WHERE stream = %s "
                "AND lease_expires > clock_timestamp()",
                (stream.name,),
            )
            return cursor.fetchone()[0] == 0

    wait_until(expired, timeout=30)


@pytest.mark.slow  # three kills and lease expiries: about 30 s
def test_kill_9_at_random_points_loses_nothing_and_doubles_nothing(kinesis, stream_env, db):
    """The checkpoint is in the transaction of the rows: a restart after kill -9 at any moment
    starts exactly after what was committed, so it finds nothing already loaded."""
    import random

    from tests.support.faults import proxy_for, start_loginetl, through
    from tests.support.servers import make_stream

    stream = make_stream(kinesis, 2)
    # 20 ms round trips to the database, as to RDS in another zone: a batch takes a while to
    # commit, so the kills land mid-run rather than after a run already done.
    proxy = proxy_for(stream_env["LOGINETL_DATABASE_URL"], delay=0.01)
    far = stream_env | {
        "LOGINETL_DATABASE_URL": through(proxy, stream_env["LOGINETL_DATABASE_URL"])
    }
    bodies = [*logins(300, "kill"), "{poison", b"\xff\xfe"]
    random.Random(17).shuffle(bodies)
    stream.put(bodies)
    assert invoke(stream_env, "init-db").exit_code == 0
    rng = random.Random(20261202)
    for _ in range(3):
        leases_expired(db, stream)  # each round starts from free leases
        before = len(rows(db))
        process = start_loginetl("run", "--stream", stream.name, "--batch-size", "7", env=far)
        target = before + rng.randint(8, 40)
        wait_until(
            lambda target=target, process=process: (
                len(rows(db)) >= target or process.poll() is not None
            ),
            timeout=60,
        )
        process.kill()
        process.wait()
        assert process.returncode == -signal.SIGKILL, process.stderr.read()  # killed mid-run
        process.stdout.close(), process.stderr.close()
    proxy.cut()
    leases_expired(db, stream)
    summary = run_stream(stream_env, stream, "--batch-size", "7")
    assert summary["duplicates"] == 0  # nothing committed before was read again
    assert len(rows(db)) == 300 and summary["received"] < len(bodies)
    assert {r["user_id"] for r in rows(db)} == {f"kill-{i:04d}" for i in range(300)}


def test_children_are_read_after_their_parents_through_a_split_and_a_merge(kinesis, stream_env, db):
    from tests.support.servers import make_stream

    stream = make_stream(kinesis, 1)
    assert invoke(stream_env, "init-db").exit_code == 0
    [parent] = stream.shards()
    stream.put(logins(30, "a"), key="one-user")
    low, high = (int(parent["HashKeyRange"][end]) for end in ("StartingHashKey", "EndingHashKey"))
    kinesis.split_shard(
        StreamName=stream.name,
        ShardToSplit=parent["ShardId"],
        NewStartingHashKey=str((low + high) // 2),
    )
    stream.wait_active()
    stream.put(logins(30, "b"), key="one-user")  # to a child: the parent is closed
    watched = Watched(
        "--log-format",
        "json",
        "run",
        "--stream",
        stream.name,
        "--follow",
        "--json",
        "--batch-size",
        "4",
        env=stream_env,
    )
    wait_until(lambda: len(rows(db)) == 60)
    children = [
        s["ShardId"] for s in stream.shards() if s.get("ParentShardId") == parent["ShardId"]
    ]
    kinesis.merge_shards(
        StreamName=stream.name, ShardToMerge=children[0], AdjacentShardToMerge=children[1]
    )
    stream.wait_active()
    stream.put(logins(30, "c"), key="one-user")  # during the run, to the merged shard
    wait_until(lambda: len(rows(db)) == 90)
    watched.process.send_signal(signal.SIGTERM)
    code, _, err = watched.finish()
    assert code == 0, err
    table = shard_table(db, stream)
    [merged] = [s for s in stream.shards() if s.get("AdjacentParentShardId")]
    assert table[parent["ShardId"]]["state"] == "finished"
    assert all(table[child]["state"] == "finished" for child in children)
    assert table[merged["ShardId"]]["state"] == "open"
    with db.cursor() as cursor:  # each batch is one transaction: its xmin orders the commits
        cursor.execute(
            "SELECT left(user_id, 1), min(xmin::text::bigint), max(xmin::text::bigint) "
            "FROM user_logins GROUP BY 1 ORDER BY 1"
        )
        (_, _, a_last), (_, b_first, b_last), (_, c_first, _) = cursor.fetchall()
    assert a_last < b_first and b_last < c_first  # in order, for the one partition key
    finished_at = [
        json.loads(line).get("shard") for line in err.splitlines() if '"shard_finished"' in line
    ]
    assert finished_at[:1] == [parent["ShardId"]]


def test_an_aggregated_record_loads_as_its_user_records(stream_env, stream, db):
    from aws_kinesis_agg.aggregator import RecordAggregator

    aggregator = RecordAggregator()
    for body in logins(3, "agg"):
        aggregator.add_user_record("agg", body.encode())
    key, _, data = aggregator.clear_and_get().get_contents()
    [sequence] = stream.put([data], key=key)
    first = run_stream(stream_env, stream, "--max-messages", "2")
    assert first["loaded"] == 2
    rest = run_stream(stream_env, stream)  # from the sub-sequence checkpoint: the third only
    assert (rest["received"], rest["loaded"], rest["duplicates"]) == (1, 1, 0)
    ids = sorted(r["sqs_message_id"] for r in rows(db))
    assert [i.rsplit("/", 2)[1:] for i in ids] == [[sequence, str(n)] for n in range(3)]
    assert sorted(r["user_id"] for r in rows(db)) == ["agg-0000", "agg-0001", "agg-0002"]


def test_status_and_peek_show_the_stream_changing_nothing(stream_env, stream, queues, db):
    stream.put([*logins(3, "seen"), "{poison"], key="k")
    assert invoke(stream_env, "init-db").exit_code == 0
    peeked = invoke(stream_env, "peek", "--stream", stream.name, "--json")
    assert peeked.exit_code == 0, peeked.output
    verdicts = [m["verdict"] for m in json.loads(peeked.stdout)["messages"]]
    assert verdicts[:3] == ["load"] * 3 and verdicts[3].startswith("json")
    summary = run_stream(stream_env, stream, "--max-messages", "2")
    assert summary["loaded"] == 2
    after = json.loads(invoke(stream_env, "peek", "--stream", stream.name, "--json").stdout)
    assert len(after["messages"]) == 2  # from the checkpoint on, which did not move
    assert shard_table(db, stream) == shard_table(db, stream)  # peek wrote nothing
    status = invoke(stream_env, "status", "--stream", stream.name, "--json")
    assert status.exit_code == 0, status.output
    report = json.loads(status.stdout)
    assert report["queue"] is None and report["dlq"]["url"] == queues.dlq_url
    shards = {shard["id"]: shard for shard in report["stream"]["shards"]}
    assert report["stream"]["name"] == stream.name and len(shards) == 2
    assert {shard["state"] for shard in shards.values()} == {"open"}
    [read] = [s for s in summary["shards"] if s["checkpoint"]]
    assert shards[read["id"]]["checkpoint"] == read["checkpoint"]
    assert set(shards[read["id"]]) == {
        "id",
        "parent",
        "state",
        "owner",
        "checkpoint",
        "lease_expires",
        "renewed_seconds_ago",
        "stale",
        "behind",
    }
    table = invoke(stream_env | {"COLUMNS": "80"}, "status", "--stream", stream.name)
    assert table.exit_code == 0 and read["checkpoint"] in table.stdout.replace("\n", "")
    assert "…" not in table.stdout


def test_metrics_show_the_shards_held_and_how_far_behind(stream_env, stream, db):
    from tests.support.faults import free_port
    from tests.support.runs import scrape

    port = free_port()
    assert invoke(stream_env, "init-db").exit_code == 0
    watched = Watched(
        "run", "--stream", stream.name, "--follow", "--metrics-port", str(port), env=stream_env
    )
    watched.wait_for("lease on shard", times=2)
    stream.put(logins(5, "m"))
    wait_until(lambda: len(rows(db)) == 5)
    _, text = scrape(port, "/metrics")
    assert "loginetl_stream_shards_held 2.0" in text
    assert "loginetl_stream_leases_taken_total 2.0" in text
    assert 'loginetl_stream_millis_behind_latest{shard="shardId-000000000000"}' in text
    assert "loginetl_messages_loaded_total 5.0" in text  # the run's own metrics, as for SQS
    watched.process.send_signal(signal.SIGTERM)
    assert watched.finish()[0] == 0


def test_replay_to_the_stream_loads_a_record_loaded_before_once(stream_env, stream, queues, db):
    """A dead-lettered record put back on the stream keeps its identity (in its partition
    key): one loaded before is a duplicate, one never loaded loads under its first identity."""
    from datetime import datetime

    from loginetl.stream.checkpoints import dead_letter_entry
    from loginetl.stream.client import StreamRecord

    [loaded_body, new_body] = logins(2, "replayed")
    [sequence] = stream.put([loaded_body], key="k")
    assert run_stream(stream_env, stream)["loaded"] == 1
    [loaded_id] = [r["sqs_message_id"] for r in rows(db)]
    shard = loaded_id.split("/")[1]
    now = datetime.now(UTC)
    dead = [  # as `run --stream` dead-letters them (a cause since fixed)
        StreamRecord(stream.name, shard, sequence, None, loaded_body.encode(), now),
        StreamRecord(stream.name, shard, "7", None, new_body.encode(), now),
    ]
    for record in dead:
        entry = dead_letter_entry(record, "database: an outage, since over")
        queues.client.send_message(QueueUrl=queues.dlq_url, **entry)
    moved = invoke(
        stream_env, "replay-dlq", "--dlq-url", queues.dlq_url, "--to-stream", stream.name, "--json"
    )
    assert moved.exit_code == 0, moved.output
    assert json.loads(moved.stdout)["moved"] == 2 and queues.count(queues.dlq_url) == 0
    summary = run_stream(stream_env, stream)
    assert (summary["received"], summary["loaded"], summary["duplicates"]) == (2, 1, 1)
    assert sorted(r["sqs_message_id"] for r in rows(db)) == sorted(
        [loaded_id, record_id(stream.name, shard, "7")]
    )


class KinesisFaults(ThrottlingSqs):
    """An HTTP front for kinesis-mock that answers the listed requests of an action with an
    error (in order, one per request), and forwards everything else."""

    def __init__(self, target: str, faults: dict[str, list[str]]) -> None:
        self.faults = {action: list(codes) for action, codes in faults.items()}
        self.served: list[str] = []
        super().__init__(target, throttle=0, every=1)

    def injected(self, action: str) -> tuple[int, bytes, str] | None:
        with self.lock:
            codes = self.faults.get(action) or []
            code = codes.pop(0) if codes else None
            if code:
                self.served.append(code)
        if not code:
            return None
        error = json.dumps({"__type": code, "message": "injected"}).encode()
        return 400, error, "application/x-amz-json-1.1"


def test_throttling_backs_off_and_an_expired_iterator_is_renewed(stream_env, stream, db):
    stream.put(logins(12, "slow"), key="k")
    throttled = ["ProvisionedThroughputExceededException"] * 3
    front = KinesisFaults(
        stream_env["AWS_ENDPOINT_URL_KINESIS"],
        {"GetRecords": [*throttled, "ExpiredIteratorException"]},
    )
    try:
        # One attempt per call: the backing off is loginetl's own, not botocore's retries.
        env = stream_env | {"AWS_ENDPOINT_URL_KINESIS": front.url, "AWS_MAX_ATTEMPTS": "1"}
        summary = run_stream(env, stream, "--batch-size", "5")
    finally:
        front.close()
    assert summary["loaded"] == 12 and summary["duplicates"] == 0
    assert front.served == [*throttled, "ExpiredIteratorException"]  # every fault was met
