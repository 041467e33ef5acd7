"""Nothing lost, nothing doubled: real processes, real signals, real outages.

Faults are injected for real: a TCP proxy between loginetl and PostgreSQL or the SQS server
that drops connections, a table lock held by another session to make a batch slow, SIGTERM
and SIGKILL sent to a running `loginetl run` process.
"""

import json
import random
import signal
import time

import pytest

from tests.support.data import rows, sample_messages
from tests.support.faults import (
    ThrottlingSqs,
    Watched,
    proxy_for,
    start_loginetl,
    through,
    wait_until,
)
from tests.support.runs import (
    env_for,
    finish,
    init,
    table_locked,
    valid_bodies,
    visible,
    waiting_on_lock,
)
from tests.support.servers import make_queues


def test_a_database_outage_mid_batch_is_retried_and_nothing_is_lost(queues, database_url, db):
    init(database_url)
    queues.send_sample()
    proxy = proxy_for(database_url)
    process = Watched(
        "run",
        "--json",
        "--batch-size",
        "10",
        env=env_for(queues.url, through(proxy, database_url), LOGINETL_LOG_LEVEL="debug"),
    )
    with table_locked(database_url):
        wait_until(lambda: waiting_on_lock(db))
        proxy.cut()  # the blocked connection drops, new ones are refused
        process.wait_for("retrying in", times=2)  # it tried again, twice, and was refused
    assert len(rows(db)) == 0
    # Nothing deleted while nothing was committed. (moto counts visible and in-flight messages
    # one after the other, so a receive in between counts one twice: wait for a quiet count.)
    wait_until(lambda: queues.count() == 100, timeout=10)
    proxy.restore()

    code, stdout, stderr = process.finish()

    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["loaded"] + summary["duplicates"] == 99
    assert len(rows(db)) == 99
    assert queues.count() == 0 and queues.count(queues.dlq_url) == 1
    assert "unavailable" in stderr and "retrying in" in stderr
    # One warning as the outage began, one as it ended; the retries only at debug level.
    warnings = [line for line in stderr.splitlines() if " WARNING loginetl.database" in line]
    assert len(warnings) == 2 and "available again after" in warnings[1], warnings
    proxy.cut()


def test_the_run_gives_up_after_retry_for_and_leaves_the_messages(queues, database_url, db):
    init(database_url)
    queues.send_sample()
    proxy = proxy_for(database_url)
    process = start_loginetl(
        "run",
        "--retry-for",
        "3",
        "--batch-size",
        "10",
        env=env_for(queues.url, through(proxy, database_url)),
    )
    with table_locked(database_url):
        wait_until(lambda: waiting_on_lock(db))
        proxy.cut()

    code, _, stderr = finish(process)

    assert code == 1
    error_lines = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1
    assert "unavailable for 3 s (--retry-for)" in error_lines[0]
    assert f"127.0.0.1:{proxy.port}" in error_lines[0]
    assert "Traceback" not in stderr
    assert len(rows(db)) == 0
    wait_until(lambda: queues.count() == 100, timeout=10)  # moto's count settles (see below)
    assert visible(queues) == 100  # the batch in hand was released, not left to time out


def test_a_slow_batch_keeps_its_messages_from_other_consumers(sqs, database_url, db):
    init(database_url)
    queues = make_queues(sqs, visibility_timeout=3)
    queues.send(valid_bodies()[:20])
    env = env_for(queues.url, database_url, LOGINETL_LOG_LEVEL="info")
    process = Watched("run", "--json", "--batch-size", "20", env=env)
    stolen = []
    with table_locked(database_url):
        wait_until(lambda: waiting_on_lock(db))
        # Another consumer keeps asking while the batch waits, until loginetl has extended the
        # visibility three times: well past the 3 s the messages would otherwise be hidden.
        while process.said("extended the visibility") < 3 and process.process.poll() is None:
            stolen += sqs.receive_message(
                QueueUrl=queues.url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            ).get("Messages", [])

    code, stdout, stderr = process.finish()

    assert stolen == []
    assert code == 0, stderr
    assert json.loads(stdout)["loaded"] == 20
    assert len(rows(db)) == 20
    assert queues.count() == 0


