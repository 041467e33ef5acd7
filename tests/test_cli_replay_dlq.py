"""`loginetl replay-dlq`: real SQS server (moto over HTTP), real PostgreSQL for the loads after."""

import json
from datetime import UTC, datetime

import pytest

from loginetl import database, load, replay, schema, sqs, transform
from loginetl.masking import MaskKey
from loginetl.sqs import QueueMessage
from tests.support.data import MASK_KEY, rows, sample_messages
from tests.support.servers import Queues, make_queues

KEY = MaskKey(MASK_KEY)
VALID = [m for m in sample_messages() if "user_id" in m]


def replay_json(cli, *args, env=None):
    result = cli("replay-dlq", "--json", *args, env=env)
    assert "Traceback" not in result.output
    return result, json.loads(result.stdout)


def run_json(cli, *args, env=None):
    result = cli("run", "--json", *args, env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def visible(queues: Queues, queue_url: str) -> int:
    attributes = queues.client.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def redrive_policy(queues: Queues, max_receive_count: int) -> str:
    arn = queues.client.get_queue_attributes(QueueUrl=queues.dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    return json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": str(max_receive_count)})


def dead_lettered_by_an_outage(sqs, count: int) -> tuple[Queues, list[str]]:
    """Valid messages SQS itself moved to the DLQ: received (by a consumer whose database was
    down) more than maxReceiveCount times without being deleted. Then the outage ends and the
    queue gets its usual settings back."""
    queues = make_queues(sqs)
    sqs.set_queue_attributes(
        QueueUrl=queues.url,
        Attributes={"VisibilityTimeout": "0", "RedrivePolicy": redrive_policy(queues, 1)},
    )
    ids = queues.send([json.dumps(message) for message in VALID[:count]])
    for _ in range(2):  # the second receive is one too many: SQS moves them
        sqs.receive_message(QueueUrl=queues.url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    sqs.set_queue_attributes(
        QueueUrl=queues.url,
        Attributes={"VisibilityTimeout": "30", "RedrivePolicy": redrive_policy(queues, 5)},
    )
    assert queues.count() == 0
    assert queues.count(queues.dlq_url) == count
    return queues, ids


def dead_letter_with_run(cli, queues: Queues, bodies: list[str], attributes=None) -> list[str]:
    """Send bodies `run` refuses, and let `run` dead-letter them with its reasons."""
    ids = queues.send(bodies, attributes=attributes)
    summary = run_json(cli)
    assert summary["dead_lettered"] == len(bodies)
    return ids


def schema_refused(message: dict) -> str:
    return json.dumps(dict(message, device_type="x" * 33))  # longer than the column


def test_sqs_redrive_keeps_the_message_id_and_adds_no_reason(sqs):
    """What replay-dlq relies on for messages SQS moved itself, checked on the server we use."""
    queues, ids = dead_lettered_by_an_outage(sqs, 3)
    moved = queues.drain(queues.dlq_url)
    assert sorted(m["MessageId"] for m in moved) == sorted(ids)
    assert not any(m.get("MessageAttributes") for m in moved)


def test_a_database_outage_is_replayed_and_each_message_loads_exactly_once(cli, sqs, db):
    cli("init-db")
    queues, ids = dead_lettered_by_an_outage(sqs, 8)
    env = {"LOGINETL_QUEUE_URL": queues.url}

    result, summary = replay_json(cli, env=env)

    assert result.exit_code == 0, result.output
    assert summary["dlq_url"] == queues.dlq_url  # found through the RedrivePolicy
    assert summary["destination"] == queues.url
    assert summary["moved"] == 8
    assert summary["moved_by_reason"] == {replay.REDRIVE_REASON: 8}
    assert (summary["failed"], summary["skipped"]) == (0, 0)
    assert summary["stopped_because"] == "dead-letter queue drained"
    assert queues.count(queues.dlq_url) == 0
    assert queues.count() == 8

    loaded = run_json(cli, env=env)

    assert (loaded["loaded"], loaded["duplicates"], loaded["dead_lettered"]) == (8, 0, 0)
    assert sorted(r["sqs_message_id"] for r in rows(db)) == sorted(ids)  # under the first ids
    assert queues.count() == 0
    assert queues.count(queues.dlq_url) == 0
    # Nothing left to replay, and a second run finds nothing.
    assert replay_json(cli, env=env)[1]["moved"] == 0
    assert run_json(cli, env=env)["received"] == 0
    assert len(rows(db)) == 8


def test_a_replayed_message_that_had_been_loaded_is_a_duplicate(cli, sqs, db):
    """Its row was committed, but its delete never happened: SQS moved it to the DLQ anyway."""
    cli("init-db")
    queues, ids = dead_lettered_by_an_outage(sqs, 4)
    connection = database.connect(db.url)
    row = transform.to_row(json.dumps(VALID[0]), KEY, ids[0], datetime.now(UTC))
    load.insert(connection, [row], schema.describe(connection))
    connection.close()
    env = {"LOGINETL_QUEUE_URL": queues.url}

    assert replay_json(cli, env=env)[1]["moved"] == 4
    loaded = run_json(cli, env=env)

    assert (loaded["loaded"], loaded["duplicates"]) == (3, 1)
    assert sorted(r["sqs_message_id"] for r in rows(db)) == sorted(ids)
    assert queues.count() == 0 and queues.count(queues.dlq_url) == 0


def test_a_replayed_message_keeps_its_body_its_attributes_and_its_first_id(cli, sqs, queues, db):
    cli("init-db")
    body = schema_refused(VALID[0])
    trace = {"trace-id": {"DataType": "String", "StringValue": "t-42"}}
    [first_id] = dead_letter_with_run(cli, queues, [body], attributes=trace)
    [dead] = queues.drain(queues.dlq_url)
    queues.client.send_message(  # put it back as run left it, to replay it
        QueueUrl=queues.dlq_url,
        MessageBody=dead["Body"],
        MessageAttributes=dead["MessageAttributes"],
    )
    elsewhere = make_queues(sqs, redrive=False)

    result, summary = replay_json(cli, "--to-queue", elsewhere.url)

    assert result.exit_code == 0
    assert summary["destination"] == elsewhere.url
    [replayed] = queues.drain(elsewhere.url)
    assert replayed["Body"] == body
    attributes = {k: v["StringValue"] for k, v in replayed["MessageAttributes"].items()}
    assert attributes == {
        "trace-id": "t-42",
        "loginetl-original-message-id": first_id,
        "loginetl-replayed-reason": dead["MessageAttributes"]["loginetl-reason"]["StringValue"],
    }
    assert queues.count(queues.dlq_url) == 0


def test_dry_run_lists_what_would_move_masked_and_moves_nothing(cli, queues, db):
    cli("init-db")
    refused = [schema_refused(VALID[0]), schema_refused(VALID[1]), "{not json"]
    ids = dead_letter_with_run(cli, queues, refused)

    result, summary = replay_json(cli, "--dry-run")

    assert result.exit_code == 0, result.output
    assert summary["dry_run"] is True
    assert (summary["would_move"], summary["moved"]) == (3, 0)
    listed = {m["original_message_id"]: m for m in summary["messages"]}
    assert set(listed) == set(ids)
    first = listed[ids[0]]
    assert first["reason"].startswith("schema: field 'device_type' is 33 characters")
    assert first["fields"]["ip"] == KEY.mask(VALID[0]["ip"])
    assert first["fields"]["device_id"] == KEY.mask(VALID[0]["device_id"])
    assert first["would_load"] is False
    assert first["receive_count"] >= 1 and first["sent_at"]
    assert first["destination"] == queues.url
    assert listed[ids[2]]["reason"].startswith("json: not valid JSON")
    # Nothing moved, and everything visible again at once.
    assert queues.count() == 0
    assert visible(queues, queues.dlq_url) == 3

    # Without the key, ip and device_id are hidden; the table shows no raw value either.
    keyless_result, keyless = replay_json(cli, "--dry-run", env={"LOGINETL_MASK_KEY": ""})
    shown = {m["original_message_id"]: m["fields"] for m in keyless["messages"]}
    assert shown[ids[0]]["ip"] == "***" and shown[ids[0]]["device_id"] == "***"
    table = cli("replay-dlq", "--dry-run", env={"LOGINETL_MASK_KEY": ""})
    assert table.exit_code == 0, table.output
    assert "would move" in table.stdout
    for output in (result.output, keyless_result.output, table.output):
        assert VALID[0]["ip"] not in output
        assert VALID[0]["device_id"] not in output
        assert MASK_KEY not in output
    assert visible(queues, queues.dlq_url) == 3


def test_reason_moves_only_the_messages_whose_reason_contains_it(cli, queues, db):
    cli("init-db")
    json_ids = dead_letter_with_run(cli, queues, ["{broken", "[1,"])
    dead_letter_with_run(cli, queues, [schema_refused(m) for m in VALID[:3]])

    result, summary = replay_json(cli, "--reason", "JSON: not valid")

    assert result.exit_code == 0
    assert (summary["moved"], summary["skipped"], summary["received"]) == (2, 3, 5)
    assert all(reason.startswith("json:") for reason in summary["moved_by_reason"])
    assert visible(queues, queues.dlq_url) == 3  # the skipped ones, released at the end
    back = queues.drain(queues.url)
    assert sorted(
        m["MessageAttributes"]["loginetl-original-message-id"]["StringValue"] for m in back
    ) == sorted(json_ids)


def test_max_messages_moves_at_most_n(cli, queues, db):
    cli("init-db")
    dead_letter_with_run(cli, queues, [schema_refused(m) for m in VALID[:5]])

    _, summary = replay_json(cli, "--max-messages", "2")

    assert summary["moved"] == 2
    assert summary["stopped_because"] == "max messages reached"
    assert queues.count() == 2
    assert visible(queues, queues.dlq_url) == 3


def test_a_send_the_destination_refuses_leaves_the_message_on_the_dlq(cli, sqs, queues, db):
    cli("init-db")
    big = json.dumps({"note": "x" * 2000})  # no user_id: dead-lettered, and over 1 KiB
    ids = dead_letter_with_run(
        cli, queues, [schema_refused(VALID[0]), big, schema_refused(VALID[1])]
    )
    small = make_queues(sqs, redrive=False)
    sqs.set_queue_attributes(QueueUrl=small.url, Attributes={"MaximumMessageSize": "1024"})

    result, summary = replay_json(cli, "--to-queue", small.url)

    assert result.exit_code == 1
    assert (summary["moved"], summary["failed"]) == (2, 1)
    [error] = summary["failed_by_error"]
    assert error.startswith("InvalidParameterValue")
    [failed] = summary["messages"]
    assert failed["original_message_id"] == ids[1]
    assert failed["error"] == error
    assert "could not be moved and are still on the dead-letter queue" in result.stderr
    assert small.count(small.url) == 2
    assert visible(queues, queues.dlq_url) == 1  # still there, and released
    [left] = queues.drain(queues.dlq_url)
    assert left["Body"] == big


def test_with_only_the_dlq_url_each_message_goes_back_where_it_came_from(cli, sqs, queues, db):
    cli("init-db")
    dead_letter_with_run(cli, queues, [schema_refused(VALID[0])])  # carries loginetl-source-queue
    queues.send(["redriven by SQS"], queue_url=queues.dlq_url)  # no attributes at all
    no_queue_url = {"LOGINETL_QUEUE_URL": None}

    result, summary = replay_json(cli, "--dlq-url", queues.dlq_url, env=no_queue_url)

    assert result.exit_code == 0, result.output
    assert summary["destination"] is None
    assert summary["moved"] == 2
    # The second found the queue whose RedrivePolicy names the DLQ.
    assert sorted(m["Body"] for m in queues.drain(queues.url)) == sorted(
        [schema_refused(VALID[0]), "redriven by SQS"]
    )


def test_a_message_with_nowhere_to_go_stays_on_the_dlq(cli, sqs, db):
    dlq_only = make_queues(sqs, redrive=False)  # no queue names this DLQ
    dlq_only.send(["orphan"], queue_url=dlq_only.dlq_url)

    result, summary = replay_json(
        cli, "--dlq-url", dlq_only.dlq_url, env={"LOGINETL_QUEUE_URL": None}
    )

    assert result.exit_code == 1
    assert summary["failed"] == 1
    [error] = summary["failed_by_error"]
    assert error.startswith("no destination: no loginetl-source-queue attribute, and 0 queues")
    assert visible(dlq_only, dlq_only.dlq_url) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "has no RedrivePolicy naming a dead-letter queue: pass --dlq-url"),
        (("--to-queue", "DLQ"), "is the dead-letter queue itself"),
        (("--to-queue", "not-a-url"), "--to-queue 'not-a-url' is not a queue URL"),
        (("--dlq-url", "MISSING"), "the queue does not exist"),
    ],
)
def test_bad_configuration_is_one_line_and_exit_2(cli, sqs, sqs_endpoint, args, message):
    plain = make_queues(sqs, redrive=False)
    args = [
        {"DLQ": plain.dlq_url, "MISSING": f"{sqs_endpoint}/123456789012/no-such-dlq"}.get(a, a)
        for a in args
    ]
    if "--dlq-url" not in args and "--to-queue" in args:
        args += ["--dlq-url", plain.dlq_url]

    result = cli("replay-dlq", *args, env={"LOGINETL_QUEUE_URL": plain.url})

    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert "Traceback" not in result.output


