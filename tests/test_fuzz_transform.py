"""A fuzzer on the transform: any body (any JSON value, any text, and the classes of hostile
input below) gives either a row that PostgreSQL accepts (each one is inserted, in a real
table) or a dead-letter reason; never an exception."""

import json
import re
import uuid
from datetime import UTC, datetime

import hypothesis.strategies as st
import psycopg2
import pytest
from hypothesis import HealthCheck, example, given, settings

from loginetl import load, schema
from loginetl.masking import MaskKey
from loginetl.transform import InvalidMessage, to_row
from tests.support.data import MASK_KEY, sample_messages
from tests.support.servers import own_database

KEY = MaskKey(MASK_KEY)
SENT = datetime(2026, 12, 2, tzinfo=UTC)
GOOD = next(m for m in sample_messages() if "user_id" in m)
FIELDS = ("user_id", "device_type", "ip", "device_id", "locale", "app_version", "create_date")
REASON = re.compile(r"^(json|schema): \S")

# Characters that have broken parsers and terminals: NUL, lone surrogates, bidi overrides and
# isolates, the BOM and other zero-width ones, the line and paragraph separators, non-characters.
HOSTILE_CHARACTERS = [
    "\x00",
    "\ud800",
    "\udfff",
    "\u202e",
    "\u202d",
    "\u2066",
    "\u2067",
    "\u2069",
    "\u200f",
    "\ufeff",
    "\u200b",
    "\u2028",
    "\u2029",
    "\ufffe",
    "\uffff",
    "\U0010ffff",
    "\x7f",
    "\x85",
]
hostile_text = st.text(
    alphabet=st.sampled_from(HOSTILE_CHARACTERS) | st.characters(), max_size=80
) | st.sampled_from(HOSTILE_CHARACTERS)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | hostile_text,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(hostile_text, children, max_size=4)
    ),
    max_leaves=20,
)
addresses = st.ip_addresses().map(str) | st.sampled_from(
    ["1.2.3.4", "::ffff:1.2.3.4", "fe80::1%eth0", "1.2.3.4:80"]
)
field_values = json_values | addresses | st.integers(min_value=-(10**400), max_value=10**400)
login_like = st.fixed_dictionaries({}, optional={name: field_values for name in FIELDS}).map(
    lambda fields: GOOD | fields
)


def dumps(document, ascii_only: bool) -> str:
    """JSON text as a producer might send it: NaN and Infinity as Python writes them (not
    JSON), lone surrogates and NUL escaped (`ensure_ascii`) or raw."""
    return json.dumps(document, ensure_ascii=ascii_only)


def with_duplicate_keys(document: dict, name: str, value) -> str:
    """The document's JSON with `name` given twice, the second time as `value`."""
    text = json.dumps(document)
    return text[:-1] + f", {json.dumps(name)}: {json.dumps(value)}}}"


hostile_bodies = st.one_of(
    st.text(),
    hostile_text,
    st.builds(dumps, json_values, st.booleans()),
    st.builds(dumps, login_like, st.booleans()),
    st.builds(with_duplicate_keys, login_like, st.sampled_from(FIELDS), field_values),
    st.sampled_from(["1e400", "-1e400", "NaN", "Infinity", "-Infinity", "[NaN]", "1" * 5000]),
    st.sampled_from(FIELDS).map(  # a BOM in a key: another key, the field is missing
        lambda name: json.dumps(GOOD).replace(f'"{name}"', f'"\\ufeff{name}"')
    ),
)
DEEP = "[" * 100_000 + "]" * 100_000
DEEP_OBJECT = '{"a":' * 100_000 + "1" + "}" * 100_000
HUGE = json.dumps(GOOD | {"user_id": "u" * (1024 * 1024)})
HUGE_EXTRA = json.dumps(GOOD | {"padding": "\u202e" * (1024 * 1024)})


@pytest.fixture(scope="module")
def table(postgres_admin_url):
    """A real user_logins, as init-db makes it, for the rows the fuzzer makes."""
    with own_database(postgres_admin_url) as url:
        connection = psycopg2.connect(url)
        schema.init_db(connection)
        yield connection, schema.describe(connection)
        connection.close()


def loaded_or_refused(body: str, table) -> str:
    """The body's outcome: "refused" with a well-formed reason, or "loaded" once PostgreSQL
    accepted its row. Any exception fails the test."""
    connection, info = table
    try:
        row = to_row(body, KEY, f"fuzz-{uuid.uuid4()}", SENT)
    except InvalidMessage as invalid:
        assert REASON.match(invalid.reason), invalid.reason
        assert "\x00" not in invalid.reason
        return "refused"
    result = load.insert(connection, [row], info)
    assert result.inserted == [row.message_id], result.rejected
    return "loaded"


FUZZ = settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(body=hostile_bodies)
@example(body=DEEP)
@example(body=DEEP_OBJECT)
@example(body=HUGE)
@example(body=HUGE_EXTRA)
@example(body='{"user_id": "a", "user_id": null}')
@example(body=json.dumps(GOOD | {"app_version": 1e400}))
@example(body=json.dumps(GOOD).replace('"2.3.0"', "1e400"))
@example(body=json.dumps(GOOD).replace('"2.3.0"', "NaN"))
@example(body="\ufeff" + json.dumps(GOOD))
@example(body=json.dumps(GOOD | {"user_id": "\u202eevil\u202c"}))
@example(body=json.dumps(GOOD | {"create_date": "0001-01-01"}))
@example(body=json.dumps(GOOD | {"create_date": "9999-12-31T23:59:59-14:00"}))  # found by it
@example(body=json.dumps(GOOD | {"create_date": "0001-01-01T00:00:00+14:00"}))
def test_any_body_gives_a_row_postgresql_accepts_or_a_reason(body, table):
    loaded_or_refused(body, table)


def test_the_limits_hold_as_documented(table):
    """100,000-deep nesting is refused as too deep, a 1 MiB field as too long, a 1 MiB body
    whose fields fit is loaded; 1e400 and NaN are refused as a version, kept as ignored extras."""
    assert loaded_or_refused(DEEP, table) == "refused"
    with pytest.raises(InvalidMessage, match="nested too deeply"):
        to_row(DEEP_OBJECT, KEY, "m", SENT)
    with pytest.raises(InvalidMessage, match="'user_id' is 1048576 characters"):
        to_row(HUGE, KEY, "m", SENT)
    assert loaded_or_refused(HUGE_EXTRA, table) == "loaded"
    with pytest.raises(InvalidMessage, match="not valid JSON"):
        to_row(json.dumps(GOOD).replace('"2.3.0"', "NaN"), KEY, "m", SENT)
    huge_version = json.dumps(GOOD).replace('"2.3.0"', "1e400")
    assert to_row(huge_version, KEY, "m", SENT).app_version == "1e400"
    assert loaded_or_refused(json.dumps(GOOD)[:-1] + ', "extra": 1e400}', table) == "loaded"


_OCTET = st.one_of(st.integers(0, 300).map(str), st.from_regex(r"0[0-9]{1,3}", fullmatch=True))


@given(st.lists(_OCTET, min_size=3, max_size=5).map(".".join) | st.ip_addresses().map(str))
def test_an_ip_is_spelled_as_ipaddress_spells_it(text):
    """The dotted-quad shortcut of canonical_ip agrees with the ipaddress module on every
    spelling: out-of-range octets, leading zeros, too few or too many parts, IPv6."""
    import ipaddress

    from loginetl.transform import canonical_ip

    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        with pytest.raises(ValueError):
            canonical_ip(text)
        return
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    assert canonical_ip(text) == str(address)
