"""Envelopes: an SNS notification or an EventBridge event around a login is opened, per
message and with no flag; a malformed or nested envelope, or an SNS confirmation, is refused
with a reason naming the envelope, never a traceback. No server: the bodies are built here as
SNS and EventBridge build them (tests/test_envelopes_sns.py has moto's own SNS deliver them)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest

from loginetl import envelopes
from loginetl.errors import ConfigError
from loginetl.transform import InvalidMessage

LOGIN = {
    "user_id": "u-1",
    "device_type": "ios",
    "ip": "203.0.113.7",
    "device_id": "d-1",
    "locale": None,
    "app_version": "2.3.0",
}


def sns(message, kind: str = "Notification", **extra) -> str:
    body = {
        "Type": kind,
        "MessageId": "5b7c3c4e",
        "TopicArn": "arn:aws:sns:eu-west-1:1:logins",
        "Message": message,
        "Timestamp": "2026-11-30T23:59:58.000Z",
        "SignatureVersion": "1",
        "Signature": "c2ln",
        "SigningCertURL": "https://sns.eu-west-1.amazonaws.com/x.pem",
    } | extra
    return json.dumps(body)


def eventbridge(detail="absent", **extra) -> str:
    body = {
        "version": "0",
        "id": "7e6d",
        "detail-type": "UserLogin",
        "source": "app.auth",
        "account": "1",
        "time": "2026-11-29T10:00:00Z",
        "region": "eu-west-1",
        "resources": [],
    } | extra
    if detail != "absent":
        body["detail"] = detail
    return json.dumps(body)


def test_a_raw_body_is_opened_as_raw_with_no_envelope_time():
    opened = envelopes.open_body(json.dumps(LOGIN))
    assert (opened.envelope, opened.login.user_id, opened.sent_at) == ("raw", "u-1", None)


def test_an_sns_notification_gives_its_message_and_its_timestamp():
    opened = envelopes.open_body(sns(json.dumps(LOGIN)))
    assert opened.envelope == "sns" and opened.login.ip == "203.0.113.7"
    assert opened.sent_at == datetime(2026, 11, 30, 23, 59, 58, tzinfo=UTC)
    assert opened.document["device_id"] == "d-1"


def test_an_eventbridge_event_gives_its_detail_and_its_time():
    opened = envelopes.open_body(eventbridge(LOGIN | {"create_date": "2026-01-02"}))
    assert opened.envelope == "eventbridge" and opened.login.create_date == date(2026, 1, 2)
    assert opened.sent_at == datetime(2026, 11, 29, 10, tzinfo=UTC)


def test_numbers_inside_an_envelope_are_judged_as_in_a_raw_body():
    with pytest.raises(InvalidMessage, match="field 'user_id' must be a string, got a number"):
        envelopes.open_body(eventbridge(LOGIN | {"user_id": 7}))
    opened = envelopes.open_body(eventbridge(LOGIN | {"app_version": 2.30}))
    assert opened.login.app_version == "2.3"  # as sent: json.dumps wrote 2.3


@pytest.mark.parametrize("kind", ["SubscriptionConfirmation", "UnsubscribeConfirmation"])
def test_an_sns_confirmation_is_never_a_login(kind):
    body = sns("You have chosen to subscribe", kind, Token="t", SubscribeURL="https://x")
    with pytest.raises(InvalidMessage) as refused:
        envelopes.open_body(body)
    assert refused.value.reason == (
        f"envelope: an SNS {kind} is not a login (loginetl never confirms a subscription)"
    )


@pytest.mark.parametrize(
    "body, reason",
    [
        (sns(42), "envelope: the SNS Message is a number, not a string"),
        (sns(None), "envelope: the SNS Message is null, not a string"),
        (sns({"user_id": "u"}), "envelope: the SNS Message is an object, not a string"),
        (sns("{not json"), "envelope: the SNS Message is not a JSON login (json: not valid JSON"),
        (
            sns("[1, 2]"),
            "envelope: the SNS Message is not a JSON login (schema: expected a JSON "
            "object, got an array)",
        ),
        (
            sns(json.dumps(LOGIN), "Surprise"),
            "envelope: an SNS message of Type 'Surprise', not Notification",
        ),
        (sns(json.dumps(LOGIN), ["x"]), "envelope: an SNS message of Type an array"),
        (eventbridge(), "envelope: an EventBridge event without a detail"),
        (eventbridge("text"), "envelope: the EventBridge detail is a string, not a JSON object"),
        (eventbridge(None), "envelope: the EventBridge detail is null, not a JSON object"),
        (sns(sns(json.dumps(LOGIN))), "envelope: an sns envelope inside an sns one"),
        (sns(eventbridge(LOGIN)), "envelope: an eventbridge envelope inside an sns one"),
        (
            eventbridge(json.loads(sns(json.dumps(LOGIN)))),
            "envelope: an sns envelope inside an eventbridge one",
        ),
    ],
)
def test_a_malformed_or_nested_envelope_is_refused_with_a_reason_naming_it(body, reason):
    with pytest.raises(InvalidMessage) as refused:
        envelopes.open_body(body)
    assert refused.value.reason.startswith(reason)
    assert envelopes.envelope_of(body) in ("sns", "eventbridge")


def test_a_login_inside_an_envelope_is_validated_as_any_other():
    with pytest.raises(InvalidMessage, match="schema: missing required field 'ip'"):
        envelopes.open_body(sns(json.dumps({k: v for k, v in LOGIN.items() if k != "ip"})))


def test_a_one_mebibyte_message_is_refused_by_the_field_limits_not_a_crash():
    big = LOGIN | {"device_id": "d" * (1 << 20)}
    with pytest.raises(InvalidMessage, match="field 'device_id' is 1048576 characters"):
        envelopes.open_body(sns(json.dumps(big)))


def test_an_envelope_time_that_is_not_one_falls_back_to_the_message_time():
    for time in ("yesterday", 1764547200, "2026-11-30T10:00:00"):  # no zone: not a time here
        assert envelopes.open_body(sns(json.dumps(LOGIN), Timestamp=time)).sent_at is None


def test_a_raw_login_that_mentions_an_envelope_key_is_still_raw():
    opened = envelopes.open_body(json.dumps(LOGIN | {"device_type": '"TopicArn"'}))
    assert opened.envelope == "raw"
    assert envelopes.envelope_of(b'{"TopicArn": 1}') == "raw"  # not an SNS one: no Type
    assert envelopes.envelope_of("not json") == "raw"


def test_accept_rules_read_name_equals_value_and_refuse_anything_else():
    rules = envelopes.parse_rules(["detail-type=UserLogin,source = app.auth", "n=2"])
    assert [str(rule) for rule in rules] == ["detail-type=UserLogin", "source=app.auth", "n=2"]
    for bad in ("detail-type", "=x", "a=b,c"):
        with pytest.raises(ConfigError, match="--accept takes NAME=VALUE"):
            envelopes.parse_rules([bad])


def test_every_rule_must_hold_in_the_envelope_or_the_body():
    login = eventbridge(LOGIN | {"event": "login", "n": 2, "ok": True})
    rules = envelopes.parse_rules(["detail-type=UserLogin", "event=login", "n=2", "ok=true"])
    assert envelopes.open_body(login, rules).login.user_id == "u-1"
    other = eventbridge({"order": 1}, **{"detail-type": "OrderPlaced"})
    with pytest.raises(envelopes.NotAccepted) as skipped:  # before validation: not a login
        envelopes.open_body(other, rules[:1])
    assert skipped.value.reason == "skipped: not accepted (detail-type=UserLogin does not hold)"
    raw = json.dumps(LOGIN | {"event": "logout"})
    with pytest.raises(envelopes.NotAccepted, match=r"\(event=login does not hold\)"):
        envelopes.open_body(raw, envelopes.parse_rules(["event=login"]))
    assert envelopes.open_body(json.dumps(LOGIN | {"event": "login"}), rules[1:2]).envelope == "raw"


def test_extra_fields_are_counted_by_name_and_metrics_keep_their_labels_few():
    from prometheus_client import generate_latest

    from loginetl.metrics import MOST_EXTRA_LABELS, Metrics

    opened = envelopes.open_body(sns(json.dumps(LOGIN | {"email": "a@b.c", "plan": "pro"})))
    assert opened.extra_fields == ["email", "plan"]
    metrics = Metrics()
    names = {"email": 2, "with space": 1} | {f"f{i}": 1 for i in range(MOST_EXTRA_LABELS + 5)}
    metrics.opened({"sns": 3}, 0, names)
    text = generate_latest(metrics.registry).decode()
    assert 'loginetl_extra_fields_total{field="email"} 2.0' in text
    assert 'loginetl_extra_fields_total{field="(other)"} 7.0' in text  # 6 past the cap, 1 odd
    assert text.count("loginetl_extra_fields_total{") == MOST_EXTRA_LABELS + 1