def test_sigterm_finishes_the_batch_in_hand_and_exits_0(queues, database_url, db):
    init(database_url)
    queues.send_sample()
    process = Watched("run", "--json", "--batch-size", "10", env=env_for(queues.url, database_url))
    with table_locked(database_url):
        wait_until(lambda: waiting_on_lock(db))  # a batch of 10 in hand, its insert waiting
        wait_until(lambda: visible(queues) <= 70)  # and at least 20 more received, in the inbox
        process.process.send_signal(signal.SIGTERM)
        process.wait_for("finishing the batch in hand")

    code, stdout, stderr = process.finish()

    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["stopped_because"] == "stopped by signal"
    # The batch in hand (10) was finished; what the receivers had fetched meanwhile went back.
    assert summary["received"] - summary["released"] == 10
    assert len(rows(db)) + summary["dead_lettered"] == 10
    wait_until(lambda: queues.count() == 90, timeout=10)  # moto's count settles (see below)
    assert visible(queues) == 90  # given back at once, not left to time out
    assert "finishing the batch in hand" in stderr


def test_a_second_signal_exits_at_once_without_deleting_anything(queues, database_url, db):
    init(database_url)
    queues.send_sample()
    process = Watched("run", "--batch-size", "10", env=env_for(queues.url, database_url))
    with table_locked(database_url):
        wait_until(lambda: waiting_on_lock(db))
        process.process.send_signal(signal.SIGINT)
        process.wait_for("finishing the batch in hand")  # the first one was taken
        process.process.send_signal(signal.SIGINT)
        code, _, _ = process.finish(timeout=10)

    assert code == 128 + signal.SIGINT
    assert len(rows(db)) == 0
    # moto's server finishes a long poll the process left mid-way, and counts visible and
    # in-flight messages one after the other: a message taken between the two counts twice,
    # for a moment. Deleted ones would never come back, so the count settles on 100 only if
    # nothing was deleted.
    wait_until(lambda: queues.count() == 100, timeout=10)


def test_an_sqs_outage_after_commit_leaves_messages_that_a_rerun_deletes(
    sqs, sqs_endpoint, database_url, db
):
    init(database_url)
    queues = make_queues(sqs, visibility_timeout=3)
    queues.send(valid_bodies()[:10])
    proxy = proxy_for(sqs_endpoint)
    queue_via_proxy = through(proxy, queues.url)
    process = start_loginetl(
        "run",
        "--batch-size",
        "10",
        env=env_for(queue_via_proxy, database_url, AWS_MAX_ATTEMPTS="3"),  # fewer retries
    )
    with table_locked(database_url):
        wait_until(lambda: waiting_on_lock(db))
        proxy.cut()  # SQS goes away while the batch is being committed

    code, stdout, stderr = finish(process, timeout=120)

    assert code == 1
    [error] = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert f"127.0.0.1:{proxy.port}" in error
    assert "Traceback" not in stderr
    assert len(rows(db)) == 10  # committed

    proxy.restore()
    # Not deleted, SQS was down: all 10 come back visible once the dead run's hold lapses.
    # (Not counted visible plus in flight: moto counts the two one after the other, so a
    # message whose hold lapses between the counts is missed by both.)
    wait_until(lambda: visible(queues) == 10)
    rerun = start_loginetl("run", "--json", env=env_for(queue_via_proxy, database_url))
    code, stdout, stderr = finish(rerun)
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert (summary["loaded"], summary["duplicates"]) == (0, 10)
    assert len(rows(db)) == 10
    assert queues.count() == 0
    proxy.cut()


def test_throttling_slows_the_run_down_but_does_not_fail_it(cli, sqs, sqs_endpoint, db):
    """Every third SQS request is refused with a 503 or RequestThrottled: botocore's retries
    absorb them and every message still loads once."""
    cli("init-db")
    queues = make_queues(sqs)
    queues.send(valid_bodies()[:30])
    throttling = ThrottlingSqs(sqs_endpoint, throttle=1, every=3)
    try:
        result = cli(
            "run",
            "--json",
            "--batch-size",
            "10",
            env={
                "LOGINETL_QUEUE_URL": queues.url.replace(sqs_endpoint, throttling.url),
            },
        )
    finally:
        throttling.close()

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["loaded"] == 30
    assert throttling.throttled >= 5
    assert len(rows(db)) == 30
    assert queues.count() == 0


def test_a_row_the_database_refuses_is_dead_lettered_and_the_rest_load(cli, queues, db):
    cli("init-db")
    with db.cursor() as cursor:
        cursor.execute(
            "ALTER TABLE user_logins ADD CONSTRAINT no_bsd CHECK (device_type <> 'freebsd')"
        )
    bodies = [*valid_bodies()[:9], json.dumps(dict(sample_messages()[0], device_type="freebsd"))]
    queues.send(bodies)

    result = cli("run", "--json")

    summary = json.loads(result.stdout)
    assert summary["loaded"] == 9
    [reason] = summary["dead_lettered_by_reason"]
    assert reason.startswith('database: new row for relation "user_logins" violates check')
    [dead] = queues.drain(queues.dlq_url)
    assert json.loads(dead["Body"])["device_type"] == "freebsd"


