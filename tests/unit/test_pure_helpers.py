"""Pure helpers of the loader and the settling code: no queue, no database.

The loader's conversion of a row to COPY text and to column values, and the queue side's
batching, dead-letter entries and parsing of what SQS returns; the CLI tests cover the same
paths against the real servers, these pin the exact values.
"""

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import hypothesis.strategies as st
import pytest
from hypothesis import given

from loginetl.load import PLAIN, WITH_EXTRA, _copy_text, _values, major_version, prepare
from loginetl.schema import INSERT_COLUMNS, TableInfo
from loginetl.sqs import (
    MAX_ATTRIBUTES,
    MAX_BATCH_BYTES,
    MAX_PER_CALL,
    ORIGINAL_ID_ATTRIBUTE,
    REASON_ATTRIBUTE,
    SOURCE_QUEUE_ATTRIBUTE,
    Failure,
    QueueMessage,
    _chunks,
    _failures,
    _index_chunks_by_size,
    _queue_message,
    forward_entry,
)
from loginetl.transform import LoginRow

# --- load: major_version, _values, _copy_text --------------------------------------------------


@pytest.mark.parametrize(
    "app_version, major",
    [
        ("2.3.0", 2),
        ("7", 7),
        ("v10.1", 10),
        ("  4.0", 4),
        ("12 beta", 12),
        ("007.1", 7),
        ("123456789.0", 123456789),
    ],
)
def test_the_major_version_is_the_leading_number(app_version, major):
    assert major_version(app_version) == major


@pytest.mark.parametrize(
    "app_version", ["beta", "", "1234567890", "2a", "2-rc1", "V2", "-1", "x2.0", ".5"]
)
def test_an_app_version_without_a_major_version_is_refused_by_name(app_version):
    with pytest.raises(ValueError) as refused:
        major_version(app_version)
    assert str(refused.value) == (
        f"app_version {app_version!r} has no major version for an integer column"
    )


ROW = LoginRow(
    message_id="m-1",
    user_id="u-1",
    device_type="ios",
    masked_ip="a" * 64,
    masked_device_id="b" * 64,
    locale=None,
    app_version="2.3.0",
    create_date=date(2026, 11, 24),
    mask_key_id="1b514d1c3dea0fd3",
)
EXPECTED = {
    "user_id": "u-1",
    "device_type": "ios",
    "masked_ip": "a" * 64,
    "masked_device_id": "b" * 64,
    "locale": None,
    "app_version": "2.3.0",
    "create_date": date(2026, 11, 24),
    "sqs_message_id": "m-1",
    "mask_key_id": "1b514d1c3dea0fd3",
}


def test_a_row_gives_its_values_in_insert_column_order():
    table = TableInfo(columns={"app_version": "varchar"}, has_message_id_index=True)
    assert dict(zip(INSERT_COLUMNS, _values(ROW, table, PLAIN), strict=True)) == EXPECTED


def test_a_row_that_keeps_extra_fields_gives_them_last():
    table = TableInfo(columns={"app_version": "varchar"}, has_message_id_index=True)
    row = replace(ROW, extra='{"plan":"pro"}')
    values = _values(row, table, WITH_EXTRA)
    assert dict(zip(WITH_EXTRA.columns, values, strict=True)) == EXPECTED | {"extra": row.extra}
    assert prepare([row, ROW], table).statements is WITH_EXTRA  # one row keeps: all name it
    assert prepare([ROW], table).statements is PLAIN


@pytest.mark.parametrize("integer_type", ["integer", "bigint", "smallint"])
def test_an_integer_app_version_column_gets_the_major_version(integer_type):
    table = TableInfo(columns={"app_version": integer_type}, has_message_id_index=True)
    values = dict(zip(INSERT_COLUMNS, _values(ROW, table, PLAIN), strict=True))
    assert values == EXPECTED | {"app_version": 2}


def test_copy_text_is_tab_separated_with_null_and_escapes():
    rows = [
        ("plain", None, 5, date(2026, 11, 24)),
        ("tab\there", "new\nline", "cr\rreturn", "back\\slash"),
    ]
    assert _copy_text(rows) == (
        "plain\t\\N\t5\t2026-11-24\ntab\\there\tnew\\nline\tcr\\rreturn\tback\\\\slash\n"
    )


def test_copy_text_keeps_a_literal_backslash_n_apart_from_null():
    # A sender's "\N" must not become NULL, nor an empty string an absent value.
    assert _copy_text([("\\N", "", "é")]) == "\\\\N\t\té\n"
    assert _copy_text([]) == ""


_VALUE = st.one_of(
    st.none(),
    st.integers(),
    st.dates(),
    st.text(alphabet=st.sampled_from(["a", "N", "\\", "\t", "\n", "\r", "é", " ", "\x00"])),
    st.text(),
)


