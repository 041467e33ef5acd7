"""The concurrent pipeline (several receivers, deletes in parallel with receives) keeps every
guarantee. Speed itself is measured by `python -m benchmarks`, never asserted here."""

import json

from tests.support.data import rows, sample_messages


def test_concurrent_receivers_load_each_message_once(cli, queues, db):
    cli("init-db")
    bodies = [
        json.dumps(dict(m, user_id=f"user-{i}")) if "user_id" in m else json.dumps(m)
        for i, m in enumerate(sample_messages() * 3)
    ]
    ids = dict(zip(queues.send(bodies), bodies, strict=True))

    result = cli(
        "run", "--json", "--concurrency", "4", "--batch-size", "25", env={"LOGINETL_WAIT_TIME": "1"}
    )

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    valid = {i for i, body in ids.items() if "user_id" in json.loads(body)}
    assert sorted(r["sqs_message_id"] for r in rows(db)) == sorted(valid)
    # moto's receive is not atomic across threads, so a message can arrive twice: it is then
    # counted as a duplicate (or dead-lettered twice), never loaded twice.
    assert summary["loaded"] == len(valid)
    assert queues.count() == 0
    dead = queues.drain(queues.dlq_url)
    originals = {
        m["MessageAttributes"]["loginetl-original-message-id"]["StringValue"] for m in dead
    }
    assert originals == set(ids) - valid


def test_batches_never_exceed_batch_size(cli, queues, db):
    cli("init-db")
    queues.send([json.dumps(dict(sample_messages()[0], user_id=f"u{i}")) for i in range(45)])

    result = cli(
        "--log-format",
        "json",
        "--log-level",
        "info",
        "run",
        "--batch-size",
        "7",
        "--concurrency",
        "3",
        env={"LOGINETL_WAIT_TIME": "1"},
    )

    assert result.exit_code == 0, result.output
    batches = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    sizes = [entry["messages"] for entry in batches if entry["event"] == "batch"]
    assert sizes and max(sizes) <= 7
    assert len(rows(db)) == 45
