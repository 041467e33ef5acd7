"""Validation, normalisation and masking: pure functions, no servers."""

import hashlib
import hmac
import json
import os
import time
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from loginetl import transform
from loginetl.errors import ConfigError
from loginetl.masking import MaskKey, mask_key_from_env
from loginetl.transform import InvalidMessage, to_row, validate
from tests.support.data import MASK_KEY, sample_messages

KEY = MaskKey(MASK_KEY)
SENT = datetime(2026, 11, 24, 23, 59, tzinfo=UTC)
GOOD = {
    "user_id": "424cdd21-063a-43a7-b91b-7ca1a833afae",
    "app_version": "2.3.0",
    "device_type": "android",
    "ip": "199.172.111.135",
    "locale": "RU",
    "device_id": "593-47-5928",
}


def body(**changes) -> str:
    message = dict(GOOD)
    for name, value in changes.items():
        if value is ...:
            message.pop(name)
        else:
            message[name] = value
    return json.dumps(message)


def reason_for(raw: str) -> str:
    with pytest.raises(InvalidMessage) as refused:
        validate(raw)
    return refused.value.reason


def reference_hmac(value: str) -> str:
    return hmac.new(MASK_KEY.encode(), value.encode(), hashlib.sha256).hexdigest()


def test_a_sample_message_becomes_a_masked_row():
    row = to_row(body(), KEY, "message-1", SENT)
    assert row.user_id == GOOD["user_id"]
    assert row.device_type == "android"
    assert row.masked_ip == reference_hmac("199.172.111.135")
    assert row.masked_device_id == reference_hmac("593-47-5928")
    assert row.locale == "RU"
    assert row.app_version == "2.3.0"
    assert row.create_date == date(2026, 11, 24)
    assert row.message_id == "message-1"
    assert row.mask_key_id == KEY.key_id


def test_the_sample_file_has_99_valid_messages_and_one_invalid():
    verdicts = []
    for message in sample_messages():
        try:
            validate(json.dumps(message))
            verdicts.append("ok")
        except InvalidMessage as invalid:
            verdicts.append(invalid.reason)
    assert verdicts.count("ok") == 99
    [reason] = [v for v in verdicts if v != "ok"]
    assert reason.startswith("schema: missing required field 'user_id'")


def test_masks_are_lowercase_hex_hmac_sha256_and_deterministic():
    first = to_row(body(), KEY, "a", SENT)
    second = to_row(body(), KEY, "b", SENT)
    assert first.masked_ip == second.masked_ip
    assert len(first.masked_ip) == 64 and first.masked_ip == first.masked_ip.lower()
    assert first.masked_ip != hashlib.sha256(b"199.172.111.135").hexdigest()


def test_another_key_gives_other_masks_and_another_key_id():
    other = MaskKey("another-key-with-enough-length-0000")
    assert other.mask("1.2.3.4") != KEY.mask("1.2.3.4")
    assert other.key_id != KEY.key_id


def test_the_key_never_shows_in_its_repr_or_id():
    assert MASK_KEY not in repr(KEY)
    assert MASK_KEY not in KEY.key_id
    assert len(KEY.key_id) == 16


def test_missing_or_short_key_is_a_configuration_error():
    with pytest.raises(ConfigError) as missing:
        mask_key_from_env({})
    assert "LOGINETL_MASK_KEY is not set" in str(missing.value)
    assert missing.value.exit_code == 2
    with pytest.raises(ConfigError, match="too short"):
        mask_key_from_env({"LOGINETL_MASK_KEY": "short"})


@pytest.mark.parametrize(
    "spelling, canonical",
    [
        ("199.172.111.135", "199.172.111.135"),
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("::ffff:10.1.2.3", "10.1.2.3"),
    ],
)
def test_one_address_gives_one_mask_whatever_its_spelling(spelling, canonical):
    assert validate(body(ip=spelling)).ip == canonical
    assert to_row(body(ip=spelling), KEY, "m", SENT).masked_ip == reference_hmac(canonical)


@pytest.mark.parametrize(
    "ip", ["999.1.1.1", "1.2.3", "localhost", " 1.2.3.4", "01.2.3.4", "1.2.3.4/24"]
)
def test_an_ip_that_is_not_an_address_is_invalid(ip):
    assert reason_for(body(ip=ip)) == "schema: field 'ip' is not an IPv4 or IPv6 address"


