"""Adaptive receivers and request accounting: the policy on its own, then `run` against a real
SQS server (moto's, behind RecordingSqs, which counts what reaches it): it grows under a backlog,
shrinks to one long-polling receiver when idle, and counts every request by action in /metrics.
Speed itself is measured by `python -m benchmarks --rtt`, never asserted here."""

import itertools
import json
import time
from urllib.parse import urlsplit

import pytest

from loginetl.pipeline.adapting import (
    COOLDOWN,
    MOST_RECEIVERS,
    PROBED_FROM,
    WINDOW,
    Adaptation,
)
from tests.support.data import rows
from tests.support.faults import RecordingSqs, TcpProxy, Watched, free_port, wait_until
from tests.support.runs import env_for, init, metric, scrape, valid_bodies

FAST = 0.02  # seconds a full receive takes while the server keeps up


def test_full_fast_receives_add_a_receiver_a_round_up_to_the_most():
    adaptation = Adaptation()
    assert adaptation.wanted() == 1
    wanted = [adaptation.received(10, 10, False, FAST) for _ in range(1 + 2 + 3 + 4)]
    assert wanted == [2, 2, 3, 3, 3, 4, 4, 4, 4, 5]  # once each receiver had its say
    for _ in range(20 * MOST_RECEIVERS):
        adaptation.received(10, 10, False, FAST)
    assert adaptation.wanted() == MOST_RECEIVERS == 16


def test_a_receive_asked_for_less_is_full_when_it_brings_all_it_asked():
    adaptation = Adaptation()
    assert adaptation.received(3, 3, False, FAST) == 2  # the budget asked for 3


def test_partial_receives_hold_and_empty_ones_drop_one_at_once_down_to_one():
    adaptation = Adaptation(start=5)
    assert {adaptation.received(4, 10, False, FAST) for _ in range(12)} == {5}
    assert adaptation.received(0, 10, False, 5.0) == 4
    for _ in range(10):
        adaptation.received(0, 10, False, 5.0)
    assert adaptation.wanted() == 1


def test_a_full_inbox_drops_one_a_round():
    adaptation = Adaptation(start=3)
    wanted = [adaptation.received(10, 10, True, FAST) for _ in range(3 + 2 + 1 + 1)]
    assert wanted == [3, 3, 2, 2, 1, 1, 1]  # the loader is behind


def test_receives_slowing_down_stop_the_growth_then_shrink_it():
    adaptation = Adaptation()
    for _ in range(1 + 2 + 3 + 4 + 5):
        adaptation.received(10, 10, False, FAST)
    assert adaptation.wanted() == 6
    # The server saturates: each receive takes longer, as they queue there.
    for _ in range(60):
        adaptation.received(10, 10, False, 10 * FAST)
    grown = adaptation.wanted()
    assert grown < MOST_RECEIVERS
    for _ in range(30):
        adaptation.received(10, 10, False, 10 * FAST)
    assert adaptation.wanted() == grown  # between GROW_WITHIN and SHRINK_BEYOND: held
    for _ in range(60):
        adaptation.received(10, 10, False, 20 * FAST)
    assert adaptation.wanted() < grown


def served(adaptation: Adaptation, receives: int, seconds_at) -> list[int]:
    """`receives` full receives, each taking `seconds_at(n)` with n receivers wanted; the
    receivers wanted after each."""
    return [
        adaptation.received(10, 10, False, seconds_at(adaptation.wanted())) for _ in range(receives)
    ]


def test_a_receiver_that_lowers_the_pace_is_taken_back_and_tried_again_later_and_later():
    """On loopback the client's own CPU limits: past two receivers, each one more makes every
    receive slower by more than its share (context switches), so together they bring less.
    Growth is plain until receives take PLAINLY times as long as the fastest; past that each
    receiver added is a trial, and that one is taken back."""
    adaptation = Adaptation()
    wanted = served(adaptation, 4000, lambda n: FAST * max(1, n / 2) ** 1.5)
    settled = wanted[-1]
    assert not adaptation.ramping and PROBED_FROM <= settled < MOST_RECEIVERS
    assert max(wanted) == settled + 1  # the trials
    trials = [i for i in range(1, len(wanted)) if wanted[i] > wanted[i - 1] == settled]
    gaps = [later - earlier for earlier, later in itertools.pairwise(trials)]
    assert len(gaps) >= 3 and gaps == sorted(gaps)  # each failure waits longer
    assert gaps[0] >= COOLDOWN * WINDOW
    assert wanted.count(settled + 1) < len(wanted) / 10  # the trials: a small share of the time


def test_receivers_that_keep_the_pace_up_stay_up_to_the_most():
    """Receives slow down with each receiver (75% of one alone's time): past 12 receivers
    they take PLAINLY times as long as the fastest, yet each one more still brings more."""
    adaptation = Adaptation()
    wanted = served(adaptation, 3000, lambda n: FAST * (1 + 0.75 * n))
    assert wanted[-1] == MOST_RECEIVERS
    assert not adaptation.ramping  # trials judged the last ones
    assert wanted == sorted(wanted)  # none taken back


