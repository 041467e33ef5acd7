"""Running as a service: `run --follow`, Prometheus metrics and /healthz scraped over HTTP,
JSON logs, and the table partitioned by month."""

import json
import signal
import socket
from datetime import UTC, datetime

from loginetl import database, load, schema
from loginetl.masking import MaskKey
from loginetl.transform import to_row
from tests.support.data import MASK_KEY, rows, sample_messages
from tests.support.faults import free_port, proxy_for, start_loginetl, through, wait_until
from tests.support.runs import env_for, init, metric, scrape


def test_follow_loads_as_messages_arrive_with_metrics_and_json_logs(queues, database_url, db):
    init(database_url)
    port = free_port()
    process = start_loginetl(
        "--log-format",
        "json",
        "--log-level",
        "info",
        "run",
        "--follow",
        "--wait-time",
        "1",
        "--batch-size",
        "10",
        "--metrics-port",
        str(port),
        "--metrics-host",
        "127.0.0.1",
        env=env_for(queues.url, database_url),
    )
    wait_until(lambda: scrape(port, "/healthz") == (200, "ok\n"))

    bodies = [json.dumps(m) for m in sample_messages()[:30]]
    queues.send(bodies[:15])
    wait_until(lambda: len(rows(db)) + queues.count(queues.dlq_url) == 15)
    queues.send(bodies[15:])  # still following: these load too
    wait_until(lambda: len(rows(db)) + queues.count(queues.dlq_url) == 30)

    dead = queues.count(queues.dlq_url)
    # The rows are visible at COMMIT; the counters move just after it, as the batch settles.
    loaded = f"loginetl_messages_loaded_total {30 - dead:.1f}"
    wait_until(lambda: loaded in scrape(port, "/metrics")[1].splitlines())
    status, text = scrape(port, "/metrics")
    assert status == 200
    assert metric(text, "loginetl_messages_received_total") == 30
    assert metric(text, "loginetl_messages_loaded_total") == 30 - dead
    if dead:
        assert 'loginetl_messages_dead_lettered_total{reason="schema"}' in text
    assert metric(text, "loginetl_batch_seconds_count") >= 2
    assert "loginetl_queue_depth" in text
    assert scrape(port, "/nothing")[0] == 404

    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "queue drained" not in stdout  # it was stopped, not drained
    log_lines = [line for line in stderr.splitlines() if line.startswith("{")]
    entries = [json.loads(line) for line in log_lines]
    batches = [e for e in entries if e["event"] == "batch"]
    assert batches and all({"ts", "level", "message_ids", "loaded"} <= set(e) for e in batches)
    assert sum(e["loaded"] for e in batches) == 30 - dead
    for message in sample_messages()[:30]:
        if "ip" in message:
            assert message["ip"] not in stderr and message["device_id"] not in stderr
    assert MASK_KEY not in stderr


def test_healthz_fails_while_the_database_is_away(queues, database_url, db):
    init(database_url)
    proxy = proxy_for(database_url)
    port = free_port()
    process = start_loginetl(
        "run",
        "--follow",
        "--wait-time",
        "1",
        "--metrics-port",
        str(port),
        "--metrics-host",
        "127.0.0.1",
        env=env_for(queues.url, through(proxy, database_url)),
    )
    try:
        wait_until(lambda: scrape(port, "/healthz")[0] == 200)
        proxy.cut()
        wait_until(lambda: scrape(port, "/healthz")[0] == 503, timeout=20)
        assert "cannot connect to database" in scrape(port, "/healthz")[1]
        proxy.restore()
        wait_until(lambda: scrape(port, "/healthz")[0] == 200, timeout=20)
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
        proxy.cut()
    assert process.returncode == 0


def test_a_metrics_port_in_use_is_a_configuration_error(cli, queues):
    cli("init-db")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("run", "--metrics-port", str(port), "--metrics-host", "127.0.0.1")
    assert result.exit_code == 2
    assert f"cannot serve metrics on 127.0.0.1:{port}" in result.stderr


def partitions(db) -> list[str]:
    with db.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'user_logins'::regclass ORDER BY 1"
        )
        return [name for (name,) in cursor]


def test_a_table_partitioned_by_month_gets_partitions_on_demand_and_stays_idempotent(
    cli, queues, db
):
    result = cli("init-db", "--partition-by", "month", "--json")
    assert json.loads(result.stdout)["partitioned"] is True
    with db.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE relname = 'user_logins'")
        assert cursor.fetchone()[0] == "p"
    good = sample_messages()[0]
    bodies = [
        json.dumps(dict(good, user_id="jan", create_date="2026-01-15")),
        json.dumps(dict(good, user_id="feb", create_date="2026-02-01")),
        json.dumps(dict(good, user_id="feb2", create_date="2026-02-28T23:00:00Z")),
    ]
    queues.send(bodies)
    original = {"loginetl-original-message-id": {"DataType": "String", "StringValue": "orig-9"}}
    queues.send([json.dumps(dict(good, user_id="replayed"))] * 2, attributes=original)

    summary = json.loads(cli("run", "--json").stdout)

    assert (summary["loaded"], summary["duplicates"]) == (4, 1)
    assert [p for p in partitions(db) if p.startswith("user_logins_2026_0")][:2] == [
        "user_logins_2026_01",
        "user_logins_2026_02",
    ]
    assert sorted(r["user_id"] for r in rows(db)) == ["feb", "feb2", "jan", "replayed"]

    # The same message again later (a replay with a new sent day): still one row.
    queues.send([json.dumps(dict(good, user_id="replayed"))], attributes=original)
    summary = json.loads(cli("run", "--json").stdout)
    assert (summary["loaded"], summary["duplicates"]) == (0, 1)
    assert len(rows(db)) == 4
    again = json.loads(cli("init-db", "--partition-by", "month", "--json").stdout)
    assert again["created"] is False and again["partitioned"] is True


def test_a_replay_sent_on_another_day_stays_one_row_in_a_partitioned_table(cli, db):
    """A message without create_date is dated by the day SQS got it: replayed a month later it
    gets another day, so another partition. The id table (not an index on sqs_message_id and
    create_date, the most a partitioned table allows) is what keeps it one row."""
    cli("init-db", "--partition-by", "month")
    body = json.dumps({k: v for k, v in sample_messages()[0].items() if k != "create_date"})
    key = MaskKey(MASK_KEY)
    connection = database.connect(db.url)
    try:
        table = schema.describe(connection)
        first_sent, replayed = (
            datetime(2026, 1, 31, 23, tzinfo=UTC),
            datetime(2026, 3, 2, tzinfo=UTC),
        )
        first = load.insert(connection, [to_row(body, key, "orig-7", first_sent)], table)
        again = load.insert(connection, [to_row(body, key, "orig-7", replayed)], table)
    finally:
        connection.close()

    assert (first.inserted, again.inserted, again.duplicates) == (["orig-7"], [], ["orig-7"])
    assert [(r["sqs_message_id"], str(r["create_date"])) for r in rows(db)] == [
        ("orig-7", "2026-01-31")
    ]


def test_partitioning_an_existing_plain_table_is_refused(cli, db):
    cli("init-db")
    result = cli("init-db", "--partition-by", "month")
    assert result.exit_code == 2
    assert "is not partitioned" in result.stderr
    with db.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE relname = 'user_logins'")
        assert cursor.fetchone()[0] == "r"  # untouched
