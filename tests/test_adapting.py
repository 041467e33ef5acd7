"""Adaptive receivers and request accounting: the policy on its own, then `run` against a real
SQS server (moto's, behind RecordingSqs, which counts what reaches it): it grows under a backlog,
shrinks to one long-polling receiver when idle, and counts every request by action in /metrics.
Speed itself is measured by scripts/bench.py --rtt, never asserted here."""

import json
import time

import pytest

from loginetl.pipeline.adapting import MOST_RECEIVERS, Adaptation

from .conftest import rows
from .faults import RecordingSqs, Watched, wait_until
from .test_faults import env_for, init, valid_bodies
from .test_service import free_port, metric, scrape


def test_full_receives_add_receivers_up_to_the_most():
    adaptation = Adaptation()
    assert adaptation.wanted() == 1
    wanted = [adaptation.received(10, 10, backed_up=False) for _ in range(MOST_RECEIVERS + 3)]
    assert wanted[:3] == [2, 3, 4]
    assert wanted[-1] == MOST_RECEIVERS == 16


def test_a_receive_asked_for_less_is_full_when_it_brings_all_it_asked():
    adaptation = Adaptation()
    assert adaptation.received(3, 3, backed_up=False) == 2  # the budget asked for 3


def test_partial_receives_hold_empty_ones_and_a_full_inbox_drop_one_down_to_one():
    adaptation = Adaptation(start=5)
    assert adaptation.received(4, 10, backed_up=False) == 5
    assert adaptation.received(0, 10, backed_up=False) == 4
    assert adaptation.received(10, 10, backed_up=True) == 3  # the loader is behind
    for _ in range(10):
        adaptation.received(0, 10, backed_up=False)
    assert adaptation.wanted() == 1


def test_a_fixed_concurrency_never_changes():
    adaptation = Adaptation.fixed(4)
    assert not adaptation.adaptive
    assert {adaptation.received(got, 10, full) for got in (0, 5, 10) for full in (False, True)} == {4}


def test_impossible_bounds_are_refused():
    with pytest.raises(ValueError):
        Adaptation(least=5, most=4)


def receives(front: RecordingSqs) -> int:
    with front.lock:
        return front.actions.get("ReceiveMessage", 0)


def scraped(port: int, name: str) -> float:
    status, text = scrape(port, "/metrics")
    return metric(text, name) if status == 200 else -1.0


def follow_with_defaults(front: RecordingSqs, queues, database_url: str, port: int, wait: str):
    env = env_for(queues.url.replace(front.target, front.url), database_url)
    del env["LOGINETL_CONCURRENCY"]  # the defaults: adaptive
    env["LOGINETL_WAIT_TIME"] = wait
    return Watched("run", "--follow", "--log-format", "json", "--metrics-port", str(port),
                   "--metrics-host", "127.0.0.1", env=env)  # fmt: skip


def test_under_a_backlog_receivers_grow_then_shrink_to_one_when_idle(
    queues, sqs_endpoint, database_url, db
):
    init(database_url)
    bodies = [body for _ in range(4) for body in valid_bodies()][:300]
    queues.send(bodies)
    front = RecordingSqs(sqs_endpoint)
    port = free_port()
    process = follow_with_defaults(front, queues, database_url, port, wait="1")
    try:
        wait_until(lambda: len(rows(db)) == len(bodies), timeout=120)
        grown = front.most_in_flight
        wait_until(lambda: scraped(port, "loginetl_receivers") == 1, timeout=60)
        # Idle, one receiver: never two receives in flight from now on.
        front.most_in_flight = front.in_flight
        settled = receives(front)
        wait_until(lambda: receives(front) >= settled + 3, timeout=30)
        process.process.terminate()
        code, _, stderr = process.finish()
    finally:
        front.close()
    assert code == 0, stderr
    assert grown >= 4, f"at most {grown} receives in flight under a backlog of {len(bodies)}"
    assert front.most_in_flight <= 1
    assert queues.count() == 0


def test_idle_follower_long_polls_from_one_receiver_and_counts_every_request(
    queues, sqs_endpoint, database_url
):
    init(database_url)
    front = RecordingSqs(sqs_endpoint)
    port = free_port()
    wait = 2  # seconds per long poll here; the default with --follow is 20: 3 receives a minute
    process = follow_with_defaults(front, queues, database_url, port, wait=str(wait))
    try:
        wait_until(lambda: scraped(port, "loginetl_receivers") == 1 and receives(front) >= 1)
        first, started = receives(front), time.monotonic()
        wait_until(lambda: receives(front) >= first + 3, timeout=30)
        calls, seconds = receives(front) - first, time.monotonic() - started
        # Every request counted by action, and every receive came back empty.
        received = 'loginetl_sqs_requests_total{action="ReceiveMessage"}'
        wait_until(lambda: scraped(port, received) == receives(front), timeout=10)
        wait_until(
            lambda: scraped(port, "loginetl_sqs_empty_receives_total") == receives(front),
            timeout=10,
        )
        with front.lock:
            attributes = front.actions["GetQueueAttributes"]
        wait_until(lambda: scraped(
            port, 'loginetl_sqs_requests_total{action="GetQueueAttributes"}') >= attributes)  # fmt: skip
        process.process.terminate()
        code, _, stderr = process.finish()
    finally:
        front.close()
    assert code == 0, stderr
    start = json.loads(stderr.splitlines()[0])
    assert start["options"]["concurrency"] is None  # adaptive
    # One receiver whose receives each last the whole long poll: one call per `wait` seconds.
    assert calls <= seconds / wait + 1, f"{calls} receives in {seconds:.1f} s"
    per_minute_at_default = calls / seconds * wait * 60 / 20
    assert per_minute_at_default <= 4


def test_a_fixed_concurrency_keeps_that_many_receivers_polling(queues, sqs_endpoint, database_url):
    init(database_url)
    front = RecordingSqs(sqs_endpoint)
    env = env_for(queues.url.replace(sqs_endpoint, front.url), database_url)
    env["LOGINETL_CONCURRENCY"] = "4"
    env["LOGINETL_WAIT_TIME"] = "3"  # receivers long-poll an empty queue meanwhile
    try:
        process = Watched("run", "--follow", "--log-format", "json", env=env)
        wait_until(lambda: front.most_in_flight == 4, timeout=30)
        process.process.terminate()
        code, _, stderr = process.finish()
    finally:
        front.close()
    assert code == 0, stderr
    start = json.loads(stderr.splitlines()[0])
    assert start["event"] == "start" and start["options"]["concurrency"] == 4
    assert front.most_in_flight == 4