@pytest.mark.parametrize("field", ["user_id", "device_type", "ip", "device_id", "app_version"])
def test_each_required_field_missing_or_null_is_invalid(field):
    assert reason_for(body(**{field: ...})) == f"schema: missing required field {field!r}"
    assert reason_for(body(**{field: None})) == f"schema: missing required field {field!r}"


def test_locale_may_be_null_missing_or_empty():
    assert validate(body(locale=None)).locale is None
    assert validate(body(locale=...)).locale is None
    assert validate(body(locale="")).locale == ""


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("user_id", 42, "must be a string, got a number"),
        ("device_type", ["ios"], "must be a string, got an array"),
        ("device_id", {"id": 1}, "must be a string, got an object"),
        ("locale", True, "must be a string, got a boolean"),
        ("app_version", False, "must be a string or a number, got a boolean"),
        ("ip", 3232235777, "must be a string, got a number"),
    ],
)
def test_wrong_types_are_invalid(field, value, expected):
    assert reason_for(body(**{field: value})) == f"schema: field {field!r} {expected}"


@pytest.mark.parametrize(
    "field, limit", [("user_id", 128), ("device_type", 32), ("locale", 32), ("app_version", 32)]
)
def test_a_value_longer_than_its_column_is_invalid_never_truncated(field, limit):
    assert validate(body(**{field: "x" * limit}))
    assert f"longer than {limit}" in reason_for(body(**{field: "x" * (limit + 1)}))


@pytest.mark.parametrize("value", ["a\u0000b", "a\x1bb", "line\nbreak", "\x7f"])
def test_nul_and_control_characters_are_invalid(value):
    assert reason_for(body(user_id=value)) == "schema: field 'user_id' contains a control character"


def test_a_lone_surrogate_is_invalid():
    raw = body().replace('"android"', '"\\ud800"')
    assert "lone surrogate" in reason_for(raw)


@pytest.mark.parametrize("empty", ["user_id", "device_type", "device_id", "app_version"])
def test_empty_required_strings_are_invalid(empty):
    assert reason_for(body(**{empty: ""})) == f"schema: field {empty!r} is empty"


def test_numeric_app_version_is_kept_as_sent():
    raw = body().replace('"2.3.0"', "2.00")
    assert validate(raw).app_version == "2.00"
    assert validate(body().replace('"2.3.0"', "7")).app_version == "7"
    assert validate(body(app_version="0.96")).app_version == "0.96"


def test_create_date_is_used_when_valid():
    assert to_row(body(create_date="2024-02-29"), KEY, "m", SENT).create_date == date(2024, 2, 29)
    stamped = to_row(body(create_date="2024-03-01T01:30:00+05:00"), KEY, "m", SENT)
    assert stamped.create_date == date(2024, 2, 29)  # the UTC day
    assert to_row(body(create_date="2024-03-01T10:00:00Z"), KEY, "m", SENT).create_date == date(
        2024, 3, 1
    )


@pytest.mark.parametrize(
    "value",
    [
        "2024-02-30",
        "yesterday",
        20240101,
        None,
        "",
        # UTC days past year 9999 or before year 1 (the fuzzer found these: they raised, not
        # fell back)
        "9999-12-31T23:59:59-14:00",
        "0001-01-01T00:00:00+14:00",
    ],
)
def test_create_date_missing_or_invalid_falls_back_to_the_sent_day(value):
    row = to_row(body(create_date=value), KEY, "m", SENT)
    assert row.create_date == date(2026, 11, 24)


def test_extra_fields_are_ignored():
    row = to_row(body(extra="anything", nested={"deep": [1, 2]}), KEY, "m", SENT)
    assert row.user_id == GOOD["user_id"]


