"""A stream run without --follow reads every shard to its tip or says which it could not, and
`status` tells a stale lease from a live one: kinesis-mock, moto's SQS and PostgreSQL.

A lease whose owner stopped renewing (killed) is waited out and taken; a lease whose owner keeps
renewing is left to it, named in the summary, and the run exits 3 (EXIT_INCOMPLETE). Lease calls
outside a batch ride out a database outage as batch commits do.
"""

from __future__ import annotations

import json
import random
import signal
import threading
from datetime import UTC, datetime

import pytest

from loginetl.errors import EXIT_INCOMPLETE
from loginetl.stream.client import list_shards
from loginetl.stream.leases import SHARDS, Leases
from tests.support.data import rows
from tests.support.faults import Watched, proxy_for, start_loginetl, through, wait_until
from tests.support.runs import invoke, logins, shard_table
from tests.support.servers import make_stream


def put_by_shard(stream, bodies: list[str]) -> dict[str, set[str]]:
    """PutRecords each body under its own partition key; the user ids that went to each shard."""
    by_shard: dict[str, set[str]] = {}
    for start in range(0, len(bodies), 100):
        chunk = bodies[start : start + 100]
        entries = [
            {"Data": body.encode(), "PartitionKey": f"p-{start + i}"}
            for i, body in enumerate(chunk)
        ]
        response = stream.client.put_records(StreamName=stream.name, Records=entries)
        assert not response.get("FailedRecordCount"), response
        for body, entry in zip(chunk, response["Records"], strict=True):
            by_shard.setdefault(entry["ShardId"], set()).add(json.loads(body)["user_id"])
    return by_shard


def one_shot(env: dict, stream, *args: str) -> tuple[int, dict, str]:
    result = invoke(env, "run", "--stream", stream.name, "--json", *args)
    return result.exit_code, json.loads(result.stdout), result.stderr


@pytest.mark.slow  # a run killed mid-load, then a lease expiry waited out: about 15 s
def test_after_kill_9_one_run_waits_out_the_dead_leases_and_reads_everything(
    kinesis, stream_env, db
):
    stream = make_stream(kinesis, 4)
    bodies = logins(400, "dead")
    random.Random(28).shuffle(bodies)
    stream.put(bodies)
    assert invoke(stream_env, "init-db").exit_code == 0
    # 10 ms each way to the database: the batches of 7 take a while, so the kill lands mid-load.
    url = stream_env["LOGINETL_DATABASE_URL"]
    proxy = proxy_for(url, delay=0.01)
    far = stream_env | {"LOGINETL_DATABASE_URL": through(proxy, url)}
    process = start_loginetl("run", "--stream", stream.name, "--batch-size", "7", env=far)
    wait_until(lambda: len(rows(db)) >= 30 or process.poll() is not None, timeout=60)
    process.kill()
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read()
    process.stdout.close(), process.stderr.close()
    proxy.cut()
    dead = {row["owner"] for row in shard_table(db, stream).values()}
    assert len(dead) == 1 and None not in dead  # every shard still leased to the dead process

    code, summary, _ = one_shot(stream_env, stream)  # at once: no lease has expired yet
    assert code == 0
    assert summary["stopped_because"] == "stream read to its tip"
    assert summary["shards_not_read"] == [] and summary["duplicates"] == 0
    assert {r["user_id"] for r in rows(db)} == {f"dead-{i:04d}" for i in range(400)}
    assert len(rows(db)) == 400


class LiveHolder:
    """Another process's lease protocol on some shards of a stream: it holds them and keeps
    renewing, as a `run --follow` does, until stopped."""

    def __init__(self, database_url: str, stream, shard_ids: list[str]) -> None:
        self.leases = Leases(database_url, stream.name, 3.0, "live-holder:1:abc")
        self.leases.sync(list_shards(stream.client, stream.name))
        self.leases.round()  # takes every free shard ...
        self.leases.give_back([s for s in self.leases.held if s not in shard_ids])  # ... keeps some
        assert sorted(self.leases.held) == sorted(shard_ids)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._renew, daemon=True)
        self.thread.start()

    def _renew(self) -> None:
        while not self.stop.wait(0.5):
            self.leases.round(wanted=False)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.leases.give_back()
        self.leases.close()