def test_a_trial_is_judged_on_a_window_not_on_one_slow_round():
    """As above, and from 12 receivers on, once a window (every WINDOW receives), the loader's
    commit stalls receives for a while: four take 1.8 times as long. Judged a round at a time, a
    trial that met the stall would fail (a round of 16 has it or not); judged a window at a time,
    none does."""
    adaptation = Adaptation()
    receive = iter(range(10**6))
    wanted = served(
        adaptation,
        3000,
        lambda n: FAST * (1 + 0.75 * n) * (1.8 if next(receive) % WINDOW < 4 and n >= 12 else 1),
    )
    assert wanted[-1] == MOST_RECEIVERS
    assert not adaptation.ramping
    assert wanted == sorted(wanted)


def test_a_server_slow_for_good_is_forgiven_and_growth_tried_again():
    adaptation = Adaptation()
    adaptation.received(10, 10, False, FAST)
    for _ in range(5000):
        adaptation.received(10, 10, False, 30 * FAST)
    assert adaptation.wanted() > 2  # the slower pace became the norm


def test_a_fixed_concurrency_never_changes():
    adaptation = Adaptation.fixed(4)
    assert not adaptation.adaptive
    outcomes = {
        adaptation.received(got, 10, backed_up, seconds)
        for got in (0, 5, 10)
        for backed_up in (False, True)
        for seconds in (FAST, 1.0)
    }
    assert outcomes == {4}


def test_impossible_bounds_are_refused():
    with pytest.raises(ValueError):
        Adaptation(least=5, most=4)


def receives(front: RecordingSqs) -> int:
    with front.lock:
        return front.actions.get("ReceiveMessage", 0)


def answered(front: RecordingSqs) -> int:
    with front.lock:
        return front.actions.get("ReceiveMessage", 0) - front.in_flight


def scraped(port: int, name: str) -> float:
    status, text = scrape(port, "/metrics")
    return metric(text, name) if status == 200 else -1.0


def stopped(process: Watched, front: RecordingSqs) -> dict:
    """SIGTERM, then the exit code checked; returns the run's `start` log event."""
    process.process.terminate()
    code, _, stderr = process.finish()
    front.close()
    assert code == 0, stderr
    return json.loads(stderr.splitlines()[0])


def follow_with_defaults(front: RecordingSqs, queues, sqs_endpoint, database_url, port, wait: str):
    env = env_for(queues.url.replace(sqs_endpoint, front.url), database_url)
    del env["LOGINETL_CONCURRENCY"]  # the defaults: adaptive
    env["LOGINETL_WAIT_TIME"] = wait
    return Watched(
        "run",
        "--follow",
        "--log-format",
        "json",
        "--metrics-port",
        str(port),
        "--metrics-host",
        "127.0.0.1",
        env=env,
    )


def test_under_a_backlog_receivers_grow_then_shrink_to_one_when_idle(
    queues, sqs_endpoint, database_url, db
):
    init(database_url)
    bodies = [body for _ in range(4) for body in valid_bodies()][:300]
    queues.send(bodies)
    server = urlsplit(sqs_endpoint)
    far = TcpProxy(server.hostname, server.port, delay=0.01)  # 20 ms round trips, as in AWS
    front = RecordingSqs(f"http://127.0.0.1:{far.port}")
    port = free_port()
    process = follow_with_defaults(front, queues, sqs_endpoint, database_url, port, wait="1")
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
        far.cut()
    assert code == 0, stderr
    assert grown >= 4, f"at most {grown} receives in flight under a backlog of {len(bodies)}"
    assert front.most_in_flight <= 1
    # (Not that the queue is empty: moto's receive is not atomic across threads, so a message
    # can reach two receivers, one of whose deletes then fails; it comes back, a duplicate.)


def test_idle_follower_long_polls_from_one_receiver_and_counts_every_request(
    queues, sqs_endpoint, database_url
):
    init(database_url)
    front = RecordingSqs(sqs_endpoint)
    port = free_port()
    wait = 2  # seconds per long poll here; the default with --follow is 20: 3 receives a minute
    process = follow_with_defaults(front, queues, sqs_endpoint, database_url, port, wait=str(wait))
    try:
        wait_until(lambda: scraped(port, "loginetl_receivers") == 1 and receives(front) >= 1)
        first, started = receives(front), time.monotonic()
        wait_until(lambda: receives(front) >= first + 3, timeout=30)
        calls, seconds = receives(front) - first, time.monotonic() - started
        # Every request counted by action, and every receive came back empty.
        received = 'loginetl_sqs_requests_total{action="ReceiveMessage"}'
        wait_until(lambda: scraped(port, received) == receives(front), timeout=10)
        wait_until(  # those answered, that is: not the one in flight
            lambda: scraped(port, "loginetl_sqs_empty_receives_total") == answered(front),
            timeout=10,
        )
        with front.lock:
            attributes = front.actions["GetQueueAttributes"]
        asked = 'loginetl_sqs_requests_total{action="GetQueueAttributes"}'
        wait_until(lambda: scraped(port, asked) >= attributes)
    finally:
        start = stopped(process, front)
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
    process = Watched("run", "--follow", "--log-format", "json", env=env)
    try:
        wait_until(lambda: front.most_in_flight == 4, timeout=30)
    finally:
        start = stopped(process, front)
    assert start["event"] == "start" and start["options"]["concurrency"] == 4
    assert front.most_in_flight == 4