@pytest.mark.parametrize(
    "raw, reason",
    [
        ("not json at all", "json: not valid JSON"),
        ('{"user_id": "a",', "json: not valid JSON"),
        ("", "json: not valid JSON"),
        ("[1, 2]", "schema: expected a JSON object, got an array"),
        ('"a string"', "schema: expected a JSON object, got a string"),
        ("null", "schema: expected a JSON object, got null"),
        ('{"user_id": NaN}', "json: not valid JSON"),
        ("[" * 100000 + "]" * 100000, "json: nested too deeply"),
    ],
)
def test_bodies_that_are_not_json_objects_are_invalid(raw, reason):
    assert reason_for(raw).startswith(reason)


def test_huge_numbers_do_not_crash():
    raw = body().replace('"2.3.0"', "1" * 5000)
    assert "longer than 32" in reason_for(raw)
    assert validate(body().replace('"2.3.0"', "1e999")).app_version == "1e999"


def test_sql_looking_text_is_just_text():
    value = "x'); DROP TABLE user_logins; --"
    assert validate(body(user_id=value)).user_id == value


def test_device_ids_are_masked_as_sent():
    assert transform.canonical_ip("1.2.3.4") == "1.2.3.4"
    row = to_row(body(device_id="ABC-1"), KEY, "m", SENT)
    assert row.masked_device_id == reference_hmac("ABC-1")


# --- exact reasons and boundaries ---------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, reason",
    [
        ("not json at all", "json: not valid JSON (Expecting value: line 1 column 1 (char 0))"),
        ('{"user_id": NaN}', "json: not valid JSON (NaN is not valid JSON)"),
        ('{"ip": -Infinity}', "json: not valid JSON (-Infinity is not valid JSON)"),
        ('{"a": 1} {"b": 2}', "json: not valid JSON (Extra data: line 1 column 10 (char 9))"),
    ],
)
def test_the_dead_letter_reason_of_a_body_that_is_not_json_says_why(raw, reason):
    with pytest.raises(InvalidMessage) as refused:
        validate(raw)
    assert refused.value.reason == reason
    assert str(refused.value) == reason  # what a log line or a traceback would show


def test_a_text_body_led_by_a_byte_order_mark_is_not_json():
    """A text body is JSON from its first character: a BOM before it is refused like any other
    character that cannot start a value, and the reason says where, as for those."""
    with pytest.raises(InvalidMessage) as refused:
        transform.parse_body('\ufeff{"user_id": "a"}')
    assert refused.value.reason == (
        "json: not valid JSON (Expecting value: line 1 column 1 (char 0))"
    )


def test_the_parser_error_in_a_reason_is_its_first_line_at_most_200_characters():
    error = ValueError("x" * 250 + "\nsecond line")
    assert transform._first_line(error) == "x" * 200
    assert transform._first_line(ValueError("short\nmore")) == "short"


def test_every_missing_required_field_is_named_in_order():
    raw = body(user_id=..., ip=None, app_version=...)
    assert reason_for(raw) == "schema: missing required field 'user_id', 'ip', 'app_version'"


@pytest.mark.parametrize("field, limit", [("user_id", 128), ("device_type", 32), ("ip", 64)])
def test_the_reason_for_a_value_too_long_names_field_length_and_limit(field, limit):
    reason = reason_for(body(**{field: "1" * (limit + 1)}))
    assert reason == f"schema: field {field!r} is {limit + 1} characters, longer than {limit}"


def test_a_device_id_of_exactly_256_characters_is_accepted_257_is_not():
    assert validate(body(device_id="d" * 256)).device_id == "d" * 256
    assert reason_for(body(device_id="d" * 257)) == (
        "schema: field 'device_id' is 257 characters, longer than 256"
    )


def _stamp_of_length(length: int) -> str:
    """A valid timestamp of exactly `length` characters (digits of a second's fraction)."""
    stamp = "2024-03-01T10:00:00." + "1" * (length - 26) + "+00:00"
    assert len(stamp) == length
    return stamp


def test_a_create_date_of_64_characters_is_read_a_longer_one_is_not_even_parsed():
    assert validate(body(create_date=_stamp_of_length(64))).create_date == date(2024, 3, 1)
    assert validate(body(create_date=_stamp_of_length(65))).create_date is None
    row = to_row(body(create_date=_stamp_of_length(65)), KEY, "m", SENT)
    assert row.create_date == date(2026, 11, 24)  # the sent day