@pytest.mark.slow
def test_kill_9_at_random_points_loses_nothing_and_loads_nothing_twice(sqs, database_url, db):
    """Several runs killed with SIGKILL at random moments, then a run to the end: every valid
    message is one row, every invalid one is in the DLQ, the source queue is empty."""
    init(database_url)
    queues = make_queues(sqs, visibility_timeout=1)
    sqs.set_queue_attributes(  # only crashes here, no redrive of valid messages
        QueueUrl=queues.url,
        Attributes={
            "RedrivePolicy": json.dumps(
                {
                    "deadLetterTargetArn": sqs.get_queue_attributes(
                        QueueUrl=queues.dlq_url, AttributeNames=["QueueArn"]
                    )["Attributes"]["QueueArn"],
                    "maxReceiveCount": "1000",
                }
            )
        },
    )
    rng = random.Random(20261124)
    valid = [
        dict(m, user_id=f"user-{i}") for i, m in enumerate(sample_messages() * 3) if "user_id" in m
    ]
    invalid = ["not json", "[]", json.dumps({"user_id": "x"})]
    bodies = [json.dumps(m) for m in valid] + invalid
    rng.shuffle(bodies)
    ids = dict(zip(queues.send(bodies), bodies, strict=True))
    env = env_for(queues.url, database_url, LOGINETL_WAIT_TIME="1")

    missing_at_kill = []
    for round in range(8):
        process = start_loginetl("run", "--batch-size", "20", env=env)
        if round % 2:
            # Kill once a random number more rows are in: just after a commit, deletes pending.
            target = min(len(valid) - 1, len(rows(db)) + rng.randint(1, 60))
            wait_until(
                lambda target=target, process=process: (
                    len(rows(db)) >= target or process.poll() is not None
                ),
                timeout=120,
            )
        else:
            # Kill with a batch in hand and more in the inbox, none of it committed.
            hidden = len(bodies) - visible(queues)
            with table_locked(database_url):
                wait_until(
                    lambda process=process: waiting_on_lock(db) or process.poll() is not None
                )
                wait_until(lambda hidden=hidden: len(bodies) - visible(queues) >= hidden + 40)
                process.kill()
        process.kill()
        process.communicate()
        missing_at_kill.append(len(valid) - len(rows(db)))
        wait_until(lambda: visible(queues) == queues.count(), timeout=30)  # all back on the queue
    # every kill landed mid-run
    assert all(missing > 0 for missing in missing_at_kill), missing_at_kill
    assert process.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 120
    while queues.count() and time.monotonic() < deadline:
        wait_until(lambda: visible(queues) == queues.count())  # the killed runs' messages are back
        code, _, stderr = finish(start_loginetl("run", env=env))
        assert code == 0, stderr

    loaded = rows(db)
    assert queues.count() == 0
    expected_valid = {i for i, body in ids.items() if body not in invalid}
    assert sorted(r["sqs_message_id"] for r in loaded) == sorted(expected_valid)
    dead = queues.drain(queues.dlq_url)
    originals = {
        m["MessageAttributes"]["loginetl-original-message-id"]["StringValue"] for m in dead
    }
    assert originals == {i for i, body in ids.items() if body in invalid}


@pytest.mark.slow
def test_two_consumers_load_every_message_exactly_once(sqs, database_url, db):
    init(database_url)
    queues = make_queues(sqs)
    valid = [
        dict(m, user_id=f"user-{i}") for i, m in enumerate(sample_messages() * 2) if "user_id" in m
    ]
    ids = queues.send([json.dumps(m) for m in valid])
    env = env_for(queues.url, database_url)

    with table_locked(database_url):  # both hold a batch before either can commit one
        processes = [
            start_loginetl("run", "--json", "--batch-size", "10", env=env) for _ in range(2)
        ]
        wait_until(lambda: waiting_on_lock(db, 2))
    summaries = []
    for process in processes:
        code, stdout, stderr = finish(process)
        assert code == 0, stderr
        summaries.append(json.loads(stdout))

    assert sorted(r["sqs_message_id"] for r in rows(db)) == sorted(ids)
    assert sum(s["loaded"] for s in summaries) == len(ids)
    assert all(s["received"] > 0 for s in summaries)  # both did part of the work
    # Visibility split the work: hardly any message went to both (moto's receive is not atomic
    # across connections, so a few may).
    assert sum(s["duplicates"] for s in summaries) <= 10, summaries
    assert queues.count() == 0