def test_a_run_beside_a_live_holder_reads_the_rest_and_names_the_shards_it_left(
    kinesis, stream_env, db
):
    stream = make_stream(kinesis, 4)
    assert invoke(stream_env, "init-db").exit_code == 0
    by_shard = put_by_shard(stream, logins(120, "live"))
    assert len(by_shard) == 4
    kept = sorted(by_shard)[1:]  # more than a fair share of two holders: a follower would steal
    holder = LiveHolder(stream_env["LOGINETL_DATABASE_URL"], stream, kept)
    try:
        code, summary, stderr = one_shot(stream_env, stream)
        table = shard_table(db, stream)
    finally:
        holder.close()
    assert code == EXIT_INCOMPLETE
    assert [s["shard"] for s in summary["shards_not_read"]] == kept
    assert {s["owner"] for s in summary["shards_not_read"]} == {"live-holder:1:abc"}
    assert all(s["lease_expires"] for s in summary["shards_not_read"])
    assert summary["stopped_because"].startswith("3 shards not read, held by a process")
    assert all(shard in summary["stopped_because"] for shard in kept)
    assert "not read to its tip (exit 3)" in stderr
    loaded = {r["user_id"] for r in rows(db)}
    assert loaded == set().union(*(by_shard[s] for s in by_shard if s not in kept))
    assert all(table[s]["owner"] == "live-holder:1:abc" for s in kept)  # never stolen