@pytest.mark.parametrize(
    "stamp, day",
    [
        ("2024-03-01T10:00:00z", date(2024, 3, 1)),
        ("2024-03-01 23:30:00.5z", date(2024, 3, 1)),
        ("2024-03-01T10:00:00Z", date(2024, 3, 1)),
    ],
)
def test_a_timestamp_in_utc_may_end_in_a_lowercase_z(stamp, day):
    assert validate(body(create_date=stamp)).create_date == day


@pytest.fixture
def local_time_utc_plus_14():
    """The machine's local time zone 14 hours east of UTC (a POSIX TZ, no tz database
    needed), so that a local day and a UTC day differ for most of the day."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "LINT-14"
    time.tzset()
    yield
    if saved is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = saved
    time.tzset()


def test_days_are_utc_days_whatever_the_local_time_zone(local_time_utc_plus_14):
    assert datetime(2026, 11, 24, 23, 59, tzinfo=UTC).astimezone().day == 25
    # The fallback: the UTC day the message was sent, from an aware time in any zone.
    assert to_row(body(), KEY, "m", SENT).create_date == date(2026, 11, 24)
    plus_five = timezone(timedelta(hours=5))
    early = datetime(2026, 11, 25, 1, 30, tzinfo=plus_five)  # 2026-11-24 20:30 UTC
    assert to_row(body(), KEY, "m", early).create_date == date(2026, 11, 24)
    # A timestamp with an offset: its UTC day.
    assert validate(body(create_date="2024-03-01T10:00:00Z")).create_date == date(2024, 3, 1)
    stamped = validate(body(create_date="2024-03-01T20:00:00-05:00"))
    assert stamped.create_date == date(2024, 3, 2)


def test_a_body_read_as_bytes_parses_as_its_text_does():
    """A stream record's data arrives as bytes: numbers kept as sent, as for a text body."""
    from loginetl.transform import JsonNumber, parse_body

    text = '{"app_version": 2.00, "n": 7, "s": "é"}'
    for body in (text, text.encode()):
        document = parse_body(body)
        assert document == {"app_version": "2.00", "n": "7", "s": "é"}
        assert all(type(document[k]) is JsonNumber for k in ("app_version", "n"))
    with pytest.raises(InvalidMessage, match=r"^json: not valid JSON"):
        parse_body(b'{"n": NaN}')
    with pytest.raises(InvalidMessage, match=r"^schema: expected a JSON object, got an array$"):
        parse_body(b"[1]")


# --- extra fields kept (run --keep-extra) ---------------------------------------------------


def test_kept_extra_masks_the_named_fields_and_writes_the_rest_as_sent():
    key = MaskKey(MASK_KEY)
    body = (
        '{"user_id": "u", "ip": "1.2.3.4", "email": "a@b.c", "phone": 44, "n": null, '
        '"score": 2.50, "deep": {"x": [1E3, true, "é"]}}'
    )
    document = transform.parse_body(body)
    kept = transform.kept_extra(document, key, frozenset({"email", "phone", "n"}))
    expected_email = hmac.new(MASK_KEY.encode(), b"a@b.c", hashlib.sha256).hexdigest()
    assert kept == (
        f'{{"email":"{expected_email}","phone":"{key.hmac_mask("44")}","n":null,'
        '"score":2.50,"deep":{"x":[1E3,true,"\\u00e9"]}}'
    )
    assert json.loads(kept)["deep"] == {"x": [1000.0, True, "é"]}


def test_kept_extra_is_none_without_extra_fields_and_masks_in_the_keys_mode():
    key = MaskKey(MASK_KEY, "siv")
    assert transform.kept_extra({"user_id": "u", "locale": None}, key, frozenset()) is None
    kept = json.loads(transform.kept_extra({"email": "a@b.c"}, key, frozenset({"email"})))
    assert kept["email"].startswith("siv:") and key.unmask(kept["email"]) == "a@b.c"


def test_kept_extra_refuses_what_it_cannot_write_with_a_reason():
    key = MaskKey(MASK_KEY)
    with pytest.raises(InvalidMessage, match="lone surrogate"):
        transform.kept_extra({"email": "\ud800"}, key, frozenset({"email"}))
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(InvalidMessage, match="nested too deeply to store"):
        transform.kept_extra({"deep": deep}, key, frozenset())