@given(st.lists(st.tuples(_VALUE, _VALUE, _VALUE), max_size=5))
def test_copy_text_is_each_value_escaped_whatever_the_values(rows):
    """The shortcut (no escaping when a row's joined text shows no tab but the separators and
    no backslash or line break) gives exactly what escaping every value gives."""
    escapes = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
    expected = "".join(
        "\t".join("\\N" if v is None else str(v).translate(escapes) for v in row) + "\n"
        for row in rows
    )
    assert _copy_text(rows) == expected


# --- sqs: batching --------------------------------------------------------------------------------


def test_chunks_are_in_order_and_at_most_size_long():
    items = list(range(25))
    assert list(_chunks(items, 10)) == [items[0:10], items[10:20], items[20:25]]
    assert list(_chunks(items[:20], 10)) == [items[0:10], items[10:20]]
    assert list(_chunks(items[:1], 10)) == [[0]]
    assert list(_chunks([], 10)) == []


ENVELOPE = 2048  # what each entry is counted for beyond its body (attributes, JSON framing)


def entry(body: str) -> dict:
    return {"MessageBody": body, "MessageAttributes": {}}


def sized(total: int) -> dict:
    """An entry that counts for `total` bytes of the batch."""
    return entry("x" * (total - ENVELOPE))


def test_send_batches_hold_at_most_ten_entries():
    assert MAX_PER_CALL == 10
    entries = [entry("{}")] * 25
    assert list(_index_chunks_by_size(entries)) == [
        list(range(10)),
        list(range(10, 20)),
        list(range(20, 25)),
    ]
    assert list(_index_chunks_by_size([])) == []


def test_a_batch_fills_up_to_exactly_the_byte_limit():
    assert MAX_BATCH_BYTES == 200 * 1024
    half = MAX_BATCH_BYTES // 2
    assert list(_index_chunks_by_size([sized(half), sized(half)])) == [[0, 1]]
    assert list(_index_chunks_by_size([sized(half), sized(half + 1)])) == [[0], [1]]
    # After a batch is cut, the next one counts from zero again.
    full = [sized(MAX_BATCH_BYTES), sized(half), sized(half)]
    assert list(_index_chunks_by_size(full)) == [[0], [1, 2]]
    # Every entry of the batch counts, not only the last two.
    third = MAX_BATCH_BYTES // 3
    assert list(_index_chunks_by_size([sized(third)] * 3)) == [[0, 1, 2]]
    over = [sized(third), sized(third), sized(third + 3)]
    assert list(_index_chunks_by_size(over)) == [[0, 1], [2]]


def test_an_entry_over_the_limit_goes_alone_never_after_an_empty_batch():
    huge = entry("x" * MAX_BATCH_BYTES)
    assert list(_index_chunks_by_size([huge, entry("{}")])) == [[0], [1]]
    assert list(_index_chunks_by_size([entry("{}"), huge, entry("{}")])) == [[0], [1], [2]]


def test_bodies_are_counted_in_utf8_bytes_lone_surrogates_included():
    # 50,177 "é" are 100,354 bytes: two of them exceed the limit, counted as characters not.
    accented = entry("é" * 50_177)
    assert list(_index_chunks_by_size([accented, accented])) == [[0], [1]]
    # A lone surrogate in a body is counted (3 bytes, as sent), not an error.
    surrogates = entry("\ud800" * 1000)
    rest = sized(MAX_BATCH_BYTES - (3 * 1000 + ENVELOPE))
    assert list(_index_chunks_by_size([rest, surrogates])) == [[0, 1]]
    assert list(_index_chunks_by_size([rest, entry("\ud800" * 1000 + "x")])) == [[0], [1]]


# --- sqs: the entry that forwards a message -------------------------------------------------------


def message(attributes=None, group_id=None, body='{"user_id": "u"}') -> QueueMessage:
    return QueueMessage(
        message_id="id-1",
        receipt_handle="rh-1",
        body=body,
        sent_at=datetime(2026, 11, 24, tzinfo=UTC),
        receive_count=1,
        attributes=attributes or {},
        group_id=group_id,
    )


def strings(**values: str) -> dict:
    return {name: {"DataType": "String", "StringValue": value} for name, value in values.items()}


def test_a_dead_lettered_message_keeps_its_body_and_the_senders_attributes():
    ours = {REASON_ATTRIBUTE: "schema: bad", ORIGINAL_ID_ATTRIBUTE: "id-1"}
    sent = message({"trace_id": "t-1", "empty": ""}, body="not json\n\x00")
    assert forward_entry(sent, ours, "http://h/1/logins-dlq") == {
        "MessageBody": "not json\n\x00",
        "MessageAttributes": {
            "trace_id": {"DataType": "String", "StringValue": "t-1"},
            REASON_ATTRIBUTE: {"DataType": "String", "StringValue": "schema: bad"},
            ORIGINAL_ID_ATTRIBUTE: {"DataType": "String", "StringValue": "id-1"},
        },
    }