def test_status_flags_a_stale_lease_and_records_nobody_reads(stream_env, stream, db):
    assert invoke(stream_env, "init-db").exit_code == 0
    stream.put(logins(4, "early"))
    report = json.loads(invoke(stream_env, "status", "--stream", stream.name, "--json").stdout)
    assert {s["behind"] for s in report["stream"]["shards"]} == {True}  # no owner yet
    assert sum("no process reading it" in p for p in report["problems"]) == 2

    # Leases of 10 s renewed every 0.5 s: stale after 1 s, long before they expire.
    watched = Watched(
        "--log-format",
        "json",
        "run",
        "--stream",
        stream.name,
        "--follow",
        env=stream_env | {"LOGINETL_LEASE_FOR": "10"},
    )
    wait_until(lambda: len(rows(db)) == 4, timeout=60)
    live = json.loads(invoke(stream_env, "status", "--stream", stream.name, "--json").stdout)
    assert {(s["stale"], s["behind"]) for s in live["stream"]["shards"]} == {(False, None)}
    assert not any("shard" in problem for problem in live["problems"])
    watched.process.kill()  # its leases stay, no longer renewed
    watched.finish()
    stream.put(logins(2, "late"))

    def stale() -> dict:
        result = invoke(stream_env, "status", "--stream", stream.name, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    def unexpired(shard: dict) -> bool:
        return datetime.fromisoformat(shard["lease_expires"]) > datetime.now(UTC)

    wait_until(lambda: all(s["stale"] for s in stale()["stream"]["shards"]), timeout=30)
    report = stale()
    shards = report["stream"]["shards"]
    assert all(unexpired(s) for s in shards)  # stale for want of renewal, not expired yet
    assert all(s["owner"] and s["renewed_seconds_ago"] > 1.0 for s in shards)  # 2 x 0.5 s
    assert sum("last renewed" in p and "likely stopped" in p for p in report["problems"]) == 2
    assert any(s["behind"] for s in shards)
    text = invoke(stream_env | {"COLUMNS": "80"}, "status", "--stream", stream.name)
    assert "stale: its holder stopped renewing" in text.stdout.replace("\n", " ")
    assert "…" not in text.stdout


def test_lease_renewals_ride_out_a_database_outage(stream_env, stream, db):
    assert invoke(stream_env, "init-db").exit_code == 0
    url = stream_env["LOGINETL_DATABASE_URL"]
    proxy = proxy_for(url)
    far = stream_env | {"LOGINETL_DATABASE_URL": through(proxy, url)}
    watched = Watched(
        "--log-format", "json", "run", "--stream", stream.name, "--follow", "--json", env=far
    )
    try:
        watched.wait_for('"lease_taken"', times=2)
        proxy.cut()  # no batch in hand: the next renewal is the first to meet the outage
        watched.wait_for('"database_unavailable"')
        proxy.restore()
        watched.wait_for('"database_available"')
        stream.put(logins(5, "after"))
        wait_until(lambda: len(rows(db)) == 5 or watched.process.poll() is not None, timeout=60)
        assert watched.process.poll() is None, "".join(watched.lines)
    finally:
        watched.process.send_signal(signal.SIGTERM)
        code, out, err = watched.finish()
        proxy.cut()
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["loaded"] == 5
    with db.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {SHARDS} WHERE stream = %s", (stream.name,))
        assert cursor.fetchone()[0] == 2


class ScriptedKinesis:
    """A Kinesis client that answers GetRecords from a script: the reader's pacing, apart from
    any server's timing."""

    def __init__(self, behind: list[int]) -> None:
        self.behind = list(behind)
        self.reads = 0

    def get_shard_iterator(self, **request) -> dict:
        return {"ShardIterator": "iterator"}

    def get_records(self, ShardIterator: str, Limit: int) -> dict:
        self.reads += 1
        return {
            "Records": [],
            "NextShardIterator": "iterator",
            "MillisBehindLatest": self.behind.pop(0),
        }


class CountedStop(threading.Event):
    """The run's stop event, noting each wait the reader makes on it (and not waiting)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout=None) -> bool:
        self.waits.append(timeout)
        return self.is_set()


def test_an_empty_read_behind_the_tip_is_followed_by_another_at_once():
    from loginetl.metrics import Metrics
    from loginetl.pipeline.state import RunOptions, Shared
    from loginetl.stream.leases import Lease
    from loginetl.stream.metrics import StreamMetrics
    from loginetl.stream.reading import IDLE_WAIT, Reading, ShardReader, ShardState

    stop = CountedStop()
    shared = Shared("", RunOptions(batch_size=10), stop)
    client = ScriptedKinesis([5000, 4000, 100, 0])  # empty reads behind, then at the tip
    reading = Reading(shared, client, "s", None, "trim-horizon", 1.0, StreamMetrics(Metrics()))
    ShardReader(reading, ShardState(Lease("shardId-0", None))).run()
    assert client.reads == 4 and shared.failure is None
    assert IDLE_WAIT not in stop.waits


def test_from_at_timestamp_starts_a_shard_without_checkpoint_at_that_time(stream_env, stream, db):
    from datetime import timedelta

    stream.put(logins(3, "before"), key="k")
    [shard] = [
        s["ShardId"]
        for s in stream.shards()
        if stream.client.get_records(
            ShardIterator=stream.client.get_shard_iterator(
                StreamName=stream.name, ShardId=s["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
        )["Records"]
    ]
    iterator = stream.client.get_shard_iterator(
        StreamName=stream.name, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    arrived = max(
        r["ApproximateArrivalTimestamp"]
        for r in stream.client.get_records(ShardIterator=iterator)["Records"]
    )
    # The next whole second: kinesis-mock compares arrival times at one-second resolution.
    cut = arrived.replace(microsecond=0) + timedelta(seconds=1)
    wait_until(lambda: datetime.now(UTC) > cut + timedelta(milliseconds=5), timeout=5)
    stream.put(logins(2, "after"), key="k")
    assert invoke(stream_env, "init-db").exit_code == 0
    start = "at-timestamp:" + cut.astimezone(UTC).isoformat().replace("+00:00", "Z")
    code, summary, _ = one_shot(stream_env, stream, "--from", start)
    assert code == 0, summary
    assert sorted(r["user_id"] for r in rows(db)) == ["after-0000", "after-0001"]


@pytest.mark.parametrize(
    "start", ["at-timestamp:2026-12-01T00:00:00", "at-timestamp:soon", "yesterday"]
)
def test_a_bad_from_is_a_usage_error(stream_env, stream, start):
    result = invoke(stream_env, "run", "--stream", stream.name, "--from", start)
    assert result.exit_code == 2
    assert "--from must be trim-horizon, latest or at-timestamp:TIME" in result.stderr
    assert "Traceback" not in result.output
