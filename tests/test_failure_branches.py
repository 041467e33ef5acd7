"""The branches where data could be lost, each exercised against the real servers: a dead-letter
queue that refuses, deletes SQS reports as failed, concurrent init-db and partition creation,
endpoints and credentials, /healthz going stale, the counters, the defaults."""

import json
import os
import subprocess
import sys

from loginetl import sqs
from loginetl.config import Settings
from loginetl.metrics import Metrics, MetricsServer
from tests.support.data import rows, sample_messages
from tests.support.faults import (
    RecordingSqs,
    Watched,
    free_port,
    proxy_for,
    start_loginetl,
    through,
    wait_until,
)
from tests.support.runs import (
    env_for,
    finish,
    init,
    metric,
    scrape,
    table_locked,
    visible,
    waiting_on_lock,
)
from tests.support.servers import make_queues

VALID = [
    json.dumps(dict(m, user_id=f"user-{i}"))
    for i, m in enumerate(sample_messages())
    if "user_id" in m
]


def test_a_message_the_dead_letter_queue_refuses_stays_on_the_source_queue(sqs, database_url, db):
    init(database_url)
    queues = make_queues(sqs, visibility_timeout=1)
    sqs.set_queue_attributes(QueueUrl=queues.dlq_url, Attributes={"MaximumMessageSize": "1024"})
    too_big = json.dumps({"user_id": "u", "padding": "x" * 2000})  # invalid, and over 1 KiB
    ids = queues.send([*VALID[:5], too_big])

    code, stdout, stderr = finish(
        start_loginetl("run", "--json", env=env_for(queues.url, database_url))
    )

    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["loaded"] == 5 and summary["dead_lettered"] == 0
    [why] = summary["left_on_queue_by_reason"]
    assert why.startswith("dead-letter queue refused it")
    assert "invalid messages were left on the queue" in stderr
    wait_until(lambda: visible(queues) == 1)  # not deleted: the DLQ did not take it
    [left] = queues.drain(queues.url)
    assert left["MessageId"] == ids[-1]
    assert queues.count(queues.dlq_url) == 0


def test_a_dead_letter_queue_that_does_not_exist_fails_the_run_and_deletes_nothing_refused(
    sqs, sqs_endpoint, database_url, db
):
    init(database_url)
    queues = make_queues(sqs, redrive=False, visibility_timeout=1)
    queues.send([*VALID[:3], "not json"])
    missing = f"{sqs_endpoint}/123456789012/no-such-dlq"

    code, _, stderr = finish(
        start_loginetl("run", "--json", "--dlq-url", missing, env=env_for(queues.url, database_url))
    )

    assert code == 2
    assert f"{missing}: the queue does not exist" in stderr
    assert len(rows(db)) == 3  # the valid rows were committed
    wait_until(lambda: visible(queues) == queues.count())
    bodies = [message["Body"] for message in queues.drain(queues.url)]
    assert "not json" in bodies  # the refused one was not deleted


def test_deletes_sqs_reports_as_failed_are_counted_and_a_rerun_skips_them(
    sqs, sqs_endpoint, database_url, db
):
    init(database_url)
    queues = make_queues(sqs, visibility_timeout=1)
    queues.send(VALID[:10])

    def spoil_one_receipt(action: str, body: bytes) -> bytes:
        if action != "DeleteMessageBatch":
            return body
        request = json.loads(body)
        request["Entries"][0]["ReceiptHandle"] = "not-a-receipt-handle"
        return json.dumps(request).encode()

    front = RecordingSqs(sqs_endpoint, rewrite=spoil_one_receipt)
    try:
        env = env_for(queues.url.replace(sqs_endpoint, front.url), database_url)
        code, stdout, stderr = finish(start_loginetl("run", "--json", env=env))
    finally:
        front.close()

    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["loaded"] == 10 and summary["delete_failures"] == 1
    assert len(rows(db)) == 10
    wait_until(lambda: queues.count() == 1)  # the one SQS did not delete comes back
    code, stdout, stderr = finish(
        start_loginetl("run", "--json", env=env_for(queues.url, database_url))
    )
    assert code == 0, stderr
    assert (json.loads(stdout)["duplicates"], json.loads(stdout)["loaded"]) == (1, 0)
    assert queues.count() == 0 and len(rows(db)) == 10


def test_concurrent_init_db_runs_queue_on_the_lock_and_all_succeed(database_url, db):
    env = {"LOGINETL_DATABASE_URL": database_url}
    processes = [start_loginetl("init-db", "--partition-by", "month", env=env) for _ in range(4)]
    results = [finish(process, timeout=120) for process in processes]

    assert [code for code, _, _ in results] == [0] * 4, results
    with db.cursor() as cursor:
        cursor.execute(
            "SELECT relkind FROM pg_class"
            " WHERE relname IN ('user_logins', 'user_logins_message_ids') ORDER BY relname"
        )
        assert [kind for (kind,) in cursor.fetchall()] == ["p", "r"]