@pytest.mark.parametrize("rate", ["0", "501"])
def test_rate_is_bounded(cli, rate):
    result = cli("replay-dlq", "--rate", rate)
    assert result.exit_code == 2
    assert "Invalid value for '--rate'" in result.stderr
    assert (
        "greater than or equal to 1" if rate == "0" else "less than or equal to 500"
    ) in result.stderr


# Pure pieces ---------------------------------------------------------------------------------


def message(attributes: dict[str, str], group_id=None) -> QueueMessage:
    return QueueMessage(
        message_id="dlq-id",
        receipt_handle="r",
        body='{"a": 1}',
        sent_at=datetime.now(UTC),
        receive_count=1,
        attributes=attributes,
        group_id=group_id,
    )


def test_replay_entry_keeps_the_senders_attributes_within_the_limit_of_ten():
    theirs = {f"app-{i}": str(i) for i in range(12)}
    ours = {
        sqs.REASON_ATTRIBUTE: "schema: x",
        sqs.ORIGINAL_ID_ATTRIBUTE: "first-id",
        sqs.SOURCE_QUEUE_ATTRIBUTE: "http://h/1/q",
    }
    entry = replay.replay_entry(message(theirs | ours), "http://h/1/q")
    attributes = {k: v["StringValue"] for k, v in entry["MessageAttributes"].items()}
    assert len(attributes) == sqs.MAX_ATTRIBUTES
    assert attributes["loginetl-original-message-id"] == "first-id"
    assert attributes["loginetl-replayed-reason"] == "schema: x"
    assert "loginetl-reason" not in attributes and "loginetl-source-queue" not in attributes
    assert entry["MessageBody"] == '{"a": 1}'
    assert "MessageGroupId" not in entry


