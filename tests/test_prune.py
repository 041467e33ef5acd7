"""`loginetl prune --older-than AGE`: count, then delete in bounded batches or drop whole
partitions; safe while `run` loads."""

import json
import signal
import threading
from datetime import date, timedelta

import psycopg2
import pytest

from loginetl import retention
from loginetl.errors import ConfigError
from tests.support.data import rows, sample_messages
from tests.support.faults import Watched, wait_until
from tests.support.runs import env_for

TODAY = date(2026, 12, 2)
DAYS = [date(2026, 1, 15), date(2026, 2, 10), date(2026, 3, 1), date(2026, 3, 31), TODAY]


def load_days(cli, queues, days: list[date], per_day: int) -> None:
    messages = [message for message in sample_messages() if "user_id" in message]
    bodies = [
        json.dumps(messages[(i * per_day + n) % len(messages)] | {"create_date": day.isoformat()})
        for i, day in enumerate(days)
        for n in range(per_day)
    ]
    queues.send(bodies)
    result = cli("run", "--json")
    assert json.loads(result.stdout)["loaded"] == len(bodies), result.output


@pytest.mark.parametrize(
    "age, cutoff",
    [
        ("90d", TODAY - timedelta(days=90)),
        ("12w", TODAY - timedelta(weeks=12)),
        ("2026-03-01", date(2026, 3, 1)),
        (" 7d ", TODAY - timedelta(days=7)),
    ],
)
def test_ages_and_dates(age, cutoff):
    assert retention.cutoff_for(age, TODAY) == cutoff


@pytest.mark.parametrize("age", ["90", "3m", "yesterday", "2026-13-01", ""])
def test_a_bad_age_exits_2_with_one_line(cli, age):
    with pytest.raises(ConfigError, match="--older-than"):
        retention.cutoff_for(age, TODAY)
    result = cli("prune", "--older-than", age)
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "--older-than" in result.stderr


@pytest.mark.parametrize("partition_by", [None, "month"])
def test_without_yes_it_counts_with_yes_it_deletes(cli, queues, db, partition_by):
    assert (
        cli("init-db", *(["--partition-by", partition_by] if partition_by else [])).exit_code == 0
    )
    load_days(cli, queues, DAYS, per_day=4)
    counted = cli("prune", "--older-than", "2026-03-01", "--json")
    assert counted.exit_code == 0, counted.output
    assert json.loads(counted.stdout) == {
        "database": json.loads(counted.stdout)["database"],
        "cutoff": "2026-03-01",
        "matched": 8,
    }
    assert len(rows(db)) == 20  # nothing deleted

    pruned = cli("prune", "--older-than", "2026-03-01", "--yes", "--json")
    assert pruned.exit_code == 0, pruned.output
    report = json.loads(pruned.stdout)
    assert report["matched"] == report["deleted"] == 8
    kept = sorted({row["create_date"] for row in rows(db)})
    assert kept == [date(2026, 3, 1), date(2026, 3, 31), TODAY]
    if partition_by:  # January and February dropped whole, nothing deleted row by row
        assert report["dropped"] == ["user_logins_2026_01", "user_logins_2026_02"]
        assert report["partitions_dropped"] == 2 and report["batches"] == 0
    else:
        assert report["partitions_dropped"] == 0 and report["batches"] == 1

    again = cli("prune", "--older-than", "2026-03-01", "--yes", "--json")
    assert json.loads(again.stdout)["deleted"] == 0


def test_a_partition_straddling_the_cutoff_loses_only_its_old_rows(cli, queues, db):
    cli("init-db", "--partition-by", "month")
    load_days(cli, queues, DAYS, per_day=2)
    report = json.loads(cli("prune", "--older-than", "2026-03-15", "--yes", "--json").stdout)
    assert report["dropped"] == ["user_logins_2026_01", "user_logins_2026_02"]
    assert report["deleted"] == 6 and report["batches"] == 1  # the 2 of March 1st, in March's
    assert sorted({row["create_date"] for row in rows(db)}) == [date(2026, 3, 31), TODAY]


def test_rows_go_in_batches_of_bounded_size_each_committed(cli, queues, db):
    cli("init-db")
    load_days(cli, queues, [date(2025, 1, 1)], per_day=95)
    connection = psycopg2.connect(db.url)
    try:
        report = retention.prune(connection, date(2026, 1, 1), apply=True, batch_rows=10)
    finally:
        connection.close()
    assert (report.deleted, report.batches) == (95, 10)  # 10 transactions of at most 10 rows
    assert rows(db) == []


def test_prune_logs_a_prune_event(cli, queues, db):
    cli("init-db")
    load_days(cli, queues, [date(2025, 5, 5)], per_day=3)
    result = cli("--log-format", "json", "prune", "--older-than", "2026-01-01", "--yes")
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stderr.splitlines()]
    (event,) = [e for e in events if e["event"] == "prune"]
    assert (event["matched"], event["deleted"], event["partitions_dropped"]) == (3, 3, 0)
    assert json.loads(result.stdout)["deleted"] == 3


def test_prune_without_a_table_exits_2(cli):
    result = cli("prune", "--older-than", "90d")
    assert result.exit_code == 2 and "does not exist" in result.stderr


@pytest.mark.parametrize("partition_by", [None, "month"])
def test_prune_is_safe_while_run_loads(cli, queues, db, partition_by):
    """A follower loads new messages while prune deletes and drops the old ones: every new
    message is loaded once, every old row is gone, and neither fails."""
    cli("init-db", *(["--partition-by", partition_by] if partition_by else []))
    old_days = [date(2025, month, 1) for month in range(1, 7)]
    load_days(cli, queues, old_days, per_day=30)
    follower = Watched(
        "run",
        "--follow",
        "--wait-time",
        "1",
        "--batch-size",
        "5",
        env=env_for(queues.url, db.url),
    )
    try:
        valid = [m for m in sample_messages() if "user_id" in m]
        new = [json.dumps(m | {"create_date": "2026-11-30"}) for m in valid]
        sender = threading.Thread(target=queues.send, args=(new,))
        sender.start()
        connection = psycopg2.connect(db.url)
        try:
            report = retention.prune(connection, date(2026, 1, 1), apply=True, batch_rows=7)
        finally:
            connection.close()
        sender.join()
        wait_until(lambda: queues.count() == 0, timeout=60)
    finally:
        follower.process.send_signal(signal.SIGTERM)
        code, _, said = follower.finish()
    assert report.deleted == 180
    assert code == 0, said
    kept = rows(db)
    assert len(kept) == len(new) and {row["create_date"] for row in kept} == {date(2026, 11, 30)}