def test_concurrent_loaders_create_each_new_partition_once(sqs, database_url, db):
    init_db = start_loginetl(
        "init-db", "--partition-by", "month", env={"LOGINETL_DATABASE_URL": database_url}
    )
    assert finish(init_db)[0] == 0
    queues = [make_queues(sqs) for _ in range(3)]
    months = ["2025-01-15", "2025-02-15", "2025-03-15"]
    for index, queue in enumerate(queues):  # every loader needs every month, in its own order
        queue.send(
            [
                json.dumps(
                    dict(
                        json.loads(VALID[0]),
                        user_id=f"u{index}-{n}",
                        create_date=months[(n + index) % 3],
                    )
                )
                for n in range(9)
            ]
        )

    with table_locked(database_url):  # all three reach their first insert before any proceeds
        processes = [
            start_loginetl("run", "--json", env=env_for(q.url, database_url)) for q in queues
        ]
        wait_until(lambda: waiting_on_lock(db, 3))
    outcomes = [finish(process) for process in processes]

    assert [code for code, _, _ in outcomes] == [0, 0, 0], outcomes
    assert len(rows(db)) == 27
    with db.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'user_logins'::regclass ORDER BY 1"
        )
        assert [name for (name,) in cursor.fetchall()] == [
            "user_logins_2025_01",
            "user_logins_2025_02",
            "user_logins_2025_03",
        ]


def test_endpoint_url_sends_every_call_to_the_endpoint_given(
    queues, sqs_endpoint, database_url, db
):
    init(database_url)
    queues.send(VALID[:4])
    front = RecordingSqs(sqs_endpoint)
    try:
        # The queue URL names a host where nothing listens: only --endpoint-url can reach SQS.
        unreachable_host = queues.url.replace(sqs_endpoint, "http://127.0.0.1:1")
        env = env_for(unreachable_host, database_url)
        code, stdout, stderr = finish(
            start_loginetl("run", "--json", "--endpoint-url", front.url, env=env)
        )
    finally:
        front.close()

    assert code == 0, stderr
    assert json.loads(stdout)["loaded"] == 4 and len(rows(db)) == 4
    assert front.actions["ReceiveMessage"] >= 1 and front.actions["DeleteMessageBatch"] >= 1


def test_a_local_endpoint_needs_no_aws_credentials(queues, database_url, db, tmp_path):
    init(database_url)
    queues.send(VALID[:2])
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= env_for(queues.url, database_url) | {
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "HOME": str(tmp_path),
    }
    process = subprocess.run(
        [sys.executable, "-m", "loginetl", "run", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert process.returncode == 0, process.stderr
    assert json.loads(process.stdout)["loaded"] == 2 and len(rows(db)) == 2


def test_healthz_turns_503_when_receiving_stops(queues, database_url):
    init(database_url)
    settings = Settings(queue_url=queues.url, database_url=database_url)
    metrics = Metrics()
    server = MetricsServer(
        metrics, "127.0.0.1", 0, sqs.client(settings), queues.url, database_url, stale_after=1.0
    )
    try:
        metrics.polled(0)  # a receive happened just now
        assert scrape(server.port, "/healthz")[0] == 200
        wait_until(lambda: scrape(server.port, "/healthz")[0] == 503, timeout=10)
        _, body = scrape(server.port, "/healthz")
        assert "no receive for" in body
        metrics.polled(3)  # receiving again
        assert scrape(server.port, "/healthz")[0] == 200
    finally:
        server.close()


def test_the_duplicate_and_error_counters_count(queues, database_url, db):
    init(database_url)
    original = {"loginetl-original-message-id": {"DataType": "String", "StringValue": "orig-1"}}
    port = free_port()
    proxy = proxy_for(database_url)
    env = env_for(queues.url, through(proxy, database_url), LOGINETL_LOG_LEVEL="info")
    process = Watched("run", "--follow", "--metrics-port", str(port), "--retry-for", "60", env=env)
    try:
        queues.send([VALID[0], VALID[0]], attributes=original)  # one message, delivered twice
        wait_until(
            lambda: (
                scrape(port, "/metrics")[0] == 200
                and metric(scrape(port, "/metrics")[1], "loginetl_messages_loaded_total") == 1
            )
        )
        wait_until(
            lambda: metric(scrape(port, "/metrics")[1], "loginetl_messages_duplicate_total") == 1
        )
        proxy.cut()  # the database goes away
        queues.send([VALID[1]])
        process.wait_for("unavailable")
        assert metric(scrape(port, "/metrics")[1], 'loginetl_errors_total{kind="database"}') >= 1
        proxy.restore()
        wait_until(lambda: len(rows(db)) == 2, timeout=90)
    finally:
        process.process.terminate()
        code, _, stderr = process.finish()
        proxy.cut()
    assert code == 0, stderr


def test_sigterm_while_following_finishes_the_batch_in_hand(queues, database_url, db):
    init(database_url)
    queues.send(VALID[:30])
    env = env_for(queues.url, database_url)
    process = Watched("run", "--follow", "--json", "--batch-size", "10", env=env)
    with table_locked(database_url):
        wait_until(lambda: waiting_on_lock(db))
        process.process.terminate()
        process.wait_for("finishing the batch in hand")
    code, stdout, stderr = process.finish()

    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["stopped_because"] == "stopped by signal"
    assert summary["loaded"] == 10 == len(rows(db))
    assert queues.count() == 20  # the rest is still there, given back at once