def test_replay_entry_of_a_redriven_message_names_its_own_id_and_fills_fifo_fields():
    entry = replay.replay_entry(message({}, group_id="g1"), "http://h/1/q.fifo")
    attributes = {k: v["StringValue"] for k, v in entry["MessageAttributes"].items()}
    assert attributes == {
        "loginetl-original-message-id": "dlq-id",
        "loginetl-replayed-reason": replay.REDRIVE_REASON,
    }
    assert (entry["MessageGroupId"], entry["MessageDeduplicationId"]) == ("g1", "dlq-id")


def test_the_pacer_spaces_batches_to_the_rate():
    now = [100.0]
    slept = []

    def sleep(seconds):
        slept.append(round(seconds, 6))
        now[0] += seconds

    pacer = replay.Pacer(20, clock=lambda: now[0], sleep=sleep)
    for _ in range(4):
        pacer.wait_for(10)
    assert slept == [0.5, 0.5, 0.5]  # 10 messages, then 10 more every half second: 20/s
    now[0] += 5  # idle for a while: that earns no burst
    pacer.wait_for(10)
    pacer.wait_for(10)
    assert slept == [0.5, 0.5, 0.5, 0.5]


def test_two_dlq_copies_of_one_message_load_once_after_replay(cli, queues, db):
    """A crash between dead-lettering and deleting leaves the message on the source queue, and
    the next run dead-letters it again: two copies in the DLQ, one original id. Replayed after
    the cause is fixed, they make one row."""
    cli("init-db")
    copies = {
        "loginetl-original-message-id": {"DataType": "String", "StringValue": "first-id"},
        "loginetl-reason": {"DataType": "String", "StringValue": "database: outage"},
    }
    queues.send([json.dumps(VALID[0])] * 2, queue_url=queues.dlq_url, attributes=copies)

    _, moved = replay_json(cli)
    summary = run_json(cli)

    assert moved["moved"] == 2
    assert (summary["loaded"], summary["duplicates"]) == (1, 1)
    assert [r["sqs_message_id"] for r in rows(db)] == ["first-id"]
    assert queues.count() == 0 and queues.count(queues.dlq_url) == 0
