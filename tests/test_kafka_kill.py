"""`kill -9` of `loginetl run --topic` at random moments, several times, then a run to the end:
every record is once in the table or in the dead-letter topic, none twice (Tansu, the real
confluent-kafka client, PostgreSQL behind a slow proxy so that each kill lands mid-load)."""

from __future__ import annotations

import json
import random
import signal
import time

import pytest

from tests.support.data import rows
from tests.support.faults import proxy_for, start_loginetl, through, wait_until
from tests.support.kafka import make_topic
from tests.support.runs import finish, invoke, logins


@pytest.mark.slow  # four killed runs and their group joins: about a minute
def test_kill_9_mid_load_several_times_then_a_rerun_loads_every_record_once(
    kafka_bootstrap, topic_env, db
):
    rng = random.Random(20261207)
    topic = make_topic(kafka_bootstrap, partitions=3)
    env = topic_env | {"LOGINETL_TOPIC": topic.name, "LOGINETL_GROUP": f"group-{topic.name}"}
    valid = logins(450, "kill")
    invalid = [f"not json {i}" for i in range(15)]
    values = valid + invalid
    rng.shuffle(values)
    topic.produce(values)
    assert invoke(env, "init-db").exit_code == 0
    url = env["LOGINETL_DATABASE_URL"]
    proxy = proxy_for(url, delay=0.01)  # each batch of 7 takes a few round trips of 20 ms
    far = env | {"LOGINETL_DATABASE_URL": through(proxy, url)}
    loaded_at_kill = []
    for _ in range(4):
        process = start_loginetl("run", "--batch-size", "7", env=far)
        target = len(rows(db)) + rng.randint(10, 60)
        wait_until(lambda t=target, p=process: len(rows(db)) >= t or p.poll() is not None, 120)
        process.kill()
        finish(process)
        assert process.returncode == -signal.SIGKILL
        loaded_at_kill.append(len(rows(db)))
    assert loaded_at_kill[-1] < len(valid)  # every kill landed mid-load
    proxy.cut()
    # The killed members leave the group only when their sessions expire: a run that starts
    # meanwhile may be given part of the topic (exit 3); the next one gets the rest.
    deadline = time.monotonic() + 120
    while True:
        code, stdout, stderr = finish(start_loginetl("run", "--json", env=env), timeout=120)
        if code == 0 or time.monotonic() > deadline:
            break
        assert code == 3, stderr
    assert code == 0, stderr
    assert json.loads(stdout)["stopped_because"] == "topic read to its end"
    table = rows(db)
    assert len(table) == len(valid)
    assert sorted(r["user_id"] for r in table) == sorted(json.loads(v)["user_id"] for v in valid)
    dead = topic.read()
    originals = {headers["loginetl-original-message-id"] for _, headers in dead}
    # A kill between the dead-letter send and its COMMIT leaves a copy: one original id each.
    assert {value.decode() for value, _ in dead} == set(invalid)
    assert len(originals) == len(invalid)
    assert not originals & {r["sqs_message_id"] for r in table}