def test_earlier_loginetl_attributes_are_replaced_never_carried_along():
    # A dead-lettered message replayed: its old reason and source go, ours come.
    dead = message(
        {
            REASON_ATTRIBUTE: "database: old reason",
            ORIGINAL_ID_ATTRIBUTE: "first-id",
            SOURCE_QUEUE_ATTRIBUTE: "http://h/1/logins",
            "trace_id": "t-1",
        }
    )
    ours = {ORIGINAL_ID_ATTRIBUTE: "first-id", "loginetl-replayed-reason": "database: old reason"}
    attributes = forward_entry(dead, ours, "http://h/1/logins")["MessageAttributes"]
    assert attributes == strings(
        trace_id="t-1",
        **{ORIGINAL_ID_ATTRIBUTE: "first-id", "loginetl-replayed-reason": "database: old reason"},
    )


def test_the_senders_attributes_give_way_to_ours_within_sqss_limit_of_ten():
    assert MAX_ATTRIBUTES == 10
    theirs = {f"a{index:02}": f"v{index}" for index in range(12)}
    ours = {REASON_ATTRIBUTE: "r", ORIGINAL_ID_ATTRIBUTE: "o", SOURCE_QUEUE_ATTRIBUTE: "s"}
    attributes = forward_entry(message(theirs), ours, "http://h/1/dlq")["MessageAttributes"]
    assert list(attributes) == [f"a{index:02}" for index in range(7)] + list(ours)
    assert attributes[REASON_ATTRIBUTE] == {"DataType": "String", "StringValue": "r"}


def test_an_attribute_of_the_sender_with_the_name_of_ours_is_replaced():
    sent = message({"trace_id": "theirs"})
    attributes = forward_entry(sent, {"trace_id": "ours"}, "http://h/1/q")["MessageAttributes"]
    assert attributes == strings(trace_id="ours")


def test_a_fifo_destination_gets_a_group_and_a_deduplication_id():
    entry_ = forward_entry(message(group_id="user-7"), {}, "http://h/1/logins-dlq.fifo")
    assert entry_["MessageGroupId"] == "user-7"
    assert entry_["MessageDeduplicationId"] == "id-1"
    # From a standard queue, a message has no group: one group for all of them.
    assert forward_entry(message(), {}, "http://h/1/q.fifo")["MessageGroupId"] == "loginetl"
    standard = forward_entry(message(group_id="user-7"), {}, "http://h/1/logins-dlq")
    assert set(standard) == {"MessageBody", "MessageAttributes"}


# --- sqs: what SQS returns ------------------------------------------------------------------------


def test_a_received_message_is_read_with_its_system_and_string_attributes():
    raw = {
        "MessageId": "id-1",
        "ReceiptHandle": "rh-1",
        "Body": '{"user_id": "u"}',
        "Attributes": {
            "SentTimestamp": "1764028740123",
            "ApproximateReceiveCount": "3",
            "MessageGroupId": "user-7",
        },
        "MessageAttributes": {
            "trace_id": {"DataType": "String", "StringValue": "t-1"},
            "count": {"DataType": "Number", "StringValue": "42"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
        },
    }
    assert _queue_message(raw) == QueueMessage(
        message_id="id-1",
        receipt_handle="rh-1",
        body='{"user_id": "u"}',
        sent_at=datetime(2025, 11, 24, 23, 59, 0, 123000, tzinfo=UTC),
        receive_count=3,
        attributes={"trace_id": "t-1", "count": "42"},
        group_id="user-7",
    )


@pytest.mark.parametrize("system", [None, {}, {"SentTimestamp": "0"}])
def test_a_message_without_a_sent_time_counts_as_sent_now_and_received_once(system):
    raw = {"MessageId": "id-2", "ReceiptHandle": "rh-2"}
    if system is not None:  # None: SQS sent no "Attributes" at all
        raw["Attributes"] = system
    before = datetime.now(UTC)
    received = _queue_message(raw)
    after = datetime.now(UTC)
    assert before <= received.sent_at <= after
    assert received.sent_at.utcoffset() == timedelta(0)
    assert (received.body, received.receive_count) == ("", 1)
    assert (received.attributes, received.group_id) == ({}, None)


def test_the_origin_id_and_reason_come_from_our_attributes():
    replayed = message({ORIGINAL_ID_ATTRIBUTE: "first-id", REASON_ATTRIBUTE: "schema: x"})
    assert (replayed.origin_id, replayed.reason) == ("first-id", "schema: x")
    assert (message().origin_id, message().reason) == ("id-1", None)


def test_each_failed_entry_is_paired_with_its_message_and_says_why():
    messages = [message(), message(body="second"), message(body="third")]
    response = {
        "Successful": [{"Id": "0"}],
        "Failed": [
            {"Id": "2", "Code": "ReceiptHandleIsInvalid", "Message": "bad handle"},
            {"Id": "1", "SenderFault": False},
        ],
    }
    assert _failures(response, messages) == [
        Failure(messages[2], "ReceiptHandleIsInvalid: bad handle"),
        Failure(messages[1], ": "),
    ]
    assert _failures({"Successful": [{"Id": "0"}]}, messages) == []
