"""Real producers' messages through a real run: moto's SNS delivers a topic's messages to the
queue as AWS does (an SNS envelope, or the login alone with RawMessageDelivery), and an
EventBridge-shaped event is sent to the queue as a rule targeting it would."""

from __future__ import annotations

import json

import boto3
import pytest

from tests.support.data import aws_client_args, rows, sample_messages
from tests.support.faults import wait_until

VALID = [json.dumps(m) for m in sample_messages() if "user_id" in m][:5]


def subscribe(sqs_endpoint: str, queues, raw: bool):
    """A topic fanning out to the test's queue; with `raw`, RawMessageDelivery."""
    sns = boto3.client("sns", endpoint_url=sqs_endpoint, **aws_client_args())
    topic = sns.create_topic(Name=f"logins-{queues.url.rsplit('/', 1)[1]}")["TopicArn"]
    arn = queues.client.get_queue_attributes(QueueUrl=queues.url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    attributes = {"RawMessageDelivery": "true"} if raw else {}
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes=attributes)
    return sns, topic


@pytest.mark.parametrize("raw", [False, True], ids=["envelope", "raw-delivery"])
def test_a_topics_messages_load_with_or_without_raw_delivery(sqs_endpoint, queues, cli, db, raw):
    sns, topic = subscribe(sqs_endpoint, queues, raw)
    for body in VALID:
        sns.publish(TopicArn=topic, Message=body)
    wait_until(lambda: queues.count(queues.url) == len(VALID))
    peeked = cli("peek", "--json", "--max-messages", "10")
    assert peeked.exit_code == 0, peeked.output
    messages = json.loads(peeked.stdout)["messages"]
    expected = "raw" if raw else "sns"
    assert {(m["envelope"], m["verdict"]) for m in messages} == {(expected, "load")}
    assert all(set(m["fields"]) >= {"user_id", "ip", "device_id"} for m in messages)
    for message in VALID:  # the login's ip is shown masked, never as sent
        assert json.loads(message)["ip"] not in peeked.stdout
    assert cli("init-db").exit_code == 0
    result = cli("run", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["loaded"], summary["envelopes"]) == (len(VALID), {expected: len(VALID)})
    users = sorted(json.loads(body)["user_id"] for body in VALID)
    assert sorted(row["user_id"] for row in rows(db)) == users
    ids = {row["sqs_message_id"] for row in rows(db)}
    assert len(ids) == len(VALID)  # the SQS message ids: a replay of one loads it once


def test_an_eventbridge_event_and_hostile_envelopes_on_the_same_queue(queues, cli, db):
    login = json.loads(VALID[0])
    event = {
        "version": "0",
        "id": "e-1",
        "detail-type": "UserLogin",
        "source": "app.auth",
        "time": "2026-11-29T10:00:00Z",
        "detail": {k: v for k, v in login.items() if k != "create_date"},
    }
    notification = {"Type": "Notification", "TopicArn": "arn:aws:sns:eu-west-1:1:t"}
    hostile = [
        json.dumps(notification | {"Message": 12}),
        json.dumps(notification | {"Message": "{broken"}),
        json.dumps(notification | {"Message": json.dumps(notification | {"Message": VALID[1]})}),
        json.dumps(notification | {"Type": "SubscriptionConfirmation", "Message": "confirm"}),
        json.dumps({k: v for k, v in event.items() if k != "detail"}),
    ]
    queues.send([json.dumps(event), *hostile])
    assert cli("init-db").exit_code == 0
    result = cli("run", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["loaded"] == 1 and summary["dead_lettered"] == len(hostile)
    assert summary["envelopes"] == {"eventbridge": 2, "sns": 4}
    reasons = sorted(summary["dead_lettered_by_reason"])
    assert all(reason.startswith("envelope: ") for reason in reasons), reasons
    assert any("SubscriptionConfirmation is not a login" in reason for reason in reasons)
    [row] = rows(db)
    assert str(row["create_date"]) == "2026-11-29"  # the event's time: the login had none


def other_events(queues) -> None:
    """An EventBridge login, a raw one, and three other events on one queue."""
    login = {k: v for k, v in json.loads(VALID[0]).items()}
    event = {"version": "0", "id": "e", "source": "app.auth", "time": "2026-11-29T10:00:00Z"}
    logins = [
        json.dumps(event | {"detail-type": "UserLogin", "detail": login}),
        json.dumps(login | {"event": "login"}),
    ]
    others = [
        json.dumps(event | {"detail-type": "OrderPlaced", "detail": {"order": 7}}),
        json.dumps({"event": "logout", "user_id": "u"}),
        json.dumps({"hello": 1}),
    ]
    queues.send(logins + others)


@pytest.mark.parametrize("on_other", ["dead-letter", "delete"])
def test_other_event_types_are_skipped_never_dropped_silently(queues, cli, db, on_other):
    other_events(queues)
    peeked = json.loads(cli("peek", "--json", "--accept", "detail-type=UserLogin").stdout)
    verdicts = sorted(m["verdict"] for m in peeked["messages"])
    assert verdicts.count("load") == 1 and len(verdicts) == 5
    assert cli("init-db").exit_code == 0
    env = {"LOGINETL_ACCEPT": "detail-type=UserLogin"}  # from the environment, as a service
    result = cli("run", "--json", "--on-other", on_other, env=env)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["loaded"] == 1 and summary["skipped"] == {"not accepted": 4}
    reason = "skipped: not accepted (detail-type=UserLogin does not hold)"
    if on_other == "delete":
        assert summary["dead_lettered"] == 0 and queues.count(queues.dlq_url) == 0
    else:
        assert summary["dead_lettered_by_reason"] == {reason: 4}
        assert queues.count(queues.dlq_url) == 4
    assert queues.count(queues.url) == 0  # nothing left behind either way
    assert len(rows(db)) == 1


def test_a_bad_accept_rule_is_a_usage_error(queues, cli):
    result = cli("run", "--accept", "detail-type")
    assert result.exit_code == 2 and "--accept takes NAME=VALUE" in result.stderr


def test_unknown_fields_are_counted_by_name_never_shown_by_value(queues, cli, db):
    secret = "someone@example.com"
    login = json.loads(VALID[0])
    bodies = [
        json.dumps(login | {"email": secret, "plan": "pro"}),
        json.dumps(json.loads(VALID[1]) | {"email": secret}),
        VALID[2],
    ]
    queues.send(bodies)
    peeked = cli("peek", "--json")
    extra = sorted(tuple(m["extra_fields"]) for m in json.loads(peeked.stdout)["messages"])
    assert extra == [(), ("email",), ("email", "plan")]
    assert secret not in peeked.output
    assert cli("init-db").exit_code == 0
    result = cli("run", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["extra_fields"] == {"email": 2, "plan": 1}
    assert secret not in result.output
    table = cli("run", env={"COLUMNS": "80"})  # nothing left: the table of an empty run
    assert table.exit_code == 0 and secret not in table.output
